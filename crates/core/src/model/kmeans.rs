//! Spherical k-means for the inverted lists: random initialisation (k distinct sample
//! rows, as Faiss; k-means++ was O(k x sample x D) sequential steps, 80% of a 1M build,
//! for no recall gain on the Debian corpus: BENCHMARKS.md "Build at scale"), Lloyd iterations
//! on a sample (large N), empty-cluster repair, then one assignment pass over all rows.
//! Centroids are kept at unit L2 norm and rows are assigned by maximum inner product,
//! which is exactly how the probe ranks lists. Similarities are computed with blocked
//! SGEMM (`matrixmultiply`), blocks in parallel with rayon. Deterministic for a seed.

use rand::{SeedableRng, seq::index};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// k-means settings.
#[derive(Clone, Debug)]
pub struct KMeansParams {
    /// Number of clusters (nlist).
    pub k: usize,
    /// Lloyd iterations.
    pub iters: usize,
    /// Training rows per cluster; at most `k * sample_per_cluster` rows train.
    pub sample_per_cluster: usize,
    /// Seed of the sample and the initial centroids (ChaCha8).
    pub seed: u64,
}

const BLOCK: usize = 1024;

/// `out[i, j] = x_i · c_j` for the rows of `x` (row-major `[n, d]`) against `c` (`[k, d]`).
pub(crate) fn sims(x: &[f32], c: &[f32], d: usize, k: usize, out: &mut [f32]) {
    let n = x.len() / d;
    // SAFETY: pointers and strides describe the slices exactly: x [n,d], c^T [d,k], out [n,k].
    unsafe {
        matrixmultiply::sgemm(n, d, k, 1.0, x.as_ptr(), d as isize, 1, c.as_ptr(), 1, d as isize, 0.0, out.as_mut_ptr(), k as isize, 1);
    }
}

/// Index and value of the best centroid for each row (ties -> lower index).
pub fn assign(x: &[f32], c: &[f32], d: usize) -> Vec<(u32, f32)> {
    assign_biased(x, c, d, None)
}

