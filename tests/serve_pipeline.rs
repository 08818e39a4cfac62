//! Pipelined serving (`--workers N`: several batches in flight on one backend) answers
//! exactly as serial serving: many concurrent clients, mixed parameters, filters and
//! request sizes, JSON and binary, compared with the answers the same server gives one
//! request at a time. CPU always; wgpu (lavapipe in CI) and cuda where present.

mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use serve_common::*;
use std::sync::Arc;

const D: usize = 16;

fn backends() -> Vec<&'static str> {
    let mut out = vec!["cpu"];
    #[cfg(feature = "wgpu")]
    match silica::backend::wgpu::Wgpu::new(Default::default()) {
        Ok(_) => out.push("wgpu"),
        Err(e) => {
            assert!(!std::env::var("SILICA_REQUIRE_BACKENDS").unwrap_or_default().contains("wgpu"), "wgpu required but unavailable: {e}");
            eprintln!("skipping wgpu: {e}");
        }
    }
    #[cfg(feature = "cuda")]
    if silica::backend::cuda::available() {
        out.push("cuda");
    }
    out
}

/// One request: its JSON body and the per-query answers of a serial run.
struct Case {
    body: Value,
    rows: usize,
}

fn cases(rng: &mut ChaCha8Rng) -> Vec<Case> {
    let filters = [
        "",
        r#"color = "cyan""#,
        r#"tags IN ("t1", "t2")"#,
        r#"NOT grp = "a" AND color IN ("red", "cyan")"#,
        r#"tags = "t7""#,
        r#"grp = "b""#,
    ];
    (0..60)
        .map(|i| {
            let rows = if i % 5 == 0 { rng.random_range(2..6) } else { 1 };
            let vs: Vec<Vec<f32>> = (0..rows).map(|_| random_vector(rng, D)).collect();
            let fs: Vec<&str> = (0..rows).map(|j| filters[(i + j) % filters.len()]).collect();
            let (k, nprobe) = ([5, 10, 40][i % 3], [2, 4, 16][(i / 3) % 3]);
            let mut body = json!({"vectors": vs, "filters": fs, "k": k, "nprobe": nprobe});
            if i % 2 == 1 {
                body["rerank"] = json!("none");
            }
            Case { body, rows }
        })
        .collect()
}

#[test]
fn pipelined_batches_answer_as_serial_ones() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(51, 4000, D);
    let path = write_index(dir.path(), &items, 16);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let cases = Arc::new(cases(&mut rng));
    for backend in backends() {
        let server = Server::start(&path, &["--backend", backend, "--workers", "3", "--max-wait-us", "300"]);
        // Serial: one request at a time (each its own batch).
        let serial: Vec<Value> = cases.iter().map(|c| server.search(&c.body)["results"].clone()).collect();
        let serial = Arc::new(serial);
        let addr = server.addr;
        let threads: Vec<_> = (0..12)
            .map(|t| {
                let (cases, serial) = (cases.clone(), serial.clone());
                std::thread::spawn(move || {
                    for round in 0..3 {
                        for (i, c) in cases.iter().enumerate().filter(|(i, _)| (i + t + round) % 4 == 0) {
                            let (s, v) = json_of(request(addr, "POST", "/v1/search", Some(c.body.to_string().as_bytes()), &[]));
                            assert_eq!(s, 200, "{v}");
                            assert_eq!(v["results"], serial[i], "{backend}: request {i} concurrent vs serial");
                            assert_eq!(v["results"].as_array().unwrap().len(), c.rows);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The concurrent load was batched: some executor call held several requests.
        let (_, m) = request(addr, "GET", "/metrics", None, &[]);
        let m = String::from_utf8(m).unwrap();
        let single: f64 = m
            .lines()
            .find(|l| l.starts_with("silica_batch_requests_bucket{le=\"1\"}"))
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let all: f64 =
            m.lines().find(|l| l.starts_with("silica_batch_requests_count")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        eprintln!("{backend}: {all} executor calls, {single} of one request");
        assert!(single < all, "{backend}: no executor call batched two requests");
    }
}
