//! The CUDA backend (the fast path): cudarc 0.19 with the driver and NVRTC loaded at run
//! time, so the crate builds and runs on machines with no CUDA; [`available`] says
//! whether a GPU can be used. Kernels live in `cuda/*.cu`, one file per stage, compiled
//! by NVRTC for the device's compute capability on first use and cached per process.
//!
//! Stages 1-3 are bit-identical to [`silica_core::backend::cpu::Cpu`]: scores are
//! `(i32 dot) as f32 * scale` with one IEEE multiply (`__fmul_rn`), every top-k orders
//! by the 64-bit key `(total-order(score) << 32) | !row` (score desc, then row asc).
//!
//! A handle runs on one stream; [`Backend::lane`] gives another handle with its own stream
//! and scratch workspace over the same context and kernels, which the executor uses for
//! each search in flight at once (`silica serve --workers N`): their kernels and copies
//! overlap, and a read-back waits only for its own lane. Stage outputs stay on the device
//! until a `read_*`, which is the only host synchronization of a search (it waits on an
//! event recorded behind its copy; plus [`Backend::count`], whose result is host data by
//! definition). Resident tensors are read-only to searches and complete before `upload`
//! returns, so every lane reads them without further ordering. Scratch buffers of the
//! scan are kept between calls (per lane, under its workspace lock) and only grow.
//!
//! The device interface is typed: every kernel is a `KernelId` (kernels.rs: one table of
//! entry names and stage files), every launch passes that kernel's argument struct
//! (args.rs, whose layouts the tests check against the kernels under NVRTC), and the
//! scan's choices (which `scan_kernel<Pipe, SAMPLE>` instantiation, grids, shared memory,
//! buffer sizes) are a `ScanPlan` (scan_plan.rs) computed on the host before any launch.

mod args;
mod build;
mod device;
mod devio;
mod kernels;
mod nvrtc;
mod plans;
mod resident;
mod scan_plan;
mod search_device;
mod tuning;

pub use build::CudaCompute;
pub use device::{DBuf, Dev};
pub use devio::{DType, DeviceQueries, DeviceResults};
pub use resident::Resident;
pub use search_device::SearchDevice;
#[cfg(feature = "testing")]
pub use tuning::Tuning;
#[cfg(not(feature = "testing"))]
use tuning::Tuning;

use args::*;
use device::{Launch, ptr_or_null};
use kernels::KernelId as K;
use scan_plan::{ScanDevice, ScanPlan, ScanShape};
use silica_core::backend::{Backend, Candidates, Mask, Probes, QueryBatch, Rerank};
use silica_core::error::{Error, Result};
use silica_core::filter::Plan;
use silica_core::model::Index;
use std::sync::{Arc, Mutex};

/// Keys sorted by one block in shared memory (cuda/common.cuh SORT_CAP).
const SORT_CAP: usize = 4096;
/// Most candidate keys `scan_select` stages in shared memory (128 KiB).
const MAX_SMEM_KEYS: u32 = 16384;
/// Chunk of the global bitonic sort done in shared memory (128 KiB).
const LOCAL_SORT_KEYS: u32 = 16384;
/// Lists up to which `group_all` works in shared memory (24 bytes per list).
const GROUP_SMEM_LISTS: u32 = 8192;
/// Samples `scan_threshold` stages in shared memory (64 KiB).
const THRESHOLD_SMEM_SAMPLES: u32 = 16384;

/// True when libcuda loads and reports at least one device. Never panics.
pub fn available() -> bool {
    std::panic::catch_unwind(|| {
        // SAFETY: only tries to dlopen libcuda.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return false;
        }
        cudarc::driver::result::init().is_ok() && cudarc::driver::result::device::get_count().map(|n| n > 0).unwrap_or(false)
    })
    .unwrap_or(false)
}

