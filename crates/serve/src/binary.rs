//! The binary search body and answer (README "Binary search"), and the direct JSON writer
//! of search answers.
//!
//! Request: `POST /v1/search` with `Content-Type: application/octet-stream`; the body is
//! `B` query rows of `D` little-endian f32 (`B * D * 4` bytes, row-major, what
//! `numpy.ndarray.astype('<f4').tobytes()` gives); the parameters travel in the query
//! string (`k`, `nprobe`, `k0`, `rerank`, `timeout_ms`, `task_weights` as comma-separated
//! numbers, `filter`: one filter for every row, or `filters`: a JSON array of one filter
//! per row), percent-encoded.
//!
//! Answer with `Accept: application/octet-stream` (`Content-Type:
//! application/octet-stream`), all little-endian: `u64 version`, `u32 B`, then per query
//! `u32 n`, `n x u64 rows`, `n x f32 scores`, `n x (u32 byte length, UTF-8 id)`. Without
//! that `Accept`, the JSON answer of a `vectors` request. Errors are always JSON.

use super::api::SearchBody;
use super::error::ApiError;
use serde::Serialize;
use silica_core::graph::{RerankMode, SearchResponse};
use std::sync::Arc;

/// The media type of binary bodies.
pub const OCTET_STREAM: &str = "application/octet-stream";

fn decode(v: &str, name: &str) -> Result<String, ApiError> {
    let plus = v.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad(name, "is not valid percent-encoded UTF-8"))
}

fn number<T: std::str::FromStr>(v: &str, name: &str) -> Result<T, ApiError> {
    v.parse().map_err(|_| ApiError::bad(name, format!("{v:?} is not a valid number")))
}

/// Decode a binary search: `body` holds `[B, dim]` little-endian f32 rows, `query` the
/// percent-encoded parameters. Errors (400 naming the field): a body that is empty or not
/// a whole number of rows (`body`), an unknown or repeated parameter, a malformed value.
/// Value checks (NaN/Inf as `vectors[i][j]`, ranges) are those of the JSON body.
pub fn parse_request(body: &[u8], query: Option<&str>, dim: usize) -> Result<SearchBody, ApiError> {
    let row = 4 * dim;
    if body.is_empty() || row == 0 || !body.len().is_multiple_of(row) {
        return Err(ApiError::bad(
            "body",
            format!("{} bytes is not a whole number of query rows of {dim} little-endian f32 ({row} bytes each)", body.len()),
        ));
    }
    let vectors: Vec<Vec<f32>> =
        body.chunks_exact(row).map(|r| r.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()).collect();
    let mut b = SearchBody { vectors: Some(vectors), ..Default::default() };
    let mut seen = std::collections::HashSet::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k, "query")?;
        let v = decode(v, &key)?;
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad(key, "is given twice"));
        }
        match key.as_str() {
            "k" => b.k = Some(number(&v, "k")?),
            "nprobe" => b.nprobe = Some(number(&v, "nprobe")?),
            "k0" => b.k0 = Some(number(&v, "k0")?),
            "timeout_ms" => b.timeout_ms = Some(number(&v, "timeout_ms")?),
            "rerank" => {
                b.rerank = Some(match v.as_str() {
                    "auto" => RerankMode::Auto,
                    "none" => RerankMode::None,
                    "refine" => RerankMode::Refine,
                    "model" => RerankMode::Model,
                    _ => return Err(ApiError::bad("rerank", format!("{v:?}: expected auto, none, refine or model"))),
                })
            }
            "task_weights" => b.task_weights = Some(v.split(',').map(|x| number(x.trim(), "task_weights")).collect::<Result<_, _>>()?),
            "filter" => b.filter = Some(v),
            "filters" => {
                b.filters = Some(
                    serde_json::from_str(&v)
                        .map_err(|e| ApiError::bad("filters", format!("expected a JSON array of filter strings: {e}")))?,
                )
            }
            _ => {
                return Err(ApiError::bad(
                    key,
                    "unknown parameter (known: k, nprobe, k0, rerank, task_weights, timeout_ms, filter, filters)",
                ));
            }
        }
    }
    Ok(b)
}

/// The binary answer (layout in the module docs).
pub fn encode_response(version: u64, results: &[SearchResponse]) -> Vec<u8> {
    let bytes: usize = results.iter().map(|r| 4 + 12 * r.rows.len() + r.ids.iter().map(|i| 4 + i.len()).sum::<usize>()).sum();
    let mut out = Vec::with_capacity(12 + bytes);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(results.len() as u32).to_le_bytes());
    for r in results {
        out.extend_from_slice(&(r.rows.len() as u32).to_le_bytes());
        r.rows.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        r.scores.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        for id in &r.ids {
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
    }
    out
}

