//! Recall evaluation against exact ground truth (`silica eval`, tests, the Debian example).
//!
//! Recall@k is tie-aware as ann-benchmarks counts it: a returned item is a hit when it
//! passes the query's filter and its exact score reaches the k-th true score within a
//! relative tolerance, `score >= kth - 1e-3 · max(1, |kth|)` ([`hit_threshold`]). The
//! corpus has many identical vectors, so two engines may return different but equally
//! correct rows; and ground truth is usually computed in f32 from the original vectors
//! while the exact score here is the float64 inner product of the query and the item's
//! stored f16 embedding (relative error ~1e-3), so an exact tolerance would count the
//! true answer as a miss. 1e-3 is ann-benchmarks' `epsilon` for the same reason.

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::graph::{Search, SearchParams, SearchRequest, SearchResponse};
use crate::model::Index;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

/// One ground-truth line: `{"qid", "ids", "scores"}` (ids are source rows).
#[derive(Clone, Debug, Deserialize)]
pub struct Truth {
    pub qid: usize,
    pub ids: Vec<u64>,
    pub scores: Vec<f64>,
}

/// Read `ground_truth.jsonl`, ordered by qid.
pub fn read_truth(path: &Path) -> Result<Vec<Truth>> {
    let mut out: Vec<Truth> =
        read_jsonl_lines(path, |line, lineno| serde_json::from_str::<Truth>(line).map_err(|e| format!("line {lineno}: {e}")))?;
    out.sort_by_key(|t| t.qid);
    Ok(out)
}

/// Read the `filter` string of each line (missing or null: no filter).
pub fn read_filters(path: &Path) -> Result<Vec<String>> {
    read_jsonl_lines(path, |line, _| {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
        match v.get("filter") {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("`filter` must be a string, got {other}")),
        }
    })
}

fn read_jsonl_lines<T>(path: &Path, parse: impl Fn(&str, usize) -> std::result::Result<T, String>) -> Result<Vec<T>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse(&line, i + 1).map_err(|reason| Error::Jsonl { path: path.into(), line: i + 1, reason })?);
    }
    Ok(out)
}

/// Recall figures of one evaluation.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    /// Mean recall@k over all queries.
    pub recall: f64,
    /// Mean recall@k over queries whose filter passes < 1% of items.
    pub recall_selective: f64,
    /// Mean recall@k over queries passing 1-10%.
    pub recall_mid: f64,
    /// Mean recall@k over queries passing > 10%.
    pub recall_broad: f64,
    /// Queries in each bucket (<1%, 1-10%, >10%).
    pub bucket_sizes: [usize; 3],
    /// Returned items that fail their query's filter.
    pub filter_violations: usize,
    /// Per-query recall.
    pub per_query: Vec<f64>,
}

/// Inverse of `source_rows`: source row -> sorted row.
pub fn sorted_row_of(index: &Index) -> Vec<u32> {
    let mut inv = vec![0u32; index.len()];
    for (r, &s) in index.source_rows.iter().enumerate() {
        inv[s as usize] = r as u32;
    }
    inv
}

/// Fraction of items that pass each filter (exact).
pub fn pass_fractions(index: &Index, filters: &[Filter]) -> Vec<f64> {
    filters
        .par_iter()
        .map(|f| {
            if f.plan.is_all() || index.is_empty() {
                return 1.0;
            }
            let pass = (0..index.len()).filter(|&r| f.plan.matches_row(index, r)).count();
            pass as f64 / index.len() as f64
        })
        .collect()
}

/// Relative tolerance of a hit (ann-benchmarks' epsilon).
pub const RECALL_EPSILON: f64 = 1e-3;

/// Lowest exact score that counts as a hit against k-th true score `kth`.
pub fn hit_threshold(kth: f64) -> f64 {
    kth - RECALL_EPSILON * kth.abs().max(1.0)
}

