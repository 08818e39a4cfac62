//! Queries read from, and results written to, device memory the caller owns: the
//! zero-copy path of the Python package (torch CUDA tensors in and out through DLPack),
//! sequenced by [`silica_core::graph::device`]. Kernels: `cuda/query.cu`.
//!
//! * [`Cuda::prepare_device`] validates and quantizes a borrowed `[B, D]` tensor on the
//!   device, with the bits of [`silica_core::graph::prepare_queries`] (the host check runs
//!   again only on a refused row, for its exact message): a [`QueryBatch`] whose host
//!   vectors are empty and whose [`OnDevice`] handle only this backend reads.
//! * [`Cuda::write_results`] writes a group's final candidates into [`DeviceResults`]
//!   (source rows as i64, -1 / -inf padding), which the caller owns and frees by dropping.
//! * [`Cuda::wait_for`] / [`Cuda::signal`] order a lane's stream against the caller's
//!   stream with events (the same context: cudarc retains the primary context, as torch).

use super::args::{QueryPrepare, QueryResults};
use super::device::{Launch, drv};
use super::kernels::KernelId as K;
use super::{Cuda, DBuf, DevCands, Resident};
use cudarc::driver::{CudaStream, DriverError, sys};
use silica_core::backend::{OnDevice, QueryBatch};
use silica_core::error::{Error, Result};
use silica_core::model::Metric;
use std::sync::Arc;

/// Element type of a device query tensor (each converts to f32 exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
    fn code(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
        }
    }
    /// f32 of one element's little-endian bytes.
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
        }
    }
}

/// A borrowed, C-contiguous `[rows, dim]` tensor at device address `ptr` on this
/// backend's GPU (a torch CUDA tensor's data). The caller keeps it alive and unchanged
/// until the search returns, and orders its producer before the search ([`Cuda::wait_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceQueries {
    pub ptr: u64,
    pub rows: usize,
    pub dim: usize,
    pub dtype: DType,
}

/// A batch prepared on the device ([`QueryBatch::device`] of this backend): codes
/// `[B, nc*16]`, scales `[B]`, f32 rows `[B, D]` (normalized for cosine), ‖q‖² `[B]`.
pub(crate) struct Prepared {
    src: DeviceQueries,
    codes: DBuf<u8>,
    scale: DBuf<f32>,
    f32: DBuf<f32>,
    sqnorm: DBuf<f32>,
}

/// Device addresses of a device batch's queries, with the buffers that hold them.
pub(crate) struct QPtrs {
    pub codes: u64,
    pub scale: u64,
    pub f32: u64,
    pub sqnorm: u64,
    _keep: Arc<Prepared>,
}

impl QPtrs {
    fn of(p: Arc<Prepared>) -> QPtrs {
        QPtrs { codes: p.codes.ptr(), scale: p.scale.ptr(), f32: p.f32.ptr(), sqnorm: p.sqnorm.ptr(), _keep: p }
    }
}

/// Results of a device search, in memory the caller owns: scores f32 `[b, k]` at
/// `scores` and rows i64 `[b, k]` at `rows` (source rows, -1 with -inf past the items
/// that pass), on GPU `ordinal`. One allocation, freed on drop: behind the work submitted
/// by then to the consumer stream given at allocation (its reads of the results).
pub struct DeviceResults {
    pub b: usize,
    pub k: usize,
    pub scores: u64,
    pub rows: u64,
    pub ordinal: usize,
    buf: Option<DBuf<u8>>,
    stream: Arc<CudaStream>,
    consumer: u64,
}

impl Drop for DeviceResults {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        let ctx = self.stream.context();
        // The free is stream-ordered on the lane's stream: make that wait for the
        // consumer's work first; if that fails, wait for the whole device.
        // SAFETY: both streams belong to this context (checked when the results were made).
        let ok = ctx.bind_to_thread().is_ok() && unsafe { order(self.consumer as sys::CUstream, self.stream.cu_stream()) }.is_ok();
        if !ok {
            let _ = ctx.synchronize();
        }
        drop(buf);
    }
}

