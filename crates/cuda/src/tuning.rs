//! Scan tuning: the kernel-path choices of `Cuda::scan` as data, so tests and the peer
//! harness reach rare paths (generic instead of fast, no PDL, forced fallback, tile
//! widths). Production always runs [`Tuning::default`]; the type and `Cuda::set_tuning`
//! are public only with the `testing` feature.

/// Scan tuning (defaults are the production values; tests change them to reach rare paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Candidate buffer per query: at least this many keys (and 4*K0), at most the rows
    /// the probed lists can hold.
    pub cand_min: usize,
    /// The sample pass reads every `sample_every`-th 64-row word of each probed list.
    pub sample_every: u32,
    /// Send every query through the exact fallback of `scan_select` (testing).
    pub force_fallback: bool,
    /// 64-row words per scan tile (1..=4 on the fast path); 0 = automatic (1 when the
    /// batch probes fewer (query, list) pairs than there are lists, else 2).
    pub tile_words: u32,
    /// Use the cp.async fast path when D <= 128 (tests turn it off to check the generic one).
    pub fast: bool,
    /// Candidates per query staged in shared memory by the top-K0 select (at most 16384).
    pub smem_keys: u32,
    /// Fast path: stream halves across tiles (pipeline never drains between tiles)
    /// instead of one pipeline per tile.
    pub stream: bool,
    /// Programmatic dependent launch between the scan's kernels (sm_90).
    pub pdl: bool,
    /// Small batches (fewer pairs than lists): group and sample in one launch, sampling
    /// each (query, list) pair directly.
    pub fuse_prepare: bool,
    /// Stage 2 with at least half the lists probed: whole-index Bloom masks, then gather.
    pub dense_filter: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            cand_min: 16384,
            sample_every: 64,
            force_fallback: false,
            tile_words: 0,
            fast: true,
            smem_keys: 16384,
            stream: true,
            pdl: true,
            fuse_prepare: true,
            dense_filter: true,
        }
    }
}