/// Exact f64 score of query `q` against sorted row `r` (stored f16 embedding, else the
/// dequantized int8 code): the inner product, or for `l2` the negated squared distance.
pub fn exact_score(index: &Index, q: &[f32], r: usize) -> f64 {
    let d = index.dim;
    if index.metric == crate::Metric::L2 {
        let row: Vec<f64> = match &index.embeddings {
            Some(e) => e[r * d..(r + 1) * d].iter().map(|x| x.to_f64()).collect(),
            None => index.items.row(r).iter().map(|&x| x as f64 * index.items.scale[r] as f64).collect(),
        };
        return -row.iter().zip(q).map(|(x, &y)| (x - y as f64).powi(2)).sum::<f64>();
    }
    match &index.embeddings {
        Some(e) => e[r * d..(r + 1) * d].iter().zip(q).map(|(x, y)| x.to_f64() * *y as f64).sum(),
        None => {
            let s = index.items.scale[r] as f64;
            index.items.row(r).iter().zip(q).map(|(&x, y)| x as f64 * s * *y as f64).sum()
        }
    }
}

/// Score `results` (one per query) against `truth` at depth `k`.
pub fn evaluate(
    index: &Index,
    queries: &[f32],
    filters: &[Filter],
    truth: &[Truth],
    results: &[SearchResponse],
    k: usize,
) -> Result<Report> {
    let nq = results.len();
    if truth.len() != nq || filters.len() != nq {
        return Err(Error::CountMismatch {
            what: "evaluation".into(),
            left_name: "ground truth".into(),
            left: truth.len(),
            right_name: "queries".into(),
            right: nq,
        });
    }
    let d = index.dim;
    let inv = sorted_row_of(index);
    let fractions = pass_fractions(index, filters);
    let per: Vec<(f64, usize)> = (0..nq)
        .into_par_iter()
        .map(|i| {
            let (res, gt, f) = (&results[i], &truth[i], &filters[i]);
            let q = &queries[i * d..(i + 1) * d];
            let mut violations = 0;
            let mut hits = 0usize;
            let depth = k.min(gt.ids.len());
            let threshold = if depth == 0 { f64::INFINITY } else { hit_threshold(gt.scores[depth - 1]) };
            for &src in res.rows.iter().take(k) {
                let r = inv[src as usize] as usize;
                if !f.plan.matches_row(index, r) {
                    violations += 1;
                    continue;
                }
                if exact_score(index, q, r) >= threshold {
                    hits += 1;
                }
            }
            let recall = if depth == 0 { 1.0 } else { hits.min(depth) as f64 / depth as f64 };
            (recall, violations)
        })
        .collect();
    let mean = |sel: &dyn Fn(f64) -> bool| {
        let v: Vec<f64> = per.iter().zip(&fractions).filter(|(_, fr)| sel(**fr)).map(|(p, _)| p.0).collect();
        (if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }, v.len())
    };
    let (recall, _) = mean(&|_| true);
    let (recall_selective, a) = mean(&|f| f < 0.01);
    let (recall_mid, b) = mean(&|f| (0.01..=0.10).contains(&f));
    let (recall_broad, c) = mean(&|f| f > 0.10);
    Ok(Report {
        recall,
        recall_selective,
        recall_mid,
        recall_broad,
        bucket_sizes: [a, b, c],
        filter_violations: per.iter().map(|p| p.1).sum(),
        per_query: per.iter().map(|p| p.0).collect(),
    })
}

/// Queries per second of `s` over repeated passes of all `queries` (`[nq, d]`) lasting at
/// least one second, after one warm-up pass; `batch` queries per search call.
pub fn measure_qps(s: &dyn Search, queries: &[f32], filters: &[Filter], p: &SearchParams, batch: usize, d: usize) -> Result<f64> {
    let nq = queries.len() / d;
    let run_all = || -> Result<()> {
        for start in (0..nq).step_by(batch.max(1)) {
            let end = (start + batch).min(nq);
            let f = if filters.is_empty() { &[][..] } else { &filters[start..end] };
            s.search(&SearchRequest { queries: &queries[start * d..end * d], filters: f, params: p.clone() })?;
        }
        Ok(())
    };
    run_all()?;
    let t0 = Instant::now();
    let mut passes = 0usize;
    while t0.elapsed().as_secs_f64() < 1.0 {
        run_all()?;
        passes += 1;
    }
    Ok((passes * nq) as f64 / t0.elapsed().as_secs_f64())
}