/// Every CUDA device the driver reports: ordinal, name, total memory (`silica devices`).
/// Empty when libcuda does not load or reports no device. Never panics.
pub fn devices() -> Vec<silica_core::backend::GpuInfo> {
    use cudarc::driver::result::{self, device};
    std::panic::catch_unwind(|| {
        // SAFETY: only tries to dlopen libcuda.
        if !unsafe { cudarc::driver::sys::is_culib_present() } || result::init().is_err() {
            return Vec::new();
        }
        let n = device::get_count().unwrap_or(0).max(0);
        (0..n)
            .filter_map(|i| {
                let d = device::get(i).ok()?;
                let name = device::get_name(d).ok()?;
                // SAFETY: `d` is a device handle the driver just returned.
                let memory = unsafe { device::total_mem(d) }.ok()? as u64;
                Some(silica_core::backend::GpuInfo { ordinal: i as usize, name, memory })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Stage 1 output on the device: `[B, nprobe]` list ids.
pub struct DevProbes {
    pub b: usize,
    pub nprobe: usize,
    pub lists: Arc<DBuf<u32>>,
}

/// Stage 2 output on the device (layout of [`Mask`]): `offsets [B*nprobe + 1]` (u32) and
/// words. When no query filters and every row is live, the mask is implicit (`words` and
/// `offsets` are `None`): each probed list's words are exactly its row range, which the
/// scan kernels compute themselves, so stage 2 does no device work; `read_mask`
/// materializes it on the host from the probed lists.
pub struct DevMask {
    pub b: usize,
    pub nprobe: usize,
    pub offsets: Option<DBuf<u32>>,
    pub words: Option<DBuf<u64>>,
    pub lists: Arc<DBuf<u32>>,
    /// The index (list row ranges) for materializing an implicit mask.
    index: Arc<Index>,
}

impl DevMask {
    fn words_ptr(&self) -> u64 {
        self.words.as_ref().map_or(0, |w| w.ptr())
    }
    fn offsets_ptr(&self) -> u64 {
        self.offsets.as_ref().map_or(0, |o| o.ptr())
    }
}

/// Stage 3/4/5 output on the device, one allocation: `[B, k]` rows (u32), `[B, k]`
/// scores (f32), `[B]` counts (u32), at the addresses of `rows`, `scores`, `counts`.
pub struct DevCands {
    pub b: usize,
    pub k: usize,
    buf: DBuf<u32>,
    pub rows: Part,
    pub scores: Part,
    pub counts: Part,
}

/// A region of a device allocation (its address).
#[derive(Clone, Copy, Debug)]
pub struct Part(u64);

impl Part {
    pub fn ptr(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct Workspace {
    inputs: Option<DBuf<u8>>,
    zeroed: Option<DBuf<u32>>,
    buckets: Option<DBuf<u32>>,
    starts: Option<DBuf<u32>>,
    list_pairs: Option<DBuf<u32>>,
    samp: Option<DBuf<u32>>,
    tkey: Option<DBuf<u32>>,
    cand: Option<DBuf<u64>>,
    sortbuf: Option<DBuf<u64>>,
    /// Candidate route: `[bloom B][exact B][seg B]` counters, compacted rows, keys.
    cand_counts: Option<DBuf<u32>>,
    cand_rows: Option<DBuf<u32>>,
    cand_keys: Option<DBuf<u64>>,
    /// Posting route: the per-plan segment tables.
    post_inputs: Option<DBuf<u8>>,
}

fn ensure<'a, T: cudarc::driver::DeviceRepr>(dev: &Dev, slot: &'a mut Option<DBuf<T>>, len: usize) -> Result<&'a DBuf<T>> {
    if slot.as_ref().is_none_or(|b| b.len() < len) {
        *slot = Some(dev.alloc::<T>(len)?);
    }
    Ok(slot.as_ref().expect("just set"))
}

struct DevModel {
    model: Arc<silica_core::rerank::RerankModel>,
    desc: DBuf<u32>,
    nl: u32,
    weights: DBuf<f32>,
    width: usize,
}

/// The CUDA backend on one GPU. Cheap to clone: clones share the context, kernels and
/// workspaces.
#[derive(Clone)]
pub struct Cuda(std::sync::Arc<CudaInner>);

impl std::ops::Deref for Cuda {
    type Target = CudaInner;
    fn deref(&self) -> &CudaInner {
        &self.0
    }
}

/// State behind a [`Cuda`] handle.
pub struct CudaInner {
    dev: Dev,
    ws: Mutex<Workspace>,
    model: Mutex<Option<DevModel>>,
    /// Shared by all lanes of one device.
    tuning: Arc<Mutex<Tuning>>,
    /// Phase events of the scan when profiling (benchmarks).
    marks: Mutex<Option<Vec<(&'static str, cudarc::driver::CudaEvent)>>>,
    /// Bytes of shared memory per warp of the fast scan kernels (`WarpSmem`).
    warp_smem: u32,
    /// Bytes of shared memory per warp of the streamed scan kernels (`StreamSmem`).
    stream_smem: u32,
}

impl ScanDevice for CudaInner {
    fn sms(&self) -> u32 {
        self.dev.sms
    }
    fn blocks_per_sm(&self, k: K, block: u32, smem: usize) -> u32 {
        self.dev.occupancy(k, block, smem)
    }
    fn cc_major(&self) -> i32 {
        self.dev.cc_major
    }
    fn warp_smem(&self) -> u32 {
        self.warp_smem
    }
    fn stream_smem(&self) -> u32 {
        self.stream_smem
    }
}

impl Cuda {
    /// The first GPU. Errors when none is available or the kernels fail to compile.
    pub fn new() -> Result<Cuda> {
        Self::with_ordinal(0)
    }

    /// GPU `ordinal`.
    pub fn with_ordinal(ordinal: usize) -> Result<Cuda> {
        let dev = Dev::new(ordinal)?;
        let probe = dev.alloc::<u32>(1)?;
        let one = Launch::new(1, 1, 0);
        dev.launch(K::WarpSmemSize, one, &SmemSize { out: probe.ptr() })?;
        let warp_smem = dev.download(&probe, 1)?[0];
        for k in [K::ScanSampleFast, K::ScanMainFast] {
            dev.set_dyn_smem(k, 8 * warp_smem)?;
        }
        dev.launch(K::StreamSmemSize, one, &SmemSize { out: probe.ptr() })?;
        let stream_smem = dev.download(&probe, 1)?[0];
        for k in [K::ScanSampleStream, K::ScanMainStream] {
            dev.set_dyn_smem(k, 8 * stream_smem)?;
        }
        dev.set_dyn_smem(K::ScanSelect, MAX_SMEM_KEYS * 8)?;
        dev.set_dyn_smem(K::GroupAll, (6 * GROUP_SMEM_LISTS + 3) * 4)?;
        dev.set_dyn_smem(K::ScanPrepare, (6 * GROUP_SMEM_LISTS + 3) * 4)?;
        dev.set_dyn_smem(K::BitonicLocal, LOCAL_SORT_KEYS * 8)?;
        dev.set_dyn_smem(K::ScanThreshold, THRESHOLD_SMEM_SAMPLES * 4)?;
        Ok(Cuda(std::sync::Arc::new(CudaInner {
            dev,
            ws: Mutex::default(),
            model: Mutex::default(),
            tuning: Arc::new(Mutex::new(Tuning::default())),
            marks: Mutex::default(),
            warp_smem,
            stream_smem,
        })))
    }

    /// Device plumbing (timing harnesses, kernel resource reports).
    pub fn dev(&self) -> &Dev {
        &self.dev
    }

    /// Change the scan tuning (tests and the peer harness; `testing` feature).
    #[cfg(feature = "testing")]
    pub fn set_tuning(&self, t: Tuning) {
        *self.tuning.lock().expect("tuning") = t;
    }

    /// Testing: drop the scan's kept scratch buffers, then fill `bytes` of pooled device
    /// memory with 0xA5 and release it, so the buffers allocated next start with garbage
    /// (stage outputs must be written in full).
    #[cfg(feature = "testing")]
    pub fn poison_pool(&self, bytes: usize) -> Result<()> {
        *self.ws.lock().expect("workspace") = Workspace::default();
        let b = self.dev.alloc::<u32>(bytes / 4)?;
        self.dev.fill_u32(b.ptr(), 0xA5A5_A5A5, bytes / 4)?;
        drop(b);
        self.dev.sync()
    }

    /// Start recording phase events inside `scan` (group, sample, threshold, main, select).
    pub fn profile_start(&self) {
        *self.marks.lock().expect("marks") = Some(Vec::new());
    }

    /// Stop recording; milliseconds of each recorded phase since the previous mark.
    pub fn profile_take(&self) -> Result<Vec<(&'static str, f32)>> {
        let marks = self.marks.lock().expect("marks").take().unwrap_or_default();
        let mut out = Vec::new();
        for w in marks.windows(2) {
            out.push((w[1].0, w[0].1.elapsed_ms(&w[1].1).map_err(device::drv)?));
        }
        Ok(out)
    }

    fn mark(&self, name: &'static str) -> Result<()> {
        if let Some(v) = self.marks.lock().expect("marks").as_mut() {
            let e = self.dev.stream.record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(device::drv)?;
            v.push((name, e));
        }
        Ok(())
    }

    /// Milliseconds of device time that `f`'s enqueued work takes (CUDA events).
    pub fn time<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, f32)> {
        use cudarc::driver::sys::CUevent_flags;
        let s = &self.dev.stream;
        let e0 = s.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(device::drv)?;
        let out = f()?;
        let e1 = s.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(device::drv)?;
        let ms = e0.elapsed_ms(&e1).map_err(device::drv)?;
        Ok((out, ms))
    }

    /// Streaming-read ceiling: milliseconds to read the resident item codes once
    /// (`(bytes, ms)`), the bound the scan's effective bandwidth is compared with.
    pub fn read_ceiling(&self, ix: &Resident) -> Result<(usize, f32)> {
        let n16 = ix.codes.len() / 16;
        let blocks = self.dev.sms * 8;
        let out = self.dev.alloc::<u32>(blocks as usize)?;
        let args = ReadBw { p: ix.codes.ptr(), n: n16 as u64, out: out.ptr() };
        let run = || self.dev.launch(K::ReadBw, Launch::new(blocks, 256, 0), &args);
        run()?;
        let mut t = Vec::new();
        for _ in 0..10 {
            t.push(self.time(run)?.1);
        }
        t.sort_by(|a, b| a.total_cmp(b));
        Ok((n16 * 16, t[t.len() / 2]))
    }

    /// Upload host probes (a benchmark's fixed probe sets).
    pub fn probes_from_host(&self, p: &Probes, b: usize) -> Result<DevProbes> {
        if p.lists.len() != b * p.nprobe {
            return Err(Error::param("probes", format!("{} lists for {b} queries x nprobe {}", p.lists.len(), p.nprobe)));
        }
        Ok(DevProbes { b, nprobe: p.nprobe, lists: Arc::new(self.dev.upload(&p.lists)?) })
    }

    /// Query codes padded to the device row width `[B, nc*16]`.
    fn upload_queries(&self, ix: &Resident, q: &QueryBatch) -> Result<DBuf<u8>> {
        if q.dim != ix.d || q.codes.len() != q.len * q.dim || q.scale.len() != q.len {
            return Err(Error::Dimension { what: "queries".into(), expected: ix.d, got: q.dim });
        }
        self.dev.upload(&resident::pad_rows(&q.codes, q.len, q.dim, ix.nc))
    }

    /// Query codes `[B, nc*16]`, plan offsets, plan words and query scales of a scan,
    /// copied with one H2D copy into the kept workspace buffer (no allocation per call).
    /// Returns their device addresses (codes, plan words, plan offsets, scales).
    /// A device batch ([`devio`]) stages only the plans; its queries stay where they are
    /// (the returned guard keeps them).
    fn stage_scan_inputs(
        &self,
        ws: &mut Workspace,
        ix: &Resident,
        q: &QueryBatch,
        plans: &[&Plan],
    ) -> Result<(u64, u64, u64, u64, Option<devio::QPtrs>)> {
        let dq = self.device_queries(ix, q)?;
        if q.dim != ix.d || (dq.is_none() && (q.codes.len() != q.len * q.dim || q.scale.len() != q.len)) {
            return Err(Error::Dimension { what: "queries".into(), expected: ix.d, got: q.dim });
        }
        let enc = self.encode_plans(ix, plans)?;
        let mut bytes = if dq.is_some() { Vec::new() } else { resident::pad_rows(&q.codes, q.len, q.dim, ix.nc) };
        let off_at = bytes.len();
        bytes.extend(enc.offsets.iter().flat_map(|o| o.to_le_bytes()));
        bytes.resize(bytes.len().next_multiple_of(16), 0);
        let words_at = bytes.len();
        bytes.extend(enc.words.iter().flat_map(|w| w.to_le_bytes()));
        bytes.resize(bytes.len().next_multiple_of(16), 0);
        let scale_at = bytes.len();
        if dq.is_none() {
            bytes.extend(q.scale.iter().flat_map(|s| s.to_le_bytes()));
        }
        let buf = ensure(&self.dev, &mut ws.inputs, bytes.len().next_power_of_two())?;
        self.dev.write(buf, &bytes)?;
        let base = buf.ptr();
        let (qc, qs) = dq.as_ref().map_or((base, base + scale_at as u64), |d| (d.codes, d.scale));
        Ok((qc, base + words_at as u64, base + off_at as u64, qs, dq))
    }

    /// `plans` encoded for the kernels and checked by the core's one validator against
    /// `ix` (Bloom planes and k, mask words); unbound typed column terms name `ix`'s device
    /// columns (uploaded on the first such plan).
    fn encode_plans(&self, ix: &Resident, plans: &[&Plan]) -> Result<plans::Encoded> {
        let unbound = plans.iter().any(|p| p.terms.iter().any(|t| t.typed.is_some() && t.mask.is_none()));
        let enc = if unbound {
            let cols = ix.columns(&self.dev)?;
            plans::encode_with(plans, &|name| cols.get(name))?
        } else {
            plans::encode(plans)?
        };
        let bloom = &ix.index.bloom.params;
        let lim = plans::Limits {
            planes: Some(bloom.bits),
            hashes: Some(bloom.hashes),
            mask_words: Some(ix.index.len().div_ceil(64)),
            col_terms: true,
        };
        enc.validate(&lim)?;
        Ok(enc)
    }

    fn upload_plans(&self, ix: &Resident, plans: &[&Plan]) -> Result<(DBuf<u32>, DBuf<u32>)> {
        let enc = self.encode_plans(ix, plans)?;
        Ok((self.dev.upload(&enc.words)?, self.dev.upload(&enc.offsets)?))
    }

    /// Stage 3 of both candidate routes: `cand_score` over the compacted rows (`bufs`:
    /// rows `[B, cap]`, bloom / exact / seg counters `[B]`, keys `[B, cap]`), then top-`k0`.
    /// `qs`: the staged query scales (read for l2 only, with the resident's row biases).
    #[allow(clippy::too_many_arguments)]
    fn score_compacted(&self, ix: &Resident, qc: u64, qs: u64, bufs: [u64; 5], cap: u64, b: usize, k0: usize) -> Result<DevCands> {
        let [rows, bloom, exact, seg, keys] = bufs;
        let (bias, qs) = ix.bias.as_ref().map_or((0, 0), |bb| (bb.ptr(), qs));
        let sblocks = cap.div_ceil(256).clamp(1, 64) as u32;
        let args = CandScore {
            rowcodes: ix.rowcodes.ptr(),
            nc: ix.nc as u32,
            scale: ix.scale.ptr(),
            qcodes: qc,
            rows,
            bloom,
            exact,
            cap: cap as u32,
            keys,
            seg,
            bias,
            qscale: qs,
        };
        self.dev.launch(K::CandScore, Launch::grid2(sblocks, b as u32, 256, 0), &args)?;
        self.mark("cand_score")?;
        let out = if k0 == 0 { self.empty_cands(b, 0)? } else { self.new_cands(b, k0)? };
        if k0 > 0 {
            self.topk(0, keys, 0, 0, cap, seg, 0, k0, b, out.rows.ptr(), out.scores.ptr(), out.counts.ptr())?;
            self.mark("topk")?;
        }
        Ok(out)
    }

    /// Top-`k` of `segs` segments (see select.cu `topk_select`). kind 0: keys; kind 1:
    /// (scores, rows). Writes rows (and scores when given) `[segs, k]` and counts.
    #[allow(clippy::too_many_arguments)]
    fn topk(
        &self,
        kind: u32,
        keys: u64,
        scores: u64,
        rows: u64,
        stride: u64,
        counts: u64,
        n_fixed: u32,
        k: usize,
        segs: usize,
        out_rows: u64,
        out_scores: u64,
        out_counts: u64,
    ) -> Result<()> {
        let p = k.max(1).next_power_of_two();
        let mut tmp_counts = None;
        let mut sortbuf = None;
        let mut oc = out_counts;
        if p > SORT_CAP {
            sortbuf = Some(self.dev.alloc::<u64>(segs * p)?);
            if oc == 0 {
                tmp_counts = Some(self.dev.alloc::<u32>(segs)?);
                oc = tmp_counts.as_ref().map(|b| b.ptr()).unwrap_or(0);
            }
        }
        let sb = sortbuf.as_ref().map_or(0, |b| b.ptr());
        let args = TopkSelect {
            kind,
            keys,
            scores,
            rows,
            stride,
            counts,
            n_fixed,
            k: k as u32,
            P: p as u32,
            out_rows,
            out_scores,
            out_counts: oc,
            sortbuf: sb,
        };
        self.dev.launch(K::TopkSelect, Launch::new(segs as u32, 1024, 0), &args)?;
        if let Some(buf) = &sortbuf {
            self.sort_global(buf.ptr(), p, segs)?;
            self.decode_sorted(buf.ptr(), p, k, segs, oc, out_rows, out_scores)?;
        }
        drop(tmp_counts);
        Ok(())
    }

    /// Rows and scores of the top `k` of each of `segs` sorted segments of `p` keys.
    #[allow(clippy::too_many_arguments)]
    fn decode_sorted(&self, buf: u64, p: usize, k: usize, segs: usize, counts: u64, out_rows: u64, out_scores: u64) -> Result<()> {
        let args = DecodeSorted { buf, P: p as u32, k: k as u32, counts, out_rows, out_scores };
        self.dev.launch(K::DecodeSorted, Launch::grid2((k as u32).div_ceil(256), segs as u32, 256, 0), &args)
    }

    /// Descending bitonic sort of `segs` segments of `p` keys (p a power of two > SORT_CAP):
    /// distances below the chunk (16384 keys, 128 KiB of shared memory) run in
    /// `bitonic_local`, larger ones as one `bitonic_global` pass each.
    fn sort_global(&self, buf: u64, p: usize, segs: usize) -> Result<()> {
        let ch = p.min(LOCAL_SORT_KEYS as usize);
        let chunks = (p / ch) as u32;
        let local = |lo: usize, hi: usize, s0: usize| {
            let args = BitonicLocal { buf, P: p as u32, ch: ch as u32, size_lo: lo as u32, size_hi: hi as u32, stride0: s0 as u32 };
            self.dev.launch(K::BitonicLocal, Launch::grid2(chunks, segs as u32, 1024, (ch * 8) as u32), &args)
        };
        local(2, ch, 1)?;
        let mut size = 2 * ch;
        while size <= p {
            let mut stride = size / 2;
            while stride >= ch {
                let args = BitonicGlobal { buf, P: p as u32, size: size as u32, stride: stride as u32 };
                self.dev.launch(K::BitonicGlobal, Launch::grid2((p as u32 / 2).div_ceil(256), segs as u32, 256, 0), &args)?;
                stride /= 2;
            }
            local(size, size, ch / 2)?;
            size *= 2;
        }
        Ok(())
    }

    /// Whole-index Bloom masks of `plans` (`[plans, ceil(N/64)]` words, live rows only):
    /// the SilverTorch "Bloom search" workload (`out = true`; the counts are then not
    /// computed), or only their popcounts (`out = false`, for `count`).
    pub fn bloom_masks(&self, ix: &Resident, plans: &[&Plan], out: bool) -> Result<(Option<DBuf<u64>>, DBuf<u64>)> {
        let (pw, po) = self.upload_plans(ix, plans)?;
        let counts = self.dev.alloc::<u64>(plans.len())?;
        if !out {
            self.dev.fill_u32(counts.ptr(), 0, plans.len() * 2)?;
        }
        let masks = if out { Some(self.dev.alloc::<u64>(plans.len() * ix.words)?) } else { None };
        let chunks = ix.words.div_ceil(256).clamp(1, 65535) as u32;
        let args = BloomFull {
            planes: ix.planes.ptr(),
            words: ix.words as u64,
            n: ix.n as u64,
            live: ptr_or_null(ix.live.as_deref()),
            plan_words: pw.ptr(),
            plan_off: po.ptr(),
            out: ptr_or_null(masks.as_ref()),
            counts: if out { 0 } else { counts.ptr() },
        };
        self.dev.launch(K::BloomFull, Launch::grid2(plans.len() as u32, chunks, 256, 0), &args)?;
        Ok((masks, counts))
    }

    fn check_batch(b: usize) -> Result<()> {
        if b > 65535 {
            return Err(Error::param("queries", format!("batch of {b} queries exceeds the CUDA backend's 65535 per call")));
        }
        Ok(())
    }

    /// Uninitialized candidates `[b, k]` in one allocation.
    fn new_cands(&self, b: usize, k: usize) -> Result<DevCands> {
        let buf = self.dev.alloc::<u32>(2 * b * k + b)?;
        let base = buf.ptr();
        Ok(DevCands { b, k, rows: Part(base), scores: Part(base + 4 * (b * k) as u64), counts: Part(base + 8 * (b * k) as u64), buf })
    }

    fn empty_cands(&self, b: usize, k: usize) -> Result<DevCands> {
        let c = self.new_cands(b, k)?;
        self.dev.fill_u32(c.rows.ptr(), u32::MAX, b * k)?;
        self.dev.fill_u32(c.scores.ptr(), f32::NEG_INFINITY.to_bits(), b * k)?;
        self.dev.fill_u32(c.counts.ptr(), 0, b)?;
        Ok(c)
    }

    fn upload_model(&self, model: &Arc<silica_core::rerank::RerankModel>) -> Result<std::sync::MutexGuard<'_, Option<DevModel>>> {
        let mut g = self.model.lock().expect("model cache");
        if g.as_ref().is_some_and(|m| Arc::ptr_eq(&m.model, model)) {
            return Ok(g);
        }
        let mut w: Vec<f32> = Vec::new();
        let mut desc: Vec<u32> = Vec::new();
        let mut width = model.input_dim();
        for layer in model.layers.iter().chain(std::iter::once(&model.heads)) {
            if layer.weight.len() != layer.inputs * layer.outputs || layer.bias.len() != layer.outputs {
                return Err(Error::param("rerank", "model layer shapes are inconsistent"));
            }
            desc.extend([layer.inputs as u32, layer.outputs as u32, w.len() as u32, (w.len() + layer.weight.len()) as u32]);
            w.extend_from_slice(&layer.weight);
            w.extend_from_slice(&layer.bias);
            width = width.max(layer.inputs).max(layer.outputs);
        }
        if w.len() >= u32::MAX as usize {
            return Err(Error::param("rerank", "model too large for the CUDA backend"));
        }
        *g = Some(DevModel {
            model: model.clone(),
            desc: self.dev.upload(&desc)?,
            nl: (model.layers.len() + 1) as u32,
            weights: self.dev.upload(&w)?,
            width,
        });
        Ok(g)
    }
}

impl Backend for Cuda {
    type Resident = Resident;
    type Probes = DevProbes;
    type Mask = DevMask;
    type Cands = DevCands;

    fn name(&self) -> &'static str {
        "cuda"
    }

    /// Typed column terms are evaluated in the kernels (`plans::COL_TERM`) from the
    /// resident columns: a per-query bound costs a few plan words, not a mask upload.
    fn typed_terms(&self) -> bool {
        true
    }

    /// A new stream and workspace (and rerank model cache) on the same context, sharing
    /// the kernels and the tuning.
    fn lane(&self) -> Result<Cuda> {
        Ok(Cuda(Arc::new(CudaInner {
            dev: self.dev.fork()?,
            ws: Mutex::default(),
            model: Mutex::default(),
            tuning: self.tuning.clone(),
            marks: Mutex::default(),
            warp_smem: self.warp_smem,
            stream_smem: self.stream_smem,
        })))
    }

    fn resident_index<'a>(&self, ix: &'a Resident) -> &'a Arc<Index> {
        &ix.index
    }

    fn upload(&self, index: &Arc<Index>) -> Result<Resident> {
        let r = resident::upload(&self.dev, index)?;
        self.dev.sync()?;
        Ok(r)
    }

    fn update(&self, old: &Resident, index: &Arc<Index>, changed: &silica_core::backend::Changed) -> Result<Resident> {
        let r = resident::update(&self.dev, old, index, changed)?;
        self.dev.sync()?;
        Ok(r)
    }

    fn probe(&self, ix: &Resident, q: &QueryBatch, nprobe: usize) -> Result<DevProbes> {
        let (l, b) = (ix.l, q.len);
        if nprobe > l {
            return Err(Error::param("nprobe", format!("{nprobe} > nlist {l}")));
        }
        Self::check_batch(b)?;
        let lists = Arc::new(self.dev.alloc::<u32>(b * nprobe)?);
        if b == 0 || nprobe == 0 {
            return Ok(DevProbes { b, nprobe, lists });
        }
        let dq = self.device_queries(ix, q)?;
        let uploaded = match &dq {
            Some(_) => None,
            None => Some(self.upload_queries(ix, q)?),
        };
        let qc = dq.as_ref().map_or_else(|| uploaded.as_ref().map_or(0, |u| u.ptr()), |d| d.codes);
        let keys = self.dev.alloc::<u64>(b * l)?;
        let nc = ix.nc as u32;
        // l2: centroid biases and query scales (null: ip / cosine).
        let qs = match (&ix.cbias, &dq) {
            (Some(_), None) => Some(self.dev.upload(&q.scale)?),
            _ => None,
        };
        let qsp = match (&ix.cbias, &dq) {
            (None, _) => 0,
            (Some(_), Some(d)) => d.scale,
            (Some(_), None) => qs.as_ref().map_or(0, |q| q.ptr()),
        };
        let cb = ix.cbias.as_ref().map_or(0, |c| c.ptr());
        let args = ProbeScores {
            cent: ix.cent.ptr(),
            cscale: ix.cscale.ptr(),
            q: qc,
            nc,
            L: l as u32,
            B: b as u32,
            keys: keys.ptr(),
            cbias: cb,
            qscale: qsp,
        };
        self.dev.launch(K::ProbeScores, Launch::grid2((l as u32).div_ceil(128), (b as u32).div_ceil(8), 128, 8 * nc * 16), &args)?;
        self.topk(0, keys.ptr(), 0, 0, l as u64, 0, l as u32, nprobe, b, lists.ptr(), 0, 0)?;
        Ok(DevProbes { b, nprobe, lists })
    }

    fn filter(&self, ix: &Resident, plans: &[&Plan], probes: &DevProbes) -> Result<DevMask> {
        let (b, np) = (probes.b, probes.nprobe);
        if plans.len() != b {
            return Err(Error::param("filters", format!("{} plans for {b} queries", plans.len())));
        }
        let npairs = b * np;
        if ix.live.is_none() && plans.iter().all(|p| p.is_all()) {
            // No filter, every row live: the mask is each list's row range (implicit).
            return Ok(DevMask { b, nprobe: np, offsets: None, words: None, lists: probes.lists.clone(), index: ix.index.clone() });
        }
        let bound = b as u64 * ix.max_words(np);
        if bound >= u32::MAX as u64 {
            return Err(Error::param("queries", "batch x probed words exceed 2^32 mask words; split the batch"));
        }
        let offsets = self.dev.alloc::<u32>(npairs + 1)?;
        let words = self.dev.alloc::<u64>(bound as usize)?;
        let args = MaskOffsets { lists: probes.lists.ptr(), npairs: npairs as u32, list_nw: ix.list_nw.ptr(), off: offsets.ptr() };
        self.dev.launch(K::MaskOffsets, Launch::new(1, 1024, 0), &args)?;
        let chunks = ix.max_nw.div_ceil(128).clamp(1, 65535) as u32;
        let pairs = Launch::grid2(npairs as u32, chunks, 128, 0);
        if npairs > 0 && 2 * np >= ix.l && self.tuning.lock().expect("tuning").dense_filter {
            // Most lists probed: evaluate each plan once over the whole index (planes shared
            // by the batch's plans come from L2), then cut out the pairs' words.
            let (full, _) = self.bloom_masks(ix, plans, true)?;
            let full = full.expect("requested");
            let args = MaskGather {
                lists: probes.lists.ptr(),
                nprobe: np as u32,
                off: offsets.ptr(),
                list_start: ix.list_start.ptr(),
                list_end: ix.list_end.ptr(),
                full: full.ptr(),
                words: ix.words as u64,
                mask: words.ptr(),
            };
            self.dev.launch(K::MaskGather, pairs, &args)?;
        } else if npairs > 0 {
            let (pw, po) = self.upload_plans(ix, plans)?;
            let args = FilterMask {
                lists: probes.lists.ptr(),
                nprobe: np as u32,
                off: offsets.ptr(),
                list_start: ix.list_start.ptr(),
                list_end: ix.list_end.ptr(),
                planes: ix.planes.ptr(),
                words: ix.words as u64,
                live: ptr_or_null(ix.live.as_deref()),
                plan_words: pw.ptr(),
                plan_off: po.ptr(),
                mask: words.ptr(),
            };
            self.dev.launch(K::FilterMask, pairs, &args)?;
        }
        Ok(DevMask { b, nprobe: np, offsets: Some(offsets), words: Some(words), lists: probes.lists.clone(), index: ix.index.clone() })
    }

    fn count(&self, ix: &Resident, plans: &[&Plan]) -> Result<Vec<u64>> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        if ix.live.is_none() && plans.iter().all(|p| p.is_all()) {
            return Ok(vec![ix.n as u64; plans.len()]);
        }
        let (_, counts) = self.bloom_masks(ix, plans, false)?;
        self.dev.download(&counts, plans.len())
    }

    fn scan(&self, ix: &Resident, q: &QueryBatch, probes: &DevProbes, mask: &DevMask, plans: &[&Plan], k0: usize) -> Result<DevCands> {
        let (b, np) = (probes.b, probes.nprobe);
        if q.len != b || plans.len() != b || mask.b != b || mask.nprobe != np {
            return Err(Error::param(
                "queries",
                format!("scan: {} queries, {} plans, probes for {b}, mask for {}", q.len, plans.len(), mask.b),
            ));
        }
        Self::check_batch(b)?;
        if k0 > u32::MAX as usize / 2 {
            return Err(Error::param("k0", format!("{k0} is too large")));
        }
        if b == 0 || k0 == 0 {
            return self.empty_cands(b, k0);
        }
        let t = *self.tuning.lock().expect("tuning");
        let dev = &self.dev;
        let (l, npairs, nc) = (ix.l, b * np, ix.nc as u32);
        let shape = ScanShape { b, nprobe: np, lists: l, nc: ix.nc, k0, max_rows: ix.max_rows(np), nw_desc: &ix.nw_desc };
        let profiling = self.marks.lock().expect("marks").is_some();
        let plan = ScanPlan::new(&shape, &t, &**self, profiling)?;
        let size = plan.buffers(&shape);
        let (tw, se, cap, cs, p) = (plan.tw, plan.se, plan.cap, plan.cs, plan.p);
        let out = self.new_cands(b, k0)?;
        let mut ws = self.ws.lock().expect("workspace");
        let (qc, pw, po, qs, _dq) = self.stage_scan_inputs(&mut ws, ix, q, plans)?;
        // l2: row biases and query scales (null bias: ip / cosine, metric_score).
        let (bias, qs) = ix.bias.as_ref().map_or((0, 0), |b| (b.ptr(), qs));
        // [cnt L][fill L][count B][samp_count B][samp_masked B]: group_all zeroes them;
        // on the small-batch path scan_prepare zeroes count, and samp_* are zero on entry
        // (zeroed when allocated, reset by scan_threshold after use).
        let fresh = ws.zeroed.as_ref().is_none_or(|z| z.len() < size.zeroed);
        let zeroed = ensure(dev, &mut ws.zeroed, size.zeroed)?.ptr();
        if fresh {
            dev.fill_u32(zeroed, 0, size.zeroed)?;
        }
        let (cnt, fill, count, samp_count, samp_masked) =
            (zeroed, zeroed + 4 * l as u64, zeroed + 8 * l as u64, zeroed + (8 * l + 4 * b) as u64, zeroed + (8 * l + 8 * b) as u64);
        // [pair_start L+1][tile_start L+1][stile_start L+1]
        let starts = ensure(dev, &mut ws.starts, size.starts)?.ptr();
        let (pair_start, tile_start, stile_start) = (starts, starts + 4 * (l as u64 + 1), starts + 8 * (l as u64 + 1));
        let list_pairs = ensure(dev, &mut ws.list_pairs, size.list_pairs)?.ptr();
        // Tile lookup tables: one entry per 64 tiles (bounded by the tiles of all lists).
        let buckets = ensure(dev, &mut ws.buckets, size.buckets)?.ptr();
        let (tbucket, sbucket) = (buckets, buckets + 4 * plan.tbuckets as u64);
        let samp = ensure(dev, &mut ws.samp, size.samp)?.ptr();
        let tkey = ensure(dev, &mut ws.tkey, size.tkey)?.ptr();
        let cand = ensure(dev, &mut ws.cand, size.cand)?.ptr();
        let sortbuf = if plan.sortbuf { ensure(dev, &mut ws.sortbuf, size.sortbuf)?.ptr() } else { 0 };

        self.mark("inputs")?;
        // The sample and main passes take the same arguments but for their tiles, buffers
        // and lookup tables.
        let scan_args = |tiles: u64, count: u64, buf: u64, cap: usize, bucket: u64| ScanArgs {
            codes: ix.codes.ptr(),
            nc,
            scale: ix.scale.ptr(),
            list_start: ix.list_start.ptr(),
            list_nw: ix.list_nw.ptr(),
            L: l as u32,
            tiles,
            pair_start,
            list_pairs,
            nprobe: np as u32,
            mask: mask.words_ptr(),
            moff: mask.offsets_ptr(),
            qcodes: qc,
            plan_words: pw,
            plan_off: po,
            attr_off: ix.attr_off.ptr(),
            attr_vals: ix.attr_vals.ptr(),
            tkey,
            count,
            buf,
            cap: cap as u32,
            masked: samp_masked,
            se,
            tw,
            bucket,
            list_end: ix.list_end.ptr(),
            bias,
            qscale: qs,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
            _pad3: 0,
        };
        if plan.fused {
            // Small batch: group (block 0) and sample every pair directly, in one launch.
            let prep = PrepArgs {
                lists: probes.lists.ptr(),
                list_nw: ix.list_nw.ptr(),
                cnt,
                fill,
                pair_start,
                tile_start,
                stile_start,
                list_pairs,
                tbucket,
                sbucket,
                zero: count,
                list_start: ix.list_start.ptr(),
                mask: mask.words_ptr(),
                moff: mask.offsets_ptr(),
                codes: ix.codes.ptr(),
                scale: ix.scale.ptr(),
                qcodes: qc,
                plan_words: pw,
                plan_off: po,
                attr_off: ix.attr_off.ptr(),
                attr_vals: ix.attr_vals.ptr(),
                samp_count,
                samp,
                samp_masked,
                npairs: npairs as u32,
                L: l as u32,
                tw,
                se,
                smem_counts: plan.smem_counts as u32,
                nzero: b as u32,
                nprobe: np as u32,
                spp: plan.spp,
                nc,
                cs: cs as u32,
                list_end: ix.list_end.ptr(),
                bias,
                qscale: qs,
            };
            dev.launch(K::ScanPrepare, plan.prepare, &prep)?;
            self.mark("group+sample")?;
        } else {
            let group = GroupAll {
                lists: probes.lists.ptr(),
                npairs: npairs as u32,
                list_nw: ix.list_nw.ptr(),
                L: l as u32,
                tw,
                se,
                cnt_g: cnt,
                fill_g: fill,
                smem_counts: plan.smem_counts as u32,
                pair_start,
                tile_start,
                stile_start,
                list_pairs,
                tbucket,
                sbucket,
                zero: count,
                nzero: 3 * b as u32,
            };
            dev.launch(K::GroupAll, plan.group, &group)?;
            self.mark("group")?;
            dev.launch(plan.sample.0, plan.sample.1, &scan_args(stile_start, samp_count, samp, cs, sbucket))?;
            self.mark("sample")?;
        }
        let threshold = ScanThreshold {
            nprobe: np as u32,
            lists: probes.lists.ptr(),
            list_start: ix.list_start.ptr(),
            list_end: ix.list_end.ptr(),
            moff: mask.offsets_ptr(),
            mask: mask.words_ptr(),
            samp_count,
            samp_masked,
            samp,
            cs: cs as u32,
            k0: k0 as u32,
            cap: cap as u32,
            tkey,
            smem_cap: THRESHOLD_SMEM_SAMPLES,
        };
        dev.launch(K::ScanThreshold, plan.threshold, &threshold)?;
        self.mark("threshold")?;
        dev.launch(plan.main.0, plan.main.1, &scan_args(tile_start, count, cand, cap, tbucket))?;
        self.mark("main")?;
        let sel = SelectArgs {
            nprobe: np as u32,
            lists: probes.lists.ptr(),
            moff: mask.offsets_ptr(),
            mask: mask.words_ptr(),
            list_start: ix.list_start.ptr(),
            codes: ix.codes.ptr(),
            nc,
            scale: ix.scale.ptr(),
            qcodes: qc,
            plan_words: pw,
            plan_off: po,
            attr_off: ix.attr_off.ptr(),
            attr_vals: ix.attr_vals.ptr(),
            count,
            tkey,
            cand,
            cap: cap as u32,
            k0: k0 as u32,
            P: p as u32,
            force_fallback: t.force_fallback as u32,
            out_rows: out.rows.ptr(),
            out_scores: out.scores.ptr(),
            out_counts: out.counts.ptr(),
            sortbuf,
            smem_keys: plan.smem_keys,
            list_end: ix.list_end.ptr(),
            list_nw: ix.list_nw.ptr(),
            bias,
            qscale: qs,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        dev.launch(K::ScanSelect, plan.select, &sel)?;
        if plan.sortbuf {
            self.sort_global(sortbuf, p, b)?;
            self.decode_sorted(sortbuf, p, k0, b, out.counts.ptr(), out.rows.ptr(), out.scores.ptr())?;
        }
        self.mark("select")?;
        drop(ws);
        Ok(out)
    }

    /// `cand_sample` (the sampled Bloom count) -> `cand_compact` (cuda/filter.cu: the
    /// admission rule, Bloom count, early exit past `cap`, exact
    /// verification, compaction) -> `cand_score` (cuda/scan.cu: dp4a keys of the
    /// compacted rows) -> `topk_select` over each query's keys; then the Bloom counts are
    /// read back (`4 B` bytes, the planner's one read).
    fn scan_candidates(&self, ix: &Resident, q: &QueryBatch, plans: &[&Plan], k0: usize, cap: u64) -> Result<(DevCands, Vec<Option<u64>>)> {
        let b = q.len;
        if plans.len() != b {
            return Err(Error::param("filters", format!("{} plans for {b} queries", plans.len())));
        }
        Self::check_batch(b)?;
        if b == 0 {
            return Ok((self.empty_cands(0, k0)?, Vec::new()));
        }
        let all = cap >= ix.n as u64;
        let cap = cap.min(ix.n as u64).max(1);
        if b as u64 * cap >= 1 << 31 {
            return Err(Error::param("queries", format!("{b} queries x {cap} candidates exceed 2^31 slots; split the batch")));
        }
        let (dev, cap32) = (&self.dev, cap as u32);
        let mut ws = self.ws.lock().expect("workspace");
        let (qc, pw, po, qs, _dq) = self.stage_scan_inputs(&mut ws, ix, q, plans)?;
        let counts = ensure(dev, &mut ws.cand_counts, 4 * b)?.ptr();
        dev.fill_u32(counts, 0, 4 * b)?;
        let (bloom, exact, seg, sample) = (counts, counts + 4 * b as u64, counts + 8 * b as u64, counts + 12 * b as u64);
        let every = silica_core::backend::SAMPLE_EVERY as u32;
        let rows = ensure(dev, &mut ws.cand_rows, b * cap as usize)?.ptr();
        let keys = ensure(dev, &mut ws.cand_keys, b * cap as usize)?.ptr();
        let chunks = ix.words.div_ceil(256).clamp(1, 65535) as u32;
        self.mark("inputs")?;
        if !all {
            let schunks = ix.words.div_ceil(every as usize * 256).clamp(1, 65535) as u32;
            let args = CandSample {
                planes: ix.planes.ptr(),
                words: ix.words as u64,
                n: ix.n as u64,
                live: ptr_or_null(ix.live.as_deref()),
                plan_words: pw,
                plan_off: po,
                every,
                sample,
            };
            dev.launch(K::CandSample, Launch::grid2(b as u32, schunks, 256, 0), &args)?;
            self.mark("cand_sample")?;
        }
        let args = CandCompact {
            planes: ix.planes.ptr(),
            words: ix.words as u64,
            n: ix.n as u64,
            live: ptr_or_null(ix.live.as_deref()),
            plan_words: pw,
            plan_off: po,
            attr_off: ix.attr_off.ptr(),
            attr_vals: ix.attr_vals.ptr(),
            cap: cap32,
            sample,
            every,
            all: all as u32,
            bloom,
            exact,
            rows,
        };
        dev.launch(K::CandCompact, Launch::grid2(b as u32, chunks, 256, 0), &args)?;
        self.mark("cand_compact")?;
        let out = self.score_compacted(ix, qc, qs, [rows, bloom, exact, seg, keys], cap, b, k0)?;
        let got = dev.download_at(ws.cand_counts.as_ref().expect("allocated"), 0, b)?;
        drop(ws);
        Ok((out, got.into_iter().map(|c| (c as u64 <= cap).then_some(c as u64)).collect()))
    }

    fn scan_postings(
        &self,
        ix: &Resident,
        q: &QueryBatch,
        plans: &[&Plan],
        drivers: &[&[u32]],
        post: &silica_core::model::postings::PostingState,
        k0: usize,
    ) -> Result<DevCands> {
        let b = q.len;
        if plans.len() != b || drivers.len() != b {
            return Err(Error::param("filters", format!("{} plans and {} drivers for {b} queries", plans.len(), drivers.len())));
        }
        Self::check_batch(b)?;
        if b == 0 {
            return self.empty_cands(0, k0);
        }
        let post_rows = ix.postings(&self.dev, &post.lists)?;
        // Exact drivers need no plan check on their rows (postings::check_plan).
        let all = Plan::all();
        let checked: Vec<&Plan> =
            plans.iter().zip(drivers).map(|(&p, d)| silica_core::model::postings::check_plan(p, d, post, &all)).collect();
        let nstale = post.stale.len();
        // Per plan, its driver's non-empty postings as segments (postings::candidate_rows).
        let host = &post.lists;
        let (mut seg_off, mut seg_val, mut seg_end, mut seg_start) = (vec![0u32], Vec::new(), Vec::new(), Vec::new());
        let mut cap = 1u64;
        for d in drivers {
            let mut run = 0u64;
            let mut prev = None;
            for &v in d.iter() {
                let len = host.len_of(v);
                if len == 0 {
                    continue;
                }
                run += len;
                // Consecutive value buckets of one column are one run of rows (a row is in
                // one bucket per column, so first_hit needs no boundary between them): one
                // segment for a range's span of buckets, not one per bucket.
                let joins = prev.is_some_and(|p: u32| p + 1 == v && host.buckets.iter().any(|b| b.holds(p) && b.holds(v)));
                if joins {
                    *seg_end.last_mut().expect("a previous segment") = run as u32;
                } else {
                    seg_val.push(v);
                    seg_end.push(run as u32);
                    seg_start.push(host.offsets[v as usize]);
                }
                prev = Some(v);
            }
            seg_off.push(seg_val.len() as u32);
            cap = cap.max(run + nstale as u64);
        }
        if b as u64 * cap >= 1 << 31 {
            return Err(Error::param("queries", format!("{b} queries x {cap} candidates exceed 2^31 slots; split the batch")));
        }
        let mut bytes: Vec<u8> = seg_off.iter().chain(&seg_val).chain(&seg_end).flat_map(|x| x.to_le_bytes()).collect();
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        let start_at = bytes.len();
        bytes.extend(seg_start.iter().flat_map(|x| x.to_le_bytes()));
        let stale_at = bytes.len();
        bytes.extend(post.stale.iter().flat_map(|x| x.to_le_bytes()));
        let dev = &self.dev;
        let mut ws = self.ws.lock().expect("workspace");
        let tables = ensure(dev, &mut ws.post_inputs, bytes.len().next_power_of_two())?;
        dev.write(tables, &bytes)?;
        let t = tables.ptr();
        let (p_off, p_val, p_end, p_start, p_stale) =
            (t, t + 4 * seg_off.len() as u64, t + 4 * (seg_off.len() + seg_val.len()) as u64, t + start_at as u64, t + stale_at as u64);
        let (qc, pw, po, qs, _dq) = self.stage_scan_inputs(&mut ws, ix, q, &checked)?;
        let counts = ensure(dev, &mut ws.cand_counts, 4 * b)?.ptr();
        dev.fill_u32(counts, 0, 4 * b)?;
        let (bloom, exact, seg) = (counts, counts + 4 * b as u64, counts + 8 * b as u64);
        let rows = ensure(dev, &mut ws.cand_rows, b * cap as usize)?.ptr();
        let keys = ensure(dev, &mut ws.cand_keys, b * cap as usize)?.ptr();
        let chunks = cap.div_ceil(256).clamp(1, 65535) as u32;
        self.mark("inputs")?;
        let args = PostCompact {
            post_rows: post_rows.ptr(),
            seg_off: p_off,
            seg_start: p_start,
            seg_val: p_val,
            seg_end: p_end,
            stale: p_stale,
            nstale: nstale as u32,
            live: ptr_or_null(ix.live.as_deref()),
            plan_words: pw,
            plan_off: po,
            attr_off: ix.attr_off.ptr(),
            attr_vals: ix.attr_vals.ptr(),
            cap: cap as u32,
            exact,
            rows,
        };
        dev.launch(K::PostCompact, Launch::grid2(b as u32, chunks, 256, 0), &args)?;
        self.mark("post_compact")?;
        self.score_compacted(ix, qc, qs, [rows, bloom, exact, seg, keys], cap, b, k0)
    }

    fn rerank(&self, ix: &Resident, q: &QueryBatch, c: DevCands, mode: &Rerank) -> Result<DevCands> {
        let (b, k, d) = (c.b, c.k, ix.d);
        if q.len != b {
            return Err(Error::param("queries", format!("rerank: {} queries for candidates of {b}", q.len)));
        }
        if b == 0 || k == 0 {
            return Ok(c);
        }
        let total = b * k;
        let l2 = ix.index.metric == silica_core::Metric::L2;
        // A device batch's scales, ‖q‖² and f32 rows are already on the device.
        let dq = self.device_queries(ix, q)?;
        let upload_f32 = |host: &[f32]| -> Result<(Option<DBuf<f32>>, u64)> {
            let b = self.dev.upload(host)?;
            let p = b.ptr();
            Ok((Some(b), p))
        };
        // One warp per (query, candidate) pair, `per_block_warps` of 32 threads per block.
        let warps_grid = |per_block_warps: usize, smem: u32| {
            Launch::new((total.div_ceil(per_block_warps)).min(self.dev.sms as usize * 64) as u32, 256, smem)
        };
        match mode {
            Rerank::None => {
                // l2: ‖q‖² per query in place of the scales (score * 2 - ‖q‖²).
                let (_qs, qsp) = match &dq {
                    Some(p) => (None, if l2 { p.sqnorm } else { p.scale }),
                    None if l2 => upload_f32(&q.f32.chunks(d).map(silica_core::model::metric::query_sqnorm).collect::<Vec<f32>>())?,
                    None => upload_f32(&q.scale)?,
                };
                let args =
                    RerankScale { scores: c.scores.ptr(), counts: c.counts.ptr(), qscale: qsp, k: k as u32, B: b as u32, l2: l2 as u32 };
                self.dev.launch(K::RerankScale, Launch::new((total as u32).div_ceil(256), 256, 0), &args)?;
            }
            Rerank::Refine => {
                let emb = ix
                    .emb
                    .as_ref()
                    .ok_or_else(|| Error::param("rerank", "refine needs items.embeddings; rebuild the index with embeddings"))?;
                let (_qf, qfp) = match &dq {
                    Some(p) => (None, p.f32),
                    None => upload_f32(&q.f32)?,
                };
                let args = RerankRefine {
                    scores: c.scores.ptr(),
                    rows: c.rows.ptr(),
                    counts: c.counts.ptr(),
                    q: qfp,
                    emb: emb.ptr(),
                    D: d as u32,
                    k: k as u32,
                    B: b as u32,
                    l2: l2 as u32,
                };
                self.dev.launch(K::RerankRefine, warps_grid(8, 0), &args)?;
            }
            Rerank::Model { model, weights } => {
                let emb = ix.emb.as_ref().ok_or_else(|| Error::param("rerank", "model rerank needs items.embeddings"))?;
                let f = ix.index.feature_names.len();
                if model.input_dim() != 2 * d + f {
                    return Err(Error::param("rerank", format!("model input is {} but 2*D+F = {}", model.input_dim(), 2 * d + f)));
                }
                if weights.len() != model.tasks() {
                    return Err(Error::param("task_weights", format!("need {} task weights, got {}", model.tasks(), weights.len())));
                }
                let g = self.upload_model(model)?;
                let m = g.as_ref().expect("uploaded");
                let smem = (8 * 2 * m.width * 4) as u32;
                if smem > 200 * 1024 {
                    return Err(Error::param(
                        "rerank",
                        format!("model layers of width {} exceed the CUDA kernel's shared memory", m.width),
                    ));
                }
                if smem > 48 * 1024 {
                    self.dev.set_dyn_smem(K::RerankModel, smem)?;
                }
                let (_qf, qfp) = match &dq {
                    Some(p) => (None, p.f32),
                    None => upload_f32(&q.f32)?,
                };
                let tw = self.dev.upload(weights)?;
                let feats = ix.feats.as_ref().map_or(0, |x| x.ptr());
                let args = RerankModel {
                    scores: c.scores.ptr(),
                    rows: c.rows.ptr(),
                    counts: c.counts.ptr(),
                    q: qfp,
                    emb: emb.ptr(),
                    feats,
                    D: d as u32,
                    F: if feats == 0 { 0 } else { f as u32 },
                    desc: m.desc.ptr(),
                    nl: m.nl,
                    w: m.weights.ptr(),
                    tw: tw.ptr(),
                    width: m.width as u32,
                    k: k as u32,
                    B: b as u32,
                };
                self.dev.launch(K::RerankModel, warps_grid(8, smem), &args)?;
            }
        }
        Ok(c)
    }

    fn select(&self, c: DevCands, k: usize) -> Result<DevCands> {
        let b = c.b;
        if b == 0 || k == 0 {
            return self.empty_cands(b, k);
        }
        let out = self.new_cands(b, k)?;
        self.topk(
            1,
            0,
            c.scores.ptr(),
            c.rows.ptr(),
            c.k.max(1) as u64,
            c.counts.ptr(),
            0,
            k,
            b,
            out.rows.ptr(),
            out.scores.ptr(),
            out.counts.ptr(),
        )?;
        Ok(out)
    }

    fn synchronize(&self) -> Result<()> {
        self.dev.sync()
    }

    /// CUDA events before and after `f`'s work on the stream (seconds).
    fn timed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        let (v, ms) = self.time(f)?;
        Ok((v, Some(ms as f64 * 1e-3)))
    }

    fn timed_phases<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>, silica_core::backend::Phases)> {
        self.profile_start();
        self.mark("begin")?;
        let (v, ms) = self.time(f)?;
        self.mark("rest")?;
        let phases = self.profile_take()?.into_iter().filter(|p| p.1 > 0.0 || p.0 != "rest").map(|(n, ms)| (n, ms as f64 * 1e-3)).collect();
        Ok((v, Some(ms as f64 * 1e-3), phases))
    }

    fn upload_probes(&self, ix: &Resident, p: &Probes) -> Result<DevProbes> {
        let b = p.lists.len().checked_div(p.nprobe).unwrap_or(0);
        silica_core::backend::check_probes(p, b, ix.l)?;
        Self::check_batch(b)?;
        self.probes_from_host(p, b)
    }

    fn read_probes(&self, p: &DevProbes) -> Result<Probes> {
        Ok(Probes { nprobe: p.nprobe, lists: self.dev.download(&p.lists, p.b * p.nprobe)? })
    }

    fn read_mask(&self, m: &DevMask) -> Result<Mask> {
        let (Some(off), Some(words)) = (&m.offsets, &m.words) else {
            // Implicit mask: each probed list's row range, as the CPU backend writes it.
            let lists = self.dev.download(&m.lists, m.b * m.nprobe)?;
            let mut mask = Mask { offsets: vec![0], words: Vec::new() };
            for &l in &lists {
                let range = m.index.list_range(l as usize);
                let (w0, w1) = silica_core::backend::cpu::word_span(&range);
                mask.words.extend((w0..w1).map(|w| silica_core::backend::cpu::range_bits(w, &range)));
                mask.offsets.push(mask.words.len());
            }
            return Ok(mask);
        };
        let offsets = self.dev.download(off, m.b * m.nprobe + 1)?;
        let total = *offsets.last().unwrap_or(&0) as usize;
        let words = self.dev.download(words, total)?;
        Ok(Mask { offsets: offsets.into_iter().map(|o| o as usize).collect(), words })
    }

    fn upload_cands(&self, ix: &Resident, c: &Candidates) -> Result<DevCands> {
        silica_core::backend::check_cands(c, ix.n)?;
        let (b, k) = (c.counts.len(), c.k);
        Self::check_batch(b)?;
        // The layout of `new_cands`: rows, score bits, counts in one allocation.
        let mut all = Vec::with_capacity(2 * b * k + b);
        all.extend_from_slice(&c.rows);
        all.extend(c.scores.iter().map(|s| s.to_bits()));
        all.extend_from_slice(&c.counts);
        let buf = self.dev.upload(&all)?;
        let base = buf.ptr();
        Ok(DevCands { b, k, rows: Part(base), scores: Part(base + 4 * (b * k) as u64), counts: Part(base + 8 * (b * k) as u64), buf })
    }

    fn read_cands(&self, c: &DevCands) -> Result<Candidates> {
        // One copy for rows, scores and counts.
        let n = c.b * c.k;
        let mut all = self.dev.download(&c.buf, 2 * n + c.b)?;
        let counts = all.split_off(2 * n);
        let scores = all.split_off(n).into_iter().map(f32::from_bits).collect();
        Ok(Candidates { k: c.k, rows: all, scores, counts })
    }

    fn read_counts(&self, c: &DevCands) -> Result<Vec<u32>> {
        self.dev.download_at(&c.buf, 2 * c.b * c.k, c.b)
    }
}
