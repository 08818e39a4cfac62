//! `model` rerank: a multi-task MLP with random weights, checked against a float64
//! reference, both directly and through the executor and the safetensors round trip.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::backend::cpu::Cpu;
use silica::graph::{Executor, RerankMode, Search, SearchParams, SearchRequest};
use silica::rerank::{Dense, RerankModel};
use std::sync::Arc;

fn random_dense(rng: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Dense {
    let s = 1.0 / (inputs as f32).sqrt();
    Dense {
        inputs,
        outputs,
        weight: (0..inputs * outputs).map(|_| rng.random_range(-s..s)).collect(),
        bias: (0..outputs).map(|_| rng.random_range(-0.1..0.1)).collect(),
    }
}

fn random_model(seed: u64, input: usize, hidden: &[usize], tasks: usize) -> RerankModel {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layers = Vec::new();
    let mut width = input;
    for &h in hidden {
        layers.push(random_dense(&mut rng, width, h));
        width = h;
    }
    let heads = random_dense(&mut rng, width, tasks);
    let task_weights = (0..tasks).map(|_| rng.random_range(0.0..1.0)).collect();
    RerankModel { layers, heads, task_weights }
}

/// Float64 reference of the documented math.
fn reference(m: &RerankModel, x: &[f32], w: &[f32]) -> f64 {
    let mut a: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let dense = |l: &Dense, a: &[f64]| -> Vec<f64> {
        (0..l.outputs).map(|o| l.bias[o] as f64 + (0..l.inputs).map(|i| l.weight[o * l.inputs + i] as f64 * a[i]).sum::<f64>()).collect()
    };
    for l in &m.layers {
        a = dense(l, &a).into_iter().map(|v| v.max(0.0)).collect();
    }
    dense(&m.heads, &a).iter().zip(w).map(|(z, &wt)| wt as f64 / (1.0 + (-z).exp())).sum()
}

#[test]
fn mlp_matches_float64_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (seed, hidden, tasks) in [(1u64, vec![], 1usize), (2, vec![16], 3), (3, vec![33, 7], 5)] {
        let m = random_model(seed, 21, &hidden, tasks);
        for _ in 0..20 {
            let x: Vec<f32> = (0..21).map(|_| rng.random_range(-2.0..2.0)).collect();
            let got = m.score(&x, &m.task_weights, None);
            approx::assert_relative_eq!(got as f64, reference(&m, &x, &m.task_weights), max_relative = 1e-5);
        }
    }
}

#[test]
fn executor_model_rerank_orders_by_composite_and_roundtrips() {
    let d = 8;
    let (mut ix, _) = random_index(400, d, 4, 7, &["rank"]);
    let model = random_model(9, 2 * d + 1, &[12], 3);
    ix.rerank = Some(model.clone());
    // Round trip through the artifact.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.silica");
    silica::model::format::save(&ix, &path).unwrap();
    let loaded = silica::model::format::load(&path).unwrap();
    assert_eq!(loaded.rerank.as_ref(), Some(&model));
    let ix = Arc::new(loaded);
    let ex = Executor::new(Cpu, ix.clone()).unwrap();
    let q = random_queries(3, d, 5);
    let weights = vec![0.2, 0.5, 0.3];
    let params = SearchParams { k: 10, nprobe: Some(4), k0: Some(400), rerank: RerankMode::Model, task_weights: Some(weights.clone()) };
    let got = ex.search(&SearchRequest { queries: &q, filters: &[], params }).unwrap();
    for b in 0..3 {
        // Reference: composite of every item in f64, top 10.
        let mut want: Vec<(f64, u64)> = (0..ix.len())
            .map(|r| {
                let mut x: Vec<f32> = q[b * d..(b + 1) * d].to_vec();
                x.extend(ix.embeddings.as_ref().unwrap()[r * d..(r + 1) * d].iter().map(|h| h.to_f32()));
                x.push(ix.features.as_ref().unwrap()[r]);
                (reference(&model, &x, &weights), ix.source_rows[r])
            })
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (i, (&row, &score)) in got[b].rows.iter().zip(&got[b].scores).enumerate() {
            assert!(want.iter().any(|w| w.1 == row), "row {row} is a real item");
            approx::assert_relative_eq!(score as f64, want[i].0, max_relative = 1e-5);
        }
    }
    // Wrong number of task weights is a typed error.
    let bad = SearchParams { k: 1, nprobe: None, k0: None, rerank: RerankMode::Model, task_weights: Some(vec![1.0]) };
    assert!(matches!(ex.search(&SearchRequest { queries: &q, filters: &[], params: bad }), Err(silica::Error::Param { .. })));
}
