//! Searches whose queries and results stay in device memory (CUDA only): the Python
//! package's zero-copy path for torch CUDA tensors (DLPack).
//!
//! ```text
//! caller's stream --event--> lane: query_prepare (validate, normalize, quantize: the host's bits)
//!   -> the executor's stage sequence, unchanged (planner, both candidate routes, widening;
//!      plans are made on the host, as for any search)
//!   -> query_results per group into the caller's [B, k] buffers --event--> caller's stream
//! ```
//!
//! What crosses PCIe per batch: the filter plans and the stage bookkeeping every search
//! has (the candidate routes' counts, the widening's `[B]` counts, 8 bytes of validation
//! result), never the `[B, D]` queries nor the `[B, k]` results.

use crate::{Cuda, DeviceQueries, DeviceResults, Resident};
use silica_core::error::{Error, Result};
use silica_core::filter::{Filter, Plan};
use silica_core::graph::hook::{Hook, Output};
use silica_core::graph::{Executor, Search, SearchParams};

/// Writes each group's final candidates into the device results instead of reading them back.
struct DeviceOut<'a> {
    resident: &'a Resident,
    out: &'a DeviceResults,
}

impl Hook<Cuda> for DeviceOut<'_> {
    fn observe(&mut self, b: &Cuda, which: &[usize], out: Output<'_, Cuda>) -> Result<bool> {
        if let Output::Final(c) = out {
            b.write_results(self.resident, c, which, self.out)?;
        }
        Ok(true)
    }
    fn read_final(&self) -> bool {
        false
    }
}

/// Searches of device-resident queries with device-resident results, on an
/// [`Executor`] over [`Cuda`] (module docs).
pub trait SearchDevice {
    /// Search the device tensor `queries` (`[B, D]`, C-contiguous f32 / f16 / bf16 on this
    /// executor's GPU) with the results left on the device: scores f32 `[B, k]` and rows
    /// i64 `[B, k]` (source rows, as [`silica_core::graph::SearchResponse::rows`]; -1 / -inf past the
    /// items that pass), the same values as [`silica_core::graph::Search::search`] of the same rows.
    ///
    /// `stream`: the caller's CUstream (0: the legacy default stream). The search starts
    /// after the work submitted to it so far (the queries' producer) and the work submitted
    /// to it afterwards runs after the results are written; the results are freed, when
    /// dropped, behind the work that stream has by then. The call returns once the search's
    /// device work is submitted (the executor's bookkeeping reads synchronize only its lane).
    ///
    /// # Errors
    /// As [`silica_core::graph::Search::search`] (parameters, `Dimension`, `NonFinite` / `OutOfRange`
    /// naming the row and column, filters count); `Param` when `device` is not this GPU.
    fn search_device(
        &self,
        queries: &DeviceQueries,
        device: usize,
        filters: &[Filter],
        params: &SearchParams,
        stream: u64,
    ) -> Result<DeviceResults>;
}

impl SearchDevice for Executor<Cuda> {
    fn search_device(
        &self,
        queries: &DeviceQueries,
        device: usize,
        filters: &[Filter],
        params: &SearchParams,
        stream: u64,
    ) -> Result<DeviceResults> {
        static ALL: Plan = Plan { ops: Vec::new(), terms: Vec::new() };
        let ordinal = self.backend().ordinal();
        if device != ordinal {
            return Err(Error::param("queries", format!("the queries are on cuda:{device} but the index is on cuda:{ordinal}")));
        }
        let r = self.resolve(params)?;
        if queries.dim != self.index().dim {
            return Err(Error::Dimension { what: "queries".into(), expected: self.index().dim, got: queries.dim });
        }
        let b = queries.rows;
        if !filters.is_empty() && filters.len() != b {
            return Err(Error::param("filters", format!("{} filters for {b} queries", filters.len())));
        }
        let plans: Vec<&Plan> = (0..b).map(|i| filters.get(i).map_or(&ALL, |f| &f.plan)).collect();
        self.with_lane(|lane| {
            lane.wait_for(stream)?;
            let q = lane.prepare_device(self.resident(), queries)?;
            let out = lane.alloc_results(b, r.k, stream)?;
            if b > 0 {
                self.run_on(lane, &q, &plans, &r, &mut DeviceOut { resident: self.resident(), out: &out })?;
            }
            lane.signal(stream)?;
            Ok(out)
        })
    }
}
