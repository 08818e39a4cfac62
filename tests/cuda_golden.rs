//! Golden outputs: the CUDA backend's stages 1-3 (probe, filter mask, scan top-K0),
//! count and select are bit-identical to the CPU reference backend; rerank agrees within
//! a tolerance. Random indexes are built directly (list sizes with empty and size-1
//! lists, N not a multiple of 32/64, duplicate rows and centroids for exact ties, zero
//! rows, tombstones), with AND/OR/NOT/IN, selective and empty filters, k0 from 1 to
//! 262144 and k0 above the candidates. GPU buffers are poisoned before every stage.
//! Skips (printing why) when no CUDA device is available.
#![cfg(feature = "cuda")]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::backend::cpu::Cpu;
use silica::backend::cuda::{self, Cuda, Tuning};
use silica::backend::{Backend, Candidates, Rerank};
use silica::filter::{Filter, Plan};
use silica::graph::prepare_queries;
use silica::model::{Attributes, BloomParams, BloomPlanes, FieldSchema, I8Matrix, Index, Metric, Schema};
use std::sync::Arc;

fn gpu() -> Option<Cuda> {
    if !cuda::available() {
        eprintln!("SKIP: no CUDA device (libcuda cannot be loaded or no GPU)");
        return None;
    }
    Some(Cuda::new().expect("CUDA backend starts on an available device"))
}

const TAGS: &[&str] = &[
    "field::biology",
    "game::arcade",
    "interface::commandline",
    "role::program",
    "role::shared-lib",
    "use::editing",
    "works-with::text",
    "x11::application",
];
const SECTIONS: &[&str] = &["editors", "games", "libs", "python", "science"];

const FILTERS: &[&str] = &[
    "",
    r#"section = "libs""#,
    r#"tags = "role::program" AND NOT section = "games""#,
    r#"section IN ("python", "science") OR tags = "field::biology""#,
    r#"section = "no-such-value""#,
    r#"NOT tags IN ("role::program", "role::shared-lib")"#,
    r#"(section = "libs" OR section = "games") AND (tags = "use::editing" OR tags = "x11::application") AND NOT tags = "game::arcade""#,
    r#"section = "games" AND tags = "field::biology" AND tags = "game::arcade""#,
];

struct Spec {
    n: usize,
    d: usize,
    l: usize,
    live: bool,
    features: usize,
    seed: u64,
}

