//! Records the exact top-K of shaders/topk.wgsl for a group of queries.

use super::kernels::{groups_for, Kernel, Rec, View};
use crate::error::Result;

/// Largest bitonic block sorted in workgroup memory (BLOCK in topk.wgsl).
const BLOCK: u32 = 2048;
/// Radix passes: 8 bits of the 64-bit (key, !id) composite each.
const PASSES: usize = 8;

/// Where each query's entries come from.
pub enum Lens<'a> {
    /// Every region holds this many entries.
    Fixed(u32),
    /// `lens[q0 + q]` entries.
    Buffer(&'a View, u32),
}

/// Where the K best go: `rows/scores[(q0 + q) * k + i]`, `counts[q0 + q]`.
pub struct Out<'a> {
    pub rows: &'a View,
    pub scores: &'a View,
    pub counts: &'a View,
    pub q0: u32,
    pub write_scores: bool,
}

/// Keep the `k` best entries (score key desc, id asc) of each of `nq` regions of
/// `entries` (`stride` apart, at most `max_len` entries each). `k` >= 1.
#[allow(clippy::too_many_arguments)]
pub fn record(rec: &mut Rec, entries: &View, lens: Lens, nq: u32, stride: u32, max_len: u32, k: u32, out: Out) -> Result<()> {
    debug_assert!(k >= 1);
    let kp = k.next_power_of_two();
    let (use_lens, fixed_len, lens_view, lens_q0) = match lens {
        Lens::Fixed(n) => (0, n, None, 0),
        Lens::Buffer(v, q0) => (1, 0, Some(v.clone()), q0),
    };
    let state = rec.temp(nq as u64 * 32)?;
    let hist = rec.temp(nq as u64 * 1024)?;
    let counter = rec.temp(nq as u64 * 4)?;
    let slots = rec.temp(nq as u64 * kp as u64 * 8)?;
    let lens_view = match lens_view {
        Some(v) => v,
        None => rec.temp(16)?,
    };
    let block_n = kp.min(BLOCK);
    let params = |sk: u32, ske: u32, sj: u32| -> Vec<u32> {
        vec![nq, stride, k, kp, fixed_len, lens_q0, out.q0, out.write_scores as u32, sk, ske, sj, block_n, use_lens, 0, 0, 0]
    };
    let p = params(0, 0, 0);
    rec.dispatch(
        Kernel::TopkClear,
        &p,
        &[(3, &state), (4, &hist), (5, &counter), (6, &slots)],
        [groups_for((nq as u64 * kp.max(256) as u64).max(nq as u64), 256), 1, 1],
    );
    let blocks = groups_for(max_len as u64, 256).min(1024);
    for _ in 0..PASSES {
        rec.dispatch(Kernel::TopkHist, &p, &[(1, entries), (2, &lens_view), (3, &state), (4, &hist)], [blocks, nq, 1]);
        rec.dispatch(Kernel::TopkPick, &p, &[(3, &state), (4, &hist)], [groups_for(nq as u64, 64), 1, 1]);
    }
    rec.dispatch(Kernel::TopkEmit, &p, &[(1, entries), (2, &lens_view), (3, &state), (5, &counter), (6, &slots)], [blocks, nq, 1]);
    if kp >= 2 {
        rec.dispatch(Kernel::SortLocal, &params(2, block_n, block_n / 2), &[(6, &slots)], [kp / block_n, nq, 1]);
        let mut kk = 2 * block_n;
        while kk <= kp {
            let mut j = kk / 2;
            while j >= block_n {
                rec.dispatch(Kernel::SortGlobal, &params(kk, kk, j), &[(6, &slots)], [groups_for(nq as u64 * kp as u64 / 2, 256), 1, 1]);
                j /= 2;
            }
            rec.dispatch(Kernel::SortLocal, &params(kk, kk, block_n / 2), &[(6, &slots)], [kp / block_n, nq, 1]);
            kk *= 2;
        }
    }
    rec.dispatch(
        Kernel::TopkPack,
        &p,
        &[(5, &counter), (6, &slots), (7, out.rows), (8, out.scores), (9, out.counts)],
        [groups_for(nq as u64 * k as u64, 256), 1, 1],
    );
    Ok(())
}
