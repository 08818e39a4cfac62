//! The graph executor: the one place that knows the stage order (DESIGN.md "The pipeline").
//!
//! ```text
//! queries f32 [B,D] --(host: validate, normalize, quantize)--> QueryBatch
//!   1 probe -> 2 filter -> 3 scan + top-K0 -> [widen queries with < K0 passing] -> 4 rerank -> 5 select top-K
//! ```
//!
//! Adaptive widening: when the probed lists of a query hold fewer than K0 items that pass
//! its filter, that query is re-run with 4x the lists, up to all of them (where the Bloom
//! mask makes the scan touch only the filter's candidates).

pub mod calibrate;
pub mod hook;
pub mod lanes;
pub mod replicas;
pub mod segments;

pub use hook::{FollowHook, Hook, NoHook, Output, Stage, Trace, TraceHook};

use crate::backend::{Backend, Candidates, Changed, Probes, QueryBatch, Rerank};
use crate::error::{Error, Result};
use crate::filter::{Filter, Plan};
use crate::model::postings::{self, PostingState};
use crate::model::{Index, Metric, quantize::quantize_row};
use crate::rerank::RerankModel;
use std::sync::Arc;

/// Stage 4 mode as requested by a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RerankMode {
    /// `refine` when the index stores embeddings, else `none`.
    #[default]
    #[cfg_attr(feature = "clap", value(skip))]
    Auto,
    /// Int8 scores only.
    None,
    /// Exact f32 re-score of the K0 candidates from f16 embeddings.
    Refine,
    /// Multi-task MLP composite.
    Model,
}

/// Per-search parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchParams {
    /// Results per query (K1), >= 1.
    pub k: usize,
    /// Lists probed per query; `None`: the index's calibrated default ([`Index::default_nprobe`]).
    pub nprobe: Option<usize>,
    /// Candidates kept by the int8 scan (K0 >= k); `None`: k without rerank, else max(4k, 64).
    pub k0: Option<usize>,
    /// Stage 4 mode (default [`RerankMode::Auto`]).
    pub rerank: RerankMode,
    /// Task weights for `model` rerank (`None`: the model's defaults).
    pub task_weights: Option<Vec<f32>>,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { k: 10, nprobe: None, k0: None, rerank: RerankMode::Auto, task_weights: None }
    }
}

/// Default K0 (candidates the int8 scan keeps) for `k` results: `k` when nothing
/// re-scores them, else max(4k, 64) (Faiss IndexRefine's k_factor, at least 64).
pub fn default_k0(k: usize, reranked: bool) -> usize {
    if reranked { (4 * k).max(64) } else { k }
}

/// Default lists probed: nlist / 16 (64 of 1024), at least 1.
pub fn default_nprobe(nlist: usize) -> usize {
    (nlist / 16).max(1).min(nlist)
}

/// A batch of queries with optional per-query filters.
#[derive(Clone, Debug)]
pub struct SearchRequest<'a> {
    /// `[B, D]` row-major f32.
    pub queries: &'a [f32],
    /// One filter per query, or empty for none.
    pub filters: &'a [Filter],
    /// Parameters shared by every query of the batch.
    pub params: SearchParams,
}

/// The answer for one query, best first.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchResponse {
    /// 0-based source rows (line numbers of the attributes file).
    pub rows: Vec<u64>,
    /// External ids (shared with the index: a result row costs a reference count, not a copy).
    pub ids: Vec<Arc<str>>,
    /// Final scores (int8 score, refined f32 inner product, or composite).
    pub scores: Vec<f32>,
}

/// The default planner's candidate budget of a search of `index` with `nprobe` lists:
/// [`candidate_budget`] with [`CANDIDATE_BUDGET`] (all rows when `nprobe == nlist`).
pub fn candidate_cap(index: &Index, nprobe: usize) -> u64 {
    candidate_budget(nprobe, index.nlist(), index.len() as u64, CANDIDATE_BUDGET)
}

/// Most candidate slots (`queries x cap`) one [`Backend::scan_candidates`] call holds; a
/// batch with a larger budget is split (a GPU keeps 12 bytes per slot).
pub const MAX_CANDIDATE_SLOTS: u64 = 1 << 26;

/// A request's parameters resolved against an index ([`Executor::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// Results per query (K1).
    pub k: usize,
    /// Lists probed per query.
    pub nprobe: usize,
    /// Candidates kept by the int8 scan (K0 >= k).
    pub k0: usize,
    /// Stage 4.
    pub rerank: Rerank,
}

/// Runs the pipeline on one backend over one resident index.
pub struct Executor<B: Backend> {
    backend: B,
    index: Arc<Index>,
    resident: B::Resident,
    model: Option<Arc<RerankModel>>,
    planner: Planner,
    /// Backend handles for concurrent searches ([`lanes`]), shared with `with_index` versions.
    lanes: Arc<lanes::Lanes<B>>,
    masks: MaskCache,
    /// Posting lists for the posting route ([`Executor::postings`]).
    postings: std::sync::OnceLock<PostingState>,
    /// Dead rows of the index (cleared live bits), counted once.
    dead: std::sync::OnceLock<u64>,
}

/// Exact row masks of recent typed filter terms over one executor's index (eligibility
/// rules repeat: a price band is computed once per snapshot, not once per query). At most
/// [`MaskCache::ENTRIES`] masks; when full it starts over. For backends that evaluate
/// typed terms per query it also counts the batches each test was seen in
/// ([`MaskCache::repeated`]).
#[derive(Default)]
pub struct MaskCache(
    std::sync::Mutex<std::collections::HashMap<crate::filter::TypedTest, Arc<[u64]>>>,
    std::sync::Mutex<std::collections::HashMap<crate::filter::TypedTest, u32>>,
);

