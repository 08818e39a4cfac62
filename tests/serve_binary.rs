//! The binary search body (`Content-Type: application/octet-stream`, little-endian f32
//! rows, parameters in the query string) and answer (`Accept: application/octet-stream`):
//! the same rows, ids and scores as the JSON API, and typed 400s for malformed bodies.

mod serve_common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use serve_common::*;
use silica::serve::binary::decode_response;

const D: usize = 16;
const BIN: (&str, &str) = ("Content-Type", "application/octet-stream");
const ACCEPT_BIN: (&str, &str) = ("Accept", "application/octet-stream");

fn le(rows: &[Vec<f32>]) -> Vec<u8> {
    rows.iter().flatten().flat_map(|x| x.to_le_bytes()).collect()
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The JSON answer of one query as (rows, ids, score bits).
fn triple(v: &Value) -> (Vec<u64>, Vec<String>, Vec<u32>) {
    let rows = v["rows"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let scores = v["scores"].as_array().unwrap().iter().map(|x| (x.as_f64().unwrap() as f32).to_bits()).collect();
    (rows, ids(v), scores)
}

#[test]
fn binary_bodies_give_the_json_answers() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(31, 2500, D);
    let path = write_index(dir.path(), &items, 16);
    let server = Server::start(&path, &[]);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let qs: Vec<Vec<f32>> = (0..7).map(|_| random_vector(&mut rng, D)).collect();
    let filters = [
        "",
        "color = \"red\"",
        "tags = \"t2\" AND NOT grp = \"a\"",
        "",
        "color IN (\"blue\", \"cyan\")",
        "grp = \"nope\"",
        "tags = \"t0\"",
    ];
    let want = server.search(&json!({"vectors": qs, "filters": filters, "k": 12, "nprobe": 4}));
    let path_q = format!("/v1/search?k=12&nprobe=4&filters={}", enc(&serde_json::to_string(&filters).unwrap()));

    // Binary in, binary out: same rows, ids and scores (bit for bit) and version.
    let (s, head, body) = try_request_full(server.addr, "POST", &path_q, Some(&le(&qs)), &[BIN, ACCEPT_BIN]).unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("content-type: application/octet-stream"), "{head}");
    let (version, got) = decode_response(&body).unwrap();
    assert_eq!(version, want["version"].as_u64().unwrap());
    let results = want["results"].as_array().unwrap();
    assert_eq!(got.len(), 7);
    for (i, (g, w)) in got.iter().zip(results).enumerate() {
        let g3 = (
            g.rows.clone(),
            g.ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            g.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        );
        assert_eq!(g3, triple(w), "query {i}");
    }
    assert!(got[5].rows.is_empty(), "a filter no item passes gives no rows");
    assert_eq!(got[0].rows.len(), 12);

    // Binary in, JSON out: the `vectors` answer.
    let (s, v) = json_of(request(server.addr, "POST", &path_q, Some(&le(&qs)), &[BIN]));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, want);

    // One filter for every row (`filter`), one row.
    let f = "tags = \"t1\" OR color = \"green\"";
    let want1 = server.search(&json!({"vector": qs[2], "filter": f, "k": 5, "rerank": "none"}));
    let (s, _, body) = try_request_full(
        server.addr,
        "POST",
        &format!("/v1/search?k=5&rerank=none&filter={}", enc(f)),
        Some(&le(&qs[2..3])),
        &[BIN, ACCEPT_BIN],
    )
    .unwrap();
    assert_eq!(s, 200);
    let (_, got) = decode_response(&body).unwrap();
    assert_eq!(triple(&json!({"rows": got[0].rows, "ids": got[0].ids, "scores": got[0].scores})), triple(&want1));

    // A JSON request may ask for a binary answer too.
    let (s, _, body) = try_request_full(
        server.addr,
        "POST",
        "/v1/search",
        Some(json!({"vector": qs[2], "filter": f, "k": 5, "rerank": "none"}).to_string().as_bytes()),
        &[ACCEPT_BIN],
    )
    .unwrap();
    assert_eq!(s, 200);
    assert_eq!(decode_response(&body).unwrap().1, got);
}

#[test]
fn malformed_binary_bodies_are_typed_400s() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(32, 600, D);
    let path = write_index(dir.path(), &items, 8);
    let server = Server::start(&path, &[]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let q = random_vector(&mut rng, D);
    let mut nan = q.clone();
    nan[3] = f32::NAN;
    let mut inf = q.clone();
    inf[15] = f32::INFINITY;
    let two = le(&[q.clone(), q.clone()]);
    let one = le(std::slice::from_ref(&q));
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("/v1/search".into(), Vec::new(), "body"),
        ("/v1/search".into(), two[..5].to_vec(), "body"),
        ("/v1/search".into(), le(&[q[..D - 1].to_vec()]), "body"),
        ("/v1/search".into(), two[..4 * (D + 8)].to_vec(), "body"),
        ("/v1/search".into(), le(&[q.clone(), nan]), "vectors[1][3]"),
        ("/v1/search".into(), le(&[inf]), "vectors[0][15]"),
        ("/v1/search?k=0".into(), one.clone(), "k"),
        ("/v1/search?k=ten".into(), one.clone(), "k"),
        ("/v1/search?nprobe=9".into(), one.clone(), "nprobe"),
        ("/v1/search?colour=red".into(), one.clone(), "colour"),
        ("/v1/search?k=1&k=2".into(), one.clone(), "k"),
        (format!("/v1/search?filter={}", enc("colour = \"red\"")), one.clone(), "filter"),
        (format!("/v1/search?filters={}", enc("[\"\"]")), two.clone(), "filters"),
        ("/v1/search?filters=%5B".into(), one.clone(), "filters"),
        ("/v1/search?timeout_ms=0".into(), one.clone(), "timeout_ms"),
    ];
    for (path, body, field) in cases {
        let (s, v) = json_of(request(server.addr, "POST", &path, Some(&body), &[BIN, ACCEPT_BIN]));
        assert_eq!(s, 400, "{path} ({} bytes): {v}", body.len());
        assert_eq!(v["error"]["field"], field, "{path}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
    }
    // The server is unharmed.
    let (s, _, body) = try_request_full(server.addr, "POST", "/v1/search?k=3", Some(&le(&[q])), &[BIN, ACCEPT_BIN]).unwrap();
    assert_eq!(s, 200);
    assert_eq!(decode_response(&body).unwrap().1[0].rows.len(), 3);
}
