//! The CPU reference backend: every stage on the host, queries in parallel with rayon.
//! Its stage 1-3 outputs are the golden outputs the GPU backends must match bit for bit.

use super::{Backend, Candidates, Mask, Probes, QueryBatch, Rerank};
use crate::error::{Error, Result};
use crate::filter::{BLOOM_BLOCK, Plan};
use crate::model::{Index, metric};
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
    let ones = _mm256_set1_epi16(1);
    let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut i = 0;
    // 32 codes per step: |a| (u8) x sign(b, a) (i8) -> pairs summed in i16 -> i32 lanes.
    // Exact for codes in [-127, 127] (the quantizer's range, checked when an artifact is
    // loaded): a pair is at most 2 * 128 * 127 < 2^15, and sign(b, a) never negates -128.
    while i + 64 <= n {
        // SAFETY: i + 64 <= n bounds all four 32-byte loads.
        unsafe {
            let (x0, y0) =
                (_mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i), _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i));
            let (x1, y1) = (
                _mm256_loadu_si256(a.as_ptr().add(i + 32) as *const __m256i),
                _mm256_loadu_si256(b.as_ptr().add(i + 32) as *const __m256i),
            );
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(x0), _mm256_sign_epi8(y0, x0)), ones));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(x1), _mm256_sign_epi8(y1, x1)), ones));
        }
        i += 64;
    }
    // 16 codes per step for the rest: sign-extend to i16, multiply-add pairs into i32.
    while i + 16 <= n {
        // SAFETY: i + 16 <= n bounds both 16-byte loads.
        unsafe {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
            let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x, y));
        }
        i += 16;
    }
    let acc = _mm256_add_epi32(acc0, acc1);
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

