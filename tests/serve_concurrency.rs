//! Snapshot isolation over HTTP: readers searching while a writer streams upserts,
//! replacements, deletes and attribute patches (with automatic compactions in between)
//! must each see exactly the state after some whole number of acknowledged batches: the
//! one named by the `version` in their answer. A torn batch shows up as a set mismatch.

mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use serve_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const D: usize = 16;

/// Effect of one acknowledged batch on the set of items passing `grp = "stream"`.
enum Effect {
    Add(Vec<String>),
    Remove(String),
    Keep,
}

#[test]
fn readers_never_see_a_torn_batch() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(5, 2000, D);
    let path = write_index(dir.path(), &items, 16);
    let server = Server::start(&path, &["--compact-threshold", "80", "--max-wait-us", "200"]);
    let addr = server.addr;
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..4)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(100 + t);
                let mut seen: Vec<(u64, Vec<String>)> = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let q = random_vector(&mut rng, D);
                    // Alternate single and batched requests (one snapshot per request).
                    let body = if t % 2 == 0 {
                        json!({"vector": q, "k": 1000, "nprobe": 16, "rerank": "none", "filter": "grp = \"stream\""})
                    } else {
                        json!({"vectors": [q, q], "k": 1000, "nprobe": 16, "filter": "grp = \"stream\""})
                    };
                    let (s, v) = json_of(request(addr, "POST", "/v1/search", Some(body.to_string().as_bytes()), &[]));
                    assert_eq!(s, 200, "{v}");
                    let version = v["version"].as_u64().unwrap();
                    if let Some(results) = v["results"].as_array() {
                        assert_eq!(ids(&results[0]), ids(&results[1]), "two queries of one request see one snapshot");
                        seen.push((version, ids(&results[0])));
                    } else {
                        seen.push((version, ids(&v)));
                    }
                }
                seen
            })
        })
        .collect();

    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut live: BTreeMap<String, bool> = BTreeMap::new(); // id -> passes the filter
    let mut log: Vec<(u64, Effect)> = Vec::new();
    let mut n = 0usize;
    for step in 0..60 {
        let stream: Vec<String> = live.iter().filter(|(_, p)| **p).map(|(k, _)| k.clone()).collect();
        let gone: Vec<String> = live.iter().filter(|(_, p)| !**p).map(|(k, _)| k.clone()).collect();
        let (version, effect) = if step % 3 == 1 && !stream.is_empty() {
            let id = stream[rng.random_range(0..stream.len())].clone();
            let (s, v) = json_of(request(addr, "DELETE", &format!("/v1/items/{id}"), None, &[]));
            assert_eq!(s, 200, "{v}");
            live.remove(&id);
            (v["version"].as_u64().unwrap(), Effect::Remove(id))
        } else if step % 4 == 2 && (!stream.is_empty() || !gone.is_empty()) {
            // Patch an item out of (or back into) the filter.
            let back = !gone.is_empty() && (stream.is_empty() || rng.random_bool(0.5));
            let id = if back { gone[0].clone() } else { stream[rng.random_range(0..stream.len())].clone() };
            let grp = if back { "stream" } else { "gone" };
            let (s, v) = json_of(request(
                addr,
                "PATCH",
                &format!("/v1/items/{id}"),
                Some(json!({"attributes": {"grp": grp}}).to_string().as_bytes()),
                &[],
            ));
            assert_eq!(s, 200, "{v}");
            live.insert(id.clone(), back);
            (v["version"].as_u64().unwrap(), if back { Effect::Add(vec![id]) } else { Effect::Remove(id) })
        } else if step % 5 == 4 && stream.len() >= 3 {
            // Replace three items (new vectors): never both versions, never neither.
            let batch: Vec<_> = stream[..3]
                .iter()
                .map(|id| json!({"id": id, "vector": random_vector(&mut rng, D), "attributes": {"grp": "stream"}}))
                .collect();
            let (s, v) = server.post("/v1/items", &json!({"items": batch}));
            assert_eq!(s, 200, "{v}");
            (v["version"].as_u64().unwrap(), Effect::Keep)
        } else {
            let ids: Vec<String> = (0..6).map(|i| format!("s{n}-{i}")).collect();
            n += 1;
            let batch: Vec<_> = ids
                .iter()
                .map(|id| json!({"id": id, "vector": random_vector(&mut rng, D), "attributes": {"grp": "stream", "tags": ["t1"]}}))
                .collect();
            let (s, v) = server.post("/v1/items", &json!({"items": batch}));
            assert_eq!(s, 200, "{v}");
            for id in &ids {
                live.insert(id.clone(), true);
            }
            (v["version"].as_u64().unwrap(), Effect::Add(ids))
        };
        if let Some((last, _)) = log.last() {
            assert!(version > *last, "versions grow with each acknowledged batch");
        }
        log.push((version, effect));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Compactions run in the background: on a slow machine the one the stream triggered may
    // still be writing. Readers keep reading until it has been installed (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stats = loop {
        let (_, stats) = server.get("/v1/stats");
        if stats["compactions"].as_u64().unwrap() >= 1 || std::time::Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    done.store(true, Ordering::Relaxed);
    assert!(stats["compactions"].as_u64().unwrap() >= 1, "the stream should trigger a compaction within 60 s: {stats}");

    // The expected set after each version.
    let mut states: Vec<(u64, BTreeSet<String>)> = vec![(0, BTreeSet::new())];
    for (v, e) in &log {
        let mut s = states.last().unwrap().1.clone();
        match e {
            Effect::Add(ids) => s.extend(ids.iter().cloned()),
            Effect::Remove(id) => {
                s.remove(id);
            }
            Effect::Keep => {}
        }
        states.push((*v, s));
    }
    let mut checked = 0;
    for r in readers {
        let mut last = 0;
        for (version, got) in r.join().unwrap() {
            assert!(version >= last, "a reader's versions never go back");
            last = version;
            let want = &states.iter().rev().find(|(v, _)| *v <= version).unwrap().1;
            let set: BTreeSet<String> = got.iter().cloned().collect();
            assert_eq!(set.len(), got.len(), "version {version}: an id appears twice (both versions of a replaced item)");
            assert_eq!(&set, want, "version {version}: not the state after a whole number of batches");
            checked += 1;
        }
    }
    assert!(checked > 50, "readers made only {checked} searches");
    eprintln!("{checked} reader searches checked against {} versions; stats {stats}", log.len());
}
