//! Returned fields over real HTTP: `GET /v1/items/{id}` (attributes, `?vector=true`,
//! `?fields=`, 404 for unknown and deleted ids, fresh items included) and `POST /v1/search`
//! with `"fields"` (one object per result row, single and batch answers, bad names 400).

mod serve_common;

use serde_json::{Value, json};
use serve_common::*;

const D: usize = 16;

#[test]
fn items_by_id_and_search_fields() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(11, 600, D);
    let path = write_index(dir.path(), &items, 8);
    let server = Server::start(&path, &[]);

    // A main item: every attribute, as built; its vector on request (f16 rounding).
    let it = &items[17];
    let (s, v) = server.get(&format!("/v1/items/{}", it.id));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], json!(it.id));
    assert_eq!(v["color"], json!(it.attrs["color"][0]));
    let mut tags: Vec<String> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    tags.sort();
    let mut want_tags = it.attrs.get("tags").cloned().unwrap_or_default();
    want_tags.sort();
    assert_eq!(tags, want_tags);
    assert!(v.get("vector").is_none(), "no vector unless asked");
    let (s, v) = server.get(&format!("/v1/items/{}?vector=true&fields=color", it.id));
    assert_eq!(s, 200, "{v}");
    assert!(v.get("tags").is_none(), "only the named fields");
    let vec: Vec<f32> = v["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(vec.len(), D);
    for (a, b) in vec.iter().zip(&it.vector) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
    }
    // Unknown id, bad parameters, unknown field names.
    let (s, v) = server.get("/v1/items/no-such-id");
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = server.get(&format!("/v1/items/{}?vector=maybe", it.id));
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("vector")));
    let (s, v) = server.get(&format!("/v1/items/{}?fields=colour", it.id));
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("fields")));

    // A fresh item is found at once; a patch shows; a delete makes it 404.
    let q: Vec<f32> = items[0].vector.iter().map(|x| x * 10.0).collect();
    let (s, _) = server.post(
        "/v1/items",
        &json!({"items": [{"id": "fresh-1", "vector": q, "attributes": {"color": "ultraviolet", "tags": ["t1", "brand-new"]}}]}),
    );
    assert_eq!(s, 200);
    let (s, v) = server.get("/v1/items/fresh-1?vector=1");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["color"], json!("ultraviolet"));
    assert_eq!(v["grp"], Value::Null, "absent single-valued field is null");
    assert_eq!(v["vector"].as_array().unwrap().len(), D);
    let (s, _) = json_of(request(
        server.addr,
        "PATCH",
        &format!("/v1/items/{}", it.id),
        Some(json!({"attributes": {"color": "teal"}}).to_string().as_bytes()),
        &[],
    ));
    assert_eq!(s, 200);
    assert_eq!(server.get(&format!("/v1/items/{}", it.id)).1["color"], json!("teal"));

    // Search with fields: one object per result row, in result order.
    let got = server.search(&json!({"vector": q, "k": 5, "fields": ["color", "tags"]}));
    let ids = ids(&got);
    let fields = got["fields"].as_array().unwrap();
    assert_eq!(fields.len(), ids.len());
    assert_eq!(ids[0], "fresh-1");
    assert_eq!(fields[0], json!({"color": "ultraviolet", "tags": ["t1", "brand-new"]}));
    for (id, f) in ids.iter().zip(fields) {
        let (_, whole) = server.get(&format!("/v1/items/{id}?fields=color,tags"));
        assert_eq!(f["color"], whole["color"], "{id}");
        assert_eq!(f["tags"], whole["tags"], "{id}");
        assert!(f.get("id").is_none(), "only the named fields");
    }
    let got = server.search(&json!({"vectors": [q, items[3].vector], "k": 3, "fields": ["grp"]}));
    for r in got["results"].as_array().unwrap() {
        assert_eq!(r["fields"].as_array().unwrap().len(), r["ids"].as_array().unwrap().len());
    }
    let (s, v) = server.post("/v1/search", &json!({"vector": q, "k": 3, "fields": ["colour"]}));
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("fields")));
    // Without fields the answer has none.
    assert!(server.search(&json!({"vector": q, "k": 3})).get("fields").is_none());

    let (s, _) = json_of(request(server.addr, "DELETE", "/v1/items/fresh-1", None, &[]));
    assert_eq!(s, 200);
    assert_eq!(server.get("/v1/items/fresh-1").0, 404);
    let (s, _) = json_of(request(server.addr, "DELETE", &format!("/v1/items/{}", items[5].id), None, &[]));
    assert_eq!(s, 200);
    assert_eq!(server.get(&format!("/v1/items/{}", items[5].id)).0, 404);
}
