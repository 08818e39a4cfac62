//! The `l2` metric in the integer path (stages 1-3), exact and bit-identical on every backend.
//!
//! For a query `q ≈ qs·cq` and a row `x ≈ sx·cx` (int8 codes, per-row scales),
//! `‖q − x‖² = ‖q‖² − 2 q·x + ‖x‖²`, so ranking by the smallest distance is ranking by the
//! largest `q·x − ‖x‖²/2 ≈ (dot·qs − bias)·sx`, with the integer `dot = cq·cx`, the row's
//! `bias = (sqnorm as f32 · sx) · 0.5` (`sqnorm = Σ cx²`, stored as `items.sqnorms`; for the
//! probe the same of each centroid) and the query scale `qs` a **power of two**
//! ([`quantize_query`]). Every backend evaluates exactly
//!
//! ```text
//! score = ((dot as f32) * qs - bias) * sx
//! ```
//!
//! `(dot as f32) * qs` is exact (a power-of-two scaling), so a compiler that contracts it and
//! the subtraction into an FMA (NVRTC by default; WGSL and SPIR-V allow it) gets the same bits;
//! the subtraction and the final multiply are each one IEEE rounding, and no contraction can
//! fuse a multiply that follows an add. The score approximates `(‖q‖² − ‖q − x‖²)/2`; the
//! refine stage replaces it by the exact f32 `−‖q − x‖²` (the documented `scores`).
//! The ip and cosine metrics keep `score = (dot as f32) * sx`.

use super::I8Matrix;
use rayon::prelude::*;

/// `Σ c²` of each row of `m` (exact in i32: 127²·D fits for D < 133,000).
pub fn sqnorms(m: &I8Matrix) -> Vec<i32> {
    if m.dim == 0 {
        return vec![0; m.rows];
    }
    m.codes.par_chunks(m.dim).map(sqnorm).collect()
}

/// `items.sqnorms` for an index of `metric` over `items`: [`sqnorms`] for `l2`, empty else.
pub fn sqnorms_for(metric: super::Metric, items: &I8Matrix) -> super::Tensor<i32> {
    if metric == super::Metric::L2 { sqnorms(items).into() } else { Default::default() }
}

/// `Σ c²` of one row of codes.
#[inline]
pub fn sqnorm(c: &[i8]) -> i32 {
    c.iter().map(|&v| v as i32 * v as i32).sum()
}

/// The bias of a row: `(sqnorm as f32 * scale) * 0.5` (half its quantized squared norm in
/// code units of the row scale). Computed on the host and uploaded, so every backend reads
/// the same bits.
#[inline]
pub fn bias(sqnorm: i32, scale: f32) -> f32 {
    (sqnorm as f32 * scale) * 0.5
}

/// The biases of every row of `m` given its `sqnorms`.
pub fn biases(m: &I8Matrix, sqnorms: &[i32]) -> Vec<f32> {
    sqnorms.par_iter().zip(m.scale.par_iter()).map(|(&n, &s)| bias(n, s)).collect()
}

/// The stage 1-3 `l2` score (see the module docs): `((dot as f32) * qs - bias) * scale`.
#[inline]
pub fn score(dot: i32, qs: f32, bias: f32, scale: f32) -> f32 {
    ((dot as f32) * qs - bias) * scale
}

/// The smallest power of two `>= t` for finite `t >= 0` (`1.0` for 0; `2^-126` below it).
#[inline]
pub fn pow2_at_least(t: f32) -> f32 {
    if t <= 0.0 {
        return 1.0;
    }
    let b = t.to_bits();
    let (e, m) = (b >> 23, b & 0x7f_ffff);
    if e == 0 {
        f32::MIN_POSITIVE
    } else if m == 0 {
        t
    } else {
        f32::from_bits((e + 1) << 23)
    }
}

/// Quantize a query for the `l2` metric into `out`; returns its scale: the smallest power of
/// two `>= absmax/127` (1 for an all-zero query), codes `round_half_even(x / scale)` in
/// [-127, 127]. A power of two makes `(dot as f32) * scale` exact (module docs).
pub fn quantize_query(x: &[f32], out: &mut [i8]) -> f32 {
    let absmax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = pow2_at_least(absmax / 127.0);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = super::quantize::round_half_even_127(v / scale) as i8;
    }
    scale
}

