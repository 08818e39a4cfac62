//! Background folds of the fresh tail (`silica serve`'s writer folds a full tail into the
//! fresh lists on another thread): with a tiny `--fresh-tail`, folds run all the time while
//! writers upsert, replace and delete. Every acknowledged write is visible in the snapshot
//! of the version its acknowledgement names (read your writes, straight after the ack), and
//! at the end every live item is still found and deleted ones never are.

mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use serve_common::*;
use std::collections::BTreeMap;

const D: usize = 12;

/// `id = ...` search by the item's vector: its ids (k = 2).
fn find(server: &Server, id: &str, v: &[f32]) -> Vec<String> {
    ids(&server.search(&json!({"vector": v, "filter": format!("id = \"{id}\""), "k": 2})))
}

#[test]
fn writes_during_background_folds_are_visible_at_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(61, 400, D);
    let path = write_index(dir.path(), &items, 8);
    let server = Server::start(&path, &["--fresh-tail", "7", "--compact-threshold", "0"]);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut live: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut deleted: Vec<String> = Vec::new();
    for j in 0..120 {
        match j % 5 {
            // Delete or replace an earlier fresh item (often one a fold is laying out).
            3 if !live.is_empty() => {
                let id = live.keys().nth(rng.random_range(0..live.len())).unwrap().clone();
                let (st, _) = json_of(request(server.addr, "DELETE", &format!("/v1/items/{id}"), None, &[]));
                assert_eq!(st, 200);
                live.remove(&id);
                assert!(find(&server, &id, &[1.0; D]).is_empty(), "delete of {id} visible at once");
                deleted.push(id);
            }
            4 if !live.is_empty() => {
                let id = live.keys().nth(rng.random_range(0..live.len())).unwrap().clone();
                let v = random_vector(&mut rng, D);
                let (st, _) = server.post("/v1/items", &json!({"items": [{"id": id, "vector": v}]}));
                assert_eq!(st, 200);
                assert_eq!(find(&server, &id, &v), vec![id.clone()], "replacement of {id} found once");
                live.insert(id, v);
            }
            _ => {
                let batch: Vec<(String, Vec<f32>)> =
                    (0..rng.random_range(1..6)).map(|i| (format!("f{j}-{i}"), random_vector(&mut rng, D))).collect();
                let body = json!({"items": batch.iter().map(|(id, v)| json!({"id": id, "vector": v})).collect::<Vec<_>>()});
                let (st, _) = server.post("/v1/items", &body);
                assert_eq!(st, 200);
                for (id, v) in batch {
                    assert_eq!(find(&server, &id, &v), vec![id.clone()], "{id} found straight after its ack");
                    live.insert(id, v);
                }
            }
        }
    }
    // Let the last fold land, then check everything once more (and the tail was folded).
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (id, v) in &live {
        assert_eq!(find(&server, id, v), vec![id.clone()], "{id} kept");
    }
    for id in &deleted {
        if !live.contains_key(id) {
            assert!(find(&server, id, &[1.0; D]).is_empty(), "{id} stays deleted");
        }
    }
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["items"].as_u64(), Some((400 + live.len()) as u64), "{stats}");
    assert_eq!(stats["fresh_live"].as_u64(), Some(live.len() as u64), "{stats}");
}
