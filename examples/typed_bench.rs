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
//! [--d D] [--queries Q] [--batch B]`; prints one line per filter (selectivity, recall@10,
//! QPS, QPS ratio to the unfiltered run).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::graph::{open, SearchParams, SearchRequest};
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
    let ix = Arc::new(IndexBuilder::new(BuildParams { seed: 3, ..Default::default() }).build(Matrix { rows: n, dim: d, data: data.clone(), was_f16: false }, table)?);
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
    // Source row of every sorted row, to score the truth on the original vectors.
    let mut base_qps = 0.0;
    println!("backend {backend}, N={n}, D={d}, {nq} queries, batch {batch}, default nprobe and rerank");
    println!("{:<45} {:>11} {:>10} {:>10} {:>8}", "filter", "selectivity", "recall@10", "QPS", "vs none");
    for text in filters {
        let f = Filter::compile(text, &ix.attrs.schema, &ix.bloom.params)?;
        let passing: Vec<usize> = (0..ix.len()).filter(|&r| f.plan.matches_row(&ix, r)).map(|r| ix.source_rows[r] as usize).collect();
        let fs: Vec<Filter> = vec![f.clone(); batch];
        let params = SearchParams { k: 10, ..Default::default() };
        // Warm up, then time.
        let _ = searcher.search(&SearchRequest { queries: &queries[..batch * d], filters: &fs, params: params.clone() })?;
        let t = Instant::now();
        let mut got = Vec::with_capacity(nq);
        for chunk in queries.chunks(batch * d) {
            let b = chunk.len() / d;
            got.extend(searcher.search(&SearchRequest { queries: chunk, filters: &fs[..b], params: params.clone() })?);
        }
        let qps = nq as f64 / t.elapsed().as_secs_f64();
        use rayon::prelude::*;
        let (hit, total) = got
            .par_iter()
            .enumerate()
            .map(|(qi, r)| {
                let q = &queries[qi * d..(qi + 1) * d];
                let mut s: Vec<(f32, usize)> = passing.iter().map(|&src| (data[src * d..(src + 1) * d].iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), src)).collect();
                let top = s.len().min(10);
                if top > 0 {
                    s.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                }
                let truth: Vec<usize> = s[..top].iter().map(|x| x.1).collect();
                (r.rows.iter().filter(|&&row| truth.contains(&(row as usize))).count(), truth.len())
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let recall = if total == 0 { 1.0 } else { hit as f64 / total as f64 };
        if text.is_empty() {
            base_qps = qps;
        }
        let label = if text.is_empty() { "(none)" } else { text };
        println!("{label:<45} {:>10.3}% {recall:>10.3} {qps:>10.0} {:>7.2}x", 100.0 * passing.len() as f64 / n as f64, qps / base_qps);
    }
    // Distinct bounds per query (no mask reuse: each query binds its own range term).
    let fs: Vec<Filter> = (0..nq).map(|i| Filter::compile(&format!("price < {}", 95.0 + i as f64 * 0.05), &ix.attrs.schema, &ix.bloom.params)).collect::<Result<_, _>>()?;
    let params = SearchParams { k: 10, ..Default::default() };
    let t = Instant::now();
    for (i, chunk) in queries.chunks(batch * d).enumerate() {
        let b = chunk.len() / d;
        searcher.search(&SearchRequest { queries: chunk, filters: &fs[i * batch..i * batch + b], params: params.clone() })?;
    }
    let qps = nq as f64 / t.elapsed().as_secs_f64();
    println!("{:<45} {:>10.3}% {:>10} {qps:>10.0} {:>7.2}x", "price < X, X distinct per query (uncached)", 9.5, "-", qps / base_qps);
    Ok(())
}
