//! The writer thread: owns the [`Store`], drains queued update batches into one group
//! commit (one fsync, one published snapshot) and acknowledges each batch only after its
//! log record is durable. Compactions (on request, or when the threshold is reached) fold
//! and write the new artifact on their own thread while writes go on; only the final
//! switch-over ([`Store::finish_compaction`]) holds writes back.

use super::error::ApiError;
use super::metrics::Metrics;
use super::state::{CompactReport, FoldedLists, Incoming, PreparedCompaction, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most commands drained into one group commit.
const GROUP: usize = 1024;
/// After a failed automatic compaction, wait this long before trying again.
const RETRY: Duration = Duration::from_secs(60);

/// A write waiting for its group commit: the batch, its arrival, its reply.
type Pending = (Box<Incoming>, Instant, oneshot::Sender<Result<u64, ApiError>>);
type CompactReply = oneshot::Sender<Result<CompactReport, ApiError>>;
/// Items by id as JSON objects (`None`: no live item).
pub type Items = Vec<Option<serde_json::Map<String, serde_json::Value>>>;

/// A request to the writer.
pub enum Cmd {
    /// `at`: when the request arrived (the write path's `queue` phase starts there).
    Write {
        batch: Box<Incoming>,
        at: Instant,
        reply: oneshot::Sender<Result<u64, ApiError>>,
    },
    Compact {
        reply: CompactReply,
    },
    /// A background compaction finished writing its artifact.
    Compacted(Box<silica_core::error::Result<PreparedCompaction>>),
    /// A background fold of the fresh tail into the fresh lists was built and uploaded.
    Folded(Box<silica_core::error::Result<FoldedLists>>),
    /// Read live items by id ([`Store::item_json`]), after the writes queued before it:
    /// one answer per id, `None` for an unknown or deleted id.
    Get {
        ids: Vec<Arc<str>>,
        names: Option<Vec<String>>,
        vector: bool,
        reply: oneshot::Sender<Result<Items, ApiError>>,
    },
}

/// Start the writer thread; it stops when every sender is dropped (`tx` is the sender of
/// `rx`; the writer keeps only a weak handle, to give running compactions a way back).
pub fn spawn(mut store: Store, metrics: Arc<Metrics>, tx: &mpsc::Sender<Cmd>, rx: mpsc::Receiver<Cmd>) -> std::thread::JoinHandle<()> {
    let back = tx.downgrade();
    // A full tail is folded into the fresh lists off this thread: acknowledgements never
    // wait for an O(fresh rows) layout and upload.
    store.set_background_folds(true);
    store.set_phases(metrics.write_phases.clone());
    std::thread::Builder::new()
        .name("silica-writer".into())
        .spawn(move || Writer { store, metrics, back, compacting: false, waiters: Vec::new(), failed_at: None }.run(rx))
        .expect("spawn the writer thread")
}

struct Writer {
    store: Store,
    metrics: Arc<Metrics>,
    back: mpsc::WeakSender<Cmd>,
    compacting: bool,
    /// Requests waiting for the running compaction.
    waiters: Vec<CompactReply>,
    failed_at: Option<Instant>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(first) = rx.blocking_recv() {
            let mut cmds = vec![first];
            while cmds.len() < GROUP {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            let mut pending: Vec<Pending> = Vec::new();
            for c in cmds {
                match c {
                    Cmd::Write { batch, at, reply } => pending.push((batch, at, reply)),
                    Cmd::Compact { reply } => {
                        self.flush(&mut pending);
                        self.waiters.push(reply);
                        self.start_compaction();
                    }
                    Cmd::Compacted(done) => {
                        self.flush(&mut pending);
                        self.finish_compaction(*done);
                    }
                    Cmd::Folded(done) => {
                        self.flush(&mut pending);
                        if let Err(e) = self.store.finish_fold(*done) {
                            log::error!("installing a fold of the fresh tail failed: {e}");
                        }
                    }
                    Cmd::Get { ids, names, vector, reply } => {
                        self.flush(&mut pending);
                        let got = ids.iter().map(|id| self.store.item_json(id, names.as_deref(), vector)).collect();
                        let _ = reply.send(got);
                    }
                }
            }
            self.flush(&mut pending);
            self.start_fold();
            let cooled = self.failed_at.is_none_or(|t| t.elapsed() > RETRY);
            if !self.compacting && cooled && self.store.needs_compaction() {
                self.start_compaction();
            }
        }
    }

    /// Fold a full fresh tail on its own thread (see [`Store::begin_fold`]).
    fn start_fold(&mut self) {
        let Some(back) = self.back.upgrade() else { return };
        let Some(job) = self.store.begin_fold() else { return };
        std::thread::Builder::new()
            .name("silica-fold".into())
            .spawn(move || {
                let r = job.run();
                let _ = back.blocking_send(Cmd::Folded(Box::new(r)));
            })
            .expect("spawn a fold thread");
    }

    fn start_compaction(&mut self) {
        if self.compacting {
            return;
        }
        let Some(back) = self.back.upgrade() else { return };
        let job = self.store.begin_compaction();
        self.compacting = true;
        std::thread::Builder::new()
            .name("silica-compact".into())
            .spawn(move || {
                let r = job.run();
                let _ = back.blocking_send(Cmd::Compacted(Box::new(r)));
            })
            .expect("spawn a compaction thread");
    }

    fn finish_compaction(&mut self, done: silica_core::error::Result<PreparedCompaction>) {
        self.compacting = false;
        let r = done.and_then(|d| self.store.finish_compaction(d));
        let reply = match r {
            Ok(r) => {
                self.failed_at = None;
                self.metrics.compaction_seconds.observe(r.seconds);
                self.metrics.compaction_pause_seconds.observe(r.pause_seconds);
                self.metrics.write_phases.observe("compaction_pause", r.pause_seconds);
                log::info!(
                    "compacted: {} rows -> {} ({} fresh folded, {} batches re-applied) in {:.2}s, writes paused {:.3}s",
                    r.rows_before,
                    r.rows_after,
                    r.fresh_folded,
                    r.replayed,
                    r.seconds,
                    r.pause_seconds
                );
                Ok(r)
            }
            Err(e) => {
                self.failed_at = Some(Instant::now());
                log::error!("compaction failed: {e}");
                Err(ApiError::internal(format!("compaction failed: {e}")))
            }
        };
        for w in self.waiters.drain(..) {
            let _ = w.send(reply.clone());
        }
    }

    fn flush(&mut self, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let (mut batches, mut replies) = (Vec::with_capacity(pending.len()), Vec::with_capacity(pending.len()));
        for (b, at, r) in pending.drain(..) {
            self.metrics.write_phases.observe("queue", t0.saturating_duration_since(at).as_secs_f64());
            batches.push(*b);
            replies.push(r);
        }
        match self.store.commit_incoming(&batches) {
            Ok(results) => {
                self.metrics.commit_batches.observe(results.iter().filter(|r| r.is_ok()).count() as f64);
                self.metrics.commit_seconds.observe(t0.elapsed().as_secs_f64());
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                // Applied state may now be ahead of the log: stop serving it. A restart
                // replays exactly what is durable.
                log::error!("write-ahead log failure: {e}; stopping");
                for reply in replies {
                    let _ = reply.send(Err(ApiError::unavailable(format!("write-ahead log failure: {e}"))));
                }
                std::process::abort();
            }
        }
    }
}