/// A random index with irregular lists, ties, zero rows, attributes and Bloom planes.
fn make_index(s: &Spec) -> Index {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let (d, l) = (s.d, s.l);
    let mut sizes: Vec<usize> = (0..l)
        .map(|_| match rng.random_range(0..10) {
            0 => 0,
            1 => 1,
            _ => rng.random_range(1..=2 * s.n / l + 1),
        })
        .collect();
    if sizes.iter().sum::<usize>() % 32 == 0 {
        sizes[0] += 1;
    }
    let n: usize = sizes.iter().sum();
    let mut list_offsets = vec![0u64];
    for sz in &sizes {
        list_offsets.push(list_offsets.last().unwrap() + *sz as u64);
    }
    let mut codes: Vec<i8> = (0..n * d).map(|_| rng.random_range(-127..=127)).collect();
    let mut scale: Vec<f32> = (0..n).map(|_| rng.random_range(0.001f32..0.01)).collect();
    for r in 0..n {
        match rng.random_range(0..100) {
            0 => {
                codes[r * d..(r + 1) * d].fill(0);
                scale[r] = 0.0;
            }
            1..=4 if r > 0 => {
                // Exact duplicate of an earlier row: equal scores, ties broken by row.
                let src = rng.random_range(0..r);
                let row: Vec<i8> = codes[src * d..(src + 1) * d].to_vec();
                codes[r * d..(r + 1) * d].copy_from_slice(&row);
                scale[r] = scale[src];
            }
            _ => {}
        }
    }
    let mut ccodes: Vec<i8> = (0..l * d).map(|_| rng.random_range(-127..=127)).collect();
    let mut cscale: Vec<f32> = (0..l).map(|_| rng.random_range(0.001f32..0.01)).collect();
    if l >= 3 {
        // Two identical centroids: the probe must break the tie by lower list id.
        let c0: Vec<i8> = ccodes[..d].to_vec();
        ccodes[2 * d..3 * d].copy_from_slice(&c0);
        cscale[2] = cscale[0];
    }
    let schema = Schema {
        fields: vec![
            FieldSchema { name: "section".into(), multi: false, base: 0, values: SECTIONS.iter().map(|s| s.to_string()).collect() },
            FieldSchema {
                name: "tags".into(),
                multi: true,
                base: SECTIONS.len() as u32,
                values: TAGS.iter().map(|s| s.to_string()).collect(),
            },
        ],
        columns: Vec::new(),
    };
    let mut aoff = vec![0u64];
    let mut avals = Vec::new();
    for _ in 0..n {
        avals.push(rng.random_range(0..SECTIONS.len()) as u32);
        for t in 0..TAGS.len() {
            if rng.random_bool(0.3) {
                avals.push((SECTIONS.len() + t) as u32);
            }
        }
        aoff.push(avals.len() as u64);
    }
    let attrs = Attributes { schema, offsets: aoff.into(), values: avals.into() };
    let params = BloomParams { bits: 256, hashes: 3, seed: 11 };
    let bloom = BloomPlanes::build(params, n, |r| {
        attrs
            .row(r)
            .iter()
            .flat_map(|&v| {
                let (f, val) = attrs.schema.describe(v).unwrap();
                params.positions(f, val)
            })
            .collect()
    });
    let words = n.div_ceil(64);
    let live = s.live.then(|| {
        let mut v: Vec<u64> = (0..words).map(|_| rng.random::<u64>() | rng.random::<u64>() | rng.random::<u64>()).collect();
        if !n.is_multiple_of(64) {
            // Bits past N may be set in a live bitset: stage 2 must still mask them.
            v[words - 1] |= !0u64 << (n % 64);
        }
        v
    });
    let embeddings: Option<Vec<half::f16>> = Some((0..n * d).map(|_| half::f16::from_f32(rng.random_range(-1.0f32..1.0))).collect());
    let features: Option<Vec<f32>> = (s.features > 0).then(|| (0..n * s.features).map(|_| rng.random_range(0.0f32..1.0)).collect());
    Index {
        dim: d,
        metric: Metric::Ip,
        centroids: vec![0.0; l * d],
        centroid_codes: I8Matrix { rows: l, dim: d, codes: ccodes.into(), scale: cscale.into() },
        list_offsets,
        items: I8Matrix { rows: n, dim: d, codes: codes.into(), scale: scale.into() },
        embeddings: embeddings.map(Into::into),
        features: features.map(Into::into),
        feature_names: (0..s.features).map(|i| format!("f{i}")).collect(),
        ids: (0..n).map(|i| format!("i{i}")).collect(),
        source_rows: (0..n as u64).collect(),
        bloom,
        attrs,
        rerank: None,
        live,
        calibration: None,
        sqnorms: Default::default(),
        columns: Default::default(),
    }
}

fn queries(ix: &Index, b: usize, seed: u64) -> silica::backend::QueryBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let q: Vec<f32> = (0..b * ix.dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    prepare_queries(ix, &q).unwrap()
}

fn filters(ix: &Index) -> Vec<Filter> {
    FILTERS.iter().map(|f| Filter::compile(f, &ix.attrs.schema, &ix.bloom.params).unwrap()).collect()
}