impl Report {
    /// Multi-line human summary with the measured `qps`.
    pub fn summary(&self, qps: f64, k: usize) -> String {
        let n = self.per_query.len();
        let [a, b, c] = self.bucket_sizes;
        let rows = [
            (format!("recall@{k}"), format!("{:.4}  ({n} queries)", self.recall)),
            ("  filter passes <1%".into(), format!("{:.4}  ({a} queries)", self.recall_selective)),
            ("  filter passes 1-10%".into(), format!("{:.4}  ({b} queries)", self.recall_mid)),
            ("  filter passes >10%".into(), format!("{:.4}  ({c} queries)", self.recall_broad)),
            ("filter violations".into(), self.filter_violations.to_string()),
            ("queries per second".into(), format!("{qps:.0}")),
        ];
        rows.iter().map(|(l, v)| format!("{l:<22} {v}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attributes::parse_jsonl;
    use crate::model::npy::Matrix;
    use crate::model::{IndexBuilder, build::BuildParams};
    use rand::{Rng, SeedableRng};

    /// Ground truth in f32 from the original vectors (as Faiss or numpy computes it): the
    /// exact answer scores recall 1.0; swapping in a worse item lowers it.
    #[test]
    fn exact_answers_against_f32_truth_score_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
        let (n, d, nq, k) = (rng.random_range(200..500), rng.random_range(8..64), 20, 10);
        let scale = [1.0f32, 30.0, 0.01][rng.random_range(0..3)];
        let data: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect();
        let lines: String = (0..n).map(|i| format!("{{\"id\":\"{i}\"}}\n")).collect();
        let table = parse_jsonl(lines.as_bytes(), Path::new("t"), &[]).unwrap();
        let m = Matrix { rows: n, dim: d, data: data.clone(), was_f16: false };
        let ix = IndexBuilder::new(BuildParams { nlist: Some(4), ..Default::default() }).build(m, table).unwrap();
        let queries: Vec<f32> = (0..nq * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut truth = Vec::new();
        let mut results = Vec::new();
        let mut worse = Vec::new();
        for qi in 0..nq {
            let q = &queries[qi * d..(qi + 1) * d];
            let mut s: Vec<(f32, u64)> =
                (0..n).map(|r| (data[r * d..(r + 1) * d].iter().zip(q).map(|(a, b)| a * b).sum(), r as u64)).collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            truth.push(Truth { qid: qi, ids: s[..k].iter().map(|x| x.1).collect(), scores: s[..k].iter().map(|x| x.0 as f64).collect() });
            let resp = |rows: Vec<u64>| SearchResponse {
                ids: rows.iter().map(|r| r.to_string().into()).collect(),
                scores: vec![0.0; rows.len()],
                rows,
            };
            results.push(resp(s[..k].iter().map(|x| x.1).collect()));
            let mut w: Vec<u64> = s[..k].iter().map(|x| x.1).collect();
            w[rng.random_range(0..k)] = s[n - 1].1;
            worse.push(resp(w));
        }
        let filters = vec![Filter::compile("", &ix.attrs.schema, &ix.bloom.params).unwrap(); nq];
        let r = evaluate(&ix, &queries, &filters, &truth, &results, k).unwrap();
        assert_eq!(r.recall, 1.0, "per query {:?}", r.per_query);
        let w = evaluate(&ix, &queries, &filters, &truth, &worse, k).unwrap();
        assert!((w.recall - (1.0 - 1.0 / k as f64)).abs() < 1e-12, "{}", w.recall);
    }

    #[test]
    fn threshold_is_relative_above_one() {
        assert_eq!(hit_threshold(0.5), 0.5 - 1e-3);
        assert_eq!(hit_threshold(-0.5), -0.5 - 1e-3);
        assert!((hit_threshold(1000.0) - 999.0).abs() < 1e-9);
    }
}
