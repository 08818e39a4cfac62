//! Replication for throughput: R searchers over the same index (each a device or a
//! sharded group of devices, [`super::devices`]), each concurrent search sent to the
//! replica with the fewest searches in flight (ties: round robin). `silica serve
//! --devices D1,...,DG --replicas R` builds R replicas of S = G / R shards, replica `r`
//! on devices `r*S .. (r+1)*S` (consecutive, so GPUs of one replica are neighbours).

use super::{Planner, Resolved, Search, SearchParams, SearchRequest, SearchResponse, Trace};
use crate::backend::Changed;
use crate::error::{Error, Result};
use crate::model::Index;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters of one replica (`GET /v1/stats` `replicas`, `/metrics` `silica_replica_*`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStats {
    /// Its devices (`cuda:0,cuda:1`).
    pub devices: String,
    /// Searches (executor calls: server batches) it ran.
    pub batches: u64,
    /// Queries in those batches.
    pub queries: u64,
    /// Searches running on it now.
    pub in_flight: u64,
}

struct Counters {
    devices: Vec<String>,
    batches: Vec<AtomicU64>,
    queries: Vec<AtomicU64>,
    in_flight: Vec<AtomicU64>,
    next: AtomicUsize,
}

impl Counters {
    fn new(devices: Vec<String>) -> Arc<Counters> {
        let z = || devices.iter().map(|_| AtomicU64::new(0)).collect();
        Arc::new(Counters { batches: z(), queries: z(), in_flight: z(), next: AtomicUsize::new(0), devices })
    }
}

/// R replicas behind one [`Search`] (module docs).
pub struct Replicated {
    index: Arc<Index>,
    replicas: Vec<Arc<dyn Search>>,
    counters: Arc<Counters>,
    name: &'static str,
}

/// Open `spec`, replicas separated by `|`, each group opened by `open_group` (the
/// registry's device-list opener, `silica_registry::open`).
/// Errors: `Error::Param` naming `replicas` for an empty group or groups of different sizes;
/// whatever `open_group` returns.
pub fn open(
    spec: &str,
    index: Arc<Index>,
    planner: Planner,
    open_group: impl Fn(&str, Arc<Index>, Planner) -> Result<Box<dyn Search>>,
) -> Result<Box<dyn Search>> {
    let groups: Vec<&str> = spec.split('|').map(str::trim).collect();
    let sizes: Vec<usize> = groups.iter().map(|g| if g.is_empty() { 0 } else { g.split(',').count() }).collect();
    if sizes.contains(&0) || sizes.iter().any(|&s| s != sizes[0]) {
        return Err(Error::param("replicas", format!("`{spec}`: every replica needs the same number of devices (at least one)")));
    }
    let replicas = groups.iter().map(|g| open_group(g, index.clone(), planner).map(Arc::from)).collect::<Result<Vec<Arc<dyn Search>>>>()?;
    let name = crate::backend::shard::intern(format!("{} x{} replicas", replicas[0].backend_name(), replicas.len()));
    Ok(Box::new(Replicated { index, replicas, counters: Counters::new(groups.iter().map(|g| g.to_string()).collect()), name }))
}

impl Replicated {
    /// Run `f` on the replica with the fewest searches in flight, counting it.
    fn on_replica<T>(&self, queries: usize, f: impl FnOnce(&dyn Search) -> Result<T>) -> Result<T> {
        let c = &self.counters;
        let r = self.replicas.len();
        let start = c.next.fetch_add(1, Relaxed) % r;
        let pick = (0..r).map(|i| (start + i) % r).min_by_key(|&i| c.in_flight[i].load(Relaxed)).unwrap_or(0);
        c.in_flight[pick].fetch_add(1, Relaxed);
        let out = f(self.replicas[pick].as_ref());
        c.in_flight[pick].fetch_sub(1, Relaxed);
        c.batches[pick].fetch_add(1, Relaxed);
        c.queries[pick].fetch_add(queries as u64, Relaxed);
        out
    }
}

fn batch(req: &SearchRequest, index: &Index) -> usize {
    req.queries.len() / index.dim.max(1)
}

impl Search for Replicated {
    fn index(&self) -> &Arc<Index> {
        &self.index
    }
    fn backend_name(&self) -> &'static str {
        self.name
    }
    fn search(&self, req: &SearchRequest) -> Result<Vec<SearchResponse>> {
        self.on_replica(batch(req, &self.index), |s| s.search(req))
    }
    fn search_traced(&self, req: &SearchRequest, trace: &mut Trace) -> Result<Vec<SearchResponse>> {
        self.on_replica(batch(req, &self.index), |s| s.search_traced(req, trace))
    }
    fn resolve(&self, p: &SearchParams) -> Result<Resolved> {
        self.replicas[0].resolve(p)
    }
    /// Every replica moves to `index`; the counters carry over when it is a new version of
    /// the same index (serve's updates), else (the fresh segment) start anew.
    fn with_index(&self, index: Arc<Index>, changed: &Changed) -> Result<Box<dyn Search>> {
        let replicas =
            self.replicas.iter().map(|r| r.with_index(index.clone(), changed).map(Arc::from)).collect::<Result<Vec<Arc<dyn Search>>>>()?;
        let counters =
            if self.index.same_vectors_and_lists(&index) { self.counters.clone() } else { Counters::new(self.counters.devices.clone()) };
        Ok(Box::new(Replicated { index, replicas, counters, name: self.name }))
    }
    fn search_following(&self, req: &SearchRequest, cap: u64) -> Result<Vec<SearchResponse>> {
        self.on_replica(batch(req, &self.index), |s| s.search_following(req, cap))
    }
    fn replicas(&self) -> Vec<ReplicaStats> {
        let c = &self.counters;
        (0..self.replicas.len())
            .map(|i| ReplicaStats {
                devices: c.devices[i].clone(),
                batches: c.batches[i].load(Relaxed),
                queries: c.queries[i].load(Relaxed),
                in_flight: c.in_flight[i].load(Relaxed),
            })
            .collect()
    }
}
