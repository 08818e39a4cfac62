//! Searching an index made of segments: the main index plus a small *fresh* segment of
//! items added since the artifact was written (`silica serve`, DESIGN.md "a fresh segment
//! for streaming updates").
//!
//! Each segment runs the whole pipeline through its own [`Search`] (so the executor stays
//! the one place that knows stage order) with the same queries, filters, k, K0 and rerank
//! mode; the fresh segment is probed exhaustively (all of its lists). The per-query results
//! are then merged by final score. Scores are comparable across segments because both
//! quantize the same query the same way and use the same stage-4 mode.

use super::{RerankMode, Search, SearchRequest, SearchResponse};
use crate::error::{Error, Result};

/// Search `main` and, when given and non-empty, `fresh`, merging each query's top-k.
///
/// Merge order: final score descending; ties by lower source row (`rows`), so results are
/// deterministic. Errors: those of either segment's search (invalid k, nprobe > main's
/// nlist, dimension, NaN, ...), or segments that disagree in dimension.
pub fn search_segments(main: &dyn Search, fresh: Option<&dyn Search>, req: &SearchRequest) -> Result<Vec<SearchResponse>> {
    let fresh = fresh.filter(|f| !f.index().is_empty());
    let Some(fresh) = fresh else { return main.search(req) };
    if fresh.index().dim != main.index().dim {
        return Err(Error::Dimension { what: "fresh segment".into(), expected: main.index().dim, got: fresh.index().dim });
    }
    // Resolve `auto` once, from the main index, so both segments rerank the same way.
    let mut params = req.params.clone();
    if params.rerank == RerankMode::Auto {
        params.rerank = if main.index().embeddings.is_some() { RerankMode::Refine } else { RerankMode::None };
    }
    let main_req = SearchRequest { queries: req.queries, filters: req.filters, params: params.clone() };
    let mut out = main.search(&main_req)?;
    params.nprobe = Some(fresh.index().nlist());
    let extra = fresh.search(&SearchRequest { queries: req.queries, filters: req.filters, params })?;
    let k = req.params.k;
    for (a, b) in out.iter_mut().zip(extra) {
        *a = merge(std::mem::replace(a, empty()), b, k);
    }
    Ok(out)
}

fn empty() -> SearchResponse {
    SearchResponse { rows: Vec::new(), ids: Vec::new(), scores: Vec::new() }
}

/// Merge two best-first lists into the best `k` (score desc, then lower row).
fn merge(a: SearchResponse, b: SearchResponse, k: usize) -> SearchResponse {
    let mut all: Vec<(f32, u64, std::sync::Arc<str>)> = Vec::with_capacity(a.rows.len() + b.rows.len());
    for r in [a, b] {
        all.extend(r.scores.into_iter().zip(r.rows).zip(r.ids).map(|((s, row), id)| (s, row, id)));
    }
    all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    all.truncate(k);
    let mut out = empty();
    for (s, row, id) in all {
        out.scores.push(s);
        out.rows.push(row);
        out.ids.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_orders_by_score_then_row_and_truncates() {
        let a = SearchResponse { rows: vec![5, 1], ids: vec!["a5".into(), "a1".into()], scores: vec![3.0, 1.0] };
        let b = SearchResponse { rows: vec![9, 2, 0], ids: vec!["b9".into(), "b2".into(), "b0".into()], scores: vec![3.0, 2.0, -1.0] };
        let m = merge(a.clone(), b.clone(), 4);
        assert_eq!(m.ids.iter().map(|s| &**s).collect::<Vec<_>>(), vec!["a5", "b9", "b2", "a1"]);
        assert_eq!(m.scores, vec![3.0, 3.0, 2.0, 1.0]);
        assert_eq!(merge(a, b, 0).rows.len(), 0);
        assert_eq!(merge(empty(), empty(), 3), empty());
    }
}
