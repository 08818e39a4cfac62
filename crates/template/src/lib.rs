//! The template for a new backend (as wgpu-hal's `empty.rs`): the smallest complete
//! [`Backend`], each required stage forwarded to the CPU reference, so that it passes the
//! conformance suite as it stands and shows what a device backend must provide.
//!
//! A new backend is:
//! 1. a crate like this one, implementing [`Backend`] (the required methods below, and
//!    [`Backend::upload_probes`] / [`Backend::upload_cands`], which the executor needs; the
//!    other provided ones, e.g. [`Backend::scan_candidates`] and [`Backend::scan_postings`], have
//!    correct defaults built from the required stages, to be overridden for speed);
//! 2. one module in `crates/registry/src/backends.rs` (with its compiled-out stub), one
//!    `Device` variant and one `BACKENDS` entry in `crates/registry/src/lib.rs`;
//! 3. one `conformance_suite!` line in tests/conformance.rs, which proves stages 1-3
//!    bit-identical to the CPU reference (DESIGN.md "Invariants").
//!
//! This crate is compiled into test builds only (the registry's `template` feature, which the
//! root crate's dev-dependencies turn on): `silica::graph::open("template", index)`.

use silica_core::Result;
use silica_core::backend::cpu::Cpu;
use silica_core::backend::{Backend, Candidates, Mask, Probes, QueryBatch, Rerank};
use silica_core::filter::Plan;
use silica_core::model::Index;
use std::sync::Arc;

/// A device handle. A real backend holds its context, queue or stream and compiled
/// kernels here (cheap to clone: [`Backend::lane`] gives one per search in flight).
#[derive(Clone, Copy, Debug, Default)]
pub struct Template {
    reference: Cpu,
}

impl Template {
    /// Open the device. A real backend returns `Error::Backend` naming itself when its
    /// driver or device is missing (the registry reports that to the user as is).
    ///
    /// # Errors
    /// None here.
    pub fn new() -> Result<Template> {
        Ok(Template::default())
    }
}

/// Stage outputs: a device backend uses its own buffers and copies them to the host types
/// only in the `read_*` methods (the suite compares those across backends).
impl Backend for Template {
    /// The index resident on the device: uploaded once per index version.
    type Resident = Arc<Index>;
    /// Stage 1 output: `[B, nprobe]` list ids per query.
    type Probes = Probes;
    /// Stage 2 output: per-query row bit masks over the probed lists.
    type Mask = Mask;
    /// Stage 3 output: `[B, K0]` candidate rows and int8 scores, best first.
    type Cands = Candidates;

    fn name(&self) -> &'static str {
        "template"
    }
    fn upload(&self, index: &Arc<Index>) -> Result<Arc<Index>> {
        self.reference.upload(index)
    }
    fn resident_index<'a>(&self, ix: &'a Arc<Index>) -> &'a Arc<Index> {
        ix
    }
    fn probe(&self, ix: &Arc<Index>, q: &QueryBatch, nprobe: usize) -> Result<Probes> {
        self.reference.probe(ix, q, nprobe)
    }
    fn filter(&self, ix: &Arc<Index>, plans: &[&Plan], probes: &Probes) -> Result<Mask> {
        self.reference.filter(ix, plans, probes)
    }
    fn count(&self, ix: &Arc<Index>, plans: &[&Plan]) -> Result<Vec<u64>> {
        self.reference.count(ix, plans)
    }
    fn scan(&self, ix: &Arc<Index>, q: &QueryBatch, probes: &Probes, mask: &Mask, plans: &[&Plan], k0: usize) -> Result<Candidates> {
        self.reference.scan(ix, q, probes, mask, plans, k0)
    }
    fn rerank(&self, ix: &Arc<Index>, q: &QueryBatch, cands: Candidates, mode: &Rerank) -> Result<Candidates> {
        self.reference.rerank(ix, q, cands, mode)
    }
    fn select(&self, cands: Candidates, k: usize) -> Result<Candidates> {
        self.reference.select(cands, k)
    }
    // Not required by the trait, but the provided candidate routes (`scan_candidates`,
    // `scan_postings`) and the executor's widening hand host probes and candidates back to
    // the device through these two, so every backend that runs the executor needs them.
    fn upload_probes(&self, ix: &Arc<Index>, p: &Probes) -> Result<Probes> {
        self.reference.upload_probes(ix, p)
    }
    fn upload_cands(&self, ix: &Arc<Index>, c: &Candidates) -> Result<Candidates> {
        self.reference.upload_cands(ix, c)
    }
    fn read_probes(&self, p: &Probes) -> Result<Probes> {
        Ok(p.clone())
    }
    fn read_mask(&self, m: &Mask) -> Result<Mask> {
        Ok(m.clone())
    }
    fn read_cands(&self, c: &Candidates) -> Result<Candidates> {
        Ok(c.clone())
    }
    fn read_counts(&self, c: &Candidates) -> Result<Vec<u32>> {
        self.reference.read_counts(c)
    }
}