/// `‖q‖²` of an f32 query, summed in order (rerank `none` under `l2`).
pub fn query_sqnorm(q: &[f32]) -> f32 {
    q.iter().fold(0f32, |a, &v| a + v * v)
}

/// Rerank `none` under `l2`: the stage 3 score `s ≈ q·x − ‖x‖²/2` as the negated squared
/// distance `2s − ‖q‖²` (`s * 2` is exact, then one rounding).
#[inline]
pub fn none_score(s: f32, qn: f32) -> f32 {
    s * 2.0 - qn
}

/// Exact f32 refine score of the `l2` metric: `-Σ (q - e)²` in the refine order of the
/// CPU's `dot_f32_f16` (eight lane sums over whole chunks of 8, the lanes added in order,
/// then the tail). GPU backends agree within the rerank tolerance.
pub fn neg_sqdist_f16(q: &[f32], e: &[half::f16]) -> f32 {
    let n = q.len().min(e.len());
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for (i, a) in acc.iter_mut().enumerate() {
            let t = q[c * 8 + i] - e[c * 8 + i].to_f32();
            *a += t * t;
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for i in chunks * 8..n {
        let t = q[i] - e[i].to_f32();
        s += t * t;
    }
    -s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn pow2_is_the_smallest_power_at_least() {
        for t in [1.0f32, 0.75, 3.0, 1e-3, 1e-30, 5e-39, 2.0f32.powi(-126), 1e30] {
            let p = pow2_at_least(t);
            assert!(p >= t, "{t}");
            assert_eq!(p.to_bits() & 0x7f_ffff, 0, "{t} -> {p} is a power of two");
            assert!(p * 0.5 < t || p == f32::MIN_POSITIVE, "{t} -> {p} is the smallest");
        }
        assert_eq!(pow2_at_least(0.0), 1.0);
    }

    #[test]
    fn query_codes_fit_and_scale_is_exact() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for d in [1usize, 7, 64, 129] {
            let x: Vec<f32> = (0..d).map(|_| rng.random_range(-5.0f32..5.0)).collect();
            let mut c = vec![0i8; d];
            let s = quantize_query(&x, &mut c);
            assert!(c.iter().all(|&v| v != -128));
            let absmax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(c.iter().map(|&v| (v as i32).abs()).max().unwrap() >= 63, "power-of-two scale keeps >= 6 bits");
            assert!((absmax / s) <= 127.0);
            // The dot times the scale is exact: dividing back gives the integer.
            for dot in [0, 1, -7, 123_456] {
                assert_eq!(((dot as f32) * s) / s, dot as f32);
            }
        }
        let mut c = [5i8; 3];
        assert_eq!(quantize_query(&[0.0; 3], &mut c), 1.0);
        assert_eq!(c, [0; 3]);
    }

    #[test]
    fn score_ranks_like_the_distance_of_the_quantized_vectors() {
        // With exact quantized vectors, the score order is the distance order.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let d = 16;
        let q: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut qc = vec![0i8; d];
        let qs = quantize_query(&q, &mut qc);
        let rows: Vec<f32> = (0..200 * d).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        let m = super::super::quantize::quantize(&rows, d);
        let norms = sqnorms(&m);
        let mut by_score: Vec<(f32, usize)> = (0..200)
            .map(|r| {
                let dot: i32 = qc.iter().zip(m.row(r)).map(|(&a, &b)| a as i32 * b as i32).sum();
                (score(dot, qs, bias(norms[r], m.scale[r]), m.scale[r]), r)
            })
            .collect();
        let exact = |r: usize| -> f64 {
            (0..d)
                .map(|j| {
                    let t = qc[j] as f64 * qs as f64 - m.row(r)[j] as f64 * m.scale[r] as f64;
                    t * t
                })
                .sum()
        };
        by_score.sort_by(|a, b| b.0.total_cmp(&a.0));
        // The best by score is (within f32 rounding) the nearest quantized row.
        let best = (0..200).min_by(|&a, &b| exact(a).total_cmp(&exact(b))).unwrap();
        assert!(exact(by_score[0].1) <= exact(best) * (1.0 + 1e-5) + 1e-9);
    }
}
