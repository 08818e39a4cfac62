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

pub mod segments;

use crate::backend::{Backend, Changed, QueryBatch, Rerank};
use crate::error::{Error, Result};
use crate::filter::{Filter, Plan};
use crate::model::{quantize::quantize_row, Index, Metric};
use crate::rerank::RerankModel;
use std::sync::Arc;

/// Stage 4 mode as requested by a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RerankMode {
    /// `refine` when the index stores embeddings, else `none`.
    #[default]
    #[value(skip)]
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
    /// Lists probed per query; `None`: [`default_nprobe`].
    pub nprobe: Option<usize>,
    /// Candidates kept by the int8 scan (K0 >= k); `None`: k without rerank, else max(4k, 64).
    pub k0: Option<usize>,
    pub rerank: RerankMode,
    /// Task weights for `model` rerank (`None`: the model's defaults).
    pub task_weights: Option<Vec<f32>>,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { k: 10, nprobe: None, k0: None, rerank: RerankMode::Auto, task_weights: None }
    }
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
    pub params: SearchParams,
}

/// The answer for one query, best first.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchResponse {
    /// 0-based source rows (line numbers of the attributes file).
    pub rows: Vec<u64>,
    /// External ids.
    pub ids: Vec<String>,
    /// Final scores (int8 score, refined f32 inner product, or composite).
    pub scores: Vec<f32>,
}

/// Runs the pipeline on one backend over one resident index.
pub struct Executor<B: Backend> {
    backend: B,
    index: Arc<Index>,
    resident: B::Resident,
    model: Option<Arc<RerankModel>>,
}

/// Object-safe view of an [`Executor`] over any backend (what the CLI and server hold).
pub trait Search: Send + Sync {
    fn index(&self) -> &Arc<Index>;
    fn backend_name(&self) -> &'static str;
    fn search(&self, req: &SearchRequest) -> Result<Vec<SearchResponse>>;
    /// A searcher over `index`, a changed version of this one in which at most the parts
    /// `changed` names differ (live bits, Bloom planes, attributes: see
    /// [`Backend::update`]), on the same device: no new context, no kernel compilation,
    /// unchanged device tensors shared. Falls back to a full upload when the index differs
    /// in more than that.
    fn with_index(&self, index: Arc<Index>, changed: &Changed) -> Result<Box<dyn Search>>;
}

impl<B: Backend> Executor<B> {
    /// Upload `index` to `backend`. A rerank model stored in the index is used for `model`.
    pub fn new(backend: B, index: Arc<Index>) -> Result<Self> {
        let resident = backend.upload(&index)?;
        let model = index.rerank.clone().map(Arc::new);
        Ok(Executor { backend, index, resident, model })
    }

    /// Use `model` for `model` rerank (overrides one stored in the index).
    pub fn with_rerank_model(mut self, model: RerankModel) -> Result<Self> {
        let want = 2 * self.index.dim + self.index.feature_names.len();
        if model.input_dim() != want {
            return Err(Error::param("rerank-model", format!("model input width {} != 2*D + F = {want}", model.input_dim())));
        }
        self.model = Some(Arc::new(model));
        Ok(self)
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }
    pub fn resident(&self) -> &B::Resident {
        &self.resident
    }

    /// Validate and quantize queries on the host (NaN/Inf and dimension errors named).
    pub fn prepare(&self, queries: &[f32]) -> Result<QueryBatch> {
        prepare_queries(&self.index, queries)
    }

