//! `silica serve`: an HTTP service over one index with dynamic batching and in-place
//! streaming updates (DESIGN.md "Snapshot isolation", "a fresh segment").
//!
//! * [`api`]: axum routes, JSON types, validation; [`error`]: the JSON error type.
//! * [`binary`]: the binary search body and answer, the direct JSON answer writer.
//! * [`batcher`]: coalesces concurrent searches into one executor call.
//! * [`state`]: snapshots (main index + fresh segment + tombstones) swapped atomically per
//!   update batch; [`segment`]: in-place row updates and the left-right copies;
//!   [`dict`]: the attribute dictionary with appended values.
//! * [`wal`]: the write-ahead log (fsync before acknowledgement, replay on start);
//!   [`compact`](mod@compact): folds updates into a new artifact; [`writer`]: the group-commit thread.
//! * [`crash`]: test-only crash points (`SILICA_TEST_ONLY_CRASH_AT`).
//! * [`metrics`]: Prometheus text.
//! * [`load`]: `silica load`, the HTTP load generator (closed and open loop).

pub mod api;
pub mod batcher;
pub mod binary;
pub mod compact;
pub mod crash;
pub mod dict;
pub mod error;
pub mod fresh;
pub mod ids;
pub mod load;
pub mod metrics;
pub mod segment;
pub mod state;
pub mod update;
pub mod wal;
pub mod writer;

use silica_core::error::{Error, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Server settings (`silica serve` flags).
#[derive(Clone, Debug)]
pub struct Config {
    pub index: PathBuf,
    pub addr: SocketAddr,
    pub backend: String,
    /// Most queries per executor call.
    pub max_batch: usize,
    /// Longest wait for more requests to join a batch.
    pub max_wait: Duration,
    /// Bearer token required on write routes (`None`: no authentication).
    pub token: Option<String>,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Compaction threshold (see [`state::Options`]).
    pub compact_threshold: Option<usize>,
    /// Fresh tail size (see [`state::Store::set_fresh_tail_limit`]; `None`: the default).
    pub fresh_tail: Option<usize>,
    /// Tokio worker threads (`None`: one per core).
    pub threads: Option<usize>,
    /// `--wal-recover`: see [`state::Options::wal_recover`].
    pub wal_recover: bool,
    /// Check the artifact's checksums at start (`--no-verify`: false).
    pub verify: bool,
    /// Most queries waiting for a batch; more are refused with 503 + `Retry-After`.
    pub max_queue: usize,
    /// Deadline of a search that gives no `timeout_ms` (`None`: none).
    pub timeout: Option<Duration>,
    /// Batches run at once (search worker threads sharing the executor).
    pub workers: usize,
}

/// Load the index (replaying its log), bind, print `listening on http://ADDR` on stdout and
/// serve until SIGINT/SIGTERM.
pub fn run(cfg: Config) -> Result<()> {
    if cfg.max_batch == 0 {
        return Err(Error::param("max-batch", "must be at least 1"));
    }
    if cfg.workers == 0 {
        return Err(Error::param("workers", "must be at least 1"));
    }
    if cfg.max_queue == 0 {
        return Err(Error::param("max-queue", "must be at least 1"));
    }
    let mut store = state::Store::open(
        &cfg.index,
        state::Options {
            backend: cfg.backend.clone(),
            compact_threshold: cfg.compact_threshold,
            wal_recover: cfg.wal_recover,
            verify: cfg.verify,
        },
    )?;
    if let Some(n) = cfg.fresh_tail {
        if n == 0 {
            return Err(Error::param("fresh-tail", "must be at least 1"));
        }
        store.set_fresh_tail_limit(n)?;
    }
    let shared = store.shared();
    let s = store.stats();
    log::info!("loaded {}: {} items ({} fresh), version {}", cfg.index.display(), s.items, s.fresh_live, s.version);
    if !cfg.addr.ip().is_loopback() && cfg.token.is_none() {
        log::warn!("listening on {} without --token: anyone who can reach it can write", cfg.addr);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = cfg.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.enable_all().build().map_err(|e| Error::backend("serve", format!("tokio runtime: {e}")))?;
    let metrics = Arc::new(metrics::Metrics::default());
    let (wtx, wrx) = tokio::sync::mpsc::channel(4096);
    let writer = writer::spawn(store, metrics.clone(), &wtx, wrx);
    let (btx, brx) = std::sync::mpsc::channel();
    let batcher = batcher::spawn(brx, shared.clone(), metrics.clone(), cfg.max_batch, cfg.max_wait, cfg.workers);
    let state = Arc::new(api::AppState {
        shared,
        batcher: btx,
        writer: wtx,
        metrics,
        token: cfg.token.clone(),
        max_queue: cfg.max_queue,
        timeout: cfg.timeout,
    });
    let result = rt.block_on(async {
        let app = api::router(state, cfg.max_body);
        let listener =
            tokio::net::TcpListener::bind(cfg.addr).await.map_err(|e| Error::backend("serve", format!("cannot bind {}: {e}", cfg.addr)))?;
        let local = listener.local_addr().map_err(|e| Error::backend("serve", e.to_string()))?;
        println!("listening on http://{local}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // No Nagle delay on answers: one small answer per request, and a second segment
        // (a large answer, or headers flushed apart from the body) must not wait for the
        // client's delayed ACK (tens of ms at the tail).
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(|e| Error::backend("serve", e.to_string()))
    });
    // The router (and with it the senders) is gone: the batcher and the writer drain and stop.
    drop(rt);
    let _ = batcher.join();
    let _ = writer.join();
    result
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    log::info!("shutting down");
}

/// `silica compact`: lock the artifact, replay its log, fold everything into a new
/// artifact written atomically, and start an empty log. Fails while a server holds it.
pub fn compact(index: &std::path::Path) -> Result<state::CompactReport> {
    let mut store =
        state::Store::open(index, state::Options { backend: "cpu".into(), compact_threshold: Some(0), wal_recover: false, verify: true })?;
    store.compact()
}
