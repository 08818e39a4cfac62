//! The int8 rule shared by items, centroids and queries (DESIGN.md invariants):
//! symmetric per-row quantization, `scale = absmax / 127`, `code = round_half_even(x / scale)`
//! clamped to [-127, 127]; an all-zero row has scale 0 and zero codes. Scores are
//! `(i32 dot) as f32 * scale` (one IEEE multiply) on every backend.

use super::I8Matrix;
use rayon::prelude::*;

/// Quantize one row into `out`; returns its scale.
#[inline]
pub fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    let absmax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if absmax == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = absmax / 127.0;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Quantize a row-major `[rows, dim]` matrix (rows in parallel).
pub fn quantize(data: &[f32], dim: usize) -> I8Matrix {
    let rows = if dim == 0 { 0 } else { data.len() / dim };
    let mut codes = vec![0i8; rows * dim];
    let mut scale = vec![0f32; rows];
    if dim > 0 {
        codes
            .par_chunks_mut(dim)
            .zip(scale.par_iter_mut())
            .zip(data.par_chunks(dim))
            .for_each(|((c, s), x)| *s = quantize_row(x, c));
    }
    I8Matrix { rows, dim, codes, scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_even_and_absmax() {
        let mut out = [0i8; 4];
        let s = quantize_row(&[127.0, 0.5, 1.5, -127.0], &mut out);
        assert_eq!(s, 1.0);
        assert_eq!(out, [127, 0, 2, -127]);
        let s = quantize_row(&[0.0; 4], &mut out);
        assert_eq!((s, out), (0.0, [0; 4]));
    }
}
