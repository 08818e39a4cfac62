//! Each backend's hooks, and the stubs that stand in for a backend compiled out (as candle's
//! `dummy_cuda_backend.rs`): every `cfg(feature)` of the workspace's backends is in this file.
//!
//! A backend module here has the same items whether it is built or not: `BUILT`, `B` (its
//! [`Backend`] type, the uninhabited [`Absent`] when compiled out), `open`, `available` and
//! its device list. The registry ([`crate`]) uses only these, so adding a backend is one
//! module here, one [`crate::Device`] variant and one arm per match in `lib.rs`.

use silica_core::backend::{Backend, Candidates, GpuInfo, Mask, Probes, QueryBatch, Rerank};
use silica_core::filter::Plan;
use silica_core::model::Index;
use silica_core::{Error, Result};
use std::sync::Arc;

/// One wgpu adapter as `silica devices` shows it.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// The adapter's name.
    pub name: String,
    /// Graphics API, driver, limits.
    pub details: String,
    /// Not a software rasterizer (lavapipe, WARP).
    pub hardware: bool,
    /// Matches `WGPU_ADAPTER_NAME` (always true when it is unset).
    pub selected_by_env: bool,
}

#[cfg(feature = "cuda")]
pub mod cuda {
    use super::*;
    pub const BUILT: bool = true;
    pub type B = silica_cuda::Cuda;
    /// GPU `ordinal` (`None`: the first), or `Error::Backend` naming `cuda:N`.
    pub fn open(ordinal: Option<usize>) -> Result<B> {
        let Some(o) = ordinal else { return silica_cuda::Cuda::new() };
        let name = format!("cuda:{o}");
        let n = silica_cuda::devices().len();
        if n == 0 {
            return Err(Error::backend(&name, "CUDA is not available here: no driver or no GPU (`silica devices` lists what is)"));
        }
        if o >= n {
            return Err(Error::backend(
                &name,
                format!("no such GPU: the driver reports {n} CUDA device(s), cuda:0..cuda:{} (`silica devices`)", n - 1),
            ));
        }
        silica_cuda::Cuda::with_ordinal(o)
    }
    pub fn available() -> bool {
        silica_cuda::available()
    }
    pub fn devices() -> Vec<GpuInfo> {
        silica_cuda::devices()
    }
    /// The CUDA build device (k-means, assignment, quantization on the first GPU).
    pub fn build_compute() -> Result<Box<dyn silica_core::model::compute::BuildCompute>> {
        Ok(Box::new(silica_cuda::CudaCompute::new()?))
    }
}

#[cfg(not(feature = "cuda"))]
pub mod cuda {
    use super::*;
    pub const BUILT: bool = false;
    pub type B = Absent;
    pub fn open(_: Option<usize>) -> Result<B> {
        Err(Error::backend("cuda", "this silica was built without the `cuda` feature"))
    }
    pub fn available() -> bool {
        false
    }
    pub fn devices() -> Vec<GpuInfo> {
        Vec::new()
    }
    pub fn build_compute() -> Result<Box<dyn silica_core::model::compute::BuildCompute>> {
        Err(Error::backend("cuda", "this silica was built without the `cuda` feature"))
    }
}

#[cfg(feature = "wgpu")]
pub mod wgpu {
    use super::*;
    pub const BUILT: bool = true;
    pub type B = silica_wgpu::Wgpu;
    /// Adapter `adapter` of [`adapters`] (`None`: the best one, `silica_wgpu::Wgpu::new`).
    pub fn open(adapter: Option<usize>) -> Result<B> {
        silica_wgpu::Wgpu::new(silica_wgpu::WgpuOptions { adapter, ..Default::default() })
    }
    pub fn adapters() -> Vec<Adapter> {
        silica_wgpu::adapters()
            .into_iter()
            .map(|a| Adapter { name: a.name, details: a.details, hardware: a.hardware, selected_by_env: a.selected_by_env })
            .collect()
    }
}

#[cfg(not(feature = "wgpu"))]
pub mod wgpu {
    use super::*;
    pub const BUILT: bool = false;
    pub type B = Absent;
    pub fn open(_: Option<usize>) -> Result<B> {
        Err(Error::backend("wgpu", "this silica was built without the `wgpu` feature"))
    }
    pub fn adapters() -> Vec<Adapter> {
        Vec::new()
    }
}

/// A backend that is not compiled in: no value of it exists (its `open` always fails), so
/// every method is unreachable and the registry's generic code needs no `cfg`.
#[derive(Clone, Copy, Debug)]
pub enum Absent {}

impl Backend for Absent {
    type Resident = Absent;
    type Probes = Absent;
    type Mask = Absent;
    type Cands = Absent;
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn upload(&self, _: &Arc<Index>) -> Result<Absent> {
        match *self {}
    }
    fn probe(&self, _: &Absent, _: &QueryBatch, _: usize) -> Result<Absent> {
        match *self {}
    }
    fn filter(&self, _: &Absent, _: &[&Plan], _: &Absent) -> Result<Absent> {
        match *self {}
    }
    fn count(&self, _: &Absent, _: &[&Plan]) -> Result<Vec<u64>> {
        match *self {}
    }
    fn scan(&self, _: &Absent, _: &QueryBatch, _: &Absent, _: &Absent, _: &[&Plan], _: usize) -> Result<Absent> {
        match *self {}
    }
    fn resident_index<'a>(&self, _: &'a Absent) -> &'a Arc<Index> {
        match *self {}
    }
    fn rerank(&self, _: &Absent, _: &QueryBatch, _: Absent, _: &Rerank) -> Result<Absent> {
        match *self {}
    }
    fn select(&self, _: Absent, _: usize) -> Result<Absent> {
        match *self {}
    }
    fn read_probes(&self, _: &Absent) -> Result<Probes> {
        match *self {}
    }
    fn read_mask(&self, _: &Absent) -> Result<Mask> {
        match *self {}
    }
    fn read_cands(&self, _: &Absent) -> Result<Candidates> {
        match *self {}
    }
    fn read_counts(&self, _: &Absent) -> Result<Vec<u32>> {
        match *self {}
    }
}