/// Bit-for-bit comparison with the first difference named.
fn assert_cands_eq(got: &Candidates, want: &Candidates, what: &str) {
    assert_eq!(got.k, want.k, "{what}: k");
    assert_eq!(got.counts, want.counts, "{what}: counts");
    for i in 0..want.rows.len() {
        if got.rows[i] != want.rows[i] || got.scores[i].to_bits() != want.scores[i].to_bits() {
            panic!(
                "{what}: slot {i} (query {}, rank {}): got ({}, {:e}) want ({}, {:e})",
                i / want.k,
                i % want.k,
                got.rows[i],
                got.scores[i],
                want.rows[i],
                want.scores[i]
            );
        }
    }
}

const POISON: usize = 96 << 20;

/// Stages 1-3 (+ count, rerank none, select) on both backends, compared bit for bit.
#[allow(clippy::too_many_arguments)]
fn check(cuda: &Cuda, ix: &Arc<Index>, b: usize, nprobe: usize, k0s: &[usize], fsel: &[usize], seed: u64, label: &str) {
    let cpu = Cpu;
    let rc = cpu.upload(ix).unwrap();
    let rg = cuda.upload(ix).unwrap();
    let q = queries(ix, b, seed);
    let fs = filters(ix);
    let plans: Vec<&Plan> = (0..b).map(|i| &fs[fsel[i % fsel.len()]].plan).collect();
    let label = format!("{label} (N={}, D={}, L={}, B={b}, nprobe={nprobe}, live={})", ix.len(), ix.dim, ix.nlist(), ix.live.is_some());

    let pc = cpu.probe(&rc, &q, nprobe).unwrap();
    cuda.poison_pool(POISON).unwrap();
    let pg = cuda.probe(&rg, &q, nprobe).unwrap();
    assert_eq!(cuda.read_probes(&pg).unwrap(), pc, "{label}: probes");

    let mc = cpu.filter(&rc, &plans, &pc).unwrap();
    cuda.poison_pool(POISON).unwrap();
    let mg = cuda.filter(&rg, &plans, &pg).unwrap();
    let mgh = cuda.read_mask(&mg).unwrap();
    assert_eq!(mgh.offsets, mc.offsets, "{label}: mask offsets");
    if let Some(i) = (0..mc.words.len()).find(|&i| mgh.words[i] != mc.words[i]) {
        panic!("{label}: mask word {i}: got {:#x} want {:#x}", mgh.words[i], mc.words[i]);
    }

    let all_plans: Vec<&Plan> = fs.iter().map(|f| &f.plan).collect();
    assert_eq!(cuda.count(&rg, &all_plans).unwrap(), cpu.count(&rc, &all_plans).unwrap(), "{label}: count");

    for &k0 in k0s {
        let sc = cpu.scan(&rc, &q, &pc, &mc, &plans, k0).unwrap();
        cuda.poison_pool(POISON).unwrap();
        let sg = cuda.scan(&rg, &q, &pg, &mg, &plans, k0).unwrap();
        assert_cands_eq(&cuda.read_cands(&sg).unwrap(), &sc, &format!("{label}: scan k0={k0}"));
        assert_eq!(cuda.read_counts(&sg).unwrap(), sc.counts);
        // Stage 4 `none` and stage 5 are exact too.
        let rc4 = cpu.rerank(&rc, &q, sc, &Rerank::None).unwrap();
        let rg4 = cuda.rerank(&rg, &q, sg, &Rerank::None).unwrap();
        assert_cands_eq(&cuda.read_cands(&rg4).unwrap(), &rc4, &format!("{label}: rerank none k0={k0}"));
        for k in [1, k0 / 3 + 1, k0] {
            let s5c = cpu.select(rc4.clone(), k).unwrap();
            let rg4b = cuda.rerank(&rg, &q, cuda.scan(&rg, &q, &pg, &mg, &plans, k0).unwrap(), &Rerank::None).unwrap();
            cuda.poison_pool(POISON).unwrap();
            let s5g = cuda.select(rg4b, k).unwrap();
            assert_cands_eq(&cuda.read_cands(&s5g).unwrap(), &s5c, &format!("{label}: select k={k} of k0={k0}"));
        }
    }
}

