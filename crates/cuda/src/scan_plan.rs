//! The scan's launch plan: from the batch's sizes and the tuning, which scan kernel
//! instantiation runs each pass, with what grid, block and shared memory, and how large
//! each scratch buffer is. Pure host arithmetic (unit-tested without a GPU); `Cuda::scan`
//! allocates what it says and launches what it says.

use super::device::Launch;
use super::kernels::KernelId;
use super::{GROUP_SMEM_LISTS, MAX_SMEM_KEYS, SORT_CAP, THRESHOLD_SMEM_SAMPLES, Tuning};
use silica_core::error::{Error, Result};

/// The device facts a plan depends on (the backend's device on a GPU; a table in tests).
pub(crate) trait ScanDevice {
    /// Multiprocessors.
    fn sms(&self) -> u32;
    /// Resident blocks of `k` per multiprocessor with `block` threads and `smem` bytes of
    /// dynamic shared memory (at least 1).
    fn blocks_per_sm(&self, k: KernelId, block: u32, smem: usize) -> u32;
    /// Compute capability major version (programmatic dependent launch needs 9).
    fn cc_major(&self) -> i32;
    /// Bytes of shared memory per warp of the fast scan kernels (`sizeof(WarpSmem)`).
    fn warp_smem(&self) -> u32;
    /// Bytes of shared memory per warp of the streamed scan kernels (`sizeof(StreamSmem)`).
    fn stream_smem(&self) -> u32;
}

/// The batch and index sizes a plan depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanShape<'a> {
    /// Queries.
    pub b: usize,
    /// Lists probed per query.
    pub nprobe: usize,
    /// Lists of the index.
    pub lists: usize,
    /// 16-byte code chunks per row (D / 16 rounded up).
    pub nc: usize,
    /// Candidates kept per query (top-K0), > 0.
    pub k0: usize,
    /// Rows of the `nprobe` largest lists (an upper bound of a query's scanned rows).
    pub max_rows: u64,
    /// 64-row words of every list, largest first.
    pub nw_desc: &'a [u64],
}

/// How tiles reach the dot products (the `Pipe` policy of `scan_kernel<Pipe, SAMPLE>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pipe {
    /// Any D: codes straight from global memory (`scan_sample` / `scan_main`).
    Generic,
    /// D <= 128, one cp.async pipeline per tile (`*_fast`).
    Fast,
    /// D <= 128, one pipeline across a warp's tiles (`*_stream`).
    Stream,
}

/// Everything `Cuda::scan` decides before it touches the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScanPlan {
    pub pipe: Pipe,
    /// 64-row words per tile of the main pass.
    pub tw: u32,
    /// The sample reads every `se`-th word of each probed list.
    pub se: u32,
    /// Candidate buffer per query (keys), >= 1.
    pub cap: usize,
    /// Sample buffer per query (keys), >= 1.
    pub cs: usize,
    /// K0 rounded up to a power of two (the select's sort width).
    pub p: usize,
    /// Group counters in shared memory (few lists) rather than global scratch.
    pub smem_counts: bool,
    /// Sampled words per (query, list) pair at most (the fused prepare's work per pair).
    pub spp: u32,
    /// Small batch: group and pair-wise sample in one `scan_prepare` launch (`prepare`;
    /// else `group`, then `sample`).
    pub fused: bool,
    /// Tile lookup table entries of the main pass and of the sample.
    pub tbuckets: usize,
    pub sbuckets: usize,
    /// Candidates `scan_select` stages in shared memory.
    pub smem_keys: u32,
    /// The select writes `[B, p]` sort buffers (p > SORT_CAP) and sorts them globally.
    pub sortbuf: bool,
    pub group: Launch,
    pub prepare: Launch,
    pub sample: (KernelId, Launch),
    pub threshold: Launch,
    pub main: (KernelId, Launch),
    pub select: Launch,
}