impl MaskCache {
    /// Most masks held (each `[ceil(N/64)]` u64, N = index rows).
    pub const ENTRIES: usize = 256;
    /// Tests counted while not yet promoted (then the counts start over).
    pub const SEEN: usize = 4096;
    /// Sightings (batches) after which a test gets a host mask. A mask costs one host pass
    /// over the column (~1 ms per million rows) where the device evaluates the test per
    /// query for the cost of its words; a bound that comes back in this many batches is a
    /// rule (a store's price band), one seen once or twice a per-request bound. Promoting
    /// on the second sighting made typed_bench's per-query 0.1% row pay 256 host passes
    /// (855 QPS on cuda, BENCHMARKS.md stop 22).
    pub const PROMOTE: u32 = 4;

    /// The mask of `test` when it is cached or seen in [`MaskCache::PROMOTE`] batches
    /// (computed then: a repeated rule pays one pass over its column, then reads its
    /// mask); `None` before that (the backend evaluates it per query), and also once the
    /// cache is full: more distinct repeated tests than [`MaskCache::ENTRIES`] (bounds
    /// that cycle over many values) would otherwise evict each other and pay a host pass
    /// over the column per query (typed_bench on cuda, 1M rows: 687 QPS, BENCHMARKS.md, typed filters).
    pub fn repeated(&self, test: &crate::filter::TypedTest, index: &Index) -> Option<Arc<[u64]>> {
        {
            let masks = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = masks.get(test) {
                return Some(m.clone());
            }
            if masks.len() >= Self::ENTRIES {
                return None;
            }
        }
        let mut seen = self.1.lock().unwrap_or_else(|e| e.into_inner());
        let count = seen.get(test).copied().unwrap_or(0) + 1;
        if count >= Self::PROMOTE {
            seen.remove(test);
            drop(seen);
            return Some(self.get(test, index));
        }
        if count == 1 && seen.len() >= Self::SEEN {
            seen.clear();
        }
        seen.insert(test.clone(), count);
        None
    }

    /// The mask of `test` over `index`, computed on a miss.
    pub fn get(&self, test: &crate::filter::TypedTest, index: &Index) -> Arc<[u64]> {
        if let Some(m) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(test) {
            return m.clone();
        }
        let m: Arc<[u64]> = Plan::typed_mask(test, index).into();
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= Self::ENTRIES {
            c.clear();
        }
        c.insert(test.clone(), m.clone());
        m
    }
}

/// Queries [`Executor::postings_group`] did not answer, by where they go next.
#[derive(Default)]
struct Routed {
    /// To the Bloom route.
    bloom: Vec<usize>,
    /// Provably too many passing rows: to the probe path.
    broad: Vec<usize>,
    /// A short driver that costs more than a Bloom pass: to the Bloom route, then back.
    deferred: Vec<usize>,
}

/// The planner's routing rule ([`Executor::run`]); `Default` is what every search uses
/// unless a caller (e.g. `silica bench --suite e2e --candidate-budget 1,4`) sets another.
/// An integer rule on backend-identical counts, so every backend routes the same queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planner {
    /// Candidate budget in units of the rows `nprobe` average lists hold
    /// ([`candidate_budget`]), >= 1.
    pub candidate_budget: u64,
}

impl Default for Planner {
    fn default() -> Self {
        Planner { candidate_budget: CANDIDATE_BUDGET }
    }
}

/// Candidate budget of the planner ([`Executor::run`]): a filtered query whose Bloom
/// candidates number at most this many rows is answered over them, exactly, instead of
/// probing: `factor` ([`Planner::candidate_budget`], default [`CANDIDATE_BUDGET`]) times
/// the rows `nprobe` average lists hold, at most `n` (all `n` when `nprobe >= nlist`).
pub fn candidate_budget(nprobe: usize, nlist: usize, n: u64, factor: u64) -> u64 {
    if nprobe >= nlist {
        return n;
    }
    factor.max(1).saturating_mul(nprobe as u64).saturating_mul(n.div_ceil(nlist.max(1) as u64)).min(n)
}

/// Default [`Planner::candidate_budget`]. A candidate costs about what a probed row does
/// once the codes are gathered as whole rows (CUDA: `codes_rows`), plus its exact check,
/// and the route is exact; the probe path over a filter with 1-3% of the items passing
/// keeps 0.6-0.97 recall@10 at nprobe 32 (BENCHMARKS.md "Stop 20"). 4 sends filters of up
/// to 4 x nprobe/nlist of the items (3% at nprobe 32 of 4096) to their candidates.
pub const CANDIDATE_BUDGET: u64 = 4;

