//! CLI definitions (clap) and command implementations.

mod serve;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use silica::eval;
use silica::filter::Filter;
use silica::graph::{self, RerankMode, SearchParams, SearchRequest};
use silica::model::{BloomParams, Index, IndexBuilder, Metric, build::BuildParams, format, npy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod bench;
mod devices;
mod synth;

const EXAMPLES: &str = "\
Examples (the bundled Debian corpus):
  silica build --vectors data/debian/embeddings.npy --attributes data/debian/items.jsonl --out debian.silica
  silica search --index debian.silica --queries data/debian/queries.npy --filters data/debian/queries.jsonl --k 10 --out results.jsonl
  silica eval --index debian.silica --queries data/debian/queries.npy --filters data/debian/queries.jsonl \\
              --ground-truth data/debian/ground_truth.jsonl --k 10
  silica inspect debian.silica";

/// silica: a GPU-native retrieval engine. The index is a model: one artifact of tensors,
/// one forward pass: Bloom filter -> IVF probe -> int8 scan + top-K -> rerank -> top-K.
#[derive(Parser, Debug)]
#[command(name = "silica", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Build an index artifact from vectors (.npy) and attributes (.jsonl).
    Build(BuildArgs),
    /// Search an index with a batch of query vectors and optional filters.
    Search(SearchArgs),
    /// Measure recall@k (overall and by filter selectivity), filter violations and QPS.
    Eval(EvalArgs),
    /// Benchmark a backend on a synthetic workload (or the DESIGN.md peer table: --suite peer).
    Bench(bench::BenchArgs),
    /// List the compute devices this build finds (CPU, wgpu adapters, CUDA).
    Devices(devices::DevicesArgs),
    /// Print an artifact's metadata and tensor table. Reads only the safetensors header
    /// (and checks the metadata checksum), so it is instant at any size and still works
    /// on a file whose tensors are damaged; `--verify` checks every tensor first.
    Inspect {
        /// The index artifact (*.silica).
        index: PathBuf,
        /// Check every tensor's checksum first (reads the whole file; `silica verify`
        /// reports each one).
        #[arg(long, conflicts_with = "no_verify")]
        verify: bool,
        /// Skip the metadata checksum check too.
        #[arg(long)]
        no_verify: bool,
    },
    /// Check an artifact's integrity: every tensor's and the metadata's checksum, then the
    /// value checks of loading. Prints OK/BAD per entry; exits non-zero on any failure.
    Verify {
        /// The index artifact (*.silica).
        index: PathBuf,
    },
    /// Serve an index over HTTP (JSON API under /v1) with dynamic batching and live updates.
    Serve(serve::ServeArgs),
    /// Write a synthetic catalog (the e2e bench's) as build inputs, streaming (for measurements).
    #[command(hide = true)]
    Synth(synth::SynthArgs),
    /// Fold an index's write-ahead log (fresh items, deletes, attribute changes) into a new artifact.
    Compact(serve::CompactArgs),
    /// Load-test a running `silica serve` (closed or open loop, JSON or binary bodies);
    /// prints QPS, latency percentiles and errors by status as JSON.
    Load(serve::LoadArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Item vectors: .npy, float32 or float16, shape [N, D], C order.
    #[arg(long)]
    pub vectors: PathBuf,
    /// Item attributes: JSON Lines, line i describes vector row i; `id` is the external id.
    /// Every field is filterable: strings and string lists (Bloom + exact dictionary),
    /// integers, floats and booleans (typed columns, stored exactly). A field mixing
    /// types is an error naming the line.
    #[arg(long)]
    pub attributes: PathBuf,
    /// Declared field types, `FIELD:TYPE,...` with TYPE string, int, float, bool or
    /// timestamp (RFC 3339 strings, stored as i64 microseconds). Undeclared fields are
    /// typed by value; timestamps must be declared. Example:
    /// `--schema price:float,published:timestamp`.
    #[arg(long)]
    pub schema: Option<String>,
    /// Output artifact (written atomically; `-`: stdout).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of inverted lists (default: the power of two nearest 4*sqrt(N)).
    #[arg(long)]
    pub nlist: Option<usize>,
    /// Bloom filter bits M (bit-planes).
    #[arg(long, default_value_t = 1024)]
    pub bloom_bits: u32,
    /// Bloom hashes per attribute value.
    #[arg(long, default_value_t = 5)]
    pub bloom_hashes: u32,
    /// Similarity: inner product, cosine (vectors normalized at build and query time), or
    /// l2 (squared Euclidean distance; results nearest first, `scores` = -distance²).
    #[arg(long, value_enum, default_value_t = Metric::Ip)]
    pub metric: Metric,
    /// Numeric attribute fields to store as rerank features (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Do not store the f16 embeddings (disables `refine` and `model` rerank; smaller file).
    #[arg(long)]
    pub no_embeddings: bool,
    /// Embed a multi-task rerank model (safetensors with rerank.* tensors) in the artifact.
    #[arg(long)]
    pub rerank_model: Option<PathBuf>,
    /// k-means iterations.
    #[arg(long, default_value_t = 10)]
    pub kmeans_iters: usize,
    /// Random seed (k-means sampling and initialisation).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Recall@10 the default nprobe must reach: after building, held-out rows are searched
    /// as queries (half with a sampled filter) at growing nprobe, and the smallest nprobe
    /// reaching this recall is stored as the index's default (`silica inspect` shows the curve).
    #[arg(long, default_value_t = 0.99)]
    pub target_recall: f64,
    /// Held-out rows used as calibration queries.
    #[arg(long, default_value_t = 500)]
    pub calibration_queries: usize,
    /// Skip the nprobe calibration (search then defaults to nlist/16).
    #[arg(long)]
    pub no_calibrate: bool,
    /// Device for k-means training and list assignment (quantization, list order, Bloom
    /// planes and CSR are bit-identical between devices for the same centroids).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub backend: String,
}

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The index artifact (*.silica).
    #[arg(long)]
    pub index: PathBuf,
    /// Query vectors: .npy, float32 or float16, shape [B, D].
    #[arg(long)]
    pub queries: PathBuf,
    /// Lists probed per query (default: the nprobe the index was calibrated for at build,
    /// shown by `silica inspect`; nlist/16 for an uncalibrated index). Queries whose probed
    /// lists hold fewer than K0 passing items are widened automatically.
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// Candidates kept by the int8 scan for rerank (default: k without rerank, else max(4k, 64)).
    #[arg(long)]
    pub k0: Option<usize>,
    /// Stage 4: none (int8 scores), refine (exact f32 re-score; default when the index
    /// stores embeddings) or model (multi-task MLP).
    #[arg(long, value_enum)]
    pub rerank: Option<RerankMode>,
    /// Rerank model (safetensors, tensor names in README) for `--rerank model`.
    #[arg(long)]
    pub rerank_model: Option<PathBuf>,
    /// Task weights for `--rerank model` (comma-separated, one per task).
    #[arg(long, value_delimiter = ',')]
    pub task_weights: Option<Vec<f32>>,
    /// Compute device.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wgpu", "cuda", "auto"], env = "SILICA_DEVICE")]
    pub backend: String,
    /// Devices instead of --backend: one (`cuda:1`, `wgpu:0`) or a comma-separated list of
    /// one kind whose shards split the index's inverted lists by rows (`cpu,cpu,cpu`,
    /// `cuda:0,cuda:1`; a device may repeat); answers are those of one device.
    #[arg(long)]
    pub devices: Option<String>,
    /// Skip the artifact's checksum check at load (value checks still run).
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub q: QueryArgs,
    /// Filters: JSON Lines with a `filter` string per query, in query order ("" = none).
    #[arg(long)]
    pub filters: Option<PathBuf>,
    /// Results per query.
    #[arg(long)]
    pub k: usize,
    /// Results: JSON Lines, one `{"qid", "rows", "ids", "scores"}` per query (written atomically; `-`: stdout).
    #[arg(long)]
    pub out: PathBuf,
    /// Attributes to return with each result (comma-separated): adds `"fields": [{...}, ...]`
    /// per query, one object per result row (`null` where an item has no value).
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub q: QueryArgs,
    /// Filters: JSON Lines with a `filter` string per query.
    #[arg(long)]
    pub filters: PathBuf,
    /// Exact ground truth: JSON Lines `{"qid", "ids", "scores"}`.
    #[arg(long)]
    pub ground_truth: PathBuf,
    /// Recall depth.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Queries per search call when timing (default: all in one batch).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Build(a) => build(a),
        Cmd::Search(a) => search(a),
        Cmd::Eval(a) => eval_cmd(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Devices(a) => devices::run(a),
        Cmd::Inspect { index, verify, no_verify } => inspect(&index, verify, no_verify),
        Cmd::Verify { index } => verify(&index),
        Cmd::Serve(a) => serve::serve(a),
        Cmd::Compact(a) => serve::compact(a),
        Cmd::Synth(a) => synth::run(a),
        Cmd::Load(a) => serve::load(a),
    }
}