/// Element counts of the scan's scratch buffers (see `Cuda::scan` for their layouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanBuffers {
    /// u32 `[cnt L][fill L][count B][samp_count B][samp_masked B]`, zeroed.
    pub zeroed: usize,
    /// u32 `[pair_start L+1][tile_start L+1][stile_start L+1]`.
    pub starts: usize,
    /// u32 pairs grouped by list.
    pub list_pairs: usize,
    /// u32 tile lookup tables `[main][sample]`.
    pub buckets: usize,
    /// u32 sampled keys `[B, cs]`.
    pub samp: usize,
    /// u32 thresholds `[B]`.
    pub tkey: usize,
    /// u64 candidate keys `[B, cap]`.
    pub cand: usize,
    /// u64 sort buffers `[B, p]` (0: not needed).
    pub sortbuf: usize,
}

impl ScanPlan {
    /// The plan of a scan of `s` under tuning `t` on device `d` (`profiling`: phase events
    /// are recorded between kernels, so no PDL). Errors: the batch's buffers would exceed
    /// 2^34 keys (split the batch).
    pub(crate) fn new(s: &ScanShape, t: &Tuning, d: &impl ScanDevice, profiling: bool) -> Result<ScanPlan> {
        let (b, l, npairs) = (s.b, s.lists, s.b * s.nprobe);
        let se = t.sample_every.max(1);
        let fast = t.fast && s.nc <= 8;
        let tw = match t.tile_words {
            0 if npairs < l => 1,
            0 => 2,
            w if fast => w.min(4),
            w => w,
        };
        let cap = (s.max_rows as usize).min(t.cand_min.max(4 * s.k0)).max(1);
        let sampled: u64 = s.nw_desc.iter().take(s.nprobe).map(|w| w.div_ceil(se as u64)).sum();
        let cs = (sampled as usize * 64).max(1);
        if (b as u64) * (cap as u64) >= 1 << 34 || (b as u64) * (cs as u64) >= 1 << 34 {
            return Err(Error::param("queries", "scan buffers would exceed 128 GiB; split the batch"));
        }
        let buckets = |per: u64| s.nw_desc.iter().map(|w| w.div_ceil(per)).sum::<u64>() as usize / 64 + 2;
        let smem_counts = l as u32 <= GROUP_SMEM_LISTS;
        let group_smem = if smem_counts { (6 * l as u32 + 3) * 4 } else { 0 };
        let (pipe, sample, main, smem) = match (fast, t.stream) {
            (true, true) => (Pipe::Stream, KernelId::ScanSampleStream, KernelId::ScanMainStream, 8 * d.stream_smem()),
            (true, false) => (Pipe::Fast, KernelId::ScanSampleFast, KernelId::ScanMainFast, 8 * d.warp_smem()),
            _ => (Pipe::Generic, KernelId::ScanSample, KernelId::ScanMain, 0),
        };
        let blocks = d.sms() * d.blocks_per_sm(main, 256, smem as usize);
        let pdl = t.pdl && d.cc_major() >= 9 && !profiling;
        let max_nw = s.nw_desc.first().copied().unwrap_or(0);
        let spp = (max_nw as u32).div_ceil(se);
        let fused = t.fuse_prepare && npairs < l && (npairs as u64) * (spp as u64) < 1 << 31;
        let pblocks = if fused { 1 + d.sms() * d.blocks_per_sm(KernelId::ScanPrepare, 1024, group_smem as usize) } else { 0 };
        let p = s.k0.next_power_of_two();
        let smem_keys = t.smem_keys.min(MAX_SMEM_KEYS);
        Ok(ScanPlan {
            pipe,
            tw,
            se,
            cap,
            cs,
            p,
            smem_counts,
            spp,
            fused,
            tbuckets: buckets(tw as u64),
            sbuckets: buckets(se as u64),
            smem_keys,
            sortbuf: p > SORT_CAP,
            group: Launch::new(1, 1024, group_smem),
            prepare: Launch::new(pblocks, 1024, group_smem),
            sample: (sample, Launch::new(blocks, 256, smem).pdl(pdl)),
            threshold: Launch::new(b as u32, 1024, THRESHOLD_SMEM_SAMPLES * 4).pdl(pdl),
            main: (main, Launch::new(blocks, 256, smem).pdl(pdl)),
            select: Launch::new(b as u32, 1024, smem_keys * 8).pdl(pdl),
        })
    }

