//! Model check of the serving state (in process, no HTTP): random streams of upserts,
//! replacements, deletes and attribute patches, committed in groups; after each step the
//! live snapshot (main index with tombstones and in-place attribute rewrites + fresh
//! segment, merged) must answer exhaustive searches exactly like an index rebuilt from
//! scratch over the same logical items. Then again after compaction and after a restart
//! that replays the write-ahead log.

mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use serve_common::*;
use silica::Filter;
use silica::graph::{self, RerankMode, SearchParams, SearchRequest, SearchResponse};
use silica::serve::state::{Options, Store};
use silica::serve::update::{Batch, Op};
use std::collections::BTreeMap;
use std::sync::Arc;

const D: usize = 16;

fn filters() -> Vec<String> {
    [
        "",
        r#"color = "red""#,
        r#"color = "purple""#,
        r#"tags = "t1""#,
        r#"tags IN ("t9", "t3")"#,
        r#"NOT tags = "t2""#,
        r#"grp = "a" OR color = "blue""#,
        r#"NOT (color = "green" OR grp = "zz")"#,
        r#"grp = "zz" AND NOT tags = "t9""#,
        r#"id IN ("item-3", "new-1", "new-7", "item-150")"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

type SearchFn<'a> = dyn Fn(&[f32], &[Filter], SearchParams) -> Vec<SearchResponse> + 'a;

fn run(s: &SearchFn, q: &[f32], f: Filter, k: usize, rerank: RerankMode, k0: Option<usize>) -> SearchResponse {
    s(q, &[f], SearchParams { k, nprobe: None, k0, rerank, task_weights: None }).pop().unwrap()
}

/// Equal scores, and equal ids except among ties at the cut.
fn same(got: &SearchResponse, want: &SearchResponse, what: &str) {
    assert_eq!(got.scores, want.scores, "{what}: scores\n got {:?}\nwant {:?}", got.ids, want.ids);
    let cut = want.scores.last().copied().unwrap_or(f32::NEG_INFINITY);
    let above = |r: &SearchResponse| {
        let mut v: Vec<String> = r.ids.iter().zip(&r.scores).filter(|(_, s)| **s > cut).map(|(i, _)| i.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(above(got), above(want), "{what}: ids");
}

fn check(store: &Store, model: &BTreeMap<String, Item>, rng: &mut ChaCha8Rng, what: &str) {
    let snap = store.snapshot();
    assert_eq!(snap.stats.items, model.len(), "{what}: live item count");
    let items: Vec<Item> = model.values().cloned().collect();
    let reference = Arc::new(build_index(&items, 4));
    let ref_exec = graph::open("cpu", reference.clone()).unwrap();
    let n = model.len();
    for (fi, text) in filters().iter().enumerate() {
        let q = random_vector(rng, D);
        let got_f = snap.compile(text).unwrap();
        let want_f = Filter::compile(text, &reference.attrs.schema, &reference.bloom.params).unwrap();
        let nlist = snap.index().nlist();
        let g = |q: &[f32], f: &[Filter], mut p: SearchParams| {
            p.nprobe = Some(nlist);
            snap.search(&SearchRequest { queries: q, filters: f, params: p }).unwrap()
        };
        let w = |q: &[f32], f: &[Filter], mut p: SearchParams| {
            p.nprobe = Some(4);
            ref_exec.search(&SearchRequest { queries: q, filters: f, params: p }).unwrap()
        };
        for k in [1, 10, n + 5] {
            // int8 scores: the top-k of each segment contains its share of the global top-k.
            let a = run(&g, &q, got_f.clone(), k, RerankMode::None, None);
            let b = run(&w, &q, want_f.clone(), k, RerankMode::None, None);
            same(&a, &b, &format!("{what}, filter {fi} {text:?}, k={k}, none"));
            // Refine over every candidate: exact f32 scores of the same f16 embeddings.
            let a = run(&g, &q, got_f.clone(), k, RerankMode::Refine, Some(n + 5));
            let b = run(&w, &q, want_f.clone(), k, RerankMode::Refine, Some(n + 5));
            same(&a, &b, &format!("{what}, filter {fi} {text:?}, k={k}, refine"));
        }
    }
}

fn patch_json(attrs: &BTreeMap<String, Vec<String>>) -> serde_json::Value {
    let o: serde_json::Map<String, serde_json::Value> =
        attrs.iter().map(|(k, v)| (k.clone(), if k == "tags" { json!(v) } else { json!(v[0]) })).collect();
    serde_json::Value::Object(o)
}

/// Random batches; returns them with the model updated as the server must.
fn random_batches(rng: &mut ChaCha8Rng, model: &mut BTreeMap<String, Item>, next: &mut usize, batches: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    for _ in 0..batches {
        let mut ops = Vec::new();
        for _ in 0..rng.random_range(1..=5) {
            let keys: Vec<String> = model.keys().cloned().collect();
            let pick = |rng: &mut ChaCha8Rng| keys[rng.random_range(0..keys.len())].clone();
            let roll = rng.random_range(0..100);
            if roll < 40 || keys.len() < 5 {
                let mut it = random_item(rng, format!("new-{next}"), D);
                *next += 1;
                if rng.random_bool(0.3) {
                    it.attrs.insert("color".into(), vec!["purple".into()]);
                    it.attrs.get_mut("tags").unwrap().push("t9".into());
                }
                ops.push(Op::Upsert { item: serde_json::from_value(it.json()).unwrap() });
                model.insert(it.id.clone(), it);
            } else if roll < 55 {
                let id = pick(rng);
                let it = random_item(rng, id, D);
                ops.push(Op::Upsert { item: serde_json::from_value(it.json()).unwrap() });
                model.insert(it.id.clone(), it);
            } else if roll < 75 {
                let id = pick(rng);
                model.remove(&id);
                ops.push(Op::Delete { id });
            } else {
                let id = pick(rng);
                let mut change = BTreeMap::new();
                if rng.random_bool(0.5) {
                    change.insert("color".to_string(), vec![["red", "purple", "orange"][rng.random_range(0..3)].to_string()]);
                }
                if rng.random_bool(0.5) {
                    let tags: Vec<String> =
                        ["t1", "t9", "t3", "t10"].iter().filter(|_| rng.random_bool(0.4)).map(|s| s.to_string()).collect();
                    change.insert("tags".to_string(), tags);
                }
                if rng.random_bool(0.4) {
                    change.insert("grp".to_string(), vec!["zz".to_string()]);
                }
                let item = model.get_mut(&id).unwrap();
                for (k, v) in &change {
                    item.attrs.insert(k.clone(), v.clone());
                }
                let attributes = serde_json::from_value(patch_json(&change)).unwrap();
                ops.push(Op::Patch { id, attributes });
            }
        }
        out.push(Batch { ops });
    }
    out
}

#[test]
fn live_updates_answer_like_a_rebuilt_index() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(11, 300, D);
    let path = write_index(dir.path(), &items, 8);
    let mut model: BTreeMap<String, Item> = items.into_iter().map(|i| (i.id.clone(), i)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let opts = Options { backend: "cpu".into(), compact_threshold: Some(0), wal_recover: false, verify: true };
    let mut store = Store::open(&path, opts.clone()).unwrap();
    check(&store, &model, &mut rng, "loaded");
    let mut next = 0usize;
    for step in 0..12 {
        let group = random_batches(&mut rng, &mut model, &mut next, 1 + step % 3);
        let results = store.commit(&group).unwrap();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        check(&store, &model, &mut rng, &format!("step {step}"));
    }
    let s = store.stats();
    assert!(s.fresh_rows > 0 && s.main_live < s.main_rows && s.appended_values > 0, "{s:?}");
    let acknowledged = s.version;
    assert!(acknowledged >= 12, "{s:?}");

    // Restart: the log replays to the same state and the same version.
    drop(store);
    let mut store = Store::open(&path, opts.clone()).unwrap();
    check(&store, &model, &mut rng, "after replay");
    assert_eq!(store.stats().version, acknowledged);

    // Compaction folds everything into the artifact; a restart then replays nothing.
    let r = store.compact().unwrap();
    assert_eq!(r.rows_after, model.len());
    check(&store, &model, &mut rng, "after compaction");
    let s = store.stats();
    assert_eq!((s.fresh_rows, s.main_live, s.main_rows, s.appended_values), (0, model.len(), model.len(), 0));
    drop(store);
    let loaded = silica::model::format::load(&path).unwrap();
    assert_eq!(loaded.len(), model.len(), "the artifact on disk is the compacted one");
    let mut store = Store::open(&path, opts.clone()).unwrap();
    assert_eq!(store.stats().version, acknowledged, "versions survive compaction and restart (the log's base version)");
    check(&store, &model, &mut rng, "compacted, reopened");

    // A compaction that runs while writes go on: the batches written meanwhile are logged
    // after the new artifact's header and re-applied on top of it.
    let job = store.begin_compaction();
    let mut during = 0;
    for _ in 0..3 {
        let group = random_batches(&mut rng, &mut model, &mut next, 2);
        during += group.len();
        assert!(store.commit(&group).unwrap().iter().all(|r| r.is_ok()));
    }
    check(&store, &model, &mut rng, "while compacting");
    let done = job.run().unwrap();
    let group = random_batches(&mut rng, &mut model, &mut next, 1);
    during += group.len();
    assert!(store.commit(&group).unwrap().iter().all(|r| r.is_ok()));
    let version = store.stats().version;
    let r = store.finish_compaction(done).unwrap();
    assert_eq!(r.replayed, during);
    assert_eq!(store.stats().version, version, "re-applied batches are not counted twice");
    check(&store, &model, &mut rng, "after a concurrent compaction");
    drop(store);
    let mut store = Store::open(&path, opts.clone()).unwrap();
    assert_eq!(
        store.stats().version,
        acknowledged + during as u64,
        "the new log holds exactly the batches written during the compaction, on top of its base"
    );
    check(&store, &model, &mut rng, "after a concurrent compaction, reopened");
    // Nothing is left beside the artifact but the log and the lock.
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["test.silica", "test.silica.lock", "test.silica.wal"]);

    // More updates on top of the compacted artifact, then replay again.
    for step in 0..4 {
        let group = random_batches(&mut rng, &mut model, &mut next, 2);
        assert!(store.commit(&group).unwrap().iter().all(|r| r.is_ok()));
        check(&store, &model, &mut rng, &format!("post-compaction step {step}"));
    }
    let version = store.stats().version;
    assert_eq!(version, acknowledged + during as u64 + 8);
    drop(store);
    let store = Store::open(&path, opts).unwrap();
    check(&store, &model, &mut rng, "post-compaction replay");
    assert_eq!(store.stats().version, version);
}

#[test]
fn a_bad_batch_fails_alone_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(3, 100, D);
    let path = write_index(dir.path(), &items, 4);
    let opts = Options { backend: "cpu".into(), compact_threshold: Some(0), wal_recover: false, verify: true };
    let mut store = Store::open(&path, opts.clone()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let good = random_item(&mut rng, "good".into(), D);
    let mut bad_dim = random_item(&mut rng, "bad".into(), D);
    bad_dim.vector.pop();
    let up = |it: &Item| Op::Upsert { item: serde_json::from_value(it.json()).unwrap() };
    let wal = std::fs::metadata(silica::serve::wal::wal_path(&path)).unwrap().len();
    let batches = vec![
        // Good first op, bad second: the whole batch is refused, "good" must not appear.
        Batch { ops: vec![up(&good), up(&bad_dim)] },
        Batch { ops: vec![Op::Delete { id: "item-1".into() }, Op::Delete { id: "item-1".into() }] },
        Batch { ops: vec![Op::Patch { id: "nope".into(), attributes: Default::default() }] },
        Batch { ops: vec![Op::Patch { id: "item-2".into(), attributes: serde_json::from_value(json!({"colour": "red"})).unwrap() }] },
        Batch { ops: vec![Op::Delete { id: "item-3".into() }] },
    ];
    let r = store.commit(&batches).unwrap();
    let fields: Vec<Option<String>> = r.iter().map(|x| x.as_ref().err().and_then(|e| e.field.clone())).collect();
    assert_eq!(fields, vec![Some("items[1].vector".into()), Some("id".into()), Some("id".into()), Some("attributes.colour".into()), None]);
    assert_eq!(r[1].as_ref().unwrap_err().status.as_u16(), 404);
    assert_eq!(r[4], Ok(1), "the good batch is version 1");
    assert_eq!(store.locate("good"), None);
    assert!(store.locate("item-1").is_some() && store.locate("item-3").is_none());
    // Only the good batch reached the log.
    let grew = std::fs::metadata(silica::serve::wal::wal_path(&path)).unwrap().len() - wal;
    let one = silica::serve::wal::frame(&serde_json::to_vec(&batches[4]).unwrap()).len() as u64;
    assert_eq!(grew, one);
    drop(store);
    let store = Store::open(&path, opts).unwrap();
    assert_eq!(store.stats().version, 1);
    assert_eq!(store.stats().items, 99);
}

#[test]
fn deleting_everything_then_compacting_leaves_a_valid_empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(4, 70, D);
    let path = write_index(dir.path(), &items, 4);
    let opts = Options { backend: "cpu".into(), compact_threshold: Some(0), wal_recover: false, verify: true };
    let mut store = Store::open(&path, opts.clone()).unwrap();
    let ops: Vec<Op> = items.iter().map(|i| Op::Delete { id: i.id.clone() }).collect();
    assert!(store.commit(&[Batch { ops }]).unwrap()[0].is_ok());
    let q = vec![0.5f32; D];
    let search = |s: &Store| {
        s.snapshot().search(&SearchRequest { queries: &q, filters: &[], params: SearchParams { k: 5, ..Default::default() } }).unwrap()
    };
    assert!(search(&store)[0].ids.is_empty());
    assert_eq!(store.compact().unwrap().rows_after, 0);
    assert!(search(&store)[0].ids.is_empty());
    drop(store);
    let mut store = Store::open(&path, opts).unwrap();
    assert!(search(&store)[0].ids.is_empty());
    // And it takes new items again.
    let it = random_item(&mut ChaCha8Rng::seed_from_u64(1), "again".into(), D);
    assert!(store.commit(&[Batch { ops: vec![Op::Upsert { item: serde_json::from_value(it.json()).unwrap() }] }]).unwrap()[0].is_ok());
    assert_eq!(search(&store)[0].ids, vec![std::sync::Arc::<str>::from("again")]);
    assert_eq!(store.compact().unwrap().rows_after, 1);
    assert_eq!(search(&store)[0].ids, vec![std::sync::Arc::<str>::from("again")]);
}
