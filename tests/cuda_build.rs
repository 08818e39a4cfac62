//! The CUDA build stage ([`CudaCompute`]) against the CPU reference ([`CpuCompute`]):
//! `assign` is bit-identical to `assign_cpu` (fresh random inputs, 0 and 1 rows, rows not
//! a multiple of the 128-row tile, many staging chunks, 1 list, lists not a multiple of
//! 32, up to 65536 lists, D = 1, 2, 3, 65, 128, 384, 1024, duplicated and all-zero
//! centroids for exact ties and -0/+0 ties); `train` starts from the CPU's initial
//! centroids bit for bit (one `kmeans::Seeds`), ends within a tolerance of the CPU's
//! centroids and quality (mean best similarity), returns finite unit-norm centroids, is
//! deterministic for a seed and repairs empty clusters. Skips (printing why) when no CUDA device is
//! available. `timing_*` (ignored) measures assign on 20M x 128 x 4096 and train on
//! 262144 x 128 x 4096 on a GPU and prints one JSON line (scripts/cuda-build-check.sh).
#![cfg(feature = "cuda")]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use silica::backend::cuda::{self, CudaCompute};
use silica::model::I8Matrix;
use silica::model::compute::{BuildCompute, CpuCompute, assign_cpu};
use silica::model::kmeans::{self, KMeansParams};
use silica::model::quantize::quantize;
use std::time::Instant;

fn gpu(chunk_bytes: usize) -> Option<CudaCompute> {
    if !cuda::available() {
        eprintln!("SKIP: no CUDA device (libcuda cannot be loaded or no GPU)");
        return None;
    }
    Some(CudaCompute::with_chunk_bytes(0, chunk_bytes).expect("CUDA build stage starts on an available device"))
}

