//! `silica bench --suite peer`: the five rows of DESIGN.md's "numbers to beat" table,
//! measured on one synthetic index (N = 20M, D = 128, 4096 equal lists, uniform random
//! int8 codes, 3 single-valued attribute fields with Bloom planes of 1024 bits, 5 hashes),
//! each printed beside the peer's figure (SilverTorch OSS ops + torch.topk on one H200,
//! CUDA-event medians) and the ratio peer time / silica time (> 1: silica is faster).
//!
//! * Rows 1-4 (scan + top-2048, probes given): silica time = stage 2 (mask of the probed
//!   lists; no filter, so only list bounds) + stage 3 (int8 scan + fused top-2048), the
//!   median over iterations of their per-iteration sum.
//! * Row 5 (Bloom search): stage 2 over all 4096 lists for 16 queries, each with its own
//!   filter `f00 IN (3 values) AND f01 IN (..) AND f02 IN (..)` (3 AND of 3-way OR),
//!   5 hashes per value; the output is the full Bloom "maybe" mask of every query.
//!
//! `--n` scales N down (for a CPU smoke run); the ratio column is then left empty since
//! the peer was measured at 20M.

use super::data::{FilterSpec, Synth, SynthSpec, Vectors};
use super::run::{self, ProbeSource, Report, Workload};
use serde::Serialize;
use silica_core::backend::Backend;
use silica_core::error::Result;
use silica_core::model::BloomParams;

/// The peer table's N.
pub const PEER_N: usize = 20_000_000;
/// The peer table's D, lists and K0.
pub const PEER_DIM: usize = 128;
pub const PEER_NLIST: usize = 4096;
pub const PEER_K0: usize = 2048;

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerRow {
    pub name: &'static str,
    pub batch: usize,
    pub nprobe: usize,
    /// Bloom search row (stage 2 over all lists) instead of scan + top-K0.
    pub bloom: bool,
    /// The peer's median, ms (DESIGN.md).
    pub peer_ms: f64,
}

/// DESIGN.md's table, in order.
pub const PEER_ROWS: [PeerRow; 5] = [
    PeerRow { name: "B=16, nprobe=32: scan + top-2048", batch: 16, nprobe: 32, bloom: false, peer_ms: 0.554 },
    PeerRow { name: "B=16, nprobe=64: scan + top-2048", batch: 16, nprobe: 64, bloom: false, peer_ms: 0.725 },
    PeerRow { name: "B=256, nprobe=32: scan + top-2048", batch: 256, nprobe: 32, bloom: false, peer_ms: 3.119 },
    PeerRow { name: "B=256, nprobe=64: scan + top-2048", batch: 256, nprobe: 64, bloom: false, peer_ms: 5.679 },
    PeerRow { name: "Bloom search, 16 queries, 3 AND of 3-way OR, 5 hashes", batch: 16, nprobe: 0, bloom: true, peer_ms: 1.889 },
];

/// Suite settings (what the CLI may change).
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteParams {
    /// Items (20M for comparable ratios).
    pub n: usize,
    pub seed: u64,
    /// Passing fraction of the Bloom row's filters.
    pub filter_pass: f64,
    pub bloom_bits: u32,
    pub iters: usize,
    pub time_budget_s: f64,
    pub warmup: usize,
}

impl Default for SuiteParams {
    fn default() -> Self {
        SuiteParams { n: PEER_N, seed: 1, filter_pass: 0.1, bloom_bits: 1024, iters: 100, time_budget_s: 5.0, warmup: 2 }
    }
}

/// One measured row.
#[derive(Clone, Debug, Serialize)]
pub struct RowResult {
    pub name: &'static str,
    /// silica median, ms: filter + scan (rows 1-4) or filter (row 5).
    pub silica_ms_p50: f64,
    pub silica_ms_p99: f64,
    /// Unique bytes those stages read per batch, and bytes / median time.
    pub bytes_read: u64,
    pub gbps: f64,
    pub peer_ms: f64,
    /// `peer_ms / silica_ms_p50`; None when N was scaled.
    pub ratio: Option<f64>,
    /// The full report of the run.
    pub report: Report,
}

/// The whole suite's result.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteResult {
    pub backend: String,
    pub n: usize,
    /// True when N differs from the peer's 20M (ratios omitted).
    pub scaled: bool,
    pub gen_s: f64,
    pub rows: Vec<RowResult>,
}

