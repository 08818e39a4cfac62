//! Fresh items are found by the same probe and kernels as built items, on every backend.
//!
//! A served index takes a stream of new items, replacements, deletes and attribute patches
//! (of main and of fresh rows). The reference is the same live items **built into a fresh
//! artifact with the same centroids** (the real builder, with a `BuildCompute` that hands
//! back the served index's centroids). On each backend (cpu; wgpu on lavapipe; cuda where
//! a device is present):
//!
//! * stages 1-3 bit for bit: the probes of the main index, of the fresh lists and of the
//!   reference are the same lists; the scan candidates of main + fresh lists + the fresh
//!   tail's rows of those lists (ids and score bits, K0 above every candidate) are exactly
//!   the reference's, filtered or not (the tail, scanned whole, holds the newest items);
//! * the served snapshot's answers (`rerank none`) equal the reference executor's on the
//!   CPU: same scores, same ids except among ties at the cut;
//! * every fresh item is found through an exact `id` filter, deleted ones never are.

mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use serve_common::*;
use silica::Filter;
use silica::backend::{Backend, Probes, cpu::Cpu};
use silica::graph::{self, Executor, Hook, Output, RerankMode, SearchParams, SearchRequest};
use silica::model::compute::{BuildCompute, assign_cpu};
use silica::model::kmeans::KMeansParams;
use silica::model::{I8Matrix, Index};
use silica::serve::state::{Options, Store};
use silica::serve::update::{Batch, Op};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const D: usize = 20;
const NLIST: usize = 16;

/// Centroids given, not trained: the reference rebuild uses the served index's.
struct SameCentroids(Vec<f32>);

impl BuildCompute for SameCentroids {
    fn name(&self) -> &'static str {
        "same-centroids"
    }
    fn train(&self, _: &[f32], _: usize, _: &KMeansParams, _: &dyn Fn()) -> silica::Result<Vec<f32>> {
        Ok(self.0.clone())
    }
    fn assign(&self, codes: &[i8], c: &I8Matrix) -> silica::Result<Vec<u32>> {
        Ok(assign_cpu(codes, c))
    }
}

/// Captures stage 1 and stage 3 outputs of the probe path (planner and widening off).
struct Capture {
    probes: Option<Probes>,
    cands: Option<silica::backend::Candidates>,
}

impl<B: Backend> Hook<B> for Capture {
    fn observe(&mut self, b: &B, _: &[usize], out: Output<'_, B>) -> silica::Result<bool> {
        match out {
            Output::Probes(p) => self.probes = Some(b.read_probes(p)?),
            Output::Scan(c) => self.cands = Some(b.read_cands(c)?),
            _ => {}
        }
        Ok(true)
    }
    fn widen(&self) -> bool {
        false
    }
    fn planner(&self) -> bool {
        false
    }
}

type Sets = Vec<BTreeSet<(String, u32)>>;

/// Stages 1-3 of `ix` on backend `b`: probes and per query the (id, score bits) set.
fn stages<B: Backend>(b: B, ix: &Arc<Index>, q: &[f32], filter: &Filter, nprobe: usize, k0: usize) -> (Probes, Sets) {
    let exec = Executor::new(b, ix.clone()).unwrap();
    let batch = exec.prepare(q).unwrap();
    let params = SearchParams { k: 1, nprobe: Some(nprobe), k0: Some(k0), rerank: RerankMode::None, task_weights: None };
    let r = exec.resolve(&params).unwrap();
    let plans: Vec<_> = (0..batch.len).map(|_| &filter.plan).collect();
    let mut cap = Capture { probes: None, cands: None };
    exec.run(&batch, &plans, &r, &mut cap).unwrap();
    let c = cap.cands.unwrap();
    let sets = (0..c.len()).map(|i| c.query(i).map(|(row, s)| (ix.ids.get(row as usize).to_string(), s.to_bits())).collect()).collect();
    (cap.probes.unwrap(), sets)
}