/// Object-safe view of an [`Executor`] over any backend (what the CLI and server hold).
///
/// Searches return one [`SearchResponse`] per query, in query order.
///
/// # Errors
/// Every search method returns, as [`Executor`] does: [`Error::Param`] from
/// [`Search::resolve`] or naming `filters` when the filter count is neither 0 nor B;
/// [`Error::Dimension`], [`Error::NonFinite`] or [`Error::OutOfRange`] from
/// [`prepare_queries`]; [`Error::Backend`] (and the backend's own [`Error::Param`]) from
/// the stages.
pub trait Search: Send + Sync {
    /// The host index searched.
    fn index(&self) -> &Arc<Index>;
    /// The backend's name ([`Backend::name`]; `cpux2` etc. for sharded backends).
    fn backend_name(&self) -> &'static str;
    /// Search a batch of `[B, D]` queries.
    ///
    /// # Errors
    /// See [`Search`].
    fn search(&self, req: &SearchRequest) -> Result<Vec<SearchResponse>>;
    /// [`Search::search`] filling `trace` with per-stage times (see [`Trace::timing`]).
    ///
    /// # Errors
    /// See [`Search`].
    fn search_traced(&self, req: &SearchRequest, trace: &mut Trace) -> Result<Vec<SearchResponse>>;
    /// The request's parameters as a search resolves them (defaults, limits, rerank
    /// `auto`; errors name the parameter): the one place request rules live.
    ///
    /// # Errors
    /// As [`Executor::resolve`].
    fn resolve(&self, p: &SearchParams) -> Result<Resolved>;
    /// A searcher over `index`, a changed version of this one in which at most the parts
    /// `changed` names differ (live bits, Bloom planes, attributes: see
    /// [`Backend::update`]), on the same device: no new context, no kernel compilation,
    /// unchanged device tensors shared. Falls back to a full upload when the index differs
    /// in more than that.
    ///
    /// # Errors
    /// [`Error::Backend`] from [`Backend::update`] (e.g. device out of memory).
    fn with_index(&self, index: Arc<Index>, changed: &Changed) -> Result<Box<dyn Search>>;
    /// [`Search::search`] as a segment searched beside another one (the fresh segment of
    /// `silica serve`, see [`segments`]): the planner takes selective filters over their
    /// candidates up to `cap` rows (the other segment's budget), and queries are not
    /// widened, so the cost is the probed lists' rows (or the filter's candidates).
    ///
    /// # Errors
    /// See [`Search`].
    fn search_following(&self, req: &SearchRequest, cap: u64) -> Result<Vec<SearchResponse>>;
    /// This searcher as `Any` when it is an [`Executor`] (callers downcast to
    /// `Executor<Cuda>` for `silica-cuda`'s zero-copy `SearchDevice` searches); `None` for composites.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
    /// Per-replica counters of a replicated searcher ([`replicas`]); empty otherwise.
    fn replicas(&self) -> Vec<replicas::ReplicaStats> {
        Vec::new()
    }
    /// [`Search::search`] (`follow: None`) or [`Search::search_following`] (`Some(cap)`)
    /// sharing stage 1 through `share` with another segment of the same centroids over the
    /// same queries: the first records its probes, the next takes them (same lists, so the
    /// same bits). Run them one after the other (`silica serve` on the CPU backend). The
    /// default shares nothing.
    ///
    /// # Errors
    /// See [`Search`].
    fn search_shared(&self, req: &SearchRequest, share: &hook::ShareProbes, follow: Option<u64>) -> Result<Vec<SearchResponse>> {
        let _ = share;
        match follow {
            None => self.search(req),
            Some(cap) => self.search_following(req, cap),
        }
    }
}

impl<B: Backend> Executor<B> {
    /// Upload `index` to `backend`. A rerank model stored in the index is used for `model`.
    ///
    /// # Errors
    /// [`Error::Backend`] from [`Backend::upload`] or [`Backend::lane`].
    pub fn new(backend: B, index: Arc<Index>) -> Result<Self> {
        let resident = backend.upload(&index)?;
        let model = index.rerank.clone().map(Arc::new);
        // Searches run on lanes, never on `backend` itself: it uploads the changed
        // versions of the index (`with_index`, on `silica serve`'s writer thread), which
        // then do not queue behind a search's device work, nor a search behind them.
        let lanes = Arc::new(lanes::Lanes::new(backend.lane()?));
        Ok(Executor {
            backend,
            index,
            resident,
            model,
            planner: Planner::default(),
            lanes,
            masks: MaskCache::default(),
            postings: Default::default(),
            dead: Default::default(),
        })
    }

    /// Use `model` for `model` rerank (overrides one stored in the index).
    ///
    /// # Errors
    /// [`Error::Param`] naming `rerank-model` when the model's input width is not
    /// `2*D + F` (F = the index's feature count).
    pub fn with_rerank_model(mut self, model: RerankModel) -> Result<Self> {
        let want = 2 * self.index.dim + self.index.feature_names.len();
        if model.input_dim() != want {
            return Err(Error::param("rerank-model", format!("model input width {} != 2*D + F = {want}", model.input_dim())));
        }
        self.model = Some(Arc::new(model));
        Ok(self)
    }

    /// The backend handle the index was uploaded through.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Run `f` on a lane of this executor's backend (a handle for one search in flight,
    /// [`lanes`]), returned to the pool afterwards.
    ///
    /// # Errors
    /// Whatever `f` returns; [`Error::Backend`] when a new lane cannot be opened
    /// ([`Backend::lane`]).
    pub fn with_lane<T>(&self, f: impl FnOnce(&B) -> Result<T>) -> Result<T> {
        self.lanes.with(&self.backend, f)
    }

    /// Route with `planner` instead of [`Planner::default`].
    pub fn with_planner(mut self, planner: Planner) -> Self {
        self.planner = planner;
        self
    }
    /// The index as resident on the backend.
    pub fn resident(&self) -> &B::Resident {
        &self.resident
    }

    /// Validate and quantize `[B, D]` f32 queries on the host (NaN/Inf and dimension errors named).
    ///
    /// # Errors
    /// As [`prepare_queries`].
    pub fn prepare(&self, queries: &[f32]) -> Result<QueryBatch> {
        prepare_queries(&self.index, queries)
    }