#[test]
fn small_stages_match_cpu() {
    let Some(cuda) = gpu() else { return };
    let specs = [
        Spec { n: 1000, d: 20, l: 37, live: false, features: 0, seed: 1 },
        Spec { n: 1500, d: 37, l: 13, live: true, features: 0, seed: 2 },
        Spec { n: 3000, d: 128, l: 23, live: true, features: 0, seed: 3 },
        Spec { n: 40, d: 16, l: 1, live: false, features: 0, seed: 4 },
        Spec { n: 700, d: 200, l: 9, live: false, features: 0, seed: 5 },
    ];
    let all: Vec<usize> = (0..FILTERS.len()).collect();
    for s in &specs {
        let ix = Arc::new(make_index(s));
        let l = ix.nlist();
        for (b, nprobe) in [(1, 1), (7, l.div_ceil(3)), (33, l)] {
            check(&cuda, &ix, b, nprobe, &[1, 10, 100, 3000], &all, s.seed * 10 + b as u64, "small");
            // No filter at all: the mask is implicit when every row is live.
            check(&cuda, &ix, b, nprobe, &[1, 100, 3000], &[0], s.seed * 10 + b as u64 + 5, "small, no filter");
        }
    }
}

#[test]
fn small_threshold_and_fallback_paths_match_cpu() {
    let Some(cuda) = gpu() else { return };
    let all: Vec<usize> = (0..FILTERS.len()).collect();
    let ix = Arc::new(make_index(&Spec { n: 6000, d: 64, l: 16, live: true, features: 0, seed: 21 }));
    let ix2 = Arc::new(make_index(&Spec { n: 6000, d: 64, l: 16, live: false, features: 0, seed: 22 }));
    // A small candidate buffer forces the sampled threshold (and its overflow repair).
    let d = Tuning::default();
    for t in [
        Tuning { cand_min: 8, sample_every: 1, ..d },
        Tuning { cand_min: 64, sample_every: 2, tile_words: 3, ..d },
        Tuning { force_fallback: true, ..d },
        Tuning { cand_min: 8, sample_every: 3, force_fallback: true, tile_words: 1, ..d },
        // The generic (any-D) kernels on a D <= 128 index, tiles of several words.
        Tuning { fast: false, tile_words: 3, cand_min: 64, sample_every: 5, ..d },
        Tuning { fast: false, tile_words: 1, ..d },
        // The per-tile (not streamed) fast pipeline, tiles of 1, 3 and 4 words.
        Tuning { stream: false, tile_words: 1, cand_min: 8, ..d },
        Tuning { stream: false, tile_words: 3, pdl: false, fuse_prepare: false, ..d },
        Tuning { fuse_prepare: false, cand_min: 8, sample_every: 2, dense_filter: false, ..d },
        Tuning { stream: true, tile_words: 4, cand_min: 32, sample_every: 2, ..d },
        // Candidates re-read from global memory instead of shared memory.
        Tuning { smem_keys: 0, cand_min: 100, ..d },
    ] {
        cuda.set_tuning(t);
        check(&cuda, &ix, 9, 6, &[1, 7, 50, 500, 7000], &all, 77, &format!("tuning {t:?}"));
        check(&cuda, &ix2, 9, 6, &[1, 50, 7000], &[0], 78, &format!("no filter, tuning {t:?}"));
    }
}