/// The suite's index spec.
pub fn spec(p: &SuiteParams) -> SynthSpec {
    SynthSpec {
        n: p.n,
        dim: PEER_DIM,
        nlist: PEER_NLIST.min(p.n),
        seed: p.seed,
        vectors: Vectors::Random,
        filter: Some(FilterSpec { pass: p.filter_pass, and_terms: 3, or_values: 3 }),
        bloom: BloomParams { bits: p.bloom_bits, hashes: 5, seed: 0 },
        embeddings: false,
        ids: false,
    }
}

/// Run the five rows on backend `b` over `s` (made from [`spec`]).
pub fn run_suite<B: Backend>(b: &B, s: &Synth, p: &SuiteParams, gen_s: f64) -> Result<SuiteResult> {
    let nlist = s.index.nlist();
    let mut rows = Vec::new();
    for row in PEER_ROWS {
        let w = Workload {
            batch: row.batch,
            nprobe: row.nprobe.min(nlist),
            k: PEER_K0,
            k0: PEER_K0,
            refine: false,
            probes: if row.bloom { ProbeSource::All } else { ProbeSource::Random },
            filter_only: row.bloom,
            iters: p.iters,
            time_budget_s: p.time_budget_s,
            warmup: p.warmup,
            recall_sample: 0,
        };
        // Rows 1-4 run without a filter: the index's attributes are used by row 5 only.
        let unfiltered;
        let synth = if row.bloom {
            s
        } else {
            unfiltered = Synth { spec: SynthSpec { filter: None, ..s.spec.clone() }, index: s.index.clone() };
            &unfiltered
        };
        let mut report = run::run(b, synth, &w)?;
        report.gen_s = gen_s;
        let per_iter: Vec<f64> = report.samples.iter().map(|t| t[1] + t[2]).collect();
        let ms50 = run::percentile(&per_iter, 0.5) * 1e3;
        let bytes = report.stages.filter.as_ref().map_or(0, |x| x.bytes_read) + report.stages.scan.as_ref().map_or(0, |x| x.bytes_read);
        rows.push(RowResult {
            name: row.name,
            silica_ms_p50: ms50,
            silica_ms_p99: run::percentile(&per_iter, 0.99) * 1e3,
            bytes_read: bytes,
            gbps: run::gbps(bytes, ms50),
            peer_ms: row.peer_ms,
            ratio: (p.n == PEER_N && ms50 > 0.0).then(|| row.peer_ms / ms50),
            report,
        });
    }
    Ok(SuiteResult { backend: b.name().to_string(), n: p.n, scaled: p.n != PEER_N, gen_s, rows })
}

/// The table as Markdown (what `--suite peer` prints without `--json`).
pub fn table(r: &SuiteResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let clock = r.rows.first().map_or("", |x| x.report.clock.as_str());
    let _ = writeln!(
        s,
        "silica bench --suite peer: backend {}, {} clock, N = {}, D = {PEER_DIM}, {} lists, random int8 codes, k0 = {PEER_K0}",
        r.backend,
        clock,
        r.n,
        r.rows.first().map_or(0, |x| x.report.nlist)
    );
    if r.scaled {
        let _ = writeln!(s, "NOTE: N scaled from {PEER_N} to {}: the peer figures are for N = {PEER_N}, so no ratio is given.", r.n);
    }
    let _ = writeln!(s, "\n| workload | silica p50 ms | p99 ms | unique bytes | GB/s | peer ms | ratio (peer/silica) |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &r.rows {
        let ratio = row.ratio.map_or("n/a (N scaled)".to_string(), fmt_ratio);
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {} | {:.1} | {:.3} | {} |",
            row.name, row.silica_ms_p50, row.silica_ms_p99, row.bytes_read, row.gbps, row.peer_ms, ratio
        );
    }
    s
}

/// A ratio with at least two significant digits (`0.0077x`, `0.55x`, `3.21x`).
pub fn fmt_ratio(x: f64) -> String {
    let decimals = if x > 0.0 && x.is_finite() { (1 - x.log10().floor() as i64).max(2) as usize } else { 2 };
    format!("{x:.decimals$}x")
}
