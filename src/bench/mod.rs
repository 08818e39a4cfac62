//! `silica bench`: reproducible workloads that every backend is measured by.
//!
//! * [`data`]: synthetic indexes generated straight into [`crate::model::Index`]
//!   (deterministic for a seed, in parallel; 20M x 128 in seconds).
//! * [`run`]: one workload on one backend: per-stage and end-to-end latency (device timers
//!   through [`Backend::timed`], else the host clock), QPS, bandwidth, recall.
//! * [`metrics`]: unique bytes per stage, exact recall@k, percentiles.
//! * [`suite`]: the DESIGN.md peer table (`--suite peer`).
//! * [`e2e`]: end to end through the executor on a built, filtered catalog (`--suite e2e`).
//!
//! A backend joins by one arm in [`with_backend`] (behind its cargo feature); to be timed
//! on the device clock it implements [`Backend::timed`], and for the given-probe rows
//! [`Backend::upload_probes`].

pub mod data;
pub mod e2e;
pub mod metrics;
pub mod run;
pub mod suite;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Work generic over the backend type (what [`with_backend`] runs).
pub trait BackendTask {
    type Out;
    fn run<B: Backend>(self, backend: &B) -> Result<Self::Out>;
}

/// Run `task` on the backend named `name` (`cpu`, `wgpu`, `cuda`).
pub fn with_backend<T: BackendTask>(name: &str, task: T) -> Result<T::Out> {
    match name {
        "cpu" => task.run(&crate::backend::cpu::Cpu),
        #[cfg(feature = "wgpu")]
        "wgpu" => task.run(&crate::backend::wgpu::Wgpu::new(Default::default())?),
        #[cfg(feature = "cuda")]
        "cuda" => task.run(&crate::backend::cuda::Cuda::new()?),
        // Other GPU backends add their arm here.
        // Device lists (`--devices`): shards of one kind; `cuda:N` / `wgpu:N` alone: that device.
        other if other.contains([',', ':']) => {
            use crate::backend::shard::Sharded;
            let list = crate::device::DeviceList::parse(other)?;
            let one = list.len() == 1;
            match list.kind {
                crate::device::Device::Cpu if one => task.run(&crate::backend::cpu::Cpu),
                crate::device::Device::Cpu => task.run(&Sharded::new(vec![crate::backend::cpu::Cpu; list.len()])?),
                #[cfg(feature = "cuda")]
                crate::device::Device::Cuda if one => task.run(&crate::graph::devices::cuda_handles(&list)?.remove(0)),
                #[cfg(feature = "cuda")]
                crate::device::Device::Cuda => task.run(&Sharded::new(crate::graph::devices::cuda_handles(&list)?)?),
                #[cfg(feature = "wgpu")]
                crate::device::Device::Wgpu if one => task.run(&crate::graph::devices::wgpu_handles(&list)?.remove(0)),
                #[cfg(feature = "wgpu")]
                crate::device::Device::Wgpu => task.run(&Sharded::new(crate::graph::devices::wgpu_handles(&list)?)?),
                #[allow(unreachable_patterns)]
                k => Err(Error::backend(k.name(), "this backend is not available in this build")),
            }
        }
        other => Err(Error::backend(other, "this backend is not available in this build; use --backend cpu")),
    }
}

/// [`BackendTask`] running one workload.
pub struct Single<'a> {
    pub synth: &'a data::Synth,
    pub workload: &'a run::Workload,
}

impl BackendTask for Single<'_> {
    type Out = run::Report;
    fn run<B: Backend>(self, b: &B) -> Result<run::Report> {
        run::run(b, self.synth, self.workload)
    }
}

/// [`BackendTask`] running the peer suite.
pub struct Peer<'a> {
    pub synth: &'a data::Synth,
    pub params: &'a suite::SuiteParams,
    pub gen_s: f64,
}

impl BackendTask for Peer<'_> {
    type Out = suite::SuiteResult;
    fn run<B: Backend>(self, b: &B) -> Result<suite::SuiteResult> {
        suite::run_suite(b, self.synth, self.params, self.gen_s)
    }
}