/// Make `waiter` wait for the work submitted so far to `after` (an event between them).
///
/// # Safety
/// Both are streams of the current context (or null: the legacy default stream).
unsafe fn order(after: sys::CUstream, waiter: sys::CUstream) -> std::result::Result<(), DriverError> {
    let mut ev: sys::CUevent = std::ptr::null_mut();
    unsafe {
        sys::cuEventCreate(&mut ev, sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32).result()?;
        let r = sys::cuEventRecord(ev, after).result().and_then(|_| sys::cuStreamWaitEvent(waiter, ev, 0).result());
        // Destroying a recorded event is allowed: its resources go once it completes.
        let _ = sys::cuEventDestroy_v2(ev);
        r
    }
}

fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::Ip => 0,
        Metric::Cosine => 1,
        Metric::L2 => 2,
    }
}

impl Cuda {
    /// GPU ordinal of this backend.
    pub fn ordinal(&self) -> usize {
        self.dev.ctx.ordinal()
    }

    /// Order this lane's later work after the work submitted so far to `stream` (a
    /// CUstream of this GPU's primary context, e.g. `torch.cuda.current_stream().cuda_stream`;
    /// 0: the legacy default stream).
    pub fn wait_for(&self, stream: u64) -> Result<()> {
        self.dev.ctx.bind_to_thread().map_err(drv)?;
        // SAFETY: the caller names a stream of this context.
        unsafe { order(stream as sys::CUstream, self.dev.stream.cu_stream()) }.map_err(drv)
    }

    /// Order the work submitted later to `stream` after this lane's work so far.
    pub fn signal(&self, stream: u64) -> Result<()> {
        self.dev.ctx.bind_to_thread().map_err(drv)?;
        // SAFETY: as in `wait_for`.
        unsafe { order(self.dev.stream.cu_stream(), stream as sys::CUstream) }.map_err(drv)
    }

    /// `query_prepare` of rows `rows` (all when `None`) of `src`: `b` queries.
    fn prep(&self, ix: &Resident, src: &DeviceQueries, rows: Option<&[u32]>, b: usize) -> Result<(Prepared, DBuf<u64>)> {
        let (d, nc) = (ix.d, ix.nc);
        let dev = &self.dev;
        let p = Prepared { src: *src, codes: dev.alloc(b * nc * 16)?, scale: dev.alloc(b)?, f32: dev.alloc(b * d)?, sqnorm: dev.alloc(b)? };
        let fault = dev.alloc::<u64>(1)?;
        dev.fill_u32(fault.ptr(), u32::MAX, 2)?;
        let rows = rows.map(|r| dev.upload(r)).transpose()?;
        let args = QueryPrepare {
            src: src.ptr,
            dtype: src.dtype.code(),
            rows: rows.as_ref().map_or(0, |r| r.ptr()),
            B: b as u32,
            D: d as u32,
            nc: nc as u32,
            metric: metric_code(ix.index.metric),
            codes: p.codes.ptr(),
            scale: p.scale.ptr(),
            qf: p.f32.ptr(),
            sqnorm: p.sqnorm.ptr(),
            fault: fault.ptr(),
        };
        dev.launch(K::QueryPrepare, Launch::new((b as u32).div_ceil(128), 128, 0), &args)?;
        Ok((p, fault))
    }

    /// Validate and prepare the queries `src` on the device (the checks, normalization and
    /// quantization of [`silica_core::graph::prepare_queries`], same bits): a batch only this
    /// backend can search. Reads back 8 bytes (the first refused row, if any).
    ///
    /// # Errors
    /// `Dimension` when `src.dim` is not the index's D; `NonFinite` / `OutOfRange` naming
    /// the first refused row and column, with the host check's message; `Param` past
    /// 65535 queries; `Backend` for driver failures.
    pub fn prepare_device(&self, ix: &Resident, src: &DeviceQueries) -> Result<QueryBatch> {
        if src.dim != ix.d {
            return Err(Error::Dimension { what: "queries".into(), expected: ix.d, got: src.dim });
        }
        Self::check_batch(src.rows)?;
        let (p, fault) = self.prep(ix, src, None, src.rows)?;
        let f = self.dev.download(&fault, 1)?[0];
        if f != u64::MAX {
            return Err(self.refused(src, (f >> 32) as usize));
        }
        let device = Some(OnDevice { batch: Arc::new(p), rows: None });
        Ok(QueryBatch { len: src.rows, dim: ix.d, f32: Vec::new(), codes: Vec::new(), scale: Vec::new(), device })
    }

