//! The executor on the CPU backend against an independent brute-force reference.

mod common;

use common::*;
use silica::backend::cpu::Cpu;
use silica::graph::{Executor, RerankMode, Search, SearchParams, SearchRequest, prepare_queries};
use silica::{Error, Filter};
use std::sync::Arc;

/// Brute force: exact filter over every row, int8 score, top-k (score desc, row asc).
fn brute_force(ix: &silica::Index, q: &[f32], filter: &Filter, k: usize) -> Vec<(u64, f32)> {
    let qb = prepare_queries(ix, q).unwrap();
    let mut all: Vec<(f32, u32)> = (0..ix.len())
        .filter(|&r| filter.plan.matches(ix.attrs.row(r)))
        .map(|r| {
            let dot: i32 = qb.codes.iter().zip(ix.items.row(r)).map(|(&a, &b)| a as i32 * b as i32).sum();
            ((dot as f32 * ix.items.scale[r]) * qb.scale[0], r as u32)
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all.into_iter().map(|(s, r)| (ix.source_rows[r as usize], s)).collect()
}

#[test]
fn exhaustive_probe_equals_brute_force_with_filters() {
    // N not a multiple of 32 or 64; nlist > sqrt(N) so some lists are tiny.
    let (ix, _) = random_index(517, 20, 37, 11, &[]);
    let ix = Arc::new(ix);
    let ex = Executor::new(Cpu, ix.clone()).unwrap();
    let filters = [
        "",
        r#"section = "libs""#,
        r#"tags = "role::program" AND NOT section = "games""#,
        r#"section IN ("python", "science") OR tags = "field::biology""#,
        r#"section = "no-such-value""#,
        r#"NOT tags IN ("role::program", "role::shared-lib")"#,
    ];
    for (i, f) in filters.iter().enumerate() {
        let filter = Filter::compile(f, &ix.attrs.schema, &ix.bloom.params).unwrap();
        for &k in &[1usize, 7, 64, 600] {
            let q = random_queries(1, 20, (i * 100 + k) as u64);
            let params = SearchParams { k, nprobe: Some(37), k0: None, rerank: RerankMode::None, task_weights: None };
            let got = ex.search(&SearchRequest { queries: &q, filters: std::slice::from_ref(&filter), params }).unwrap();
            let want = brute_force(&ix, &q, &filter, k);
            let got: Vec<(u64, f32)> = got[0].rows.iter().copied().zip(got[0].scores.iter().copied()).collect();
            assert_eq!(got, want, "filter {f:?} k {k}");
        }
    }
}

#[test]
fn selective_filters_are_exact_and_widening_fills_k() {
    let (ix, _) = random_index(2000, 16, 64, 5, &[]);
    let ix = Arc::new(ix);
    let ex = Executor::new(Cpu, ix.clone()).unwrap();
    let f =
        Filter::compile(r#"section = "games" AND tags = "field::biology" AND tags = "game::arcade""#, &ix.attrs.schema, &ix.bloom.params)
            .unwrap();
    let passing = (0..ix.len()).filter(|&r| f.plan.matches(ix.attrs.row(r))).count();
    assert!(passing > 10 && passing < 100, "test needs a selective filter, {passing} pass");
    let q = random_queries(3, 16, 1);
    let filters = vec![f.clone(), f.clone(), f.clone()];
    let run = |nprobe| {
        let params = SearchParams { k: 10, nprobe: Some(nprobe), k0: None, rerank: RerankMode::None, task_weights: None };
        ex.search(&SearchRequest { queries: &q, filters: &filters, params }).unwrap()
    };
    // Planner: the filter's Bloom candidates fit the scan budget of 4 lists (4 * 32 rows),
    // so all lists are scanned over its candidates only: the exact answer.
    let got = run(4);
    for b in 0..3 {
        let want = brute_force(&ix, &q[b * 16..(b + 1) * 16], &f, 10);
        assert_eq!(got[b].rows, want.iter().map(|w| w.0).collect::<Vec<_>>());
    }
    // One list holds fewer than k passing items: widening still returns k passing items.
    let inv = silica::eval::sorted_row_of(&ix);
    for r in run(1) {
        assert_eq!(r.rows.len(), 10);
        assert!(r.rows.iter().all(|&s| f.plan.matches(ix.attrs.row(inv[s as usize] as usize))));
    }
}

#[test]
fn refine_scores_are_exact_f32_inner_products() {
    let (ix, m) = random_index(300, 12, 8, 2, &[]);
    let ix = Arc::new(ix);
    let ex = Executor::new(Cpu, ix.clone()).unwrap();
    let q = random_queries(4, 12, 3);
    let params = SearchParams { k: 5, nprobe: Some(8), k0: Some(300), rerank: RerankMode::Refine, task_weights: None };
    let got = ex.search(&SearchRequest { queries: &q, filters: &[], params }).unwrap();
    for b in 0..4 {
        let qv = &q[b * 12..(b + 1) * 12];
        // Exact ranking over all rows from the f16-rounded vectors (the refine cache).
        let mut want: Vec<(f64, u64)> = (0..300)
            .map(|r| (m.row(r).iter().zip(qv).map(|(x, y)| half::f16::from_f32(*x).to_f64() * *y as f64).sum::<f64>(), r as u64))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert_eq!(got[b].rows, want.iter().take(5).map(|w| w.1).collect::<Vec<_>>());
        for (s, w) in got[b].scores.iter().zip(&want) {
            approx::assert_relative_eq!(*s as f64, w.0, epsilon = 1e-5);
        }
    }
}

#[test]
fn edge_sizes_and_bad_parameters() {
    let (ix, _) = random_index(1, 8, 1, 4, &[]);
    let ix = Arc::new(ix);
    let ex = Executor::new(Cpu, ix.clone()).unwrap();
    let q = random_queries(2, 8, 9);
    let p = |k, nprobe| SearchParams { k, nprobe, k0: None, rerank: RerankMode::Auto, task_weights: None };
    // k > N returns the one item.
    let got = ex.search(&SearchRequest { queries: &q, filters: &[], params: p(10, Some(1)) }).unwrap();
    assert!(got.iter().all(|r| r.rows == vec![0]));
    // Empty batch.
    assert!(ex.search(&SearchRequest { queries: &[], filters: &[], params: p(1, None) }).unwrap().is_empty());
    // Bad parameters are typed errors naming the parameter.
    for (params, name) in [(p(0, None), "k"), (p(1, Some(0)), "nprobe"), (p(1, Some(2)), "nprobe")] {
        match ex.search(&SearchRequest { queries: &q, filters: &[], params }) {
            Err(Error::Param { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    let bad_k0 = SearchParams { k: 5, nprobe: None, k0: Some(2), rerank: RerankMode::None, task_weights: None };
    assert!(matches!(ex.search(&SearchRequest { queries: &q, filters: &[], params: bad_k0 }), Err(Error::Param { .. })));
    // Wrong dimension and NaN.
    assert!(matches!(ex.search(&SearchRequest { queries: &q[..7], filters: &[], params: p(1, None) }), Err(Error::Dimension { .. })));
    let mut nan = q.clone();
    nan[3] = f32::NAN;
    assert!(matches!(
        ex.search(&SearchRequest { queries: &nan, filters: &[], params: p(1, None) }),
        Err(Error::NonFinite { row: 0, col: 3, .. })
    ));
}

#[test]
fn cosine_ignores_vector_norms() {
    use silica::model::attributes::parse_jsonl;
    use silica::model::npy::Matrix;
    use silica::{BuildParams, IndexBuilder, Metric};
    let (m, jsonl) = random_corpus(200, 8, 21);
    // Same directions, random lengths: cosine must rank exactly as on unit vectors.
    let mut scaled = m.clone();
    for (r, row) in scaled.data.chunks_mut(8).enumerate() {
        row.iter_mut().for_each(|x| *x *= 0.5 + (r % 7) as f32);
    }
    let build = |mat: Matrix| {
        let table = parse_jsonl(jsonl.as_bytes(), std::path::Path::new("a"), &[]).unwrap();
        let p = BuildParams { nlist: Some(4), metric: Metric::Cosine, ..Default::default() };
        Arc::new(IndexBuilder::new(p).build(mat, table).unwrap())
    };
    let (a, b) = (build(m), build(scaled));
    let q = random_queries(3, 8, 4);
    let q2: Vec<f32> = q.iter().map(|x| x * 3.0).collect();
    let params = SearchParams { k: 10, nprobe: Some(4), k0: None, rerank: RerankMode::None, task_weights: None };
    let ra = Executor::new(Cpu, a).unwrap().search(&SearchRequest { queries: &q, filters: &[], params: params.clone() }).unwrap();
    let rb = Executor::new(Cpu, b).unwrap().search(&SearchRequest { queries: &q2, filters: &[], params }).unwrap();
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.rows, y.rows);
        for (s, t) in x.scores.iter().zip(&y.scores) {
            approx::assert_relative_eq!(*s, *t, max_relative = 1e-2);
            assert!(*s <= 1.01, "cosine score {s} <= 1");
        }
    }
}

#[test]
fn candidate_budget_sends_filters_up_to_four_lists_of_rows_to_their_candidates() {
    use silica::backend::Backend;
    use silica::graph::{CANDIDATE_BUDGET, Planner, Trace};
    let (n, nlist, nprobe) = (3000usize, 60usize, 2usize);
    let (ix, _) = random_index(n, 16, nlist, 8, &[]);
    let ix = Arc::new(ix);
    let one = silica::graph::candidate_budget(nprobe, nlist, n as u64, 1);
    let four = silica::graph::candidate_budget(nprobe, nlist, n as u64, CANDIDATE_BUDGET);
    assert_eq!(four, (CANDIDATE_BUDGET * one).min(n as u64));
    // A filter whose Bloom candidates are more than one budget and at most four.
    let texts = [
        r#"section = "games""#,
        r#"section = "libs""#,
        r#"section IN ("python", "science")"#,
        r#"tags = "field::biology" AND section = "games""#,
        r#"section = "python""#,
    ];
    let res = Cpu.upload(&ix).unwrap();
    let f = texts
        .iter()
        .map(|t| Filter::compile(t, &ix.attrs.schema, &ix.bloom.params).unwrap())
        .find(|f| (one + 1..=four).contains(&Cpu.count(&res, &[&f.plan]).unwrap()[0]))
        .expect("a filter between one and four budgets");
    let q = random_queries(5, 16, 4);
    let filters = vec![f.clone(); 5];
    let params = SearchParams { k: 10, nprobe: Some(nprobe), k0: None, rerank: RerankMode::None, task_weights: None };
    let req = SearchRequest { queries: &q, filters: &filters, params };
    // Default planner: every query over its candidates, and so the exact answer.
    let mut t = Trace::default();
    let got = Executor::new(Cpu, ix.clone()).unwrap().search_traced(&req, &mut t).unwrap();
    assert_eq!(t.candidate_queries, 5);
    for b in 0..5 {
        let want = brute_force(&ix, &q[b * 16..(b + 1) * 16], &f, 10);
        assert_eq!(got[b].rows, want.iter().map(|w| w.0).collect::<Vec<_>>(), "query {b}");
    }
    // A budget of one: the same filter takes the probe path.
    let mut t = Trace::default();
    Executor::new(Cpu, ix.clone()).unwrap().with_planner(Planner { candidate_budget: 1 }).search_traced(&req, &mut t).unwrap();
    assert_eq!(t.candidate_queries, 0);
}

#[test]
fn a_full_typed_mask_cache_evaluates_new_tests_per_query_instead_of_evicting() {
    use silica::filter::TypedTest;
    use silica::graph::MaskCache;
    let (index, _) = random_index(300, 8, 4, 7, &[]);
    let cache = MaskCache::default();
    let t = |i: u32| TypedTest::Present { field: "f".into(), ids: vec![(i, i)], null: false };
    let promote = MaskCache::PROMOTE as usize;
    assert!(promote >= 3, "a per-request bound seen twice stays on the device");
    for s in 1..promote {
        assert!(cache.repeated(&t(0), &index).is_none(), "sighting {s} is evaluated per query");
    }
    let m = cache.repeated(&t(0), &index).expect("the PROMOTE-th sighting gets a host mask");
    assert_eq!(m.len(), 300usize.div_ceil(64));
    // The mask is exact: row r's bit is set when it holds value id 0.
    for r in 0..300 {
        assert_eq!(m[r / 64] >> (r % 64) & 1 == 1, index.attrs.row(r).contains(&0), "row {r}");
    }
    for i in 1..MaskCache::ENTRIES as u32 {
        for _ in 1..promote {
            assert!(cache.repeated(&t(i), &index).is_none());
        }
        assert!(cache.repeated(&t(i), &index).is_some());
    }
    // Full: a new repeated test stays per query, and the cached masks stay cached.
    let x = t(1_000_000);
    for s in 0..promote + 1 {
        assert!(cache.repeated(&x, &index).is_none(), "a full cache does not evict for a new test (sighting {s})");
    }
    assert!(std::sync::Arc::ptr_eq(&cache.repeated(&t(0), &index).unwrap(), &m));
}

/// `bind_plans` binds each distinct plan once (found by hash, not by comparing every pair):
/// queries whose plans are equal, compiled separately, share one bound copy (one address),
/// distinct plans get their own, and plans without typed terms are passed through.
#[test]
fn bind_plans_shares_one_bound_copy_per_distinct_plan() {
    use rand::{Rng, SeedableRng};
    use silica::graph::{MaskCache, bind_plans};
    let (index, _) = random_index(300, 8, 4, 9, &[]);
    let texts = ["tags IS NULL", "tags IS NOT NULL", "section IS NULL", "tags IS NULL AND section = \"s1\"", "section = \"s1\""];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let picks: Vec<usize> = (0..97).map(|_| rng.random_range(0..texts.len())).collect();
    let filters: Vec<Filter> =
        picks.iter().map(|&t| Filter::compile(texts[t], &index.attrs.schema, &index.bloom.params).unwrap()).collect();
    let plans: Vec<&silica::filter::Plan> = filters.iter().map(|f| &f.plan).collect();
    let bound = bind_plans(&plans, &index, &MaskCache::default(), false);
    let refs = bound.refs();
    for i in 0..picks.len() {
        let typed = plans[i].has_typed();
        assert_eq!(std::ptr::eq(refs[i], plans[i]), !typed, "query {i} ({}): only typed plans are bound", texts[picks[i]]);
        assert!(!typed || refs[i].terms.iter().all(|t| t.typed.is_none() || t.mask.is_some()), "bound with host masks");
        for j in 0..i {
            if typed && plans[j].has_typed() {
                assert_eq!(std::ptr::eq(refs[i], refs[j]), picks[i] == picks[j], "queries {j} and {i}");
            }
        }
    }
}