/// The build device of `--backend`.
fn build_compute(name: &str) -> Result<Box<dyn silica::model::compute::BuildCompute>> {
    Ok(silica::registry::build_compute(name)?)
}

fn build(a: BuildArgs) -> Result<()> {
    let t0 = Instant::now();
    let params = BuildParams {
        nlist: a.nlist,
        bloom: BloomParams { bits: a.bloom_bits, hashes: a.bloom_hashes, ..Default::default() },
        metric: a.metric,
        kmeans_iters: a.kmeans_iters,
        seed: a.seed,
        store_embeddings: !a.no_embeddings,
        features: a.features.clone(),
        schema: a.schema.as_deref().map(silica::model::attributes::parse_schema).transpose()?.unwrap_or_default(),
        progress: true,
        ..Default::default()
    };
    check_writable(&a.out)?;
    if !a.no_calibrate {
        calibrate_options(&a).validate()?;
    }
    let compute = build_compute(&a.backend)?;
    let rerank = a.rerank_model.as_deref().map(silica::rerank::RerankModel::load).transpose()?;
    let builder = IndexBuilder::new(params);
    // `--out -`: stream into a temporary file, then copy it to stdout.
    let tmp_dir;
    let target = if is_stdout(&a.out) {
        tmp_dir = tempfile::tempdir().context("creating a temporary directory")?;
        tmp_dir.path().join("index.silica")
    } else {
        a.out.clone()
    };
    let s = builder.build_to_file(&a.vectors, &a.attributes, &target, compute.as_ref(), rerank.as_ref())?;
    if !a.no_calibrate {
        calibrate(&target, &a)?;
    }
    if is_stdout(&a.out) {
        let mut f = std::fs::File::open(&target)?;
        let mut out = std::io::stdout().lock();
        std::io::copy(&mut f, &mut out).context("writing to stdout")?;
    }
    let rss = silica::progress::peak_rss().map(|b| format!(", peak RSS {:.1} MB", b as f64 / 1e6)).unwrap_or_default();
    eprintln!(
        "built {}: N={} D={} nlist={} metric={} backend={} in {:.2}s, {:.1} MB{rss}",
        a.out.display(),
        s.n,
        s.dim,
        s.nlist,
        a.metric,
        compute.name(),
        t0.elapsed().as_secs_f64(),
        s.bytes as f64 / 1e6,
    );
    Ok(())
}

