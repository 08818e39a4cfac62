//! The CPU reference backend: every stage on the host, queries in parallel with rayon.
//! Its stage 1-3 outputs are the golden outputs the GPU backends must match bit for bit.

use super::{Backend, Candidates, Mask, Probes, QueryBatch, Rerank};
use crate::error::{Error, Result};
use crate::filter::Plan;
use crate::model::Index;
use crate::topk::TopK;
use rayon::prelude::*;
use std::sync::Arc;

/// The CPU backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// int8 dot product in i32 (exact). Uses AVX2 when the CPU has it.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    // 16 codes per step: sign-extend to i16, multiply-add adjacent pairs into i32 lanes.
    while i + 16 <= n {
        // SAFETY: i + 16 <= n bounds both 16-byte loads.
        unsafe {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
            let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
        }
        i += 16;
    }
    let lo = _mm256_castsi256_si128(acc);
    let hi = _mm256_extracti128_si256(acc, 1);
    let s = _mm_add_epi32(lo, hi);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    let mut total = _mm_cvtsi128_si32(s);
    while i < n {
        total += a[i] as i32 * b[i] as i32;
        i += 1;
    }
    total
}

/// Written so that LLVM vectorizes it (widen to i16, multiply-add pairs to i32).
#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0i32; 32];
    let chunks = n / 32;
    for c in 0..chunks {
        let (x, y) = (&a[c * 32..c * 32 + 32], &b[c * 32..c * 32 + 32]);
        for i in 0..32 {
            acc[i] += x[i] as i16 as i32 * y[i] as i16 as i32;
        }
    }
    let mut s: i32 = acc.iter().sum();
    for i in chunks * 32..n {
        s += a[i] as i32 * b[i] as i32;
    }
    s
}