    /// The host check's error for row `row` of `src` (copied back: an error path only).
    fn refused(&self, src: &DeviceQueries, row: usize) -> Error {
        let w = src.dim * src.dtype.bytes();
        let mut bytes = vec![0u8; w];
        // SAFETY: row < src.rows (the kernel reported it), so the row lies in the tensor.
        let copied = self
            .dev
            .ctx
            .bind_to_thread()
            .and_then(|_| unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut bytes, src.ptr + (row * w) as u64) });
        if let Err(e) = copied {
            return drv(e);
        }
        let v: Vec<f32> = bytes.chunks(src.dtype.bytes()).map(|b| src.dtype.decode(b)).collect();
        match silica_core::model::finite::check_rows(&v, src.dim, false, "queries") {
            Err(Error::NonFinite { what, col, value, .. }) => Error::NonFinite { what, row, col, value },
            Err(Error::OutOfRange { what, col, reason, .. }) => Error::OutOfRange { what, row, col, reason },
            _ => Error::backend("cuda", format!("queries: row {row} was refused on the device")),
        }
    }

    /// Device addresses of a device batch's queries (`None` for a host batch); a
    /// sub-batch ([`QueryBatch::gather`]) has its rows prepared again from the source.
    pub(crate) fn device_queries(&self, ix: &Resident, q: &QueryBatch) -> Result<Option<QPtrs>> {
        let Some(dq) = &q.device else { return Ok(None) };
        let p = dq.batch.clone().downcast::<Prepared>().map_err(|_| Error::backend("cuda", "a device query batch of another backend"))?;
        match &dq.rows {
            None => Ok(Some(QPtrs::of(p))),
            Some(rows) => {
                let (sub, _fault) = self.prep(ix, &p.src, Some(rows), rows.len())?;
                Ok(Some(QPtrs::of(Arc::new(sub))))
            }
        }
    }

    /// Result buffers for `b` queries x `k` (scores -inf, rows -1 until written), freed
    /// behind the work of `consumer` (a stream of this context) when dropped.
    pub fn alloc_results(&self, b: usize, k: usize, consumer: u64) -> Result<DeviceResults> {
        let n = b * k;
        let rows_at = (4 * n).next_multiple_of(256);
        let buf = self.dev.alloc::<u8>(rows_at + 8 * n)?;
        let base = buf.ptr();
        self.dev.fill_u32(base, f32::NEG_INFINITY.to_bits(), n)?;
        self.dev.fill_u32(base + rows_at as u64, u32::MAX, 2 * n)?;
        Ok(DeviceResults {
            b,
            k,
            scores: base,
            rows: base + rows_at as u64,
            ordinal: self.ordinal(),
            buf: Some(buf),
            stream: self.dev.stream.clone(),
            consumer,
        })
    }

    /// Write final candidates `c` of the batch's queries `which` (in `c`'s order) into
    /// `out` (rows as source rows).
    pub fn write_results(&self, ix: &Resident, c: &DevCands, which: &[usize], out: &DeviceResults) -> Result<()> {
        if c.b != which.len() || c.k != out.k || which.iter().any(|&i| i >= out.b) {
            return Err(Error::param(
                "queries",
                format!("device results: {} candidates of k {} for {} queries of {} x k {}", c.b, c.k, which.len(), out.b, out.k),
            ));
        }
        if c.b == 0 || c.k == 0 {
            return Ok(());
        }
        let srows = self.source_rows(ix)?;
        let w: Vec<u32> = which.iter().map(|&i| i as u32).collect();
        let wb = self.dev.upload(&w)?;
        let total = (c.b * c.k) as u64;
        let args = QueryResults {
            rows: c.rows.ptr(),
            scores: c.scores.ptr(),
            counts: c.counts.ptr(),
            k: c.k as u32,
            b: c.b as u32,
            which: wb.ptr(),
            source_rows: srows.ptr(),
            out_scores: out.scores,
            out_rows: out.rows,
        };
        self.dev.launch(K::QueryResults, Launch::new(total.div_ceil(256) as u32, 256, 0), &args)
    }

    /// `items.source_rows` on the device (uploaded once per resident index, complete
    /// before any lane reads it).
    fn source_rows(&self, ix: &Resident) -> Result<Arc<DBuf<u64>>> {
        let mut g = ix.source_rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = g.as_ref() {
            return Ok(b.clone());
        }
        let b = Arc::new(self.dev.upload(&ix.index.source_rows[..])?);
        self.dev.sync()?;
        *g = Some(b.clone());
        Ok(b)
    }
}
