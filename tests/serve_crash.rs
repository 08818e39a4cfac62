//! Durability: `kill -9` the server while clients stream acknowledged upserts and deletes
//! (with compactions in between, so some kills land mid-compaction), restart it on the
//! same artifact + write-ahead log, and check that every acknowledged upsert is found and
//! every acknowledged delete stays deleted. Then a torn log tail, and `silica compact`.

mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use serve_common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const D: usize = 16;

/// What the test knows about an id it wrote.
#[derive(Clone, Debug, PartialEq)]
enum State {
    /// An acknowledged upsert (with its vector).
    Live(Vec<f32>),
    /// An acknowledged delete.
    Deleted,
    /// The last request for it got no answer (the server died): it may or may not be durable.
    Unknown,
}

type Acked = Arc<Mutex<BTreeMap<String, State>>>;

/// Stream batches of upserts (and deletes of this client's own acknowledged ids) until the
/// server goes away. Only answers with status 200 count as acknowledged.
fn client(addr: SocketAddr, name: String, seed: u64, acked: Acked) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mine: Vec<String> = Vec::new();
    for j in 0.. {
        if j % 4 == 3 && !mine.is_empty() {
            let id = mine.swap_remove(rng.random_range(0..mine.len()));
            match try_request(addr, "DELETE", &format!("/v1/items/{id}"), None, &[]) {
                Some((200, _)) => {
                    acked.lock().unwrap().insert(id, State::Deleted);
                }
                Some((s, b)) => panic!("delete {id}: {s} {}", String::from_utf8_lossy(&b)),
                None => {
                    acked.lock().unwrap().insert(id, State::Unknown);
                    return j;
                }
            }
            continue;
        }
        let batch: Vec<(String, Vec<f32>)> = (0..4).map(|i| (format!("{name}-{j}-{i}"), random_vector(&mut rng, D))).collect();
        let body = json!({"items": batch.iter().map(|(id, v)| json!({"id": id, "vector": v, "attributes": {"grp": "crash"}})).collect::<Vec<_>>()});
        match try_request(addr, "POST", "/v1/items", Some(body.to_string().as_bytes()), &[]) {
            Some((200, _)) => {
                let mut a = acked.lock().unwrap();
                for (id, v) in batch {
                    mine.push(id.clone());
                    a.insert(id, State::Live(v));
                }
            }
            Some((s, b)) => panic!("upsert: {s} {}", String::from_utf8_lossy(&b)),
            None => {
                let mut a = acked.lock().unwrap();
                for (id, _) in batch {
                    a.insert(id, State::Unknown);
                }
                return j;
            }
        }
    }
    unreachable!()
}