#[test]
fn without_a_device_new_is_a_typed_error() {
    if cuda::available() {
        eprintln!("SKIP: a CUDA device is present (this test checks the error without one)");
        return;
    }
    match CudaCompute::new() {
        Err(silica::Error::Backend { backend, .. }) => assert_eq!(backend, "cuda"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("CudaCompute::new succeeded without a device"),
    }
}

/// The assignment rule with integer dots; also says whether some row had a tie.
fn by_hand(codes: &[i8], c: &I8Matrix) -> (Vec<u32>, usize) {
    let mut ties = 0;
    let a = codes
        .chunks(c.dim)
        .map(|x| {
            let mut best = (0u32, f32::NEG_INFINITY);
            let mut n_best = 0;
            for l in 0..c.rows {
                let dot: i32 = x.iter().zip(c.row(l)).map(|(&a, &b)| a as i32 * b as i32).sum();
                let v = dot as f32 * c.scale[l];
                if v > best.1 {
                    best = (l as u32, v);
                    n_best = 1;
                } else if v == best.1 {
                    n_best += 1;
                }
            }
            ties += (n_best > 1) as usize;
            best.0
        })
        .collect();
    (a, ties)
}

/// Random centroids with duplicates (same codes and scale), all-zero rows (scale 0:
/// scores ±0) and rows equal to centroids, for exact ties.
fn centroids_with_ties(rng: &mut ChaCha8Rng, l: usize, d: usize) -> I8Matrix {
    let f: Vec<f32> = (0..l * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut c = quantize(&f, d);
    for j in 1..l {
        match rng.random_range(0..8) {
            0 => {
                let src = rng.random_range(0..j);
                let row = c.row(src).to_vec();
                c.codes[j * d..(j + 1) * d].copy_from_slice(&row);
                c.scale[j] = c.scale[src];
            }
            1 => {
                c.codes[j * d..(j + 1) * d].fill(0);
                c.scale[j] = 0.0;
            }
            _ => {}
        }
    }
    c
}

fn rows_for(rng: &mut ChaCha8Rng, r: usize, c: &I8Matrix) -> Vec<i8> {
    let d = c.dim;
    let f: Vec<f32> = (0..r * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut x = quantize(&f, d).codes;
    for i in 0..r {
        match rng.random_range(0..10) {
            0 if c.rows > 0 => {
                let l = rng.random_range(0..c.rows);
                x[i * d..(i + 1) * d].copy_from_slice(c.row(l));
            }
            1 => x[i * d..(i + 1) * d].fill(0),
            _ => {}
        }
    }
    x.to_vec()
}

#[test]
fn assign_is_bit_identical_to_the_cpu() {
    let Some(big) = gpu(64 << 20) else { return };
    let small = gpu(8 << 10).unwrap(); // chunks of 128 rows at D <= 64: many chunk boundaries
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut total_ties = 0;
    // (rows, lists, D)
    let cases = [
        (0, 5, 8),
        (1, 1, 1),
        (1, 37, 3),
        (129, 1, 65),
        (5000, 97, 2),
        (3001, 200, 64),
        (1000, 33, 384),
        (700, 4099, 128),
        (300, 300, 1024),
        (257, 65536, 16),
        (2049, 31, 128),
    ];
    for (r, l, d) in cases {
        let c = centroids_with_ties(&mut rng, l, d);
        let x = rows_for(&mut rng, r, &c);
        let want = assign_cpu(&x, &c);
        let (hand, ties) = by_hand(&x, &c);
        assert_eq!(want, hand, "CPU reference vs integer rule, r {r} l {l} d {d}");
        total_ties += ties;
        for (name, g) in [("64 MiB chunks", &big), ("8 KiB chunks", &small)] {
            let got = g.assign(&x, &c).expect("assign");
            assert_eq!(got.len(), r);
            if got != want {
                let bad = (0..r).find(|&i| got[i] != want[i]).unwrap();
                panic!("{name}: r {r} l {l} d {d}: row {bad} got list {} want {}", got[bad], want[bad]);
            }
        }
    }
    assert!(total_ties > 100, "the inputs must exercise exact ties (got {total_ties})");
}

#[test]
fn assign_refuses_partial_rows_and_inconsistent_centroids() {
    let Some(g) = gpu(64 << 20) else { return };
    let c = quantize(&[1.0, 0.0, 0.0, 1.0], 2);
    assert!(matches!(g.assign(&[1, 2, 3], &c), Err(silica::Error::Param { .. })));
    let bad = I8Matrix { rows: 2, dim: 2, codes: vec![1, 2, 3].into(), scale: vec![1.0, 1.0].into() };
    assert!(matches!(g.assign(&[1, 2], &bad), Err(silica::Error::Param { .. })));
    let none = I8Matrix { rows: 0, dim: 2, codes: Vec::new().into(), scale: Vec::new().into() };
    assert_eq!(g.assign(&[1, 2, 3, 4], &none).unwrap(), assign_cpu(&[1, 2, 3, 4], &none));
    assert_eq!(g.assign(&[1, 2, 3, 4], &c).unwrap(), assign_cpu(&[1, 2, 3, 4], &c));
}

/// `n` rows in `blobs` noisy clusters on the sphere.
fn blobs(rng: &mut ChaCha8Rng, n: usize, d: usize, blobs: usize, noise: f32) -> Vec<f32> {
    let centers: Vec<f32> = (0..blobs * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    (0..n)
        .flat_map(|_| {
            let b = rng.random_range(0..blobs);
            (0..d).map(|t| centers[b * d + t] + noise * rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>()
        })
        .collect()
}

fn normalized(data: &[f32], d: usize) -> Vec<f32> {
    let mut x = data.to_vec();
    for row in x.chunks_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
    x
}

/// Mean over the rows of the best similarity to a centroid (rows normalized).
fn quality(data: &[f32], c: &[f32], d: usize) -> f64 {
    let x = normalized(data, d);
    let a = kmeans::assign(&x, c, d);
    a.iter().map(|&(_, s)| s as f64).sum::<f64>() / a.len() as f64
}

fn assert_unit_rows(c: &[f32], d: usize, what: &str) {
    for (j, row) in c.chunks(d).enumerate() {
        assert!(row.iter().all(|v| v.is_finite()), "{what}: centroid {j} not finite");
        let n = row.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "{what}: centroid {j} has norm {n}");
    }
}

#[test]
fn train_reaches_the_cpu_quality_and_is_deterministic() {
    let Some(g) = gpu(64 << 20) else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    // (rows, D, k, blobs, sample_per_cluster): sampled and unsampled, D odd and wide.
    for (n, d, k, nb, spc) in [(8000, 32, 64, 48, 64), (3000, 65, 40, 40, 1000), (40000, 128, 256, 200, 64), (6000, 3, 20, 12, 256)] {
        let data = blobs(&mut rng, n, d, nb, 0.3);
        let p = KMeansParams { k, iters: 10, sample_per_cluster: spc, seed: 9 };
        let calls = std::cell::Cell::new(0);
        let cg = g.train(&data, d, &p, &|| calls.set(calls.get() + 1)).expect("train");
        assert_eq!(calls.get(), p.iters, "progress once per iteration");
        assert_eq!(cg.len(), k * d);
        assert_unit_rows(&cg, d, "cuda");
        assert_eq!(cg, g.train(&data, d, &p, &|| {}).unwrap(), "deterministic for a seed");
        let cc = CpuCompute.train(&data, d, &p, &|| {}).unwrap();
        let (qg, qc) = (quality(&data, &cg, d), quality(&data, &cc, d));
        eprintln!("n {n} d {d} k {k}: quality cuda {qg:.5} cpu {qc:.5}");
        // Same sample, same initial rows: only the f32 sum order differs (fixed point on the
        // device), so the quality agrees closely both ways and most centroids coincide.
        assert!((qg - qc).abs() <= 0.002, "n {n} d {d} k {k}: quality cuda {qg} vs cpu {qc}");
        let close = cg.chunks(d).zip(cc.chunks(d)).filter(|(a, b)| a.iter().zip(*b).all(|(x, y)| (x - y).abs() < 1e-3)).count();
        assert!(close * 10 >= k * 9, "n {n} d {d} k {k}: only {close} of {k} centroids within 1e-3 of the cpu's");
        // A different seed gives other centroids (the seed reaches the device).
        let other = g.train(&data, d, &KMeansParams { seed: 10, ..p.clone() }, &|| {}).unwrap();
        assert_ne!(other, cg);
    }
}

#[test]
fn train_init_is_rows_of_the_sample_and_small_shapes_work() {
    let Some(g) = gpu(64 << 20) else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // iters = 0: the initial centroids, each a normalized data row, all distinct on blobs,
    // and exactly the CPU's (the same `Seeds` draws, the same row normalization).
    let (n, d, k) = (2000, 17, 50);
    let data = blobs(&mut rng, n, d, 60, 0.2);
    let x = normalized(&data, d);
    let c = g.train(&data, d, &KMeansParams { k, iters: 0, sample_per_cluster: 8, seed: 1 }, &|| {}).unwrap();
    let rows: std::collections::HashSet<Vec<u32>> = x.chunks(d).map(|r| r.iter().map(|v| v.to_bits()).collect()).collect();
    let mut seen = std::collections::HashSet::new();
    for row in c.chunks(d) {
        let bits: Vec<u32> = row.iter().map(|v| v.to_bits()).collect();
        assert!(rows.contains(&bits), "a seed that is not a normalized data row");
        seen.insert(bits);
    }
    assert_eq!(seen.len(), k, "distinct rows on distinct data");
    let p0 = KMeansParams { k, iters: 0, sample_per_cluster: 8, seed: 1 };
    assert_eq!(c, CpuCompute.train(&data, d, &p0, &|| {}).unwrap(), "the cpu's initial centroids, bit for bit");
    // n = 1, n < k, k = 1, D = 1.
    for (n, d, k) in [(1, 4, 1), (1, 4, 3), (5, 2, 12), (50, 1, 3), (300, 8, 1)] {
        let data: Vec<f32> = (0..n * d).map(|_| rng.random_range(0.1f32..1.0)).collect();
        let p = KMeansParams { k, iters: 4, sample_per_cluster: 16, seed: 5 };
        let c = g.train(&data, d, &p, &|| {}).unwrap();
        assert_eq!(c.len(), k * d);
        assert_unit_rows(&c, d, &format!("n {n} d {d} k {k}"));
    }
    assert!(matches!(
        g.train(&[], 4, &KMeansParams { k: 2, iters: 1, sample_per_cluster: 4, seed: 0 }, &|| {}),
        Err(silica::Error::Param { .. })
    ));
    assert!(matches!(
        g.train(&[1.0; 8], 4, &KMeansParams { k: 0, iters: 1, sample_per_cluster: 4, seed: 0 }, &|| {}),
        Err(silica::Error::Param { .. })
    ));
    assert!(matches!(
        g.train(&[1.0; 7], 4, &KMeansParams { k: 1, iters: 1, sample_per_cluster: 4, seed: 0 }, &|| {}),
        Err(silica::Error::Param { .. })
    ));
}

#[test]
fn train_repairs_empty_clusters() {
    let Some(g) = gpu(64 << 20) else { return };
    // 4 distinct directions, 50 copies each, k = 8: the initial rows must repeat values, the
    // repeated centroids lose every row to the lower copy, and the repair splits them.
    let d = 6;
    let mut data = Vec::new();
    for i in 0..200 {
        for t in 0..d {
            data.push(if t == i % 4 { 1.0 } else { 0.1 * (t as f32) });
        }
    }
    let distinct =
        |c: &[f32]| c.chunks(d).map(|r| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<std::collections::HashSet<_>>().len();
    let p = KMeansParams { k: 8, iters: 0, sample_per_cluster: 100, seed: 4 };
    let seeds = g.train(&data, d, &p, &|| {}).unwrap();
    assert!(distinct(&seeds) <= 4, "seeds repeat rows");
    for iters in [1, 3] {
        let p = KMeansParams { iters, ..p.clone() };
        let c = g.train(&data, d, &p, &|| {}).unwrap();
        assert_unit_rows(&c, d, "cuda");
        assert_eq!(distinct(&c), 8, "every empty cluster split off a large one (iters {iters})");
        let cpu = CpuCompute.train(&data, d, &p, &|| {}).unwrap();
        assert_eq!(distinct(&cpu), 8);
        // Every list is non-empty after the repair on both devices.
        let x = normalized(&data, d);
        for (name, cc) in [("cuda", &c), ("cpu", &cpu)] {
            let mut used = [false; 8];
            kmeans::assign(&x, cc, d).iter().for_each(|&(j, _)| used[j as usize] = true);
            assert!(used.iter().filter(|&&u| u).count() >= 4, "{name}: lists used {used:?}");
        }
    }
}

/// H200 timing (ignored in CI): assign 20M x 128 codes to 4096 lists, train 4096
/// centroids on 262144 x 128 (64 rows per cluster, 10 iterations), both against the CPU
/// reference's results (assignment spot-checked on 4096 rows by the integer rule; train
/// by mean best similarity). Prints one JSON line.
#[test]
#[ignore]
fn timing_assign_20m_and_train_262k() {
    let Some(g) = gpu(64 << 20) else { return };
    let rows: usize = std::env::var("SILICA_TIMING_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000_000);
    let (d, l) = (128, 4096);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let cf: Vec<f32> = (0..l * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let c = quantize(&cf, d);
    let t = Instant::now();
    let mut codes = vec![0i8; rows * d];
    codes.par_chunks_mut(1 << 20).enumerate().for_each(|(i, ch)| {
        let mut r = ChaCha8Rng::seed_from_u64(1000 + i as u64);
        ch.iter_mut().for_each(|v| *v = r.random_range(-127..=127));
    });
    let gen_s = t.elapsed().as_secs_f64();
    let _ = g.assign(&codes[..1024 * d], &c).unwrap(); // staging buffers, first launch
    let t = Instant::now();
    let a = g.assign(&codes, &c).unwrap();
    let assign_s = t.elapsed().as_secs_f64();
    let mut bad = 0;
    for _ in 0..4096 {
        let i = rng.random_range(0..rows);
        let (want, _) = by_hand(&codes[i * d..(i + 1) * d], &c);
        bad += (want[0] != a[i]) as usize;
    }
    drop(codes);
    // Train at the production shape.
    let (n, k) = (262_144, 4096);
    let data = blobs(&mut rng, n, d, 8192, 0.4);
    let p = KMeansParams { k, iters: 10, sample_per_cluster: 64, seed: 7 };
    let t = Instant::now();
    let _ = g.train(&data, d, &KMeansParams { iters: 0, ..p.clone() }, &|| {}).unwrap();
    let init_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cg = g.train(&data, d, &p, &|| {}).unwrap();
    let train_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cc = CpuCompute.train(&data, d, &p, &|| {}).unwrap();
    let cpu_train_s = t.elapsed().as_secs_f64();
    let (qg, qc) = (quality(&data, &cg, d), quality(&data, &cc, d));
    let macs = rows as f64 * l as f64 * d as f64;
    println!(
        "{{\"device\":\"{}\",\"assign_rows\":{rows},\"lists\":{l},\"dim\":{d},\"gen_s\":{gen_s:.3},\"assign_s\":{assign_s:.4},\"assign_tmacs\":{:.2},\"assign_spot_mismatches\":{bad},\"train_rows\":{n},\"k\":{k},\"iters\":10,\"train_init_s\":{init_s:.4},\"train_s\":{train_s:.4},\"cpu_train_s\":{cpu_train_s:.3},\"quality_cuda\":{qg:.5},\"quality_cpu\":{qc:.5}}}",
        g.device_name(),
        macs / assign_s / 1e12
    );
    assert_eq!(bad, 0, "assignment spot check");
    assert!((qg - qc).abs() < 0.01, "quality cuda {qg} vs cpu {qc}");
}
