//! Records the exact top-K of shaders/topk.wgsl for a group of queries.

use super::kernels::{Kernel, Rec, View, groups_for};
use super::params;
use silica_core::error::Result;

/// Largest bitonic block sorted in workgroup memory (BLOCK in topk.wgsl).
const BLOCK: u32 = 2048;
/// Radix passes: 8 bits of the 64-bit (key, !id) composite each.
pub const PASSES: usize = 8;

/// Where the K best go: `rows/scores[(q0 + q) * k + i]`, `counts[q0 + q]`.
pub struct Out<'a> {
    pub rows: &'a View,
    pub scores: &'a View,
    pub counts: &'a View,
    pub q0: u32,
    pub write_scores: bool,
}

/// The selection state of one query group: per-query radix state, histograms, the
/// emit counter and the kp = next_pow2(K) output slots.
pub struct Sel {
    pub nq: u32,
    pub k: u32,
    pub kp: u32,
    pub state: View,
    pub hist: View,
    pub counter: View,
    pub slots: View,
}

impl Sel {
    /// Scratch for `nq` queries keeping `k` >= 1 entries each.
    pub fn new(rec: &mut Rec, nq: u32, k: u32) -> Result<Sel> {
        debug_assert!(k >= 1);
        let kp = k.next_power_of_two();
        Ok(Sel {
            nq,
            k,
            kp,
            state: rec.temp(nq as u64 * 32)?,
            hist: rec.temp(nq as u64 * 1024)?,
            counter: rec.temp(nq as u64 * 4)?,
            slots: rec.temp(nq as u64 * kp as u64 * 8)?,
        })
    }

    /// topk.wgsl's uniform block with this group's sizes, every other field zero
    /// (each pass sets the fields it reads with struct update syntax).
    fn base(&self) -> params::Topk {
        params::Topk {
            nq: self.nq,
            stride: 0,
            k: self.k,
            kp: self.kp,
            fixed_len: 0,
            lens_q0: 0,
            out_q0: 0,
            write_scores: 0,
            sk: 0,
            ske: 0,
            sj: 0,
            block_n: self.kp.min(BLOCK),
            use_lens: 0,
            _pad1: 0,
            _pad2: 0,
            _pad3: 0,
        }
    }

    /// Reset state, histograms, counters and slots.
    pub fn clear(&self, rec: &mut Rec) {
        let p = self.base();
        let n = (self.nq as u64 * self.kp.max(256) as u64).max(self.nq as u64);
        rec.dispatch(
            Kernel::TopkClear,
            &p,
            &[(3, &self.state), (4, &self.hist), (5, &self.counter), (6, &self.slots)],
            [groups_for(n, 256), 1, 1],
        );
    }

    /// One radix step: turn the last histogram into the next prefix digit.
    pub fn pick(&self, rec: &mut Rec) {
        let p = self.base();
        rec.dispatch(Kernel::TopkPick, &p, &[(3, &self.state), (4, &self.hist)], [self.nq, 1, 1]);
    }

    /// Sort the emitted slots (bitonic) and write `[B, k]` rows/scores and counts.
    pub fn finish(&self, rec: &mut Rec, out: Out) {
        let (nq, kp) = (self.nq, self.kp);
        let block_n = kp.min(BLOCK);
        let sp =
            |[sk, ske, sj]: [u32; 3]| params::Topk { out_q0: out.q0, write_scores: out.write_scores as u32, sk, ske, sj, ..self.base() };
        if kp >= 2 {
            rec.dispatch(Kernel::SortLocal, &sp([2, block_n, block_n / 2]), &[(6, &self.slots)], [kp / block_n, nq, 1]);
            let mut kk = 2 * block_n;
            while kk <= kp {
                let mut j = kk / 2;
                while j >= block_n {
                    rec.dispatch(
                        Kernel::SortGlobal,
                        &sp([kk, kk, j]),
                        &[(6, &self.slots)],
                        [groups_for(nq as u64 * kp as u64 / 2, 256), 1, 1],
                    );
                    j /= 2;
                }
                rec.dispatch(Kernel::SortLocal, &sp([kk, kk, block_n / 2]), &[(6, &self.slots)], [kp / block_n, nq, 1]);
                kk *= 2;
            }
        }
        rec.dispatch(
            Kernel::TopkPack,
            &sp([0; 3]),
            &[(5, &self.counter), (6, &self.slots), (7, out.rows), (8, out.scores), (9, out.counts)],
            [groups_for(nq as u64 * self.k as u64, 256), 1, 1],
        );
    }
}

/// Keep the `k` best entries (score key desc, id asc) of each of `nq` regions of
/// `entries` (vec2 (key, id), `stride` apart, `len` entries each, `max_len` the most any
/// region holds: it sizes the grid). `k` >= 1.
#[allow(clippy::too_many_arguments)]
pub fn record(rec: &mut Rec, entries: &View, len: u32, nq: u32, stride: u32, max_len: u32, k: u32, out: Out) -> Result<()> {
    let sel = Sel::new(rec, nq, k)?;
    // The shaders can also read per-query lengths from a buffer (use_lens); no stage
    // needs that, so binding 2 is a small placeholder.
    let lens_view = rec.temp(16)?;
    sel.clear(rec);
    let p = params::Topk { stride, fixed_len: len, lens_q0: 0, use_lens: 0, ..sel.base() };
    // Each thread walks at least ~16 entries (runs of equal digits add at once).
    let blocks = groups_for(max_len as u64, 256 * 16);
    for _ in 0..PASSES {
        rec.dispatch(Kernel::TopkHist, &p, &[(1, entries), (2, &lens_view), (3, &sel.state), (4, &sel.hist)], [blocks, nq, 1]);
        sel.pick(rec);
    }
    rec.dispatch(
        Kernel::TopkEmit,
        &p,
        &[(1, entries), (2, &lens_view), (3, &sel.state), (5, &sel.counter), (6, &sel.slots)],
        [blocks, nq, 1],
    );
    sel.finish(rec, out);
    Ok(())
}