/// Every acknowledged upsert is found by id (with its own vector as the query), every
/// acknowledged delete is absent. Checked in batched requests of 200 queries.
fn verify(server: &Server, acked: &BTreeMap<String, State>) {
    let entries: Vec<_> = acked.iter().filter(|(_, s)| **s != State::Unknown).collect();
    for chunk in entries.chunks(200) {
        let vectors: Vec<Vec<f32>> = chunk.iter().map(|(_, s)| if let State::Live(v) = s { v.clone() } else { vec![1.0; D] }).collect();
        let filters: Vec<String> = chunk.iter().map(|(id, _)| format!("id = \"{id}\"")).collect();
        let v = server.search(&json!({"vectors": vectors, "filters": filters, "k": 2}));
        for ((id, state), r) in chunk.iter().zip(v["results"].as_array().unwrap()) {
            let got = ids(r);
            match state {
                State::Live(_) => assert_eq!(got, vec![id.to_string()], "acknowledged upsert of {id} lost"),
                _ => assert!(got.is_empty(), "acknowledged delete of {id} came back"),
            }
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(21, 1000, D);
    let path = write_index(dir.path(), &items, 16);
    let acked: Acked = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut total_batches = 0;
    for round in 0..4 {
        let mut server = Server::start(&path, &["--compact-threshold", "400"]);
        verify(&server, &acked.lock().unwrap());
        let clients: Vec<_> = (0..3)
            .map(|c| {
                let (addr, acked) = (server.addr, acked.clone());
                std::thread::spawn(move || client(addr, format!("r{round}c{c}"), 1000 * round + c, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        server.kill();
        for c in clients {
            total_batches += c.join().unwrap();
        }
    }
    let n_acked = acked.lock().unwrap().len();
    assert!(n_acked > 100, "only {n_acked} ids acknowledged in {total_batches} requests");

    // A torn tail (a record cut mid-write) is truncated at start, not fatal. A start first
    // finishes a compaction the last kill interrupted (that rewrites the log), so the
    // tail is torn after one.
    let mut server = Server::start(&path, &[]);
    verify(&server, &acked.lock().unwrap());
    server.kill();
    let wal = silica::serve::wal::wal_path(&path);
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[200, 1, 0, 0, 9, 9, 9, 9, b'{', b'"']);
    std::fs::write(&wal, &bytes).unwrap();
    let mut server = Server::start(&path, &[]);
    verify(&server, &acked.lock().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.stderr.lock().unwrap().contains("torn tail"), "the truncation is logged:\n{}", server.stderr.lock().unwrap());
    let (_, stats) = server.get("/v1/stats");
    let count = |want: fn(&State) -> bool| acked.lock().unwrap().values().filter(|s| want(s)).count();
    let (live, unknown) = (count(|s| matches!(s, State::Live(_))), count(|s| *s == State::Unknown));
    let items = stats["items"].as_u64().unwrap() as usize;
    assert!((1000 + live..=1000 + live + unknown).contains(&items), "{items} items; {live} acknowledged live, {unknown} unknown: {stats}");

    // `silica compact` refuses while the server holds the artifact, works once it is gone.
    let compact =
        || std::process::Command::new(env!("CARGO_BIN_EXE_silica")).args(["compact", "--index", path.to_str().unwrap()]).output().unwrap();
    let out = compact();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("held by another silica process"), "{}", String::from_utf8_lossy(&out.stderr));
    server.kill();
    let out = compact();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), silica::serve::wal::HEADER as u64, "the log is empty after compaction");
    assert_eq!(silica::model::format::load(&path).unwrap().len(), items);
    let server = Server::start(&path, &[]);
    verify(&server, &acked.lock().unwrap());
    let before = stats["version"].as_u64().unwrap();
    let (_, stats) = server.get("/v1/stats");
    assert!(before > 0);
    assert_eq!(
        (stats["fresh_rows"].as_u64(), stats["version"].as_u64()),
        (Some(0), Some(before)),
        "versions survive `silica compact` and a restart: {stats}"
    );
}

/// The server aborts inside each step of a write and of a compaction
/// (`SILICA_TEST_ONLY_CRASH_AT`, see `silica::serve::crash`) while a client streams
/// acknowledged upserts and deletes; restarted, it has every acknowledged write, and it
/// still takes writes and compacts.
#[test]
fn acknowledged_writes_survive_a_crash_inside_every_step() {
    for (s, &step) in silica::serve::crash::STEPS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let items = corpus(40 + s as u64, 300, D);
        let path = write_index(dir.path(), &items, 8);
        let acked: Acked = Default::default();
        let mut server = Server::try_start_env(&path, &["--compact-threshold", "40"], &[("SILICA_TEST_ONLY_CRASH_AT", step)]).unwrap();
        let (addr, a) = (server.addr, acked.clone());
        let client = std::thread::spawn(move || client(addr, format!("s{s}"), 500 + s as u64, a));
        // The client stops when the server is gone; the server must have reached the step.
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(st) = server.child.try_wait().unwrap() {
                break st;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "step {step} was never reached:\n{}", server.stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        };
        client.join().unwrap();
        assert!(!status.success(), "{step}: the server aborted");
        assert!(
            server.stderr.lock().unwrap().contains(&format!("SILICA_TEST_ONLY_CRASH_AT={step}")),
            "{step}: aborted at its step:\n{}",
            server.stderr.lock().unwrap()
        );
        let server = Server::start(&path, &["--compact-threshold", "0"]);
        verify(&server, &acked.lock().unwrap());
        // It still writes and compacts, and the compacted state keeps every write.
        let (st, _) = server.post("/v1/items", &json!({"items": [{"id": "after", "vector": vec![0.5f32; D]}]}));
        assert_eq!(st, 200, "{step}");
        let (st, rep) = server.post("/v1/compact", &json!({}));
        assert_eq!(st, 200, "{step}: {rep}");
        verify(&server, &acked.lock().unwrap());
        let (_, stats) = server.get("/v1/stats");
        assert_eq!(stats["fresh_rows"].as_u64(), Some(0), "{step}: {stats}");
    }
}

#[test]
fn a_log_of_another_artifact_is_refused_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_index(dir.path(), &corpus(1, 200, D), 4);
    let server = Server::start(&path, &[]);
    let (s, _) = server.post("/v1/items", &json!({"items": [{"id": "n1", "vector": vec![0.5; D]}]}));
    assert_eq!(s, 200);
    drop(server);
    // Replace the artifact behind the log's back: starting must fail and name the log.
    write_index(dir.path(), &corpus(2, 200, D), 4);
    let e = Server::try_start(&path, &[]).err().expect("must not start");
    assert!(e.contains("belongs to another artifact"), "{e}");
}