    /// Stages 1-5 on the probe path for queries `which` of `q` with `nprobe` lists (all
    /// lists in id order when `nprobe == nlist`, or the hook's given probes), writing
    /// their results into `result`. Returns those short of K0 passing candidates (the
    /// ones widening re-runs), unless all lists were probed.
    #[allow(clippy::too_many_arguments)]
    fn probe_group<H: Hook<B>>(
        &self,
        b: &B,
        q: &QueryBatch,
        plans: &[&Plan],
        which: &[usize],
        nprobe: usize,
        r: &Resolved,
        hook: &mut H,
        result: &mut Candidates,
    ) -> Result<Vec<usize>> {
        if which.is_empty() {
            return Ok(Vec::new());
        }
        let (res, nlist) = (&self.resident, self.index.nlist());
        let gathered;
        let sub = if which.len() == q.len {
            q
        } else {
            gathered = q.gather(which);
            &gathered
        };
        let sub_plans: Vec<&Plan> = which.iter().map(|&i| plans[i]).collect();
        // Probing every list needs no centroid scores: all lists in id order (the scan's
        // top-K0 is ordered by score and row, so it does not depend on the list order).
        let probes = match hook.given_probes().or_else(|| hook.probes_for(which, nprobe)) {
            Some(p) => b.upload_probes(res, &p)?,
            None if nprobe == nlist && nlist > 1 => {
                b.upload_probes(res, &Probes { nprobe, lists: (0..sub.len).flat_map(|_| 0..nlist as u32).collect() })?
            }
            None => hook.stage(b, Stage::Probe, || b.probe(res, sub, nprobe))?,
        };
        if !hook.observe(b, which, Output::Probes(&probes))? {
            return Ok(Vec::new());
        }
        let mask = hook.stage(b, Stage::Filter, || b.filter(res, &sub_plans, &probes))?;
        if !hook.observe(b, which, Output::Mask(&mask))? {
            return Ok(Vec::new());
        }
        let cands = hook.stage(b, Stage::Scan, || b.scan(res, sub, &probes, &mask, &sub_plans, r.k0))?;
        hook.observe(b, which, Output::Scan(&cands))?;
        let counts = b.read_counts(&cands)?;
        let out = self.finish(b, sub, which, cands, r, hook)?;
        let mut short = Vec::new();
        for (j, &i) in which.iter().enumerate() {
            result.replace_query(i, &out, j);
            if (counts[j] as usize) < r.k0 && nprobe < nlist {
                short.push(i);
            }
        }
        Ok(short)
    }

    /// Stages 2+3 over the filters' compacted candidates ([`Backend::scan_candidates`])
    /// for queries `which`, then 4-5. Queries whose Bloom candidates exceed `cap` are
    /// returned (they take the probe path). Split into sub-batches so that no call holds
    /// more than [`MAX_CANDIDATE_SLOTS`] candidate slots.
    #[allow(clippy::too_many_arguments)]
    fn candidates_group<H: Hook<B>>(
        &self,
        b: &B,
        q: &QueryBatch,
        plans: &[&Plan],
        which: &[usize],
        cap: u64,
        r: &Resolved,
        hook: &mut H,
        result: &mut Candidates,
    ) -> Result<Vec<usize>> {
        let res = &self.resident;
        let per_call = (MAX_CANDIDATE_SLOTS / cap.max(1)).max(1) as usize;
        let mut rest = Vec::new();
        for chunk in which.chunks(per_call) {
            let gathered;
            let sub = if chunk.len() == q.len {
                q
            } else {
                gathered = q.gather(chunk);
                &gathered
            };
            let sub_plans: Vec<&Plan> = chunk.iter().map(|&i| plans[i]).collect();
            let (cands, answered) = hook.stage(b, Stage::Candidates, || b.scan_candidates(res, sub, &sub_plans, r.k0, cap))?;
            hook.observe(b, chunk, Output::Candidates(&cands, &answered))?;
            let out = self.finish(b, sub, chunk, cands, r, hook)?;
            for (j, &i) in chunk.iter().enumerate() {
                match answered[j] {
                    Some(_) => result.replace_query(i, &out, j),
                    None => rest.push(i),
                }
            }
        }
        Ok(rest)
    }

    /// Stages 2+3 over posting lists ([`Backend::scan_postings`]) for the queries of
    /// `which` whose filter has a driver ([`postings::driver`]) of at most `cap` rows
    /// (stale rows included), then 4-5. Unless `force`, a query whose driver costs more to
    /// verify than a Bloom pass over the index ([`Backend::posting_row_cost`]) is deferred
    /// to the Bloom route instead. Returns the queries not answered: those the Bloom route
    /// may answer, those with provably more than `cap` passing rows
    /// ([`postings::lower_bound`]: the Bloom route would turn them away), and the deferred.
    /// A deferred query the Bloom route turns away is answered here with `force` (the
    /// answer of every query with a short driver is exact whatever the route, so backends
    /// with other costs still give the same bits).
    #[allow(clippy::too_many_arguments)]
    fn postings_group<H: Hook<B>>(
        &self,
        b: &B,
        q: &QueryBatch,
        plans: &[&Plan],
        which: &[usize],
        cap: u64,
        force: bool,
        r: &Resolved,
        hook: &mut H,
        result: &mut Candidates,
    ) -> Result<Routed> {
        let mut out = Routed::default();
        if which.is_empty() {
            return Ok(out);
        }
        let post = self.postings();
        let stale = post.stale.len() as u64;
        let n = self.index.len() as u64;
        // Rows a Bloom count can miss: dead ones and stale ones (counted by the bound).
        let unsure = stale
            + *self
                .dead
                .get_or_init(|| self.index.live.as_ref().map_or(0, |l| n - l.iter().map(|w| w.count_ones() as u64).sum::<u64>().min(n)));
        let words = n.div_ceil(64);
        let (mut take, mut drivers) = (Vec::new(), Vec::new());
        for &i in which {
            // Driver rows plus the stale rows within `cap` (more stale rows than `cap`: none).
            let driver = cap.checked_sub(stale).and_then(|budget| postings::driver_within(plans[i], &post.lists, budget));
            match driver {
                Some((ids, len)) => {
                    if force || (len + stale).saturating_mul(b.posting_row_cost()) <= words.saturating_mul(postings::bloom_reads(plans[i]))
                    {
                        take.push(i);
                        drivers.push(ids);
                    } else {
                        out.deferred.push(i);
                    }
                }
                // Provably more than `cap` live rows pass: the Bloom route could not answer.
                _ if postings::lower_bound(plans[i], &post.lists, &self.index.attrs.schema, n).saturating_sub(unsure) > cap => {
                    out.broad.push(i)
                }
                _ => out.bloom.push(i),
            }
        }
        let per_call = (MAX_CANDIDATE_SLOTS / cap.max(1)).max(1) as usize;
        for (chunk, ds) in take.chunks(per_call).zip(drivers.chunks(per_call)) {
            let gathered;
            let sub = if chunk.len() == q.len {
                q
            } else {
                gathered = q.gather(chunk);
                &gathered
            };
            // A backend evaluating column terms itself checks the driver's rows against
            // the unbound terms: a host mask would ship N/8 bytes per query for a few rows.
            // Queries sharing a plan keep sharing one copy (backends encode it once).
            let mut owned: Vec<Plan> = Vec::new();
            let sub_plans: Vec<&Plan> = if b.typed_terms() && chunk.iter().any(|&i| plans[i].has_typed()) {
                let mut at: std::collections::HashMap<*const Plan, usize> = std::collections::HashMap::new();
                let slots: Vec<usize> = chunk
                    .iter()
                    .map(|&i| {
                        *at.entry(plans[i] as *const Plan).or_insert_with(|| {
                            owned.push(self.unbind_columns(plans[i]));
                            owned.len() - 1
                        })
                    })
                    .collect();
                slots.into_iter().map(|k| &owned[k]).collect()
            } else {
                chunk.iter().map(|&i| plans[i]).collect()
            };
            let refs: Vec<&[u32]> = ds.iter().map(|d| &d[..]).collect();
            let cands = hook.stage(b, Stage::Candidates, || b.scan_postings(&self.resident, sub, &sub_plans, &refs, post, r.k0))?;
            let answered: Vec<Option<u64>> = ds.iter().map(|d| Some(post.candidates_len(d))).collect();
            hook.observe(b, chunk, Output::Candidates(&cands, &answered))?;
            let fin = self.finish(b, sub, chunk, cands, r, hook)?;
            for (j, &i) in chunk.iter().enumerate() {
                result.replace_query(i, &fin, j);
            }
        }
        Ok(out)
    }

