//! Figures derived from stage outputs: unique bytes per stage, exact recall, percentiles.

use rayon::prelude::*;
use silica_core::backend::{Candidates, Mask, Probes, cpu::dot_i8, cpu::word_span};
use silica_core::filter::Plan;
use silica_core::model::Index;
use silica_core::topk::TopK;

use super::run::{CANDIDATES, FILTER, PROBE, RERANK, SCAN, SELECT};

/// Nearest-rank percentile (`p` in (0, 1]) of unsorted samples; 0 for none.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Unique bytes read per stage for one batch, from the host copies of its stage outputs.
///
/// * probe (computed): centroid codes + scales `L (D + 4)`, query codes + scales `B (D + 4)`.
/// * filter: for every list probed by some query, its words of every Bloom plane any of
///   those queries' plans reads (union over the batch), plus its live-bitset words.
/// * scan: for every probed list, the rows set in some query's mask (union over the batch)
///   times `D + 4` (code + scale), plus every mask word and the query codes. Exact
///   attribute verification (few rows) is not counted.
/// * candidates (the candidate route, [`candidate_bytes`]): per query, its plan's Bloom
///   planes over the whole index plus the live bitset, then `D + 4` per row scored.
/// * rerank: refine: f16 embeddings of the distinct candidates + f32 queries; else the
///   candidate scores. select: candidate rows + scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub stage: [u64; 6],
    /// Scan bytes counting each (query, list) pair.
    pub scanned: u64,
}

impl Bytes {
    /// Add another group's bytes.
    pub fn add(&mut self, o: &Bytes) {
        self.stage.iter_mut().zip(o.stage).for_each(|(a, b)| *a += b);
        self.scanned += o.scanned;
    }
}

/// Stage 4-5 bytes of `b` queries' stage 3 candidates (see [`Bytes`]).
fn rerank_select_bytes(out: &mut Bytes, d: u64, b: usize, scan_cands: Option<&Candidates>, refine: bool, k0: usize) {
    if let Some(c) = scan_cands {
        out.stage[RERANK] = if refine {
            let mut rows: Vec<u32> = (0..c.len()).flat_map(|q| c.query(q).map(|(r, _)| r)).collect();
            rows.sort_unstable();
            rows.dedup();
            rows.len() as u64 * d * 2 + b as u64 * d * 4
        } else {
            (b * k0) as u64 * 4
        };
        out.stage[SELECT] = (b * k0) as u64 * 8;
    }
}

/// [`Bytes`] of a group on the candidate route: `answers` as
/// [`silica_core::backend::Backend::scan_candidates`] returns them (rows scored per query).
pub fn candidate_bytes(
    ix: &Index,
    plans: &[&Plan],
    answers: &[Option<u64>],
    scan_cands: Option<&Candidates>,
    refine: bool,
    k0: usize,
) -> Bytes {
    let d = ix.dim as u64;
    let words = ix.bloom.words as u64;
    let live = ix.live.is_some() as u64;
    let mut out = Bytes::default();
    for (plan, a) in plans.iter().zip(answers) {
        out.stage[CANDIDATES] += words * (plane_rows(plan).len() as u64 + live) * 8 + a.unwrap_or(0) * (d + 4) + d + 4;
    }
    out.scanned = out.stage[CANDIDATES];
    rerank_select_bytes(&mut out, d, plans.len(), scan_cands, refine, k0);
    out
}

