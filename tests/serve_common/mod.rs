//! Shared by the `serve_*` integration tests: a random corpus, index building in a tempdir,
//! the real `silica serve` binary on a free loopback port, and a tiny HTTP/1.1 client (so
//! tests can send malformed and oversized requests byte for byte).
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use silica::model::attributes::parse_jsonl;
use silica::model::npy::Matrix;
use silica::{BuildParams, Index, IndexBuilder};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const COLORS: &[&str] = &["red", "green", "blue", "cyan", "black"];
pub const TAGS: &[&str] = &["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"];
pub const GRPS: &[&str] = &["a", "b", "c"];

/// One logical item.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub id: String,
    pub vector: Vec<f32>,
    /// field -> values (single-valued fields hold one).
    pub attrs: BTreeMap<String, Vec<String>>,
    pub size: f32,
}

impl Item {
    /// The `POST /v1/items` JSON of this item.
    pub fn json(&self) -> Value {
        let attrs: serde_json::Map<String, Value> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), if k == "tags" { json!(v) } else { json!(v.first().cloned().unwrap_or_default()) }))
            .collect();
        json!({"id": self.id, "vector": self.vector, "attributes": attrs, "features": {"size": self.size}})
    }
}

pub fn random_vector(rng: &mut ChaCha8Rng, d: usize) -> Vec<f32> {
    (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn random_item(rng: &mut ChaCha8Rng, id: String, d: usize) -> Item {
    let mut attrs = BTreeMap::new();
    attrs.insert("color".to_string(), vec![COLORS[rng.random_range(0..COLORS.len())].to_string()]);
    attrs.insert("grp".to_string(), vec![GRPS[rng.random_range(0..GRPS.len())].to_string()]);
    let tags: Vec<String> = TAGS.iter().filter(|_| rng.random_bool(0.3)).map(|s| s.to_string()).collect();
    attrs.insert("tags".to_string(), tags);
    Item { id, vector: random_vector(rng, d), attrs, size: rng.random_range(0..100) as f32 }
}

pub fn corpus(seed: u64, n: usize, d: usize) -> Vec<Item> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|i| random_item(&mut rng, format!("item-{i}"), d)).collect()
}

/// Build an index over `items` (ip metric, embeddings stored, feature `size`).
pub fn build_index(items: &[Item], nlist: usize) -> Index {
    build_index_on(items, nlist, &silica::model::compute::CpuCompute)
}

/// [`build_index`] with `compute` training the centroids and assigning the rows.
pub fn build_index_on(items: &[Item], nlist: usize, compute: &dyn silica::model::compute::BuildCompute) -> Index {
    let d = items[0].vector.len();
    let mut lines = String::new();
    for it in items {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(it.id));
        for (k, v) in &it.attrs {
            o.insert(k.clone(), if k == "tags" { json!(v) } else { json!(v[0]) });
        }
        o.insert("size".into(), json!(it.size));
        lines.push_str(&Value::Object(o).to_string());
        lines.push('\n');
    }
    let table = parse_jsonl(lines.as_bytes(), Path::new("items.jsonl"), &["size".to_string()]).expect("attributes");
    let m = Matrix { rows: items.len(), dim: d, data: items.iter().flat_map(|i| i.vector.iter().copied()).collect(), was_f16: false };
    let params = BuildParams { nlist: Some(nlist), features: vec!["size".into()], kmeans_iters: 4, ..Default::default() };
    IndexBuilder::new(params).build_source(&silica::model::source::VectorSource::from_matrix(m), &table, compute).expect("build")
}

/// Build and save an index in `dir`; returns the artifact path.
pub fn write_index(dir: &Path, items: &[Item], nlist: usize) -> PathBuf {
    let path = dir.join("test.silica");
    silica::model::format::save(&build_index(items, nlist), &path).expect("save");
    path
}

/// A running `silica serve`, killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Start the real binary on a free loopback port and wait until it listens.
    pub fn start(index: &Path, extra: &[&str]) -> Server {
        Self::try_start(index, extra).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    pub fn try_start(index: &Path, extra: &[&str]) -> Result<Server, String> {
        Self::try_start_env(index, extra, &[])
    }

    /// [`Server::try_start`] with extra environment variables.
    pub fn try_start_env(index: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        // SILICA_BIN: the binary where it is not at its build path (device runs).
        let bin = std::env::var("SILICA_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_silica").to_string());
        let mut child = Command::new(bin)
            .args(["serve", "--index", index.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env_remove("SILICA_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (err_pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!("unexpected first line {line:?}; stderr:\n{}", stderr.lock().unwrap()));
        };
        let addr = addr.parse().map_err(|e| format!("{e}"))?;
        Ok(Server { child, addr, stderr })
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        json_of(request(self.addr, "GET", path, None, &[]))
    }
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(request(self.addr, "POST", path, Some(body.to_string().as_bytes()), &[]))
    }
    pub fn search(&self, body: &Value) -> Value {
        let (s, v) = self.post("/v1/search", body);
        assert_eq!(s, 200, "search failed: {v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request; returns (status, body). Write errors are ignored so that a server
/// that answers early (413) is still heard.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    try_request(addr, method, path, body, headers).unwrap_or_else(|| panic!("{method} {path}: no HTTP answer"))
}

/// [`request`], or `None` when the server is gone (connection refused or cut).
pub fn try_request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Option<(u16, Vec<u8>)> {
    try_request_full(addr, method, path, body, headers).map(|(s, _, b)| (s, b))
}

/// [`try_request`] with the response head (status line and headers, lower-cased). A
/// `Content-Type` in `headers` replaces the default `application/json`.
pub fn try_request_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    if let Some(b) = body {
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok())?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let nl = body.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
            let n = usize::from_str_radix(String::from_utf8_lossy(&body[at..nl]).trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(body.get(nl + 2..nl + 2 + n)?);
            at = nl + 2 + n + 2;
        }
        body = out;
    }
    Some((status, head, body))
}

pub fn json_of((status, body): (u16, Vec<u8>)) -> (u16, Value) {
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).to_string()));
    (status, v)
}

/// `ids` of a single-query search answer.
pub fn ids(v: &Value) -> Vec<String> {
    v["ids"].as_array().expect("ids").iter().map(|x| x.as_str().unwrap().to_string()).collect()
}