    /// Filtered queries through both candidate routes with budget `cap` (postings first,
    /// then Bloom); returns those left for the probe path, ascending.
    #[allow(clippy::too_many_arguments)]
    fn candidate_routes<H: Hook<B>>(
        &self,
        b: &B,
        q: &QueryBatch,
        plans: &[&Plan],
        which: &[usize],
        cap: u64,
        r: &Resolved,
        hook: &mut H,
        result: &mut Candidates,
    ) -> Result<Vec<usize>> {
        if !hook.postings() {
            return self.candidates_group(b, q, plans, which, cap, r, hook, result);
        }
        let routed = self.postings_group(b, q, plans, which, cap, false, r, hook, result)?;
        let mut bloom = routed.bloom;
        bloom.extend(&routed.deferred);
        bloom.sort_unstable();
        let refused = self.candidates_group(b, q, plans, &bloom, cap, r, hook, result)?;
        let (again, mut left): (Vec<usize>, Vec<usize>) = refused.into_iter().partition(|i| routed.deferred.binary_search(i).is_ok());
        let forced = self.postings_group(b, q, plans, &again, cap, true, r, hook, result)?;
        debug_assert!(
            forced.bloom.is_empty() && forced.broad.is_empty() && forced.deferred.is_empty(),
            "a deferred query has a short driver"
        );
        left.extend(routed.broad);
        left.sort_unstable();
        Ok(left)
    }

    /// `plan` with the host masks of its typed column terms dropped (those the backend
    /// evaluates itself, [`Backend::typed_terms`]; presence tests keep theirs).
    fn unbind_columns(&self, plan: &Plan) -> Plan {
        let mut p = plan.clone();
        for t in p.terms.iter_mut() {
            if t.typed.as_ref().is_some_and(|x| !x.needs_host_mask(&self.index)) {
                t.mask = None;
            }
        }
        p
    }

    /// The index's posting lists, built on the first call (`O(nnz)`) unless handed on by
    /// the version this executor was made from ([`Search::with_index`]).
    pub fn postings(&self) -> &PostingState {
        self.postings.get_or_init(|| PostingState::build(&self.index))
    }

    /// Stages 4-5 and the read-back of the final candidates.
    fn finish<H: Hook<B>>(
        &self,
        b: &B,
        q: &QueryBatch,
        which: &[usize],
        cands: B::Cands,
        r: &Resolved,
        hook: &mut H,
    ) -> Result<Candidates> {
        let res = &self.resident;
        let cands = hook.stage(b, Stage::Rerank, || b.rerank(res, q, cands, &r.rerank))?;
        let cands = hook.stage(b, Stage::Select, || b.select(cands, r.k))?;
        hook.observe(b, which, Output::Final(&cands))?;
        if !hook.read_final() {
            // The hook took the results where they are (device outputs): nothing to read.
            return Ok(Candidates::empty(q.len, r.k));
        }
        b.read_cands(&cands)
    }

    /// The stage sequence for one prepared batch (the planner, both routes, widening):
    /// `[B, k]` final candidates (sorted rows of the index, best first).
    ///
    /// * Filtered queries first try [`Backend::scan_candidates`] with a budget of
    ///   [`candidate_budget`] rows (all rows when `nprobe == nlist`): a filter whose Bloom
    ///   candidates fit is answered exactly over them, at the cost of its candidates.
    /// * The rest take the probe path (stage 1 probe, 2 filter over the probed lists, 3 scan).
    /// * Queries whose probed lists held fewer than K0 passing items are widened: re-run
    ///   with 4x the lists; where that would reach every list, a filtered query is answered
    ///   over its candidates instead.
    ///
    /// # Errors
    /// [`Error::Param`] naming `filters` when `plans.len() != B`; whatever the backend's
    /// stages and the hook return ([`Error::Backend`], the backend's [`Error::Param`]).
    pub fn run<H: Hook<B>>(&self, q: &QueryBatch, plans: &[&Plan], r: &Resolved, hook: &mut H) -> Result<Candidates> {
        self.run_on(&self.backend, q, plans, r, hook)
    }