fn plane_rows(plan: &Plan) -> Vec<u32> {
    let mut v: Vec<u32> = plan.terms.iter().flat_map(|t| t.bloom_rows.iter().flatten().copied()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Compute [`Bytes`] for a batch. `scan_cands` are the scan's candidates (before rerank).
#[allow(clippy::too_many_arguments)]
pub fn batch_bytes(
    ix: &Index,
    b: usize,
    probes: &Probes,
    computed: bool,
    plans: &[&Plan],
    mask: &Mask,
    scan_cands: Option<&Candidates>,
    refine: bool,
    k0: usize,
) -> Bytes {
    let (d, np) = (ix.dim as u64, probes.nprobe);
    let mut out = Bytes::default();
    if computed {
        out.stage[PROBE] = ix.nlist() as u64 * (d + 4) + b as u64 * (d + 4);
    }
    // Queries probing each list.
    let mut by_list: Vec<Vec<usize>> = vec![Vec::new(); ix.nlist()];
    for (p, &l) in probes.lists.iter().enumerate() {
        by_list[l as usize].push(p);
    }
    let planes: Vec<Vec<u32>> = plans.iter().map(|p| plane_rows(p)).collect();
    let live = ix.live.is_some() as u64;
    let mut plane_seen = vec![false; ix.bloom.params.bits as usize];
    let (mut filter, mut scan) = (0u64, 0u64);
    for (l, pairs) in by_list.iter().enumerate() {
        if pairs.is_empty() {
            continue;
        }
        let (w0, w1) = word_span(&ix.list_range(l));
        let words = (w1 - w0) as u64;
        let mut distinct = 0u64;
        for &p in pairs {
            for &r in &planes[p / np] {
                if !std::mem::replace(&mut plane_seen[r as usize], true) {
                    distinct += 1;
                }
            }
        }
        for &p in pairs {
            planes[p / np].iter().for_each(|&r| plane_seen[r as usize] = false);
        }
        filter += words * (distinct + live) * 8;
        let mut union = vec![0u64; w1 - w0];
        for &p in pairs {
            let m = &mask.words[mask.offsets[p]..mask.offsets[p + 1]];
            union.iter_mut().zip(m).for_each(|(u, &w)| *u |= w);
            out.scanned += m.iter().map(|w| w.count_ones() as u64).sum::<u64>() * (d + 4);
        }
        scan += union.iter().map(|w| w.count_ones() as u64).sum::<u64>() * (d + 4);
    }
    out.stage[FILTER] = filter;
    out.stage[SCAN] = scan + mask.words.len() as u64 * 8 + b as u64 * (d + 4);
    rerank_select_bytes(&mut out, d, b, scan_cands, refine, k0);
    out
}

/// Exact int8 scores of the rows passing `plan` (live rows only), best first, top `k`.
pub fn exact_top_k(ix: &Index, q_codes: &[i8], plan: &Plan, k: usize) -> Vec<silica_core::topk::Scored> {
    const CHUNK: usize = 16384;
    let n = ix.len();
    let parts: Vec<Vec<silica_core::topk::Scored>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut top = TopK::new(k);
            for r in c * CHUNK..((c + 1) * CHUNK).min(n) {
                if ix.live_word(r / 64) >> (r % 64) & 1 == 0 {
                    continue;
                }
                let s = dot_i8(q_codes, ix.items.row(r)) as f32 * ix.items.scale[r];
                if top.admits(s, r as u32) && plan.matches_row(ix, r) {
                    top.push(s, r as u32);
                }
            }
            top.into_sorted()
        })
        .collect();
    silica_core::topk::top_k(parts.into_iter().flatten().collect(), k)
}

/// Tie-aware recall@k of `returned` rows for one query: hits are distinct returned rows
/// that pass the filter and whose exact int8 score reaches the k-th exact score;
/// divided by `min(k, passing items)` (1.0 when nothing passes and nothing is returned).
pub fn recall_at_k(ix: &Index, q_codes: &[i8], plan: &Plan, returned: &[u32], k: usize) -> f64 {
    let exact = exact_top_k(ix, q_codes, plan, k);
    if exact.is_empty() {
        return if returned.is_empty() { 1.0 } else { 0.0 };
    }
    let kth = exact[exact.len() - 1].score;
    let mut seen = std::collections::HashSet::new();
    let hits = returned
        .iter()
        .take(k)
        .filter(|&&r| {
            let r = r as usize;
            r < ix.len()
                && seen.insert(r)
                && ix.live_word(r / 64) >> (r % 64) & 1 == 1
                && plan.matches_row(ix, r)
                && dot_i8(q_codes, ix.items.row(r)) as f32 * ix.items.scale[r] >= kth
        })
        .count();
    hits.min(exact.len()) as f64 / exact.len() as f64
}

/// GB/s of `bytes` in `ms` milliseconds (0 when no time was measured).
pub fn gbps(bytes: u64, ms: f64) -> f64 {
    if ms > 0.0 { bytes as f64 / (ms * 1e6) } else { 0.0 }
}
