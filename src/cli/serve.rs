//! `silica serve` and `silica compact` (the server lives in `silica::serve`).

use anyhow::Result;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The index artifact (*.silica). Its write-ahead log is `<index>.wal`, replayed at start.
    #[arg(long)]
    pub index: PathBuf,
    /// Listen address (loopback by default; port 0 picks a free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Compute device for the main index (the fresh segment is scanned on the CPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wgpu", "cuda"], env = "SILICA_DEVICE")]
    pub backend: String,
    /// Devices instead of --backend: one (`cuda:1`) or a list of one kind (`cpu,cpu`,
    /// `cuda:0,cuda:1,cuda:2,cuda:3`), split into --replicas groups of consecutive devices;
    /// each group holds the whole index sharded by inverted lists over its devices.
    #[arg(long)]
    pub devices: Option<String>,
    /// Copies of the index for throughput: R replicas of S = devices / R shards (replica r
    /// on devices r*S .. (r+1)*S); each batch goes to the replica with the fewest batches in
    /// flight. Needs --devices; --workers is raised to at least R.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Most queries per executor call (dynamic batching).
    #[arg(long, default_value_t = 256)]
    pub max_batch: usize,
    /// Longest wait, in microseconds, for more requests to join a batch.
    #[arg(long, default_value_t = 500)]
    pub max_wait_us: u64,
    /// Most queries waiting for a batch (the bounded queue in front of the batcher); a
    /// search that does not fit is refused with `503` and `Retry-After: 1`.
    #[arg(long, default_value_t = 8192)]
    pub max_queue: usize,
    /// Default deadline of a search, in milliseconds from arrival (a request's
    /// `timeout_ms` overrides it); a search not started by then is answered `504`. 0: none.
    #[arg(long, default_value_t = 0)]
    pub timeout_ms: u64,
    /// Batches in flight at once (search worker threads sharing the device): while one
    /// batch's device work runs, another's host work (filters, quantization, results) does.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Bearer token required on write endpoints (items, compact).
    #[arg(long, env = "SILICA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Fresh rows + deleted main rows that trigger an automatic compaction
    /// (default: max(16384, N/32); 0 disables).
    #[arg(long)]
    pub compact_threshold: Option<usize>,
    /// Newest fresh items kept in the fresh tail, which every query scans whole, before
    /// they join the fresh inverted lists (default: a sixteenth of the rows a default search
    /// scans, at least 512). Smaller: cheaper queries, more frequent list rebuilds.
    #[arg(long)]
    pub fresh_tail: Option<usize>,
    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// When the log is damaged before its final record (start-up refuses by default):
    /// move it aside to `<index>.wal.damaged-<offset>` and start from the records before the damage.
    #[arg(long)]
    pub wal_recover: bool,
    /// Skip the artifact's checksum check at start (value checks still run).
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// The index artifact (*.silica); must not be in use by a running server.
    #[arg(long)]
    pub index: PathBuf,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    if a.token.as_deref() == Some("") {
        anyhow::bail!("--token (or SILICA_TOKEN) is empty");
    }
    let backend = device_spec(a.devices.as_deref(), &a.backend, a.replicas)?;
    let workers = if a.replicas > 1 && a.workers < a.replicas {
        log::info!("--workers {} raised to {} (one batch in flight per replica)", a.workers, a.replicas);
        a.replicas
    } else {
        a.workers
    };
    silica::serve::run(silica::serve::Config {
        index: a.index,
        addr: a.addr,
        backend,
        max_batch: a.max_batch,
        max_wait: std::time::Duration::from_micros(a.max_wait_us),
        token: a.token,
        max_body: a.max_body_bytes,
        compact_threshold: a.compact_threshold,
        fresh_tail: a.fresh_tail,
        threads: a.threads,
        wal_recover: a.wal_recover,
        verify: !a.no_verify,
        max_queue: a.max_queue,
        workers,
        timeout: (a.timeout_ms > 0).then(|| std::time::Duration::from_millis(a.timeout_ms)),
    })?;
    Ok(())
}

/// The backend spec for the server: `--devices` split into `--replicas` groups joined
/// by `|` (`silica::graph::devices`), else `--backend`.
fn device_spec(devices: Option<&str>, backend: &str, replicas: usize) -> Result<String> {
    match devices {
        None if replicas > 1 => {
            Err(silica::Error::param("replicas", "--replicas needs --devices (e.g. --devices cuda:0,cuda:1 --replicas 2)").into())
        }
        None => Ok(backend.to_string()),
        Some(d) => {
            let list = silica::device::DeviceList::parse(d)?;
            Ok(list.replicas(replicas)?.iter().map(|g| g.spec()).collect::<Vec<_>>().join("|"))
        }
    }
}