    /// [`Executor::run`] on lane `b` (this executor's backend or one of its lanes, from
    /// [`Executor::with_lane`]): for backend crates that prepare queries on the device
    /// themselves (silica-cuda's `SearchDevice`).
    ///
    /// # Errors
    /// As [`Executor::run`].
    pub fn run_on<H: Hook<B>>(&self, b: &B, q: &QueryBatch, plans: &[&Plan], r: &Resolved, hook: &mut H) -> Result<Candidates> {
        if plans.len() != q.len {
            return Err(Error::param("filters", format!("{} filters for {} queries", plans.len(), q.len)));
        }
        let bound = bind_plans(plans, &self.index, &self.masks, b.typed_terms() && !host_typed_masks());
        let refs = bound.refs();
        let plans = &refs[..];
        let (nlist, n) = (self.index.nlist(), self.index.len() as u64);
        let mut result = Candidates::empty(q.len, r.k);
        let given = hook.has_given_probes();
        let planner = hook.planner() && !given;
        let cap = hook.candidate_cap().unwrap_or_else(|| candidate_budget(r.nprobe, nlist, n, self.planner.candidate_budget));
        let (filtered, mut probe_path): (Vec<usize>, Vec<usize>) = (0..q.len).partition(|&i| planner && !plans[i].is_all());
        if !filtered.is_empty() {
            probe_path.extend(self.candidate_routes(b, q, plans, &filtered, cap, r, hook, &mut result)?);
            probe_path.sort_unstable();
        }
        let mut short = self.probe_group(b, q, plans, &probe_path, r.nprobe, r, hook, &mut result)?;
        let mut np = r.nprobe;
        while hook.widen() && !given && !short.is_empty() && np < nlist {
            np = (np * 4).min(nlist);
            if np == nlist && planner {
                let (f, u): (Vec<usize>, Vec<usize>) = short.iter().partition(|&&i| !plans[i].is_all());
                let left = self.candidate_routes(b, q, plans, &f, n, r, hook, &mut result)?;
                debug_assert!(left.is_empty(), "a budget of every row answers every query");
                short = u;
            }
            short = self.probe_group(b, q, plans, &short, np, r, hook, &mut result)?;
        }
        Ok(result)
    }

    /// External results of final candidates: source rows, ids, scores.
    pub fn responses(&self, c: &Candidates) -> Vec<SearchResponse> {
        use rayon::prelude::*;
        let ix = &self.index;
        // Parallel past a few queries: a batch's responses are rows x (id, source row) lookups.
        (0..c.len())
            .into_par_iter()
            .with_min_len(16)
            .map(|i| {
                let (rows, scores): (Vec<u32>, Vec<f32>) = c.query(i).unzip();
                SearchResponse {
                    rows: rows.iter().map(|&r| ix.source_rows[r as usize]).collect(),
                    ids: rows.iter().map(|&r| ix.ids.get(r as usize).into()).collect(),
                    scores,
                }
            })
            .collect()
    }

    /// Lanes opened so far that are idle now ([`lanes`]; tests check concurrency opened some).
    pub fn idle_lanes(&self) -> usize {
        self.lanes.idle()
    }

    /// [`Search::search`] with a hook observing (timing) or steering the stages, on this
    /// executor's own backend handle (not a lane: hooks may hold its profiling state).
    ///
    /// # Errors
    /// See [`Search`]; also what the hook returns.
    pub fn search_with<H: Hook<B>>(&self, req: &SearchRequest, hook: &mut H) -> Result<Vec<SearchResponse>> {
        let (r, q, plans) = self.request(req)?;
        let c = self.run(&q, &plans, &r, hook)?;
        Ok(self.responses(&c))
    }

    /// A request checked and prepared once, in front: resolved parameters, validated and
    /// quantized queries, one plan per query (the pass-all plan where none is given).
    fn request<'a>(&self, req: &'a SearchRequest) -> Result<(Resolved, QueryBatch, Vec<&'a Plan>)> {
        static ALL: Plan = Plan { ops: Vec::new(), terms: Vec::new() };
        let r = self.resolve(&req.params)?;
        let q = self.prepare(req.queries)?;
        if !req.filters.is_empty() && req.filters.len() != q.len {
            return Err(Error::param("filters", format!("{} filters for {} queries", req.filters.len(), q.len)));
        }
        let plans = (0..q.len).map(|i| req.filters.get(i).map_or(&ALL, |f| &f.plan)).collect();
        Ok((r, q, plans))
    }

    /// Resolve a request's parameters against this index (defaults, limits, rerank
    /// `auto`): the one place request rules live.
    ///
    /// # Errors
    /// [`Error::Param`] naming `k` (k = 0), `nprobe` (0 or > nlist), `rerank` (refine or
    /// model without `items.embeddings`, model without a rerank model), `task_weights`
    /// (not one finite weight per task) or `k0` (k0 < k).
    pub fn resolve(&self, p: &SearchParams) -> Result<Resolved> {
        let (nprobe, k0, rerank) = self.resolve_parts(p)?;
        Ok(Resolved { k: p.k, nprobe, k0, rerank })
    }

    fn resolve_parts(&self, p: &SearchParams) -> Result<(usize, usize, Rerank)> {
        let ix = &self.index;
        let nlist = ix.nlist();
        if p.k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        let nprobe = p.nprobe.unwrap_or_else(|| ix.default_nprobe());
        if nprobe == 0 {
            return Err(Error::param("nprobe", "must be at least 1"));
        }
        if nprobe > nlist {
            return Err(Error::param("nprobe", format!("{nprobe} exceeds nlist = {nlist} (the number of inverted lists)")));
        }
        let mode = match p.rerank {
            RerankMode::Auto if ix.embeddings.is_some() => RerankMode::Refine,
            RerankMode::Auto => RerankMode::None,
            m => m,
        };
        let rerank = match mode {
            RerankMode::None | RerankMode::Auto => Rerank::None,
            RerankMode::Refine => {
                if ix.embeddings.is_none() {
                    return Err(Error::param("rerank", "refine needs items.embeddings, which this index does not store"));
                }
                Rerank::Refine
            }
            RerankMode::Model => {
                let model = self.model.clone().ok_or_else(|| {
                    Error::param("rerank", "model rerank needs a model (--rerank-model FILE or rerank.* tensors in the index)")
                })?;
                if ix.embeddings.is_none() {
                    return Err(Error::param("rerank", "model rerank needs items.embeddings"));
                }
                let weights = p.task_weights.clone().unwrap_or_else(|| model.task_weights.clone());
                if weights.len() != model.tasks() || weights.iter().any(|w| !w.is_finite()) {
                    return Err(Error::param("task_weights", format!("need {} finite task weights, got {:?}", model.tasks(), weights)));
                }
                Rerank::Model { model, weights }
            }
        };
        let k0 = p.k0.unwrap_or(default_k0(p.k, rerank != Rerank::None));
        if k0 < p.k {
            return Err(Error::param("k0", format!("{k0} < k = {}; the scan must keep at least k candidates", p.k)));
        }
        Ok((nprobe, k0, rerank))
    }
}

