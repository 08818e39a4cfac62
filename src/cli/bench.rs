//! `silica bench`: CLI glue for [`silica::bench`].

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use silica::bench::data::{FilterSpec, Synth, SynthSpec, Vectors};
use silica::bench::run::{ProbeSource, Report, STAGES, StageReport, Workload};
use silica::bench::{self, suite};
use silica::model::BloomParams;
use std::time::Instant;

/// Presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The five rows of DESIGN.md's peer table (N=20M, D=128, 4096 lists, random probes,
    /// k0=2048; Bloom search), each with the peer's figure and the ratio.
    Peer,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  silica bench --backend cpu --n 1000000 --dim 128 --nlist 1024 --batch 16 --nprobe 32 --k 100 --clustered --recall-sample 16 --json
  silica bench --backend cpu --random-probes --n 20000000 --nlist 4096 --batch 16 --nprobe 32 --k 2048
  silica bench --backend cpu --suite peer --n 1000000      # scaled-down smoke run of the peer table")]
pub struct BenchArgs {
    /// Compute device.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wgpu", "cuda"], env = "SILICA_DEVICE")]
    pub backend: String,
    /// Print one JSON object (the suite: one object with a `rows` array).
    #[arg(long)]
    pub json: bool,
    /// Run a preset instead of one workload (`peer`: DESIGN.md's table).
    #[arg(long, value_enum)]
    pub suite: Option<Suite>,
    /// Items N (default 1,000,000; with --suite peer 20,000,000, smaller values scale it down).
    #[arg(long)]
    pub n: Option<usize>,
    /// Dimension D.
    #[arg(long, default_value_t = 128, conflicts_with = "suite")]
    pub dim: usize,
    /// Inverted lists (equal-sized).
    #[arg(long, default_value_t = 1024, conflicts_with = "suite")]
    pub nlist: usize,
    /// Queries per batch B.
    #[arg(long, default_value_t = 16, conflicts_with = "suite")]
    pub batch: usize,
    /// Lists probed per query.
    #[arg(long, default_value_t = 32, conflicts_with = "suite")]
    pub nprobe: usize,
    /// Results per query (K1; without --rerank also the scan's K0).
    #[arg(long, conflicts_with = "suite")]
    pub k: Option<usize>,
    /// Give every item attributes and every query a filter passing this fraction of items
    /// (the realised fraction, (O/V)^A, is printed).
    #[arg(long, value_name = "FRACTION")]
    pub filter_pass: Option<f64>,
    /// Filter shape A:O: A clauses ANDed, each `field IN (O values)`.
    #[arg(long, default_value = "1:1", value_name = "A:O", conflicts_with = "suite")]
    pub filter_terms: String,
    /// Refine rerank: the scan keeps K0 candidates, stage 4 re-scores them in f32 from f16
    /// embeddings (generated), stage 5 keeps K1.
    #[arg(long, value_name = "K0:K1", conflicts_with = "suite")]
    pub rerank: Option<String>,
    /// Probes given, not computed: nprobe lists per query drawn uniformly without
    /// replacement over equal lists of uniform random int8 codes (DESIGN.md's workload).
    #[arg(long, conflicts_with_all = ["clustered", "suite"])]
    pub random_probes: bool,
    /// Gaussian-mixture vectors (so recall means something) instead of random codes.
    #[arg(long, conflicts_with = "suite")]
    pub clustered: bool,
    /// Noise norm of --clustered items around their unit list centre.
    #[arg(long, default_value_t = 1.5, requires = "clustered")]
    pub spread: f32,
    /// Seed of all generated data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Check recall@k of this many queries against an exact int8 scan over all N.
    #[arg(long, default_value_t = 0, value_name = "S", conflicts_with = "suite")]
    pub recall_sample: usize,
    /// Most measured iterations (batches).
    #[arg(long, default_value_t = 100)]
    pub iters: usize,
    /// Stop measuring after this many seconds (at least 5 iterations run).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub time_budget: f64,
    /// Untimed passes before measuring (besides one reference pass per batch of the pool).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Bloom bit-planes M (with a filter). 1024 as SilverTorch; N*M/8 bytes.
    #[arg(long, default_value_t = 1024)]
    pub bloom_bits: u32,
    /// Bloom hashes per value.
    #[arg(long, default_value_t = 5, conflicts_with = "suite")]
    pub bloom_hashes: u32,
    /// Host threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_pair(flag: &str, s: &str) -> Result<(usize, usize)> {
    let parsed = s.split_once(':').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some(p) => Ok(p),
        None => Err(silica::Error::param(flag, format!("{s:?} is not of the form A:B (two integers)")).into()),
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(t) = a.threads {
        if t == 0 {
            bail!(silica::Error::param("threads", "must be at least 1"));
        }
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global()?;
    }
    match a.suite {
        Some(Suite::Peer) => run_suite(&a),
        None => run_single(&a),
    }
}

fn generate(spec: SynthSpec, quiet: bool) -> Result<(Synth, f64)> {
    if !quiet {
        eprintln!("generating N={} D={} nlist={} ({:?}, filter {:?}) ...", spec.n, spec.dim, spec.nlist, spec.vectors, spec.filter);
    }
    let t0 = Instant::now();
    let s = Synth::generate(spec)?;
    Ok((s, t0.elapsed().as_secs_f64()))
}

