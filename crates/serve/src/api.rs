//! The HTTP API (axum), versioned under `/v1`. Every body is JSON; every error is a JSON
//! [`ApiError`] with a 4xx status naming the field at fault (5xx only for server faults).
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /v1/search` | [`SearchBody`] | `{version, rows, ids, scores}` or `{version, results: [...]}` |
//! | `POST /v1/items` | `{"items": [Item...]}` | `{version, upserted}` |
//! | `GET /v1/items/{id}[?vector=true][&fields=a,b]` | — | `{id, field: value...[, vector]}`, 404 for an unknown or deleted id |
//! | `DELETE /v1/items/{id}` | — | `{version, deleted}`, 404 for an unknown id |
//! | `PATCH /v1/items/{id}` | `{"attributes": {field: value(s)}}` | `{version, patched}` |
//! | `POST /v1/compact` | — | compaction report |
//! | `GET /v1/stats` | — | [`Stats`](super::state::Stats) |
//! | `GET /healthz` | — | `{status: "ok", version}` |
//! | `GET /metrics` | — | Prometheus text |
//!
//! Write routes (items, compact) need `Authorization: Bearer <token>` when the server has a
//! token. Writes are acknowledged after their log record is fsynced; the returned `version`
//! is the first snapshot that contains them.

use super::batcher::Job;
use super::binary;
use super::error::ApiError;
use super::metrics::Metrics;
use super::state::Snapshot;
use super::update::{Batch, Item, Op};
use super::writer::Cmd;
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use silica_core::filter::{Dictionary, Filter};
use silica_core::graph::{RerankMode, SearchParams};
use silica_core::model::BloomParams;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most results per query.
pub const MAX_K: usize = 10_000;
/// Most scan candidates per query.
pub const MAX_K0: usize = 100_000;
/// Most queries in one request.
pub const MAX_QUERIES: usize = 4096;
/// Most scan candidates (queries x K0) in one request: bounds the memory a request can ask for.
pub const MAX_CANDIDATES: usize = 1 << 22;
/// Longest `timeout_ms` (one hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// `POST /v1/search` body. Exactly one of `vector` / `vectors`; at most one of `filter`
/// (applies to every query) / `filters` (one per query).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub vector: Option<Vec<f32>>,
    pub vectors: Option<Vec<Vec<f32>>>,
    pub filter: Option<String>,
    pub filters: Option<Vec<String>>,
    /// Results per query (default 10, at most [`MAX_K`]).
    pub k: Option<usize>,
    /// Lists probed (default: the nprobe the index was calibrated for at build, else nlist/16; 1..=nlist).
    pub nprobe: Option<usize>,
    /// Scan candidates kept for rerank (>= k).
    pub k0: Option<usize>,
    /// `auto` (default), `none`, `refine` or `model`.
    pub rerank: Option<RerankMode>,
    /// Task weights for `model` rerank, one per task.
    pub task_weights: Option<Vec<f32>>,
    /// Deadline in milliseconds from arrival (1..=[`MAX_TIMEOUT_MS`]; default the server's
    /// `--timeout-ms`): a request not searched by then is answered 504 `deadline_exceeded`.
    pub timeout_ms: Option<u64>,
    /// Attributes to return per result row (`"fields": [{...}, ...]` beside `ids`, as
    /// `silica search --fields`; JSON answers only).
    pub fields: Option<Vec<String>>,
}

/// A validated search request.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSearch {
    /// The request used `vector` (answer unwrapped) rather than `vectors`.
    pub single: bool,
    /// `[B, D]` queries.
    pub queries: Vec<f32>,
    /// `[B]` filter texts ("" = none).
    pub filters: Vec<String>,
    pub params: SearchParams,
    /// The request's own deadline, milliseconds from arrival (`None`: the server default).
    pub timeout_ms: Option<u64>,
    /// Attributes to return per result row.
    pub fields: Option<Vec<String>>,
}

/// What request validation needs to know about the index.
pub struct SearchContext<'a> {
    pub dim: usize,
    pub nlist: usize,
    pub has_embeddings: bool,
    /// Tasks of the rerank model, when the index has one.
    pub model_tasks: Option<usize>,
    pub dict: &'a dyn Dictionary,
    pub bloom: BloomParams,
}

impl<'a> SearchContext<'a> {
    pub fn of(s: &'a Snapshot) -> Self {
        let ix = s.index();
        SearchContext {
            dim: ix.dim,
            nlist: ix.nlist(),
            has_embeddings: ix.embeddings.is_some(),
            model_tasks: ix.rerank.as_ref().map(|m| m.tasks()),
            dict: &s.dict,
            bloom: ix.bloom.params,
        }
    }
}

/// Deserialize a JSON body, naming the path of a mistyped field (`vectors[1][3]`).
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // The fast path decodes straight into `T`; only a failing body is decoded again with
    // path tracking, for the error message.
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (path != "." && !path.is_empty()).then_some(path);
        let code = if inner.is_syntax() || inner.is_eof() { "malformed_json" } else { "bad_request" };
        ApiError::new(StatusCode::BAD_REQUEST, code, field, format!("invalid JSON body: {inner}"))
    })?;
    de.end().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", None, format!("invalid JSON body: {e}")))?;
    Ok(v)
}

/// Parse and validate a search body (never panics; fuzzed in `tests/serve_fuzz.rs`).
pub fn parse_search(body: &[u8], ctx: &SearchContext) -> Result<ParsedSearch, ApiError> {
    validate_search(from_json(body)?, ctx)
}

/// Validate a decoded search body (JSON, or binary rows with query-string parameters).
pub fn validate_search(b: SearchBody, ctx: &SearchContext) -> Result<ParsedSearch, ApiError> {
    let (single, rows, field) = match (b.vector, b.vectors) {
        (Some(v), None) => (true, vec![v], "vector"),
        (None, Some(v)) => (false, v, "vectors"),
        (Some(_), Some(_)) => return Err(ApiError::bad("vector", "give either `vector` or `vectors`, not both")),
        (None, None) => return Err(ApiError::bad("vector", "missing: give `vector` (one query) or `vectors` (a batch)")),
    };
    if rows.is_empty() {
        return Err(ApiError::bad(field, "no queries"));
    }
    if rows.len() > MAX_QUERIES {
        return Err(ApiError::bad(field, format!("{} queries; at most {MAX_QUERIES} per request", rows.len())));
    }
    let mut queries = Vec::with_capacity(rows.len() * ctx.dim);
    for (i, r) in rows.iter().enumerate() {
        let name = if single { field.to_string() } else { format!("{field}[{i}]") };
        if r.len() != ctx.dim {
            return Err(ApiError::bad(name, format!("has {} values; the index dimension is {}", r.len(), ctx.dim)));
        }
        if let Err(f) = silica_core::model::finite::check_vector(r, false) {
            return Err(ApiError::bad(f.col.map(|j| format!("{name}[{j}]")).unwrap_or(name), f.reason));
        }
        queries.extend_from_slice(r);
    }
    let filters = match (b.filter, b.filters) {
        (Some(_), Some(_)) => return Err(ApiError::bad("filter", "give either `filter` or `filters`, not both")),
        (Some(f), None) => vec![f; rows.len()],
        (None, Some(f)) => {
            if f.len() != rows.len() {
                return Err(ApiError::bad("filters", format!("{} filters for {} queries", f.len(), rows.len())));
            }
            f
        }
        (None, None) => vec![String::new(); rows.len()],
    };
    // Syntax and field names are checked here so that a bad filter fails only its request.
    let mut seen = std::collections::HashSet::new();
    for (i, text) in filters.iter().enumerate() {
        if seen.insert(text.as_str())
            && let Err(e) = Filter::compile(text, ctx.dict, &ctx.bloom)
        {
            let name = if single || filters.iter().all(|t| t == text) { "filter".to_string() } else { format!("filters[{i}]") };
            return Err(ApiError::bad(name, e.to_string()));
        }
    }
    let k = b.k.unwrap_or(10);
    if k == 0 || k > MAX_K {
        return Err(ApiError::bad("k", format!("{k} is out of range 1..={MAX_K}")));
    }
    if let Some(np) = b.nprobe
        && (np == 0 || np > ctx.nlist)
    {
        return Err(ApiError::bad("nprobe", format!("{np} is out of range 1..={} (nlist, the number of inverted lists)", ctx.nlist)));
    }
    let rerank = b.rerank.unwrap_or_default();
    match rerank {
        RerankMode::Refine if !ctx.has_embeddings => {
            return Err(ApiError::bad("rerank", "refine needs items.embeddings, which this index does not store"));
        }
        RerankMode::Model if ctx.model_tasks.is_none() => return Err(ApiError::bad("rerank", "this index has no rerank model")),
        RerankMode::Model if !ctx.has_embeddings => return Err(ApiError::bad("rerank", "model rerank needs items.embeddings")),
        _ => {}
    }
    if let Some(w) = &b.task_weights {
        let Some(t) = ctx.model_tasks.filter(|_| rerank == RerankMode::Model) else {
            return Err(ApiError::bad("task_weights", "only used with \"rerank\": \"model\""));
        };
        if w.len() != t {
            return Err(ApiError::bad("task_weights", format!("{} weights for {t} tasks", w.len())));
        }
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return Err(ApiError::bad(format!("task_weights[{i}]"), "is not finite"));
        }
    }
    if let Some(k0) = b.k0
        && (k0 < k || k0 > MAX_K0)
    {
        return Err(ApiError::bad("k0", format!("{k0} is out of range k..={MAX_K0} (k = {k})")));
    }
    let reranks = rerank != RerankMode::None && (rerank != RerankMode::Auto || ctx.has_embeddings);
    let k0 = b.k0.unwrap_or(silica_core::graph::default_k0(k, reranks));
    if rows.len() * k0 > MAX_CANDIDATES {
        return Err(ApiError::bad(
            if b.k0.is_some() { "k0" } else { "k" },
            format!("{} queries x {k0} candidates exceeds {MAX_CANDIDATES} per request; split the batch or lower k", rows.len()),
        ));
    }
    if let Some(t) = b.timeout_ms
        && (t == 0 || t > MAX_TIMEOUT_MS)
    {
        return Err(ApiError::bad("timeout_ms", format!("{t} is out of range 1..={MAX_TIMEOUT_MS}")));
    }
    let params = SearchParams { k, nprobe: b.nprobe, k0: b.k0, rerank, task_weights: b.task_weights };
    if let Some(f) = &b.fields {
        let known = ctx.dict.field_names();
        if let Some(n) = f.iter().find(|n| !known.contains(n)) {
            return Err(ApiError::bad("fields", format!("unknown field `{n}` (known fields: {})", known.join(", "))));
        }
    }
    Ok(ParsedSearch { single, queries, filters, params, timeout_ms: b.timeout_ms, fields: b.fields })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    attributes: BTreeMap<String, Value>,
}

/// Parse `POST /v1/items` into an update batch (item checks happen in the writer).
pub fn parse_upsert(body: &[u8]) -> Result<Batch, ApiError> {
    let b: UpsertBody = from_json(body)?;
    if b.items.is_empty() {
        return Err(ApiError::bad("items", "no items"));
    }
    Ok(Batch { ops: b.items.into_iter().map(|item| Op::Upsert { item }).collect() })
}

/// Parse `PATCH /v1/items/{id}`.
pub fn parse_patch(id: String, body: &[u8]) -> Result<Batch, ApiError> {
    let b: PatchBody = from_json(body)?;
    Ok(Batch { ops: vec![Op::Patch { id, attributes: b.attributes }] })
}

/// Shared by all handlers.
pub struct AppState {
    pub shared: Arc<ArcSwap<Snapshot>>,
    pub batcher: std::sync::mpsc::Sender<Job>,
    pub writer: mpsc::Sender<Cmd>,
    pub metrics: Arc<Metrics>,
    pub token: Option<String>,
    /// Most queries waiting for a batch (`--max-queue`); more are refused with 503.
    pub max_queue: usize,
    /// Deadline of a search that gives no `timeout_ms` (`--timeout-ms`; `None`: none).
    pub timeout: Option<Duration>,
}

type S = State<Arc<AppState>>;

/// The router with all routes, the body limit and JSON fallbacks.
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/search", post(search))
        .route("/v1/items", post(upsert))
        .route("/v1/items/{id}", delete(remove).patch(patch).get(get_item))
        .route("/v1/compact", post(compact))
        .route("/v1/stats", get(stats))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                None,
                "no such route; see /v1/search, /v1/items, /v1/stats, /healthz, /metrics",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn finish(s: &AppState, route: &'static str, t0: Instant, r: Result<Response, ApiError>) -> Response {
    let resp = r.unwrap_or_else(|e| e.into_response());
    s.metrics.request(route, resp.status().as_u16(), t0.elapsed().as_secs_f64());
    resp
}

fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "bad_request" };
        ApiError::new(status, code, None, e.body_text())
    })
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = p.map_err(|e| ApiError::bad("id", e.body_text()))?;
    super::update::check_id(&id, "id")?;
    Ok(id)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &s.token else { return Ok(()) };
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", Some("authorization".into()), m);
    let got = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("this write endpoint needs `Authorization: Bearer <token>`"))?;
    let got = got.as_bytes().strip_prefix(b"Bearer ").ok_or_else(|| unauthorized("expected `Authorization: Bearer <token>`"))?;
    if !same(got, token.as_bytes()) {
        return Err(unauthorized("invalid bearer token"));
    }
    Ok(())
}

fn media_is(headers: &HeaderMap, name: axum::http::HeaderName, media: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|m| m.trim().split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(media))))
}

async fn search(State(s): S, headers: HeaderMap, uri: axum::http::Uri, b: Result<Bytes, BytesRejection>) -> Response {
    use axum::http::header::{ACCEPT, CONTENT_TYPE};
    let t0 = Instant::now();
    let r = async {
        let b = body(b)?;
        let parsed = {
            let snap = s.shared.load();
            let ctx = SearchContext::of(&snap);
            if media_is(&headers, CONTENT_TYPE, binary::OCTET_STREAM) {
                validate_search(binary::parse_request(&b, uri.query(), ctx.dim)?, &ctx)?
            } else {
                parse_search(&b, &ctx)?
            }
        };
        let single = parsed.single;
        let fields = parsed.fields.clone();
        if fields.is_some() && media_is(&headers, ACCEPT, binary::OCTET_STREAM) {
            return Err(ApiError::bad("fields", "returned fields need a JSON answer (Accept: application/json)"));
        }
        let (version, results) = enqueue(&s, parsed, t0)?.await.map_err(|_| ApiError::internal("the search batch failed"))??;
        // Inputs are range-checked so scores are finite; never let a NaN/Inf (JSON null) out.
        if let Some(i) = results.iter().position(|r| r.scores.iter().any(|s| !s.is_finite())) {
            return Err(ApiError::internal(format!("query {i} produced a non-finite score (check the rerank model)")));
        }
        if single && results.len() != 1 {
            return Err(ApiError::internal("no result"));
        }
        let (media, bytes) = if media_is(&headers, ACCEPT, binary::OCTET_STREAM) {
            (binary::OCTET_STREAM, binary::encode_response(version, &results))
        } else if let Some(names) = fields {
            ("application/json", with_fields(&s, version, &results, single, names).await?)
        } else {
            ("application/json", binary::json_response(version, &results, single))
        };
        Ok(([(CONTENT_TYPE, axum::http::HeaderValue::from_static(media))], bytes).into_response())
    }
    .await;
    finish(&s, "search", t0, r)
}

/// Admit a parsed search to the bounded queue (503 `overloaded` with `Retry-After` when its
/// queries do not fit; a request larger than the whole queue is admitted when the queue is
/// empty) and hand it to the batcher; returns where its answer arrives.
fn enqueue(s: &AppState, search: ParsedSearch, arrived: Instant) -> Result<oneshot::Receiver<super::batcher::Reply>, ApiError> {
    let n = search.filters.len();
    let before = s.metrics.queued.fetch_add(n, Relaxed);
    if before > 0 && before + n > s.max_queue {
        s.metrics.queued.fetch_sub(n, Relaxed);
        s.metrics.rejected_full.fetch_add(1, Relaxed);
        return Err(ApiError::overloaded(format!(
            "the search queue is full ({before} queries waiting, --max-queue {}); retry later",
            s.max_queue
        )));
    }
    let timeout = search.timeout_ms.map(Duration::from_millis).or(s.timeout);
    let (tx, rx) = oneshot::channel();
    let job = Job { search, reply: tx, enqueued: Instant::now(), deadline: timeout.map(|t| arrived + t) };
    if s.batcher.send(job).is_err() {
        s.metrics.queued.fetch_sub(n, Relaxed);
        return Err(ApiError::unavailable("the search executor has stopped"));
    }
    Ok(rx)
}

/// Send a batch to the writer and wait for its acknowledgement (after fsync).
async fn write(s: &AppState, batch: Batch) -> Result<u64, ApiError> {
    let at = std::time::Instant::now();
    // The log record and the new rows' lists are computed here, on a blocking thread of
    // this request, so the single writer only validates, logs, fsyncs and publishes.
    let main = s.shared.load().index().clone();
    let batch = tokio::task::spawn_blocking(move || super::state::Incoming::prepare(batch, &main))
        .await
        .map_err(|e| ApiError::internal(format!("preparing the update batch: {e}")))?;
    s.metrics.write_phases.observe("prepare", at.elapsed().as_secs_f64());
    let (tx, rx) = oneshot::channel();
    s.writer
        .send(Cmd::Write { batch: Box::new(batch), at: std::time::Instant::now(), reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the writer has stopped"))?;
    rx.await.map_err(|_| ApiError::unavailable("the writer stopped before acknowledging"))?
}

/// The JSON answer with `"fields"` per query: one object per result row (its attributes
/// `names`, read by the writer after the search; an item deleted meanwhile gives `null`).
async fn with_fields(
    s: &AppState,
    version: u64,
    results: &[silica_core::graph::SearchResponse],
    single: bool,
    names: Vec<String>,
) -> Result<Vec<u8>, ApiError> {
    let ids: Vec<Arc<str>> = results.iter().flat_map(|r| r.ids.iter().cloned()).collect();
    let got = read_items(s, ids, Some(names.clone()), false).await?;
    let mut objs = got.into_iter().map(|m| {
        m.map_or(Value::Null, |mut m| {
            m.retain(|k, _| names.contains(k));
            Value::Object(m)
        })
    });
    let per_query: Vec<Value> = results.iter().map(|r| Value::Array(objs.by_ref().take(r.ids.len()).collect())).collect();
    let mut v: Value =
        serde_json::from_slice(&binary::json_response(version, results, single)).map_err(|e| ApiError::internal(e.to_string()))?;
    match (&mut v, single) {
        (Value::Object(o), true) => {
            o.insert("fields".into(), per_query.into_iter().next().unwrap_or(Value::Array(Vec::new())));
        }
        (Value::Object(o), false) => {
            if let Some(Value::Array(rs)) = o.get_mut("results") {
                for (r, f) in rs.iter_mut().zip(per_query) {
                    if let Value::Object(r) = r {
                        r.insert("fields".into(), f);
                    }
                }
            }
        }
        _ => {}
    }
    Ok(serde_json::to_vec(&v).expect("serializing to memory cannot fail"))
}

/// Items by id through the writer ([`Cmd::Get`]).
async fn read_items(s: &AppState, ids: Vec<Arc<str>>, names: Option<Vec<String>>, vector: bool) -> Result<super::writer::Items, ApiError> {
    let (tx, rx) = oneshot::channel();
    s.writer.send(Cmd::Get { ids, names, vector, reply: tx }).await.map_err(|_| ApiError::unavailable("the writer has stopped"))?;
    rx.await.map_err(|_| ApiError::unavailable("the writer stopped before answering"))?
}

/// `GET /v1/items/{id}`: the item's attributes (all, or `?fields=a,b`), and its vector with
/// `?vector=true`; 404 `not_found` for an unknown or deleted id. Fresh (upserted) items
/// included: the read follows the writes queued before it.
async fn get_item(State(s): S, uri: axum::http::Uri, p: Result<Path<String>, PathRejection>) -> Response {
    let t0 = Instant::now();
    let r = async {
        let id = path_id(p)?;
        let (mut vector, mut names) = (false, None);
        for (k, v) in uri.query().unwrap_or("").split('&').filter(|q| !q.is_empty()).map(|q| q.split_once('=').unwrap_or((q, ""))) {
            match k {
                "vector" => {
                    vector = match v {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => return Err(ApiError::bad("vector", format!("`{v}` is not true or false"))),
                    }
                }
                "fields" => names = Some(v.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect()),
                _ => return Err(ApiError::bad(k, "unknown query parameter (known: vector, fields)")),
            }
        }
        let got = read_items(&s, vec![Arc::from(id.as_str())], names, vector).await?;
        match got.into_iter().next().flatten() {
            Some(m) => Ok(Json(Value::Object(m)).into_response()),
            None => Err(ApiError::not_found(&id)),
        }
    }
    .await;
    finish(&s, "get_item", t0, r)
}

async fn upsert(State(s): S, headers: HeaderMap, b: Result<Bytes, BytesRejection>) -> Response {
    let t0 = Instant::now();
    let r = async {
        authorize(&s, &headers)?;
        let batch = parse_upsert(&body(b)?)?;
        let n = batch.ops.len();
        let version = write(&s, batch).await?;
        Ok(Json(json!({"version": version, "upserted": n})).into_response())
    }
    .await;
    finish(&s, "upsert", t0, r)
}

async fn remove(State(s): S, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Response {
    let t0 = Instant::now();
    let r = async {
        authorize(&s, &headers)?;
        let id = path_id(p)?;
        let version = write(&s, Batch { ops: vec![Op::Delete { id: id.clone() }] }).await?;
        Ok(Json(json!({"version": version, "deleted": id})).into_response())
    }
    .await;
    finish(&s, "delete", t0, r)
}

async fn patch(State(s): S, headers: HeaderMap, p: Result<Path<String>, PathRejection>, b: Result<Bytes, BytesRejection>) -> Response {
    let t0 = Instant::now();
    let r = async {
        authorize(&s, &headers)?;
        let id = path_id(p)?;
        let batch = parse_patch(id.clone(), &body(b)?)?;
        let version = write(&s, batch).await?;
        Ok(Json(json!({"version": version, "patched": id})).into_response())
    }
    .await;
    finish(&s, "patch", t0, r)
}

async fn compact(State(s): S, headers: HeaderMap) -> Response {
    let t0 = Instant::now();
    let r = async {
        authorize(&s, &headers)?;
        let (tx, rx) = oneshot::channel();
        s.writer.send(Cmd::Compact { reply: tx }).await.map_err(|_| ApiError::unavailable("the writer has stopped"))?;
        let report = rx.await.map_err(|_| ApiError::unavailable("the writer stopped during compaction"))??;
        Ok(Json(json!(report)).into_response())
    }
    .await;
    finish(&s, "compact", t0, r)
}

async fn stats(State(s): S) -> Response {
    let t0 = Instant::now();
    let snap = s.shared.load();
    let mut v = json!(snap.stats);
    let replicas = snap.main.replicas();
    if !replicas.is_empty() {
        v["replicas"] = json!(replicas);
    }
    let r = Ok(Json(v).into_response());
    finish(&s, "stats", t0, r)
}

async fn healthz(State(s): S) -> Response {
    let t0 = Instant::now();
    let v = s.shared.load().version;
    finish(&s, "healthz", t0, Ok(Json(json!({"status": "ok", "version": v})).into_response()))
}

async fn metrics(State(s): S) -> Response {
    let t0 = Instant::now();
    let snap = s.shared.load();
    let mut text = s.metrics.render(&snap.stats);
    super::metrics::render_replicas(&mut text, &snap.main.replicas());
    let r = ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response();
    finish(&s, "metrics", t0, Ok(r))
}
