//! Item vectors as the builder reads them: rows converted to f32 on demand, from memory
//! ([`VectorSource::from_matrix`]) or from a memory-mapped `.npy` file
//! ([`VectorSource::open`], f16 or f32), so a build never holds an f32 copy of every row.

use super::npy::{self, Matrix};
use crate::error::{Error, Result};
use half::f16;
use std::path::Path;

enum Data {
    Owned(Vec<f32>),
    /// `file` serves scattered reads ([`VectorSource::read_row_into`]) without mapping pages.
    Mapped {
        map: memmap2::Mmap,
        start: usize,
        f16: bool,
        file: std::fs::File,
        path: std::path::PathBuf,
    },
}

/// `[rows, dim]` vectors readable by row.
pub struct VectorSource {
    pub rows: usize,
    pub dim: usize,
    data: Data,
}

impl VectorSource {
    /// Rows held in memory (row-major f32).
    pub fn from_matrix(m: Matrix) -> Self {
        VectorSource { rows: m.rows, dim: m.dim, data: Data::Owned(m.data) }
    }

    /// Map a 2-D `<f4`/`<f2` `.npy` file. Errors ([`Error::Npy`]): not npy, truncated, wrong
    /// dtype or layout; I/O. The file must not change while the build runs.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a concurrent writer of the input is out of contract.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let h = npy::parse_header(&map).map_err(|reason| Error::Npy { path: path.into(), reason })?;
        let _ = map.advise(memmap2::Advice::WillNeed);
        Ok(VectorSource { rows: h.rows, dim: h.dim, data: Data::Mapped { map, start: h.data_start, f16: h.f16, file, path: path.into() } })
    }

    /// Copy row `r` as f32 into `out` (`dim` values).
    #[inline]
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let d = self.dim;
        match &self.data {
            Data::Owned(v) => out.copy_from_slice(&v[r * d..(r + 1) * d]),
            Data::Mapped { map, start, f16, .. } => {
                let w = if *f16 { 2 } else { 4 };
                decode(&map[start + r * d * w..start + (r + 1) * d * w], *f16, out);
            }
        }
    }

    /// [`VectorSource::row_into`] for scattered rows (the training sample, the list-ordered
    /// pass): a positioned read of the row's bytes into `buf` instead of a page fault, so
    /// the input's pages never enter the resident set (a fault maps up to 16 neighbouring
    /// pages: random rows of an 80M x 128 input made all 20 GB of it resident). Same values
    /// as `row_into`. Errors: I/O.
    pub fn read_row_into(&self, r: usize, out: &mut [f32], buf: &mut Vec<u8>) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let d = self.dim;
        match &self.data {
            Data::Owned(_) => self.row_into(r, out),
            Data::Mapped { start, f16, file, path, .. } => {
                let w = if *f16 { 2 } else { 4 };
                buf.resize(d * w, 0);
                file.read_exact_at(buf, (start + r * d * w) as u64).map_err(|e| Error::io(path, e))?;
                decode(buf, *f16, out);
            }
        }
        Ok(())
    }

    /// Drop the mapped pages of rows `range` from this process's resident set (the page
    /// cache keeps them; a later read faults them back in). No-op for rows in memory.
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let Data::Mapped { map, start, f16, .. } = &self.data {
            let row = self.dim * if *f16 { 2 } else { 4 };
            let page = 4096;
            let a = (start + range.start * row) / page * page;
            let b = (start + range.end * row).min(map.len());
            if b > a {
                // SAFETY: a read-only file map; dropped pages are re-read from the file.
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
            }
        }
    }
}

/// Little-endian f16 (`is_f16`) or f32 row bytes `b` -> `out`.
#[inline]
fn decode(b: &[u8], is_f16: bool, out: &mut [f32]) {
    if is_f16 {
        for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
        }
    } else {
        for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
}