/// Errors of [`decode_response`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed binary search answer: {0}")]
pub struct DecodeError(pub &'static str);

/// Read a binary answer back (clients, `silica load`, tests): the version and one response
/// per query.
pub fn decode_response(mut b: &[u8]) -> Result<(u64, Vec<SearchResponse>), DecodeError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
        if b.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    let u32_of = |x: &[u8]| u32::from_le_bytes(x.try_into().expect("4 bytes"));
    let version = u64::from_le_bytes(take(&mut b, 8)?.try_into().expect("8 bytes"));
    let nq = u32_of(take(&mut b, 4)?) as usize;
    let mut out = Vec::with_capacity(nq.min(1 << 16));
    for _ in 0..nq {
        let n = u32_of(take(&mut b, 4)?) as usize;
        let rows = take(&mut b, n.checked_mul(8).ok_or(DecodeError("count overflows"))?)?
            .chunks_exact(8)
            .map(|x| u64::from_le_bytes(x.try_into().expect("8")))
            .collect();
        let scores = take(&mut b, 4 * n)?.chunks_exact(4).map(|x| f32::from_le_bytes(x.try_into().expect("4"))).collect();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_of(take(&mut b, 4)?) as usize;
            let s = std::str::from_utf8(take(&mut b, len)?).map_err(|_| DecodeError("an id is not UTF-8"))?;
            ids.push(Arc::<str>::from(s));
        }
        out.push(SearchResponse { rows, ids, scores });
    }
    if !b.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok((version, out))
}

#[derive(Serialize)]
struct One<'a> {
    version: u64,
    rows: &'a [u64],
    ids: &'a [Arc<str>],
    scores: &'a [f32],
}

#[derive(Serialize)]
struct Many<'a> {
    version: u64,
    results: &'a [SearchResponse],
}

/// The JSON answer, written directly from the results (no intermediate `Value`):
/// `{version, rows, ids, scores}` when `single`, else `{version, results: [...]}`.
pub fn json_response(version: u64, results: &[SearchResponse], single: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + results.iter().map(|r| 48 * r.rows.len()).sum::<usize>());
    let r = match (single, results) {
        (true, [r]) => serde_json::to_writer(&mut out, &One { version, rows: &r.rows, ids: &r.ids, scores: &r.scores }),
        _ => serde_json::to_writer(&mut out, &Many { version, results }),
    };
    r.expect("serializing to memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_truncation_is_an_error() {
        let rs = vec![
            SearchResponse { rows: vec![3, 1 << 40], ids: vec!["a".into(), "é-ü".into()], scores: vec![1.5, -0.25] },
            SearchResponse { rows: vec![], ids: vec![], scores: vec![] },
        ];
        let b = encode_response(7, &rs);
        assert_eq!(decode_response(&b), Ok((7, rs.clone())));
        for cut in 0..b.len() {
            assert!(decode_response(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert_eq!(decode_response(&extra), Err(DecodeError("trailing bytes")));
        let j: serde_json::Value = serde_json::from_slice(&json_response(7, &rs[..1], true)).unwrap();
        assert_eq!(j, serde_json::json!({"version": 7, "rows": [3, 1u64 << 40], "ids": ["a", "é-ü"], "scores": [1.5, -0.25]}));
        let j: serde_json::Value = serde_json::from_slice(&json_response(7, &rs, false)).unwrap();
        assert_eq!(j["results"][1], serde_json::json!({"rows": [], "ids": [], "scores": []}));
    }

    #[test]
    fn requests_decode_rows_and_parameters() {
        let rows: Vec<f32> = vec![1.0, -2.5, 0.0, 3.25, 4.0, 5.0];
        let body: Vec<u8> = rows.iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = parse_request(&body, Some("k=5&nprobe=2&rerank=none&filter=color+%3D+%22red%22&timeout_ms=30"), 3).unwrap();
        assert_eq!(b.vectors, Some(vec![vec![1.0, -2.5, 0.0], vec![3.25, 4.0, 5.0]]));
        assert_eq!((b.k, b.nprobe, b.rerank, b.timeout_ms), (Some(5), Some(2), Some(RerankMode::None), Some(30)));
        assert_eq!(b.filter.as_deref(), Some("color = \"red\""));
        let b = parse_request(&body, Some("filters=%5B%22%22%2C%22x+%3D+%5C%22y%5C%22%22%5D"), 3).unwrap();
        assert_eq!(b.filters, Some(vec![String::new(), "x = \"y\"".to_string()]));
        for (body, q, field) in [
            (&body[..], Some("k=x"), "k"),
            (&body[..], Some("kk=1"), "kk"),
            (&body[..], Some("k=1&k=2"), "k"),
            (&body[..], Some("rerank=fast"), "rerank"),
            (&body[..], Some("filters=nope"), "filters"),
            (&body[..5], None, "body"),
            (&body[..0], None, "body"),
            (&body[..], Some("filter=%FF"), "filter"),
        ] {
            let e = parse_request(body, q, 3).unwrap_err();
            assert_eq!((e.status.as_u16(), e.field.as_deref()), (400, Some(field)), "{q:?}: {e}");
        }
    }
}