fn calibrate_options(a: &BuildArgs) -> silica::graph::calibrate::CalibrateOptions {
    silica::graph::calibrate::CalibrateOptions {
        target_recall: a.target_recall,
        queries: a.calibration_queries,
        seed: a.seed,
        ..Default::default()
    }
}

/// Measure the default nprobe of the artifact just built at `path` on the build's device
/// (see `graph::calibrate`) and store it in its metadata in place.
fn calibrate(path: &Path, a: &BuildArgs) -> Result<()> {
    let t0 = Instant::now();
    let ix = Arc::new(format::load_with(path, format::Verify::Skip)?);
    let nlist = ix.nlist();
    let t_open = Instant::now();
    let searcher = graph::open(&a.backend, ix)?;
    log::info!(
        "calibration: index mapped in {:.2}s, opened on {} (kernels, upload) in {:.2}s; {}",
        (t_open - t0).as_secs_f64(),
        a.backend,
        t_open.elapsed().as_secs_f64(),
        silica::progress::rss_note()
    );
    let c = silica::graph::calibrate::calibrate(searcher.as_ref(), &calibrate_options(a))?;
    log::info!("calibration: {}", silica::progress::rss_note());
    drop(searcher);
    silica::model::writer::patch_metadata(path, &[(format::CALIBRATION.to_string(), serde_json::to_string(&c)?)])?;
    eprintln!("{} ({:.1}s)", calibration_line(&c), t0.elapsed().as_secs_f64());
    if c.nprobe > nlist / 8 {
        log::warn!(
            "held-out rows need nprobe {} of {nlist} lists for recall@{} {}: this data is hard to partition (queries will be slow by default); a lower --target-recall, or --nprobe per request, trades recall for speed",
            c.nprobe,
            c.k,
            c.target_recall
        );
    }
    Ok(())
}