    /// Buffer lengths (elements) of the scan's workspace for batch shape `s`.
    pub(crate) fn buffers(&self, s: &ScanShape) -> ScanBuffers {
        let (b, l) = (s.b, s.lists);
        ScanBuffers {
            zeroed: 2 * l + 3 * b,
            starts: 3 * (l + 1),
            list_pairs: b * s.nprobe,
            buckets: self.tbuckets + self.sbuckets,
            samp: b * self.cs,
            tkey: b,
            cand: b * self.cap,
            sortbuf: if self.sortbuf { b * self.p } else { 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// An H200-like device: 132 SMs, the scan kernels' occupancies as given.
    struct FakeDev {
        sms: u32,
        cc: i32,
    }

    impl ScanDevice for FakeDev {
        fn sms(&self) -> u32 {
            self.sms
        }
        fn blocks_per_sm(&self, k: KernelId, block: u32, smem: usize) -> u32 {
            // Distinct per kernel and input, so a plan that asks about the wrong kernel or
            // shared size shows in its grid.
            let base = match k {
                KernelId::ScanMainStream | KernelId::ScanMainFast => 2,
                KernelId::ScanMain => 3,
                KernelId::ScanPrepare => 1,
                _ => 7,
            };
            base + (smem as u32 / 100_000) + (block == 1024) as u32 * 10
        }
        fn cc_major(&self) -> i32 {
            self.cc
        }
        fn warp_smem(&self) -> u32 {
            13_232
        }
        fn stream_smem(&self) -> u32 {
            14_016
        }
    }

    const H200: FakeDev = FakeDev { sms: 132, cc: 9 };

    fn shape(b: usize, nprobe: usize, nc: usize, k0: usize, nw_desc: &[u64], rows: u64) -> ScanShape<'_> {
        ScanShape { b, nprobe, lists: nw_desc.len(), nc, k0, max_rows: rows, nw_desc }
    }

    #[test]
    fn default_tuning_picks_the_stream_pipeline_for_d_up_to_128() {
        let nw = vec![77u64; 4096];
        let s = shape(256, 64, 8, 2048, &nw, 64 * 4900);
        let p = ScanPlan::new(&s, &Tuning::default(), &H200, false).unwrap();
        assert_eq!(p.pipe, Pipe::Stream);
        assert_eq!(p.sample.0, KernelId::ScanSampleStream);
        assert_eq!(p.main.0, KernelId::ScanMainStream);
        assert_eq!(p.main.1.smem, 8 * 14_016);
        assert_eq!(p.main.1.grid, (132 * (2 + 1), 1, 1), "blocks = SMs x occupancy at 8 warps' shared memory");
        assert_eq!(p.main.1.block, 256);
        assert!(p.main.1.pdl && p.sample.1.pdl && p.threshold.pdl && p.select.pdl);
        assert_eq!(p.tw, 2, "B*nprobe >= lists: 2-word tiles");
        assert!(!p.fused, "large batch: separate group and sample");
        assert_eq!(p.se, 64);
        // D = 129..: the generic kernels, no dynamic shared memory.
        let s9 = ScanShape { nc: 9, ..s };
        let g = ScanPlan::new(&s9, &Tuning::default(), &H200, false).unwrap();
        assert_eq!((g.pipe, g.main.0, g.sample.0, g.main.1.smem), (Pipe::Generic, KernelId::ScanMain, KernelId::ScanSample, 0));
        assert_eq!(g.main.1.grid.0, 132 * 3);
        let f = ScanPlan::new(&s, &Tuning { stream: false, ..Tuning::default() }, &H200, false).unwrap();
        assert_eq!(
            (f.pipe, f.main.0, f.sample.0, f.main.1.smem),
            (Pipe::Fast, KernelId::ScanMainFast, KernelId::ScanSampleFast, 8 * 13_232)
        );
    }

    #[test]
    fn small_batches_fuse_group_and_sample_with_one_word_tiles() {
        let nw = vec![77u64; 4096];
        let s = shape(16, 32, 8, 2048, &nw, 64 * 4900);
        let p = ScanPlan::new(&s, &Tuning::default(), &H200, false).unwrap();
        assert_eq!(p.tw, 1);
        assert!(p.fused);
        assert_eq!(p.spp, 2, "ceil(77 / 64) sampled words per pair");
        assert_eq!(p.prepare.grid.0, 1 + 132 * 11, "block 0 groups, the rest sample");
        assert_eq!(p.prepare.block, 1024);
        assert!(p.smem_counts);
        assert_eq!(p.prepare.smem, (6 * 4096 + 3) * 4);
        assert!(!ScanPlan::new(&s, &Tuning { fuse_prepare: false, ..Tuning::default() }, &H200, false).unwrap().fused);
    }

    #[test]
    fn edge_sizes() {
        // One query, one list of one row, k0 = 1.
        let s = shape(1, 1, 1, 1, &[1], 1);
        let p = ScanPlan::new(&s, &Tuning::default(), &H200, false).unwrap();
        assert_eq!((p.cap, p.cs, p.p, p.tw), (1, 64, 1, 2));
        assert!(!p.fused, "1 pair is not fewer than 1 list");
        assert_eq!(p.buffers(&s), ScanBuffers { zeroed: 5, starts: 6, list_pairs: 1, buckets: 4, samp: 64, tkey: 1, cand: 1, sortbuf: 0 });
        // Empty lists: buffers still hold one key.
        let s0 = shape(3, 2, 4, 10, &[0, 0, 0], 0);
        let p0 = ScanPlan::new(&s0, &Tuning::default(), &H200, false).unwrap();
        assert_eq!((p0.cap, p0.cs, p0.spp), (1, 1, 0));
        // k0 beyond every candidate: the buffer is bounded by the rows; the sort width is
        // k0's power of two and past SORT_CAP the select sorts in global buffers.
        let nw = [330u64, 310, 170, 50, 30];
        let s1 = shape(5, 3, 8, 5000, &nw, 1234);
        let p1 = ScanPlan::new(&s1, &Tuning::default(), &H200, false).unwrap();
        assert_eq!(p1.cap, 1234);
        assert_eq!(p1.p, 8192);
        assert!(p1.sortbuf);
        assert_eq!(p1.buffers(&s1).sortbuf, 5 * 8192);
        // Words not multiples of the sample step or tile: sampled words round up per list.
        let t = Tuning { sample_every: 7, tile_words: 3, ..Tuning::default() };
        let p2 = ScanPlan::new(&s1, &t, &H200, false).unwrap();
        assert_eq!(p2.cs, (48 + 45 + 25) * 64, "ceil(330/7) + ceil(310/7) + ceil(170/7) words of the 3 largest lists");
        assert_eq!(p2.tw, 3);
        assert_eq!(p2.sbuckets, (48 + 45 + 25 + 8 + 5) / 64 + 2, "sampled words of every list");
        assert_eq!(p2.tbuckets, (110 + 104 + 57 + 17 + 10) / 64 + 2, "3-word tiles of every list");
        assert_eq!(p2.spp, 48);
        // The fast path holds at most 4 words per tile; the generic one any.
        assert_eq!(ScanPlan::new(&s1, &Tuning { tile_words: 9, ..Tuning::default() }, &H200, false).unwrap().tw, 4);
        let s9 = ScanShape { nc: 20, ..s1 };
        assert_eq!(ScanPlan::new(&s9, &Tuning { tile_words: 9, ..Tuning::default() }, &H200, false).unwrap().tw, 9);
        // sample_every 0 means 1.
        assert_eq!(ScanPlan::new(&s1, &Tuning { sample_every: 0, ..Tuning::default() }, &H200, false).unwrap().se, 1);
    }

    #[test]
    fn no_pdl_before_sm90_or_when_profiling() {
        let nw = vec![10u64; 100];
        let s = shape(8, 4, 8, 100, &nw, 640);
        for (dev, prof, want) in
            [(FakeDev { sms: 1, cc: 8 }, false, false), (FakeDev { sms: 1, cc: 9 }, true, false), (FakeDev { sms: 1, cc: 9 }, false, true)]
        {
            let p = ScanPlan::new(&s, &Tuning::default(), &dev, prof).unwrap();
            assert_eq!([p.sample.1.pdl, p.threshold.pdl, p.main.1.pdl, p.select.pdl], [want; 4]);
            assert!(!p.group.pdl && !p.prepare.pdl, "the first kernel of a scan never overlaps its predecessor");
        }
        let p = ScanPlan::new(&s, &Tuning { pdl: false, ..Tuning::default() }, &H200, false).unwrap();
        assert!(!p.main.1.pdl);
    }

    #[test]
    fn oversized_batches_are_a_typed_error() {
        let nw = vec![1u64 << 20; 4];
        let s = shape(1 << 16, 4, 8, 1 << 20, &nw, 1 << 26);
        let e = ScanPlan::new(&s, &Tuning::default(), &H200, false).unwrap_err();
        assert!(e.to_string().contains("split the batch"), "{e}");
    }

    /// Random shapes: the invariants every plan keeps.
    #[test]
    fn random_shapes_keep_the_invariants() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5ca9);
        for _ in 0..2000 {
            let l = rng.random_range(1..300usize);
            let mut nw: Vec<u64> = (0..l).map(|_| rng.random_range(0..200u64)).collect();
            nw.sort_unstable_by(|a, b| b.cmp(a));
            let np = rng.random_range(1..=l);
            let b = rng.random_range(1..70usize);
            let k0 = rng.random_range(1..20_000usize);
            let rows: u64 = nw.iter().take(np).sum::<u64>() * 64;
            let s = shape(b, np, rng.random_range(1..20usize), k0, &nw, rows);
            let t = Tuning {
                sample_every: rng.random_range(0..100),
                tile_words: rng.random_range(0..6),
                cand_min: rng.random_range(1..40_000),
                smem_keys: rng.random_range(0..40_000),
                stream: rng.random(),
                fast: rng.random(),
                fuse_prepare: rng.random(),
                ..Tuning::default()
            };
            let p = ScanPlan::new(&s, &t, &H200, false).unwrap();
            assert!(p.cap >= 1 && p.cap as u64 <= rows.max(1), "{p:?}");
            assert!(p.cap >= (4 * k0).min(rows as usize).max(1), "room for 4 K0 when the lists hold them");
            assert!(p.cs == 1 || p.cs.is_multiple_of(64));
            assert!(p.p >= k0 && p.p.is_power_of_two() && p.p < 2 * k0.max(1));
            assert!(p.tw >= 1 && (p.pipe == Pipe::Generic || p.tw <= 4));
            assert_eq!(p.pipe == Pipe::Generic, !(t.fast && s.nc <= 8));
            assert!(p.se >= 1);
            assert!(p.smem_keys <= MAX_SMEM_KEYS && p.select.smem == p.smem_keys * 8);
            assert!(!p.fused || b * np < l);
            assert_eq!(p.sample.1.grid, p.main.1.grid);
            assert_eq!(p.threshold.grid.0 as usize, b);
            assert_eq!(p.select.grid.0 as usize, b);
            let buf = p.buffers(&s);
            assert_eq!(buf.cand, b * p.cap);
            assert_eq!(buf.sortbuf > 0, p.p > SORT_CAP);
            // Tile lookup tables cover every tile: one entry per 64 tiles, plus slack.
            let tiles: u64 = nw.iter().map(|w| w.div_ceil(p.tw as u64)).sum();
            assert!(p.tbuckets as u64 * 64 > tiles);
        }
    }
}
