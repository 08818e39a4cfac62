//! The compute an index build asks of a device: k-means training over a sample and the
//! assignment of every row to an inverted list. The CPU ([`CpuCompute`]) is the reference;
//! `silica build --backend cuda` plugs in the CUDA implementation.
//!
//! **Assignment rule** (bit-identical on every device, so list membership and list order do
//! not depend on where an index was built): a row's int8 codes `xq` (the shared rule of
//! [`super::quantize`]) are scored against each centroid's int8 codes `cq_l` and scale `s_l`
//! (`ivf.centroid_codes`, `ivf.centroid_scale`) as `score_l = (Σ_d xq[d]·cq_l[d]) as f32 * s_l`
//! and the row goes to `argmax_l score_l`, ties to the lower `l`. The dot is an exact
//! integer (|Σ| ≤ 127²·D < 2²⁴ for D ≤ 1024, so even an f32 GEMM of the codes is exact), the
//! product one IEEE multiply; this is the score the probe ranks lists by, so a row sits in
//! the list a query equal to it would probe first. Centroids themselves come from floating
//! point k-means and agree between devices only within a tolerance.

use super::I8Matrix;
use super::kmeans::{self, KMeansParams};
use crate::error::Result;
use rayon::prelude::*;

/// Largest D for which the assignment dot is exact in f32 (127² · D < 2²⁴).
pub const MAX_EXACT_DIM: usize = (1 << 24) / (127 * 127);

/// A device that trains centroids and assigns rows to lists (see the module docs).
pub trait BuildCompute: Sync {
    /// Short name for logs and errors (`"cpu"`, `"cuda"`).
    fn name(&self) -> &'static str;

    /// Train `p.k` unit-norm centroids on `data` (f32 `[n, dim]` row-major, n ≥ 1; sampled
    /// to at most `p.k * p.sample_per_cluster` rows inside). Returns f32 `[p.k, dim]`.
    /// `progress` is called once per Lloyd iteration.
    fn train(&self, data: &[f32], dim: usize, p: &KMeansParams, progress: &dyn Fn()) -> Result<Vec<f32>>;

    /// The inverted list of each row of `codes` (int8 `[r, dim]` row-major) by the
    /// assignment rule against `centroids` (`[L, dim]` codes + scales). Returns u32 `[r]`.
    fn assign(&self, codes: &[i8], centroids: &I8Matrix) -> Result<Vec<u32>>;
}

/// The reference implementation on the host (rayon + blocked SGEMM).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuCompute;

const BLOCK: usize = 1024;

impl BuildCompute for CpuCompute {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn train(&self, data: &[f32], dim: usize, p: &KMeansParams, progress: &dyn Fn()) -> Result<Vec<f32>> {
        Ok(kmeans::train(data, dim, p, progress))
    }

    fn assign(&self, codes: &[i8], centroids: &I8Matrix) -> Result<Vec<u32>> {
        Ok(assign_cpu(codes, centroids))
    }
}

/// [`CpuCompute::assign`]: codes widened to f32 (exact), one SGEMM per block of rows
/// (blocks in parallel on the rayon pool).
pub fn assign_cpu(codes: &[i8], centroids: &I8Matrix) -> Vec<u32> {
    assign_with(codes, centroids, true)
}

/// [`assign_cpu`] on the calling thread only: the same lists, without waiting for the
/// rayon pool (`silica serve`'s writer assigns new items while searches keep the pool busy).
pub fn assign_on_thread(codes: &[i8], centroids: &I8Matrix) -> Vec<u32> {
    assign_with(codes, centroids, false)
}

/// The `l2` assignment rule (see [`super::metric`]): the row with codes `codes[r]` and scale
/// `scales[r]` goes to `argmax_l ((dot as f32) * scales[r] - bias_l) * s_l`, `bias_l` the
/// centroid's [`super::metric::bias`], ties to the lower `l`: the nearest int8 centroid.
/// Host only (every build device assigns `l2` rows here, so lists agree everywhere).
pub fn assign_l2(codes: &[i8], scales: &[f32], centroids: &I8Matrix, parallel: bool) -> Vec<u32> {
    let bias = super::metric::biases(centroids, &super::metric::sqnorms(centroids));
    assign_by(codes, centroids, parallel, &|r, l, dot| super::metric::score(dot as i32, scales[r], bias[l], centroids.scale[l]))
}

fn assign_with(codes: &[i8], centroids: &I8Matrix, parallel: bool) -> Vec<u32> {
    assign_by(codes, centroids, parallel, &|_, l, dot| dot * centroids.scale[l])
}