/// `default nprobe 24 (recall@10 0.991 / filtered 0.994 >= 0.99 on 250 + 250 held-out rows)`.
fn calibration_line(c: &silica::model::calibration::Calibration) -> String {
    let at = c.curve.iter().find(|p| p.nprobe == c.nprobe);
    let (r, f) = at.map_or((f64::NAN, None), |p| (p.recall, p.recall_filtered));
    let f = f.map_or(String::new(), |f| format!(" / filtered {f:.3}"));
    format!(
        "default nprobe {} (recall@{} {r:.3}{f} {} {} on {} + {} held-out rows)",
        c.nprobe,
        c.k,
        if c.reached { ">=" } else { "< target" },
        c.target_recall,
        c.queries,
        c.filtered_queries
    )
}

/// `--out -`: write to stdout.
fn is_stdout(out: &Path) -> bool {
    out.as_os_str() == "-"
}

/// Write a finished output: to stdout for `-`, else atomically (temp file + rename).
fn write_out(out: &Path, bytes: &[u8]) -> Result<()> {
    if is_stdout(out) {
        use std::io::Write;
        let mut s = std::io::stdout().lock();
        s.write_all(bytes).and_then(|_| s.flush()).context("writing to stdout")?;
        return Ok(());
    }
    Ok(format::write_atomic(out, bytes)?)
}

/// Fail early (before long work) when `out` is not a regular file or its directory
/// cannot take a file.
fn check_writable(out: &Path) -> Result<()> {
    if is_stdout(out) {
        return Ok(());
    }
    format::check_target(out)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new().prefix(".silica-probe-").tempfile_in(dir).with_context(|| format!("cannot write output {}", out.display()))?;
    Ok(())
}

struct Loaded {
    searcher: Box<dyn graph::Search>,
    queries: npy::Matrix,
}

fn load(q: &QueryArgs) -> Result<Loaded> {
    let mut index = format::load_with(&q.index, verify_flag(q.no_verify))?;
    if let Some(path) = &q.rerank_model {
        let m = silica::rerank::RerankModel::load(path)?;
        let want = 2 * index.dim + index.feature_names.len();
        if m.input_dim() != want {
            bail!("{}: rerank model input width {} != 2*D + F = {want}", path.display(), m.input_dim());
        }
        index.rerank = Some(m);
    }
    let queries = npy::read(&q.queries)?;
    if queries.dim != index.dim {
        return Err(
            silica::Error::Dimension { what: format!("queries {}", q.queries.display()), expected: index.dim, got: queries.dim }.into()
        );
    }
    silica::model::finite::check_rows(&queries.data, queries.dim, false, &format!("queries {}", q.queries.display()))?;
    let searcher = graph::open(q.devices.as_deref().unwrap_or(&q.backend), Arc::new(index))?;
    Ok(Loaded { searcher, queries })
}

