//! `silica serve` over real HTTP on loopback: search answers equal the library's, upserts
//! are found, deletes vanish, attribute patches move items between filters, and every bad
//! request gets a 4xx JSON error naming its field while the index stays untouched.

mod serve_common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use serve_common::*;
use silica::Filter;
use silica::graph::{self, SearchParams, SearchRequest};
use std::sync::Arc;

const D: usize = 24;

fn setup(n: usize, extra: &[&str]) -> (tempfile::TempDir, Vec<Item>, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(7, n, D);
    let path = write_index(dir.path(), &items, 16);
    let server = Server::start(&path, extra);
    (dir, items, path, server)
}

fn scores(v: &Value) -> Vec<f32> {
    v["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn search_answers_equal_the_library_executor() {
    let (_dir, _items, path, server) = setup(3000, &[]);
    let index = Arc::new(silica::model::format::load(&path).unwrap());
    let exec = graph::open("cpu", index.clone()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let texts = ["", r#"color = "red""#, r#"tags = "t3" AND NOT grp = "b""#, r#"id IN ("item-5", "item-77")"#, r#"color = "none-such""#];
    let mut batch_q = Vec::new();
    let mut batch_f = Vec::new();
    let mut want_all = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let q = random_vector(&mut rng, D);
        let f = Filter::compile(text, &index.attrs.schema, &index.bloom.params).unwrap();
        for (k, nprobe) in [(1usize, None), (10, Some(3)), (50, Some(16))] {
            let p = SearchParams { k, nprobe, ..Default::default() };
            let want = exec.search(&SearchRequest { queries: &q, filters: std::slice::from_ref(&f), params: p }).unwrap().pop().unwrap();
            let mut body = json!({"vector": q, "filter": text, "k": k});
            if let Some(np) = nprobe {
                body["nprobe"] = json!(np);
            }
            let got = server.search(&body);
            assert_eq!(ids(&got), want.ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "query {i} k={k}");
            assert_eq!(scores(&got), want.scores, "query {i} k={k}");
            let rows: Vec<u64> = got["rows"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            assert_eq!(rows, want.rows);
            if k == 10 {
                want_all.push(want);
            }
        }
        batch_q.push(q);
        batch_f.push(text.to_string());
    }
    // The same queries as one batch request with per-query filters.
    let got = server.search(&json!({"vectors": batch_q, "filters": batch_f, "k": 10, "nprobe": 3}));
    let results = got["results"].as_array().unwrap();
    assert_eq!(results.len(), texts.len());
    for (r, want) in results.iter().zip(&want_all) {
        assert_eq!(ids(r), want.ids.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(scores(r), want.scores);
    }
    // A filter that matches nothing answers with empty lists, not an error.
    assert_eq!(ids(&server.search(&json!({"vector": batch_q[0], "filter": texts[4]}))), Vec::<String>::new());
    // k above the number of items returns every passing item.
    let all = server.search(&json!({"vector": batch_q[0], "k": 10000, "nprobe": 16, "rerank": "none"}));
    assert_eq!(ids(&all).len(), 3000);
}

/// A search worker keeps the filters it compiled, but only for the snapshot they were
/// compiled against: a filter on a value that does not exist yet matches nothing, and the
/// same text after an upsert adds that value (a new snapshot, a grown dictionary) finds it.
/// One worker, so the second search runs where the first one's compilation is cached.
#[test]
fn cached_filters_follow_the_snapshot() {
    let (_dir, items, _path, server) = setup(500, &["--workers", "1"]);
    let q: Vec<f32> = items[3].vector.iter().map(|x| x * 10.0).collect();
    let f = json!({"vector": q, "k": 5, "filter": "color = \"infrared\" OR tags = \"t-new\""});
    for _ in 0..3 {
        assert_eq!(ids(&server.search(&f)), Vec::<String>::new());
    }
    let (s, v) = server.post("/v1/items", &json!({"items": [{"id": "ir-1", "vector": q, "attributes": {"color": "infrared"}}]}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&server.search(&f)), vec!["ir-1"]);
    let (s, v) = server.post("/v1/items", &json!({"items": [{"id": "ir-2", "vector": q, "attributes": {"tags": ["t-new"]}}]}));
    assert_eq!(s, 200, "{v}");
    let mut got = ids(&server.search(&f));
    got.sort();
    assert_eq!(got, vec!["ir-1", "ir-2"]);
}

#[test]
fn upsert_delete_and_patch_are_seen_by_searches() {
    let (_dir, items, _path, server) = setup(2000, &[]);
    let q: Vec<f32> = items[0].vector.iter().map(|x| x * 10.0).collect();
    // A new item pointing exactly along q wins the unfiltered top-1.
    let new =
        json!({"id": "fresh-1", "vector": q, "attributes": {"color": "ultraviolet", "tags": ["t1", "brand-new"]}, "features": {"size": 3}});
    let (s, v) = server.post("/v1/items", &json!({"items": [new]}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["upserted"], 1);
    let v1 = v["version"].as_u64().unwrap();
    let got = server.search(&json!({"vector": q, "k": 3}));
    assert_eq!(ids(&got)[0], "fresh-1");
    assert!(got["version"].as_u64().unwrap() >= v1);
    // Found through filters on its new values (appended to the dictionary).
    assert_eq!(ids(&server.search(&json!({"vector": q, "k": 5, "filter": "color = \"ultraviolet\""}))), vec!["fresh-1"]);
    assert_eq!(ids(&server.search(&json!({"vector": q, "k": 5, "filter": "tags = \"brand-new\" AND id = \"fresh-1\""}))), vec!["fresh-1"]);
    assert_eq!(
        ids(&server.search(&json!({"vector": q, "k": 5, "filter": "tags = \"brand-new\" AND NOT tags = \"t1\""}))),
        Vec::<String>::new()
    );

    // Replace an existing main item: the old version disappears, the new one is found once.
    let old_id = &items[1].id;
    let far: Vec<f32> = q.iter().map(|x| -x).collect();
    let near_new: Vec<f32> = items[2].vector.clone();
    let (s, _) = server.post("/v1/items", &json!({"items": [{"id": old_id, "vector": near_new, "attributes": {"color": "red"}}]}));
    assert_eq!(s, 200);
    let got = server.search(&json!({"vector": items[1].vector, "k": 10000, "nprobe": 16, "filter": format!("id = \"{old_id}\"")}));
    assert_eq!(ids(&got), vec![old_id.clone()], "exactly one live version");
    let dot: f32 = near_new.iter().zip(&items[1].vector).map(|(a, b)| a * b).sum();
    assert!((scores(&got)[0] - dot).abs() < 1e-2 * dot.abs().max(1.0), "the score is the new vector's: {} vs {dot}", scores(&got)[0]);

    // Delete: never seen again, by any query or filter; a second delete is 404.
    let (s, v) = json_of(request(server.addr, "DELETE", "/v1/items/fresh-1", None, &[]));
    assert_eq!((s, v["deleted"].as_str()), (200, Some("fresh-1")));
    for body in [
        json!({"vector": q, "k": 50}),
        json!({"vector": q, "k": 5, "filter": "id = \"fresh-1\""}),
        json!({"vector": far, "k": 10000, "nprobe": 16}),
    ] {
        assert!(!ids(&server.search(&body)).contains(&"fresh-1".to_string()));
    }
    let (s, v) = json_of(request(server.addr, "DELETE", "/v1/items/fresh-1", None, &[]));
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    // Delete a main item too (ids with URL-escaped characters work).
    let (s, _) = server.post("/v1/items", &json!({"items": [{"id": "odd id/ü", "vector": q}]}));
    assert_eq!(s, 200);
    let (s, _) = json_of(request(server.addr, "DELETE", "/v1/items/odd%20id%2F%C3%BC", None, &[]));
    assert_eq!(s, 200);
    let (s, _) = json_of(request(server.addr, "DELETE", &format!("/v1/items/{}", items[3].id), None, &[]));
    assert_eq!(s, 200);
    let all = server.search(&json!({"vector": items[3].vector, "k": 10000, "nprobe": 16}));
    assert!(!ids(&all).contains(&items[3].id));
    assert_eq!(ids(&all).len(), 2000 - 1, "2000 items, one deleted, one replaced in place of itself");

    // Patch a main item's attributes: filters follow at once, exact and via Bloom.
    let target = &items[10];
    let was = target.attrs["color"][0].clone();
    let (s, v) = json_of(request(
        server.addr,
        "PATCH",
        &format!("/v1/items/{}", target.id),
        Some(json!({"attributes": {"color": "infrared", "tags": []}}).to_string().as_bytes()),
        &[],
    ));
    assert_eq!(s, 200, "{v}");
    let got = server.search(&json!({"vector": target.vector, "k": 10000, "nprobe": 16, "filter": "color = \"infrared\""}));
    assert_eq!(ids(&got), vec![target.id.clone()]);
    let got = server.search(&json!({"vector": target.vector, "k": 10000, "nprobe": 16, "filter": format!("color = \"{was}\"")}));
    assert!(!ids(&got).contains(&target.id));
    let got = server.search(&json!({"vector": target.vector, "k": 10000, "nprobe": 16, "filter": format!("tags IN ({})", TAGS.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(","))}));
    assert!(!ids(&got).contains(&target.id), "tags were cleared");
    // Other fields are untouched by the patch.
    let grp = &target.attrs["grp"][0];
    let got = server
        .search(&json!({"vector": target.vector, "k": 10000, "nprobe": 16, "filter": format!("grp = \"{grp}\" AND color = \"infrared\"")}));
    assert_eq!(ids(&got), vec![target.id.clone()]);

    let (s, st) = server.get("/v1/stats");
    assert_eq!(s, 200);
    assert_eq!(st["items"], 1999);
    assert_eq!(st["fresh_rows"], 3);
    assert_eq!(st["fresh_live"], 1);

    // Compaction over HTTP folds it all into the artifact; answers stay the same.
    let before = server.search(&json!({"vector": target.vector, "k": 20, "nprobe": 16}));
    let (s, r) = server.post("/v1/compact", &json!(null));
    assert_eq!(s, 200, "{r}");
    assert_eq!((r["rows_before"].as_u64(), r["rows_after"].as_u64(), r["fresh_folded"].as_u64()), (Some(2003), Some(1999), Some(1)));
    let (_, st) = server.get("/v1/stats");
    assert_eq!(
        (st["items"].as_u64(), st["fresh_rows"].as_u64(), st["main_rows"].as_u64(), st["compactions"].as_u64()),
        (Some(1999), Some(0), Some(1999), Some(1))
    );
    let after = server.search(&json!({"vector": target.vector, "k": 20, "nprobe": 16}));
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(scores(&after), scores(&before));
    let got = server.search(&json!({"vector": target.vector, "k": 10000, "nprobe": 16, "filter": "color = \"infrared\""}));
    assert_eq!(ids(&got), vec![target.id.clone()]);
}

#[test]
fn bad_requests_get_4xx_naming_the_field_and_change_nothing() {
    let (_dir, items, _path, server) = setup(500, &["--token", "s3cret", "--max-body-bytes", "65536"]);
    let auth = [("Authorization", "Bearer s3cret")];
    let (_, before) = server.get("/v1/stats");
    let q = items[0].vector.clone();
    let send =
        |method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]| json_of(request(server.addr, method, path, Some(body), headers));
    let search = |body: &str| send("POST", "/v1/search", body.as_bytes(), &[]);
    let qs = serde_json::to_string(&q).unwrap();
    // The query with its first value replaced by raw JSON text.
    let with_first = |raw: &str| {
        let mut parts: Vec<String> = q.iter().map(|x| x.to_string()).collect();
        parts[0] = raw.to_string();
        format!("[{}]", parts.join(","))
    };
    type Case<'a> = (String, (u16, Value), u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("malformed JSON".into(), search("{\"vector\": [1, 2"), 400, None),
        ("not JSON".into(), search("hello"), 400, None),
        ("empty body".into(), search(""), 400, None),
        ("trailing garbage".into(), search(&format!("{{\"vector\": {qs}}} x")), 400, None),
        ("wrong dimension".into(), search("{\"vector\": [1.0, 2.0]}"), 400, Some("vector")),
        ("NaN literal".into(), search(&format!("{{\"vector\": {}}}", with_first("NaN"))), 400, None),
        ("beyond f32".into(), search(&format!("{{\"vector\": {}}}", with_first("1e39"))), 400, Some("vector[0]")),
        ("string in vector".into(), search("{\"vector\": [\"a\"]}"), 400, Some("vector[0]")),
        (
            "unknown filter field".into(),
            search(&format!("{{\"vector\": {qs}, \"filter\": \"colour = \\\"red\\\"\"}}")),
            400,
            Some("filter"),
        ),
        ("filter syntax".into(), search(&format!("{{\"vector\": {qs}, \"filter\": \"color = \"}}")), 400, Some("filter")),
        (
            "deeply nested filter".into(),
            search(&format!("{{\"vector\": {qs}, \"filter\": \"{}color = \\\"red\\\"{}\"}}", "(".repeat(20000), ")".repeat(20000))),
            400,
            Some("filter"),
        ),
        ("k = 0".into(), search(&format!("{{\"vector\": {qs}, \"k\": 0}}")), 400, Some("k")),
        ("k negative".into(), search(&format!("{{\"vector\": {qs}, \"k\": -1}}")), 400, Some("k")),
        ("nprobe > nlist".into(), search(&format!("{{\"vector\": {qs}, \"nprobe\": 17}}")), 400, Some("nprobe")),
        (
            "too many candidates".into(),
            search(&format!("{{\"vectors\": [{}], \"k\": 10000}}", vec![qs.clone(); 200].join(","))),
            400,
            Some("k"),
        ),
        ("k0 < k".into(), search(&format!("{{\"vector\": {qs}, \"k\": 10, \"k0\": 5}}")), 400, Some("k0")),
        ("model rerank without model".into(), search(&format!("{{\"vector\": {qs}, \"rerank\": \"model\"}}")), 400, Some("rerank")),
        ("unknown rerank".into(), search(&format!("{{\"vector\": {qs}, \"rerank\": \"magic\"}}")), 400, Some("rerank")),
        ("unknown request field".into(), search(&format!("{{\"vector\": {qs}, \"kk\": 3}}")), 400, None),
        ("no vector".into(), search("{\"k\": 3}"), 400, Some("vector")),
        ("both vector and vectors".into(), search(&format!("{{\"vector\": {qs}, \"vectors\": [{qs}]}}")), 400, Some("vector")),
        ("filters count".into(), search(&format!("{{\"vectors\": [{qs}, {qs}], \"filters\": [\"\"]}}")), 400, Some("filters")),
        (
            "bad filter in a batch".into(),
            search(&format!("{{\"vectors\": [{qs}, {qs}], \"filters\": [\"\", \"nope = \\\"x\\\"\"]}}")),
            400,
            Some("filters[1]"),
        ),
        ("second query wrong dim".into(), search(&format!("{{\"vectors\": [{qs}, [1.0]]}}")), 400, Some("vectors[1]")),
        ("oversized body".into(), send("POST", "/v1/search", &vec![b' '; 100_000], &[]), 413, None),
        (
            "upsert without token".into(),
            send("POST", "/v1/items", format!("{{\"items\": [{{\"id\": \"x\", \"vector\": {qs}}}]}}").as_bytes(), &[]),
            401,
            Some("authorization"),
        ),
        (
            "upsert with a wrong token".into(),
            send(
                "POST",
                "/v1/items",
                format!("{{\"items\": [{{\"id\": \"x\", \"vector\": {qs}}}]}}").as_bytes(),
                &[("Authorization", "Bearer s3creT")],
            ),
            401,
            Some("authorization"),
        ),
        ("delete without token".into(), json_of(request(server.addr, "DELETE", "/v1/items/item-1", None, &[])), 401, Some("authorization")),
        ("compact without token".into(), send("POST", "/v1/compact", b"", &[]), 401, Some("authorization")),
        (
            "upsert wrong dimension".into(),
            send("POST", "/v1/items", b"{\"items\": [{\"id\": \"x\", \"vector\": [1.0]}]}", &auth),
            400,
            Some("items[0].vector"),
        ),
        (
            "upsert NaN-like value".into(),
            send("POST", "/v1/items", format!("{{\"items\": [{{\"id\": \"x\", \"vector\": {}}}]}}", with_first("-1e40")).as_bytes(), &auth),
            400,
            Some("items[0].vector[0]"),
        ),
        (
            "upsert unknown attribute".into(),
            send(
                "POST",
                "/v1/items",
                format!("{{\"items\": [{{\"id\": \"x\", \"vector\": {qs}, \"attributes\": {{\"colour\": \"red\"}}}}]}}").as_bytes(),
                &auth,
            ),
            400,
            Some("items[0].attributes.colour"),
        ),
        (
            "upsert unknown feature".into(),
            send(
                "POST",
                "/v1/items",
                format!("{{\"items\": [{{\"id\": \"x\", \"vector\": {qs}, \"features\": {{\"weight\": 1}}}}]}}").as_bytes(),
                &auth,
            ),
            400,
            Some("items[0].features.weight"),
        ),
        (
            "upsert empty id".into(),
            send("POST", "/v1/items", format!("{{\"items\": [{{\"id\": \"\", \"vector\": {qs}}}]}}").as_bytes(), &auth),
            400,
            Some("items[0].id"),
        ),
        ("upsert no items".into(), send("POST", "/v1/items", b"{\"items\": []}", &auth), 400, Some("items")),
        ("upsert missing vector".into(), send("POST", "/v1/items", b"{\"items\": [{\"id\": \"x\"}]}", &auth), 400, Some("items[0]")),
        ("delete unknown id".into(), json_of(request(server.addr, "DELETE", "/v1/items/no-such-item", None, &auth)), 404, Some("id")),
        (
            "patch unknown id".into(),
            send("PATCH", "/v1/items/no-such-item", b"{\"attributes\": {\"color\": \"red\"}}", &auth),
            404,
            Some("id"),
        ),
        ("patch the id".into(), send("PATCH", "/v1/items/item-1", b"{\"attributes\": {\"id\": \"y\"}}", &auth), 400, Some("attributes.id")),
        (
            "patch a number".into(),
            send("PATCH", "/v1/items/item-1", b"{\"attributes\": {\"color\": 7}}", &auth),
            400,
            Some("attributes.color"),
        ),
        ("unknown route".into(), json_of(request(server.addr, "GET", "/v2/search", None, &[])), 404, None),
        ("wrong method".into(), json_of(request(server.addr, "GET", "/v1/search", None, &[])), 405, None),
    ];
    for (what, (status, body), want_status, want_field) in &cases {
        assert_eq!(*status, *want_status, "{what}: {body}");
        let err = &body["error"];
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: JSON error with a message, got {body}");
        if let Some(f) = want_field {
            assert!(err["field"].as_str().is_some_and(|x| x.starts_with(f)), "{what}: field {:?}, want {f}: {body}", err["field"]);
        }
    }
    // The column of the bad filter token is named.
    let (_, v) = search(&format!("{{\"vector\": {qs}, \"filter\": \"color = \\\"red\\\" AND colour = \\\"x\\\"\"}}"));
    assert!(v["error"]["message"].as_str().unwrap().contains("column 19"), "{v}");
    // Nothing was written.
    let (_, after) = server.get("/v1/stats");
    assert_eq!(before, after);
    // The server still works, and a write with the token succeeds.
    let (s, _) = send("POST", "/v1/items", format!("{{\"items\": [{{\"id\": \"x\", \"vector\": {qs}}}]}}").as_bytes(), &auth);
    assert_eq!(s, 200);
    let (s, _) = send("DELETE", "/v1/items/x", b"", &auth);
    assert_eq!(s, 200);
    let (_, h) = server.get("/healthz");
    assert_eq!(h["status"], "ok");
}

#[test]
fn concurrent_searches_are_batched_and_metrics_report_it() {
    let (_dir, items, _path, server) = setup(1000, &["--max-wait-us", "20000", "--max-batch", "64"]);
    let addr = server.addr;
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let q = items[i].vector.clone();
            let id = items[i].id.clone();
            std::thread::spawn(move || {
                let (s, v) = json_of(request(
                    addr,
                    "POST",
                    "/v1/search",
                    Some(json!({"vector": q, "k": 1, "filter": format!("id = \"{id}\"")}).to_string().as_bytes()),
                    &[],
                ));
                assert_eq!(s, 200);
                assert_eq!(ids(&v), vec![id], "each request gets its own answer back");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (s, body) = json_of(request(addr, "GET", "/metrics", None, &[]));
    assert_eq!(s, 200);
    let text = body.as_str().unwrap().to_string();
    let line = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let calls = line("silica_batch_queries_count");
    assert!(calls < 32.0, "32 concurrent requests within a 20 ms window took {calls} executor calls");
    assert_eq!(line("silica_batch_queries_sum"), 32.0);
    assert_eq!(line("silica_requests_total{route=\"search\",status=\"200\"}"), 32.0);
    assert_eq!(line("silica_main_rows"), 1000.0);
    assert_eq!(line("silica_fresh_rows"), 0.0);
    assert!(text.contains("silica_request_duration_seconds_bucket{route=\"search\",le=\"+Inf\"} 32"));
}

/// Finite in, finite out: values that overflow f16 when stored, or whose sum of squares
/// overflows f32, are a 400 naming the value; every score that leaves is a finite number.
#[test]
fn out_of_range_vectors_are_refused_and_scores_stay_finite() {
    use rand::Rng;
    let (_dir, items, _path, server) = setup(300, &[]);
    let mut rng = ChaCha8Rng::seed_from_u64(404);
    let (_, before) = server.get("/v1/stats");
    let huge = vec![3.4e38f32; D];
    let (s, v) = server.post("/v1/search", &json!({"vector": huge, "k": 5}));
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("vector")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("overflows f32"), "{v}");
    let (s, v) = server.post("/v1/search", &json!({"vectors": [items[0].vector, huge], "k": 5}));
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("vectors[1]")), "{v}");
    // A stored value beyond ±65504 would be ±Inf in the f16 embeddings.
    let (i, j) = (rng.random_range(0..3), rng.random_range(0..D));
    let mut batch: Vec<Value> = (0..3).map(|b| json!({"id": format!("big{b}"), "vector": random_vector(&mut rng, D)})).collect();
    batch[i]["vector"][j] = json!(65504.5 + rng.random_range(0.0..1e30));
    let (s, v) = server.post("/v1/items", &json!({"items": batch}));
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some(format!("items[{i}].vector[{j}]").as_str())), "{v}");
    batch[i]["vector"][j] = json!(-65504.0);
    let (s, v) = server.post("/v1/items", &json!({"items": [batch[i]]}));
    assert_eq!(s, 200, "the f16 limit itself is storable: {v}");
    // Large but in-range queries, exact and refined: every score is a finite number.
    for scale in [1.0f32, 1e6, 1e18] {
        let q: Vec<f32> = random_vector(&mut rng, D).iter().map(|x| x * scale).collect();
        for rerank in ["none", "refine"] {
            let v = server.search(&json!({"vector": q, "k": 20, "rerank": rerank}));
            let sc = v["scores"].as_array().unwrap();
            assert!(!sc.is_empty() && sc.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)), "scale {scale} {rerank}: {v}");
        }
    }
    let (_, after) = server.get("/v1/stats");
    assert_eq!(after["items"].as_u64().unwrap(), before["items"].as_u64().unwrap() + 1, "only the in-range item was added");
}
