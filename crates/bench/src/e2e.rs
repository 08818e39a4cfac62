//! `silica bench --suite e2e`: what users get, end to end, on a recommender-like catalog.
//!
//! Generate N x D clustered vectors with Zipf attributes ([`catalog`]) -> build the index
//! with the real builder (k-means, int8, f16 embeddings so `refine` reranks) -> per query
//! and filter class (`none`, ~20%, ~1%, ~0.1%, ~0.01% of items passing) a filter whose
//! realised pass fraction is in the class's band ([`filters`]) -> exact filtered top-k
//! ([`truth`]) -> per (class, batch size B) the executor's `Search::search` (host wall
//! time, results, recall@k, violations) and `Search::search_traced` with timed stages
//! (device time). The bench only calls the executor; it never sequences stages itself.

pub mod catalog;
pub mod filters;
pub mod truth;

use filters::{CLASSES, Chooser};
use rayon::prelude::*;
use serde::Serialize;
use silica_core::error::{Error, Result};
use silica_core::filter::Filter;
use silica_core::graph::{self, Planner, SearchParams, SearchRequest, SearchResponse, Trace};
use silica_core::model::IndexBuilder;
use silica_core::model::build::{BuildParams, default_nlist};
use std::sync::Arc;
use std::time::Instant;

/// Settings of one e2e run. `Default` gives the CLI defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct E2eParams {
    /// Backend name (`cpu`, `wgpu`, `cuda`).
    pub backend: String,
    /// Items N (>= 1).
    pub n: usize,
    /// Dimension D (>= 1).
    pub dim: usize,
    /// Inverted lists; `None`: the builder's default (the power of two nearest 4·√N).
    pub nlist: Option<usize>,
    /// Lists probed per query (1..=nlist).
    pub nprobe: usize,
    /// Results per query (recall@k).
    pub k: usize,
    /// Query vectors, each searched once per class.
    pub queries: usize,
    /// Batch sizes B to time (each >= 1).
    pub batches: Vec<usize>,
    /// Queries (the first S) whose recall is checked; `None`: all.
    pub recall_sample: Option<usize>,
    /// Seconds of measuring per (class, B); `None`: [`default_budget`].
    pub time_budget_s: Option<f64>,
    /// Most measured batches per (class, B); `None`: only the time budget bounds them.
    pub iters: Option<usize>,
    pub seed: u64,
    /// Planner settings to compare over the same catalog (each gets every class and B);
    /// empty: [`Planner::default`] alone.
    pub planners: Vec<Planner>,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for E2eParams {
    fn default() -> Self {
        E2eParams {
            backend: "cpu".into(),
            n: 1_000_000,
            dim: 128,
            nlist: None,
            nprobe: 32,
            k: 10,
            queries: 512,
            batches: vec![256, 16],
            recall_sample: None,
            time_budget_s: None,
            iters: None,
            seed: 1,
            planners: Vec::new(),
            progress: false,
        }
    }
}

/// Measured batches per (class, B) even when the time budget is spent.
pub const MIN_ITERS: usize = 3;

/// Default seconds per (class, B): 2 s at N >= 1M, scaled down linearly below (at least
/// 0.2 s) so small smoke runs stay short.
pub fn default_budget(n: usize) -> f64 {
    2.0 * (n as f64 / 1e6).clamp(0.1, 1.0)
}

impl E2eParams {
    /// Check every setting before any work; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        let positive = [("n", self.n), ("dim", self.dim), ("k", self.k), ("queries", self.queries), ("nprobe", self.nprobe)];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::param(name, "must be at least 1"));
            }
        }
        if self.batches.is_empty() || self.batches.contains(&0) {
            return Err(Error::param("batch", format!("{:?}: need one or more batch sizes, each at least 1", self.batches)));
        }
        let nlist = self.nlist.unwrap_or_else(|| default_nlist(self.n));
        if nlist == 0 || nlist > self.n {
            return Err(Error::param("nlist", format!("{nlist} lists for {} items; need 1 <= nlist <= n", self.n)));
        }
        if self.nprobe > nlist {
            return Err(Error::param("nprobe", format!("{} exceeds nlist = {nlist}", self.nprobe)));
        }
        if self.recall_sample == Some(0) {
            return Err(Error::param("recall-sample", "must be at least 1 (omit it to check every query)"));
        }
        if let Some(t) = self.time_budget_s
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::param("time-budget", format!("{t} seconds")));
        }
        if self.iters == Some(0) {
            return Err(Error::param("iters", "must be at least 1"));
        }
        Ok(())
    }
}

