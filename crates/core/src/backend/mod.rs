//! The `Backend` trait: one method per pipeline stage (DESIGN.md "The pipeline").
//! Backends implement stages; only [`crate::graph`] knows their order.
//!
//! Stage outputs are backend-owned values (device buffers on GPUs); `read_*` copies
//! them to the host types below, which the golden-output suite compares across
//! backends. Stages 1-3 must be bit-identical to the CPU backend.

pub mod cpu;
pub mod shard;

use crate::error::Result;
use crate::filter::Plan;
use crate::model::Index;

/// A query batch, prepared on the host: f32 rows (unit-normalized for cosine) and their
/// int8 quantization (DESIGN.md invariants: symmetric, absmax/127, round half to even).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryBatch {
    /// Batch size B.
    pub len: usize,
    /// Dimension D.
    pub dim: usize,
    /// `[B, D]` f32 queries.
    pub f32: Vec<f32>,
    /// `[B, D]` int8 codes.
    pub codes: Vec<i8>,
    /// `[B]` scales.
    pub scale: Vec<f32>,
    /// Queries prepared in device memory instead ([`OnDevice`]): the host vectors above
    /// are then empty, and only the backend that prepared them can search them.
    pub device: Option<OnDevice>,
}

/// A query batch that lives in device memory (the CUDA backend's zero-copy path,
/// `silica-cuda`'s `SearchDevice`): the backend's own prepared batch, and which of its rows this
/// (sub-)batch holds (`None`: all, in order). Other backends refuse such a batch.
#[derive(Clone)]
pub struct OnDevice {
    /// The preparing backend's own batch type, downcast by that backend only.
    pub batch: std::sync::Arc<dyn std::any::Any + Send + Sync>,
    /// Rows of `batch` this (sub-)batch holds, in order; `None`: all of them.
    pub rows: Option<std::sync::Arc<[u32]>>,
}

impl std::fmt::Debug for OnDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDevice").field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl PartialEq for OnDevice {
    fn eq(&self, o: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.batch, &o.batch) && self.rows == o.rows
    }
}

/// Which mutable parts of an index differ between two versions (see [`Backend::update`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// The live bitset (deletes, replacements).
    pub live: bool,
    /// The Bloom bit-planes (attribute patches).
    pub planes: bool,
    /// With `planes`: the 64-row words (`row / 64`, ascending, distinct) outside which no
    /// plane changed; a backend may then copy the old planes on the device and write only
    /// these words of every plane. `None`: any word may have changed.
    pub plane_words: Option<std::sync::Arc<[u32]>>,
    /// The exact attribute CSR (attribute patches).
    pub attrs: bool,
    /// With `attrs`: the rows (ascending, distinct) outside which no attribute value
    /// changed; when each keeps its number of values, a backend may copy the old values on
    /// the device and write only these rows' values. `None`: any row may have changed.
    pub attr_rows: Option<std::sync::Arc<[u32]>>,
    /// The typed columns' values (typed patches).
    pub columns: bool,
    /// With `columns`: the rows (ascending, distinct) outside which no typed value changed
    /// (the executor's posting lists keep their value buckets and verify these rows
    /// separately). `None`: any row may have changed.
    pub column_rows: Option<std::sync::Arc<[u32]>>,
}

impl Changed {
    /// Anything may have changed.
    pub const ALL: Changed =
        Changed { live: true, planes: true, plane_words: None, attrs: true, attr_rows: None, columns: true, column_rows: None };
    /// Nothing changed.
    pub const NONE: Changed =
        Changed { live: false, planes: false, plane_words: None, attrs: false, attr_rows: None, columns: false, column_rows: None };

    /// With [`Changed::attr_rows`]: when every listed row keeps its number of values in
    /// `new` (so the CSR offsets are those of `old`), the `(index, value)` pairs of
    /// `new.values` to write into a copy of `old.values`; `None` when a count changed, the
    /// shapes differ, or the pairs would be more than an eighth of all values (upload it).
    pub fn attr_patch(&self, old: &crate::model::Attributes, new: &crate::model::Attributes) -> Option<(Vec<u64>, Vec<u32>)> {
        let rows = self.attr_rows.as_ref().filter(|_| self.attrs)?;
        let n = new.offsets.len().checked_sub(1)?;
        if old.offsets.len() != new.offsets.len() || old.values.len() != new.values.len() {
            return None;
        }
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        for &r in rows.iter() {
            let r = r as usize;
            if r >= n || old.offsets[r] != new.offsets[r] || old.offsets[r + 1] != new.offsets[r + 1] {
                return None;
            }
            for i in new.offsets[r]..new.offsets[r + 1] {
                idx.push(i);
                val.push(new.values[i as usize]);
            }
        }
        (idx.len() * 8 <= new.values.len()).then_some((idx, val))
    }

