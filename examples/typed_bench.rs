//! Range filters on typed attributes: recall@10 and QPS of filtered searches against the
//! same queries without the filter, on a synthetic catalog built by the real builder.
//!
//! Catalog: N clustered vectors (256 centres, D dims) and JSONL attributes `price` (float,
//! uniform [0, 1000)), `year` (int, 1980..2024), `in_stock` (bool, 60% true), `published`
//! (timestamp, uniform over 2020-2024, declared with `--schema`-style typing), `category`
//! (string, 20 values). Queries: near random centres. Truth: the exact f32 inner-product
//! top-10 over the rows passing each filter (brute force).
//!
//! Usage: `cargo run --release --example typed_bench -- [--backend cpu|wgpu|cuda] [--n N]
//! [--d D] [--queries Q] [--batch B] [--repeat R] [--trace]`; prints one line per filter
//! (selectivity, recall@10, QPS, QPS ratio to the unfiltered run). `--repeat` times R passes
//! over the queries (the median pass's QPS); `--trace` adds, per filter, one pass with every
//! stage timed ([`silica::graph::Trace`]: device time per stage and kernel, ms per batch, and
//! the host's whole-search time), to see where a filter's time goes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::graph::{SearchParams, SearchRequest, open};
use silica::model::attributes::{parse_jsonl_with, parse_schema};
use silica::model::columns::format_timestamp;
use silica::model::npy::Matrix;
use silica::{BuildParams, Filter, IndexBuilder};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let backend: String = arg("--backend", "cpu".to_string());
    let (n, d, nq, batch): (usize, usize, usize, usize) = (arg("--n", 100_000), arg("--d", 64), arg("--queries", 200), arg("--batch", 1));
    let repeat: usize = arg("--repeat", 1).max(1);
    let trace = std::env::args().any(|a| a == "--trace");
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let centres: Vec<f32> = (0..256 * d).map(|_| rng.random_range(-1f32..1.0)).collect();
    let near = |rng: &mut ChaCha8Rng| {
        let c = rng.random_range(0..256);
        (0..d).map(|j| centres[c * d + j] + rng.random_range(-0.35f32..0.35)).collect::<Vec<f32>>()
    };
    let data: Vec<f32> = (0..n).flat_map(|_| near(&mut rng)).collect();
    let t2020 = 1_577_836_800_000_000i64;
    let span = 5 * 365 * 86_400_000_000i64;
    let mut jsonl = String::with_capacity(n * 120);
    for i in 0..n {
        let o = serde_json::json!({
            "id": format!("p{i}"),
            "price": (rng.random_range(0.0f64..1000.0) * 100.0).round() / 100.0,
            "year": rng.random_range(1980..2024),
            "in_stock": rng.random_bool(0.6),
            "published": format_timestamp(t2020 + rng.random_range(0..span)),
            "category": format!("cat{}", rng.random_range(0..20)),
        });
        jsonl.push_str(&o.to_string());
        jsonl.push('\n');
    }
    let t0 = Instant::now();
    let table = parse_jsonl_with(jsonl.as_bytes(), Path::new("catalog.jsonl"), &[], &parse_schema("published:timestamp")?)?;
    let ix = Arc::new(
        IndexBuilder::new(BuildParams { seed: 3, ..Default::default() })
            .build(Matrix { rows: n, dim: d, data: data.clone(), was_f16: false }, table)?,
    );
    eprintln!("built N={n} D={d} nlist={} in {:.1}s; default nprobe {}", ix.nlist(), t0.elapsed().as_secs_f64(), ix.default_nprobe());
    let searcher = open(&backend, ix.clone())?;
    let queries: Vec<f32> = (0..nq).flat_map(|_| near(&mut rng)).collect();
    let filters = [
        "",
        "price < 1",
        "price < 10",
        "price BETWEEN 100 AND 199.99",
        "price < 500",
        "year >= 2020 AND in_stock = true",
        "published > \"2024-06-01T00:00:00Z\"",
        "price < 50 AND category = \"cat3\"",
        "year != 2000 AND price >= 900",
        "in_stock IS NOT NULL AND price <= 5",
    ];
    let mut base_qps = 0.0;
    println!("backend {backend}, N={n}, D={d}, {nq} queries, batch {batch}, default nprobe and rerank");
    println!("{:<52} {:>11} {:>10} {:>10} {:>8}", "filter", "selectivity", "recall@10", "QPS", "vs none");
    // `fs(p)`: the filters of pass p (0: warm-up, 1..=repeat: timed, then the traced one);
    // per-query rows draw new bounds every pass, so no bound is seen twice (as with
    // per-request bounds) and none is promoted to a cached host mask.
    let mut line = |label: &str, fs: &dyn Fn(usize) -> anyhow::Result<Vec<Filter>>| -> anyhow::Result<()> {
        let (sel, recall, qps) = measure(&*searcher, &ix, &data, &queries, d, batch, fs, repeat)?;
        if label == "(none)" {
            base_qps = qps;
        }
        println!("{label:<52} {:>10.3}% {recall:>10.3} {qps:>10.0} {:>7.2}x", 100.0 * sel, qps / base_qps);
        if trace {
            let t = traced(&*searcher, &queries, d, batch, &fs(repeat + 1)?)?;
            let batches = nq.div_ceil(batch).max(1) as f64;
            let per = |s: f64| 1e3 * s / batches;
            let stages: Vec<String> = silica::graph::Stage::ALL
                .iter()
                .filter(|s| t.runs[s.index()] > 0)
                .map(|s| format!("{} {:.3}/{:.3}", s.name(), per(t.stage_s[s.index()]), per(t.host_stage_s[s.index()])))
                .collect();
            let mut kernels = t.kernel_s.clone();
            kernels.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top: Vec<String> = kernels.iter().take(4).map(|(k, s)| format!("{k} {:.3}", per(*s))).collect();
            println!(
                "    trace ms/batch ({} clock, stage device/host): {}; host search {:.3}; candidate queries {}; top kernels: {}",
                t.clock(),
                stages.join(", "),
                per(t.host_s),
                t.candidate_queries,
                top.join(", ")
            );
        }
        Ok(())
    };
    let compile = |t: &str| Filter::compile(t, &ix.attrs.schema, &ix.bloom.params);
    for text in filters {
        let f = compile(text)?;
        line(if text.is_empty() { "(none)" } else { text }, &|_| Ok(vec![f.clone(); nq]))?;
    }
    // Per-query bounds against the same range repeated on every query, at 0.1% to 50%:
    // `price BETWEEN a AND a + w` (w = 1000 x selectivity), a random per query (no two
    // queries share a filter) or one a for all.
    for sel in [0.001, 0.01, 0.1, 0.5] {
        let w = 1000.0 * sel;
        let a0 = 0.5 * (1000.0 - w);
        let f = compile(&format!("price BETWEEN {a0:.2} AND {:.2}", a0 + w))?;
        line(&format!("price BETWEEN {a0:.2} AND {:.2}, repeated", a0 + w), &|_| Ok(vec![f.clone(); nq]))?;
        let fs = |pass: usize| -> anyhow::Result<Vec<Filter>> {
            (0..nq)
                .map(|i| {
                    let a = (1000.0 - w) * (((i + pass * nq) as f64 * 0.618_034) % 1.0);
                    Ok(compile(&format!("price BETWEEN {a:.3} AND {:.3}", a + w))?)
                })
                .collect()
        };
        line(&format!("price BETWEEN a AND a+{w}, a per query"), &fs)?;
    }
    // Distinct bounds per query (no mask reuse: each query binds its own range term).
    let fs = |pass: usize| -> anyhow::Result<Vec<Filter>> {
        (0..nq).map(|i| Ok(compile(&format!("price < {}", 95.0 + (i + pass * nq) as f64 * 0.0005))?)).collect()
    };
    line("price < X, X distinct per query", &fs)?;
    Ok(())
}

