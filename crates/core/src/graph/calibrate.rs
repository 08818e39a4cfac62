//! Build-time calibration of the default nprobe (issue 13, "defaults that hold on unseen
//! queries"). Held-out rows of the index serve as queries: each is searched at depth k + 1
//! and its own row is dropped from the answer, so the measurement is of the neighbours a
//! new item close to it would have. Half of them carry a sampled filter, one of the row's
//! own attribute values (`field = "value"`), so the filtered path (candidates, widening) is
//! measured too. Truth is the same index searched exhaustively (nprobe = nlist), so the
//! curve isolates what nprobe controls; a hit is tie-aware (score at least the k-th true
//! score, [`crate::eval::hit_threshold`]). nprobe is swept in powers of two until the
//! target is reached, then bisected to the smallest value that reaches it, to within
//! [`RESOLUTION`] of it: the chosen nprobe reaches the target and nprobe - hi/64 did not.

use super::{Search, SearchParams, SearchRequest, SearchResponse};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::model::Index;
use crate::model::calibration::{Calibration, CalibrationPoint};
use rand::{Rng, SeedableRng, seq::index::sample};
use rand_chacha::ChaCha8Rng;

/// Calibration settings (`silica build --target-recall`, `--calibration-queries`).
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// Target recall@k in (0, 1].
    pub target_recall: f64,
    pub k: usize,
    /// Held-out rows to use as queries (at most N).
    pub queries: usize,
    pub seed: u64,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions { target_recall: 0.99, k: 10, queries: 500, seed: 7 }
    }
}

impl CalibrateOptions {
    /// Errors (naming the setting): a target outside (0, 1], k = 0, no queries. `silica
    /// build` checks this before building, so a bad setting costs no build.
    pub fn validate(&self) -> Result<()> {
        if !(self.target_recall > 0.0 && self.target_recall <= 1.0) {
            return Err(Error::param("target-recall", format!("{} is not in (0, 1]", self.target_recall)));
        }
        if self.k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        if self.queries == 0 {
            return Err(Error::param("calibration-queries", "must be at least 1"));
        }
        Ok(())
    }
}

const BATCH: usize = 256;

/// Bisection stops when the bracket (lo, hi] is at most `max(1, hi / RESOLUTION)` wide:
/// the chosen nprobe is at most 1/64 (1.6%) above the exact smallest, and the searches
/// near nlist, the costly ones (an 80M-row catalog needed 4116 of 8192 lists: 12 bisection
/// steps of about half an exhaustive scan each), are halved. Exact below 64 lists.
pub const RESOLUTION: usize = 64;

struct Held {
    /// Source row of each query (dropped from its answer).
    source: Vec<u64>,
    vectors: Vec<f32>,
    filters: Vec<Filter>,
    filtered: Vec<bool>,
}

/// The vector of sorted row `r` as a query: the stored f16 embedding, else the
/// dequantized codes.
fn row_vector(ix: &Index, r: usize, out: &mut Vec<f32>) {
    let d = ix.dim;
    match &ix.embeddings {
        Some(e) => out.extend(e[r * d..(r + 1) * d].iter().map(|x| x.to_f32())),
        None => {
            let s = ix.items.scale[r];
            out.extend(ix.items.row(r).iter().map(|&c| c as f32 * s));
        }
    }
}