    /// With [`Changed::plane_words`]: the `(index, value)` pairs of `planes` (`[M, words]`
    /// u64, plane-major) to write into a copy of the old planes, when there are fewer than
    /// an eighth of all plane words (else `None`: a full upload costs about the same).
    pub fn plane_patch(&self, planes: &crate::model::BloomPlanes) -> Option<(Vec<u64>, Vec<u64>)> {
        let ws = self.plane_words.as_ref().filter(|_| self.planes)?;
        let m = planes.params.bits as usize;
        if ws.len() * m * 8 > planes.planes.len() || ws.iter().any(|&w| w as usize >= planes.words) {
            return None;
        }
        let (mut idx, mut val) = (Vec::with_capacity(ws.len() * m), Vec::with_capacity(ws.len() * m));
        for b in 0..m {
            for &w in ws.iter() {
                let at = b * planes.words + w as usize;
                idx.push(at as u64);
                val.push(planes.planes[at]);
            }
        }
        Some((idx, val))
    }
}

/// Stage 1 output on the host: `[B, nprobe]` list ids, best first (score desc, list asc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probes {
    /// Lists probed per query.
    pub nprobe: usize,
    /// `[B * nprobe]` u32 list ids, query-major, each `< L`.
    pub lists: Vec<u32>,
}

/// Stage 2 output on the host: for each (query, probe) pair `p = q*nprobe + j`, the Bloom
/// "maybe" words of list `lists[p]`: `words[offsets[p]..offsets[p+1]]` covers rows
/// `64*first_word(p) ..`, with bits outside the list's rows cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// `[B * nprobe + 1]` CSR offsets into `words`.
    pub offsets: Vec<usize>,
    /// u64 mask words of every (query, probe) pair, bit `i` of word `w` = row `64*w + i`.
    pub words: Vec<u64>,
}

/// Stage 3/4/5 output on the host: `[B, k]` candidates best first. Slots past
/// `counts[q]` hold `row = u32::MAX`, `score = f32::NEG_INFINITY`.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates {
    /// Slots per query.
    pub k: usize,
    /// `[B * k]` sorted-row indices.
    pub rows: Vec<u32>,
    /// `[B * k]` scores.
    pub scores: Vec<f32>,
    /// `[B]` valid entries per query (all of which pass the filter exactly).
    pub counts: Vec<u32>,
}

impl Candidates {
    /// Number of queries.
    pub fn len(&self) -> usize {
        self.counts.len()
    }
    /// True when there are no queries.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
    /// Valid `(row, score)` pairs of query `q`.
    pub fn query(&self, q: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let s = q * self.k;
        (s..s + self.counts[q] as usize).map(move |i| (self.rows[i], self.scores[i]))
    }
}

/// Stage 4 mode.
#[derive(Clone, Debug, PartialEq)]
pub enum Rerank {
    /// Keep the int8 scores, scaled by the query scale (`score * q_scale`).
    None,
    /// Exact f32 re-score from the f16 embeddings (Faiss IndexRefine).
    Refine,
    /// Multi-task MLP composite with these task weights.
    Model {
        /// The MLP ([`crate::rerank`]).
        model: std::sync::Arc<crate::rerank::RerankModel>,
        /// `[T]` f32 task weights of the composite score.
        weights: Vec<f32>,
    },
}

/// One GPU as a backend's device list reports it (`silica devices`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuInfo {
    /// The backend's device ordinal (`cuda:N`).
    pub ordinal: usize,
    /// The driver's device name.
    pub name: String,
    /// Total device memory in bytes.
    pub memory: u64,
}

