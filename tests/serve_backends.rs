//! `silica serve` on a GPU backend answers exactly as on the CPU through a stream of writes:
//! attribute patches (device-side Bloom-plane patches), deletes (live bits only),
//! replacements and fresh items. The same writes go to one server per backend, each on its
//! own copy of the artifact; after every step the int8 answers (rerank none) must be equal,
//! rows and scores. wgpu runs on lavapipe in CI (`SILICA_REQUIRE_BACKENDS=wgpu` makes a
//! missing adapter a failure); cuda joins where a device is present.

mod common;
mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use serve_common::*;

const D: usize = 16;

/// Every server's answers to the same searches, compared with the first (cpu).
fn check_same(servers: &[(&str, Server)], rng: &mut ChaCha8Rng, step: &str) {
    let filters = ["", r#"color = "cyan""#, r#"tags IN ("t1", "t2")"#, r#"NOT grp = "a" AND color IN ("red", "cyan")"#, r#"tags = "t7""#];
    for i in 0..10 {
        let v = random_vector(rng, D);
        let body =
            json!({"vector": v, "k": 25, "nprobe": if i % 2 == 0 { 8 } else { 2 }, "rerank": "none", "filter": filters[i % filters.len()]});
        let answers: Vec<Value> = servers.iter().map(|(_, s)| s.search(&body)).collect();
        for ((name, _), a) in servers.iter().zip(&answers).skip(1) {
            assert_eq!(ids(a), ids(&answers[0]), "{step}: {name} vs cpu ids, query {i} {body}");
            assert_eq!(a["scores"], answers[0]["scores"], "{step}: {name} vs cpu scores, query {i}");
            assert_eq!(a["version"], answers[0]["version"], "{step}: versions");
        }
    }
}

#[test]
fn gpu_backends_serve_the_same_answers_through_writes() {
    let gpus = common::gpu_backends();
    if gpus.is_empty() {
        eprintln!("no GPU backend here: nothing to compare");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(21, 1500, D);
    let path = write_index(dir.path(), &items, 8);
    let mut servers = Vec::new();
    for b in std::iter::once("cpu").chain(gpus.iter().copied()) {
        let sub = dir.path().join(b);
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("test.silica");
        std::fs::copy(&path, &p).unwrap();
        servers.push((b, Server::start(&p, &["--backend", b, "--compact-threshold", "100000"])));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    check_same(&servers, &mut rng, "loaded");

    let send = |method: &str, path: &str, body: Option<Value>| {
        for (name, s) in &servers {
            let raw = body.as_ref().map(|b| b.to_string());
            let (status, v) = json_of(request(s.addr, method, path, raw.as_ref().map(|b| b.as_bytes()), &[]));
            assert_eq!(status, 200, "{name}: {method} {path}: {v}");
        }
    };
    // Attribute patches of main rows: one at a time (one changed plane word each) ...
    for i in (0..1500).step_by(97) {
        send("PATCH", &format!("/v1/items/item-{i}"), Some(json!({"attributes": {"color": "cyan"}})));
    }
    check_same(&servers, &mut rng, "after single patches");
    // ... deletes (live bits only) ...
    for i in (5..1500).step_by(53) {
        send("DELETE", &format!("/v1/items/item-{i}"), None);
    }
    check_same(&servers, &mut rng, "after deletes");
    // ... replacements of main rows and fresh items in one batch ...
    let batch: Vec<Value> = (0..10)
        .map(|j| random_item(&mut rng, if j % 2 == 0 { format!("item-{}", 11 + 131 * j) } else { format!("fresh-{j}") }, D).json())
        .collect();
    send("POST", "/v1/items", Some(json!({"items": batch})));
    check_same(&servers, &mut rng, "after upserts");
    // ... and tag patches that change the CSR length, on many rows in one request each.
    for i in (3..1500).step_by(29).filter(|i| (i + 53 - 5) % 53 != 0) {
        let tags: Vec<&str> = if rng.random_bool(0.5) { vec![] } else { vec!["t7", "t1"] };
        send("PATCH", &format!("/v1/items/item-{i}"), Some(json!({"attributes": {"tags": tags}})));
    }
    check_same(&servers, &mut rng, "after tag patches");
    for (name, s) in &servers {
        let (_, st) = s.get("/v1/stats");
        assert_eq!(st["backend"], *name, "{st}");
    }
}
