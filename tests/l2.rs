//! The `l2` metric end to end: a clustered, off-centre catalog built with `--metric l2`
//! defaults (plain k-means, the l2 assignment rule, the build-time nprobe calibration),
//! searched with the calibrated default nprobe and `refine`, against brute force over the
//! original f32 vectors; scores are the negated squared distances, best (nearest) first;
//! the artifact round-trips its metric and `items.sqnorms`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::backend::cpu::Cpu;
use silica::graph::calibrate::{CalibrateOptions, calibrate};
use silica::graph::{Executor, Search, SearchParams, SearchRequest};
use silica::model::attributes::parse_jsonl;
use silica::model::npy::Matrix;
use silica::{BuildParams, IndexBuilder, Metric};
use std::sync::Arc;

/// `n` rows (and `nq` queries) around 64 centres spread over [-10, 10]^d + 5, with
/// per-cluster spreads 0.5..2: norms differ a lot, so inner product would rank wrongly.
fn clustered(n: usize, nq: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..64 * d).map(|_| rng.random_range(-10.0f32..10.0) + 5.0).collect();
    let spread: Vec<f32> = (0..64).map(|_| rng.random_range(0.5f32..2.0)).collect();
    let point = |rng: &mut ChaCha8Rng| -> Vec<f32> {
        let c = rng.random_range(0..64);
        (0..d).map(|t| centres[c * d + t] + spread[c] * (rng.random::<f32>() + rng.random::<f32>() + rng.random::<f32>() - 1.5)).collect()
    };
    let x = (0..n).flat_map(|_| point(&mut rng)).collect();
    let q = (0..nq).flat_map(|_| point(&mut rng)).collect();
    (x, q)
}