/// One pass over the queries with every stage timed.
fn traced(
    searcher: &dyn silica::graph::Search,
    queries: &[f32],
    d: usize,
    batch: usize,
    fs: &[Filter],
) -> anyhow::Result<silica::graph::Trace> {
    let params = SearchParams { k: 10, ..Default::default() };
    let mut t = silica::graph::Trace::timed();
    for (i, chunk) in queries.chunks(batch * d).enumerate() {
        let b = chunk.len() / d;
        searcher
            .search_traced(&SearchRequest { queries: chunk, filters: &fs[i * batch..i * batch + b], params: params.clone() }, &mut t)?;
    }
    Ok(t)
}

/// Mean selectivity, recall@10 against the exact f32 top-10 of each query's passing rows,
/// and QPS of `fs(p)[i]` on query `i` in pass `p` (batches of `batch`; pass 0's first batch
/// warms up, the QPS is the median of passes 1..=`repeat`, recall that of the last).
#[allow(clippy::too_many_arguments)]
fn measure(
    searcher: &dyn silica::graph::Search,
    ix: &silica::model::Index,
    data: &[f32],
    queries: &[f32],
    d: usize,
    batch: usize,
    fs: &dyn Fn(usize) -> anyhow::Result<Vec<Filter>>,
    repeat: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    use rayon::prelude::*;
    let nq = queries.len() / d;
    let params = SearchParams { k: 10, ..Default::default() };
    let warm = fs(0)?;
    let _ = searcher.search(&SearchRequest {
        queries: &queries[..batch.min(nq) * d],
        filters: &warm[..batch.min(nq)],
        params: params.clone(),
    })?;
    let mut passes = Vec::with_capacity(repeat);
    let mut got = Vec::with_capacity(nq);
    let mut last = warm;
    for pass in 1..=repeat {
        let fs = fs(pass)?;
        got.clear();
        let t = Instant::now();
        for (i, chunk) in queries.chunks(batch * d).enumerate() {
            let b = chunk.len() / d;
            got.extend(searcher.search(&SearchRequest {
                queries: chunk,
                filters: &fs[i * batch..i * batch + b],
                params: params.clone(),
            })?);
        }
        passes.push(nq as f64 / t.elapsed().as_secs_f64());
        last = fs;
    }
    let fs = &last;
    passes.sort_by(f64::total_cmp);
    let qps = passes[passes.len() / 2];
    // Truth per distinct filter (queries sharing one share its passing rows).
    let mut passing: Vec<(&Filter, Vec<usize>)> = Vec::new();
    for f in fs {
        if !passing.iter().any(|(g, _)| g.plan == f.plan) {
            let rows = (0..ix.len()).into_par_iter().filter(|&r| f.plan.matches_row(ix, r)).map(|r| ix.source_rows[r] as usize).collect();
            passing.push((f, rows));
        }
    }
    let (hit, total, sel) = got
        .par_iter()
        .enumerate()
        .map(|(qi, r)| {
            let q = &queries[qi * d..(qi + 1) * d];
            let rows = &passing.iter().find(|(g, _)| g.plan == fs[qi].plan).expect("truth").1;
            let mut s: Vec<(f32, usize)> =
                rows.iter().map(|&src| (data[src * d..(src + 1) * d].iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), src)).collect();
            let top = s.len().min(10);
            if top > 0 {
                s.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            }
            let truth: Vec<usize> = s[..top].iter().map(|x| x.1).collect();
            (r.rows.iter().filter(|&&row| truth.contains(&(row as usize))).count(), truth.len(), rows.len() as f64 / ix.len().max(1) as f64)
        })
        .reduce(|| (0, 0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    Ok((sel / nq.max(1) as f64, if total == 0 { 1.0 } else { hit as f64 / total as f64 }, qps))
}
