//! Observing and steering the executor's stages without re-sequencing them: benchmarks,
//! examples and tests pass a [`Hook`] to [`super::Executor::search_with`] /
//! [`super::Executor::run`] (stage timing on the device clock, given probes for the peer
//! rows, widening or the planner off, reading stage outputs back).

use crate::backend::{Backend, Probes};
use crate::error::Result;
use serde::Serialize;
use std::time::Instant;

/// A stage of the pipeline as the executor runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// 1: int8 centroid scores, top-nprobe lists.
    Probe,
    /// 2: Bloom masks over the probed lists.
    Filter,
    /// 3: int8 scan of the probed, masked rows, top-K0.
    Scan,
    /// 2+3 for selective filters: compacted Bloom candidates of the whole index,
    /// verified exactly and scored directly ([`Backend::scan_candidates`]).
    Candidates,
    /// 4: refine / model rerank.
    Rerank,
    /// 5: final top-K.
    Select,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 6] = [Stage::Probe, Stage::Filter, Stage::Scan, Stage::Candidates, Stage::Rerank, Stage::Select];
    /// Index into [`Stage::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
    /// Lower-case name (`probe`, `filter`, ...).
    pub fn name(self) -> &'static str {
        ["probe", "filter", "scan", "candidates", "rerank", "select"][self as usize]
    }
}

/// A stage output handed to [`Hook::observe`] (device values: read them with the
/// backend's `read_*`).
pub enum Output<'a, B: Backend> {
    Probes(&'a B::Probes),
    Mask(&'a B::Mask),
    /// The probe path's stage 3 output `[B, K0]`.
    Scan(&'a B::Cands),
    /// The candidate route's output `[B, K0]` and its per-query answers.
    Candidates(&'a B::Cands, &'a [Option<u64>]),
    /// Stage 5 output `[B, k]` of one group of queries.
    Final(&'a B::Cands),
}

/// What a caller may observe or steer in a search. Every method has a default that
/// leaves the search as users get it.
pub trait Hook<B: Backend> {
    /// Run one stage's device work `f` (a hook wraps it in timers here).
    fn stage<T>(&mut self, backend: &B, stage: Stage, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _ = (backend, stage);
        f()
    }
    /// See a stage output of the group of queries `which` (indices into the batch, in
    /// the output's query order); `false` ends the group there (a filter-only benchmark).
    fn observe(&mut self, backend: &B, which: &[usize], out: Output<'_, B>) -> Result<bool> {
        let _ = (backend, which, out);
        Ok(true)
    }
    /// Stage 1's output for the whole batch, given instead of computed (the peer rows'
    /// random probes). With given probes the batch runs one probe-path pass: no planner,
    /// no widening.
    fn given_probes(&mut self) -> Option<Probes> {
        None
    }
    /// Stage 1's output for the queries `which` at `nprobe` lists, when the caller already
    /// has it (a segment with the same centroids probed these queries: [`ShareProbes`]);
    /// unlike [`Hook::given_probes`] the planner and widening still run.
    fn probes_for(&mut self, which: &[usize], nprobe: usize) -> Option<Probes> {
        let _ = (which, nprobe);
        None
    }
    /// Whether [`Hook::given_probes`] will give probes.
    fn has_given_probes(&self) -> bool {
        false
    }
    /// Widen queries whose probed lists held fewer than K0 passing items.
    fn widen(&self) -> bool {
        true
    }
    /// Route selective filters over their compacted candidates.
    fn planner(&self) -> bool {
        true
    }
    /// The planner's candidate budget (rows a filter's Bloom candidates may hold to be
    /// answered over them); `None`: the executor's own, [`super::candidate_cap`] of its index.
    fn candidate_cap(&self) -> Option<u64> {
        None
    }
    /// Read each group's final candidates back to the host (`false`: the hook takes them
    /// from [`Output::Final`] itself, e.g. into device outputs, and the executor's host
    /// result stays empty).
    fn read_final(&self) -> bool {
        true
    }
    /// Take the posting route for short drivers (`model::postings`). Off for segments
    /// searched beside the main index (`silica serve`'s fresh parts): they are small and
    /// replaced at every write, so building their posting lists costs more than it saves.
    fn postings(&self) -> bool {
        self.candidate_cap().is_none()
    }
}

/// A segment searched beside another ([`super::Search::search_following`]): the other
/// segment's candidate budget, no widening.
pub struct FollowHook {
    pub cap: u64,
}

impl<B: Backend> Hook<B> for FollowHook {
    fn widen(&self) -> bool {
        false
    }
    fn candidate_cap(&self) -> Option<u64> {
        Some(self.cap)
    }
}

/// Stage 1 outputs shared between segments with the same centroids (`silica serve`'s main
/// index and its fresh lists, [`super::segments`]): the first search records the probes it
/// computed per query, a later one over the same queries takes them instead of scoring
/// the centroids again (what a query pays on the CPU for a second segment's probe).
pub struct ShareProbes {
    /// `lists[i]`: query i's probed lists, with their count.
    lists: std::sync::Mutex<Vec<Recorded>>,
}

/// One query's recorded probes: (nprobe, lists), or none yet.
type Recorded = Option<(usize, Vec<u32>)>;

impl ShareProbes {
    /// Room for a batch of `b` queries.
    pub fn new(b: usize) -> ShareProbes {
        ShareProbes { lists: std::sync::Mutex::new(vec![None; b]) }
    }
    fn record(&self, which: &[usize], p: &Probes) {
        let mut l = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        for (j, &i) in which.iter().enumerate() {
            if i < l.len() && l[i].is_none() {
                l[i] = Some((p.nprobe, p.lists[j * p.nprobe..(j + 1) * p.nprobe].to_vec()));
            }
        }
    }
    /// Probes of `which` at `nprobe`, when every one of them was recorded at that count.
    fn get(&self, which: &[usize], nprobe: usize) -> Option<Probes> {
        let l = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let mut lists = Vec::with_capacity(which.len() * nprobe);
        for &i in which {
            match l.get(i)? {
                Some((n, v)) if *n == nprobe => lists.extend_from_slice(v),
                _ => return None,
            }
        }
        Some(Probes { nprobe, lists })
    }
}

/// A search that records its probes into a [`ShareProbes`] (`follow: None`), or a
/// segment searched beside it ([`FollowHook`]'s rules) that takes them from there.
pub struct SharedHook<'a> {
    pub share: &'a ShareProbes,
    pub follow: Option<u64>,
}

impl<B: Backend> Hook<B> for SharedHook<'_> {
    fn observe(&mut self, backend: &B, which: &[usize], out: Output<'_, B>) -> Result<bool> {
        if let (None, Output::Probes(p)) = (self.follow, out) {
            self.share.record(which, &backend.read_probes(p)?);
        }
        Ok(true)
    }
    fn probes_for(&mut self, which: &[usize], nprobe: usize) -> Option<Probes> {
        self.follow.and_then(|_| self.share.get(which, nprobe))
    }
    fn widen(&self) -> bool {
        self.follow.is_none()
    }
    fn candidate_cap(&self) -> Option<u64> {
        self.follow
    }
}

/// The hook of a plain search.
pub struct NoHook;
impl<B: Backend> Hook<B> for NoHook {}

/// Per-stage time of one search, summed over the groups and widening rounds that ran it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Trace {
    /// Input: synchronize around every stage and time it (device clock when the backend
    /// has one, else the host clock). Off: only `host_s` is filled.
    #[serde(skip)]
    pub timing: bool,
    /// Seconds per stage, [`Stage::ALL`] order (0: not run).
    pub stage_s: [f64; 6],
    /// Host seconds inside each stage call (with `timing` off: the time to enqueue the
    /// stage's device work, plus any wait the backend does there).
    pub host_stage_s: [f64; 6],
    /// Host seconds of the whole search, of validating and quantizing the queries, and
    /// of building the responses ([`super::Search::search_traced`]).
    pub host_s: f64,
    pub prepare_s: f64,
    pub respond_s: f64,
    /// Times each stage ran.
    pub runs: [u32; 6],
    /// Stages timed on the device clock / on the host clock.
    pub device_timed: u32,
    pub host_timed: u32,
    /// Queries answered over their compacted candidates.
    pub candidate_queries: u64,
    /// Rows those queries' Bloom candidates held (what the candidate route scored at most).
    pub candidate_rows: u64,
    /// Device seconds per kernel phase, `stage.kernel` (e.g. `scan.main`), summed over
    /// the stage's runs, in first-seen order; only backends that time kernels
    /// ([`Backend::timed_phases`]) fill it.
    pub kernel_s: Vec<(String, f64)>,
}

