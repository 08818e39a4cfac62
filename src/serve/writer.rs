//! The writer thread: owns the [`Store`], drains queued update batches into one group
//! commit (one fsync, one published snapshot), runs compactions (on request and when the
//! threshold is reached) and acknowledges each batch only after its log record is durable.

use super::error::ApiError;
use super::metrics::Metrics;
use super::state::{CompactReport, Store};
use super::update::Batch;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Most commands drained into one group commit.
const GROUP: usize = 1024;

/// A request to the writer.
pub enum Cmd {
    Write { batch: Batch, reply: oneshot::Sender<Result<u64, ApiError>> },
    Compact { reply: oneshot::Sender<Result<CompactReport, ApiError>> },
}

/// Start the writer thread; it stops when every sender is dropped.
pub fn spawn(store: Store, metrics: Arc<Metrics>, rx: mpsc::Receiver<Cmd>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new().name("silica-writer".into()).spawn(move || run(store, metrics, rx)).expect("spawn the writer thread")
}

fn run(mut store: Store, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Cmd>) {
    while let Some(first) = rx.blocking_recv() {
        let mut cmds = vec![first];
        while cmds.len() < GROUP {
            match rx.try_recv() {
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        let mut pending: Vec<(Batch, oneshot::Sender<Result<u64, ApiError>>)> = Vec::new();
        for c in cmds {
            match c {
                Cmd::Write { batch, reply } => pending.push((batch, reply)),
                Cmd::Compact { reply } => {
                    flush(&mut store, &metrics, &mut pending);
                    let _ = reply.send(compact(&mut store, &metrics));
                }
            }
        }
        flush(&mut store, &metrics, &mut pending);
        if store.needs_compaction()
            && let Err(e) = compact(&mut store, &metrics)
        {
            log::error!("automatic compaction failed: {e}");
        }
    }
}

fn compact(store: &mut Store, metrics: &Metrics) -> Result<CompactReport, ApiError> {
    let r = store.compact().map_err(|e| ApiError::internal(format!("compaction failed: {e}")))?;
    metrics.compaction_seconds.observe(r.seconds);
    log::info!("compacted: {} rows -> {} ({} fresh folded) in {:.2}s", r.rows_before, r.rows_after, r.fresh_folded, r.seconds);
    Ok(r)
}

fn flush(store: &mut Store, metrics: &Metrics, pending: &mut Vec<(Batch, oneshot::Sender<Result<u64, ApiError>>)>) {
    if pending.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let (batches, replies): (Vec<Batch>, Vec<_>) = std::mem::take(pending).into_iter().unzip();
    match store.commit(&batches) {
        Ok(results) => {
            metrics.commit_batches.observe(results.iter().filter(|r| r.is_ok()).count() as f64);
            metrics.commit_seconds.observe(t0.elapsed().as_secs_f64());
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            // Applied state may now be ahead of the log: stop serving it. A restart replays
            // exactly what is durable.
            log::error!("write-ahead log failure: {e}; stopping");
            for reply in replies {
                let _ = reply.send(Err(ApiError::unavailable(format!("write-ahead log failure: {e}"))));
            }
            std::process::abort();
        }
    }
}