    /// One pass of stages 1-5 for a batch; returns final candidates and scan counts.
    fn pass(&self, q: &QueryBatch, plans: &[&Plan], nprobe: usize, k0: usize, k: usize, mode: &Rerank) -> Result<(crate::backend::Candidates, Vec<u32>)> {
        let b = &self.backend;
        let nlist = self.index.nlist();
        // Probing every list needs no centroid scores: all lists in id order (the scan's
        // top-K0 is ordered by score and row, so it does not depend on the list order).
        let probes = if nprobe == nlist && nlist > 1 {
            let all = crate::backend::Probes { nprobe, lists: (0..q.len).flat_map(|_| 0..nlist as u32).collect() };
            b.upload_probes(&self.resident, &all)?
        } else {
            b.probe(&self.resident, q, nprobe)?
        };
        let mask = b.filter(&self.resident, plans, &probes)?;
        let cands = b.scan(&self.resident, q, &probes, &mask, plans, k0)?;
        let counts = b.read_counts(&cands)?;
        let cands = b.rerank(&self.resident, q, cands, mode)?;
        let cands = b.select(cands, k)?;
        Ok((b.read_cands(&cands)?, counts))
    }

    /// Run queries `which` with `nprobe` lists, writing their results into `result`.
    /// Returns those (still) short of K0 passing candidates, unless all lists were probed.
    #[allow(clippy::too_many_arguments)]
    fn run_group(&self, q: &QueryBatch, plans: &[&Plan], which: &[usize], nprobe: usize, k0: usize, k: usize, mode: &Rerank, result: &mut crate::backend::Candidates) -> Result<Vec<usize>> {
        if which.is_empty() {
            return Ok(Vec::new());
        }
        // The whole batch (the common case) runs as is; a subset is gathered.
        let gathered;
        let sub = if which.len() == q.len {
            q
        } else {
            gathered = q.gather(which);
            &gathered
        };
        let sub_plans: Vec<&Plan> = which.iter().map(|&i| plans[i]).collect();
        let (r, counts) = self.pass(sub, &sub_plans, nprobe, k0, k, mode)?;
        let mut short = Vec::new();
        for (j, &i) in which.iter().enumerate() {
            result.replace_query(i, &r, j);
            if (counts[j] as usize) < k0 && nprobe < self.index.nlist() {
                short.push(i);
            }
        }
        Ok(short)
    }

    fn resolve(&self, p: &SearchParams) -> Result<(usize, usize, Rerank)> {
        let ix = &self.index;
        let nlist = ix.nlist();
        if p.k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        let nprobe = p.nprobe.unwrap_or_else(|| default_nprobe(nlist));
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
                let model = self.model.clone().ok_or_else(|| Error::param("rerank", "model rerank needs a model (--rerank-model FILE or rerank.* tensors in the index)"))?;
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
        let k0 = p.k0.unwrap_or(if rerank == Rerank::None { p.k } else { (4 * p.k).max(64) });
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
        Ok(Box::new(Executor { backend: self.backend.clone(), index, resident, model: self.model.clone() }))
    }

    fn search(&self, req: &SearchRequest) -> Result<Vec<SearchResponse>> {
        let (nprobe, k0, mode) = self.resolve(&req.params)?;
        let k = req.params.k;
        let q = self.prepare(req.queries)?;
        if !req.filters.is_empty() && req.filters.len() != q.len {
            return Err(Error::param("filters", format!("{} filters for {} queries", req.filters.len(), q.len)));
        }
        let all = Plan::all();
        let plans: Vec<&Plan> = (0..q.len).map(|i| req.filters.get(i).map(|f| &f.plan).unwrap_or(&all)).collect();
        let nlist = self.index.nlist();
        // Planner: a filter whose Bloom candidates number no more than the items that
        // nprobe lists hold on average is scanned over all lists (only its candidates are
        // touched), which is exact and costs no more than a normal probe.
        let budget = (nprobe * self.index.len().div_ceil(nlist)) as u64;
        let filtered: Vec<usize> = (0..q.len).filter(|&i| !plans[i].is_all()).collect();
        let mut exhaustive = vec![false; q.len];
        if !filtered.is_empty() && nprobe < nlist {
            let fp: Vec<&Plan> = filtered.iter().map(|&i| plans[i]).collect();
            for (&i, c) in filtered.iter().zip(self.backend.count(&self.resident, &fp)?) {
                exhaustive[i] = c <= budget;
            }
        }
        let mut result = crate::backend::Candidates { k, rows: vec![u32::MAX; q.len * k], scores: vec![f32::NEG_INFINITY; q.len * k], counts: vec![0; q.len] };
        let mut pending = Vec::new();
        for (group, np) in [(false, nprobe), (true, nlist)] {
            let which: Vec<usize> = (0..q.len).filter(|&i| exhaustive[i] == group).collect();
            pending.extend(self.run_group(&q, &plans, &which, np, k0, k, &mode, &mut result)?);
        }
        // Adaptive widening for queries whose probed lists held fewer than K0 passing items.
        let mut np = nprobe;
        while !pending.is_empty() && np < nlist {
            np = (np * 4).min(nlist);
            pending = self.run_group(&q, &plans, &pending, np, k0, k, &mode, &mut result)?;
        }
        let ix = &self.index;
        Ok((0..q.len)
            .map(|i| {
                let (rows, scores): (Vec<u32>, Vec<f32>) = result.query(i).unzip();
                SearchResponse {
                    rows: rows.iter().map(|&r| ix.source_rows[r as usize]).collect(),
                    ids: rows.iter().map(|&r| ix.ids[r as usize].clone()).collect(),
                    scores,
                }
            })
            .collect())
    }
}

