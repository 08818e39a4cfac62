//! What a `silica serve` write costs on the device at scale: the time to publish a new
//! main snapshot (`Search::with_index` -> `Backend::update`) after a delete, after an
//! attribute patch, and when everything may have changed, next to a fresh upload. The index
//! is generated in memory (`silica bench`'s peer workload: N = 20M, D = 128, 4096 lists,
//! Bloom 1024 bits / 5 hashes, 3 attribute fields), since a 20M artifact cannot travel to
//! the device. Wall-clock medians of 5 publishes each, device synchronized.
//!
//! ```text
//! cargo run --release --example update_cost -- [--backend cuda|wgpu|cpu] [--n N]
//! ```

use silica::backend::Changed;
use silica::bench::data::{FilterSpec, Synth, SynthSpec, Vectors};
use silica::graph::{self, Search};
use silica::model::{BloomParams, Index};
use std::sync::Arc;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> silica::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let backend = arg("--backend").unwrap_or_else(|| "auto".into());
    let n: usize = arg("--n").map_or(20_000_000, |s| s.parse().expect("--n takes a number"));
    let t0 = Instant::now();
    let synth = Synth::generate(SynthSpec {
        n,
        dim: 128,
        nlist: 4096.min(n),
        seed: 1,
        vectors: Vectors::Random,
        filter: Some(FilterSpec { pass: 0.1, and_terms: 3, or_values: 3 }),
        bloom: BloomParams { bits: 1024, hashes: 5, seed: 0 },
        embeddings: false,
        ids: false,
    })?;
    let base = synth.index.clone();
    println!(
        "N = {n}: generated in {:.1} s; planes {:.2} GB, codes {:.2} GB",
        t0.elapsed().as_secs_f64(),
        base.bloom.planes.len() as f64 * 8e-9,
        base.items.codes.len() as f64 * 1e-9
    );

    let t = Instant::now();
    let exec: Box<dyn Search> = graph::open(&backend, base.clone())?;
    println!("backend {}: first upload {:.1} ms", exec.backend_name(), t.elapsed().as_secs_f64() * 1e3);

    // Version 2 of the index: 100 rows deleted, one row's Bloom bits rewritten.
    let mut next: Index = (*base).clone();
    let words = next.bloom.words;
    let live = next.live.get_or_insert_with(|| vec![!0u64; words]);
    for r in (0..n).step_by((n / 100).max(1)).take(100) {
        live[r / 64] &= !(1u64 << (r % 64));
    }
    let r = n / 2;
    for b in 0..next.bloom.params.bits as usize {
        next.bloom.planes[b * words + r / 64] ^= 1u64 << (r % 64);
    }
    let next = Arc::new(next);

    let word = Some(vec![(r / 64) as u32].into());
    let cases: [(&str, Changed); 5] = [
        ("delete (live bits)", Changed { live: true, ..Changed::NONE }),
        ("patch, planes only (1 word x M)", Changed { planes: true, plane_words: word.clone(), ..Changed::NONE }),
        (
            "patch, planes + the row's attribute values in place",
            Changed { planes: true, attrs: true, plane_words: word.clone(), attr_rows: Some(vec![r as u32].into()), ..Changed::NONE },
        ),
        (
            "patch, planes + attribute CSR uploaded (a value count changed)",
            Changed { planes: true, attrs: true, plane_words: word, ..Changed::NONE },
        ),
        ("anything (live, planes, attributes)", Changed::ALL),
    ];
    println!("\n| publish after | median ms (5 runs) |\n| --- | ---: |");
    for (name, changed) in cases {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let s = exec.with_index(next.clone(), &changed)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            drop(s);
        }
        println!("| {name} | {:.2} |", median(times));
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        drop(graph::open(&backend, next.clone())?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("| a new backend and a full upload (before 5c5d9c1) | {:.2} |", median(times));
    Ok(())
}
