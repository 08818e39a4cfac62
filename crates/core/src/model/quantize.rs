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
        *o = round_half_even_127(v / scale) as i8;
    }
    scale
}

/// `y.round_ties_even().clamp(-127, 127)` for finite `y`, without a libm call: on x86-64
/// without SSE4.1, `round_ties_even` is a call per element (it was most of a query
/// batch's host time). Adding and subtracting 1.5 * 2^23 rounds to the nearest integer,
/// ties to even, in IEEE round-to-nearest for |y| < 2^22, which the clamp guarantees.
#[inline(always)]
pub fn round_half_even_127(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (y.clamp(-127.0, 127.0) + MAGIC) - MAGIC
}

/// Quantize a row-major `[rows, dim]` matrix (rows in parallel).
pub fn quantize(data: &[f32], dim: usize) -> I8Matrix {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    let mut codes = vec![0i8; rows * dim];
    let mut scale = vec![0f32; rows];
    if dim > 0 {
        codes.par_chunks_mut(dim).zip(scale.par_iter_mut()).zip(data.par_chunks(dim)).for_each(|((c, s), x)| *s = quantize_row(x, c));
    }
    I8Matrix { rows, dim, codes: codes.into(), scale: scale.into() }
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

#[cfg(test)]
mod round_tests {
    use super::round_half_even_127;
    use rand::{Rng, SeedableRng};

    #[test]
    fn magic_rounding_equals_round_ties_even() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let ties = (-260..=260).map(|i| i as f32 * 0.5);
        let near = (-1000..=1000).flat_map(|i| {
            let x = i as f32 * 0.5;
            [x.next_up(), x.next_down()]
        });
        let random = (0..100_000).map(|_| rng.random_range(-300.0f32..300.0));
        for y in ties.chain(near).chain(random).chain([0.0, -0.0, 127.0, -127.0, 1e30, -1e30]) {
            let want = y.round_ties_even().clamp(-127.0, 127.0);
            assert_eq!(round_half_even_127(y) as i8, want as i8, "y = {y:e}");
            assert_eq!(round_half_even_127(y), want, "y = {y:e}");
        }
    }
}
