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
    /// End to end through the executor on a built catalog (k-means index, Zipf attributes,
    /// filter classes none / 20% / 1% / 0.1% / 0.01%): QPS, host and device latency,
    /// recall@k against exact filtered truth, per class and batch size.
    E2e,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  silica bench --backend cpu --n 1000000 --dim 128 --nlist 1024 --batch 16 --nprobe 32 --k 100 --clustered --recall-sample 16 --json
  silica bench --backend cpu --random-probes --n 20000000 --nlist 4096 --batch 16 --nprobe 32 --k 2048
  silica bench --backend cpu --suite peer --n 1000000      # scaled-down smoke run of the peer table
  silica bench --backend cuda --suite e2e --n 5000000 --batch 256,16 --nprobe 32 --json")]
pub struct BenchArgs {
    /// Compute device.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wgpu", "cuda"], env = "SILICA_DEVICE")]
    pub backend: String,
    /// Devices instead of --backend: one (`cuda:1`, `wgpu:0`) or a list of one kind whose
    /// shards split the index's lists (`cpu,cpu,cpu`, `cuda:0,cuda:1`; README "Several devices").
    #[arg(long)]
    pub devices: Option<String>,
    /// Print one JSON object (the suite: one object with a `rows` array).
    #[arg(long)]
    pub json: bool,
    /// Run a preset instead of one workload (`peer`: DESIGN.md's table; `e2e`: end to end).
    #[arg(long, value_enum)]
    pub suite: Option<Suite>,
    /// Items N (default 1,000,000; with --suite peer 20,000,000, smaller values scale it down).
    #[arg(long)]
    pub n: Option<usize>,
    /// Dimension D [default: 128].
    #[arg(long)]
    pub dim: Option<usize>,
    /// Inverted lists (equal-sized) [default: 1024; --suite e2e: the builder's, 4·√N rounded to a power of two].
    #[arg(long)]
    pub nlist: Option<usize>,
    /// Queries per batch B [default: 16; --suite e2e: a comma list, 256,16].
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Lists probed per query [default: 32].
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// Results per query (K1; without --rerank also the scan's K0) [default: 10].
    #[arg(long)]
    pub k: Option<usize>,
    /// --suite e2e: planner candidate budgets to compare, a comma list, in units of the rows
    /// nprobe average lists hold [default: the executor's, graph::CANDIDATE_BUDGET].
    #[arg(long, value_delimiter = ',')]
    pub candidate_budget: Vec<u64>,
    /// --suite e2e: query vectors, each searched once per filter class [default: 512].
    #[arg(long)]
    pub queries: Option<usize>,
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
    /// Check recall@k of this many queries against an exact int8 scan over all N [default: 0;
    /// --suite e2e: every query, against exact filtered truth].
    #[arg(long, value_name = "S")]
    pub recall_sample: Option<usize>,
    /// Most measured iterations (batches) [default: 100; --suite e2e: per class and B, no cap].
    #[arg(long)]
    pub iters: Option<usize>,
    /// Stop measuring after this many seconds (at least 5 iterations run) [default: 10;
    /// --suite e2e: per class and B, 2 s at N >= 1M, scaled down linearly below].
    #[arg(long, value_name = "SECONDS")]
    pub time_budget: Option<f64>,
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
        Some(Suite::E2e) => run_e2e(&a),
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

/// Flags a mode does not use (given ones are an error naming them).
fn unused(mode: &str, given: &[(&str, bool)]) -> Result<()> {
    match given.iter().find(|g| g.1) {
        Some((flag, _)) => bail!(silica::Error::param(flag, format!("--{flag} cannot be used with {mode}"))),
        None => Ok(()),
    }
}

/// One planner per `--candidate-budget` value (none given: the default alone).
fn planners(a: &BenchArgs) -> Result<Vec<silica::graph::Planner>> {
    if a.candidate_budget.contains(&0) {
        bail!(silica::Error::param("candidate-budget", "must be at least 1"));
    }
    Ok(a.candidate_budget.iter().map(|&b| silica::graph::Planner { candidate_budget: b }).collect())
}

fn run_e2e(a: &BenchArgs) -> Result<()> {
    unused("--suite e2e", &[("filter-pass", a.filter_pass.is_some())])?;
    let d = bench::e2e::E2eParams::default();
    let p = bench::e2e::E2eParams {
        backend: a.device_spec(),
        n: a.n.unwrap_or(d.n),
        dim: a.dim.unwrap_or(d.dim),
        nlist: a.nlist,
        nprobe: a.nprobe.unwrap_or(d.nprobe),
        k: a.k.unwrap_or(d.k),
        queries: a.queries.unwrap_or(d.queries),
        batches: if a.batch.is_empty() { d.batches } else { a.batch.clone() },
        recall_sample: a.recall_sample,
        time_budget_s: a.time_budget,
        iters: a.iters,
        seed: a.seed,
        planners: planners(a)?,
        progress: !a.json,
    };
    let r = bench::e2e::run(&p)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", bench::e2e::table(&r));
    }
    Ok(())
}

