//! Timing one workload on one backend: per-stage and end-to-end latency, unique bytes
//! read, effective bandwidth and (optionally) recall@k against an exact scan.
//!
//! Each measured iteration runs one query batch through the real executor
//! ([`Executor::run`]: planner, candidate route, probe path, widening; a pool of batches
//! is cycled so that repeated runs do not replay identical inputs). The bench observes
//! it through a [`Hook`]: every stage is wrapped in `synchronize(); Backend::timed(stage);
//! synchronize()` (the device time when the backend has a timer, CUDA events or wgpu
//! timestamp queries, else the host clock around it), and given probes (the peer rows)
//! replace stage 1. End-to-end latency is the sum of the stage times of one iteration;
//! `wall` is the host time of the whole iteration (stage times plus the synchronisations
//! between them and the host work of the executor).

use super::data::Synth;
pub use super::metrics::{Bytes, batch_bytes, candidate_bytes, exact_top_k, gbps, percentile, recall_at_k};
use serde::Serialize;
use silica_core::backend::{Backend, Candidates, Mask, Probes, QueryBatch, Rerank};
use silica_core::error::{Error, Result};
use silica_core::filter::{Filter, Plan};
use silica_core::graph::{Executor, Hook, Output, Resolved, Stage, prepare_queries};
use silica_core::model::Index;
use std::time::Instant;

/// Stage names, in report order ([`Stage::ALL`]).
pub const STAGES: [&str; 6] = ["probe", "filter", "scan", "candidates", "rerank", "select"];
pub(super) const PROBE: usize = 0;
pub(super) const FILTER: usize = 1;
pub(super) const SCAN: usize = 2;
pub(super) const CANDIDATES: usize = 3;
pub(super) const RERANK: usize = 4;
pub(super) const SELECT: usize = 5;

/// Where stage 1's output comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeSource {
    /// Stage 1 runs (int8 centroid scores, top-nprobe).
    #[default]
    Computed,
    /// Given: nprobe lists per query drawn uniformly without replacement (the peer rows).
    Random,
    /// Given: every list, in order (nprobe = nlist; the Bloom row).
    All,
}

/// One workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Queries per batch B (>= 1).
    pub batch: usize,
    /// Lists per query (1..=nlist; ignored for [`ProbeSource::All`]).
    pub nprobe: usize,
    /// Results per query K1 (>= 1).
    pub k: usize,
    /// Candidates kept by the scan K0 (>= k).
    pub k0: usize,
    /// Stage 4 refines (exact f32 re-score; needs embeddings); else int8 scores.
    pub refine: bool,
    pub probes: ProbeSource,
    /// Time stage 2 only (the Bloom row); no scan, rerank, select, recall.
    pub filter_only: bool,
    /// Most measured iterations.
    pub iters: usize,
    /// Stop after this many seconds of measuring (but run at least [`MIN_ITERS`]).
    pub time_budget_s: f64,
    /// Extra untimed passes before measuring (on top of one reference pass per batch).
    pub warmup: usize,
    /// Queries whose recall@k is checked against an exact scan (0: none).
    pub recall_sample: usize,
}

/// Iterations measured even when the time budget is spent.
pub const MIN_ITERS: usize = 5;
/// Distinct query batches cycled through when measuring (more when the recall sample needs them).
pub const POOL_BATCHES: usize = 4;

impl Workload {
    /// Check the workload against an index of `nlist` lists (with f16 embeddings or not);
    /// errors name the flag. [`run`] calls it; callers may too, before generating data.
    pub fn validate(&self, nlist: usize, embeddings: bool) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::param("batch", "must be at least 1"));
        }
        if self.k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        if self.k0 < self.k {
            return Err(Error::param("rerank", format!("K0 = {} < K1 = {}; the scan must keep at least K1 candidates", self.k0, self.k)));
        }
        if self.probes != ProbeSource::All && (self.nprobe == 0 || self.nprobe > nlist) {
            return Err(Error::param("nprobe", format!("{} must be in 1..={nlist} (nlist)", self.nprobe)));
        }
        if self.refine && !embeddings {
            return Err(Error::param("rerank", "refine needs items.embeddings"));
        }
        if self.iters == 0 {
            return Err(Error::param("iters", "must be at least 1"));
        }
        if !(self.time_budget_s.is_finite() && self.time_budget_s >= 0.0) {
            return Err(Error::param("time-budget", format!("{} seconds", self.time_budget_s)));
        }
        Ok(())
    }
    fn nprobe_for(&self, ix: &Index) -> usize {
        if self.probes == ProbeSource::All { ix.nlist() } else { self.nprobe }
    }
}

