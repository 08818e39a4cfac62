//! The main job on the bundled Debian corpus: build the index, measure recall against the
//! exact ground truth, and show a few filtered searches with the synopses that came back.
//!
//! ```sh
//! cargo run --release --example debian
//! ```

use anyhow::Result;
use silica::eval;
use silica::filter::Filter;
use silica::graph::{self, SearchParams, SearchRequest};
use silica::model::{format, npy};
use silica::{BuildParams, IndexBuilder};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<()> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/debian");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian.silica");

    println!("== build: {} items from data/debian", 63_666);
    let t0 = Instant::now();
    let builder = IndexBuilder::new(BuildParams { progress: true, ..Default::default() });
    let index = builder.build_files(&data.join("embeddings.npy"), &data.join("items.jsonl"))?;
    format::save(&index, &out)?;
    println!("built {} (N={}, D={}, nlist={}) in {:.1}s", out.display(), index.len(), index.dim, index.nlist(), t0.elapsed().as_secs_f64());

    let index = Arc::new(index);
    let searcher = graph::open("cpu", index.clone())?;
    let queries = npy::read(&data.join("queries.npy"))?;
    let texts = eval::read_filters(&data.join("queries.jsonl"))?;
    let filters: Vec<Filter> =
        texts.iter().map(|t| Filter::compile(t, &index.attrs.schema, &index.bloom.params)).collect::<Result<_, _>>()?;
    let truth = eval::read_truth(&data.join("ground_truth.jsonl"))?;
    let params = SearchParams { k: 10, ..Default::default() };

    println!("\n== eval: 80 queries, k = 10, default nprobe, refine rerank");
    let results = searcher.search(&SearchRequest { queries: &queries.data, filters: &filters, params: params.clone() })?;
    let report = eval::evaluate(&index, &queries.data, &filters, &truth, &results, 10)?;
    let qps = eval::measure_qps(searcher.as_ref(), &queries.data, &filters, &params, queries.rows, index.dim)?;
    print!("{}", report.summary(qps, 10));

    // A few searches with their filters and what came back.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(data.join("queries.jsonl"))?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let items: Vec<serde_json::Value> =
        std::fs::read_to_string(data.join("items.jsonl"))?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    println!("\n== example searches (top 3)");
    for qid in [0usize, 21, 45, 70] {
        let q = &lines[qid];
        println!("\n\"{}\"  filter: {}", q["text"].as_str().unwrap_or(""), if texts[qid].is_empty() { "(none)" } else { &texts[qid] });
        for (row, score) in results[qid].rows.iter().zip(&results[qid].scores).take(3) {
            let it = &items[*row as usize];
            println!("  {score:.3}  {:<28} {}", it["id"].as_str().unwrap_or(""), it["synopsis"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}
