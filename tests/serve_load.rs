//! `silica load` against a real `silica serve`: closed and open loop, JSON and binary
//! bodies; the JSON report accounts for every request, and a full queue shows up as 503s.

mod serve_common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use serve_common::*;
use std::path::Path;
use std::process::Command;

const D: usize = 16;

fn load(addr: std::net::SocketAddr, dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_silica"))
        .args(["load", "--url", &format!("http://{addr}"), "--queries"])
        .arg(dir.join("q.npy"))
        .arg("--filters")
        .arg(dir.join("f.jsonl"))
        .args(["--warmup", "0.2", "--threads", "1"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "silica load failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: u64 = r["errors"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(r["requests"].as_u64().unwrap(), r["ok"].as_u64().unwrap() + errors, "every request is counted once: {r}");
    r
}

#[test]
fn load_reports_qps_latency_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(41, 1500, D);
    let path = write_index(dir.path(), &items, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let qs: Vec<f32> = (0..20).flat_map(|_| random_vector(&mut rng, D)).collect();
    silica::model::npy::write(&dir.path().join("q.npy"), 20, D, &qs, false).unwrap();
    let filters: String =
        (0..20).map(|i| format!("{{\"filter\": {}}}\n", serde_json::json!(["", "color = \"red\"", "tags = \"t3\""][i % 3]))).collect();
    std::fs::write(dir.path().join("f.jsonl"), filters).unwrap();
    let server = Server::start(&path, &[]);

    for body in ["json", "binary"] {
        let r = load(server.addr, dir.path(), &["--connections", "4", "--duration", "1", "--body", body]);
        assert!(r["ok"].as_u64().unwrap() > 10, "{r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
        let l = &r["latency_ms"];
        assert!(
            l["p50"].as_f64().unwrap() > 0.0 && l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64(),
            "{r}"
        );
        assert!(r["mean_batch_queries"].as_f64().unwrap() >= 1.0, "{r}");
    }
    // Open loop: the offered rate is what arrives.
    let r =
        load(server.addr, dir.path(), &["--connections", "4", "--duration", "1.5", "--mode", "open", "--rate", "100", "--body", "binary"]);
    let n = r["requests"].as_u64().unwrap();
    assert!((120..=151).contains(&n), "150 requests offered in 1.5 s, {n} counted: {r}");
    assert_eq!(r["rate"].as_f64(), Some(100.0));
    drop(server);

    // A queue of one query: concurrent requests are refused with 503 and counted as such.
    let server = Server::start(&path, &["--max-queue", "1", "--max-batch", "1", "--max-wait-us", "0"]);
    let r = load(server.addr, dir.path(), &["--connections", "24", "--duration", "1", "--k", "500", "--nprobe", "8"]);
    let errors = r["errors"].as_object().unwrap();
    assert!(errors.keys().all(|k| k == "503"), "{r}");
    assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn load_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    silica::model::npy::write(&dir.path().join("q.npy"), 1, D, &[0.5; D], false).unwrap();
    for (args, want) in [
        (vec!["--mode", "open"], "rate"),
        (vec!["--connections", "0"], "connections"),
        (vec!["--url", "http://127.0.0.1:1"], "cannot reach"),
        (vec!["--url", "https://x:1"], "http://host:port"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_silica"))
            .args(["load", "--duration", "0.1", "--queries"])
            .arg(dir.path().join("q.npy"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