/// A compute device that runs the pipeline stages.
pub trait Backend: Clone + Send + Sync + 'static {
    /// The index resident on the device (uploaded once).
    type Resident: Send + Sync;
    /// Stage 1 output on the device; host form [`Probes`].
    type Probes;
    /// Stage 2 output on the device; host form [`Mask`].
    type Mask;
    /// Stage 3/4/5 output on the device; host form [`Candidates`].
    type Cands;

    /// Short name (`cpu`, `wgpu`, `cuda`).
    fn name(&self) -> &'static str;

    /// A handle on the same device for one more search in flight at once (the executor keeps
    /// a pool of them, one per concurrent search): its device work may overlap the work of
    /// other lanes. Residents uploaded through any handle of this device are valid on every
    /// lane (uploads and updates complete before they return); stage outputs belong to the
    /// lane that produced them. CUDA: its own stream and scratch workspace, the context,
    /// kernels and tuning shared. The default shares this handle (wgpu: one queue; cpu: the
    /// rayon pool), which is correct for any backend whose stages may be called from
    /// several threads at once.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) when the device cannot create another
    /// stream or workspace.
    fn lane(&self) -> Result<Self> {
        Ok(self.clone())
    }

    /// Upload an index (once per load).
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure (e.g. out of memory).
    fn upload(&self, index: &std::sync::Arc<Index>) -> Result<Self::Resident>;

    /// Upload `index`, a changed version of the index `old` holds in which at most the
    /// parts `changed` names differ (what `silica serve`'s deletes, replacements and
    /// attribute patches change; item codes, scales, embeddings, features, centroids and
    /// lists are the same). A backend may share `old`'s unchanged device tensors (`old`
    /// stays valid for the searches still using it) and must fall back to a full upload
    /// when sizes or lists differ. The default uploads everything.
    ///
    /// # Errors
    /// As [`Backend::upload`].
    fn update(&self, old: &Self::Resident, index: &std::sync::Arc<Index>, changed: &Changed) -> Result<Self::Resident> {
        let _ = (old, changed);
        self.upload(index)
    }

    /// Stage 1: int8 centroid scores `[B, L]` -> top-`nprobe` lists per query.
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `nprobe` when `nprobe > L` (or
    /// `queries` past a device's batch limit); [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn probe(&self, ix: &Self::Resident, q: &QueryBatch, nprobe: usize) -> Result<Self::Probes>;
    /// Stage 2: Bloom bit-plane AND/OR over the words of the probed lists only
    /// (probe-then-filter), ANDed with the index's live-row bitset. `plans` has one plan
    /// per query.
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `filter`/`filters` when a plan is more
    /// than the backend can encode or the plans do not match the batch;
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn filter(&self, ix: &Self::Resident, plans: &[&Plan], probes: &Self::Probes) -> Result<Self::Mask>;
    /// Stage 2, global form: per plan, the number of items whose Bloom "maybe" mask is set
    /// over the whole index, live rows only (an upper bound of the passing items; the planner
    /// uses it to scan a selective filter's candidates directly). Trivial plans give N.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn count(&self, ix: &Self::Resident, plans: &[&Plan]) -> Result<Vec<u64>>;
    /// Stage 3: int8 dot products over masked items of the probed lists, exact filter
    /// verification of items that would enter the top-`k0`, fused top-`k0` per query.
    /// Scores are `(i32 dot) as f32 * item_scale`.
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) when probes, mask or plans do not match the
    /// batch (or the batch exceeds a device limit); [`Error::Backend`](crate::Error::Backend)
    /// on a device failure, outputs too large for the device, or a batch prepared by
    /// another backend ([`OnDevice`]).
    fn scan(
        &self,
        ix: &Self::Resident,
        q: &QueryBatch,
        probes: &Self::Probes,
        mask: &Self::Mask,
        plans: &[&Plan],
        k0: usize,
    ) -> Result<Self::Cands>;
    /// Stages 2 + 3 over a filter's whole passing set: the planner's route for selective
    /// filters (DESIGN.md "Selective filters keep recall"), which costs what the filter's
    /// candidates cost instead of probing every list. For each query `q`:
    ///
    /// 0. a query that [`admit_candidates`] turns away on its sampled Bloom count
    ///    ([`sampled_bloom_count`]: every [`SAMPLE_EVERY`]-th word) is not counted further
    ///    (answer `None`), so a broad filter costs a sixteenth of a Bloom pass here;
    /// 1. `bloom[q]` = live rows of the whole index whose Bloom "maybe" bit is set for
    ///    `plans[q]` (what [`Backend::count`] counts; an upper bound of the passing rows);
    /// 2. when `bloom[q] <= cap`: those rows are verified exactly, every passing row is
    ///    scored (`(i32 dot) as f32 * item_scale`) and the top-`k0` kept, best first, ties
    ///    by lower row: the same bits as scanning every list under the mask, so stages 1-3
    ///    stay bit-identical across backends; the answer is `Some(bloom[q])`;
    /// 3. when `bloom[q] > cap`: the query is not scanned (count 0) and its answer is
    ///    `None`; the executor sends it down the probe path.
    ///
    /// Returns the `[B, k0]` candidates and the per-query answers (host data: the only
    /// value the planner reads back before the probe path runs). Backends may stop
    /// counting a query once it passes `cap`. The default composes this backend's own
    /// [`Backend::count`], [`Backend::filter`] over every list and [`Backend::scan`]
    /// (no compaction; correct, at the cost of walking every list's mask).
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `filters` when `plans.len() != B`;
    /// otherwise what [`Backend::count`], [`Backend::filter`] and [`Backend::scan`]
    /// return (the default needs [`Backend::upload_probes`], else
    /// [`Error::Backend`](crate::Error::Backend)).
    fn scan_candidates(
        &self,
        ix: &Self::Resident,
        q: &QueryBatch,
        plans: &[&Plan],
        k0: usize,
        cap: u64,
    ) -> Result<(Self::Cands, Vec<Option<u64>>)> {
        if plans.len() != q.len {
            return Err(crate::Error::param("filters", format!("{} plans for {} queries", plans.len(), q.len)));
        }
        let host = self.resident_index(ix);
        let n = host.len() as u64;
        let nothing = Plan::nothing();
        // Plans turned away on their sample are not counted (a no-row plan counts 0).
        let admitted: Vec<bool> = plans.iter().map(|p| admit_candidates(sampled_bloom_count(host, p), cap, n)).collect();
        let counted: Vec<&Plan> = plans.iter().zip(&admitted).map(|(&p, &a)| if a { p } else { &nothing }).collect();
        let bloom: Vec<u64> = self.count(ix, &counted)?.into_iter().zip(&admitted).map(|(c, &a)| if a { c } else { u64::MAX }).collect();
        let eff: Vec<&Plan> = plans.iter().zip(&bloom).map(|(&p, &c)| if c <= cap { p } else { &nothing }).collect();
        let nl = host.nlist();
        let all = Probes { nprobe: nl, lists: (0..q.len).flat_map(|_| 0..nl as u32).collect() };
        let probes = self.upload_probes(ix, &all)?;
        let mask = self.filter(ix, &eff, &probes)?;
        let cands = self.scan(ix, q, &probes, &mask, &eff, k0)?;
        Ok((cands, bloom.into_iter().map(|c| (c <= cap).then_some(c)).collect()))
    }

    /// Stages 2 + 3 over the rows of posting lists: the planner's route for a filter with a
    /// short driver ([`crate::model::postings::driver`]). For each query `j`, the live rows
    /// of [`crate::model::postings::candidate_rows`] (the postings in `post` of the value
    /// ids `drivers[j]`, and its stale rows) that pass `plans[j]` exactly
    /// are scored (`(i32 dot) as f32 * item_scale`) and the top-`k0` kept, best first, ties
    /// by lower row. Every row passing `plans[j]` lies in those rows, so the answer is the
    /// same bits as [`Backend::scan_candidates`] with a budget of every row: the cost is
    /// the driver's rows, not N.
    ///
    /// `post` must describe the resident index (built from its attributes, or from an
    /// earlier version's with every row patched since marked stale); `drivers[j]` sorted
    /// and distinct. The default answers through [`Backend::scan_candidates`] with a
    /// budget of every row (correct; walks every word).
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `filters` when `drivers.len()` (or
    /// `plans.len()`) is not B; otherwise what [`Backend::scan_candidates`] returns.
    fn scan_postings(
        &self,
        ix: &Self::Resident,
        q: &QueryBatch,
        plans: &[&Plan],
        drivers: &[&[u32]],
        post: &crate::model::postings::PostingState,
        k0: usize,
    ) -> Result<Self::Cands> {
        let _ = post;
        if drivers.len() != q.len {
            return Err(crate::Error::param("filters", format!("{} drivers for {} queries", drivers.len(), q.len)));
        }
        let n = self.resident_index(ix).len() as u64;
        Ok(self.scan_candidates(ix, q, plans, k0, n)?.0)
    }

    /// The cost of verifying one posting row ([`Backend::scan_postings`]: a random row's
    /// values, its plan and its codes) in units of one Bloom plane word read by a whole-index
    /// Bloom pass ([`Backend::scan_candidates`]): the planner sends a short driver to the
    /// Bloom route when its rows cost more. Only speed depends on it (a query with a short
    /// driver gets the same exact answer through either route). Default 2 (GPUs: gathers
    /// of whole rows against coalesced plane words).
    fn posting_row_cost(&self) -> u64 {
        2
    }

    /// True when this backend evaluates typed column terms (numeric / bool / timestamp
    /// comparisons) itself, per query, from the resident index's columns: the executor
    /// then hands it plans with those terms unbound ([`Plan::bind_some`]) instead of
    /// computing an exact row mask over the whole column per distinct bound. The bits
    /// must be those of [`Plan::bloom_word_in`] and [`Plan::matches_in`]. Default false
    /// (the backend reads bound masks).
    fn typed_terms(&self) -> bool {
        false
    }

    /// The host index `ix` was uploaded from.
    fn resident_index<'a>(&self, ix: &'a Self::Resident) -> &'a std::sync::Arc<Index>;

    /// Stage 4: re-score the candidates (not yet re-sorted).
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `rerank` when [`Rerank::Refine`] or
    /// [`Rerank::Model`] meets an index without `items.embeddings`, or a model whose input
    /// is not `2*D + F`; [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn rerank(&self, ix: &Self::Resident, q: &QueryBatch, cands: Self::Cands, mode: &Rerank) -> Result<Self::Cands>;
    /// Stage 5: top-`k` of the (re-)scores, best first.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn select(&self, cands: Self::Cands, k: usize) -> Result<Self::Cands>;

    /// Block until all submitted device work has finished (benchmarks time stages with
    /// it on the host clock when a backend has no device timer). CPU: no-op.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) when the device reports a failure of the
    /// submitted work.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    /// Run `f`, which submits one stage's device work, and measure that work on the
    /// device clock: returns `f`'s value and the device time in seconds from the start of
    /// the first command `f` submitted to the end of the last, or `None` when this backend
    /// has no device timer. `silica bench` wraps every stage in `synchronize(); timed(f);
    /// synchronize()` and falls back to the host clock around that when `None` comes back.
    ///
    /// The default runs `f` untimed (`None`); the CPU backend keeps it (host clock).
    /// GPU backends implement it: CUDA records an event before and after `f` on the stream
    /// and returns `cuEventElapsedTime` once the end event has completed; wgpu marks the
    /// passes that `f` encodes with `timestamp_writes` into a query set (first begin, last
    /// end), resolves it and scales by `Queue::get_timestamp_period`. Nested calls may
    /// return `None` for the inner one.
    ///
    /// # Errors
    /// What `f` returns; [`Error::Backend`](crate::Error::Backend) when the device timer
    /// fails.
    fn timed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        Ok((f()?, None))
    }

    /// [`Backend::timed`] plus the device time of each kernel phase inside `f`, seconds,
    /// in launch order (`silica bench --suite e2e` reports them per stage as
    /// `kernels_ms`). The default has no phases; CUDA records an event after each kernel
    /// of its stage-3 paths (programmatic dependent launch is off while it does).
    ///
    /// # Errors
    /// As [`Backend::timed`].
    fn timed_phases<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>, Phases)> {
        let (v, t) = self.timed(f)?;
        Ok((v, t, Vec::new()))
    }

    /// Make host-side probes resident (benchmarks give stage 1's output directly, as the
    /// DESIGN.md table's "random probes" rows do). `p` must satisfy [`check_probes`]
    /// against the resident index's nlist, else `Error::Param` naming `probes`.
    /// The default says the backend cannot take given probes.
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `probes` from [`check_probes`];
    /// [`Error::Backend`](crate::Error::Backend) from the default or a device failure.
    fn upload_probes(&self, ix: &Self::Resident, p: &Probes) -> Result<Self::Probes> {
        let _ = (ix, p);
        Err(crate::Error::backend(self.name(), "given probes are not supported by this backend (implement Backend::upload_probes)"))
    }

    /// Make host candidates resident (`[B, k]`, rows of this resident's index, as
    /// [`Backend::read_cands`] returns them): the sharded backend ([`shard`]) hands each
    /// shard its share of the merged top-K0 to re-score this way. The default says the
    /// backend cannot take given candidates.
    ///
    /// # Errors
    /// [`Error::Param`](crate::Error::Param) naming `candidates` from [`check_cands`];
    /// [`Error::Backend`](crate::Error::Backend) from the default or a device failure.
    fn upload_cands(&self, ix: &Self::Resident, c: &Candidates) -> Result<Self::Cands> {
        let _ = (ix, c);
        Err(crate::Error::backend(self.name(), "given candidates are not supported by this backend (implement Backend::upload_cands)"))
    }

    /// Copy stage 1's output to the host.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn read_probes(&self, p: &Self::Probes) -> Result<Probes>;
    /// Copy stage 2's output to the host.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn read_mask(&self, m: &Self::Mask) -> Result<Mask>;
    /// Copy stage 3/4/5 output to the host.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn read_cands(&self, c: &Self::Cands) -> Result<Candidates>;
    /// Valid candidates per query `[B]` u32 (the executor's widening decision reads only this).
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on a device failure.
    fn read_counts(&self, c: &Self::Cands) -> Result<Vec<u32>>;
}