/// Validate `[B, D]` queries against `index` and quantize them (cosine: normalize first).
pub fn prepare_queries(index: &Index, queries: &[f32]) -> Result<QueryBatch> {
    let d = index.dim;
    if !queries.len().is_multiple_of(d) {
        return Err(Error::Dimension { what: "queries".into(), expected: d, got: queries.len() % d });
    }
    let b = queries.len() / d;
    // Finite values and a finite norm: every score is then finite (model::finite).
    crate::model::finite::check_rows(queries, d, false, "queries")?;
    let mut f = queries.to_vec();
    if index.metric == Metric::Cosine {
        for row in f.chunks_mut(d) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|x| *x /= n);
            }
        }
    }
    let mut codes = vec![0i8; f.len()];
    let scale = f.chunks(d).zip(codes.chunks_mut(d)).map(|(x, c)| quantize_row(x, c)).collect();
    Ok(QueryBatch { len: b, dim: d, f32: f, codes, scale })
}

impl QueryBatch {
    /// The sub-batch of queries `which`.
    pub fn gather(&self, which: &[usize]) -> QueryBatch {
        let d = self.dim;
        QueryBatch {
            len: which.len(),
            dim: d,
            f32: which.iter().flat_map(|&i| self.f32[i * d..(i + 1) * d].iter().copied()).collect(),
            codes: which.iter().flat_map(|&i| self.codes[i * d..(i + 1) * d].iter().copied()).collect(),
            scale: which.iter().map(|&i| self.scale[i]).collect(),
        }
    }
}

impl crate::backend::Candidates {
    /// Overwrite query `q`'s entries with query `from_q` of `other` (same k).
    pub fn replace_query(&mut self, q: usize, other: &crate::backend::Candidates, from_q: usize) {
        let k = self.k;
        self.rows[q * k..(q + 1) * k].copy_from_slice(&other.rows[from_q * k..(from_q + 1) * k]);
        self.scores[q * k..(q + 1) * k].copy_from_slice(&other.scores[from_q * k..(from_q + 1) * k]);
        self.counts[q] = other.counts[from_q];
    }
}

/// Open an executor for a backend by name (`cpu`, `wgpu`, `cuda`).
pub fn open(backend: &str, index: Arc<Index>) -> Result<Box<dyn Search>> {
    match backend {
        "cpu" => Ok(Box::new(Executor::new(crate::backend::cpu::Cpu, index)?)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Box::new(Executor::new(crate::backend::wgpu::Wgpu::new(Default::default())?, index)?)),
        "auto" => open(crate::device::Device::auto().name(), index),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Box::new(Executor::new(crate::backend::cuda::Cuda::new()?, index)?)),
        other => Err(Error::backend(other, "this backend is not available in this build; use --backend cpu")),
    }
}