fn held_out(ix: &Index, o: &CalibrateOptions) -> Result<Held> {
    let n = ix.len();
    let q = o.queries.min(n);
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut rows = sample(&mut rng, n, q).into_vec();
    rows.sort_unstable();
    let mut h = Held {
        source: Vec::with_capacity(q),
        vectors: Vec::with_capacity(q * ix.dim),
        filters: Vec::with_capacity(q),
        filtered: Vec::with_capacity(q),
    };
    let schema = &ix.attrs.schema;
    for (i, &r) in rows.iter().enumerate() {
        h.source.push(ix.source_rows[r]);
        row_vector(ix, r, &mut h.vectors);
        let values = ix.attrs.row(r);
        // Every other query takes one of its own row's values as its filter.
        let filter = if i % 2 == 1 && !values.is_empty() {
            let v = values[rng.random_range(0..values.len())];
            let (field, value) =
                schema.describe(v).ok_or_else(|| Error::param("calibration", format!("value id {v} is not in the schema")))?;
            let text = format!("{field} = \"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""));
            Some(
                Filter::compile(&text, schema, &ix.bloom.params)
                    .map_err(|e| Error::param("calibration", format!("sampled filter `{text}`: {e}")))?,
            )
        } else {
            None
        };
        h.filtered.push(filter.is_some());
        h.filters.push(filter.unwrap_or_else(Filter::all));
    }
    Ok(h)
}

/// Search every held-out query at depth k + 1 and drop its own row: `(rows, scores)` of
/// the first k of the rest.
fn answers(s: &dyn Search, h: &Held, o: &CalibrateOptions, nprobe: usize) -> Result<Vec<(Vec<u64>, Vec<f32>)>> {
    let d = s.index().dim;
    let mut out = Vec::with_capacity(h.source.len());
    for start in (0..h.source.len()).step_by(BATCH) {
        let end = (start + BATCH).min(h.source.len());
        let params = SearchParams { k: o.k + 1, nprobe: Some(nprobe), ..SearchParams::default() };
        let req = SearchRequest { queries: &h.vectors[start * d..end * d], filters: &h.filters[start..end], params };
        for (j, r) in s.search(&req)?.into_iter().enumerate() {
            let SearchResponse { rows, scores, .. } = r;
            let me = h.source[start + j];
            let (rows, scores): (Vec<u64>, Vec<f32>) = rows.into_iter().zip(scores).filter(|&(row, _)| row != me).take(o.k).unzip();
            out.push((rows, scores));
        }
    }
    Ok(out)
}

/// Mean tie-aware recall of `got` against `truth` over the queries `filtered == want`;
/// `None` when there are none.
fn recall(h: &Held, truth: &[(Vec<u64>, Vec<f32>)], got: &[(Vec<u64>, Vec<f32>)], want: bool) -> Option<f64> {
    let per: Vec<f64> = (0..truth.len())
        .filter(|&i| h.filtered[i] == want)
        .map(|i| {
            let (t, g) = (&truth[i].1, &got[i].1);
            if t.is_empty() {
                return 1.0;
            }
            let threshold = crate::eval::hit_threshold(t[t.len() - 1] as f64);
            g.iter().filter(|&&s| s as f64 >= threshold).count().min(t.len()) as f64 / t.len() as f64
        })
        .collect();
    (!per.is_empty()).then(|| per.iter().sum::<f64>() / per.len() as f64)
}

/// Measure the recall-vs-nprobe curve of the index `s` serves and choose the default
/// nprobe (see the module docs). Errors: a target outside (0, 1], k = 0, no queries,
/// and any search error.
pub fn calibrate(s: &dyn Search, o: &CalibrateOptions) -> Result<Calibration> {
    o.validate()?;
    let ix = s.index().clone();
    let nlist = ix.nlist();
    let h = held_out(&ix, o)?;
    let t0 = std::time::Instant::now();
    let truth = answers(s, &h, o, nlist)?;
    log::info!("calibration: exhaustive truth of {} queries in {:.2}s", h.source.len(), t0.elapsed().as_secs_f64());
    let mut curve: Vec<CalibrationPoint> = Vec::new();
    let measure = |p: usize, curve: &mut Vec<CalibrationPoint>| -> Result<bool> {
        let t0 = std::time::Instant::now();
        let got = if p == nlist { truth.clone() } else { answers(s, &h, o, p)? };
        log::debug!("calibration: nprobe {p} searched in {:.3}s", t0.elapsed().as_secs_f64());
        let (r, f) = (recall(&h, &truth, &got, false).unwrap_or(1.0), recall(&h, &truth, &got, true));
        let ok = r >= o.target_recall && f.is_none_or(|f| f >= o.target_recall);
        // Stored to 6 decimals (an exact JSON round trip); decided on the exact means.
        let six = |x: f64| (x * 1e6).round() / 1e6;
        curve.push(CalibrationPoint { nprobe: p, recall: six(r), recall_filtered: f.map(six) });
        Ok(ok)
    };
    // Doubling until the target is reached, then bisection in (lo, hi]. nlist itself is
    // the truth, so it always reaches the target.
    let (mut lo, mut hi) = (0usize, 1usize.min(nlist));
    while hi < nlist && !measure(hi, &mut curve)? {
        lo = hi;
        hi = (hi * 2).min(nlist);
    }
    if hi == nlist {
        measure(nlist, &mut curve)?;
    }
    while hi - lo > (hi / RESOLUTION).max(1) {
        let mid = lo + (hi - lo) / 2;
        if measure(mid, &mut curve)? { hi = mid } else { lo = mid }
    }
    log::info!("calibration: {} nprobe values measured in {:.2}s", curve.len(), t0.elapsed().as_secs_f64());
    curve.sort_by_key(|c| c.nprobe);
    curve.dedup_by_key(|c| c.nprobe);
    let filtered_queries = h.filtered.iter().filter(|&&f| f).count();
    Ok(Calibration {
        target_recall: o.target_recall,
        k: o.k,
        queries: h.source.len() - filtered_queries,
        filtered_queries,
        nprobe: hi,
        reached: hi < nlist || nlist == 1,
        curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::graph::Executor;
    use crate::model::IndexBuilder;
    use crate::model::attributes::parse_jsonl;
    use crate::model::build::BuildParams;
    use crate::model::npy::Matrix;
    use rand::Rng;
    use std::sync::Arc;

    /// `n` rows around 12 directions in 16-D, two attribute fields (4 and 9 values).
    fn index(n: usize, nlist: usize, seed: u64) -> Arc<Index> {
        let d = 16;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..12 * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut data = Vec::with_capacity(n * d);
        let mut lines = String::new();
        for i in 0..n {
            let c = rng.random_range(0..12);
            data.extend((0..d).map(|t| centers[c * d + t] + rng.random_range(-0.6f32..0.6)));
            lines.push_str(&format!(
                "{{\"id\": \"r{i}\", \"color\": \"c{}\", \"shop\": \"s{}\"}}\n",
                rng.random_range(0..4),
                rng.random_range(0..9)
            ));
        }
        let table = parse_jsonl(lines.as_bytes(), std::path::Path::new("a.jsonl"), &[]).unwrap();
        let m = Matrix { rows: n, dim: d, data, was_f16: false };
        Arc::new(IndexBuilder::new(BuildParams { nlist: Some(nlist), kmeans_iters: 4, ..Default::default() }).build(m, table).unwrap())
    }

    fn point(c: &Calibration, p: usize) -> Option<&CalibrationPoint> {
        c.curve.iter().find(|x| x.nprobe == p)
    }

    fn reaches(p: &CalibrationPoint, target: f64) -> bool {
        p.recall >= target && p.recall_filtered.is_none_or(|f| f >= target)
    }

    #[test]
    fn picks_the_smallest_measured_nprobe_that_reaches_the_target() {
        let ix = index(3001, 40, 1);
        let s = Executor::new(Cpu, ix.clone()).unwrap();
        for target in [0.5, 0.9, 0.97] {
            let o = CalibrateOptions { target_recall: target, queries: 301, ..Default::default() };
            let c = calibrate(&s, &o).unwrap();
            assert_eq!((c.queries + c.filtered_queries, c.k), (301, 10));
            assert!(c.filtered_queries >= 140, "about half the queries carry a filter: {}", c.filtered_queries);
            // Stored recalls are rounded to 6 decimals.
            assert!(reaches(point(&c, c.nprobe).expect("the chosen nprobe was measured"), target - 1e-6), "{c:?}");
            if c.nprobe > 1 {
                assert!(!reaches(point(&c, c.nprobe - 1).expect("the one below was measured"), target + 1e-6), "{c:?}");
            }
            assert!(c.curve.windows(2).all(|w| w[0].nprobe < w[1].nprobe));
            assert_eq!(c.reached, c.nprobe < ix.nlist());
            // Deterministic for a seed.
            assert_eq!(calibrate(&s, &o).unwrap(), c);
        }
        // A stricter target never picks fewer lists.
        let at = |t: f64| calibrate(&s, &CalibrateOptions { target_recall: t, queries: 301, ..Default::default() }).unwrap().nprobe;
        assert!(at(0.5) <= at(0.9) && at(0.9) <= at(1.0));
    }

    #[test]
    fn bisection_stops_within_the_resolution_above_64_lists() {
        // 300 lists: the bracket is narrowed to hi / 64 (4 lists), not to 1.
        let ix = index(6000, 300, 9);
        let s = Executor::new(Cpu, ix.clone()).unwrap();
        for target in [0.95, 0.995] {
            let c = calibrate(&s, &CalibrateOptions { target_recall: target, queries: 200, ..Default::default() }).unwrap();
            assert!(reaches(point(&c, c.nprobe).expect("the chosen nprobe was measured"), target - 1e-6), "{c:?}");
            if c.nprobe > 1 {
                let tol = (c.nprobe / RESOLUTION).max(1);
                let below = c.curve.iter().filter(|p| p.nprobe < c.nprobe).max_by_key(|p| p.nprobe).expect("a point below was measured");
                assert!(c.nprobe - below.nprobe <= tol, "bracket ({}, {}] wider than {tol}: {c:?}", below.nprobe, c.nprobe);
                assert!(!reaches(below, target + 1e-6), "{c:?}");
            }
            // Every point above the chosen one reaches the target (the sweep is monotone).
            assert!(c.curve.iter().filter(|p| p.nprobe > c.nprobe).all(|p| reaches(p, target - 1e-6)), "{c:?}");
        }
    }

    #[test]
    fn the_recall_is_measured_without_the_query_row() {
        // Every row duplicated: without dropping the row itself, nprobe 1 would always find it.
        let ix = index(400, 8, 2);
        let s = Executor::new(Cpu, ix.clone()).unwrap();
        let o = CalibrateOptions { target_recall: 1.0, queries: 400, k: 3, seed: 3 };
        let h = held_out(&ix, &o).unwrap();
        for (i, (rows, _)) in answers(&s, &h, &o, 1).unwrap().iter().enumerate() {
            assert!(!rows.contains(&h.source[i]), "query {i} answered with its own row");
            assert!(rows.len() <= 3);
        }
        // Filters are the row's own values: the row itself passes its filter.
        for i in (0..h.source.len()).filter(|&i| h.filtered[i]) {
            let sorted = ix.source_rows.iter().position(|&r| r == h.source[i]).unwrap();
            assert!(h.filters[i].plan.matches_row(&ix, sorted), "{}", h.filters[i].text);
        }
        let c = calibrate(&s, &o).unwrap();
        assert_eq!(point(&c, c.nprobe).unwrap().recall, 1.0);
    }

    #[test]
    fn edge_sizes_and_bad_settings() {
        let one = index(1, 1, 4);
        let s = Executor::new(Cpu, one.clone()).unwrap();
        let c = calibrate(&s, &CalibrateOptions::default()).unwrap();
        assert_eq!((c.nprobe, c.queries + c.filtered_queries, c.reached), (1, 1, true));
        let s = Executor::new(Cpu, index(50, 5, 5)).unwrap();
        for (t, q, k, what) in [
            (0.0, 10, 10, "target-recall"),
            (1.5, 10, 10, "target-recall"),
            (f64::NAN, 10, 10, "target-recall"),
            (0.9, 0, 10, "calibration-queries"),
            (0.9, 10, 0, "k"),
        ] {
            let e = calibrate(&s, &CalibrateOptions { target_recall: t, queries: q, k, seed: 1 }).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        // More queries than rows: every row once.
        let c = calibrate(&s, &CalibrateOptions { queries: 1000, ..Default::default() }).unwrap();
        assert_eq!(c.queries + c.filtered_queries, 50);
    }

    #[test]
    fn stored_calibration_is_the_default_nprobe_and_round_trips() {
        let ix = index(900, 30, 6);
        let s = Executor::new(Cpu, ix.clone()).unwrap();
        assert_eq!(s.resolve(&SearchParams::default()).unwrap().nprobe, crate::graph::default_nprobe(30));
        let mut c = calibrate(&s, &CalibrateOptions { target_recall: 0.95, queries: 200, ..Default::default() }).unwrap();
        c.nprobe = 7; // any stored value is what a request without nprobe gets
        let mut with = (*ix).clone();
        with.calibration = Some(c.clone());
        let path = std::path::Path::new("mem.silica");
        let back = crate::model::format::from_bytes(&crate::model::format::to_bytes(&with).unwrap(), path).unwrap();
        assert_eq!(back.calibration.as_ref(), Some(&c));
        let s = Executor::new(Cpu, Arc::new(back)).unwrap();
        assert_eq!(s.resolve(&SearchParams::default()).unwrap().nprobe, 7);
        assert_eq!(s.resolve(&SearchParams { nprobe: Some(3), ..Default::default() }).unwrap().nprobe, 3);
    }
}