/// argmax over lists of `score(row, list, exact integer dot as f32)`, ties to the lower list.
fn assign_by(codes: &[i8], centroids: &I8Matrix, parallel: bool, score: &(dyn Fn(usize, usize, f32) -> f32 + Sync)) -> Vec<u32> {
    let (d, k) = (centroids.dim, centroids.rows);
    if d == 0 {
        return Vec::new();
    }
    assert!(d <= MAX_EXACT_DIM, "assignment dot is exact only for D <= {MAX_EXACT_DIM}");
    let c: Vec<f32> = centroids.codes.iter().map(|&v| v as f32).collect();
    let block = |(bi, blk): (usize, &[i8])| {
        let n = blk.len() / d;
        let x: Vec<f32> = blk.iter().map(|&v| v as f32).collect();
        let mut s = vec![0f32; n * k];
        kmeans::sims(&x, &c, d, k, &mut s);
        (0..n)
            .map(|i| {
                let mut best = (0u32, f32::NEG_INFINITY);
                for (j, &dot) in s[i * k..(i + 1) * k].iter().enumerate() {
                    let v = score(bi * BLOCK + i, j, dot);
                    if v > best.1 {
                        best = (j as u32, v);
                    }
                }
                best.0
            })
            .collect::<Vec<_>>()
    };
    if parallel {
        codes.par_chunks(BLOCK * d).enumerate().flat_map_iter(block).collect()
    } else {
        codes.chunks(BLOCK * d).enumerate().flat_map(block).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::quantize::quantize;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The rule written out with integer dots, for rows not a multiple of the block.
    fn by_hand(codes: &[i8], c: &I8Matrix) -> Vec<u32> {
        codes
            .chunks(c.dim)
            .map(|x| {
                let mut best = (0u32, f32::NEG_INFINITY);
                for l in 0..c.rows {
                    let dot: i32 = x.iter().zip(c.row(l)).map(|(&a, &b)| a as i32 * b as i32).sum();
                    let v = dot as f32 * c.scale[l];
                    if v > best.1 {
                        best = (l as u32, v);
                    }
                }
                best.0
            })
            .collect()
    }

    #[test]
    fn sgemm_assignment_is_the_integer_rule() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (n, k, d) in [(0, 3, 8), (1, 1, 1), (1500, 37, 65), (2049, 5, 384)] {
            let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let c: Vec<f32> = (0..k * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let (xq, cq) = (quantize(&x, d), quantize(&c, d));
            assert_eq!(assign_cpu(&xq.codes, &cq), by_hand(&xq.codes, &cq), "n {n} k {k} d {d}");
            assert_eq!(assign_on_thread(&xq.codes, &cq), by_hand(&xq.codes, &cq), "n {n} k {k} d {d}");
        }
    }

    #[test]
    fn l2_assignment_is_the_integer_rule_and_the_nearest_centroid() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for (n, k, d) in [(1, 1, 1), (1500, 37, 65), (1100, 5, 16)] {
            let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let c: Vec<f32> = (0..k * d).map(|_| rng.random_range(-1.0f32..1.0) * (1 + rng.random_range(0..3)) as f32).collect();
            let (xq, cq) = (quantize(&x, d), quantize(&c, d));
            let got = assign_l2(&xq.codes, &xq.scale, &cq, true);
            assert_eq!(got, assign_l2(&xq.codes, &xq.scale, &cq, false));
            let norms = crate::model::metric::sqnorms(&cq);
            for (r, &lr) in got.iter().enumerate() {
                let xr = &xq.codes[r * d..(r + 1) * d];
                let mut best = (0u32, f32::NEG_INFINITY);
                for (l, &nl) in norms.iter().enumerate() {
                    let dot: i32 = xr.iter().zip(cq.row(l)).map(|(&a, &b)| a as i32 * b as i32).sum();
                    let v = crate::model::metric::score(dot, xq.scale[r], crate::model::metric::bias(nl, cq.scale[l]), cq.scale[l]);
                    if v > best.1 {
                        best = (l as u32, v);
                    }
                }
                assert_eq!(lr, best.0, "row {r}");
                // And it is (up to rounding) the nearest quantized centroid.
                let dist = |l: usize| -> f64 {
                    (0..d)
                        .map(|j| {
                            let t = xr[j] as f64 * xq.scale[r] as f64 - cq.row(l)[j] as f64 * cq.scale[l] as f64;
                            t * t
                        })
                        .sum()
                };
                let near = (0..k).map(dist).fold(f64::INFINITY, f64::min);
                assert!(dist(lr as usize) <= near + 1e-4 * (1.0 + near), "row {r}");
            }
        }
    }

    #[test]
    fn ties_go_to_the_lower_list() {
        let c = quantize(&[1.0, 0.0, 1.0, 0.0, 0.0, 1.0], 2);
        assert_eq!(assign_cpu(&[127, 0, 0, 127, 0, 0], &c), vec![0, 2, 0]);
    }
}