fn run_single(a: &BenchArgs) -> Result<()> {
    let (k0, k) = match (&a.rerank, a.k) {
        (Some(r), k) => {
            let (k0, k1) = parse_pair("rerank", r)?;
            if k.is_some_and(|k| k != k1) {
                bail!(silica::Error::param("k", format!("--k {} disagrees with --rerank {r} (K1 = {k1})", k.unwrap_or(0))));
            }
            (k0, k1)
        }
        (None, k) => (k.unwrap_or(10), k.unwrap_or(10)),
    };
    let filter = match a.filter_pass {
        Some(pass) => {
            let (and_terms, or_values) = parse_pair("filter-terms", &a.filter_terms)?;
            Some(FilterSpec { pass, and_terms, or_values })
        }
        None => None,
    };
    let spec = SynthSpec {
        n: a.n.unwrap_or(1_000_000),
        dim: a.dim,
        nlist: a.nlist,
        seed: a.seed,
        vectors: if a.clustered { Vectors::Clustered { spread: a.spread } } else { Vectors::Random },
        filter,
        bloom: BloomParams { bits: a.bloom_bits, hashes: a.bloom_hashes, seed: 0 },
        embeddings: a.rerank.is_some(),
        ids: false,
    };
    let w = Workload {
        batch: a.batch,
        nprobe: a.nprobe,
        k,
        k0,
        refine: a.rerank.is_some(),
        probes: if a.random_probes { ProbeSource::Random } else { ProbeSource::Computed },
        filter_only: false,
        iters: a.iters,
        time_budget_s: a.time_budget,
        warmup: a.warmup,
        recall_sample: a.recall_sample,
    };
    spec.validate()?;
    w.validate(spec.nlist, spec.embeddings)?;
    let (synth, gen_s) = generate(spec, a.json)?;
    let mut report = bench::with_backend(&a.backend, bench::Single { synth: &synth, workload: &w })?;
    report.gen_s = gen_s;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn run_suite(a: &BenchArgs) -> Result<()> {
    let p = suite::SuiteParams {
        n: a.n.unwrap_or(suite::PEER_N),
        seed: a.seed,
        filter_pass: a.filter_pass.unwrap_or(0.1),
        bloom_bits: a.bloom_bits,
        iters: a.iters,
        time_budget_s: a.time_budget,
        warmup: a.warmup,
    };
    if p.n != suite::PEER_N {
        eprintln!("NOTE: --suite peer with N = {} instead of the peer's {}: figures are not comparable, ratios omitted", p.n, suite::PEER_N);
    }
    let (synth, gen_s) = generate(suite::spec(&p), a.json)?;
    let r = bench::with_backend(&a.backend, bench::Peer { synth: &synth, params: &p, gen_s })?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", suite::table(&r));
        println!("\nindex generated in {gen_s:.2} s; filter of the Bloom row: {} (passes {:.3})", r.rows[4].report.filter, r.rows[4].report.filter_pass);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("silica bench: backend {} ({} clock, {} host threads)", r.backend, r.clock, r.threads);
    println!(
        "  index   N={} D={} nlist={} vectors={} seed={} (generated in {:.2} s, upload {:.2} s)",
        r.n, r.dim, r.nlist, r.vectors, r.seed, r.gen_s, r.upload_s
    );
    if !r.filter.is_empty() {
        println!("  filter  {} (passes {:.4} of items; one filter per query)", r.filter, r.filter_pass);
    }
    println!("  batch   B={} nprobe={} ({:?} probes) k0={} k={} rerank={}; {} iterations", r.batch, r.nprobe, r.probes, r.k0, r.k, r.rerank, r.iterations);
    println!("\n  {:<10} {:>10} {:>10} {:>14} {:>9}", "stage", "p50 ms", "p99 ms", "unique bytes", "GB/s");
    let stages = [&r.stages.probe, &r.stages.filter, &r.stages.scan, &r.stages.candidates, &r.stages.rerank, &r.stages.select];
    for (name, s) in STAGES.iter().zip(stages) {
        match s {
            Some(StageReport { given: true, .. }) => println!("  {name:<10} {:>10}", "given"),
            Some(s) => println!("  {name:<10} {:>10.3} {:>10.3} {:>14} {:>9.2}", s.latency_ms_p50, s.latency_ms_p99, s.bytes_read, s.gbps),
            None => {}
        }
    }
    println!("  {:<10} {:>10.3} {:>10.3} {:>14} {:>9.2}", "total", r.latency_ms_p50, r.latency_ms_p99, r.bytes_read, r.gbps);
    println!("\n  wall p50 {:.3} ms per batch; {:.0} queries/s", r.wall_ms_p50, r.qps);
    if r.candidate_queries > 0 {
        println!("  planner: {} of {} queries answered over their compacted Bloom candidates", r.candidate_queries, r.pool_queries);
    }
    if let Some(rc) = r.recall {
        println!("  recall@{} {:.4} over {} queries (exact int8 scan)", r.k, rc, r.recall_sample);
    }
}