/// Figures of one (filter class, batch size).
#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    /// `none`, `20%`, `1%`, `0.1%`, `0.01%`.
    pub class: String,
    /// Target pass fraction of the class.
    pub target: f64,
    /// Queries per batch B.
    pub batch: usize,
    /// Mean realised pass fraction of the class's filters (exact, over all items).
    pub pass_fraction: f64,
    pub pass_fraction_min: f64,
    pub pass_fraction_max: f64,
    /// Share of the class's filters inside its band `[target/2, 2 target]`.
    pub in_band: f64,
    /// One of the class's filters.
    pub example_filter: String,
    /// Queries per second: B / mean host wall time of an untraced `search` call.
    pub qps: f64,
    /// `qps` / the unfiltered class's qps at the same B.
    pub qps_ratio: f64,
    /// Host wall time per batch, ms (nearest rank).
    pub host_ms_p50: f64,
    pub host_ms_p99: f64,
    /// Sum of the stage times of one traced batch, ms (on `clock`).
    pub device_ms_p50: f64,
    pub device_ms_p99: f64,
    /// Mean tie-aware recall@k over the sampled queries (untraced results).
    pub recall: f64,
    /// Returned rows failing their query's filter (all queries).
    pub violations: usize,
    /// Share of queries the planner answered over compacted candidates.
    pub candidate_share: f64,
    /// The planner's candidate budget ([`Planner::candidate_budget`]) of this row.
    pub candidate_budget: u64,

    /// `device`, `host` or `mixed`: the clock of the stage times.
    pub clock: String,
    /// Measured batches.
    pub iterations: usize,
    /// Where the host time of an untraced batch goes, ms (medians): validating and
    /// quantizing queries, each stage call (enqueueing device work and the backend's
    /// waits there), building responses; `other` = the rest (read-backs, planning).
    pub host_breakdown_ms: HostBreakdown,
    /// Medians of a traced batch's stage times, ms (on `clock`): where the device time goes.
    pub device_breakdown_ms: StageBreakdown,
}

/// Medians of a traced batch's time per stage, ms (see [`ClassReport`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageBreakdown {
    pub probe: f64,
    pub filter: f64,
    pub scan: f64,
    pub candidates: f64,
    pub rerank: f64,
    pub select: f64,
    /// Medians per kernel phase (`stage.kernel`, ms; CUDA only, else empty), over the
    /// traced batches that ran it.
    pub kernels: Vec<(String, f64)>,
}

impl StageBreakdown {
    fn of(traces: &[Trace]) -> StageBreakdown {
        let med = |v: Vec<f64>| crate::metrics::percentile(&v, 0.5) * 1e3;
        let st = |i: usize| med(traces.iter().map(|t| t.stage_s[i]).collect());
        let mut names: Vec<&str> = Vec::new();
        for (n, _) in traces.iter().flat_map(|t| &t.kernel_s) {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        let kernels = names
            .iter()
            .map(|&n| (n.to_string(), med(traces.iter().filter_map(|t| t.kernel_s.iter().find(|e| e.0 == n).map(|e| e.1)).collect())))
            .collect();
        StageBreakdown { probe: st(0), filter: st(1), scan: st(2), candidates: st(3), rerank: st(4), select: st(5), kernels }
    }
}

/// Medians of an untraced batch's host time by part, ms (see [`ClassReport`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostBreakdown {
    pub prepare: f64,
    pub probe: f64,
    pub filter: f64,
    pub scan: f64,
    pub candidates: f64,
    pub rerank: f64,
    pub select: f64,
    pub respond: f64,
    pub other: f64,
}

impl HostBreakdown {
    fn of(traces: &[Trace]) -> HostBreakdown {
        let med = |f: &dyn Fn(&Trace) -> f64| crate::metrics::percentile(&traces.iter().map(f).collect::<Vec<_>>(), 0.5) * 1e3;
        let st = |i: usize| med(&|t: &Trace| t.host_stage_s[i]);
        HostBreakdown {
            prepare: med(&|t| t.prepare_s),
            probe: st(0),
            filter: st(1),
            scan: st(2),
            candidates: st(3),
            rerank: st(4),
            select: st(5),
            respond: med(&|t| t.respond_s),
            other: med(&|t| t.host_s - t.prepare_s - t.respond_s - t.host_stage_s.iter().sum::<f64>()),
        }
    }
}