impl Trace {
    /// A trace that times every stage.
    pub fn timed() -> Trace {
        Trace { timing: true, ..Default::default() }
    }
    /// Sum of the stage times, seconds.
    pub fn total_s(&self) -> f64 {
        self.stage_s.iter().sum()
    }
    /// `device` when every timed stage used the device clock, `host`, or `mixed`.
    pub fn clock(&self) -> &'static str {
        match (self.device_timed, self.host_timed) {
            (_, 0) => "device",
            (0, _) => "host",
            _ => "mixed",
        }
    }
}

/// Fills a [`Trace`]: `synchronize(); timed(stage); synchronize()` per stage.
pub struct TraceHook<'a> {
    pub trace: &'a mut Trace,
}

impl<B: Backend> Hook<B> for TraceHook<'_> {
    fn stage<T>(&mut self, b: &B, stage: Stage, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let i = stage.index();
        self.trace.runs[i] += 1;
        if !self.trace.timing {
            let t0 = Instant::now();
            let v = f();
            self.trace.host_stage_s[i] += t0.elapsed().as_secs_f64();
            return v;
        }
        b.synchronize()?;
        let t0 = Instant::now();
        let (v, dev, phases) = b.timed_phases(f)?;
        b.synchronize()?;
        for (k, t) in phases {
            let name = format!("{}.{k}", stage.name());
            match self.trace.kernel_s.iter_mut().find(|e| e.0 == name) {
                Some(e) => e.1 += t,
                None => self.trace.kernel_s.push((name, t)),
            }
        }
        let host = t0.elapsed().as_secs_f64();
        self.trace.host_stage_s[i] += host;
        match dev {
            Some(s) => {
                self.trace.device_timed += 1;
                self.trace.stage_s[i] += s;
            }
            None => {
                self.trace.host_timed += 1;
                self.trace.stage_s[i] += host;
            }
        }
        Ok(v)
    }
    fn observe(&mut self, _b: &B, _which: &[usize], out: Output<'_, B>) -> Result<bool> {
        if let Output::Candidates(_, answered) = out {
            for a in answered.iter().flatten() {
                self.trace.candidate_queries += 1;
                self.trace.candidate_rows += a;
            }
        }
        Ok(true)
    }
}
