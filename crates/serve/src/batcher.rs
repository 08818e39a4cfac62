//! Dynamic batching and pipelining: search requests that arrive within `max_wait` of the oldest waiting
//! one (or that queued up while the executor was busy) are coalesced, up to `max_batch`
//! queries, into one executor call per distinct parameter set (k, nprobe, K0, rerank,
//! task weights); filters and vectors are per query, so they batch freely.

use super::api::ParsedSearch;
use super::error::ApiError;
use super::metrics::Metrics;
use super::state::Snapshot;
use arc_swap::ArcSwap;
use silica_core::filter::Filter;
use silica_core::graph::{SearchParams, SearchRequest, SearchResponse};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The answer to one job: the snapshot version searched and one response per query.
pub type Reply = Result<(u64, Vec<SearchResponse>), ApiError>;

/// One search request waiting for the executor.
pub struct Job {
    pub search: ParsedSearch,
    pub reply: oneshot::Sender<Reply>,
    pub enqueued: Instant,
    /// Answer 504 instead of searching when a batch takes it after this instant.
    pub deadline: Option<Instant>,
}

impl Job {
    fn len(&self) -> usize {
        self.search.filters.len()
    }
}

/// Start the batcher: one collecting thread that forms batches and `workers` threads that
/// run them, each batch on one worker, so that the host work of one batch (filter
/// compilation, quantization, result assembly) overlaps the device work of another, and
/// their device work queues back to back. A batch is formed only when a worker is free, so
/// requests that arrive while every worker is busy join the next batch. Stops when every
/// sender is dropped (queued jobs are answered first). A plain thread with `recv_timeout`
/// (futex waits) keeps `max_wait` precise to microseconds, where an async timer would round
/// it up to the next millisecond.
pub fn spawn(
    rx: Receiver<Job>,
    shared: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    max_batch: usize,
    max_wait: Duration,
    workers: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("silica-batcher".into())
        .spawn(move || {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<usize>();
            let mut queues = Vec::new();
            let mut handles = Vec::new();
            for w in 0..workers.max(1) {
                let (tx, wrx) = std::sync::mpsc::channel::<Vec<Job>>();
                let (ready, shared, metrics) = (ready_tx.clone(), shared.clone(), metrics.clone());
                queues.push(tx);
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("silica-search-{w}"))
                        .spawn(move || {
                            let mut cache = FilterCache::default();
                            while ready.send(w).is_ok() {
                                let Ok(jobs) = wrx.recv() else { break };
                                run_batch(&shared, jobs, &metrics, &mut cache);
                            }
                        })
                        .expect("spawn a search worker"),
                );
            }
            drop(ready_tx);
            collect(rx, &ready_rx, &queues, &metrics, max_batch, max_wait);
            drop(queues);
            for h in handles {
                let _ = h.join();
            }
        })
        .expect("spawn the batcher thread")
}

/// Most compiled filters one worker keeps ([`FilterCache`]); past it the cache starts over.
const FILTER_CACHE: usize = 4096;

/// Compiled filters a search worker keeps across batches, valid for one snapshot (filters
/// compile against its dictionary, which updates and compactions change): serving traffic
/// repeats its filters, and compiling them again for every batch is host time on the
/// batch's critical path. Keyed by the snapshot's identity (a `Weak`, so the address cannot
/// be reused by a later snapshot while it is held, and the old snapshot is not kept alive).
#[derive(Default)]
pub struct FilterCache {
    snap: std::sync::Weak<Snapshot>,
    map: HashMap<String, Filter>,
}

impl FilterCache {
    /// `text` compiled against `snap` (from the cache when this snapshot compiled it before).
    pub fn get(&mut self, snap: &Arc<Snapshot>, text: &str) -> Result<Filter, silica_core::filter::FilterError> {
        if !std::ptr::eq(self.snap.as_ptr(), Arc::as_ptr(snap)) {
            self.map.clear();
            self.snap = Arc::downgrade(snap);
        }
        if let Some(f) = self.map.get(text) {
            return Ok(f.clone());
        }
        let f = snap.compile(text)?;
        if self.map.len() >= FILTER_CACHE {
            self.map.clear();
        }
        self.map.insert(text.to_owned(), f.clone());
        Ok(f)
    }
}

/// Run one batch against the current snapshot, answering 500 if it panics.
fn run_batch(shared: &ArcSwap<Snapshot>, jobs: Vec<Job>, metrics: &Metrics, cache: &mut FilterCache) {
    let t0 = Instant::now();
    for j in &jobs {
        metrics.queue_seconds.observe(t0.duration_since(j.enqueued).as_secs_f64());
    }
    let snap = shared.load_full();
    // Run inside the rayon pool: the CPU backend's per-stage parallel loops then start
    // on the pool itself instead of handing off from this thread at every stage.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rayon::scope(|_| execute(&snap, jobs, metrics, cache))));
    if r.is_err() {
        log::error!("a search batch panicked; its requests were answered with 500");
    }
    metrics.batch_seconds.observe(t0.elapsed().as_secs_f64());
}