/// Damage inside a middle record is corruption, not a torn tail: start-up is refused with
/// the byte offset and the count of intact records behind it; `--wal-recover` moves the log
/// aside (byte for byte) and serves the batches before the damage.
#[test]
fn a_damaged_middle_record_refuses_start_until_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_index(dir.path(), &corpus(3, 200, D), 4);
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let n = rng.random_range(3..7);
    let server = Server::start(&path, &[]);
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| random_vector(&mut rng, D)).collect();
    for (b, v) in vectors.iter().enumerate() {
        let (s, body) = server.post("/v1/items", &json!({"items": [{"id": format!("w{b}"), "vector": v}]}));
        assert_eq!(s, 200, "{body}");
    }
    drop(server);
    let wal = silica::serve::wal::wal_path(&path);
    let good = std::fs::read(&wal).unwrap();
    // Record offsets: header, then [len][crc][payload] per batch.
    let mut offsets = vec![silica::serve::wal::HEADER];
    while offsets.len() < n {
        let at = *offsets.last().unwrap();
        offsets.push(at + 8 + u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize);
    }
    let j = rng.random_range(0..n - 1);
    let mut bad = good.clone();
    bad[rng.random_range(offsets[j] + 8..offsets[j + 1])] ^= 0x10;
    std::fs::write(&wal, &bad).unwrap();
    let e = Server::try_start(&path, &[]).err().expect("a damaged middle record must refuse start");
    let want = format!("damaged record at byte offset {}, followed by {} intact records", offsets[j], n - 1 - j);
    assert!(e.contains(&want), "{want:?} not in:\n{e}");
    assert_eq!(std::fs::read(&wal).unwrap(), bad, "a refused start leaves the log untouched");

    let server = Server::start(&path, &["--wal-recover"]);
    let aside = dir.path().join(format!("test.silica.wal.damaged-{}", offsets[j]));
    assert_eq!(std::fs::read(&aside).unwrap(), bad, "the damaged log is kept aside");
    for (b, v) in vectors.iter().enumerate() {
        let got = ids(&server.search(&json!({"vector": v, "filter": format!("id = \"w{b}\""), "k": 1})));
        assert_eq!(got.len(), usize::from(b < j), "batch {b} (damage in {j})");
    }
    drop(server);
    // The recovered log is clean: a plain restart works.
    Server::start(&path, &[]);
}
