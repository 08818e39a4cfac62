//! Criterion bench of the CPU pipeline on the bundled Debian corpus: the 80 queries with
//! their filters, as one batch and one query per call, at the default settings.
//!
//! `cargo bench --bench cpu_pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use silica::filter::Filter;
use silica::graph::{self, SearchParams, SearchRequest};
use silica::model::npy;
use silica::{BuildParams, IndexBuilder, eval};
use std::path::Path;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/debian");
    let index = Arc::new(
        IndexBuilder::new(BuildParams::default())
            .build_files(&data.join("embeddings.npy"), &data.join("items.jsonl"))
            .expect("build Debian index"),
    );
    let queries = npy::read(&data.join("queries.npy")).unwrap();
    let filters: Vec<Filter> = eval::read_filters(&data.join("queries.jsonl"))
        .unwrap()
        .iter()
        .map(|t| Filter::compile(t, &index.attrs.schema, &index.bloom.params).unwrap())
        .collect();
    let s = graph::open("cpu", index.clone()).unwrap();
    let d = index.dim;
    let params = SearchParams { k: 10, ..Default::default() };

    let mut g = c.benchmark_group("debian_cpu");
    g.throughput(Throughput::Elements(queries.rows as u64));
    g.bench_function("batch80_filtered_refine", |b| {
        b.iter(|| s.search(&SearchRequest { queries: &queries.data, filters: &filters, params: params.clone() }).unwrap())
    });
    g.bench_function("one_query_per_call_filtered_refine", |b| {
        b.iter(|| {
            for i in 0..queries.rows {
                s.search(&SearchRequest {
                    queries: &queries.data[i * d..(i + 1) * d],
                    filters: &filters[i..i + 1],
                    params: params.clone(),
                })
                .unwrap();
            }
        })
    });
    let none = SearchParams { rerank: graph::RerankMode::None, ..params.clone() };
    g.bench_function("batch80_filtered_int8_only", |b| {
        b.iter(|| s.search(&SearchRequest { queries: &queries.data, filters: &filters, params: none.clone() }).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