#[test]
fn threshold_path_at_scale_matches_cpu() {
    let Some(cuda) = gpu() else { return };
    // ~30k rows per query > the 16384-key candidate buffer: the sampled threshold is live.
    let ix = Arc::new(make_index(&Spec { n: 120_000, d: 128, l: 64, live: false, features: 0, seed: 31 }));
    check(&cuda, &ix, 24, 16, &[10, 100, 2048], &[0, 0, 0, 1, 3, 5], 5, "threshold");
    check(&cuda, &ix, 5, 64, &[1, 2048, 5000], &[0, 2, 6], 6, "threshold all lists");
    check(&cuda, &ix, 20, 16, &[10, 2048], &[0], 9, "threshold, implicit mask");
    check(&cuda, &ix, 70, 16, &[2048], &[0], 10, "threshold, implicit mask, grouped sample");
    // ~15k rows per query fit the buffer: every row is a candidate, selected by radix select
    // from shared memory (more than the 8192 keys that are sorted directly).
    check(&cuda, &ix, 6, 8, &[10, 2048], &[0, 0, 3], 7, "take all, radix");
}

#[test]
fn large_k0_matches_cpu() {
    let Some(cuda) = gpu() else { return };
    let ix = Arc::new(make_index(&Spec { n: 300_000, d: 16, l: 8, live: false, features: 0, seed: 41 }));
    // Radix-select path with the global bitonic sort; k0 above the candidates too.
    check(&cuda, &ix, 2, 8, &[100_000, 262_144], &[0, 5], 8, "large k0");
    check(&cuda, &ix, 3, 1, &[262_144], &[0, 1, 4], 9, "large k0 > candidates");
}

#[test]
fn small_rerank_refine_and_model_within_tolerance() {
    let Some(cuda) = gpu() else { return };
    let ix = Arc::new(make_index(&Spec { n: 2000, d: 24, l: 10, live: false, features: 3, seed: 51 }));
    let (cpu, rc, rg) = (Cpu, Cpu.upload(&ix).unwrap(), cuda.upload(&ix).unwrap());
    let q = queries(&ix, 6, 52);
    let fs = filters(&ix);
    let plans: Vec<&Plan> = (0..6).map(|i| &fs[i % 3].plan).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(53);
    let dense = |rng: &mut ChaCha8Rng, i: usize, o: usize| silica::rerank::Dense {
        inputs: i,
        outputs: o,
        weight: (0..i * o).map(|_| rng.random_range(-0.2f32..0.2)).collect(),
        bias: (0..o).map(|_| rng.random_range(-0.1f32..0.1)).collect(),
    };
    let input = 2 * 24 + 3;
    let model = Arc::new(silica::rerank::RerankModel {
        layers: vec![dense(&mut rng, input, 40), dense(&mut rng, 40, 17)],
        heads: dense(&mut rng, 17, 3),
        task_weights: vec![0.5, 0.3, 0.2],
    });
    let modes = [Rerank::Refine, Rerank::Model { model: model.clone(), weights: vec![0.2, 0.7, 0.1] }];
    let pc = cpu.probe(&rc, &q, 4).unwrap();
    let mc = cpu.filter(&rc, &plans, &pc).unwrap();
    let pg = cuda.probe(&rg, &q, 4).unwrap();
    let mg = cuda.filter(&rg, &plans, &pg).unwrap();
    for mode in &modes {
        let want = cpu.rerank(&rc, &q, cpu.scan(&rc, &q, &pc, &mc, &plans, 300).unwrap(), mode).unwrap();
        cuda.poison_pool(POISON).unwrap();
        let got = cuda.read_cands(&cuda.rerank(&rg, &q, cuda.scan(&rg, &q, &pg, &mg, &plans, 300).unwrap(), mode).unwrap()).unwrap();
        assert_eq!(got.rows, want.rows);
        assert_eq!(got.counts, want.counts);
        for (i, (g, w)) in got.scores.iter().zip(&want.scores).enumerate() {
            if w.is_finite() {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{mode:?} slot {i}: {g} vs {w}");
            } else {
                assert_eq!(g.to_bits(), w.to_bits(), "padding slot {i}");
            }
        }
        // Select over the re-scored candidates: same scores rank by rank (within tolerance).
        let s_want = cpu.select(want.clone(), 20).unwrap();
        let s_got = cuda
            .read_cands(&cuda.select(cuda.rerank(&rg, &q, cuda.scan(&rg, &q, &pg, &mg, &plans, 300).unwrap(), mode).unwrap(), 20).unwrap())
            .unwrap();
        assert_eq!(s_got.counts, s_want.counts);
        for (g, w) in s_got.scores.iter().zip(&s_want.scores) {
            assert!(g == w || (g - w).abs() <= 1e-4 * (1.0 + w.abs()), "select: {g} vs {w}");
        }
    }
}

