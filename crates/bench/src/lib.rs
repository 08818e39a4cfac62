//! `silica bench`: reproducible workloads that every backend is measured by.
//!
//! * [`data`]: synthetic indexes generated straight into [`silica_core::model::Index`]
//!   (deterministic for a seed, in parallel; 20M x 128 in seconds).
//! * [`run`]: one workload on one backend: per-stage and end-to-end latency (device timers
//!   through [`Backend::timed`], else the host clock), QPS, bandwidth, recall.
//! * [`metrics`]: unique bytes per stage, exact recall@k, percentiles.
//! * [`suite`]: the DESIGN.md peer table (`--suite peer`).
//! * [`e2e`]: end to end through the executor on a built, filtered catalog (`--suite e2e`).
//!
//! A backend joins through the registry ([`silica_registry`]); to be timed
//! on the device clock it implements [`Backend::timed`], and for the given-probe rows
//! [`Backend::upload_probes`].

pub mod data;
pub mod e2e;
pub mod metrics;
pub mod run;
pub mod suite;

use silica_core::backend::Backend;
use silica_core::error::Result;

pub use silica_registry::{BackendTask, with_backend};

/// [`BackendTask`] running one workload.
pub struct Single<'a> {
    pub synth: &'a data::Synth,
    pub workload: &'a run::Workload,
}

impl BackendTask for Single<'_> {
    type Out = run::Report;
    fn run<B: Backend>(self, b: B) -> Result<run::Report> {
        run::run(&b, self.synth, self.workload)
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
    fn run<B: Backend>(self, b: B) -> Result<suite::SuiteResult> {
        suite::run_suite(&b, self.synth, self.params, self.gen_s)
    }
}