/// Figures of one stage (or of the whole pass).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageReport {
    /// Stage output given, not computed (probe with random/all probes): no time.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub given: bool,
    /// Median latency per batch, ms (nearest rank).
    pub latency_ms_p50: f64,
    /// 99th percentile latency per batch, ms (nearest rank).
    pub latency_ms_p99: f64,
    /// Unique bytes read per batch (mean over the batch pool); see [`Bytes`].
    pub bytes_read: u64,
    /// Effective bandwidth: `bytes_read / p50 latency`, GB/s (1e9 bytes).
    pub gbps: f64,
}

/// Stage figures by name; absent stages were not run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stages {
    pub probe: Option<StageReport>,
    pub filter: Option<StageReport>,
    pub scan: Option<StageReport>,
    /// The candidate route (stages 2+3 for selective filters), when some query took it.
    pub candidates: Option<StageReport>,
    pub rerank: Option<StageReport>,
    pub select: Option<StageReport>,
}

/// The result of [`run`] (what `silica bench --json` prints).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub backend: String,
    /// `device` (device timers), `host` (host clock), `mixed`.
    pub clock: String,
    /// rayon threads (host work, the CPU backend's parallelism).
    pub threads: usize,
    pub n: usize,
    pub dim: usize,
    pub nlist: usize,
    pub batch: usize,
    pub nprobe: usize,
    pub k: usize,
    pub k0: usize,
    pub rerank: String,
    pub probes: ProbeSource,
    pub vectors: String,
    /// First query's filter ("" = none).
    pub filter: String,
    /// Expected passing fraction of the generated filters (none: 1).
    pub filter_pass: f64,
    pub seed: u64,
    /// Seconds to generate the index (set by the caller).
    pub gen_s: f64,
    /// Seconds to upload it to the backend.
    pub upload_s: f64,
    pub iterations: usize,
    /// End to end (sum of the stage times of an iteration), ms.
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    /// Host time of a whole iteration including the synchronisations between stages, ms.
    pub wall_ms_p50: f64,
    /// Queries per second: `batch / mean end-to-end latency`.
    pub qps: f64,
    /// Unique bytes read per batch, all stages.
    pub bytes_read: u64,
    /// Bytes the scan touched counting each (query, list) pair: `bytes_read` counts a list
    /// probed by several queries of the batch once, this counts it per query.
    pub bytes_scanned: u64,
    /// `bytes_read / latency_ms_p50`, GB/s.
    pub gbps: f64,
    /// Mean recall@k over `recall_sample` queries (tie-aware, exact int8 scan); null without a sample.
    pub recall: Option<f64>,
    pub recall_sample: usize,
    pub stages: Stages,
    /// Queries of the pool answered over their compacted candidates (the planner's
    /// route for selective filters), out of `pool_queries`.
    pub candidate_queries: usize,
    pub pool_queries: usize,
    /// Per iteration, per stage seconds (`STAGES` order; 0 for stages not run).
    #[serde(skip)]
    pub samples: Vec<[f64; 6]>,
    /// Per query of the recall sample: its recall.
    #[serde(skip)]
    pub recall_per_query: Vec<f64>,
    /// Final host results of the recall-sample queries (in query order).
    #[serde(skip)]
    pub sample_results: Vec<Vec<u32>>,
}

/// One prepared query batch.
struct Batch {
    q: QueryBatch,
    filters: Vec<Filter>,
    probes: Option<Probes>,
    bytes: Bytes,
}

/// One group of queries the executor ran together, as a reference pass reads it back.
struct Group {
    which: Vec<usize>,
    probes: Option<Probes>,
    mask: Option<Mask>,
    scan: Option<Candidates>,
    answers: Option<Vec<Option<u64>>>,
}

/// What a reference pass reads back: the groups in the order they ran.
#[derive(Default)]
struct Reference {
    groups: Vec<Group>,
}

/// The bench's view of one executor run: stage timers, given probes, read-backs.
struct BenchHook<'a> {
    times: [f64; 6],
    clock: [usize; 2],
    probes: Option<&'a Probes>,
    filter_only: bool,
    reference: Option<Reference>,
}

