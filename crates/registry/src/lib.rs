//! The backend registry: the one place that names every backend.
//!
//! Everything that opens a backend by name goes through here: the CLI (`--backend`,
//! `--devices`), the HTTP server, `silica bench`, the Python package and the tests. A spec is
//! a backend name (`cpu`, `wgpu`, `cuda`, `auto`), one device (`cuda:1`, `wgpu:0`), a device
//! list of shards (`cpu,cpu,cpu`, `cuda:0,cuda:1`: [`DeviceList`]) or, for [`open`], replicas
//! of lists separated by `|` (`cuda:0,cuda:1|cuda:2,cuda:3`).
//!
//! Adding a backend: a crate implementing [`silica_core::backend::Backend`], one module in
//! [`backends`] (with its compiled-out stub), one [`Device`] variant and one entry in
//! [`BACKENDS`], and one `conformance_suite!` line in tests/conformance.rs.

pub mod backends;
pub mod device;

pub use device::{CudaDevice, Device, DeviceList, DeviceReport, cuda_available, cuda_devices, report, wgpu_hardware_available};

use silica_core::backend::shard::Sharded;
use silica_core::backend::{Backend, cpu::Cpu};
use silica_core::graph::{Executor, Planner, Search};
use silica_core::model::Index;
use silica_core::{Error, Result};
use std::sync::Arc;

/// One backend as the registry lists it (`silica devices`, `--help`).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The device kind [`Device::parse`] gives for [`Entry::name`].
    pub device: Device,
    /// The `--backend` name.
    pub name: &'static str,
    /// Compiled into this build (its cargo feature is on).
    pub built: bool,
    /// One line for `--help`.
    pub about: &'static str,
}

/// Every backend, in the order [`Device::auto`] prefers them last to first.
pub const BACKENDS: &[Entry] = &[
    Entry { device: Device::Cpu, name: "cpu", built: true, about: "the reference (rayon, every core)" },
    Entry { device: Device::Wgpu, name: "wgpu", built: backends::wgpu::BUILT, about: "WGSL on Vulkan, Metal or DX12" },
    Entry { device: Device::Cuda, name: "cuda", built: backends::cuda::BUILT, about: "CUDA (NVRTC at run time)" },
];

/// Work generic over the backend type: what [`with_backend`] runs once it has opened the
/// backend a spec names.
pub trait BackendTask {
    /// The task's result.
    type Out;
    /// Run on `backend` (a fresh handle: one device, or a [`Sharded`] backend over a list).
    fn run<B: Backend>(self, backend: B) -> Result<Self::Out>;
}

/// Open the backend `spec` names (module docs; replicas are [`open`]'s) and run `task` on it.
///
/// # Errors
/// `Error::Param` naming `devices` for a bad list or an unknown name; `Error::Backend`
/// naming the device when it is compiled out, unavailable or cannot open; whatever the
/// task returns.
pub fn with_backend<T: BackendTask>(spec: &str, task: T) -> Result<T::Out> {
    match spec.trim() {
        "cpu" => task.run(Cpu),
        "wgpu" => task.run(backends::wgpu::open(None)?),
        "cuda" => task.run(backends::cuda::open(None)?),
        "auto" | "" => with_backend(Device::auto().name(), task),
        list => {
            let list = DeviceList::parse(list)?;
            match list.kind {
                Device::Cpu => run_list(&list, |_| Ok(Cpu), task),
                Device::Wgpu => run_list(&list, backends::wgpu::open, task),
                Device::Cuda => run_list(&list, backends::cuda::open, task),
            }
        }
    }
}

/// `task` on one device of `list`, or on a [`Sharded`] backend over all of them: each
/// distinct device opened once, its repeats lanes of it ([`Backend::lane`]).
fn run_list<B: Backend, T: BackendTask>(list: &DeviceList, open: impl Fn(Option<usize>) -> Result<B>, task: T) -> Result<T::Out>
where
    B::Probes: Send + Sync,
    B::Mask: Send + Sync,
    B::Cands: Send + Sync,
{
    let mut opened: Vec<(Option<usize>, B)> = Vec::new();
    let mut handles = Vec::with_capacity(list.len());
    for &o in &list.ordinals {
        match opened.iter().find(|(k, _)| *k == o) {
            Some((_, b)) => handles.push(b.lane()?),
            None => {
                let b = open(o)?;
                opened.push((o, b.clone()));
                handles.push(b);
            }
        }
    }
    if handles.len() == 1 {
        return task.run(handles.remove(0));
    }
    task.run(Sharded::new(handles)?)
}

/// Opens an [`Executor`] with a planner ([`with_backend`]'s task behind [`open`]).
struct OpenExecutor {
    index: Arc<Index>,
    planner: Planner,
}

impl BackendTask for OpenExecutor {
    type Out = Box<dyn Search>;
    fn run<B: Backend>(self, backend: B) -> Result<Box<dyn Search>> {
        Ok(Box::new(Executor::new(backend, self.index)?.with_planner(self.planner)))
    }
}

/// A searcher over `index` for `spec` (module docs): an [`Executor`] on one device, on a
/// [`Sharded`] backend over a device list, or replicas of those
/// ([`silica_core::graph::replicas`]) for specs with `|`.
///
/// # Errors
/// As [`with_backend`]; `Error::Param` naming `replicas` for groups of different sizes; the
/// executor's upload errors.
pub fn open(spec: &str, index: Arc<Index>) -> Result<Box<dyn Search>> {
    open_planned(spec, index, Planner::default())
}

/// [`open`] with a planner other than the default.
///
/// # Errors
/// As [`open`].
pub fn open_planned(spec: &str, index: Arc<Index>, planner: Planner) -> Result<Box<dyn Search>> {
    if spec.contains('|') {
        return silica_core::graph::replicas::open(spec, index, planner, open_planned);
    }
    with_backend(spec, OpenExecutor { index, planner })
}

/// The build device `silica build --backend` names: `cpu` (the reference) or `cuda`.
///
/// # Errors
/// `Error::Backend` when CUDA is compiled out or cannot open; `Error::Param` naming
/// `backend` for any other name.
pub fn build_compute(name: &str) -> Result<Box<dyn silica_core::model::compute::BuildCompute>> {
    match name {
        "cpu" => Ok(Box::new(silica_core::model::compute::CpuCompute)),
        "cuda" => backends::cuda::build_compute(),
        other => Err(Error::param("backend", format!("unknown build backend `{other}`; expected cpu or cuda"))),
    }
}