fn run_single(a: &BenchArgs) -> Result<()> {
    unused(
        "a single workload (without --suite e2e)",
        &[("queries", a.queries.is_some()), ("candidate-budget", !a.candidate_budget.is_empty())],
    )?;
    let batch = match a.batch[..] {
        [] => 16,
        [b] => b,
        _ => bail!(silica::Error::param("batch", "one batch size (a list needs --suite e2e)")),
    };
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
        dim: a.dim.unwrap_or(128),
        nlist: a.nlist.unwrap_or(1024),
        seed: a.seed,
        vectors: if a.clustered { Vectors::Clustered { spread: a.spread } } else { Vectors::Random },
        filter,
        bloom: BloomParams { bits: a.bloom_bits, hashes: a.bloom_hashes, seed: 0 },
        embeddings: a.rerank.is_some(),
        ids: false,
    };
    let w = Workload {
        batch,
        nprobe: a.nprobe.unwrap_or(32),
        k,
        k0,
        refine: a.rerank.is_some(),
        probes: if a.random_probes { ProbeSource::Random } else { ProbeSource::Computed },
        filter_only: false,
        iters: a.iters.unwrap_or(100),
        time_budget_s: a.time_budget.unwrap_or(10.0),
        warmup: a.warmup,
        recall_sample: a.recall_sample.unwrap_or(0),
    };
    spec.validate()?;
    w.validate(spec.nlist, spec.embeddings)?;
    let (synth, gen_s) = generate(spec, a.json)?;
    let mut report = bench::with_backend(&a.device_spec(), bench::Single { synth: &synth, workload: &w })?;
    report.gen_s = gen_s;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn run_suite(a: &BenchArgs) -> Result<()> {
    let flags = [
        ("dim", a.dim.is_some()),
        ("nlist", a.nlist.is_some()),
        ("batch", !a.batch.is_empty()),
        ("nprobe", a.nprobe.is_some()),
        ("k", a.k.is_some()),
        ("queries", a.queries.is_some()),
        ("recall-sample", a.recall_sample.is_some()),
        ("candidate-budget", !a.candidate_budget.is_empty()),
    ];
    unused("--suite peer", &flags)?;
    let p = suite::SuiteParams {
        n: a.n.unwrap_or(suite::PEER_N),
        seed: a.seed,
        filter_pass: a.filter_pass.unwrap_or(0.1),
        bloom_bits: a.bloom_bits,
        iters: a.iters.unwrap_or(100),
        time_budget_s: a.time_budget.unwrap_or(10.0),
        warmup: a.warmup,
    };
    if p.n != suite::PEER_N {
        eprintln!(
            "NOTE: --suite peer with N = {} instead of the peer's {}: figures are not comparable, ratios omitted",
            p.n,
            suite::PEER_N
        );
    }
    let (synth, gen_s) = generate(suite::spec(&p), a.json)?;
    let r = bench::with_backend(&a.device_spec(), bench::Peer { synth: &synth, params: &p, gen_s })?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", suite::table(&r));
        println!(
            "\nindex generated in {gen_s:.2} s; filter of the Bloom row: {} (passes {:.3})",
            r.rows[4].report.filter, r.rows[4].report.filter_pass
        );
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
    println!(
        "  batch   B={} nprobe={} ({:?} probes) k0={} k={} rerank={}; {} iterations",
        r.batch, r.nprobe, r.probes, r.k0, r.k, r.rerank, r.iterations
    );
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

impl BenchArgs {
    /// `--devices` when given, else `--backend`.
    fn device_spec(&self) -> String {
        self.devices.clone().unwrap_or_else(|| self.backend.clone())
    }
}