fn params(q: &QueryArgs, k: usize) -> SearchParams {
    SearchParams { k, nprobe: q.nprobe, k0: q.k0, rerank: q.rerank.unwrap_or_default(), task_weights: q.task_weights.clone() }
}

fn compile_filters(path: Option<&Path>, index: &Index, nq: usize) -> Result<Vec<Filter>> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let texts = eval::read_filters(path)?;
    if texts.len() != nq {
        return Err(silica::Error::CountMismatch {
            what: "search".into(),
            left_name: format!("filters {}", path.display()),
            left: texts.len(),
            right_name: "queries".into(),
            right: nq,
        }
        .into());
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Filter::compile(t, &index.attrs.schema, &index.bloom.params).with_context(|| format!("{}: query {i}", path.display()))
        })
        .collect()
}

fn search(a: SearchArgs) -> Result<()> {
    if a.k == 0 {
        return Err(silica::Error::param("k", "must be at least 1").into());
    }
    check_writable(&a.out)?;
    let l = load(&a.q)?;
    let filters = compile_filters(a.filters.as_deref(), l.searcher.index(), l.queries.rows)?;
    let req = SearchRequest { queries: &l.queries.data, filters: &filters, params: params(&a.q, a.k) };
    let results = l.searcher.search(&req)?;
    // Inputs are range-checked so scores are finite; never write a NaN/Inf (JSON null).
    if let Some(i) = results.iter().position(|r| r.scores.iter().any(|s| !s.is_finite())) {
        bail!("query {i} produced a non-finite score (check the rerank model)");
    }
    let index = l.searcher.index();
    // Source row -> sorted row, for the attributes of result rows.
    let sorted = if a.fields.is_empty() {
        Vec::new()
    } else {
        index.fields_json(0, &a.fields).or_else(|e| if index.is_empty() { Ok(Default::default()) } else { Err(e) })?;
        let mut inv = vec![0usize; index.len()];
        for (r, &s) in index.source_rows.iter().enumerate() {
            inv[s as usize] = r;
        }
        inv
    };
    let mut out = Vec::new();
    for (qid, r) in results.iter().enumerate() {
        let mut line = serde_json::json!({"qid": qid, "rows": r.rows, "ids": r.ids, "scores": r.scores});
        if !a.fields.is_empty() {
            let fields = r
                .rows
                .iter()
                .map(|&s| index.fields_json(sorted[s as usize], &a.fields).map(serde_json::Value::Object))
                .collect::<silica::Result<Vec<_>>>()?;
            line["fields"] = serde_json::Value::Array(fields);
        }
        serde_json::to_writer(&mut out, &line)?;
        out.push(b'\n');
    }
    write_out(&a.out, &out)?;
    eprintln!("{} queries -> {}", results.len(), a.out.display());
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let l = load(&a.q)?;
    let index = l.searcher.index().clone();
    let nq = l.queries.rows;
    let filters = compile_filters(Some(&a.filters), &index, nq)?;
    let truth = eval::read_truth(&a.ground_truth)?;
    let p = params(&a.q, a.k);
    let req = SearchRequest { queries: &l.queries.data, filters: &filters, params: p.clone() };
    let results = l.searcher.search(&req)?;
    let report = eval::evaluate(&index, &l.queries.data, &filters, &truth, &results, a.k)?;
    let qps = eval::measure_qps(l.searcher.as_ref(), &l.queries.data, &filters, &p, a.batch.unwrap_or(nq).max(1), index.dim)?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["qps"] = qps.into();
        v["k"] = a.k.into();
        v["backend"] = l.searcher.backend_name().into();
        v.as_object_mut().map(|o| o.remove("per_query"));
        println!("{v}");
    } else {
        print!("{}", report.summary(qps, a.k));
    }
    Ok(())
}