/// f32 · f16 dot product in f32, sequential order (the refine score).
#[inline]
pub fn dot_f32_f16(q: &[f32], e: &[half::f16]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = q.len() / 8;
    for c in 0..chunks {
        for i in 0..8 {
            acc[i] += q[c * 8 + i] * e[c * 8 + i].to_f32();
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for i in chunks * 8..q.len() {
        s += q[i] * e[i].to_f32();
    }
    s
}

/// Words `[first, last)` covering rows `range` of a 64-row-word bitmap.
#[inline]
pub fn word_span(range: &std::ops::Range<usize>) -> (usize, usize) {
    (range.start / 64, range.end.div_ceil(64))
}

/// Bits of word `w` that fall inside `range`.
#[inline]
pub fn range_bits(w: usize, range: &std::ops::Range<usize>) -> u64 {
    let lo = (w * 64).max(range.start);
    let hi = ((w + 1) * 64).min(range.end);
    if hi <= lo {
        return 0;
    }
    let n = hi - lo;
    let m = if n == 64 { !0u64 } else { (1u64 << n) - 1 };
    m << (lo - w * 64)
}

impl Backend for Cpu {
    type Resident = Arc<Index>;
    type Probes = Probes;
    type Mask = Mask;
    type Cands = Candidates;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload(&self, index: &Arc<Index>) -> Result<Arc<Index>> {
        Ok(index.clone())
    }

    fn probe(&self, ix: &Arc<Index>, q: &QueryBatch, nprobe: usize) -> Result<Probes> {
        let (d, l) = (ix.dim, ix.nlist());
        if nprobe > l {
            return Err(Error::param("nprobe", format!("{nprobe} > nlist {l}")));
        }
        let c = &ix.centroid_codes;
        let lists: Vec<u32> = (0..q.len)
            .into_par_iter()
            .flat_map_iter(|b| {
                let qc = &q.codes[b * d..(b + 1) * d];
                let mut top = TopK::new(nprobe);
                for j in 0..l {
                    top.push(dot_i8(qc, c.row(j)) as f32 * c.scale[j], j as u32);
                }
                top.into_sorted().into_iter().map(|s| s.row)
            })
            .collect();
        Ok(Probes { nprobe, lists })
    }

    fn filter(&self, ix: &Arc<Index>, plans: &[&Plan], probes: &Probes) -> Result<Mask> {
        let np = probes.nprobe;
        // Per query: the words of each probed list, and each list's word count.
        let per_query: Vec<(Vec<u64>, Vec<usize>)> = plans
            .par_iter()
            .enumerate()
            .map(|(b, plan)| {
                let mut words = Vec::new();
                let mut lens = Vec::with_capacity(np);
                for &l in &probes.lists[b * np..(b + 1) * np] {
                    let range = ix.list_range(l as usize);
                    let (w0, w1) = word_span(&range);
                    let before = words.len();
                    if plan.is_all() {
                        words.extend((w0..w1).map(|w| range_bits(w, &range) & ix.live_word(w)));
                    } else {
                        words.extend((w0..w1).map(|w| plan.bloom_word(&ix.bloom, w) & range_bits(w, &range) & ix.live_word(w)));
                    }
                    lens.push(words.len() - before);
                }
                (words, lens)
            })
            .collect();
        let mut offsets = Vec::with_capacity(probes.lists.len() + 1);
        offsets.push(0);
        let mut words = Vec::new();
        for (w, lens) in per_query {
            for len in lens {
                offsets.push(offsets.last().copied().unwrap_or(0) + len);
            }
            words.extend(w);
        }
        Ok(Mask { offsets, words })
    }

    fn count(&self, ix: &Arc<Index>, plans: &[&Plan]) -> Result<Vec<u64>> {
        let all = 0..ix.len();
        if ix.live.is_none() && plans.iter().all(|p| p.is_all()) {
            return Ok(vec![ix.len() as u64; plans.len()]);
        }
        Ok(plans
            .par_iter()
            .map(|plan| {
                (0..ix.bloom.words)
                    .map(|w| (plan.bloom_word(&ix.bloom, w) & range_bits(w, &all) & ix.live_word(w)).count_ones() as u64)
                    .sum()
            })
            .collect())
    }

    fn scan(&self, ix: &Arc<Index>, q: &QueryBatch, probes: &Probes, mask: &Mask, plans: &[&Plan], k0: usize) -> Result<Candidates> {
        let (d, np) = (ix.dim, probes.nprobe);
        let per_query: Vec<Vec<crate::topk::Scored>> = (0..q.len)
            .into_par_iter()
            .map(|b| {
                let qc = &q.codes[b * d..(b + 1) * d];
                let plan = plans[b];
                let mut top = TopK::new(k0);
                for j in 0..np {
                    let p = b * np + j;
                    let l = probes.lists[p] as usize;
                    let (w0, _) = word_span(&ix.list_range(l));
                    for (i, &word) in mask.words[mask.offsets[p]..mask.offsets[p + 1]].iter().enumerate() {
                        let mut bits = word;
                        while bits != 0 {
                            let r = (w0 + i) * 64 + bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            let s = dot_i8(qc, ix.items.row(r)) as f32 * ix.items.scale[r];
                            // Exact verification only for items that would enter the top-K0.
                            if top.admits(s, r as u32) && (plan.is_all() || plan.matches(ix.attrs.row(r))) {
                                top.push(s, r as u32);
                            }
                        }
                    }
                }
                top.into_sorted()
            })
            .collect();
        Ok(pack(per_query, k0))
    }

    fn rerank(&self, ix: &Arc<Index>, q: &QueryBatch, mut c: Candidates, mode: &Rerank) -> Result<Candidates> {
        let d = ix.dim;
        let k = c.k;
        let counts = c.counts.clone();
        match mode {
            Rerank::None => c.scores.par_chunks_mut(k.max(1)).enumerate().for_each(|(b, s)| {
                s[..counts[b] as usize].iter_mut().for_each(|x| *x *= q.scale[b]);
            }),
            Rerank::Refine => {
                let emb = ix.embeddings.as_ref().ok_or_else(|| Error::param("rerank", "refine needs items.embeddings; rebuild the index with embeddings"))?;
                let rows = &c.rows;
                c.scores.par_chunks_mut(k.max(1)).enumerate().for_each(|(b, s)| {
                    let qf = &q.f32[b * d..(b + 1) * d];
                    for (i, x) in s[..counts[b] as usize].iter_mut().enumerate() {
                        let r = rows[b * k + i] as usize;
                        *x = dot_f32_f16(qf, &emb[r * d..(r + 1) * d]);
                    }
                });
            }
            Rerank::Model { model, weights } => {
                let emb = ix.embeddings.as_ref().ok_or_else(|| Error::param("rerank", "model rerank needs items.embeddings"))?;
                let f = ix.feature_names.len();
                if model.input_dim() != 2 * d + f {
                    return Err(Error::param("rerank", format!("model input is {} but 2*D+F = {}", model.input_dim(), 2 * d + f)));
                }
                let rows = &c.rows;
                c.scores.par_chunks_mut(k.max(1)).enumerate().for_each(|(b, s)| {
                    let mut x = vec![0f32; 2 * d + f];
                    x[..d].copy_from_slice(&q.f32[b * d..(b + 1) * d]);
                    for (i, out) in s[..counts[b] as usize].iter_mut().enumerate() {
                        let r = rows[b * k + i] as usize;
                        for t in 0..d {
                            x[d + t] = emb[r * d + t].to_f32();
                        }
                        if let Some(feats) = &ix.features {
                            x[2 * d..].copy_from_slice(&feats[r * f..(r + 1) * f]);
                        }
                        *out = model.score(&x, weights, None);
                    }
                });
            }
        }
        Ok(c)
    }

    fn select(&self, c: Candidates, k: usize) -> Result<Candidates> {
        let per_query: Vec<Vec<crate::topk::Scored>> = (0..c.len())
            .into_par_iter()
            .map(|b| crate::topk::top_k(c.query(b).map(|(row, score)| crate::topk::Scored { score, row }).collect(), k))
            .collect();
        Ok(pack(per_query, k))
    }

    fn upload_probes(&self, ix: &Arc<Index>, p: &Probes) -> Result<Probes> {
        // The batch size is implied; a length that is not a multiple of nprobe fails the check.
        super::check_probes(p, p.lists.len() / p.nprobe.max(1), ix.nlist())?;
        Ok(p.clone())
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
        Ok(c.counts.clone())
    }
}

/// Pack per-query sorted lists into `[B, k]` candidates (padding: row MAX, score -inf).
pub fn pack(per_query: Vec<Vec<crate::topk::Scored>>, k: usize) -> Candidates {
    let b = per_query.len();
    let mut rows = vec![u32::MAX; b * k];
    let mut scores = vec![f32::NEG_INFINITY; b * k];
    let mut counts = vec![0u32; b];
    for (q, list) in per_query.into_iter().enumerate() {
        counts[q] = list.len() as u32;
        for (i, s) in list.into_iter().enumerate() {
            rows[q * k + i] = s.row;
            scores[q * k + i] = s.score;
        }
    }
    Candidates { k, rows, scores, counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn dot_matches_scalar_on_odd_lengths() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for n in [0, 1, 3, 31, 32, 33, 64, 100, 384, 1027] {
            let a: Vec<i8> = (0..n).map(|_| rng.random_range(-127..=127)).collect();
            let b: Vec<i8> = (0..n).map(|_| rng.random_range(-127..=127)).collect();
            let want: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
            assert_eq!(dot_i8(&a, &b), want, "n = {n}");
        }
    }

    #[test]
    fn range_bits_cover_exactly() {
        for (s, e) in [(0usize, 0usize), (0, 64), (3, 70), (64, 65), (10, 20), (63, 200)] {
            let r = s..e;
            let (w0, w1) = word_span(&r);
            let mut got = Vec::new();
            for w in w0..w1 {
                let m = range_bits(w, &r);
                for bit in 0..64 {
                    if m >> bit & 1 == 1 {
                        got.push(w * 64 + bit);
                    }
                }
            }
            assert_eq!(got, r.collect::<Vec<_>>());
        }
    }
}