/// [`assign`] by `x·c_j - bias[j]` (`bias[j] = ‖c_j‖²/2`: the nearest centroid in L2).
fn assign_biased(x: &[f32], c: &[f32], d: usize, bias: Option<&[f32]>) -> Vec<(u32, f32)> {
    let k = c.len() / d;
    if d == 0 || k == 0 {
        return vec![(0, 0.0); x.len().checked_div(d).unwrap_or(0)];
    }
    x.par_chunks(BLOCK * d)
        .flat_map_iter(|blk| {
            let n = blk.len() / d;
            let mut s = vec![0f32; n * k];
            sims(blk, c, d, k, &mut s);
            (0..n)
                .map(|i| {
                    let row = &s[i * k..(i + 1) * k];
                    let mut best = (0u32, f32::NEG_INFINITY);
                    for (j, &v) in row.iter().enumerate() {
                        let v = bias.map_or(v, |b| v - b[j]);
                        if v > best.1 {
                            best = (j as u32, v);
                        }
                    }
                    best
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Scale `v` to unit L2 norm in place (left as is when its norm is 0): the training rows'
/// normalization, which every [`crate::model::compute::BuildCompute`] must apply bit for bit.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Train `k` unit-norm centroids on `data` (`[n, d]`, row-major). Returns `[k, d]`.
/// `progress` is called once per Lloyd iteration. Requires `n >= 1`; with `n < k`
/// the extra centroids duplicate rows (their lists stay empty).
pub fn train(data: &[f32], d: usize, p: &KMeansParams, progress: &dyn Fn()) -> Vec<f32> {
    train_with(data, d, p, false, progress)
}

/// [`train`], or with `euclidean` plain (L2) k-means: rows and centroids are not
/// normalized, rows go to the nearest centroid, centroids are the means.
pub fn train_with(data: &[f32], d: usize, p: &KMeansParams, euclidean: bool, progress: &dyn Fn()) -> Vec<f32> {
    let n = data.len() / d;
    let k = p.k;
    let seeds = Seeds::draw(n, p);
    let mut x: Vec<f32> = Vec::with_capacity(seeds.sample.len() * d);
    for &i in &seeds.sample {
        x.extend_from_slice(&data[i * d..(i + 1) * d]);
    }
    if !euclidean {
        for row in x.chunks_mut(d) {
            normalize(row);
        }
    }
    let mut c: Vec<f32> = seeds.init.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
    for _ in 0..p.iters {
        let bias: Option<Vec<f32>> = euclidean.then(|| c.chunks(d).map(|r| r.iter().map(|v| v * v).sum::<f32>() * 0.5).collect());
        let a = assign_biased(&x, &c, d, bias.as_deref());
        let mut sum = vec![0f32; k * d];
        let mut cnt = vec![0usize; k];
        for (i, &(j, _)) in a.iter().enumerate() {
            let j = j as usize;
            cnt[j] += 1;
            for (s, v) in sum[j * d..(j + 1) * d].iter_mut().zip(&x[i * d..(i + 1) * d]) {
                *s += v;
            }
        }
        // Empty-cluster repair: split the largest cluster (its centroid, perturbed ±).
        for j in 0..k {
            if cnt[j] > 0 {
                continue;
            }
            let big = (0..k).max_by_key(|&t| (cnt[t], std::cmp::Reverse(t))).unwrap_or(0);
            if cnt[big] < 2 {
                break;
            }
            let src: Vec<f32> = sum[big * d..(big + 1) * d].to_vec();
            for t in 0..d {
                let eps = if t % 2 == 0 { 1.0 / 1024.0 } else { -1.0 / 1024.0 };
                sum[j * d + t] = src[t] * (1.0 + eps);
                sum[big * d + t] = src[t] * (1.0 - eps);
            }
            let whole = cnt[big] as f32;
            cnt[j] = cnt[big] / 2;
            cnt[big] -= cnt[j];
            if euclidean {
                // Each half keeps the mean of the whole (perturbed), not its sum.
                let (fj, fb) = (cnt[j] as f32 / whole, cnt[big] as f32 / whole);
                sum[j * d..(j + 1) * d].iter_mut().for_each(|v| *v *= fj);
                sum[big * d..(big + 1) * d].iter_mut().for_each(|v| *v *= fb);
            }
        }
        for j in 0..k {
            if cnt[j] > 0 {
                c[j * d..(j + 1) * d].copy_from_slice(&sum[j * d..(j + 1) * d]);
                if euclidean {
                    let inv = 1.0 / cnt[j] as f32;
                    c[j * d..(j + 1) * d].iter_mut().for_each(|v| *v *= inv);
                } else {
                    normalize(&mut c[j * d..(j + 1) * d]);
                }
            }
        }
        progress();
    }
    c
}

/// The seeded draws of a training run, shared by every [`crate::model::compute::BuildCompute`]
/// so that all devices train from the same rows and the same initial centroids (the
/// centroids then differ only by the order of the f32 sums).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// Training rows: indices into the data, ascending; all rows when
    /// `n <= k * sample_per_cluster` (at least `min(n, k)` rows).
    pub sample: Vec<usize>,
    /// Initial centroids, `k` indices into `sample` (Faiss's default seeding: `k` distinct
    /// sample rows; rows repeat only when the sample has fewer than `k`). O(k).
    pub init: Vec<usize>,
}

impl Seeds {
    /// The draws for `n` data rows under `p` (ChaCha8 seeded with `p.seed`: the sample
    /// first, then the initial picks). Requires `n >= 1` when `p.k >= 1`.
    pub fn draw(n: usize, p: &KMeansParams) -> Seeds {
        let k = p.k;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let m = n.min(k.saturating_mul(p.sample_per_cluster).max(k));
        let sample: Vec<usize> = if m == n {
            (0..n).collect()
        } else {
            let mut v = index::sample(&mut rng, n, m).into_vec();
            v.sort_unstable();
            v
        };
        let init: Vec<usize> = if m >= k { index::sample(&mut rng, m, k).into_vec() } else { (0..k).map(|j| j % m.max(1)).collect() };
        Seeds { sample, init }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn separates_clear_clusters_and_is_deterministic() {
        // Four well-separated directions in 8-D, 50 noisy points each.
        let d = 8;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut data = Vec::new();
        for i in 0..200 {
            let axis = i % 4;
            for t in 0..d {
                let base = if t == axis { 1.0 } else { 0.0 };
                data.push(base + rng.random_range(-0.05..0.05));
            }
        }
        let p = KMeansParams { k: 4, iters: 8, sample_per_cluster: 1000, seed: 3 };
        let c = train(&data, d, &p, &|| {});
        assert_eq!(c, train(&data, d, &p, &|| {}));
        let a = assign(&data, &c, d);
        for axis in 0..4 {
            let label = a[axis].0;
            assert!((0..200).filter(|i| i % 4 == axis).all(|i| a[i].0 == label));
        }
        let mut labels: Vec<u32> = (0..4).map(|i| a[i].0).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), 4, "every cluster found");
    }

    #[test]
    fn euclidean_centroids_are_cluster_means() {
        // Two blobs far apart at different norms: spherical k-means would merge them by
        // direction; the L2 centroids sit at the blob means.
        let d = 4;
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut data = Vec::new();
        for i in 0..300 {
            let base = if i % 2 == 0 { 1.0 } else { 10.0 };
            for _ in 0..d {
                data.push(base + rng.random_range(-0.1..0.1));
            }
        }
        let p = KMeansParams { k: 2, iters: 6, sample_per_cluster: 1000, seed: 2 };
        let c = train_with(&data, d, &p, true, &|| {});
        let mut firsts: Vec<f32> = c.chunks(d).map(|r| r[0]).collect();
        firsts.sort_by(f32::total_cmp);
        assert!((firsts[0] - 1.0).abs() < 0.05 && (firsts[1] - 10.0).abs() < 0.05, "{firsts:?}");
    }

    #[test]
    fn seeds_are_distinct_sample_rows_and_start_training() {
        for (n, k, spc) in [(1000, 10, 8), (50, 10, 64), (5, 12, 4), (1, 1, 1), (4096, 64, 64)] {
            let p = KMeansParams { k, iters: 0, sample_per_cluster: spc, seed: 11 };
            let s = Seeds::draw(n, &p);
            assert_eq!(s, Seeds::draw(n, &p), "deterministic for a seed");
            assert_eq!(s.sample.len(), n.min((k * spc).max(k)));
            assert!(s.sample.windows(2).all(|w| w[0] < w[1]) && s.sample.iter().all(|&i| i < n));
            assert_eq!(s.init.len(), k);
            assert!(s.init.iter().all(|&i| i < s.sample.len()));
            let mut u = s.init.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), k.min(s.sample.len()), "distinct while the sample allows");
            // iters = 0: the centroids are exactly the initial rows, normalized.
            let d = 3;
            let data: Vec<f32> = (0..n * d).map(|v| (v % 7) as f32 + 1.0).collect();
            let c = train(&data, d, &p, &|| {});
            for (j, &i) in s.init.iter().enumerate() {
                let mut r = data[s.sample[i] * d..(s.sample[i] + 1) * d].to_vec();
                normalize(&mut r);
                assert_eq!(&c[j * d..(j + 1) * d], &r[..]);
            }
        }
        let p = KMeansParams { k: 10, iters: 0, sample_per_cluster: 8, seed: 11 };
        assert_ne!(Seeds::draw(1000, &p), Seeds::draw(1000, &KMeansParams { seed: 12, ..p.clone() }));
    }

    #[test]
    fn more_clusters_than_rows() {
        let data = vec![1.0, 0.0, 0.0, 1.0];
        let c = train(&data, 2, &KMeansParams { k: 5, iters: 3, sample_per_cluster: 4, seed: 1 }, &|| {});
        assert_eq!(c.len(), 10);
        assert!(c.iter().all(|v| v.is_finite()));
    }
}
