//! Searching an index made of segments: the main index plus a small *fresh* segment of
//! items added since the artifact was written (`silica serve`, DESIGN.md "a fresh segment
//! for streaming updates").
//!
//! Each segment runs the whole pipeline through its own [`Search`] (so the executor stays
//! the one place that knows stage order) with the same queries, filters, k, K0 and rerank
//! mode. The fresh segment is laid out over the main index's centroids (`serve::fresh`),
//! so it is probed with the **same nprobe**, which picks the same lists (same centroid
//! codes, same query codes): stages 1-3 over main + fresh give the candidates one index
//! holding both segments' rows would give, and a query pays for fresh rows only what its
//! probed fresh lists hold. The fresh segment follows the main index's planner budget
//! ([`crate::graph::candidate_cap`] of the main index) and is not widened
//! ([`Search::search_following`]): a selective filter is answered over all its fresh
//! candidates, and a query the main index answered in full (k results) does not widen
//! over the fresh segment. A query the main index could not fill (fewer than k results,
//! after its own widening) is searched over the whole fresh segment in one pass (every
//! list; a filtered one over all its fresh candidates, exactly). The fresh tail (the
//! latest items, one list of bounded size) is probed whole.
//! The per-query results are then merged by final score. Scores are comparable across
//! segments because both quantize the same query the same way and use the same stage-4 mode.

use super::hook::ShareProbes;
use super::{RerankMode, Search, SearchRequest, SearchResponse};
use crate::error::{Error, Result};

/// Search `main` and the non-empty segments of `extra` (the fresh segment's lists part
/// and tail), merging each query's top-k. A segment with main's nlist follows main's
/// probe (see the module docs); any other is probed whole.
///
/// Merge order: final score descending; ties by lower source row (`rows`), so results are
/// deterministic. Errors: those of any segment's search (invalid k, nprobe > main's
/// nlist, dimension, NaN, ...), or segments that disagree in dimension.
pub fn search_segments(main: &dyn Search, extra: &[&dyn Search], req: &SearchRequest) -> Result<Vec<SearchResponse>> {
    let extra: Vec<&dyn Search> = extra.iter().copied().filter(|f| !f.index().is_empty()).collect();
    if extra.is_empty() {
        return main.search(req);
    }
    let d = main.index().dim;
    if let Some(f) = extra.iter().find(|f| f.index().dim != d) {
        return Err(Error::Dimension { what: "fresh segment".into(), expected: d, got: f.index().dim });
    }
    // Resolve `auto` once, from the main index, so all segments rerank the same way.
    let mut params = req.params.clone();
    if params.rerank == RerankMode::Auto {
        params.rerank = if main.index().embeddings.is_some() { RerankMode::Refine } else { RerankMode::None };
    }
    let main_req = SearchRequest { queries: req.queries, filters: req.filters, params: params.clone() };
    let nprobe = main.resolve(&main_req.params)?.nprobe;
    let cap = super::candidate_cap(main.index(), nprobe);
    let k = req.params.k;
    let follow = |seg: &dyn Search, share: Option<&ShareProbes>| {
        let mut p = params.clone();
        let same = seg.index().nlist() == main.index().nlist();
        p.nprobe = Some(if same { nprobe } else { seg.index().nlist() });
        let sub = SearchRequest { queries: req.queries, filters: req.filters, params: p };
        match share {
            Some(share) if same => seg.search_shared(&sub, share, Some(cap)),
            _ => seg.search_following(&sub, cap),
        }
    };
    let (out, got): (Result<Vec<SearchResponse>>, Vec<Result<Vec<SearchResponse>>>) = if main.backend_name() == "cpu" {
        // On the CPU the segments share the cores: one after the other, the fresh lists
        // taking main's probes (same centroids, same query codes: the same lists) instead
        // of scoring the centroids again.
        let share = ShareProbes::new(req.queries.len() / d);
        let out = main.search_shared(&main_req, &share, None);
        (out, extra.iter().map(|&seg| follow(seg, Some(&share))).collect())
    } else {
        // On a GPU every segment at once, each on its own lane (stream): a batch costs the
        // slowest segment's latency, not the sum (the fresh parts are small, but each
        // search has a fixed launch and read-back cost).
        use rayon::prelude::*;
        rayon::join(|| main.search(&main_req), || extra.par_iter().map(|&seg| follow(seg, None)).collect())
    };
    let mut out = out?;
    // Queries main could not fill (fewer than k results) search each segment in full:
    // every list and every filter candidate (one exact pass).
    let short: Vec<usize> = (0..out.len()).filter(|&i| out[i].rows.len() < k).collect();
    for (seg, got) in extra.iter().zip(got) {
        let mut got = got?;
        if !short.is_empty() {
            let mut p = params.clone();
            p.nprobe = Some(seg.index().nlist());
            let queries: Vec<f32> = short.iter().flat_map(|&i| req.queries[i * d..(i + 1) * d].iter().copied()).collect();
            let filters: Vec<_> = if req.filters.is_empty() { Vec::new() } else { short.iter().map(|&i| req.filters[i].clone()).collect() };
            let full = seg.search_following(&SearchRequest { queries: &queries, filters: &filters, params: p }, u64::MAX)?;
            for (&i, b) in short.iter().zip(full) {
                got[i] = b;
            }
        }
        for (i, b) in got.into_iter().enumerate() {
            out[i] = merge(std::mem::replace(&mut out[i], empty()), b, k);
        }
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