/// The whole run (`--json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct E2eReport {
    pub suite: &'static str,
    pub backend: String,
    /// Rayon threads on the host.
    pub threads: usize,
    pub n: usize,
    pub dim: usize,
    pub nlist: usize,
    pub nprobe: usize,
    pub k: usize,
    /// Scan candidates K0 (refine rerank re-scores them exactly).
    pub k0: usize,
    pub queries: usize,
    pub recall_sample: usize,
    pub seed: u64,
    /// Seconds measured per (class, B).
    pub time_budget_s: f64,
    /// Catalog and query generation, s.
    pub gen_s: f64,
    /// Index build (k-means, assignment, int8, Bloom), s.
    pub build_s: f64,
    /// Filter choice and exact ground truth, s.
    pub truth_s: f64,
    /// Upload to the backend (`silica_registry::open`), s.
    pub upload_s: f64,
    pub classes: Vec<ClassReport>,
}

/// Run the suite. Errors: invalid settings (named by flag), an unavailable backend.
pub fn run(p: &E2eParams) -> Result<E2eReport> {
    p.validate()?;
    let note = |s: &str| {
        if p.progress {
            eprintln!("e2e: {s}");
        }
    };
    note(&format!("generating N={} D={} ...", p.n, p.dim));
    let t0 = Instant::now();
    let cat = catalog::generate(p.n, p.dim, p.seed)?;
    let (queries, near) = catalog::queries(&cat, p.queries, p.seed);
    let gen_s = t0.elapsed().as_secs_f64();

    note(&format!("generated in {gen_s:.2} s; building ..."));
    let t0 = Instant::now();
    let bp = BuildParams { nlist: p.nlist, seed: p.seed, store_embeddings: true, ..Default::default() };
    let index = Arc::new(IndexBuilder::new(bp).build(cat.vectors, cat.table)?);
    let build_s = t0.elapsed().as_secs_f64();

    note(&format!("built in {build_s:.2} s (nlist {}); filters + exact truth ...", index.nlist()));
    let t0 = Instant::now();
    let sorted_of = silica_core::eval::sorted_row_of(&index);
    let chooser = Chooser::new(&index);
    let d = p.dim;
    let sample = p.recall_sample.unwrap_or(p.queries).min(p.queries);
    let qrow = |i: usize| &queries[i * d..(i + 1) * d];
    // Per filtered class and query: the filter and, for sampled queries, the exact top-k.
    let mut chosen: Vec<Vec<(Filter, f64, bool)>> = vec![vec![(Filter::all(), 1.0, true); p.queries]];
    let mut truths: Vec<Vec<Vec<f64>>> = Vec::with_capacity(CLASSES.len());
    // Unfiltered truth: one pass over the rows per block of queries.
    truths.push(
        (0..sample)
            .collect::<Vec<_>>()
            .par_chunks(8)
            .flat_map_iter(|blk| truth::top_scores(&index, &blk.iter().map(|&i| qrow(i)).collect::<Vec<_>>(), None, p.k))
            .collect(),
    );
    for class in 1..CLASSES.len() {
        let per: Vec<(Filter, f64, bool, Vec<f64>)> = (0..p.queries)
            .into_par_iter()
            .map(|i| {
                let c = chooser.choose(class, i, sorted_of[near[i]] as usize, p.seed)?;
                let t = if i < sample { truth::top_scores(&index, &[qrow(i)], c.pass.as_deref(), p.k).remove(0) } else { Vec::new() };
                Ok((c.filter, c.fraction, c.in_band, t))
            })
            .collect::<Result<_>>()?;
        let (f, t): (Vec<_>, Vec<_>) = per.into_iter().map(|(f, fr, ok, t)| ((f, fr, ok), t)).unzip();
        chosen.push(f);
        truths.push(t);
    }
    drop(chooser);
    let truth_s = t0.elapsed().as_secs_f64();

    note(&format!("truth in {truth_s:.2} s; opening backend {} ...", p.backend));
    let t0 = Instant::now();
    let mut search = silica_registry::open(&p.backend, index.clone())?;
    let upload_s = t0.elapsed().as_secs_f64();
    let planners = if p.planners.is_empty() { vec![Planner::default()] } else { p.planners.clone() };
    let params = SearchParams { k: p.k, nprobe: Some(p.nprobe), ..Default::default() };
    let k0 = search.resolve(&params)?.k0;
    let budget = p.time_budget_s.unwrap_or_else(|| default_budget(p.n));

    let mut classes = Vec::new();
    for (v, &planner) in planners.iter().enumerate() {
        if v > 0 || planner != Planner::default() {
            note(&format!("planner {planner:?}"));
            search = silica_registry::open_planned(&p.backend, index.clone(), planner)?;
        }
        for (class, (name, target)) in CLASSES.iter().enumerate() {
            let fs = &chosen[class];
            let fr: Vec<f64> = fs.iter().map(|c| c.1).collect();
            for &b in &p.batches {
                note(&format!("class {name} B={b}"));
                let filters: Vec<Filter> = if class == 0 { Vec::new() } else { fs.iter().map(|c| c.0.clone()).collect() };
                let m = measure(&*search, &queries, &filters, d, b, &params, budget, p.iters)?;
                let mut violations = 0;
                let mut recall_sum = 0.0;
                for (i, (f, res)) in fs.iter().zip(&m.results).enumerate() {
                    let (r, v) = truth::recall(&index, qrow(i), &f.0, truths[class].get(i).map_or(&[][..], |t| t), res, p.k, &sorted_of);
                    violations += v;
                    if i < sample {
                        recall_sum += r;
                    }
                }
                classes.push(ClassReport {
                    class: name.to_string(),
                    target: *target,
                    batch: b,
                    pass_fraction: fr.iter().sum::<f64>() / fr.len() as f64,
                    pass_fraction_min: fr.iter().copied().fold(f64::INFINITY, f64::min),
                    pass_fraction_max: fr.iter().copied().fold(0.0, f64::max),
                    in_band: fs.iter().filter(|c| c.2).count() as f64 / fs.len() as f64,
                    example_filter: fs[0].0.text.clone(),
                    qps: m.qps,
                    qps_ratio: 0.0,
                    host_ms_p50: crate::metrics::percentile(&m.host_s, 0.5) * 1e3,
                    host_ms_p99: crate::metrics::percentile(&m.host_s, 0.99) * 1e3,
                    device_ms_p50: crate::metrics::percentile(&m.device_s, 0.5) * 1e3,
                    device_ms_p99: crate::metrics::percentile(&m.device_s, 0.99) * 1e3,
                    recall: recall_sum / sample as f64,
                    violations,
                    candidate_share: m.candidate_share,
                    candidate_budget: planner.candidate_budget,
                    clock: m.clock,
                    iterations: m.host_s.len(),
                    host_breakdown_ms: m.breakdown.clone(),
                    device_breakdown_ms: m.stages.clone(),
                });
            }
        }
    }
    for i in 0..classes.len() {
        let same = |c: &ClassReport| c.batch == classes[i].batch && c.candidate_budget == classes[i].candidate_budget;
        let base = classes.iter().find(|c| c.class == "none" && same(c)).map_or(f64::NAN, |c| c.qps);
        classes[i].qps_ratio = classes[i].qps / base;
    }
    Ok(E2eReport {
        suite: "e2e",
        backend: search.backend_name().to_string(),
        threads: rayon::current_num_threads(),
        n: p.n,
        dim: p.dim,
        nlist: index.nlist(),
        nprobe: p.nprobe,
        k: p.k,
        k0,
        queries: p.queries,
        recall_sample: sample,
        seed: p.seed,
        time_budget_s: budget,
        gen_s,
        build_s,
        truth_s,
        upload_s,
        classes,
    })
}

