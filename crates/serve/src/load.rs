//! `silica load`: an HTTP load generator for `silica serve` (the H200 host has no wrk).
//!
//! `connections` keep-alive HTTP/1.1 connections (hyper's client), each sending one search
//! at a time, round-robin over the given queries (and their filters):
//!
//! * **closed loop**: each connection sends its next request as soon as the previous answer
//!   arrived (throughput at a fixed concurrency);
//! * **open loop** at `rate` requests/s: connection `c` owns the send times
//!   `start + (j * connections + c) / rate`; latency is measured from the *intended* send
//!   time, so a server that falls behind is charged for the wait (no coordinated omission).
//!
//! Requests completing in the warm-up are not counted; the report covers the `duration`
//! after it: QPS (answers with status 200 per second), latency percentiles of those, errors
//! by status (`io` for connection failures), QPS per `window` seconds, and the server's
//! mean batch size over the window (from /metrics).
//!
//! **Upsert stream** ([`Upserts`], `--upsert-rate`): `--upsert-connections` more
//! connections post batches of new items (`POST /v1/items`) at a fixed rate of items/s
//! from the start of the measured window to its end (open loop: batch `j` is due at
//! `counted + j * batch / rate`, goes on connection `j % connections`, and its
//! acknowledgement latency is measured from that time). Each item's vector is a row of the
//! stream's base vectors plus uniform noise of ±`noise` per component, or, without base
//! vectors, a random unit vector (so its own vector finds it first); ids are `{prefix}{i}`. Afterwards up to `check` acknowledged items are looked
//! up by their own vector (`k = 1`): the report says how many came back as themselves.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use silica_core::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request body form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// `{"vector": [...], "filter": ..., "k": ...}`, JSON answer.
    Json,
    /// Little-endian f32 row, parameters in the query string, binary answer.
    Binary,
}

/// Load pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
}

/// What to send and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` of the server.
    pub addr: String,
    /// `[Q, D]` query rows.
    pub queries: Vec<Vec<f32>>,
    /// One filter per query (`""`: none), or empty for none.
    pub filters: Vec<String>,
    pub k: usize,
    pub nprobe: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub mode: Mode,
    /// Requests per second (open loop).
    pub rate: f64,
    pub body: Body,
    /// Client worker threads (`None`: one per core).
    pub threads: Option<usize>,
    /// Seconds per entry of [`Report::window_qps`].
    pub window: Duration,
    /// An upsert stream during the measured window (`None`: searches only).
    pub upserts: Option<Upserts>,
}

/// The upsert stream of a load run (see the module docs).
#[derive(Clone, Debug)]
pub struct Upserts {
    /// Items per second (> 0).
    pub rate: f64,
    /// Items per `POST /v1/items` (>= 1).
    pub batch: usize,
    /// Connections posting batches (>= 1): batch `j` goes on connection `j % connections`.
    pub connections: usize,
    /// `[R, D]` base vectors, cycled; empty: random unit vectors of dimension `dim`.
    pub base: Vec<Vec<f32>>,
    pub dim: usize,
    /// Uniform noise added per component.
    pub noise: f32,
    /// Id prefix.
    pub prefix: String,
    /// Acknowledged items to look up by their own vector afterwards (k = 1).
    pub check: usize,
    pub seed: u64,
}