/// f32 · f16 dot product in f32 (the refine score): eight lane sums `acc[i] += q[j] *
/// e[j]` over `j = i mod 8` (multiply, then add: no FMA), the lanes added in order, then
/// the tail. Uses AVX + F16C when the CPU has them, with the same result bit for bit.
#[inline]
pub fn dot_f32_f16(q: &[f32], e: &[half::f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("f16c") {
            // SAFETY: the CPU supports AVX and F16C (checked above).
            return unsafe { dot_f32_f16_f16c(q, e) };
        }
    }
    dot_f32_f16_portable(q, e)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn dot_f32_f16_f16c(q: &[f32], e: &[half::f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = q.len().min(e.len());
    let mut acc = _mm256_setzero_ps();
    let chunks = n / 8;
    for c in 0..chunks {
        // SAFETY: c * 8 + 8 <= n bounds both loads (f16 is 2 bytes, so 16 bytes for 8).
        unsafe {
            let x = _mm256_loadu_ps(q.as_ptr().add(c * 8));
            let y = _mm256_cvtph_ps(_mm_loadu_si128(e.as_ptr().add(c * 8) as *const __m128i));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut s = lanes.iter().sum::<f32>();
    for i in chunks * 8..n {
        s += q[i] * e[i].to_f32();
    }
    s
}

fn dot_f32_f16_portable(q: &[f32], e: &[half::f16]) -> f32 {
    let n = q.len().min(e.len());
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for i in 0..8 {
            acc[i] += q[c * 8 + i] * e[c * 8 + i].to_f32();
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for i in chunks * 8..n {
        s += q[i] * e[i].to_f32();
    }
    s
}

/// Rows ahead of the one being scored whose codes the scan prefetches.
const PREFETCH_ROWS: usize = 4;

/// Ask for the cache lines of `bytes` (a hint; no effect off x86_64).
#[inline(always)]
fn prefetch<T>(bytes: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let (p, n) = (bytes.as_ptr() as *const i8, std::mem::size_of_val(bytes));
        for off in (0..n).step_by(64) {
            // SAFETY: a prefetch never faults; the address lies inside `bytes`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
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

/// Score candidate `rows` (sorted rows of `ix`) for query codes `qc` into `top`, the
/// codes prefetched a few rows ahead (candidates are sparse, so latency-bound); the exact
/// filter is verified only for rows that would enter the top-K0.
/// `qs` is the query scale (read by `l2` only, [`crate::model::metric`]).
fn score_rows(ix: &Index, qc: &[i8], qs: f32, plan: &Plan, rows: &[u32], top: &mut TopK) {
    let l2 = ix.metric == crate::Metric::L2;
    for (i, &r) in rows.iter().enumerate() {
        if let Some(&ahead) = rows.get(i + PREFETCH_ROWS) {
            prefetch(ix.items.row(ahead as usize));
        }
        let r = r as usize;
        let (dot, sc) = (dot_i8(qc, ix.items.row(r)), ix.items.scale[r]);
        let s = if l2 { metric::score(dot, qs, metric::bias(ix.sqnorms[r], sc), sc) } else { dot as f32 * sc };
        if top.admits(s, r as u32) && (plan.is_all() || plan.matches_row(ix, r)) {
            top.push(s, r as u32);
        }
    }
}

impl Backend for Cpu {
    type Resident = Arc<Index>;
    type Probes = Probes;
    type Mask = Mask;
    type Cands = Candidates;

    fn name(&self) -> &'static str {
        "cpu"
    }

    /// Typed column terms are evaluated per word / row over the probed lists from the
    /// index's columns (`Plan::bloom_word_in`, `Plan::matches_in`): no per-query mask.
    fn typed_terms(&self) -> bool {
        true
    }

    /// A posting row (cache misses on its values and codes, the plan, a dot) against a
    /// plane word of the vectorized 64-word Bloom blocks.
    fn posting_row_cost(&self) -> u64 {
        16
    }

    fn resident_index<'a>(&self, ix: &'a Arc<Index>) -> &'a Arc<Index> {
        ix
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
        let bias: Option<Vec<f32>> = (ix.metric == crate::Metric::L2).then(|| metric::biases(c, &metric::sqnorms(c)));
        let lists: Vec<u32> = (0..q.len)
            .into_par_iter()
            .flat_map_iter(|b| {
                let qc = &q.codes[b * d..(b + 1) * d];
                let mut top = TopK::new(nprobe);
                for j in 0..l {
                    let dot = dot_i8(qc, c.row(j));
                    let s = match &bias {
                        Some(bias) => metric::score(dot, q.scale[b], bias[j], c.scale[j]),
                        None => dot as f32 * c.scale[j],
                    };
                    top.push(s, j as u32);
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
                // Probing every list: evaluate the plan once over all words, in blocks.
                let full = (!plan.is_all() && np == ix.nlist()).then(|| {
                    let mut full = vec![0u64; ix.bloom.words];
                    for (i, out) in full.chunks_mut(BLOOM_BLOCK).enumerate() {
                        plan.bloom_words_in(ix, i * BLOOM_BLOCK, out);
                    }
                    full
                });
                for &l in &probes.lists[b * np..(b + 1) * np] {
                    let range = ix.list_range(l as usize);
                    let (w0, w1) = word_span(&range);
                    let before = words.len();
                    if plan.is_all() {
                        words.extend((w0..w1).map(|w| range_bits(w, &range) & ix.live_word(w)));
                    } else if let Some(full) = &full {
                        words.extend((w0..w1).map(|w| full[w] & range_bits(w, &range) & ix.live_word(w)));
                    } else {
                        words.extend((w0..w1).map(|w| plan.bloom_word_in(ix, w) & range_bits(w, &range) & ix.live_word(w)));
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
                let mut block = [0u64; BLOOM_BLOCK];
                let mut total = 0u64;
                for w0 in (0..ix.bloom.words).step_by(BLOOM_BLOCK) {
                    let out = &mut block[..BLOOM_BLOCK.min(ix.bloom.words - w0)];
                    plan.bloom_words_in(ix, w0, out);
                    total += out
                        .iter()
                        .enumerate()
                        .map(|(i, &m)| (m & range_bits(w0 + i, &all) & ix.live_word(w0 + i)).count_ones() as u64)
                        .sum::<u64>();
                }
                total
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
                let mut rows: Vec<u32> = Vec::with_capacity(256);
                for j in 0..np {
                    let p = b * np + j;
                    let l = probes.lists[p] as usize;
                    let (w0, _) = word_span(&ix.list_range(l));
                    // The list's candidate rows first, so that each row's codes can be
                    // prefetched a few rows ahead (a selective mask makes them sparse).
                    rows.clear();
                    for (i, &word) in mask.words[mask.offsets[p]..mask.offsets[p + 1]].iter().enumerate() {
                        let mut bits = word;
                        while bits != 0 {
                            rows.push(((w0 + i) * 64 + bits.trailing_zeros() as usize) as u32);
                            bits &= bits - 1;
                        }
                    }
                    score_rows(ix, qc, q.scale[b], plan, &rows, &mut top);
                }
                top.into_sorted()
            })
            .collect();
        Ok(pack(per_query, k0))
    }

    /// Per query: the sampled Bloom count ([`super::admit_candidates`]), the Bloom
    /// "maybe" rows over the whole index in blocks of words (stopping once more than
    /// `cap`), then exact verification of the rows that would
    /// enter the top-K0, as [`Backend::scan`] does for a list.
    fn scan_candidates(
        &self,
        ix: &Arc<Index>,
        q: &QueryBatch,
        plans: &[&Plan],
        k0: usize,
        cap: u64,
    ) -> Result<(Candidates, Vec<Option<u64>>)> {
        let d = ix.dim;
        if plans.len() != q.len {
            return Err(Error::param("filters", format!("{} plans for {} queries", plans.len(), q.len)));
        }
        let all = 0..ix.len();
        let per_query: Vec<(Vec<crate::topk::Scored>, Option<u64>)> = (0..q.len)
            .into_par_iter()
            .map(|b| {
                let plan = plans[b];
                if !super::admit_candidates(super::sampled_bloom_count(ix, plan), cap, ix.len() as u64) {
                    return (Vec::new(), None);
                }
                let mut rows: Vec<u32> = Vec::new();
                let mut block = [0u64; BLOOM_BLOCK];
                for w0 in (0..ix.bloom.words).step_by(BLOOM_BLOCK) {
                    let out = &mut block[..BLOOM_BLOCK.min(ix.bloom.words - w0)];
                    plan.bloom_words_in(ix, w0, out);
                    for (i, &m) in out.iter().enumerate() {
                        let mut bits = m & range_bits(w0 + i, &all) & ix.live_word(w0 + i);
                        while bits != 0 {
                            rows.push(((w0 + i) * 64 + bits.trailing_zeros() as usize) as u32);
                            bits &= bits - 1;
                        }
                    }
                    if rows.len() as u64 > cap {
                        return (Vec::new(), None);
                    }
                }
                let qc = &q.codes[b * d..(b + 1) * d];
                let mut top = TopK::new(k0);
                score_rows(ix, qc, q.scale[b], plan, &rows, &mut top);
                (top.into_sorted(), Some(rows.len() as u64))
            })
            .collect();
        let answers = per_query.iter().map(|(_, a)| *a).collect();
        Ok((pack(per_query.into_iter().map(|(t, _)| t).collect(), k0), answers))
    }

    fn scan_postings(
        &self,
        ix: &Arc<Index>,
        q: &QueryBatch,
        plans: &[&Plan],
        drivers: &[&[u32]],
        post: &crate::model::postings::PostingState,
        k0: usize,
    ) -> Result<Candidates> {
        let d = ix.dim;
        if plans.len() != q.len || drivers.len() != q.len {
            return Err(Error::param("filters", format!("{} plans and {} drivers for {} queries", plans.len(), drivers.len(), q.len)));
        }
        let all = Plan::all();
        let per_query: Vec<Vec<crate::topk::Scored>> = (0..q.len)
            .into_par_iter()
            .map(|b| {
                let mut rows = crate::model::postings::candidate_rows(&post.lists, &post.stale, &ix.attrs, drivers[b]);
                rows.retain(|&r| ix.live_word(r as usize / 64) >> (r % 64) & 1 == 1);
                let mut top = TopK::new(k0);
                let plan = crate::model::postings::check_plan(plans[b], drivers[b], post, &all);
                score_rows(ix, &q.codes[b * d..(b + 1) * d], q.scale[b], plan, &rows, &mut top);
                top.into_sorted()
            })
            .collect();
        Ok(pack(per_query, k0))
    }

    fn rerank(&self, ix: &Arc<Index>, q: &QueryBatch, mut c: Candidates, mode: &Rerank) -> Result<Candidates> {
        let d = ix.dim;
        let k = c.k;
        let counts = c.counts.clone();
        let l2 = ix.metric == crate::Metric::L2;
        match mode {
            Rerank::None if l2 => c.scores.par_chunks_mut(k.max(1)).enumerate().for_each(|(b, s)| {
                let qn = metric::query_sqnorm(&q.f32[b * d..(b + 1) * d]);
                s[..counts[b] as usize].iter_mut().for_each(|x| *x = metric::none_score(*x, qn));
            }),
            Rerank::None => c.scores.par_chunks_mut(k.max(1)).enumerate().for_each(|(b, s)| {
                s[..counts[b] as usize].iter_mut().for_each(|x| *x *= q.scale[b]);
            }),
            Rerank::Refine => {
                let emb = ix
                    .embeddings
                    .as_ref()
                    .ok_or_else(|| Error::param("rerank", "refine needs items.embeddings; rebuild the index with embeddings"))?;
                let rows = &c.rows;
                c.scores.par_chunks_mut(k.max(1)).enumerate().for_each(|(b, s)| {
                    let qf = &q.f32[b * d..(b + 1) * d];
                    let n = counts[b] as usize;
                    for (i, x) in s[..n].iter_mut().enumerate() {
                        if i + PREFETCH_ROWS < n {
                            let ahead = rows[b * k + i + PREFETCH_ROWS] as usize;
                            prefetch(&emb[ahead * d..(ahead + 1) * d]);
                        }
                        let r = rows[b * k + i] as usize;
                        let e = &emb[r * d..(r + 1) * d];
                        *x = if l2 { metric::neg_sqdist_f16(qf, e) } else { dot_f32_f16(qf, e) };
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

    fn upload_cands(&self, ix: &Arc<Index>, c: &Candidates) -> Result<Candidates> {
        super::check_cands(c, ix.len())?;
        Ok(c.clone())
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
        for n in [0, 1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80, 100, 127, 128, 129, 384, 1027] {
            let a: Vec<i8> = (0..n).map(|_| rng.random_range(-127..=127)).collect();
            let b: Vec<i8> = (0..n).map(|_| rng.random_range(-127..=127)).collect();
            let want: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
            assert_eq!(dot_i8(&a, &b), want, "n = {n}");
            assert_eq!(dot_i8_portable(&a, &b), want, "n = {n}");
            // The extremes, where an i16 pair sum comes closest to saturating.
            for (x, y) in [(127i8, 127i8), (-127, -127), (127, -127), (-127, 127)] {
                let (a, b) = (vec![x; n], vec![y; n]);
                assert_eq!(dot_i8(&a, &b), n as i32 * x as i32 * y as i32, "n = {n}, {x} x {y}");
            }
        }
    }

    #[test]
    fn f16_dot_is_bit_identical_to_the_portable_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for n in [0, 1, 7, 8, 9, 64, 383, 384, 1025] {
            for _ in 0..20 {
                let q: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let e: Vec<half::f16> = (0..n).map(|_| half::f16::from_f32(rng.random_range(-3.0f32..3.0))).collect();
                assert_eq!(dot_f32_f16(&q, &e).to_bits(), dot_f32_f16_portable(&q, &e).to_bits(), "n = {n}");
                let exact: f64 = q.iter().zip(&e).map(|(&x, y)| x as f64 * y.to_f64()).sum();
                assert!((dot_f32_f16(&q, &e) as f64 - exact).abs() < 1e-4 * (n as f64).max(1.0), "n = {n}");
            }
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