struct Measured {
    /// Untraced results, one per query.
    results: Vec<SearchResponse>,
    host_s: Vec<f64>,
    device_s: Vec<f64>,
    qps: f64,
    candidate_share: f64,
    clock: String,
    breakdown: HostBreakdown,
    stages: StageBreakdown,
}

/// One batch of queries (by index into the class's queries) with their filters.
struct Batch {
    queries: Vec<f32>,
    filters: Vec<Filter>,
    ids: Vec<usize>,
}

impl Batch {
    fn request<'a>(&'a self, params: &SearchParams) -> SearchRequest<'a> {
        SearchRequest { queries: &self.queries, filters: &self.filters, params: params.clone() }
    }
}

/// Time batches of `b` queries cycled over all queries (wrapping), `filters` one per query
/// or empty: one untraced pass collecting results (also the warm-up), then per measured
/// batch an untraced `search` (host wall) and a timed `search_traced` (stage times).
#[allow(clippy::too_many_arguments)]
fn measure(
    s: &dyn graph::Search,
    queries: &[f32],
    filters: &[Filter],
    d: usize,
    b: usize,
    params: &SearchParams,
    budget: f64,
    iters: Option<usize>,
) -> Result<Measured> {
    let nq = queries.len() / d;
    let batches: Vec<Batch> = (0..nq.div_ceil(b))
        .map(|j| {
            let ids: Vec<usize> = (0..b).map(|i| (j * b + i) % nq).collect();
            let queries = ids.iter().flat_map(|&i| queries[i * d..(i + 1) * d].iter().copied()).collect();
            let filters = if filters.is_empty() { Vec::new() } else { ids.iter().map(|&i| filters[i].clone()).collect() };
            Batch { queries, filters, ids }
        })
        .collect();
    let mut results: Vec<Option<SearchResponse>> = vec![None; nq];
    for bt in &batches {
        for (r, &i) in s.search(&bt.request(params))?.into_iter().zip(&bt.ids) {
            results[i].get_or_insert(r);
        }
    }
    let (mut host_s, mut device_s, mut breakdown, mut timed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cand, mut clocks) = (0.0, Vec::new());
    let t0 = Instant::now();
    for bt in batches.iter().cycle() {
        let t = Instant::now();
        let mut plain = Trace::default();
        s.search_traced(&bt.request(params), &mut plain)?;
        host_s.push(t.elapsed().as_secs_f64());
        breakdown.push(plain);
        let mut trace = Trace::timed();
        s.search_traced(&bt.request(params), &mut trace)?;
        device_s.push(trace.total_s());
        cand += trace.candidate_queries as f64 / b as f64;
        clocks.push(trace.clock());
        timed.push(trace);
        let n = host_s.len();
        if iters.is_some_and(|m| n >= m) || (n >= MIN_ITERS && t0.elapsed().as_secs_f64() >= budget) {
            break;
        }
    }
    clocks.dedup();
    let clock = if clocks.len() == 1 { clocks[0] } else { "mixed" }.to_string();
    let mean = host_s.iter().sum::<f64>() / host_s.len() as f64;
    Ok(Measured {
        results: results.into_iter().map(|r| r.expect("every query ran")).collect(),
        qps: b as f64 / mean,
        candidate_share: cand / host_s.len() as f64,
        clock,
        host_s,
        device_s,
        breakdown: HostBreakdown::of(&breakdown),
        stages: StageBreakdown::of(&timed),
    })
}