/// What the upsert stream did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpsertReport {
    /// Offered items/s and items per request.
    pub rate: f64,
    pub batch: usize,
    /// Items acknowledged (status 200) and requests sent.
    pub acked: u64,
    pub requests: u64,
    /// Acknowledged items per second over the window.
    pub acked_per_s: f64,
    /// Acknowledgement latency of the status-200 requests, from their due time.
    pub ack_ms: Latency,
    /// Failed requests by status or `io`.
    pub errors: BTreeMap<String, u64>,
    /// Acknowledged items looked up by their own vector (k = 1), and how many came back first.
    pub self_find_checked: u64,
    pub self_find_found: u64,
    /// Up to 10 misses: (item id, the id that came back first, or "" for none/error).
    pub self_find_misses: Vec<(String, String)>,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// The result of one run (`silica load` prints it as JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub body: Body,
    pub connections: usize,
    /// Offered rate (open loop), requests/s.
    pub rate: Option<f64>,
    pub duration_s: f64,
    /// Answers counted in the window (any status), and those with status 200.
    pub requests: u64,
    pub ok: u64,
    /// Status-200 answers per second.
    pub qps: f64,
    /// Latency of the status-200 answers.
    pub latency_ms: Latency,
    /// Failed requests by status (`"503"`, ...) or `"io"`.
    pub errors: BTreeMap<String, u64>,
    /// The server's queries per executor call over the window (from /metrics), when known.
    pub mean_batch_queries: Option<f64>,
    /// Status-200 answers per second in consecutive windows of `window_s` seconds.
    pub window_s: f64,
    pub window_qps: Vec<f64>,
    /// The upsert stream, when one ran.
    pub upserts: Option<UpsertReport>,
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One prepared request: path with query string, content type, body.
struct Prepared {
    path: String,
    binary: bool,
    body: Bytes,
}