/// Words between two samples of [`sampled_bloom_count`].
pub const SAMPLE_EVERY: usize = 16;

/// Device seconds per kernel phase of one stage, in launch order ([`Backend::timed_phases`]).
pub type Phases = Vec<(&'static str, f64)>;

/// Live rows whose Bloom "maybe" bit is set for `plan` in the words `w` with
/// `w % SAMPLE_EVERY == 0` (rows < N only): the planner's first, cheap look at a filter's
/// selectivity. Every backend computes exactly this number.
pub fn sampled_bloom_count(ix: &Index, plan: &Plan) -> u64 {
    let all = 0..ix.len();
    (0..ix.bloom.words)
        .step_by(SAMPLE_EVERY)
        .map(|w| (plan.bloom_word_in(ix, w) & cpu::range_bits(w, &all) & ix.live_word(w)).count_ones() as u64)
        .sum()
}

/// Whether [`Backend::scan_candidates`] counts a query further, from its sampled Bloom
/// count: always when `cap` covers all `n` rows, else when the estimate
/// `sampled * SAMPLE_EVERY` is at most `2 * cap` (a filter estimated at more than twice
/// the budget is left to the probe path without a full Bloom pass).
pub fn admit_candidates(sampled: u64, cap: u64, n: u64) -> bool {
    cap >= n || sampled.saturating_mul(SAMPLE_EVERY as u64) <= cap.saturating_mul(2)
}

/// Validate host probes for a batch of `batch` queries over `nlist` lists: `nprobe >= 1`,
/// `lists.len() == batch * nprobe`, every id `< nlist`, no list twice within one query.
///
/// # Errors
/// [`Error::Param`](crate::Error::Param) naming `probes` when any of these fails.
pub fn check_probes(p: &Probes, batch: usize, nlist: usize) -> Result<()> {
    let bad = |reason: String| Err(crate::Error::param("probes", reason));
    if p.nprobe == 0 {
        return bad("nprobe must be at least 1".into());
    }
    if p.lists.len() != batch * p.nprobe {
        return bad(format!("{} list ids for {batch} queries x nprobe {}", p.lists.len(), p.nprobe));
    }
    let mut seen = vec![usize::MAX; nlist];
    for (q, row) in p.lists.chunks(p.nprobe).enumerate() {
        for &l in row {
            let l = l as usize;
            if l >= nlist {
                return bad(format!("query {q}: list {l} >= nlist {nlist}"));
            }
            if seen[l] == q {
                return bad(format!("query {q}: list {l} appears twice"));
            }
            seen[l] = q;
        }
    }
    Ok(())
}

/// Validate host candidates for [`Backend::upload_cands`] over an index of `n` rows:
/// `rows` and `scores` are `counts.len() x k`, every count is at most `k`, and every valid
/// row is below `n`.
///
/// # Errors
/// [`Error::Param`](crate::Error::Param) naming `candidates` when any of these fails.
pub fn check_cands(c: &Candidates, n: usize) -> Result<()> {
    let bad = |reason: String| Err(crate::Error::param("candidates", reason));
    let b = c.counts.len();
    if c.rows.len() != b * c.k || c.scores.len() != b * c.k {
        return bad(format!("{} rows and {} scores for {b} queries x k {}", c.rows.len(), c.scores.len(), c.k));
    }
    for q in 0..b {
        if c.counts[q] as usize > c.k {
            return bad(format!("query {q}: count {} > k {}", c.counts[q], c.k));
        }
        if let Some((r, _)) = c.query(q).find(|&(r, _)| r as usize >= n) {
            return bad(format!("query {q}: row {r} >= N = {n}"));
        }
    }
    Ok(())
}