fn filters() -> Vec<String> {
    [
        "",
        r#"color = "red""#,
        r#"tags IN ("t1", "t6")"#,
        r#"NOT grp = "a""#,
        r#"color = "ultraviolet""#,
        r#"id IN ("new-3", "new-77", "item-5", "new-150")"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Run `f` on every backend present: cpu, wgpu (required where `SILICA_REQUIRE_BACKENDS`
/// names it), cuda.
fn for_each_backend(mut f: impl FnMut(&str)) {
    let required = std::env::var("SILICA_REQUIRE_BACKENDS").unwrap_or_default();
    let required = |b: &str| required.split(',').any(|n| n.trim() == b);
    f("cpu");
    #[cfg(feature = "wgpu")]
    match silica::backend::wgpu::Wgpu::new(Default::default()) {
        Ok(_) => f("wgpu"),
        Err(e) => {
            assert!(!required("wgpu"), "wgpu is required but unavailable: {e}");
            eprintln!("skipping wgpu: {e}");
        }
    }
    #[cfg(feature = "cuda")]
    if silica::backend::cuda::available() {
        f("cuda")
    } else {
        assert!(!required("cuda"), "cuda is required but unavailable");
    }
}

fn stages_on(backend: &str, ix: &Arc<Index>, q: &[f32], filter: &Filter, nprobe: usize, k0: usize) -> (Probes, Sets) {
    match backend {
        "cpu" => stages(Cpu, ix, q, filter, nprobe, k0),
        #[cfg(feature = "wgpu")]
        "wgpu" => stages(silica::backend::wgpu::Wgpu::new(Default::default()).unwrap(), ix, q, filter, nprobe, k0),
        #[cfg(feature = "cuda")]
        "cuda" => stages(silica::backend::cuda::Cuda::new().unwrap(), ix, q, filter, nprobe, k0),
        other => panic!("no backend {other}"),
    }
}

fn item_op(it: &Item) -> Op {
    Op::Upsert { item: serde_json::from_value(it.json()).unwrap() }
}

#[test]
fn appended_deleted_and_patched_rows_answer_like_a_rebuild_with_the_same_centroids() {
    for_each_backend(|backend| {
        let dir = tempfile::tempdir().unwrap();
        let items = corpus(31, 1100, D);
        let path = write_index(dir.path(), &items, NLIST);
        let opts = Options { backend: backend.into(), compact_threshold: Some(0), wal_recover: false, verify: false };
        let mut store = Store::open(&path, opts).unwrap();
        // A small tail, so that the stream fills the fresh lists and leaves some in the tail.
        store.set_fresh_tail_limit(120).unwrap();
        let mut model: BTreeMap<String, Item> = items.iter().map(|i| (i.id.clone(), i.clone())).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // Several commit groups: new items, replacements, deletes of main and fresh rows,
        // patches of main and fresh rows (one to a value the dictionary has never seen).
        for round in 0..4 {
            let mut ops = Vec::new();
            for j in 0..(if round == 0 { 1 } else { 70 }) {
                let it = random_item(&mut rng, format!("new-{}", round * 100 + j), D);
                ops.push(item_op(&it));
                model.insert(it.id.clone(), it);
            }
            for j in 0..15 {
                let id = format!("item-{}", (round * 97 + j * 13) % 1100);
                let it = random_item(&mut rng, id.clone(), D);
                ops.push(item_op(&it));
                model.insert(id, it);
            }
            store.commit(&[Batch { ops }]).unwrap().into_iter().for_each(|r| assert!(r.is_ok(), "{r:?}"));
            let mut ops = Vec::new();
            let ids: Vec<String> = model.keys().cloned().collect();
            for j in 0..12 {
                let id = ids[(round * 31 + j * 53) % ids.len()].clone();
                if model.remove(&id).is_some() {
                    ops.push(Op::Delete { id });
                }
            }
            for j in 0..10 {
                let id = ids[(round * 17 + j * 71 + 3) % ids.len()].clone();
                let Some(it) = model.get_mut(&id) else { continue };
                let color = if j == 0 { "ultraviolet" } else { COLORS[rng.random_range(0..COLORS.len())] };
                it.attrs.insert("color".into(), vec![color.into()]);
                ops.push(serde_json::from_value(json!({"op": "patch", "id": id, "attributes": {"color": color}})).unwrap());
            }
            store.commit(&[Batch { ops }]).unwrap().into_iter().for_each(|r| assert!(r.is_ok(), "{r:?}"));
        }
        let snap = store.snapshot();
        let main = snap.index().clone();
        let fresh = snap.fresh.as_ref().expect("fresh lists").index().clone();
        let tail = snap.tail.as_ref().expect("a fresh tail").index().clone();
        assert_eq!(
            (fresh.nlist(), fresh.centroids.as_slice()),
            (main.nlist(), main.centroids.as_slice()),
            "fresh rows sit in the main index's lists"
        );
        assert!(fresh.len() > 150 && !tail.is_empty() && tail.len() <= 120 + 85 && snap.stats.items == model.len(), "{:?}", snap.stats);
        // The tail rows' lists by the build's rule (the tail is one list, scanned whole).
        let tail_list: BTreeMap<String, u32> =
            tail.ids.iter().map(String::from).zip(assign_cpu(&tail.items.codes, &main.centroid_codes)).collect();

        let live: Vec<Item> = model.values().cloned().collect();
        let reference = Arc::new(build_index_on(&live, NLIST, &SameCentroids(main.centroids.clone())));
        assert_eq!(reference.centroid_codes, main.centroid_codes);
        let total = reference.len();
        let ref_exec = graph::open("cpu", reference.clone()).unwrap();
        for (fi, text) in filters().iter().enumerate() {
            let served = snap.compile(text).unwrap();
            let rebuilt = Filter::compile(text, &reference.attrs.schema, &reference.bloom.params).unwrap();
            for nprobe in [1, 3, NLIST] {
                let b = 1 + (fi + nprobe) % 5;
                let q: Vec<f32> = (0..b).flat_map(|_| random_vector(&mut rng, D)).collect();
                let what = format!("{backend}: filter {text:?} nprobe {nprobe}");
                // Stages 1-3: K0 above every candidate, so the sets are whole.
                let (pm, cm) = stages_on(backend, &main, &q, &served, nprobe, total + 5);
                let (pf, cf) = stages_on(backend, &fresh, &q, &served, nprobe, total + 5);
                let (_, ct) = stages_on(backend, &tail, &q, &served, 1, total + 5);
                let (pr, cr) = stages_on(backend, &reference, &q, &rebuilt, nprobe, total + 5);
                assert_eq!(pm, pr, "{what}: main probes");
                assert_eq!(pf, pr, "{what}: fresh probes");
                for (i, want) in cr.iter().enumerate() {
                    let probed = &pr.lists[i * nprobe..(i + 1) * nprobe];
                    let ct: BTreeSet<_> = ct[i].iter().filter(|(id, _)| probed.contains(&tail_list[id])).cloned().collect();
                    assert!(cm[i].is_disjoint(&cf[i]) && cm[i].is_disjoint(&ct) && cf[i].is_disjoint(&ct), "{what}: an id in two segments");
                    let got: BTreeSet<_> = cm[i].iter().chain(&cf[i]).chain(&ct).cloned().collect();
                    assert_eq!(&got, want, "{what}: query {i} candidates");
                }
                // The served pipeline (both segments on this backend) against the rebuild,
                // over every list (widening decisions differ between one index and two
                // segments below that: graph::segments).
                for k in [1, 10, 60].into_iter().filter(|_| nprobe == NLIST) {
                    let p = SearchParams { k, nprobe: Some(nprobe), k0: None, rerank: RerankMode::None, task_weights: None };
                    let fs_served = vec![served.clone(); b];
                    let fs_rebuilt = vec![rebuilt.clone(); b];
                    let got = snap.search(&SearchRequest { queries: &q, filters: &fs_served, params: p.clone() }).unwrap();
                    let want = ref_exec.search(&SearchRequest { queries: &q, filters: &fs_rebuilt, params: p }).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(g.scores, w.scores, "{what} k {k}: scores\n got {:?}\nwant {:?}", g.ids, w.ids);
                        let cut = w.scores.last().copied().unwrap_or(f32::NEG_INFINITY);
                        let above = |r: &silica::SearchResponse| {
                            r.ids.iter().zip(&r.scores).filter(|(_, s)| **s > cut).map(|(i, _)| i.to_string()).collect::<BTreeSet<_>>()
                        };
                        assert_eq!(above(g), above(w), "{what} k {k}: ids");
                    }
                }
            }
        }
        // Every live fresh item by an exact id filter (any nprobe); deleted ones never.
        for id in ["new-0", "new-105", "new-233", "new-369"] {
            let f = snap.compile(&format!("id = \"{id}\"")).unwrap();
            let q = random_vector(&mut rng, D);
            let got = snap
                .search(&SearchRequest { queries: &q, filters: &[f], params: SearchParams { k: 5, nprobe: Some(1), ..Default::default() } })
                .unwrap();
            let want: Vec<&str> = if model.contains_key(id) { vec![id] } else { vec![] };
            assert_eq!(got[0].ids.iter().map(|s| &**s).collect::<Vec<_>>(), want, "{backend}: {id}");
        }
        // The old snapshot keeps answering as it did while updates (deletes of what it
        // finds, new items, a fold of the tail into the fresh lists) publish new ones.
        let q: Vec<f32> = (0..6).flat_map(|_| random_vector(&mut rng, D)).collect();
        let p = SearchParams { k: 10, nprobe: Some(3), k0: None, rerank: RerankMode::None, task_weights: None };
        let ask = |s: &silica::serve::state::Snapshot| s.search(&SearchRequest { queries: &q, filters: &[], params: p.clone() }).unwrap();
        let before = ask(&snap);
        let best: BTreeSet<String> = before.iter().flat_map(|r| r.ids.first()).map(|id| id.to_string()).collect();
        let mut ops: Vec<Op> = best.into_iter().map(|id| Op::Delete { id }).collect();
        ops.extend((0..130).map(|j| item_op(&random_item(&mut rng, format!("later-{j}"), D))));
        store.commit(&[Batch { ops }]).unwrap().into_iter().for_each(|r| assert!(r.is_ok(), "{r:?}"));
        let now = store.snapshot();
        assert!(
            now.version > snap.version && !Arc::ptr_eq(now.fresh.as_ref().unwrap(), snap.fresh.as_ref().unwrap()),
            "{backend}: a new snapshot with new fresh lists"
        );
        let after_old = ask(&snap);
        for (a, b) in before.iter().zip(&after_old) {
            assert_eq!(
                (&a.ids, a.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>()),
                (&b.ids, b.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>()),
                "{backend}: the old snapshot answers as before"
            );
        }
        for (a, b) in before.iter().zip(ask(&now)) {
            assert!(a.ids.first() != b.ids.first(), "{backend}: the new snapshot no longer has the deleted best item");
        }
    });
}
