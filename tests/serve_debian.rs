//! `silica serve` on the bundled Debian corpus: the 80 real queries (with their filters)
//! over HTTP give exactly the library's answers and the expected recall, and live
//! attribute changes and deletes act on real packages.

mod serve_common;

use serde_json::json;
use serve_common::{Server, ids};
use silica::Filter;
use silica::graph::{self, SearchParams, SearchRequest};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

#[test]
fn debian_queries_over_http() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/debian");
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("debian.silica");
    let st = Command::new(env!("CARGO_BIN_EXE_silica"))
        .args(["build", "--kmeans-iters", "4", "--vectors"])
        .arg(data.join("embeddings.npy"))
        .arg("--attributes")
        .arg(data.join("items.jsonl"))
        .arg("--out")
        .arg(&index)
        .status()
        .unwrap();
    assert!(st.success());
    let ix = Arc::new(silica::model::format::load(&index).unwrap());
    let queries = silica::model::npy::read(&data.join("queries.npy")).unwrap();
    let texts = silica::eval::read_filters(&data.join("queries.jsonl")).unwrap();
    let truth = silica::eval::read_truth(&data.join("ground_truth.jsonl")).unwrap();
    let item_ids: Vec<String> = std::fs::read_to_string(data.join("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let server = Server::start(&index, &[]);

    // All 80 queries in one request, per-query filters: equal to the library, recall as eval.
    let rows: Vec<Vec<f32>> = (0..queries.rows).map(|r| queries.row(r).to_vec()).collect();
    let got = server.search(&json!({"vectors": rows, "filters": texts, "k": 10}));
    let results = got["results"].as_array().unwrap();
    let filters: Vec<Filter> = texts.iter().map(|t| Filter::compile(t, &ix.attrs.schema, &ix.bloom.params).unwrap()).collect();
    let exec = graph::open("cpu", ix.clone()).unwrap();
    let want = exec
        .search(&SearchRequest { queries: &queries.data, filters: &filters, params: SearchParams { k: 10, ..Default::default() } })
        .unwrap();
    let (mut hits, mut total) = (0, 0);
    for (i, (r, w)) in results.iter().zip(&want).enumerate() {
        assert_eq!(ids(r), w.ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "query {i}");
        let truth_ids: Vec<&String> = truth[i].ids.iter().take(10).map(|&row| &item_ids[row as usize]).collect();
        hits += ids(r).iter().filter(|id| truth_ids.contains(id)).count();
        total += truth_ids.len();
    }
    let recall = hits as f64 / total as f64;
    assert!(recall >= 0.95, "recall@10 over HTTP {recall}");

    // 16 connections at once, every query alone as JSON and as a binary body with a binary
    // answer: the same rows and scores as the batch above.
    let addr = server.addr;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (rows, texts, want) = (rows.clone(), texts.clone(), results.clone());
            std::thread::spawn(move || {
                for i in (t..rows.len()).step_by(16) {
                    let (s, j) = serve_common::json_of(serve_common::request(
                        addr,
                        "POST",
                        "/v1/search",
                        Some(json!({"vector": rows[i], "filter": texts[i], "k": 10}).to_string().as_bytes()),
                        &[],
                    ));
                    assert_eq!(s, 200, "{j}");
                    let enc: String = texts[i].bytes().map(|b| format!("%{b:02X}")).collect();
                    let body: Vec<u8> = rows[i].iter().flat_map(|x| x.to_le_bytes()).collect();
                    let hs = [("Content-Type", "application/octet-stream"), ("Accept", "application/octet-stream")];
                    let (s, raw) = serve_common::request(addr, "POST", &format!("/v1/search?k=10&filter={enc}"), Some(&body), &hs);
                    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&raw));
                    let (_, bin) = silica::serve::binary::decode_response(&raw).unwrap();
                    let scores: Vec<f32> = j["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                    assert_eq!(bin[0].scores, scores, "query {i}: binary and JSON scores");
                    assert_eq!(serde_json::to_value(&bin[0].rows).unwrap(), j["rows"], "query {i}: binary and JSON rows");
                    assert_eq!(j["rows"], want[i]["rows"], "query {i}: alone and batched");
                    assert_eq!(j["scores"], want[i]["scores"], "query {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // Two replicas of two CPU shards each: the same answers as one device, batches spread
    // over both replicas (GET /v1/stats, /metrics).
    let copy = dir.path().join("replicated.silica");
    std::fs::copy(&index, &copy).unwrap();
    let mut replicated = Server::start(&copy, &["--devices", "cpu,cpu,cpu,cpu", "--replicas", "2"]);
    let rep = replicated.search(&json!({"vectors": rows, "filters": texts, "k": 10}));
    assert_eq!(rep["results"], got["results"], "replicated shards vs one device, 80 queries");
    for i in 0..12 {
        let one = server.search(&json!({"vector": rows[i], "filter": texts[i], "k": 10}));
        let r = replicated.search(&json!({"vector": rows[i], "filter": texts[i], "k": 10}));
        assert_eq!((&r["rows"], &r["scores"]), (&one["rows"], &one["scores"]), "query {i} alone");
    }
    let (s, st) = replicated.get("/v1/stats");
    assert_eq!(s, 200);
    let reps = st["replicas"].as_array().unwrap_or_else(|| panic!("no replicas in {st}"));
    assert_eq!(reps.iter().map(|r| r["devices"].as_str().unwrap()).collect::<Vec<_>>(), vec!["cpu,cpu", "cpu,cpu"]);
    let batches: Vec<u64> = reps.iter().map(|r| r["batches"].as_u64().unwrap()).collect();
    assert!(batches.iter().sum::<u64>() >= 13 && batches.iter().all(|&b| b > 0), "batches per replica {batches:?}");
    let (s, raw) = serve_common::request(replicated.addr, "GET", "/metrics", None, &[]);
    let text = String::from_utf8_lossy(&raw);
    assert!(s == 200 && text.contains("silica_replica_batches_total{replica=\"1\",devices=\"cpu,cpu\"}"), "{text}");
    // A delete goes through every replica's shards: query 0's runner-up moves up.
    let q0 = queries.row(0).to_vec();
    let before = replicated.search(&json!({"vector": q0, "k": 3}));
    let (s, _) =
        serve_common::json_of(serve_common::request(replicated.addr, "DELETE", &format!("/v1/items/{}", ids(&before)[0]), None, &[]));
    assert_eq!(s, 200);
    for _ in 0..4 {
        assert_eq!(ids(&replicated.search(&json!({"vector": q0, "k": 2})))[0], ids(&before)[1], "after a delete, on every replica");
    }
    replicated.kill();

    // Query 0 one at a time; then move its best hit to another section.
    let q0 = queries.row(0).to_vec();
    let first = server.search(&json!({"vector": q0, "k": 3}));
    let top = ids(&first)[0].clone();
    let row = item_ids.iter().position(|x| *x == top).unwrap();
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(data.join("items.jsonl")).unwrap().lines().nth(row).unwrap()).unwrap();
    let section = line["section"].as_str().unwrap().to_string();
    let (s, v) = serve_common::json_of(serve_common::request(
        server.addr,
        "PATCH",
        &format!("/v1/items/{top}"),
        Some(json!({"attributes": {"section": "silica-test"}}).to_string().as_bytes()),
        &[],
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&server.search(&json!({"vector": q0, "k": 5, "filter": "section = \"silica-test\""}))), vec![top.clone()]);
    assert!(!ids(&server.search(&json!({"vector": q0, "k": 50, "filter": format!("section = \"{section}\"")}))).contains(&top));
    // Delete it: the runner-up moves up.
    let (s, _) = serve_common::json_of(serve_common::request(server.addr, "DELETE", &format!("/v1/items/{top}"), None, &[]));
    assert_eq!(s, 200);
    let after = server.search(&json!({"vector": q0, "k": 2}));
    assert_eq!(ids(&after)[0], ids(&first)[1]);
    assert!(ids(&server.search(&json!({"vector": q0, "k": 5, "filter": "section = \"silica-test\""}))).is_empty());
}
