//! Exact filtered ground truth and tie-aware recall@k for the e2e suite.
//!
//! Scores are float64 inner products of the f32 query with the stored f16 embedding, as
//! [`silica_core::eval::exact_score`] computes them (summed in 8 lanes here; the difference is
//! float64 rounding, far below the recall tolerance).

use half::slice::HalfFloatSliceExt;
use silica_core::filter::Filter;
use silica_core::graph::SearchResponse;
use silica_core::model::Index;

/// Relative tolerance of a hit: exact score >= kth - `TOLERANCE` * max(1, |kth|).
pub const TOLERANCE: f64 = 1e-5;

/// The k best exact scores (descending) among the rows `rows` of `ix` (`None`: all rows),
/// for each query of `qs` (each `[D]`); one pass over the rows for all queries, so
/// callers batch queries that share rows. Needs `items.embeddings`.
pub fn top_scores(ix: &Index, qs: &[&[f32]], rows: Option<&[u32]>, k: usize) -> Vec<Vec<f64>> {
    let d = ix.dim;
    let e = ix.embeddings.as_ref().expect("e2e indexes store embeddings");
    let q64: Vec<Vec<f64>> = qs.iter().map(|q| q.iter().map(|&x| x as f64).collect()).collect();
    let mut best: Vec<Vec<f64>> = vec![Vec::with_capacity(k + 1); qs.len()];
    let mut row = vec![0f64; d];
    let mut visit = |r: usize| {
        e[r * d..(r + 1) * d].convert_to_f64_slice(&mut row);
        for (q, b) in q64.iter().zip(best.iter_mut()) {
            let s = dot(&row, q);
            if b.len() < k || s > b[k - 1] {
                let at = b.partition_point(|&x| x >= s);
                b.insert(at, s);
                b.truncate(k);
            }
        }
    };
    match rows {
        Some(rs) => rs.iter().for_each(|&r| visit(r as usize)),
        None => (0..ix.len()).for_each(&mut visit),
    }
    best
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Recall@k of one response and its filter violations. `truth`: the exact top scores
/// (descending, fewer than k when fewer items pass); `sorted_of`: source row -> sorted row.
pub fn recall(ix: &Index, q: &[f32], filter: &Filter, truth: &[f64], res: &SearchResponse, k: usize, sorted_of: &[u32]) -> (f64, usize) {
    let depth = k.min(truth.len());
    let threshold = if depth == 0 { f64::INFINITY } else { truth[depth - 1] - TOLERANCE * truth[depth - 1].abs().max(1.0) };
    let (mut hits, mut violations) = (0usize, 0usize);
    for &src in res.rows.iter().take(k) {
        let r = sorted_of[src as usize] as usize;
        if !filter.plan.matches_row(ix, r) {
            violations += 1;
        } else if silica_core::eval::exact_score(ix, q, r) >= threshold {
            hits += 1;
        }
    }
    (if depth == 0 { 1.0 } else { hits.min(depth) as f64 / depth as f64 }, violations)
}
