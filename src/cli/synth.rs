//! `silica synth` (hidden): write the e2e bench catalog (crates/bench/src/e2e/catalog.rs) as
//! build inputs, streaming, so catalogs larger than memory can be written: `vectors.npy`
//! (f16 `[N, D]`), `attributes.jsonl` (id + 5 fields: age_rating, country, lang, status,
//! tags) and `queries.npy` (f32 `[Q, D]`). The rows are the bench's for the same seed.

use anyhow::{Context, Result};
use clap::Args;
use half::f16;
use rayon::prelude::*;
use silica::bench::e2e::catalog::{self, Generator};
use silica::model::npy;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  silica synth --n 1000000 --dim 128 --out /tmp/cat1m && \\\n  silica build --vectors /tmp/cat1m/vectors.npy --attributes /tmp/cat1m/attributes.jsonl --out /tmp/cat1m.silica"
)]
pub struct SynthArgs {
    /// Items N.
    #[arg(long)]
    pub n: usize,
    /// Dimension D.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Query vectors written to queries.npy (0: none).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Seed (the e2e bench's `--seed`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let t0 = Instant::now();
    let g = Generator::new(a.n, a.dim, a.seed)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let create = |name: &str| -> Result<BufWriter<std::fs::File>> {
        let p = a.out.join(name);
        Ok(BufWriter::with_capacity(1 << 22, std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?))
    };
    let mut vec_out = create("vectors.npy")?;
    let mut jsonl_out = create("attributes.jsonl")?;
    vec_out.write_all(&npy::header(a.n, a.dim, true))?;
    let pb = silica::progress::bar("synth", a.n as u64, "rows");
    // Batches of chunks in parallel, written in order: memory stays at one batch.
    let batch = rayon::current_num_threads() * 4;
    let chunks = g.chunks();
    for first in (0..chunks).step_by(batch) {
        let done: Vec<(Vec<u8>, String)> = (first..(first + batch).min(chunks))
            .into_par_iter()
            .map(|ch| {
                let c = g.chunk(ch);
                let bytes: Vec<u8> = c.vectors.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
                let mut text = String::with_capacity(c.lens.len() * 96);
                let mut at = 0;
                for (i, &l) in c.lens.iter().enumerate() {
                    g.jsonl(ch * catalog::CHUNK + i, &c.values[at..at + l as usize], &mut text);
                    at += l as usize;
                }
                (bytes, text)
            })
            .collect();
        for (bytes, text) in done {
            vec_out.write_all(&bytes)?;
            jsonl_out.write_all(text.as_bytes())?;
            pb.inc((bytes.len() / 2 / a.dim) as u64);
        }
    }
    vec_out.flush()?;
    jsonl_out.flush()?;
    pb.finish();
    if a.queries > 0 {
        write_queries(&g, &a, &a.out.join("queries.npy"))?;
    }
    eprintln!("synth: N={} D={} -> {} in {:.1}s", a.n, a.dim, a.out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}

/// Queries near source rows: only the chunks holding those rows are regenerated.
fn write_queries(g: &Generator, a: &SynthArgs, path: &Path) -> Result<()> {
    let src: Vec<usize> = (0..a.queries).map(|i| catalog::query_source(a.n, i, a.seed)).collect();
    let mut by_chunk: HashMap<usize, Vec<usize>> = HashMap::new();
    for &r in &src {
        by_chunk.entry(r / catalog::CHUNK).or_default().push(r);
    }
    let by_chunk: Vec<(usize, Vec<usize>)> = by_chunk.into_iter().collect();
    let rows: HashMap<usize, Vec<f32>> = by_chunk
        .par_iter()
        .flat_map_iter(|(ch, rs)| {
            let c = g.chunk(*ch);
            rs.iter()
                .map(|&r| {
                    let i = r - ch * catalog::CHUNK;
                    (r, c.vectors[i * a.dim..(i + 1) * a.dim].to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let (q, _) = catalog::queries_with(a.n, a.dim, a.queries, a.seed, &|r| rows[&r].clone());
    npy::write(path, a.queries, a.dim, &q, false)?;
    Ok(())
}