#[test]
fn small_executor_search_equals_cpu() {
    let Some(_) = gpu() else { return };
    let ix = Arc::new(make_index(&Spec { n: 5000, d: 32, l: 32, live: true, features: 0, seed: 61 }));
    let cpu = silica::graph::open("cpu", ix.clone()).unwrap();
    let gpu = silica::graph::open("cuda", ix.clone()).unwrap();
    assert_eq!(gpu.backend_name(), "cuda");
    let fs = filters(&ix);
    let mut rng = ChaCha8Rng::seed_from_u64(62);
    let q: Vec<f32> = (0..16 * 32).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let fl: Vec<Filter> = (0..16).map(|i| fs[i % fs.len()].clone()).collect();
    for (k, nprobe, k0) in [(10, 2, None), (5, 8, Some(40)), (50, 32, Some(50))] {
        let params = silica::SearchParams { k, nprobe: Some(nprobe), k0, rerank: silica::RerankMode::None, task_weights: None };
        let req = silica::SearchRequest { queries: &q, filters: &fl, params };
        assert_eq!(gpu.search(&req).unwrap(), cpu.search(&req).unwrap(), "k {k} nprobe {nprobe}");
    }
}

#[test]
fn small_bad_inputs_are_typed_errors() {
    let Some(cuda) = gpu() else { return };
    let ix = Arc::new(make_index(&Spec { n: 300, d: 8, l: 4, live: false, features: 0, seed: 71 }));
    let rg = cuda.upload(&ix).unwrap();
    let q = queries(&ix, 2, 1);
    assert!(matches!(cuda.probe(&rg, &q, 5), Err(silica::Error::Param { ref name, .. }) if name == "nprobe"));
    let pg = cuda.probe(&rg, &q, 2).unwrap();
    let all = Plan::all();
    assert!(matches!(cuda.filter(&rg, &[&all], &pg), Err(silica::Error::Param { .. })));
    let mg = cuda.filter(&rg, &[&all, &all], &pg).unwrap();
    let mut bad = q.clone();
    bad.dim = 7;
    bad.codes.truncate(14);
    assert!(cuda.scan(&rg, &bad, &pg, &mg, &[&all, &all], 5).is_err());
    // Empty batch and k0 = 0 give empty, well-formed outputs.
    let c = cuda.scan(&rg, &q, &pg, &mg, &[&all, &all], 0).unwrap();
    assert_eq!(cuda.read_counts(&c).unwrap(), vec![0, 0]);
    let e = queries(&ix, 0, 2);
    let pe = cuda.probe(&rg, &e, 2).unwrap();
    assert!(cuda.read_probes(&pe).unwrap().lists.is_empty());
    // A model rerank whose input width does not match 2*D+F is refused.
    let m = Arc::new(silica::rerank::RerankModel {
        layers: vec![],
        heads: silica::rerank::Dense { inputs: 3, outputs: 1, weight: vec![0.0; 3], bias: vec![0.0] },
        task_weights: vec![1.0],
    });
    let s = cuda.scan(&rg, &q, &pg, &mg, &[&all, &all], 5).unwrap();
    assert!(matches!(cuda.rerank(&rg, &q, s, &Rerank::Model { model: m, weights: vec![1.0] }), Err(silica::Error::Param { .. })));
}