impl<B: Backend> Search for Executor<B> {
    fn index(&self) -> &Arc<Index> {
        &self.index
    }
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    fn with_index(&self, index: Arc<Index>, changed: &Changed) -> Result<Box<dyn Search>> {
        let resident = self.backend.update(&self.resident, &index, changed)?;
        // Posting lists carry over while the rows stay the same: rows whose attributes or
        // typed values were patched become stale (a version with too many, or with patches
        // in unknown rows, is rebuilt on its first posting search).
        let postings = std::sync::OnceLock::new();
        if let Some(p) = self.postings.get().filter(|_| self.index.same_vectors_and_lists(&index)) {
            let limit = (index.len() / 64).max(65_536);
            let part = |on: bool, rows: &Option<Arc<[u32]>>| if on { rows.clone() } else { Some(Arc::from(Vec::new())) };
            if let (Some(a), Some(t)) = (part(changed.attrs, &changed.attr_rows), part(changed.columns, &changed.column_rows))
                && p.stale.len() + a.len() + t.len() <= limit
            {
                drop(postings.set(if a.is_empty() && t.is_empty() { p.clone() } else { p.with_stale(&a).with_stale(&t) }));
            }
        }
        Ok(Box::new(Executor {
            backend: self.backend.clone(),
            index,
            resident,
            model: self.model.clone(),
            planner: self.planner,
            lanes: self.lanes.clone(),
            masks: MaskCache::default(),
            postings,
            dead: Default::default(),
        }))
    }

    /// On an idle lane: concurrent calls overlap their device work ([`lanes`]).
    fn search(&self, req: &SearchRequest) -> Result<Vec<SearchResponse>> {
        let (r, q, plans) = self.request(req)?;
        let c = self.lanes.with(&self.backend, |b| self.run_on(b, &q, &plans, &r, &mut NoHook))?;
        Ok(self.responses(&c))
    }

    /// On an idle lane, as [`Search::search`]: the fresh segments of `silica serve` are
    /// searched by every worker at once, beside the main index's searches.
    fn search_following(&self, req: &SearchRequest, cap: u64) -> Result<Vec<SearchResponse>> {
        let (r, q, plans) = self.request(req)?;
        let c = self.lanes.with(&self.backend, |b| self.run_on(b, &q, &plans, &r, &mut FollowHook { cap }))?;
        Ok(self.responses(&c))
    }

    fn search_shared(&self, req: &SearchRequest, share: &hook::ShareProbes, follow: Option<u64>) -> Result<Vec<SearchResponse>> {
        let (r, q, plans) = self.request(req)?;
        let c = self.lanes.with(&self.backend, |b| self.run_on(b, &q, &plans, &r, &mut hook::SharedHook { share, follow }))?;
        Ok(self.responses(&c))
    }

    fn search_traced(&self, req: &SearchRequest, trace: &mut Trace) -> Result<Vec<SearchResponse>> {
        let t0 = std::time::Instant::now();
        let (r, q, plans) = self.request(req)?;
        trace.prepare_s += t0.elapsed().as_secs_f64();
        let c = self.lanes.with(&self.backend, |b| self.run_on(b, &q, &plans, &r, &mut TraceHook { trace }))?;
        let t1 = std::time::Instant::now();
        let out = self.responses(&c);
        trace.respond_s += t1.elapsed().as_secs_f64();
        trace.host_s += t0.elapsed().as_secs_f64();
        Ok(out)
    }

    fn resolve(&self, p: &SearchParams) -> Result<Resolved> {
        Executor::resolve(self, p)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// `SILICA_TYPED_HOST_MASKS=1`: bind every typed term to a host mask even on backends
/// that evaluate them per query (benchmarks compare both; the bits are the same).
fn host_typed_masks() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SILICA_TYPED_HOST_MASKS").is_ok_and(|v| v == "1"))
}

/// Plans of a batch with their typed terms bound to one index ([`bind_plans`]).
pub struct Bound<'a> {
    owned: Vec<Plan>,
    /// Per query: the caller's plan, or an index into `owned`.
    which: Vec<std::result::Result<&'a Plan, usize>>,
}

impl Bound<'_> {
    /// One plan per query; queries that shared a plan share its bound copy (same address,
    /// so backends encode it once).
    pub fn refs(&self) -> Vec<&Plan> {
        self.which
            .iter()
            .map(|w| match *w {
                Ok(p) => p,
                Err(i) => &self.owned[i],
            })
            .collect()
    }
}