impl<B: Backend> Hook<B> for BenchHook<'_> {
    fn stage<T>(&mut self, b: &B, stage: Stage, f: impl FnOnce() -> Result<T>) -> Result<T> {
        b.synchronize()?;
        let t0 = Instant::now();
        let (v, dev) = b.timed(f)?;
        b.synchronize()?;
        let host = t0.elapsed().as_secs_f64();
        self.clock[dev.is_some() as usize] += 1;
        self.times[stage.index()] += dev.unwrap_or(host);
        Ok(v)
    }
    fn observe(&mut self, b: &B, which: &[usize], out: Output<'_, B>) -> Result<bool> {
        let stop = self.filter_only && matches!(out, Output::Mask(_));
        if let Some(r) = self.reference.as_mut() {
            let new = || Group { which: which.to_vec(), probes: None, mask: None, scan: None, answers: None };
            match out {
                Output::Probes(p) => r.groups.push(Group { probes: Some(b.read_probes(p)?), ..new() }),
                Output::Mask(m) => r.groups.last_mut().expect("probes first").mask = Some(b.read_mask(m)?),
                Output::Scan(c) => r.groups.last_mut().expect("probes first").scan = Some(b.read_cands(c)?),
                Output::Candidates(c, a) => r.groups.push(Group { scan: Some(b.read_cands(c)?), answers: Some(a.to_vec()), ..new() }),
                Output::Final(_) => {}
            }
        }
        Ok(!stop)
    }
    fn given_probes(&mut self) -> Option<Probes> {
        self.probes.cloned()
    }
    fn has_given_probes(&self) -> bool {
        self.probes.is_some()
    }
}

/// Run `batch` once through the executor; with `times`, record each stage's seconds;
/// with `reference`, read back the stage outputs (untimed) and return them with the
/// final candidates.
fn pass<B: Backend>(
    ex: &Executor<B>,
    r: &Resolved,
    w: &Workload,
    batch: &Batch,
    times: &mut [f64; 6],
    clock: &mut [usize; 2],
    reference: bool,
) -> Result<(Candidates, Option<Reference>)> {
    let plans: Vec<&Plan> = batch.filters.iter().map(|f| &f.plan).collect();
    let mut hook = BenchHook {
        times: [0.0; 6],
        clock: [0; 2],
        probes: batch.probes.as_ref(),
        filter_only: w.filter_only,
        reference: reference.then(Reference::default),
    };
    let c = ex.run(&batch.q, &plans, r, &mut hook)?;
    *times = hook.times;
    clock[0] += hook.clock[0];
    clock[1] += hook.clock[1];
    Ok((c, hook.reference))
}