pub fn compact(a: CompactArgs) -> Result<()> {
    let r = silica::serve::compact(&a.index)?;
    eprintln!(
        "compacted {}: {} rows -> {} live ({} fresh folded), {} bytes in {:.2}s",
        a.index.display(),
        r.rows_before,
        r.rows_after,
        r.fresh_folded,
        r.bytes,
        r.seconds
    );
    Ok(())
}

/// `silica load`. Example (a server on the Debian index):
/// `silica load --url http://127.0.0.1:8080 --queries data/debian/queries.npy --filters data/debian/queries.jsonl --connections 64 --duration 10 --body binary`
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The server: `http://host:port` (or `host:port`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Query vectors (`.npy`, `[Q, D]` f32/f16), sent one per request, round-robin.
    #[arg(long)]
    pub queries: PathBuf,
    /// One filter per query (JSON Lines with a `filter` string, as `silica search` reads).
    #[arg(long)]
    pub filters: Option<PathBuf>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Lists probed (default: the server's default).
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// `timeout_ms` sent with every request.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// `closed`: send on each answer; `open`: send at --rate, latency from the intended send time.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: silica::serve::load::Mode,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// `json` or `binary` request bodies (binary also asks for binary answers).
    #[arg(long, value_enum, default_value = "json")]
    pub body: silica::serve::load::Body,
    /// Client threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds per entry of the report's `window_qps` (QPS over time).
    #[arg(long, default_value_t = 5.0)]
    pub window: f64,
    /// Post new items at this many items/s during the measured window (0: no writes). The
    /// report's `upserts` gives acknowledgement latency and a k = 1 self-find check.
    #[arg(long, default_value_t = 0.0)]
    pub upsert_rate: f64,
    /// Items per `POST /v1/items` of the upsert stream.
    #[arg(long, default_value_t = 100)]
    pub upsert_batch: usize,
    /// Connections the upsert stream posts on (batch j on connection j mod N, each batch
    /// sent at its due time once its connection is free): several writers at once, as
    /// production clients are, so a slow acknowledgement delays only its own connection.
    #[arg(long, default_value_t = 8)]
    pub upsert_connections: usize,
    /// Base vectors of the upsert stream (`.npy`), cycled, each with uniform noise of
    /// ±--upsert-noise per component (default: random unit vectors, which the k = 1
    /// self-find check must find; a noisy copy of a base row may lose to that row).
    #[arg(long)]
    pub upsert_vectors: Option<PathBuf>,
    #[arg(long, default_value_t = 0.02)]
    pub upsert_noise: f32,
    /// Id prefix of streamed items (use a new one per run to add items, not replace them).
    #[arg(long, default_value = "load-")]
    pub upsert_prefix: String,
    /// Acknowledged items looked up by their own vector (k = 1) after the stream (evenly
    /// spaced; a number >= the items acknowledged checks every one).
    #[arg(long, default_value_t = 200)]
    pub upsert_check: usize,
}

pub fn load(a: LoadArgs) -> Result<()> {
    let addr = a.url.trim_start_matches("http://").trim_end_matches('/').to_string();
    if a.url.starts_with("https://") || addr.contains('/') {
        anyhow::bail!("--url must be http://host:port (got {})", a.url);
    }
    let m = silica::model::npy::read(&a.queries)?;
    let queries = (0..m.rows).map(|r| m.row(r).to_vec()).collect();
    let filters = match &a.filters {
        Some(p) => silica::eval::read_filters(p)?,
        None => Vec::new(),
    };
    if !(a.duration > 0.0 && a.duration.is_finite() && a.warmup >= 0.0 && a.warmup.is_finite()) {
        anyhow::bail!("--duration must be > 0 and --warmup >= 0 seconds");
    }
    let upserts = if a.upsert_rate != 0.0 {
        let base = match &a.upsert_vectors {
            Some(p) => {
                let m = silica::model::npy::read(p)?;
                (0..m.rows).map(|r| m.row(r).to_vec()).collect()
            }
            None => Vec::new(),
        };
        Some(silica::serve::load::Upserts {
            rate: a.upsert_rate,
            batch: a.upsert_batch,
            connections: a.upsert_connections,
            base,
            dim: m.dim,
            noise: a.upsert_noise,
            prefix: a.upsert_prefix.clone(),
            check: a.upsert_check,
            seed: 7,
        })
    } else {
        None
    };
    let report = silica::serve::load::run(silica::serve::load::Config {
        addr,
        queries,
        filters,
        k: a.k,
        nprobe: a.nprobe,
        timeout_ms: a.timeout_ms,
        connections: a.connections,
        duration: std::time::Duration::from_secs_f64(a.duration),
        warmup: std::time::Duration::from_secs_f64(a.warmup),
        mode: a.mode,
        rate: a.rate,
        body: a.body,
        threads: a.threads,
        window: std::time::Duration::from_secs_f64(if a.window.is_finite() && a.window > 0.0 { a.window } else { 0.0 }),
        upserts,
    })?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(p) = a.out {
        std::fs::write(&p, text + "\n").map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    }
    Ok(())
}