fn prepare(cfg: &Config) -> Vec<Prepared> {
    cfg.queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let filter = cfg.filters.get(i).map(String::as_str).unwrap_or("");
            match cfg.body {
                Body::Json => {
                    let mut v = serde_json::json!({"vector": q, "k": cfg.k});
                    if !filter.is_empty() {
                        v["filter"] = filter.into();
                    }
                    if let Some(n) = cfg.nprobe {
                        v["nprobe"] = n.into();
                    }
                    if let Some(t) = cfg.timeout_ms {
                        v["timeout_ms"] = t.into();
                    }
                    Prepared { path: "/v1/search".into(), binary: false, body: Bytes::from(v.to_string()) }
                }
                Body::Binary => {
                    let mut path = format!("/v1/search?k={}", cfg.k);
                    if !filter.is_empty() {
                        path += &format!("&filter={}", enc(filter));
                    }
                    if let Some(n) = cfg.nprobe {
                        path += &format!("&nprobe={n}");
                    }
                    if let Some(t) = cfg.timeout_ms {
                        path += &format!("&timeout_ms={t}");
                    }
                    Prepared { path, binary: true, body: Bytes::from(q.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()) }
                }
            }
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    /// Microseconds of each counted status-200 answer.
    lat_us: Vec<u32>,
    /// Milliseconds after the window's start at which each of them completed.
    done_ms: Vec<u32>,
    requests: u64,
    errors: BTreeMap<String, u64>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> std::result::Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(sender: &mut Sender, host: &str, p: &Prepared) -> std::result::Result<u16, String> {
    send_read(sender, host, p).await.map(|(s, _)| s)
}

/// [`send`], also returning the answer's body.
async fn send_read(sender: &mut Sender, host: &str, p: &Prepared) -> std::result::Result<(u16, Bytes), String> {
    let mut req = hyper::Request::post(p.path.as_str()).header(hyper::header::HOST, host);
    req = if p.binary {
        req.header(hyper::header::CONTENT_TYPE, "application/octet-stream").header(hyper::header::ACCEPT, "application/octet-stream")
    } else {
        req.header(hyper::header::CONTENT_TYPE, "application/json")
    };
    let req = req.body(Full::new(p.body.clone())).map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// Item `i` of the stream: its id and vector.
fn stream_item(u: &Upserts, i: u64) -> (String, Vec<f32>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let v = if u.base.is_empty() {
        let g: Vec<f32> = (0..u.dim).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect();
        let n = g.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        g.into_iter().map(|x| x / n).collect()
    } else {
        let base = &u.base[(i % u.base.len() as u64) as usize];
        base.iter().map(|&x| x + if u.noise > 0.0 { rng.random_range(-u.noise..u.noise) } else { 0.0 }).collect()
    };
    (format!("{}{i}", u.prefix), v)
}

/// The upsert stream from `counted` to `end`; returns its tally and the acknowledged items.
async fn upsert_stream(addr: String, u: Upserts, counted: Instant, end: Instant) -> (UpsertReport, Vec<u64>) {
    let mut rep = UpsertReport { rate: u.rate, batch: u.batch, ..Default::default() };
    let conns = u.connections.max(1) as u64;
    let u = Arc::new(u);
    let tasks: Vec<_> = (0..conns).map(|c| tokio::spawn(upsert_connection(addr.clone(), u.clone(), c, conns, counted, end))).collect();
    let mut lat_us: Vec<u32> = Vec::new();
    let mut acked: Vec<u64> = Vec::new();
    for t in tasks {
        let Ok((l, a, requests, errors)) = t.await else { continue };
        lat_us.extend(l);
        acked.extend(a);
        rep.requests += requests;
        for (k, v) in errors {
            *rep.errors.entry(k).or_default() += v;
        }
    }
    acked.sort_unstable();
    lat_us.sort_unstable();
    rep.ack_ms = latency(&lat_us);
    rep.acked = acked.len() as u64;
    rep.acked_per_s = rep.acked as f64 / end.duration_since(counted).as_secs_f64();
    (rep, acked)
}

/// Connection `c` of `conns` of the upsert stream: batches `j = c, c + conns, ...`, each
/// sent at its due time `counted + j * batch / rate` (or as soon as the previous one on
/// this connection was answered) and timed from it. Returns latencies (us), acknowledged
/// items, requests sent and errors.
async fn upsert_connection(
    addr: String,
    u: Arc<Upserts>,
    c: u64,
    conns: u64,
    counted: Instant,
    end: Instant,
) -> (Vec<u32>, Vec<u64>, u64, BTreeMap<String, u64>) {
    let (mut lat_us, mut acked, mut requests, mut errors) = (Vec::new(), Vec::new(), 0u64, BTreeMap::<String, u64>::new());
    let mut sender: Option<Sender> = None;
    for j in (c..).step_by(conns as usize) {
        let due = counted + Duration::from_secs_f64((j * u.batch as u64) as f64 / u.rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let first = j * u.batch as u64;
        let items: Vec<serde_json::Value> = (first..first + u.batch as u64)
            .map(|i| {
                let (id, v) = stream_item(&u, i);
                serde_json::json!({"id": id, "vector": v})
            })
            .collect();
        let p = Prepared { path: "/v1/items".into(), binary: false, body: Bytes::from(serde_json::json!({"items": items}).to_string()) };
        requests += 1;
        if sender.is_none() {
            sender = connect(&addr).await.ok();
        }
        let r = match sender.as_mut() {
            Some(s) => send(s, &addr, &p).await,
            None => Err("connect".into()),
        };
        match r {
            Ok(200) => {
                lat_us.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                acked.extend(first..first + u.batch as u64);
            }
            Ok(s) => *errors.entry(s.to_string()).or_default() += 1,
            Err(_) => {
                *errors.entry("io".into()).or_default() += 1;
                sender = None;
            }
        }
    }
    (lat_us, acked, requests, errors)
}

/// Look up `check` of the acknowledged items (evenly spaced; all of them when `check` >=
/// their number) by their own vector, k = 1, 64 vectors per request on 8 connections.
async fn self_find(addr: &str, u: &Upserts, acked: &[u64], rep: &mut UpsertReport) {
    let n = u.check.min(acked.len());
    let picked: Vec<u64> = (0..n).map(|c| acked[c * acked.len() / n]).collect();
    let chunks: Vec<Vec<u64>> = picked.chunks(64).map(<[u64]>::to_vec).collect();
    let per_conn = chunks.len().div_ceil(8).max(1);
    let u = Arc::new(u.clone());
    let mut tasks = Vec::new();
    for part in chunks.chunks(per_conn).map(<[Vec<u64>]>::to_vec) {
        let (addr, u) = (addr.to_string(), u.clone());
        tasks.push(tokio::spawn(async move {
            let (mut checked, mut found, mut misses) = (0u64, 0u64, Vec::new());
            let Ok(mut s) = connect(&addr).await else { return (checked, found, misses) };
            for chunk in part {
                let items: Vec<(String, Vec<f32>)> = chunk.iter().map(|&i| stream_item(&u, i)).collect();
                let vectors: Vec<&Vec<f32>> = items.iter().map(|(_, v)| v).collect();
                let p = Prepared {
                    path: "/v1/search".into(),
                    binary: false,
                    body: Bytes::from(serde_json::json!({"vectors": vectors, "k": 1}).to_string()),
                };
                let answers: Vec<Option<String>> = match send_read(&mut s, &addr, &p).await {
                    Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["results"].as_array().map(|r| r.iter().map(|x| x["ids"][0].as_str().map(String::from)).collect()))
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                for (j, (id, _)) in items.into_iter().enumerate() {
                    checked += 1;
                    let first = answers.get(j).cloned().flatten();
                    if first.as_deref() == Some(id.as_str()) {
                        found += 1;
                    } else if misses.len() < 10 {
                        misses.push((id, first.unwrap_or_default()));
                    }
                }
            }
            (checked, found, misses)
        }));
    }
    for t in tasks {
        let Ok((c, f, m)) = t.await else { continue };
        rep.self_find_checked += c;
        rep.self_find_found += f;
        for x in m {
            if rep.self_find_misses.len() < 10 {
                rep.self_find_misses.push(x);
            }
        }
    }
}

fn latency(l: &[u32]) -> Latency {
    Latency {
        p50: percentile(l, 0.5),
        p90: percentile(l, 0.9),
        p99: percentile(l, 0.99),
        p999: percentile(l, 0.999),
        max: l.last().map_or(0.0, |&x| x as f64 / 1e3),
        mean: if l.is_empty() { 0.0 } else { l.iter().map(|&x| x as f64).sum::<f64>() / l.len() as f64 / 1e3 },
    }
}

/// One connection's loop until `end`.
async fn connection(c: usize, cfg: Arc<Config>, reqs: Arc<Vec<Prepared>>, start: Instant, counted: Instant, end: Instant) -> Tally {
    let mut t = Tally::default();
    let mut sender: Option<Sender> = None;
    let conns = cfg.connections as u64;
    for j in 0u64.. {
        // Open loop: this connection's j-th slot; closed loop: now.
        let intended = match cfg.mode {
            Mode::Closed => Instant::now(),
            Mode::Open => start + Duration::from_secs_f64((j * conns + c as u64) as f64 / cfg.rate),
        };
        if intended >= end {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let p = &reqs[((j * conns + c as u64) % reqs.len() as u64) as usize];
        if sender.is_none() {
            match connect(&cfg.addr).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    if Instant::now() >= counted {
                        t.requests += 1;
                        *t.errors.entry("io".into()).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let r = send(sender.as_mut().expect("connected"), &cfg.addr, p).await;
        let done = Instant::now();
        if done > end {
            break;
        }
        let count = done >= counted;
        match r {
            Ok(200) if count => {
                t.lat_us.push(done.duration_since(intended).as_micros().min(u32::MAX as u128) as u32);
                t.done_ms.push(done.duration_since(counted).as_millis() as u32);
            }
            Ok(_) | Err(_) if !count => {}
            Ok(s) => *t.errors.entry(s.to_string()).or_default() += 1,
            Err(_) => {
                *t.errors.entry("io".into()).or_default() += 1;
                sender = None;
            }
        }
        if r.is_err() {
            sender = None;
        }
        if count {
            t.requests += 1;
        }
    }
    t
}

/// `(sum, count)` of `silica_batch_queries` from the server's /metrics.
async fn batch_stats(addr: &str) -> Option<(f64, f64)> {
    let mut s = connect(addr).await.ok()?;
    let req = hyper::Request::get("/metrics").header(hyper::header::HOST, addr).body(Full::new(Bytes::new())).ok()?;
    let body = s.send_request(req).await.ok()?.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let get = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok());
    Some((get("silica_batch_queries_sum ")?, get("silica_batch_queries_count ")?))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e3
}

/// Run the load and report. Errors: no queries, zero connections, an open loop without a
/// positive rate, a server that cannot be reached at all.
pub fn run(cfg: Config) -> Result<Report> {
    if cfg.queries.is_empty() {
        return Err(Error::param("queries", "no queries"));
    }
    if !cfg.filters.is_empty() && cfg.filters.len() != cfg.queries.len() {
        return Err(Error::param("filters", format!("{} filters for {} queries", cfg.filters.len(), cfg.queries.len())));
    }
    if cfg.connections == 0 {
        return Err(Error::param("connections", "must be at least 1"));
    }
    if cfg.mode == Mode::Open && !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(Error::param("rate", "an open loop needs --rate > 0 (requests per second)"));
    }
    if cfg.window.is_zero() {
        return Err(Error::param("window", "must be > 0 seconds"));
    }
    if let Some(u) = &cfg.upserts {
        if !(u.rate.is_finite() && u.rate > 0.0) {
            return Err(Error::param("upsert-rate", "must be > 0 items/s"));
        }
        if u.batch == 0 {
            return Err(Error::param("upsert-batch", "must be at least 1"));
        }
        if u.connections == 0 {
            return Err(Error::param("upsert-connections", "must be at least 1"));
        }
        if u.dim != cfg.queries[0].len() || u.base.iter().any(|b| b.len() != u.dim) {
            return Err(Error::param("upsert-vectors", format!("need at least one row of dimension {}", cfg.queries[0].len())));
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = cfg.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.enable_all().build().map_err(|e| Error::backend("load", format!("tokio runtime: {e}")))?;
    let reqs = Arc::new(prepare(&cfg));
    let cfg = Arc::new(cfg);
    rt.block_on(async move {
        connect(&cfg.addr).await.map_err(|e| Error::backend("load", format!("cannot reach {}: {e}", cfg.addr)))?;
        let start = Instant::now() + Duration::from_millis(20);
        let counted = start + cfg.warmup;
        let end = counted + cfg.duration;
        let tasks: Vec<_> =
            (0..cfg.connections).map(|c| tokio::spawn(connection(c, cfg.clone(), reqs.clone(), start, counted, end))).collect();
        let stream = cfg.upserts.clone().map(|u| tokio::spawn(upsert_stream(cfg.addr.clone(), u, counted, end)));
        tokio::time::sleep_until(counted.into()).await;
        let before = batch_stats(&cfg.addr).await;
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await.map_err(|e| Error::backend("load", e.to_string()))?;
            all.lat_us.extend(t.lat_us);
            all.done_ms.extend(t.done_ms);
            all.requests += t.requests;
            for (k, v) in t.errors {
                *all.errors.entry(k).or_default() += v;
            }
        }
        let after = batch_stats(&cfg.addr).await;
        let mean_batch_queries = match (before, after) {
            (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => Some((s1 - s0) / (c1 - c0)),
            _ => None,
        };
        let upserts = match (stream, &cfg.upserts) {
            (Some(t), Some(u)) => {
                let (mut rep, acked) = t.await.map_err(|e| Error::backend("load", e.to_string()))?;
                self_find(&cfg.addr, u, &acked, &mut rep).await;
                Some(rep)
            }
            _ => None,
        };
        all.lat_us.sort_unstable();
        let l = &all.lat_us;
        let secs = cfg.duration.as_secs_f64();
        let win = cfg.window.as_secs_f64();
        let nwin = (secs / win).ceil().max(1.0) as usize;
        let mut per = vec![0u64; nwin];
        for &ms in &all.done_ms {
            per[((ms as f64 / 1e3 / win) as usize).min(nwin - 1)] += 1;
        }
        // The last window may be shorter than `window`.
        let window_qps = per.iter().enumerate().map(|(i, &c)| c as f64 / (secs - i as f64 * win).min(win)).collect();
        Ok(Report {
            mode: cfg.mode,
            body: cfg.body,
            connections: cfg.connections,
            rate: (cfg.mode == Mode::Open).then_some(cfg.rate),
            duration_s: secs,
            requests: all.requests,
            ok: l.len() as u64,
            qps: l.len() as f64 / secs,
            latency_ms: latency(l),
            errors: all.errors,
            mean_batch_queries,
            window_s: win,
            window_qps,
            upserts,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=1000).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 500.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
        assert_eq!(percentile(&v[..1], 0.999), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
