//! Back-pressure and deadlines of `POST /v1/search`: a full queue answers 503 with
//! `Retry-After` (counted in /metrics) and leaves every admitted search correct; a search
//! whose deadline passes before its batch runs answers 504 (counted), others answer 200.

mod serve_common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use serve_common::*;
use std::sync::{Arc, Mutex};

const D: usize = 16;

fn metric(server: &Server, name: &str) -> f64 {
    let (_, body) = request(server.addr, "GET", "/metrics", None, &[]);
    let text = String::from_utf8(body).unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_admitted_searches_stay_correct() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(21, 3000, D);
    let path = write_index(dir.path(), &items, 16);
    // One query per batch, two queries of room: a 48-query request fits only an empty queue.
    let server = Server::start(&path, &["--max-queue", "2", "--max-batch", "1", "--max-wait-us", "0"]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let qs: Vec<Vec<f32>> = (0..48).map(|_| random_vector(&mut rng, D)).collect();
    let body = json!({"vectors": qs, "k": 200, "nprobe": 16, "filter": "color = \"red\" OR tags = \"t1\""});
    let expected = server.search(&body);
    let addr = server.addr;
    let seen: Arc<Mutex<(usize, usize)>> = Arc::default();
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (body, expected, seen) = (body.to_string(), expected.clone(), seen.clone());
            std::thread::spawn(move || {
                for _ in 0..15 {
                    let (status, head, raw) = try_request_full(addr, "POST", "/v1/search", Some(body.as_bytes()), &[]).expect("an answer");
                    let v: Value = serde_json::from_slice(&raw).unwrap();
                    match status {
                        200 => {
                            assert_eq!(v["results"], expected["results"], "an admitted search gives the serial answer");
                            seen.lock().unwrap().0 += 1;
                        }
                        503 => {
                            assert!(head.contains("\r\nretry-after: 1"), "503 without Retry-After: {head}");
                            assert_eq!(v["error"]["code"], "overloaded", "{v}");
                            seen.lock().unwrap().1 += 1;
                        }
                        s => panic!("unexpected status {s}: {v}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (ok, full) = *seen.lock().unwrap();
    assert_eq!(ok + full, 180);
    assert!(full > 0, "12 clients of 48 queries never filled a queue of 2 ({ok} answered)");
    assert!(ok > 0, "nothing was admitted");
    assert_eq!(metric(&server, "silica_search_rejected_total{reason=\"queue_full\"}") as usize, full);
    assert_eq!(metric(&server, "silica_requests_total{route=\"search\",status=\"503\"}") as usize, full);
    assert_eq!(metric(&server, "silica_search_queue_queries"), 0.0, "the queue drains");
    // Nothing else broke: the server answers a fresh search and a write.
    assert_eq!(server.search(&body)["results"], expected["results"]);
    let (s, _) = server.post("/v1/items", &json!({"items": [random_item(&mut rng, "new-1".into(), D).json()]}));
    assert_eq!(s, 200);
}

#[test]
fn a_request_larger_than_the_queue_is_admitted_when_the_queue_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(22, 500, D);
    let path = write_index(dir.path(), &items, 8);
    let server = Server::start(&path, &["--max-queue", "1"]);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let qs: Vec<Vec<f32>> = (0..5).map(|_| random_vector(&mut rng, D)).collect();
    let v = server.search(&json!({"vectors": qs, "k": 3}));
    assert_eq!(v["results"].as_array().unwrap().len(), 5);
}

#[test]
fn a_search_whose_deadline_passes_in_the_queue_answers_504() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(23, 800, D);
    let path = write_index(dir.path(), &items, 8);
    // The batcher waits 300 ms for company after the first search: a 1 ms deadline passes.
    let server = Server::start(&path, &["--max-wait-us", "300000"]);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let q = random_vector(&mut rng, D);
    let (s, v) = server.post("/v1/search", &json!({"vector": q, "k": 5, "timeout_ms": 1}));
    assert_eq!(s, 504, "{v}");
    assert_eq!(v["error"]["code"], "deadline_exceeded");
    assert_eq!(v["error"]["field"], "timeout_ms");
    let (s, v) = server.post("/v1/search", &json!({"vector": q, "k": 5, "timeout_ms": 60000}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ids"].as_array().unwrap().len(), 5);
    for bad in [json!(0), json!(3_600_001), json!(-1), json!("5")] {
        let (s, v) = server.post("/v1/search", &json!({"vector": q, "timeout_ms": bad}));
        assert_eq!(s, 400, "timeout_ms {bad}: {v}");
        assert_eq!(v["error"]["field"], "timeout_ms", "{v}");
    }
    assert_eq!(metric(&server, "silica_search_rejected_total{reason=\"deadline\"}"), 1.0);
    drop(server);

    // The server default applies to searches without `timeout_ms`; theirs overrides it.
    let server = Server::start(&path, &["--max-wait-us", "300000", "--timeout-ms", "1"]);
    let (s, v) = server.post("/v1/search", &json!({"vector": q, "k": 5}));
    assert_eq!(s, 504, "{v}");
    let (s, v) = server.post("/v1/search", &json!({"vector": q, "k": 5, "timeout_ms": 60000}));
    assert_eq!(s, 200, "{v}");
}