fn sqdist(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

#[test]
fn l2_reaches_recall_at_the_calibrated_default_nprobe() {
    let (n, nq, d, k) = (20_000, 200, 32, 10);
    let (x, queries) = clustered(n, nq, d, 7);
    let jsonl: String = (0..n).map(|i| format!("{{\"id\": \"r{i}\", \"g\": \"{}\"}}\n", i % 10)).collect();
    let table = parse_jsonl(jsonl.as_bytes(), std::path::Path::new("a.jsonl"), &[]).unwrap();
    let p = BuildParams { metric: Metric::L2, ..Default::default() };
    let mut ix = IndexBuilder::new(p).build(Matrix { rows: n, dim: d, data: x.clone(), was_f16: false }, table).unwrap();
    assert_eq!(ix.metric, Metric::L2);
    assert_eq!(ix.sqnorms.len(), n);
    // The build-time calibration, as `silica build` runs it.
    let opts = CalibrateOptions { target_recall: 0.99, k: 10, queries: 500, seed: 1 };
    let cal = calibrate(&Executor::new(Cpu, Arc::new(ix.clone())).unwrap(), &opts).unwrap();
    let nprobe = cal.nprobe;
    ix.calibration = Some(cal);
    assert!(nprobe < ix.nlist(), "calibrated nprobe {nprobe} of {}", ix.nlist());

    // Round trip through the artifact bytes: metric and norms survive, answers equal.
    let bytes = silica::model::format::to_bytes(&ix).unwrap();
    let back = silica::model::format::from_bytes(&bytes, std::path::Path::new("mem")).unwrap();
    assert_eq!(back.metric, Metric::L2);
    assert_eq!(&back.sqnorms[..], &ix.sqnorms[..]);

    let ex = Executor::new(Cpu, Arc::new(back)).unwrap();
    let params = SearchParams { k, ..Default::default() };
    let got = ex.search(&SearchRequest { queries: &queries, filters: &[], params }).unwrap();
    let mut hits = 0usize;
    for (qi, r) in got.iter().enumerate() {
        let q = &queries[qi * d..(qi + 1) * d];
        let mut truth: Vec<f64> = (0..n).map(|i| sqdist(q, &x[i * d..(i + 1) * d])).collect();
        truth.sort_by(f64::total_cmp);
        let kth = truth[k - 1];
        assert_eq!(r.rows.len(), k);
        for (j, (&row, &s)) in r.rows.iter().zip(&r.scores).enumerate() {
            let dist = sqdist(q, &x[row as usize * d..(row as usize + 1) * d]);
            // scores are -distance² (of the f16 embedding: within its rounding), best first.
            assert!((s as f64 + dist).abs() <= 1e-2 * dist.max(1.0), "query {qi} rank {j}: score {s} vs -{dist}");
            assert!(j == 0 || r.scores[j - 1] >= s, "best first");
            if dist <= kth * (1.0 + 1e-3) + 1e-6 {
                hits += 1;
            }
        }
    }
    let recall = hits as f64 / (nq * k) as f64;
    eprintln!("l2: recall@10 {recall:.4} at the calibrated nprobe {nprobe} of {} lists", ex.index().nlist());
    assert!(recall >= 0.99, "recall@10 {recall} at the calibrated nprobe {nprobe}");

    // The inner product on the same data does not find these neighbours (the metric matters).
    let table = parse_jsonl(jsonl.as_bytes(), std::path::Path::new("a.jsonl"), &[]).unwrap();
    let ip = IndexBuilder::new(BuildParams { metric: Metric::Ip, ..Default::default() })
        .build(Matrix { rows: n, dim: d, data: x.clone(), was_f16: false }, table)
        .unwrap();
    let ip = Executor::new(Cpu, Arc::new(ip)).unwrap();
    let got = ip
        .search(&SearchRequest { queries: &queries[..d], filters: &[], params: SearchParams { k, nprobe: Some(64), ..Default::default() } })
        .unwrap();
    let q = &queries[..d];
    let mut truth: Vec<f64> = (0..n).map(|i| sqdist(q, &x[i * d..(i + 1) * d])).collect();
    truth.sort_by(f64::total_cmp);
    let ip_hits =
        got[0].rows.iter().filter(|&&row| sqdist(q, &x[row as usize * d..(row as usize + 1) * d]) <= truth[k - 1] * (1.0 + 1e-3)).count();
    assert!(ip_hits < k, "ip ranks by inner product, not distance");
}

mod common;
mod serve_common;

/// `silica serve` on an l2 index (every backend here): an upserted item is found nearest
/// with score -distance², through the fresh segment and after compaction, and the backends
/// agree bit for bit on the int8 answers.
#[test]
fn l2_index_serves_upserts_and_compaction() {
    use serde_json::json;
    let (n, d) = (3000, 16);
    let (x, queries) = clustered(n, 8, d, 11);
    let dir = tempfile::tempdir().unwrap();
    let jsonl: String = (0..n).map(|i| format!("{{\"id\": \"r{i}\"}}\n")).collect();
    let table = parse_jsonl(jsonl.as_bytes(), std::path::Path::new("a.jsonl"), &[]).unwrap();
    let ix = IndexBuilder::new(BuildParams { metric: Metric::L2, nlist: Some(16), ..Default::default() })
        .build(Matrix { rows: n, dim: d, data: x.clone(), was_f16: false }, table)
        .unwrap();
    let path = dir.path().join("l2.silica");
    silica::model::format::save(&ix, &path).unwrap();
    let gpus = common::gpu_backends();
    let servers: Vec<(&str, serve_common::Server)> = std::iter::once("cpu")
        .chain(gpus)
        .map(|b| {
            let p = dir.path().join(format!("{b}.silica"));
            std::fs::copy(&path, &p).unwrap();
            (b, serve_common::Server::start(&p, &["--backend", b, "--compact-threshold", "0"]))
        })
        .collect();
    let q: Vec<f32> = queries[..d].to_vec();
    let near: Vec<f32> = q.iter().map(|v| v + 0.01).collect();
    // Refine scores the stored f16 embedding.
    let want = -(near.iter().zip(&q).map(|(a, b)| (half::f16::from_f32(*a).to_f32() - b).powi(2)).sum::<f32>());
    for (_, s) in &servers {
        assert_eq!(s.post("/v1/items", &json!({"items": [{"id": "near", "vector": near}]})).0, 200);
    }
    let check = |step: &str| {
        let answers: Vec<serde_json::Value> = servers.iter().map(|(_, s)| s.search(&json!({"vector": q, "k": 5, "nprobe": 4}))).collect();
        for ((name, _), a) in servers.iter().zip(&answers) {
            assert_eq!(a["ids"][0], json!("near"), "{step} on {name}: {a}");
            let s0 = a["scores"][0].as_f64().unwrap() as f32;
            assert!((s0 - want).abs() <= 1e-3 * want.abs().max(1e-3), "{step} on {name}: score {s0} vs {want}");
        }
        let int8: Vec<serde_json::Value> =
            servers.iter().map(|(_, s)| s.search(&json!({"vector": q, "k": 20, "nprobe": 3, "rerank": "none"}))).collect();
        for ((name, _), a) in servers.iter().zip(&int8).skip(1) {
            assert_eq!((&a["ids"], &a["scores"]), (&int8[0]["ids"], &int8[0]["scores"]), "{step}: {name} vs cpu");
        }
    };
    check("fresh");
    for (_, s) in &servers {
        assert_eq!(s.post("/v1/compact", &json!({})).0, 200);
    }
    check("compacted");
}