fn collect(
    rx: Receiver<Job>,
    ready: &Receiver<usize>,
    queues: &[std::sync::mpsc::Sender<Vec<Job>>],
    metrics: &Metrics,
    max_batch: usize,
    max_wait: Duration,
) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => taken(j, metrics),
                Err(_) => break,
            },
        };
        // A batch forms only once a worker can take it (requests queue meanwhile).
        let Ok(worker) = ready.recv() else { break };
        // Waiting is measured from the oldest job: one that queued while the workers were
        // busy goes out at once with whatever queued behind it.
        let deadline = first.enqueued + max_wait;
        let mut nq = first.len();
        let mut jobs = vec![first];
        while nq < max_batch {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => match deadline.checked_duration_since(Instant::now()) {
                    None => None,
                    Some(left) => rx.recv_timeout(left).ok(),
                },
            };
            let Some(j) = next.map(|j| taken(j, metrics)) else { break };
            if nq + j.len() > max_batch {
                carry = Some(j);
                break;
            }
            nq += j.len();
            jobs.push(j);
        }
        if queues[worker].send(jobs).is_err() {
            break;
        }
    }
}

/// A job leaves the bounded queue (its queries no longer count against `--max-queue`).
fn taken(j: Job, metrics: &Metrics) -> Job {
    metrics.queued.fetch_sub(j.len(), std::sync::atomic::Ordering::Relaxed);
    j
}

/// Parameters that must be equal for requests to share an executor call.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    k: usize,
    nprobe: Option<usize>,
    k0: Option<usize>,
    rerank: silica_core::graph::RerankMode,
    weights: Option<Vec<u32>>,
}

fn key(p: &SearchParams) -> Key {
    Key {
        k: p.k,
        nprobe: p.nprobe,
        k0: p.k0,
        rerank: p.rerank,
        weights: p.task_weights.as_ref().map(|w| w.iter().map(|x| x.to_bits()).collect()),
    }
}

/// Run jobs against one snapshot (all of them see the same version), compiling their
/// filters through `cache`.
pub fn execute(snap: &Arc<Snapshot>, jobs: Vec<Job>, metrics: &Metrics, cache: &mut FilterCache) {
    let mut groups: Vec<(Key, Vec<Job>)> = Vec::new();
    let now = Instant::now();
    for j in jobs {
        if j.deadline.is_some_and(|d| d <= now) {
            metrics.rejected_deadline.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let waited = now.duration_since(j.enqueued).as_secs_f64() * 1e3;
            let _ =
                j.reply.send(Err(ApiError::deadline(format!("the deadline passed before the search ran ({waited:.1} ms in the queue)"))));
            continue;
        }
        let k = key(&j.search.params);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(j),
            None => groups.push((k, vec![j])),
        }
    }
    for (_, group) in groups {
        run_group(snap, group, metrics, cache);
    }
}

fn run_group(snap: &Arc<Snapshot>, group: Vec<Job>, metrics: &Metrics, cache: &mut FilterCache) {
    // Filters compile against this snapshot's dictionary (values added by updates included);
    // the batch's queries and filters are laid out once, request after request, and each
    // request's slice of them is `at..at + len`.
    let nq: usize = group.iter().map(Job::len).sum();
    let mut queries: Vec<f32> = Vec::with_capacity(group.first().map_or(0, |j| nq * j.search.queries.len() / j.len().max(1)));
    let mut filters: Vec<Filter> = Vec::with_capacity(nq);
    let mut ready: Vec<(Job, usize)> = Vec::with_capacity(group.len());
    'jobs: for job in group {
        let at = filters.len();
        for (i, text) in job.search.filters.iter().enumerate() {
            match cache.get(snap, text) {
                Ok(f) => filters.push(f),
                Err(e) => {
                    filters.truncate(at);
                    let field = if job.search.single { "filter".to_string() } else { format!("filters[{i}]") };
                    let _ = job.reply.send(Err(ApiError::bad(field, e.to_string())));
                    continue 'jobs;
                }
            }
        }
        queries.extend_from_slice(&job.search.queries);
        ready.push((job, at));
    }
    if ready.is_empty() {
        return;
    }
    let params = ready[0].0.search.params.clone();
    metrics.batch_queries.observe(filters.len() as f64);
    metrics.batch_requests.observe(ready.len() as f64);
    match snap.search(&SearchRequest { queries: &queries, filters: &filters, params: params.clone() }) {
        Ok(mut results) => {
            for (job, at) in ready.into_iter().rev() {
                let mine = results.split_off(at);
                let _ = job.reply.send(Ok((snap.version, mine)));
            }
        }
        Err(e) if ready.len() > 1 => {
            // Attribute the error: run each request alone.
            log::warn!("batched search failed ({e}); retrying its {} requests one by one", ready.len());
            for (job, at) in ready {
                let fs = &filters[at..at + job.len()];
                let r = snap.search(&SearchRequest { queries: &job.search.queries, filters: fs, params: params.clone() });
                let _ = job.reply.send(r.map(|r| (snap.version, r)).map_err(ApiError::from));
            }
        }
        Err(e) => {
            let (job, _) = ready.pop().expect("one job");
            let _ = job.reply.send(Err(ApiError::from(e)));
        }
    }
}
