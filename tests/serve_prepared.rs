//! Batches prepared off the writer thread (`Incoming::prepare`: the log record and the new
//! rows' lists computed by the HTTP handler) commit exactly like batches the writer
//! encodes and assigns itself: same log bytes, same fresh rows in the same lists, same
//! answers. Lists computed against other centroids (a compaction in between) are not
//! used, and a batch the writer refuses is refused the same way.

mod serve_common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serve_common::*;
use silica::graph::{RerankMode, SearchParams, SearchRequest};
use silica::serve::state::{Incoming, Options, Store};
use silica::serve::update::{Batch, Op};
use silica::serve::wal::wal_path;

const D: usize = 12;

fn item_op(it: &Item) -> Op {
    Op::Upsert { item: serde_json::from_value(it.json()).unwrap() }
}

#[test]
fn prepared_batches_commit_like_writer_encoded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(7, 700, D);
    let a = write_index(dir.path(), &items, 9);
    let b = dir.path().join("b.silica");
    std::fs::copy(&a, &b).unwrap();
    // Another index: other centroids, for lists that no longer apply.
    let other = build_index(&corpus(8, 300, D), 9);
    let opts = Options { backend: "cpu".into(), compact_threshold: Some(0), wal_recover: false, verify: false };
    let (mut sa, mut sb) = (Store::open(&a, opts.clone()).unwrap(), Store::open(&b, opts).unwrap());
    sa.set_fresh_tail_limit(50).unwrap();
    sb.set_fresh_tail_limit(50).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for round in 0..5 {
        let mut groups: Vec<Vec<Batch>> = Vec::new();
        for g in 0..3 {
            let mut ops: Vec<Op> =
                (0..(round * 7 + g * 5) % 23 + 1).map(|j| item_op(&random_item(&mut rng, format!("n{round}-{g}-{j}"), D))).collect();
            // Replacements of built items, and of fresh ones.
            ops.push(item_op(&random_item(&mut rng, format!("item-{}", round * 31 + g), D)));
            if round > 0 {
                ops.push(item_op(&random_item(&mut rng, format!("n{}-{g}-0", round - 1), D)));
            }
            let mut batches = vec![Batch { ops }];
            if g == 1 {
                // Refused alone by the writer: a wrong dimension, then a delete of nothing.
                let mut bad = random_item(&mut rng, format!("bad-{round}"), D);
                bad.vector.push(0.5);
                batches.push(Batch { ops: vec![item_op(&random_item(&mut rng, format!("ok-{round}"), D)), item_op(&bad)] });
                batches.push(Batch { ops: vec![Op::Delete { id: "no-such-item".into() }] });
            }
            groups.push(batches);
        }
        for batches in groups {
            let main = sb.snapshot().index().clone();
            let prepared: Vec<Incoming> = batches
                .iter()
                .enumerate()
                // Every other prepared against other centroids: the writer must reassign.
                .map(|(i, x)| Incoming::prepare(x.clone(), if (i + round) % 2 == 1 { &other } else { &main }))
                .collect();
            let ra = sa.commit(&batches).unwrap();
            let rb = sb.commit_incoming(&prepared).unwrap();
            let oks = |r: &[Result<u64, _>]| {
                r.iter().map(|x| x.as_ref().map_err(|e: &silica::serve::error::ApiError| e.to_string()).cloned()).collect::<Vec<_>>()
            };
            assert_eq!(oks(&ra), oks(&rb), "round {round}: the same results per batch");
        }
    }
    assert_eq!(std::fs::read(wal_path(&a)).unwrap(), std::fs::read(wal_path(&b)).unwrap(), "the same log bytes");
    let (x, y) = (sa.snapshot(), sb.snapshot());
    assert_eq!(x.stats.items, y.stats.items);
    assert!(x.stats.fresh_rows > 100, "{:?}", x.stats);
    assert!(x.fresh.is_some(), "a fresh lists part");
    for (p, q) in [(&x.fresh, &y.fresh), (&x.tail, &y.tail)] {
        assert_eq!(p.is_some(), q.is_some());
        let (Some(p), Some(q)) = (p, q) else { continue };
        let (p, q) = (p.index(), q.index());
        assert_eq!(p.list_offsets, q.list_offsets, "the same lists");
        assert_eq!((&p.items.codes[..], &p.items.scale[..]), (&q.items.codes[..], &q.items.scale[..]));
        assert_eq!(p.ids.iter().collect::<Vec<_>>(), q.ids.iter().collect::<Vec<_>>());
        assert_eq!(p.live, q.live);
    }
    let qs: Vec<f32> = (0..4).flat_map(|_| random_vector(&mut rng, D)).collect();
    let p = SearchParams { k: 10, nprobe: Some(3), k0: None, rerank: RerankMode::None, task_weights: None };
    let req = SearchRequest { queries: &qs, filters: &[], params: p };
    let (ga, gb) = (x.search(&req).unwrap(), y.search(&req).unwrap());
    for (u, v) in ga.iter().zip(&gb) {
        assert_eq!((&u.ids, &u.scores), (&v.ids, &v.scores));
    }
}

#[test]
fn writes_made_during_a_compaction_land_in_the_lists_not_a_long_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_index(dir.path(), &corpus(3, 500, D), 8);
    let opts = Options { backend: "cpu".into(), compact_threshold: Some(0), wal_recover: false, verify: false };
    let mut store = Store::open(&path, opts).unwrap();
    let tail = 16;
    store.set_fresh_tail_limit(tail).unwrap();
    store.set_background_folds(true);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut new = Vec::new();
    for n in [0usize, 1, tail - 1, tail, 5 * tail + 3] {
        let job = store.begin_compaction();
        // Written while the compaction runs: re-applied on top of the compacted artifact.
        for chunk in (0..n).collect::<Vec<_>>().chunks(7) {
            let items: Vec<Item> = chunk.iter().map(|j| random_item(&mut rng, format!("c{n}-{j}"), D)).collect();
            store
                .commit(&[Batch { ops: items.iter().map(item_op).collect() }])
                .unwrap()
                .into_iter()
                .for_each(|r| assert!(r.is_ok(), "{r:?}"));
            new.extend(items);
        }
        let report = store.finish_compaction(job.run().unwrap()).unwrap();
        let snap = store.snapshot();
        let tail_rows = snap.tail.as_ref().map_or(0, |t| t.index().len());
        let lists_rows = snap.fresh.as_ref().map_or(0, |t| t.index().len());
        assert_eq!(tail_rows + lists_rows, n, "n {n}: {report:?}");
        assert!(tail_rows < tail, "n {n}: a full tail is folded at the switch ({tail_rows} rows in the tail)");
        assert_eq!(snap.stats.items, 500 + new.len());
    }
    // Every item written during a compaction is found (its own vector, its id as filter;
    // ip scores do not make an item its own nearest neighbour).
    let snap = store.snapshot();
    for it in &new {
        let f = snap.compile(&format!("id = \"{}\"", it.id)).unwrap();
        let p = SearchParams { k: 3, nprobe: Some(1), k0: None, rerank: RerankMode::None, task_weights: None };
        let got = snap.search(&SearchRequest { queries: &it.vector, filters: &[f], params: p }).unwrap();
        assert_eq!(got[0].ids.iter().map(|s| &**s).collect::<Vec<_>>(), vec![it.id.as_str()]);
    }
}
