//! Shared helpers for integration tests: random corpora built through the real builder.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::model::attributes::parse_jsonl;
use silica::model::npy::Matrix;
use silica::{BuildParams, Index, IndexBuilder};
use std::path::Path;

pub const SECTIONS: &[&str] = &["libs", "games", "python", "editors", "science"];
pub const TAGS: &[&str] = &["role::program", "role::shared-lib", "interface::commandline", "game::arcade", "field::biology"];

/// `n` random rows of dimension `d`: JSONL attributes (`id`, `section`, `tags`, `rank`).
pub fn random_corpus(n: usize, d: usize, seed: u64) -> (Matrix, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut jsonl = String::new();
    for i in 0..n {
        let section = SECTIONS[rng.random_range(0..SECTIONS.len())];
        let tags: Vec<&str> = TAGS.iter().copied().filter(|_| rng.random_bool(0.3)).collect();
        let rank = rng.random_range(0..100);
        jsonl.push_str(&serde_json::json!({"id": format!("item-{i}"), "section": section, "tags": tags, "rank": rank}).to_string());
        jsonl.push('\n');
    }
    (Matrix { rows: n, dim: d, data, was_f16: false }, jsonl)
}

/// Build an index over a random corpus.
pub fn random_index(n: usize, d: usize, nlist: usize, seed: u64, features: &[&str]) -> (Index, Matrix) {
    let (m, jsonl) = random_corpus(n, d, seed);
    let feats: Vec<String> = features.iter().map(|s| s.to_string()).collect();
    let table = parse_jsonl(jsonl.as_bytes(), Path::new("random.jsonl"), &feats).unwrap();
    let params = BuildParams { nlist: Some(nlist), features: feats, seed, ..Default::default() };
    (IndexBuilder::new(params).build(m.clone(), table).unwrap(), m)
}

/// Random query rows.
pub fn random_queries(b: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37);
    (0..b * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// GPU backends this build can open here (`wgpu`, `cuda`), asserting those named in
/// `SILICA_REQUIRE_BACKENDS` are among them.
pub fn gpu_backends() -> Vec<&'static str> {
    let required = std::env::var("SILICA_REQUIRE_BACKENDS").unwrap_or_default();
    let required = |b: &str| required.split(',').any(|n| n.trim() == b);
    let mut out = Vec::new();
    #[cfg(feature = "wgpu")]
    match silica::backend::wgpu::Wgpu::new(Default::default()) {
        Ok(_) => out.push("wgpu"),
        Err(e) => {
            assert!(!required("wgpu"), "wgpu is required (SILICA_REQUIRE_BACKENDS) but unavailable: {e}");
            eprintln!("skipping wgpu: {e}");
        }
    }
    #[cfg(feature = "cuda")]
    if silica::backend::cuda::available() {
        out.push("cuda");
    } else {
        assert!(!required("cuda"), "cuda is required (SILICA_REQUIRE_BACKENDS) but unavailable");
    }
    out
}