/// The readable table: one row per (class, B).
pub fn table(r: &E2eReport) -> String {
    let mut s = format!(
        "silica bench --suite e2e: backend {} ({} host threads), N={} D={} nlist={} nprobe={} k={} (K0={}, refine), {} queries, recall over {}\n\
         generate {:.2} s, build {:.2} s, filters + exact truth {:.2} s, upload {:.2} s; {:.2} s measured per row\n\n",
        r.backend,
        r.threads,
        r.n,
        r.dim,
        r.nlist,
        r.nprobe,
        r.k,
        r.k0,
        r.queries,
        r.recall_sample,
        r.gen_s,
        r.build_s,
        r.truth_s,
        r.upload_s,
        r.time_budget_s
    );
    s += &format!(
        "{:>4} {:<6} {:>5} {:>9} {:>6} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7} {:>5} {:>5} {:>6}\n",
        "cbud",
        "class",
        "B",
        "pass",
        "inband",
        "qps",
        "ratio",
        "host p50",
        "host p99",
        "dev p50",
        "dev p99",
        "recall",
        "viol",
        "cand",
        "clock"
    );
    for c in &r.classes {
        s += &format!(
            "{:>4} {:<6} {:>5} {:>9.5} {:>6.2} {:>10.0} {:>6.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7.4} {:>5} {:>5.2} {:>6}\n",
            c.candidate_budget,
            c.class,
            c.batch,
            c.pass_fraction,
            c.in_band,
            c.qps,
            c.qps_ratio,
            c.host_ms_p50,
            c.host_ms_p99,
            c.device_ms_p50,
            c.device_ms_p99,
            c.recall,
            c.violations,
            c.candidate_share,
            c.clock
        );
    }
    s += "\n(ms per batch; ratio: qps / unfiltered qps at the same B and planner; cbud: the planner's candidate budget; cand: share of queries answered over compacted candidates)\n";
    s += &r
        .classes
        .iter()
        .filter(|c| c.batch == r.classes[0].batch)
        .map(|c| format!("  e.g. {:<6} {}\n", c.class, if c.example_filter.is_empty() { "(no filter)" } else { &c.example_filter }))
        .collect::<String>();
    s
}
