//! The wgpu backend: every pipeline stage in WGSL (`shaders/*.wgsl`), on any Vulkan, Metal
//! or DX12 adapter, bit-identical to the CPU backend for stages 1-3.
//!
//! * `gpu`: adapter choice, pooled buffers (reused across searches), uploads, readback.
//! * `kernels`: shader composition, pipelines (compiled once), the dispatch recorder.
//! * `params`: each shader's uniform `Params` block as a Rust struct.
//! * `resident`: the index on the device, in row chunks that fit the adapter's bindings.
//! * `plan`: filter programs as a u32 blob.
//! * `topk`: exact top-K (radix select + bitonic sort, no subgroup operations).
//!
//! Each stage records its dispatches into one command buffer; nothing waits for the GPU
//! until a `read_*` (the executor reads the scan counts and the final candidates).

mod gpu;
mod kernels;
mod params;
mod plan;
mod resident;
mod topk;

pub use gpu::{AdapterSummary, WgpuOptions, adapters};
pub use resident::Resident;

use gpu::{Buf, Gpu, f32s, u32s};
use kernels::{Kernel, Rec, groups_for};
use silica_core::backend::{Backend, Candidates, Mask, Probes, QueryBatch, Rerank};
use silica_core::error::{Error, Result};
use silica_core::filter::Plan;
use silica_core::model::Index;
use std::sync::Arc;

/// The wgpu backend (cheap to clone: the device is shared).
#[derive(Clone)]
pub struct Wgpu {
    gpu: Arc<Gpu>,
}

/// Stage 1 output on the device: `[B, nprobe]` list ids.
pub struct WProbes {
    lists: Arc<Buf>,
    b: usize,
    nprobe: usize,
}

/// Stage 2 output on the device: per query a region of `mstride` u32 mask words; pair
/// p's words start at `pairs[2p]`, its scan entries at `pairs[2p+1]`; `ent_len[q]` =
/// rows of the lists query q probes.
pub struct WMask {
    words: Buf,
    pairs: Buf,
    ent_len: Buf,
    lists: Arc<Buf>,
    index: Arc<Index>,
    b: usize,
    nprobe: usize,
    mstride: u64,
    estride: u64,
}

/// Stage 3-5 output on the device: `[B, k]` rows and scores, `[B]` counts.
pub struct WCands {
    rows: Buf,
    scores: Buf,
    counts: Buf,
    b: usize,
    k: usize,
}

impl Wgpu {
    /// Open the best wgpu adapter (see `silica_registry::device`).
    pub fn new(opts: WgpuOptions) -> Result<Wgpu> {
        Ok(Wgpu { gpu: Arc::new(Gpu::new(&opts)?) })
    }

    /// The adapter in use, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)".
    pub fn adapter(&self) -> String {
        format!("{} ({:?})", self.gpu.info.name, self.gpu.info.backend)
    }

    /// True when the kernels use `dot4I8Packed`.
    pub fn packed_dot(&self) -> bool {
        self.gpu.packed_dot
    }

    /// Largest storage binding used, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.gpu.max_binding
    }

    /// Row chunks an uploaded index was split into.
    pub fn chunks(ix: &Resident) -> usize {
        ix.chunks.len()
    }

    fn upload_codes(&self, q: &QueryBatch, d16: usize) -> Result<Buf> {
        let mut v = vec![0u8; q.len * d16 * 16];
        for b in 0..q.len {
            for (i, &c) in q.codes[b * q.dim..(b + 1) * q.dim].iter().enumerate() {
                v[b * d16 * 16 + i] = c as u8;
            }
        }
        self.gpu.upload(&v)
    }

    /// Queries per group so that `per_query` bytes of scratch each fit one binding.
    fn group(&self, b: usize, per_query: &[u64]) -> Result<usize> {
        let worst = per_query.iter().copied().max().unwrap_or(0).max(1);
        let g = (self.gpu.max_binding / worst) as usize;
        if g == 0 {
            return Err(Error::backend(
                "wgpu",
                format!(
                    "one query needs {worst} bytes of scratch, more than one binding ({} bytes); lower nprobe or k",
                    self.gpu.max_binding
                ),
            ));
        }
        Ok(g.min(b).min(65535).min(self.gpu.group_queries.unwrap_or(usize::MAX)).max(1))
    }

    fn out_cands(&self, b: usize, k: usize) -> Result<WCands> {
        Ok(WCands {
            rows: self.gpu.storage((b * k * 4) as u64)?,
            scores: self.gpu.storage((b * k * 4) as u64)?,
            counts: self.gpu.storage((b * 4) as u64)?,
            b,
            k,
        })
    }
}