fn verify_flag(no_verify: bool) -> format::Verify {
    if no_verify { format::Verify::Skip } else { format::Verify::Checksums }
}

fn verify(path: &Path) -> Result<()> {
    let artifact = silica::model::load::Artifact::open(path)?;
    let bytes = artifact.bytes();
    let mut failed = 0;
    match format::checksums(bytes, path)? {
        None => {
            println!("  {:<24} BAD  no checksums (written by an older silica; `silica compact` rewrites it with them)", "checksums");
            failed += 1;
        }
        Some(checks) => {
            for c in checks {
                match &c.problem {
                    None => println!("  {:<24} OK", c.name),
                    Some(p) => {
                        println!("  {:<24} BAD  {p}", c.name);
                        failed += 1;
                    }
                }
            }
        }
    }
    match artifact.index(format::Verify::Skip) {
        Ok(_) => println!("  {:<24} OK", "values"),
        Err(e) => {
            println!("  {:<24} BAD  {e}", "values");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{}: {failed} integrity check(s) failed", path.display());
    }
    println!("{}: OK", path.display());
    Ok(())
}

/// Print the header. By default only the header is read (its `__metadata__` checksum is
/// checked); `--verify` checks every tensor first; `--no-verify` skips the metadata check.
fn inspect(path: &Path, verify: bool, no_verify: bool) -> Result<()> {
    use format::Check;
    if verify {
        let artifact = silica::model::load::Artifact::open(path)?;
        match format::checksums(artifact.bytes(), path)? {
            None => log::warn!("{}: no checksums (written by an older silica); integrity not verified", path.display()),
            Some(c) => {
                if let Some(c) = c.iter().find(|c| c.problem.is_some()) {
                    bail!(
                        "{}: `{}`: {}; `silica verify` checks every tensor (inspect without --verify shows the header anyway)",
                        path.display(),
                        c.name,
                        c.problem.as_deref().unwrap_or_default()
                    );
                }
            }
        }
    } else if !no_verify {
        let header = silica::model::load::read_header(path)?;
        if let Some(Check { name, problem: Some(p) }) = format::meta_check(&header.info, path)? {
            bail!("{}: `{name}`: {p}; the metadata is damaged (--no-verify to inspect anyway)", path.display());
        }
    }
    let (meta, tensors) = format::inspect(path)?;
    println!("{}", path.display());
    let mut keys: Vec<_> = meta.keys().collect();
    keys.sort();
    for k in keys {
        let v = &meta[k];
        if k == format::CALIBRATION
            && let Ok(c) = serde_json::from_str::<silica::model::calibration::Calibration>(v)
        {
            println!("  {k:<16} {}", calibration_line(&c));
            let curve: Vec<String> = c
                .curve
                .iter()
                .map(|p| match p.recall_filtered {
                    Some(f) => format!("{}: {:.3}/{f:.3}", p.nprobe, p.recall),
                    None => format!("{}: {:.3}", p.nprobe, p.recall),
                })
                .collect();
            println!("  {:<16} nprobe: recall{} = {}", "", if c.filtered_queries > 0 { "/filtered" } else { "" }, curve.join(", "));
            continue;
        }
        let shown = if v.len() > 200 {
            format!("{}... ({} bytes)", &v[..v.char_indices().nth(200).map(|c| c.0).unwrap_or(v.len())], v.len())
        } else {
            v.clone()
        };
        println!("  {k:<16} {shown}");
    }
    println!("\n  {:<24} {:<6} shape", "tensor", "dtype");
    for (name, dt, shape) in tensors {
        println!("  {name:<24} {:<6} {shape:?}", format!("{dt:?}"));
    }
    Ok(())
}
