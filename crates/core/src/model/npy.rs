//! Minimal `.npy` (NumPy format v1/v2/v3) reader and writer for 2-D float matrices.
//! Spec: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//! Accepted: little-endian `f4` or `f2`, C order, shape `[N, D]` (or `[D]` as one row).

use crate::error::{Error, Result};
use half::f16;
use std::path::Path;

/// A row-major f32 matrix `[rows, dim]` read from `.npy`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
    /// True when the file stored float16 (values are then exactly representable in f16).
    pub was_f16: bool,
}

impl Matrix {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }
    /// Error on the first NaN or ±Inf, naming row and column.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        if let Some(i) = self.data.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                what: what.to_string(),
                row: i / self.dim.max(1),
                col: i % self.dim.max(1),
                value: self.data[i],
            });
        }
        Ok(())
    }
}

/// Read a 2-D f32/f16 `.npy` file. Errors: not npy, truncated, wrong dtype, Fortran order.
pub fn read(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|reason| Error::Npy { path: path.to_path_buf(), reason })
}

/// Parse `.npy` bytes; the error is a human-readable reason.
pub fn parse(bytes: &[u8]) -> std::result::Result<Matrix, String> {
    let h = parse_header(bytes)?;
    let body = &bytes[h.data_start..h.data_start + h.data_bytes()];
    let data: Vec<f32> = if !h.f16 {
        body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        body.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
    };
    Ok(Matrix { rows: h.rows, dim: h.dim, data, was_f16: h.f16 })
}

/// What a `.npy` header says: shape, dtype, where the row-major data starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub rows: usize,
    pub dim: usize,
    /// `<f2` (else `<f4`).
    pub f16: bool,
    /// Byte offset of the data.
    pub data_start: usize,
}

impl Header {
    /// Bytes per element (2 or 4).
    pub fn elem(&self) -> usize {
        if self.f16 { 2 } else { 4 }
    }
    /// Data bytes (`rows * dim * elem`).
    pub fn data_bytes(&self) -> usize {
        self.rows * self.dim * self.elem()
    }
}

/// Parse the header of `.npy` `bytes` (the whole file or a map of it) and check that the
/// data it announces is present.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (missing \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported format version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    if fortran.starts_with("True") {
        return Err("Fortran-order arrays are not supported; save with C order".into());
    }
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let elem = match descr {
        "<f4" => 4,
        "<f2" => 2,
        other => return Err(format!("dtype {other} is not supported (need little-endian float32 '<f4' or float16 '<f2')")),
    };
    let dims: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry {s:?}")))
        .collect::<std::result::Result<_, _>>()?;
    let (rows, dim) = match dims.as_slice() {
        [n, d] => (*n, *d),
        [d] => (1, *d),
        _ => return Err(format!("expected a 2-D array [N, D], got shape {dims:?}")),
    };
    let have = bytes.len() - (start + hlen);
    let need = rows.checked_mul(dim).and_then(|x| x.checked_mul(elem)).ok_or("shape overflows")?;
    if have < need {
        return Err(format!("truncated: shape [{rows}, {dim}] needs {need} data bytes, file has {have}"));
    }
    Ok(Header { rows, dim, f16: elem == 2, data_start: start + hlen })
}

/// The value token after `'key':` in a header dict: a quoted string, a parenthesized
/// tuple, or a bare word.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}':");
    let pat_b = format!("\"{key}\":");
    let i = header.find(&pat_a).map(|i| i + pat_a.len()).or_else(|| header.find(&pat_b).map(|i| i + pat_b.len()))?;
    let rest = header[i..].trim_start();
    let end = match rest.chars().next()? {
        q @ ('\'' | '"') => rest[1..].find(q)? + 2,
        '(' => rest.find(')')? + 1,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(&rest[..end])
}

/// Write a 2-D `<f4` (or `<f2` when `as_f16`) `.npy` file.
pub fn write(path: &Path, rows: usize, dim: usize, data: &[f32], as_f16: bool) -> Result<()> {
    std::fs::write(path, encode(rows, dim, data, as_f16)).map_err(|e| Error::io(path, e))
}

/// Encode a 2-D matrix as `.npy` v1.0 bytes.
pub fn encode(rows: usize, dim: usize, data: &[f32], as_f16: bool) -> Vec<u8> {
    assert_eq!(data.len(), rows * dim);
    let mut out = header(rows, dim, as_f16);
    for &x in data {
        if as_f16 {
            out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

/// The `.npy` v1.0 header of a `[rows, dim]` `<f4` (`<f2`) matrix, padded so the data
/// starts at a multiple of 64 bytes; the row-major data follows it.
pub fn header(rows: usize, dim: usize, as_f16: bool) -> Vec<u8> {
    let descr = if as_f16 { "<f2" } else { "<f4" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_f32_and_f16() {
        let data: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
        for f16 in [false, true] {
            let m = parse(&encode(3, 5, &data, f16)).unwrap();
            assert_eq!((m.rows, m.dim, m.was_f16), (3, 5, f16));
            assert_eq!(m.data, data);
        }
    }

    #[test]
    fn rejects_bad_files() {
        let good = encode(3, 5, &[1.0; 15], false);
        assert!(parse(b"hello world, not npy").unwrap_err().contains("magic"));
        assert!(parse(&good[..good.len() - 4]).unwrap_err().contains("truncated"));
        let mut f8 = good.clone();
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'8';
        assert!(parse(&f8).unwrap_err().contains("<f8"));
    }
}
