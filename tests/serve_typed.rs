//! Typed updates over real HTTP: `POST /v1/items` and `PATCH /v1/items/{id}` take int,
//! float, bool and timestamp fields with the build's typing rules (a bad value is a 400
//! naming the field, and nothing changes); fresh rows carry their typed values, so typed
//! filters see them; patches of typed columns work on main and fresh rows; compaction
//! keeps them. Every step runs on one server per backend (cpu, and wgpu / cuda where
//! present), whose int8 answers must be equal.

mod common;
mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use serve_common::*;
use silica::model::attributes::{parse_jsonl_with, parse_schema};
use silica::model::npy::Matrix;
use silica::{BuildParams, IndexBuilder};

const D: usize = 16;
const N: usize = 800;

fn build(dir: &std::path::Path) -> (std::path::PathBuf, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let vectors: Vec<Vec<f32>> = (0..N).map(|_| random_vector(&mut rng, D)).collect();
    let mut lines = String::new();
    for i in 0..N {
        let color = ["red", "blue", "green"][i % 3];
        let mut o = json!({"id": format!("item-{i}"), "color": color, "price": (i % 40) as f64 + 0.5, "in_stock": i % 2 == 0,
                           "published": format!("2024-01-{:02}T00:00:00Z", 1 + i % 28)});
        if i % 5 != 0 {
            o["year"] = json!(1990 + (i % 30) as i64);
        }
        lines.push_str(&o.to_string());
        lines.push('\n');
    }
    let table =
        parse_jsonl_with(lines.as_bytes(), std::path::Path::new("a.jsonl"), &[], &parse_schema("published:timestamp").unwrap()).unwrap();
    let m = Matrix { rows: N, dim: D, data: vectors.concat(), was_f16: false };
    let ix = IndexBuilder::new(BuildParams { nlist: Some(8), ..Default::default() }).build(m, table).unwrap();
    let path = dir.join("typed.silica");
    silica::model::format::save(&ix, &path).unwrap();
    (path, vectors)
}

/// Ids of the exhaustive filtered search (every list, k large), sorted.
fn matching(s: &Server, filter: &str) -> Vec<String> {
    let mut v = ids(&s.search(&json!({"vector": vec![0.5f32; D], "k": 2000, "nprobe": 8, "rerank": "none", "filter": filter})));
    v.sort();
    v
}

fn all_same(servers: &[(&str, Server)], rng: &mut ChaCha8Rng, step: &str) {
    let filters = [
        "price < 10.5",
        "year BETWEEN 2000 AND 2010 OR year IS NULL",
        "in_stock = true AND published >= \"2024-01-15T00:00:00Z\"",
        "price = 77.25",
        "year = 3000",
        "color = \"red\" AND price >= 20",
    ];
    for (i, f) in filters.iter().enumerate() {
        let body = json!({"vector": random_vector(rng, D), "k": 30, "nprobe": 1 + i % 8, "rerank": "none", "filter": f});
        let a: Vec<Value> = servers.iter().map(|(_, s)| s.search(&body)).collect();
        for ((name, _), x) in servers.iter().zip(&a).skip(1) {
            assert_eq!(ids(x), ids(&a[0]), "{step}: {name} vs cpu, filter {f}");
            assert_eq!(x["scores"], a[0]["scores"], "{step}: {name} vs cpu scores, filter {f}");
        }
    }
}