/// Measure `w` on backend `b` over the synthetic index `s`.
pub fn run<B: Backend>(b: &B, s: &Synth, w: &Workload) -> Result<Report> {
    let ix = &s.index;
    w.validate(ix.nlist(), ix.embeddings.is_some())?;
    let t0 = Instant::now();
    let ex = Executor::new(b.clone(), ix.clone())?;
    b.synchronize()?;
    let upload_s = t0.elapsed().as_secs_f64();
    let nprobe = w.nprobe_for(ix);
    let resolved = Resolved { k: w.k, nprobe, k0: w.k0, rerank: if w.refine { Rerank::Refine } else { Rerank::None } };

    // The batch pool; recall-sample queries are the first ones.
    let sample = if w.filter_only { 0 } else { w.recall_sample };
    let nb = sample.div_ceil(w.batch).max(POOL_BATCHES);
    let mut batches = Vec::with_capacity(nb);
    for i in 0..nb {
        let start = i * w.batch;
        let q = prepare_queries(ix, &s.queries(start, w.batch))?;
        let filters = s.filters(start, w.batch)?;
        let probes = match w.probes {
            ProbeSource::Computed => None,
            ProbeSource::Random => Some(s.random_probes(start, w.batch, nprobe)?),
            ProbeSource::All => Some(Probes { nprobe, lists: (0..w.batch).flat_map(|_| 0..nprobe as u32).collect() }),
        };
        batches.push(Batch { q, filters, probes, bytes: Bytes::default() });
    }

    // Reference passes (untimed outputs): bytes per batch, results for recall, warm-up.
    let mut clock = [0usize; 2];
    let mut scratch = [0f64; 6];
    let mut results: Vec<Vec<u32>> = Vec::new();
    let mut candidate_queries = 0;
    for batch in batches.iter_mut() {
        let (c, r) = pass(&ex, &resolved, w, batch, &mut scratch, &mut clock, true)?;
        let plans: Vec<&Plan> = batch.filters.iter().map(|f| &f.plan).collect();
        for g in r.expect("reference pass reads back").groups {
            let sub: Vec<&Plan> = g.which.iter().map(|&i| plans[i]).collect();
            let bytes = match (&g.answers, &g.probes, &g.mask) {
                (Some(a), _, _) => {
                    candidate_queries += a.iter().flatten().count();
                    candidate_bytes(ix, &sub, a, g.scan.as_ref(), w.refine, w.k0)
                }
                (None, Some(p), Some(m)) => {
                    batch_bytes(ix, g.which.len(), p, w.probes == ProbeSource::Computed, &sub, m, g.scan.as_ref(), w.refine, w.k0)
                }
                _ => Bytes::default(),
            };
            batch.bytes.add(&bytes);
        }
        if !w.filter_only {
            results.extend((0..c.len()).map(|q| c.query(q).map(|(row, _)| row).collect::<Vec<_>>()));
        }
    }
    for i in 0..w.warmup {
        pass(&ex, &resolved, w, &batches[i % nb], &mut scratch, &mut clock, false)?;
    }

    // Measured iterations.
    let mut clock = [0usize; 2];
    let mut samples = Vec::new();
    let mut walls = Vec::new();
    let start = Instant::now();
    while samples.len() < w.iters && (samples.len() < MIN_ITERS || start.elapsed().as_secs_f64() < w.time_budget_s) {
        let mut times = [0f64; 6];
        let t = Instant::now();
        pass(&ex, &resolved, w, &batches[samples.len() % nb], &mut times, &mut clock, false)?;
        walls.push(t.elapsed().as_secs_f64());
        samples.push(times);
    }

    // Recall on the sample.
    let mut recall_per_query = Vec::with_capacity(sample);
    for (i, returned) in results.iter().take(sample).enumerate() {
        let batch = &batches[i / w.batch];
        let j = i % w.batch;
        let qc = &batch.q.codes[j * ix.dim..(j + 1) * ix.dim];
        recall_per_query.push(recall_at_k(ix, qc, &batch.filters[j].plan, returned, w.k));
    }

    // Figures.
    let ms = |xs: &[f64], p: f64| percentile(xs, p) * 1e3;
    let mean_bytes = |i: usize| (batches.iter().map(|b| b.bytes.stage[i]).sum::<u64>() as f64 / nb as f64).round() as u64;
    // A stage ran when some iteration spent time in it (the planner may route every
    // query of a batch past stages 1-3, or none past the candidate route).
    let ran = |i: usize| samples.iter().any(|t| t[i] > 0.0);
    let stage_report = |i: usize| -> Option<StageReport> {
        if i == PROBE && w.probes != ProbeSource::Computed {
            return Some(StageReport { given: true, ..Default::default() });
        }
        if !ran(i) {
            return None;
        }
        let xs: Vec<f64> = samples.iter().map(|t| t[i]).collect();
        let (p50, bytes) = (ms(&xs, 0.5), mean_bytes(i));
        Some(StageReport { given: false, latency_ms_p50: p50, latency_ms_p99: ms(&xs, 0.99), bytes_read: bytes, gbps: gbps(bytes, p50) })
    };
    let e2e: Vec<f64> = samples.iter().map(|t| t.iter().sum()).collect();
    let bytes_read: u64 = (0..6).map(mean_bytes).sum();
    let p50 = ms(&e2e, 0.5);
    let mean = e2e.iter().sum::<f64>() / e2e.len() as f64;
    Ok(Report {
        backend: b.name().to_string(),
        clock: match clock {
            [_, 0] => "host",
            [0, _] => "device",
            _ => "mixed",
        }
        .into(),
        threads: rayon::current_num_threads(),
        n: ix.len(),
        dim: ix.dim,
        nlist: ix.nlist(),
        batch: w.batch,
        nprobe,
        k: w.k,
        k0: w.k0,
        rerank: if w.refine { "refine".into() } else { "none".into() },
        probes: w.probes,
        vectors: match s.spec.vectors {
            super::data::Vectors::Random => "random".into(),
            super::data::Vectors::Clustered { spread } => format!("clustered(spread={spread})"),
        },
        filter: batches[0].filters[0].text.clone(),
        filter_pass: s.spec.filter.map_or(1.0, |f| f.realised()),
        seed: s.spec.seed,
        gen_s: 0.0,
        upload_s,
        iterations: samples.len(),
        latency_ms_p50: p50,
        latency_ms_p99: ms(&e2e, 0.99),
        wall_ms_p50: ms(&walls, 0.5),
        qps: if mean > 0.0 { w.batch as f64 / mean } else { 0.0 },
        bytes_read,
        bytes_scanned: (batches.iter().map(|b| b.bytes.scanned).sum::<u64>() as f64 / nb as f64).round() as u64,
        gbps: gbps(bytes_read, p50),
        recall: (sample > 0).then(|| recall_per_query.iter().sum::<f64>() / sample as f64),
        recall_sample: sample,
        stages: Stages {
            probe: stage_report(PROBE),
            filter: stage_report(FILTER),
            scan: stage_report(SCAN),
            candidates: stage_report(CANDIDATES),
            rerank: stage_report(RERANK),
            select: stage_report(SELECT),
        },
        candidate_queries,
        pool_queries: nb * w.batch,
        samples,
        recall_per_query,
        sample_results: results.into_iter().take(sample).collect(),
    })
}