fn check_queries(ix: &Resident, q: &QueryBatch) -> Result<()> {
    if q.dim != ix.index.dim {
        return Err(Error::Dimension { what: "queries".into(), expected: ix.index.dim, got: q.dim });
    }
    if q.len > 65535 {
        return Err(Error::param("queries", format!("{} queries in one batch; the wgpu backend takes at most 65535", q.len)));
    }
    Ok(())
}

impl Backend for Wgpu {
    type Resident = Resident;
    type Probes = WProbes;
    type Mask = WMask;
    type Cands = WCands;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn resident_index<'a>(&self, ix: &'a Resident) -> &'a Arc<Index> {
        &ix.index
    }

    fn upload(&self, index: &Arc<Index>) -> Result<Resident> {
        Resident::upload(&self.gpu, index)
    }

    fn update(&self, old: &Resident, index: &Arc<Index>, changed: &silica_core::backend::Changed) -> Result<Resident> {
        Resident::update(&self.gpu, old, index, changed)
    }

    fn probe(&self, ix: &Resident, q: &QueryBatch, nprobe: usize) -> Result<WProbes> {
        check_queries(ix, q)?;
        let (b, l) = (q.len, ix.nlist as usize);
        if nprobe > l {
            return Err(Error::param("nprobe", format!("{nprobe} > nlist {l}")));
        }
        let lists = Arc::new(self.gpu.storage((b * nprobe * 4) as u64)?);
        if b == 0 || nprobe == 0 {
            return Ok(WProbes { lists, b, nprobe });
        }
        let qcodes = self.upload_codes(q, ix.d16 as usize)?;
        let gsz = self.group(b, &[l as u64 * 8, nprobe.next_power_of_two() as u64 * 8])?;
        let mut rec = Rec::new(&self.gpu);
        let (qv, cc, cs, lv) = (qcodes.view(), ix.centroids.view(), ix.cscale.view(), lists.view());
        // l2: centroid biases and query scales (stand-ins, unread, otherwise).
        let qs = self.gpu.upload(bytemuck::cast_slice(&q.scale))?;
        let (cb, qsv) = (ix.cbias.as_ref().map_or_else(|| cs.clone(), |b| b.view()), qs.view());
        let l2 = ix.cbias.is_some() as u32;
        let entries = rec.temp((gsz * l * 8) as u64)?;
        let dummy = rec.temp((b * 4) as u64)?;
        for q0 in (0..b).step_by(gsz) {
            let nq = gsz.min(b - q0) as u32;
            rec.dispatch(
                Kernel::ProbeScores,
                &params::Probe { nq, nlist: l as u32, d16: ix.d16, q0: q0 as u32, l2, _p0: 0, _p1: 0, _p2: 0 },
                &[(1, &qv), (2, &cc), (3, &cs), (4, &entries), (5, &cb), (6, &qsv)],
                [groups_for(l as u64, 256), nq, 1],
            );
            topk::record(
                &mut rec,
                &entries,
                l as u32,
                nq,
                l as u32,
                l as u32,
                nprobe as u32,
                topk::Out { rows: &lv, scores: &dummy, counts: &dummy, q0: q0 as u32, write_scores: false },
            )?;
        }
        rec.submit()?;
        Ok(WProbes { lists, b, nprobe })
    }

    fn filter(&self, ix: &Resident, plans: &[&Plan], probes: &WProbes) -> Result<WMask> {
        let (b, np) = (probes.b, probes.nprobe);
        if plans.len() != b {
            return Err(Error::param("filters", format!("{} plans for {b} queries", plans.len())));
        }
        let mstride = ix.mask_bound(np);
        let estride = ix.entry_bound(np);
        if b as u64 * mstride * 4 > self.gpu.max_binding {
            return Err(Error::backend(
                "wgpu",
                format!("the candidate mask of {b} queries x {np} lists exceeds one binding; use smaller batches"),
            ));
        }
        let words = self.gpu.storage(b as u64 * mstride * 4)?;
        let pairs = self.gpu.storage((b * np * 8) as u64)?;
        let ent_len = self.gpu.storage((b * 4) as u64)?;
        let mask = WMask { words, pairs, ent_len, lists: probes.lists.clone(), index: ix.index.clone(), b, nprobe: np, mstride, estride };
        if b == 0 {
            return Ok(mask);
        }
        let blob = self.gpu.upload(bytemuck::cast_slice(&plan::encode(plans, &ix.index.bloom.params, ix.index.len())?))?;
        let mut rec = Rec::new(&self.gpu);
        let (lv, lo, bv, pv, ev, wv) =
            (mask.lists.view(), ix.loff.view(), blob.view(), mask.pairs.view(), mask.ent_len.view(), mask.words.view());
        let hashes = ix.index.bloom.params.hashes;
        let fp = params::Filter { nq: b as u32, nprobe: np as u32, mstride: mstride as u32, hashes, cw_lo: 0, cw_n: 0, n: ix.n, _pad: 0 };
        rec.dispatch(Kernel::FilterPairs, &fp, &[(1, &lv), (2, &lo), (4, &pv), (5, &ev)], [b as u32, 1, 1]);
        if np > 0 {
            for c in &ix.chunks {
                rec.dispatch(
                    Kernel::FilterWords,
                    &params::Filter { cw_lo: c.cw_lo, cw_n: c.cw_n, ..fp },
                    &[(1, &lv), (2, &lo), (3, &bv), (4, &pv), (6, &c.planes.view()), (7, &c.live.view()), (8, &wv)],
                    [groups_for(ix.max_span as u64 / 2, 64), np as u32, b as u32],
                );
            }
        }
        rec.submit()?;
        Ok(mask)
    }

    fn count(&self, ix: &Resident, plans: &[&Plan]) -> Result<Vec<u64>> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        if ix.index.live.is_none() && plans.iter().all(|p| p.is_all()) {
            return Ok(vec![ix.n as u64; plans.len()]);
        }
        if plans.len() > 65535 {
            return Err(Error::param("filters", "at most 65535 plans per count"));
        }
        let blob = self.gpu.upload(bytemuck::cast_slice(&plan::encode(plans, &ix.index.bloom.params, ix.index.len())?))?;
        let counts = self.gpu.storage((plans.len() * 4) as u64)?;
        let cv = counts.view();
        let mut rec = Rec::new(&self.gpu);
        rec.clear(&cv);
        for c in &ix.chunks {
            rec.dispatch(
                Kernel::FilterCount,
                &params::Filter {
                    nq: plans.len() as u32,
                    nprobe: 0,
                    mstride: 0,
                    hashes: ix.index.bloom.params.hashes,
                    cw_lo: c.cw_lo,
                    cw_n: c.cw_n,
                    n: ix.n,
                    _pad: 0,
                },
                &[(3, &blob.view()), (6, &c.planes.view()), (7, &c.live.view()), (9, &cv)],
                [groups_for(c.cw_n as u64 / 2, 256).min(1024), plans.len() as u32, 1],
            );
        }
        rec.submit()?;
        let got = self.gpu.read(&[(&cv, 0, (plans.len() * 4) as u64)])?;
        Ok(u32s(&got[0]).into_iter().map(u64::from).collect())
    }

    fn scan(&self, ix: &Resident, q: &QueryBatch, probes: &WProbes, mask: &WMask, plans: &[&Plan], k0: usize) -> Result<WCands> {
        check_queries(ix, q)?;
        let (b, np) = (q.len, probes.nprobe);
        if probes.b != b || mask.b != b || plans.len() != b || mask.nprobe != np {
            return Err(Error::param(
                "scan",
                format!("batch of {b} queries but {} probes, {} masks, {} plans", probes.b, mask.b, plans.len()),
            ));
        }
        if (b * k0 * 4) as u64 > self.gpu.max_binding {
            return Err(Error::backend("wgpu", format!("{b} x k0={k0} candidates exceed one binding; use smaller batches")));
        }
        let out = self.out_cands(b, k0)?;
        if b == 0 {
            return Ok(out);
        }
        let mut rec = Rec::new(&self.gpu);
        let (rv, sv, cv) = (out.rows.view(), out.scores.view(), out.counts.view());
        if k0 == 0 {
            rec.clear(&cv);
            rec.submit()?;
            return Ok(out);
        }
        let estride = mask.estride.max(1);
        let kp = k0.next_power_of_two() as u64;
        let gsz = self.group(b, &[estride * 4, kp * 8])?;
        let qcodes = self.upload_codes(q, ix.d16 as usize)?;
        let blob = self.gpu.upload(bytemuck::cast_slice(&plan::encode(plans, &ix.index.bloom.params, ix.index.len())?))?;
        let (qv, lv, lo, pv, mv, bv, ev) =
            (qcodes.view(), probes.lists.view(), ix.loff.view(), mask.pairs.view(), mask.words.view(), blob.view(), mask.ent_len.view());
        let (l, npairs, d16) = (ix.nlist, (b * np) as u32, ix.d16);
        let keys = rec.temp(gsz as u64 * estride * 4)?;
        let lcount = rec.temp(l as u64 * 4)?;
        let lstart = rec.temp(l as u64 * 4)?;
        let plist = rec.temp(npairs as u64 * 4)?;
        let active = rec.temp(l as u64 * 4)?;
        let args = rec.temp(16)?;
        let l2 = (ix.index.metric == silica_core::Metric::L2) as u32;
        let qs = self.gpu.upload(bytemuck::cast_slice(&q.scale))?;
        let qsv = qs.view();
        let scan_params = |nq: u32, q0: u32, row_lo: u32, row_hi: u32| params::Scan {
            nq,
            nprobe: np as u32,
            q0,
            stride: estride as u32,
            mstride: mask.mstride as u32,
            row_lo,
            row_hi,
            npairs,
            nlist: l,
            k: k0 as u32,
            kp: kp as u32,
            l2,
            row_blocks: 0,
            _p0: 0,
            _p1: 0,
            _p2: 0,
        };
        // Group the probed pairs by list.
        if np > 0 {
            let p = scan_params(0, 0, 0, 0);
            rec.clear(&lcount);
            rec.dispatch_scan(Kernel::ScanInvertCount, d16, &p, &[(2, &lv), (12, &lcount)], [groups_for(npairs as u64, 256), 1, 1])?;
            rec.dispatch_scan(Kernel::ScanInvertScan, d16, &p, &[(12, &lcount), (13, &lstart)], [1, 1, 1])?;
            rec.dispatch_scan(
                Kernel::ScanInvertFill,
                d16,
                &p,
                &[(2, &lv), (12, &lcount), (13, &lstart), (14, &plist)],
                [groups_for(npairs as u64, 256), 1, 1],
            )?;
        }
        for q0 in (0..b).step_by(gsz) {
            let nq = gsz.min(b - q0) as u32;
            let sel = topk::Sel::new(&mut rec, nq, k0 as u32)?;
            sel.clear(&mut rec);
            if np > 0 {
                for c in &ix.chunks {
                    // Launch workgroups only for the probed lists with rows in this chunk.
                    let cp = params::Scan { row_blocks: groups_for(ix.max_list as u64, 256), ..scan_params(nq, q0 as u32, c.lo, c.hi) };
                    rec.dispatch_scan(Kernel::ScanActiveInit, d16, &cp, &[(21, &args)], [1, 1, 1])?;
                    rec.dispatch_scan(
                        Kernel::ScanActive,
                        d16,
                        &cp,
                        &[(3, &lo), (12, &lcount), (20, &active), (21, &args)],
                        [groups_for(l as u64, 256), 1, 1],
                    )?;
                    rec.dispatch_scan_with(
                        Kernel::ScanScore,
                        d16,
                        &cp,
                        &[
                            (1, &qv),
                            (3, &lo),
                            (4, &pv),
                            (5, &mv),
                            (6, &bv),
                            (7, &c.codes.view()),
                            (8, &c.scale.view()),
                            (9, &c.aoff.view()),
                            (10, &c.avals.view()),
                            (11, &keys),
                            (12, &lcount),
                            (13, &lstart),
                            (14, &plist),
                            (20, &active),
                            (22, &c.bias.as_ref().map_or_else(|| c.scale.view(), |b| b.view())),
                            (23, &qsv),
                        ],
                        kernels::Groups::Indirect(args.clone()),
                    )?;
                }
                let p = scan_params(nq, q0 as u32, 0, 0);
                // Each thread walks at least ~16 entries (runs of equal digits add at once).
                let blocks = groups_for(estride, 256 * 16);
                for _ in 0..topk::PASSES {
                    rec.dispatch_scan(
                        Kernel::ScanHist,
                        d16,
                        &p,
                        &[(2, &lv), (3, &lo), (4, &pv), (11, &keys), (15, &ev), (16, &sel.state), (17, &sel.hist)],
                        [blocks, 1, nq],
                    )?;
                    sel.pick(&mut rec);
                }
                rec.dispatch_scan(
                    Kernel::ScanEmit,
                    d16,
                    &p,
                    &[(2, &lv), (3, &lo), (4, &pv), (11, &keys), (15, &ev), (16, &sel.state), (18, &sel.counter), (19, &sel.slots)],
                    [blocks, 1, nq],
                )?;
            }
            sel.finish(&mut rec, topk::Out { rows: &rv, scores: &sv, counts: &cv, q0: q0 as u32, write_scores: true });
        }
        rec.submit()?;
        Ok(out)
    }

    fn rerank(&self, ix: &Resident, q: &QueryBatch, c: WCands, mode: &Rerank) -> Result<WCands> {
        check_queries(ix, q)?;
        if q.len != c.b {
            return Err(Error::param("rerank", format!("{} queries for {} candidate lists", q.len, c.b)));
        }
        let (b, k) = (c.b, c.k);
        if b * k == 0 {
            return Ok(c);
        }
        let d = ix.index.dim;
        let (rv, sv, cv) = (c.rows.view(), c.scores.view(), c.counts.view());
        let mut rec = Rec::new(&self.gpu);
        let l2 = ix.index.metric == silica_core::Metric::L2;
        // Model fields and the row chunk are zero unless the mode sets them.
        let base = params::Rerank {
            nq: b as u32,
            k: k as u32,
            d: d as u32,
            d2: d.div_ceil(2) as u32,
            f: 0,
            row_lo: 0,
            row_hi: 0,
            nlayers: 0,
            tasks: 0,
            in_dim: 0,
            wmax: 0,
            sstride: 0,
            tw_off: 0,
            has_feats: 0,
            l2: l2 as u32,
            _pad1: 0,
        };
        let groups = [groups_for((b * k) as u64, 256), 1, 1];
        match mode {
            Rerank::None => {
                // l2: ‖q‖² per query in place of the scales (score * 2 - ‖q‖²).
                let per_query: Vec<f32> =
                    if l2 { q.f32.chunks(d).map(silica_core::model::metric::query_sqnorm).collect() } else { q.scale.clone() };
                let qs = self.gpu.upload(bytemuck::cast_slice(&per_query))?;
                rec.dispatch(Kernel::RerankScale, &base, &[(1, &qs.view()), (4, &sv), (5, &cv)], groups);
                rec.submit()?;
            }
            Rerank::Refine => {
                if ix.index.embeddings.is_none() {
                    return Err(Error::param("rerank", "refine needs items.embeddings; rebuild the index with embeddings"));
                }
                let qf = self.gpu.upload(bytemuck::cast_slice(&q.f32))?;
                for ch in &ix.chunks {
                    let p = params::Rerank { row_lo: ch.lo, row_hi: ch.hi, ..base };
                    let emb = ch.emb.as_ref().expect("embeddings uploaded").view();
                    rec.dispatch(Kernel::RerankRefine, &p, &[(2, &qf.view()), (3, &rv), (4, &sv), (5, &cv), (6, &emb)], groups);
                }
                rec.submit()?;
            }
            Rerank::Model { model, weights } => {
                if ix.index.embeddings.is_none() {
                    return Err(Error::param("rerank", "model rerank needs items.embeddings"));
                }
                let f = ix.index.feature_names.len();
                let in_dim = 2 * d + f;
                if model.input_dim() != in_dim {
                    return Err(Error::param("rerank", format!("model input is {} but 2*D+F = {in_dim}", model.input_dim())));
                }
                if weights.len() != model.tasks() {
                    return Err(Error::param("task_weights", format!("need {} task weights, got {}", model.tasks(), weights.len())));
                }
                // Weights blob: each layer's W then b, the heads, the task weights.
                let mut wblob: Vec<f32> = Vec::new();
                let mut meta: Vec<u32> = Vec::new();
                for layer in model.layers.iter().chain(std::iter::once(&model.heads)) {
                    meta.extend_from_slice(&[
                        layer.inputs as u32,
                        layer.outputs as u32,
                        wblob.len() as u32,
                        (wblob.len() + layer.weight.len()) as u32,
                    ]);
                    wblob.extend_from_slice(&layer.weight);
                    wblob.extend_from_slice(&layer.bias);
                }
                let tw_off = wblob.len() as u32;
                wblob.extend_from_slice(weights);
                let wmax = model.layers.iter().map(|l| l.outputs).max().unwrap_or(0);
                let sstride = in_dim + 2 * wmax;
                let scratch_bytes = (b * k * sstride * 4) as u64;
                let scratch = rec.temp(scratch_bytes)?;
                let wbuf = self.gpu.upload(bytemuck::cast_slice(&wblob))?;
                let mbuf = self.gpu.upload(bytemuck::cast_slice(&meta))?;
                let qf = self.gpu.upload(bytemuck::cast_slice(&q.f32))?;
                let no_feats = rec.temp(16)?;
                let mp = params::Rerank {
                    f: f as u32,
                    nlayers: model.layers.len() as u32,
                    tasks: model.tasks() as u32,
                    in_dim: in_dim as u32,
                    wmax: wmax as u32,
                    sstride: sstride as u32,
                    tw_off,
                    ..base
                };
                let mgroups = [groups_for((b * k) as u64, 64), 1, 1];
                for ch in &ix.chunks {
                    let p = params::Rerank { row_lo: ch.lo, row_hi: ch.hi, has_feats: ch.feats.is_some() as u32, ..mp };
                    let emb = ch.emb.as_ref().expect("embeddings uploaded").view();
                    let feats = ch.feats.as_ref().map_or(no_feats.clone(), |x| x.view());
                    rec.dispatch(
                        Kernel::RerankModel,
                        &p,
                        &[
                            (2, &qf.view()),
                            (3, &rv),
                            (4, &sv),
                            (5, &cv),
                            (6, &emb),
                            (7, &feats),
                            (8, &wbuf.view()),
                            (9, &mbuf.view()),
                            (10, &scratch),
                        ],
                        mgroups,
                    );
                }
                rec.submit()?;
            }
        }
        Ok(c)
    }

    fn select(&self, c: WCands, k: usize) -> Result<WCands> {
        let (b, k0) = (c.b, c.k);
        if (b * k * 4) as u64 > self.gpu.max_binding {
            return Err(Error::backend("wgpu", format!("{b} x k={k} results exceed one binding; use smaller batches")));
        }
        let out = self.out_cands(b, k)?;
        if b == 0 {
            return Ok(out);
        }
        let mut rec = Rec::new(&self.gpu);
        let (rv, sv, cv) = (out.rows.view(), out.scores.view(), out.counts.view());
        if k == 0 {
            rec.clear(&cv);
            rec.submit()?;
            return Ok(out);
        }
        let gsz = self.group(b, &[k0 as u64 * 8, k.next_power_of_two() as u64 * 8])?;
        let entries = rec.temp((gsz * k0.max(1) * 8) as u64)?;
        let (irv, isv, icv) = (c.rows.view(), c.scores.view(), c.counts.view());
        for q0 in (0..b).step_by(gsz) {
            let nq = gsz.min(b - q0) as u32;
            rec.dispatch(
                Kernel::SelectGather,
                &params::Select { nq, k: k0 as u32, q0: q0 as u32, _pad1: 0 },
                &[(1, &irv), (2, &isv), (3, &icv), (4, &entries)],
                [groups_for(nq as u64 * k0 as u64, 256), 1, 1],
            );
            topk::record(
                &mut rec,
                &entries,
                k0 as u32,
                nq,
                k0 as u32,
                k0 as u32,
                k as u32,
                topk::Out { rows: &rv, scores: &sv, counts: &cv, q0: q0 as u32, write_scores: true },
            )?;
        }
        rec.submit()?;
        Ok(out)
    }

    fn synchronize(&self) -> Result<()> {
        self.gpu.wait()
    }

    /// Device time from timestamp queries written at the start of the first compute pass
    /// and the end of the last pass that `f` submits (adapter feature `TIMESTAMP_QUERY`).
    fn timed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        self.gpu.timed(f)
    }

    fn upload_probes(&self, ix: &Resident, p: &Probes) -> Result<WProbes> {
        let b = p.lists.len() / p.nprobe.max(1);
        silica_core::backend::check_probes(p, b, ix.nlist as usize)?;
        let lists = Arc::new(self.gpu.upload(bytemuck::cast_slice(&p.lists))?);
        Ok(WProbes { lists, b, nprobe: p.nprobe })
    }

    fn read_probes(&self, p: &WProbes) -> Result<Probes> {
        let n = (p.b * p.nprobe * 4) as u64;
        let got = self.gpu.read(&[(&p.lists.view(), 0, n)])?;
        Ok(Probes { nprobe: p.nprobe, lists: u32s(&got[0]) })
    }

    fn read_mask(&self, m: &WMask) -> Result<Mask> {
        let np = m.nprobe;
        let got = self.gpu.read(&[(&m.lists.view(), 0, (m.b * np * 4) as u64), (&m.words.view(), 0, m.b as u64 * m.mstride * 4)])?;
        let lists = u32s(&got[0]);
        let words32 = u32s(&got[1]);
        let ix = &m.index;
        let mut offsets = vec![0usize];
        let mut words = Vec::new();
        for q in 0..m.b {
            let mut at = q * m.mstride as usize;
            for j in 0..np {
                let r = ix.list_range(lists[q * np + j] as usize);
                let (w0, w1) = silica_core::backend::cpu::word_span(&r);
                for _ in w0..w1 {
                    words.push(words32[at] as u64 | (words32[at + 1] as u64) << 32);
                    at += 2;
                }
                offsets.push(words.len());
            }
        }
        Ok(Mask { offsets, words })
    }

    fn upload_cands(&self, ix: &Resident, c: &Candidates) -> Result<WCands> {
        silica_core::backend::check_cands(c, self.resident_index(ix).len())?;
        let up = |v: &[u32]| self.gpu.upload(bytemuck::cast_slice(v));
        let scores: Vec<u32> = c.scores.iter().map(|s| s.to_bits()).collect();
        Ok(WCands { rows: up(&c.rows)?, scores: up(&scores)?, counts: up(&c.counts)?, b: c.counts.len(), k: c.k })
    }

    fn read_cands(&self, c: &WCands) -> Result<Candidates> {
        let n = (c.b * c.k * 4) as u64;
        let got = self.gpu.read(&[(&c.rows.view(), 0, n), (&c.scores.view(), 0, n), (&c.counts.view(), 0, (c.b * 4) as u64)])?;
        Ok(Candidates { k: c.k, rows: u32s(&got[0]), scores: f32s(&got[1]), counts: u32s(&got[2]) })
    }

    fn read_counts(&self, c: &WCands) -> Result<Vec<u32>> {
        let got = self.gpu.read(&[(&c.counts.view(), 0, (c.b * 4) as u64)])?;
        Ok(u32s(&got[0]))
    }
}