#[test]
fn typed_fields_in_upserts_and_patches() {
    let dir = tempfile::tempdir().unwrap();
    let (path, vectors) = build(dir.path());
    let mut servers = Vec::new();
    for b in std::iter::once("cpu").chain(common::gpu_backends()) {
        let sub = dir.path().join(b);
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("typed.silica");
        std::fs::copy(&path, &p).unwrap();
        servers.push((b, Server::start(&p, &["--backend", b, "--compact-threshold", "0"])));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let each = |f: &dyn Fn(&Server)| servers.iter().for_each(|(_, s)| f(s));
    all_same(&servers, &mut rng, "start");

    // Bad typed values: 400 naming the field; nothing changes.
    let before: Vec<Vec<String>> = servers.iter().map(|(_, s)| matching(s, "price < 3")).collect();
    let v = vectors[0].clone();
    for (attrs, field) in [
        (json!({"price": "cheap"}), "items[0].attributes.price"),
        (json!({"year": 2001.5}), "items[0].attributes.year"),
        (json!({"in_stock": 1}), "items[0].attributes.in_stock"),
        (json!({"published": "yesterday"}), "items[0].attributes.published"),
        (json!({"price": [1.0, 2.0]}), "items[0].attributes.price"),
    ] {
        let (s, e) = servers[0].1.post("/v1/items", &json!({"items": [{"id": "bad", "vector": v, "attributes": attrs}]}));
        assert_eq!((s, e["error"]["field"].as_str()), (400, Some(field)), "{e}");
        let (s, e) = json_of(request(
            servers[0].1.addr,
            "PATCH",
            "/v1/items/item-1",
            Some(json!({"attributes": attrs}).to_string().as_bytes()),
            &[],
        ));
        assert_eq!((s, e["error"]["field"].as_str()), (400, Some(&field.replace("items[0].", "")[..])), "{e}");
    }
    assert_eq!(servers[0].1.get("/v1/items/bad").0, 404);
    for ((_, s), b) in servers.iter().zip(&before) {
        assert_eq!(&matching(s, "price < 3"), b, "a refused write changed nothing");
    }

    // A fresh item carries its typed values: typed filters see it, IS NULL does not.
    let fresh = json!({"id": "fresh-1", "vector": vectors[3], "attributes": {"color": "red", "price": 77.25, "year": 3000, "in_stock": true, "published": "2030-06-01T12:00:00+02:00"}});
    each(&|s| assert_eq!(s.post("/v1/items", &json!({"items": [fresh.clone()]})).0, 200));
    each(&|s| {
        assert_eq!(matching(s, "price = 77.25"), vec!["fresh-1"]);
        assert_eq!(matching(s, "year = 3000 AND in_stock = true AND published > \"2030-01-01T00:00:00Z\""), vec!["fresh-1"]);
        assert!(!matching(s, "year IS NULL").contains(&"fresh-1".to_string()));
        let (_, it) = s.get("/v1/items/fresh-1");
        assert_eq!((it["price"].clone(), it["year"].clone(), it["in_stock"].clone()), (json!(77.25), json!(3000), json!(true)));
        assert_eq!(it["published"], json!("2030-06-01T10:00:00.000000Z"));
    });
    all_same(&servers, &mut rng, "after a typed upsert");

    // Patches: a main row's year and price, a fresh row's price, a value cleared by null.
    let patch = |s: &Server, id: &str, attrs: Value| {
        let (st, e) =
            json_of(request(s.addr, "PATCH", &format!("/v1/items/{id}"), Some(json!({"attributes": attrs}).to_string().as_bytes()), &[]));
        assert_eq!(st, 200, "{e}");
    };
    each(&|s| {
        patch(s, "item-7", json!({"year": 3000, "price": 77.25}));
        patch(s, "fresh-1", json!({"price": 1.0}));
        patch(s, "item-10", json!({"year": null}));
        assert_eq!(matching(s, "price = 77.25"), vec!["item-7"]);
        assert_eq!(matching(s, "year = 3000"), vec!["fresh-1", "item-7"]);
        assert!(matching(s, "year IS NULL").contains(&"item-10".to_string()));
        assert!(matching(s, "price <= 1").contains(&"fresh-1".to_string()));
        assert_eq!(s.get("/v1/items/item-7").1["year"], json!(3000));
        assert_eq!(s.get("/v1/items/item-10").1["year"], Value::Null);
        // Upserting a main id replaces it with a fresh row with its own typed values.
        assert_eq!(s.post("/v1/items", &json!({"items": [{"id": "item-8", "vector": vectors[8], "attributes": {"price": 77.25}}]})).0, 200);
        assert_eq!(matching(s, "price = 77.25"), vec!["item-7", "item-8"]);
        assert!(matching(s, "year IS NULL").contains(&"item-8".to_string()), "the new version has no year");
    });
    all_same(&servers, &mut rng, "after typed patches");

    // Compaction keeps every typed value.
    each(&|s| {
        let (st, e) = s.post("/v1/compact", &json!({}));
        assert_eq!(st, 200, "{e}");
        assert_eq!(matching(s, "price = 77.25"), vec!["item-7", "item-8"]);
        assert_eq!(matching(s, "year = 3000"), vec!["fresh-1", "item-7"]);
        assert_eq!(s.get("/v1/items/fresh-1").1["price"], json!(1.0));
    });
    all_same(&servers, &mut rng, "after compaction");
    let _ = rng.random::<u8>();
}