/// `plans` with every typed term bound to `index` ([`Plan::bind`]; masks a plan already
/// carries are recomputed, since they may describe another snapshot): plans without typed
/// terms are borrowed as they are. With `device` (the backend evaluates typed column terms
/// itself, [`Backend::typed_terms`]) column terms are bound only when repeated
/// ([`MaskCache::repeated`]: a cached mask costs one read per word where the kernels
/// would compare 64 keys) and otherwise stay unbound; tests that need a host mask
/// ([`crate::filter::TypedTest::needs_host_mask`]) are always bound.
pub fn bind_plans<'a>(plans: &[&'a Plan], index: &Index, cache: &MaskCache, device: bool) -> Bound<'a> {
    // Plans equal before binding share one bound copy (a batch of requests with the same
    // filter text: one mask upload, not one per query).
    // Found by a hash of what binding reads (a batch of distinct per-request bounds would
    // otherwise compare B^2 / 2 plan pairs on the host: ~6 ms per 256 queries).
    use std::hash::{Hash, Hasher};
    let fingerprint = |p: &Plan| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        p.ops.hash(&mut h);
        p.terms.iter().for_each(|t| (&t.value_ids, &t.typed).hash(&mut h));
        h.finish()
    };
    let mut keys: Vec<&Plan> = Vec::new();
    let mut by_hash: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
    let mut owned = Vec::new();
    let which = plans
        .iter()
        .map(|&p| {
            if !p.has_typed() {
                return Ok(p);
            }
            let slot = by_hash.entry(fingerprint(p)).or_default();
            if let Some(&k) = slot.iter().find(|&&k| std::ptr::eq(keys[k], p) || *keys[k] == *p) {
                return Err(k);
            }
            keys.push(p);
            owned.push(
                p.bind_opt(|t| if !device || t.needs_host_mask(index) { Some(cache.get(t, index)) } else { cache.repeated(t, index) }),
            );
            slot.push(owned.len() - 1);
            Err(owned.len() - 1)
        })
        .collect();
    Bound { owned, which }
}

/// Validate `[B, D]` queries against `index` and quantize them (cosine: normalize first;
/// l2: a power-of-two scale, [`crate::model::metric::quantize_query`]).
///
/// # Errors
/// [`Error::Dimension`] when `queries.len()` is not a multiple of D;
/// [`Error::NonFinite`] / [`Error::OutOfRange`] (what `queries`) from
/// [`crate::model::finite::check_rows`] for a NaN/Inf value or a non-finite norm.
pub fn prepare_queries(index: &Index, queries: &[f32]) -> Result<QueryBatch> {
    let d = index.dim;
    if !queries.len().is_multiple_of(d) {
        return Err(Error::Dimension { what: "queries".into(), expected: d, got: queries.len() % d });
    }
    let b = queries.len() / d;
    // Finite values and a finite norm: every score is then finite (model::finite).
    crate::model::finite::check_rows(queries, d, false, "queries")?;
    use rayon::prelude::*;
    let mut f = queries.to_vec();
    // Rows in parallel past a few queries (each row's arithmetic is unchanged: same bits).
    let rows = (4096 / d.max(1)).max(1);
    if index.metric == Metric::Cosine {
        f.par_chunks_mut(d * rows).for_each(|blk| {
            for row in blk.chunks_mut(d) {
                let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 {
                    row.iter_mut().for_each(|x| *x /= n);
                }
            }
        });
    }
    let mut codes = vec![0i8; f.len()];
    // l2: a power-of-two scale keeps the integer score exact (model::metric).
    let quant = if index.metric == Metric::L2 { crate::model::metric::quantize_query } else { quantize_row };
    let scale = f
        .par_chunks(d * rows)
        .zip(codes.par_chunks_mut(d * rows))
        .flat_map_iter(|(x, c)| x.chunks(d).zip(c.chunks_mut(d)).map(|(x, c)| quant(x, c)).collect::<Vec<f32>>())
        .collect();
    Ok(QueryBatch { len: b, dim: d, f32: f, codes, scale, device: None })
}

impl QueryBatch {
    /// The sub-batch of queries `which`.
    pub fn gather(&self, which: &[usize]) -> QueryBatch {
        let d = self.dim;
        if let Some(dev) = &self.device {
            // A device batch: the same prepared rows, selected (the backend gathers them).
            let rows = which.iter().map(|&i| dev.rows.as_ref().map_or(i as u32, |r| r[i])).collect();
            return QueryBatch {
                len: which.len(),
                dim: d,
                f32: Vec::new(),
                codes: Vec::new(),
                scale: Vec::new(),
                device: Some(crate::backend::OnDevice { batch: dev.batch.clone(), rows: Some(rows) }),
            };
        }
        QueryBatch {
            len: which.len(),
            dim: d,
            f32: which.iter().flat_map(|&i| self.f32[i * d..(i + 1) * d].iter().copied()).collect(),
            codes: which.iter().flat_map(|&i| self.codes[i * d..(i + 1) * d].iter().copied()).collect(),
            scale: which.iter().map(|&i| self.scale[i]).collect(),
            device: None,
        }
    }
}

impl crate::backend::Candidates {
    /// `[b, k]` candidates with no entries (rows MAX, scores -inf, counts 0).
    pub fn empty(b: usize, k: usize) -> Candidates {
        Candidates { k, rows: vec![u32::MAX; b * k], scores: vec![f32::NEG_INFINITY; b * k], counts: vec![0; b] }
    }

    /// Overwrite query `q`'s entries with query `from_q` of `other` (same k).
    pub fn replace_query(&mut self, q: usize, other: &crate::backend::Candidates, from_q: usize) {
        let k = self.k;
        self.rows[q * k..(q + 1) * k].copy_from_slice(&other.rows[from_q * k..(from_q + 1) * k]);
        self.scores[q * k..(q + 1) * k].copy_from_slice(&other.scores[from_q * k..(from_q + 1) * k]);
        self.counts[q] = other.counts[from_q];
    }
}
