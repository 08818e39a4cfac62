//! The golden-output suite ([`silica_conformance`], crates/conformance) instantiated for every
//! backend of this build: one `conformance_suite!` line each, plus the properties only one
//! backend has (wgpu chunking, sharding, device lists).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::backend::{Backend, Probes, cpu::Cpu};
use silica::filter::Plan;
use silica::graph::{Executor, RerankMode, Search, SearchParams, SearchRequest};
use silica_conformance::*;

conformance_suite!(cpu, Cpu, || Some(Cpu));

// The new-backend template (crates/template): one line, as for any backend.
conformance_suite!(template, silica_template::Template, || Some(silica_template::Template::new().expect("template")));

#[cfg(feature = "wgpu")]
mod wgpu_ctor {
    use silica::backend::wgpu::{Wgpu, WgpuOptions};
    pub fn open(opts: WgpuOptions) -> Option<Wgpu> {
        match Wgpu::new(opts) {
            Ok(b) => {
                eprintln!("wgpu adapter: {} (dot4I8Packed: {})", b.adapter(), b.packed_dot());
                Some(b)
            }
            Err(e) => {
                eprintln!("no wgpu adapter: {e}");
                None
            }
        }
    }
}

#[cfg(feature = "wgpu")]
conformance_suite!(wgpu, silica::backend::wgpu::Wgpu, || wgpu_ctor::open(silica::backend::wgpu::WgpuOptions {
    poison: true,
    ..Default::default()
}));

#[cfg(feature = "wgpu")]
conformance_suite!(wgpu_chunked, silica::backend::wgpu::Wgpu, || wgpu_ctor::open(silica::backend::wgpu::WgpuOptions {
    poison: true,
    portable_dot: true,
    chunk_rows: Some(128),
    group_queries: Some(3),
    ..Default::default()
}));

#[cfg(feature = "cuda")]
conformance_suite!(cuda, silica::backend::cuda::Cuda, || {
    if !silica::backend::cuda::available() {
        eprintln!("no CUDA device");
        return None;
    }
    Some(silica::backend::cuda::Cuda::new().expect("CUDA device present but the backend failed to start"))
});

/// wgpu-only properties: chunking really splits the index, the device timer works, and
/// inputs the kernels cannot take are typed errors.
#[cfg(feature = "wgpu")]
mod wgpu_specific {
    use super::*;
    use silica::backend::wgpu::{Wgpu, WgpuOptions};

    fn open(opts: WgpuOptions) -> Option<Wgpu> {
        let b = wgpu_ctor::open(opts);
        if b.is_none() {
            let required = std::env::var("SILICA_REQUIRE_BACKENDS").unwrap_or_default();
            assert!(!required.split(',').any(|n| n.trim() == "wgpu"), "wgpu is required but unavailable");
        }
        b
    }

    #[test]
    fn chunking_splits_and_stays_exact() {
        let Some(be) = open(WgpuOptions { chunk_rows: Some(100), poison: true, ..Default::default() }) else { return };
        let fx = fixture(21, &Spec { n: 1000, d: 24, l: 9, b: 4, tombstones: true });
        let res = be.upload(&fx.index).expect("upload");
        assert_eq!(Wgpu::chunks(&res), 16, "1000 rows in chunks of 64 (100 rounded down to a multiple of 64)");
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let q = random_queries(&mut rng, &fx.index, 4);
        let filters = random_filters(&mut rng, &fx.index, 4);
        let plans = plans_of(&filters);
        let probes = be.probe(&res, &q, 9).expect("probe");
        let mask = be.filter(&res, &plans, &probes).expect("filter");
        let got = be.read_cands(&be.scan(&res, &q, &probes, &mask, &plans, 300).expect("scan")).expect("read");
        let lists = be.read_probes(&probes).expect("read").lists;
        assert_cands_exact("16 chunks", &got, &ref_scan(&fx.index, &q, &lists, 9, &plans, 300));
    }

    #[test]
    fn timed_reports_device_time() {
        let Some(be) = open(WgpuOptions::default()) else { return };
        let fx = fixture(22, &Spec { n: 3000, d: 64, l: 16, b: 8, tombstones: false });
        let res = be.upload(&fx.index).expect("upload");
        let q = random_queries(&mut ChaCha8Rng::seed_from_u64(1), &fx.index, 8);
        let (p, t) = be.timed(|| be.probe(&res, &q, 4)).expect("timed probe");
        be.read_probes(&p).expect("read");
        match t {
            Some(s) => assert!(s > 0.0 && s < 10.0, "device time {s} s"),
            None => eprintln!("adapter without timestamp queries: host clock"),
        }
        // Nested calls give the inner one no time of its own.
        let (inner, _) = be.timed(|| be.timed(|| be.probe(&res, &q, 4))).expect("nested");
        assert!(inner.1.is_none());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let Some(be) = open(WgpuOptions::default()) else { return };
        let wide = fixture(23, &Spec { n: 10, d: 2052, l: 2, b: 1, tombstones: false });
        let e = be.upload(&wide.index).err().expect("D > 2048 must be refused");
        assert!(e.to_string().contains("dimension"), "{e}");

        let fx = fixture(24, &Spec { n: 200, d: 16, l: 4, b: 3, tombstones: false });
        let res = be.upload(&fx.index).expect("upload");
        let q = random_queries(&mut ChaCha8Rng::seed_from_u64(2), &fx.index, 3);
        let probes = be.probe(&res, &q, 2).expect("probe");
        let all = Plan::all();
        let e = be.filter(&res, &[&all, &all], &probes).err().expect("2 plans for 3 queries");
        assert!(e.to_string().contains("filters"), "{e}");
        let mask = be.filter(&res, &[&all, &all, &all], &probes).expect("filter");
        let q2 = random_queries(&mut ChaCha8Rng::seed_from_u64(3), &fx.index, 2);
        assert!(be.scan(&res, &q2, &probes, &mask, &[&all, &all], 5).is_err(), "a batch that is not the probes' batch");
        let bad = Probes { nprobe: 2, lists: vec![0, 0, 1, 2, 3, 1] };
        let e = be.upload_probes(&res, &bad).err().expect("a list twice in one query");
        assert!(e.to_string().contains("probes"), "{e}");
    }
}

// ---------------------------------------------------------------- sharded backends

// G backends standing in for G devices (`--devices cpu,cpu,cpu`): the whole suite holds
// bit for bit, since the lists, the integer math and the merge order are those of one device.
conformance_suite!(sharded_cpu2, silica::backend::shard::Sharded<Cpu>, || Some(
    silica::backend::shard::Sharded::new(vec![Cpu; 2]).expect("two shards")
));
conformance_suite!(sharded_cpu3, silica::backend::shard::Sharded<Cpu>, || Some(
    silica::backend::shard::Sharded::new(vec![Cpu; 3]).expect("three shards")
));

// Two shards on one adapter / GPU (`--devices wgpu,wgpu`, `cuda:0,cuda:0`): the sharded
// path on a real device, candidates uploaded to each shard for rerank.
#[cfg(feature = "wgpu")]
conformance_suite!(sharded_wgpu2, silica::backend::shard::Sharded<silica::backend::wgpu::Wgpu>, || {
    let b = wgpu_ctor::open(silica::backend::wgpu::WgpuOptions { poison: true, ..Default::default() })?;
    Some(silica::backend::shard::Sharded::new(vec![b.clone(), b]).expect("two shards"))
});

#[cfg(feature = "cuda")]
conformance_suite!(sharded_cuda2, silica::backend::shard::Sharded<silica::backend::cuda::Cuda>, || {
    if !silica::backend::cuda::available() {
        eprintln!("no CUDA device");
        return None;
    }
    let b = silica::backend::cuda::Cuda::new().expect("CUDA device present but the backend failed to start");
    let lane = b.lane().expect("a second lane");
    Some(silica::backend::shard::Sharded::new(vec![b, lane]).expect("two shards"))
});

// Every GPU of the host as one shard each (`--devices cuda:0,...,cuda:G-1`; a multi-GPU
// machine only: skipped with fewer than two GPUs).
#[cfg(feature = "cuda")]
conformance_suite!(sharded_cuda_gpus, silica::backend::shard::Sharded<silica::backend::cuda::Cuda>, || {
    let n = silica::backend::cuda::devices().len();
    if n < 2 {
        eprintln!("{n} CUDA device(s): the all-GPU sharded suite needs two or more");
        return None;
    }
    let all = (0..n).map(|i| silica::backend::cuda::Cuda::with_ordinal(i).expect("GPU listed but the backend failed to start")).collect();
    Some(silica::backend::shard::Sharded::new(all).expect("shards"))
});

/// Layout edges the suite's fixtures reach only by chance: more shards than non-empty
/// lists (shards holding 0 rows), shards whose index starts with dead padding rows, k above
/// the candidates; answers equal to one CPU bit for bit, refine included (same code per row).
mod sharded_specific {
    use super::*;
    use silica::backend::shard::{Sharded, layout::ALIGN};

    fn check(seed: u64, spec: &Spec, g: usize) -> silica::backend::shard::layout::Layout {
        let fx = fixture(seed, spec);
        let ix = fx.index.clone();
        let be = Sharded::new(vec![Cpu; g]).unwrap();
        let layout = Sharded::layout(&be.upload(&ix).unwrap()).clone();
        let ours = Executor::new(be, ix.clone()).unwrap();
        let cpu = Executor::new(Cpu, ix.clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let b = spec.b;
        let queries: Vec<f32> = (0..b * spec.d).map(|_| rng.random_range(-1f32..1.0)).collect();
        let filters = random_filters(&mut rng, &ix, b);
        for rerank in [RerankMode::None, RerankMode::Refine] {
            for (k, nprobe) in [(1, Some(1)), (7, None), (ix.len() + 5, Some(spec.l)), (40, Some((spec.l / 2).max(1)))] {
                for f in [&filters[..], &[]] {
                    let req =
                        SearchRequest { queries: &queries, filters: f, params: SearchParams { k, nprobe, rerank, ..Default::default() } };
                    assert_eq!(
                        ours.search(&req).unwrap(),
                        cpu.search(&req).unwrap(),
                        "seed {seed}, {g} shards, k {k}, nprobe {nprobe:?}, {rerank:?}, {} filters",
                        f.len()
                    );
                }
            }
        }
        layout
    }

    #[test]
    fn more_shards_than_lists_and_empty_shards() {
        // Three lists of 0, 1 and 298 rows: shards beyond the second hold no rows.
        for g in [2, 3, 5] {
            let layout = check(31, &Spec { n: 299, d: 16, l: 3, b: 9, tombstones: true }, g);
            assert_eq!(layout.spans.len(), g);
            assert!(g < 3 || layout.spans.iter().any(|s| s.rows.is_empty()), "{g} shards over 2 non-empty lists: {layout:?}");
        }
        // No rows at all.
        check(32, &Spec { n: 1, d: 8, l: 4, b: 3, tombstones: false }, 4);
    }

    #[test]
    fn shards_with_padding_rows_stay_exact() {
        let spec = Spec { n: 3 * ALIGN + 77, d: 24, l: 21, b: 12, tombstones: true };
        for g in [2, 3, 4] {
            let layout = check(33, &spec, g);
            assert!(layout.spans.iter().any(|s| s.base < s.rows.start), "some shard starts inside an ALIGN block: {layout:?}");
        }
    }

    #[test]
    fn device_lists_are_checked_with_typed_errors() {
        let ix = fixture(34, &Spec { n: 50, d: 8, l: 2, b: 1, tombstones: false }).index;
        let err = |spec: &str| silica::graph::open(spec, ix.clone()).err().unwrap_or_else(|| panic!("{spec} opened"));
        for (spec, says) in [("cpu,cuda:0", "mixes cpu and cuda"), ("cpu,,cpu", "empty device"), ("gpu:0,gpu:1", "unknown device")] {
            let e = err(spec);
            assert!(matches!(&e, silica::Error::Param { name, .. } if name == "devices") && e.to_string().contains(says), "{spec}: {e}");
        }
        let e = err("cpu,cpu|cpu");
        assert!(matches!(&e, silica::Error::Param { name, .. } if name == "replicas"), "{e}");
        // A GPU that is not there is named (no driver here: unavailable; on a GPU box: no such GPU).
        for spec in ["cuda:97", "cuda:0,cuda:97"] {
            let e = err(spec);
            assert!(matches!(&e, silica::Error::Backend { .. }) && e.to_string().contains("cuda"), "{spec}: {e}");
        }
        #[cfg(feature = "wgpu")]
        {
            let e = err("wgpu:97");
            assert!(matches!(&e, silica::Error::Backend { backend, .. } if backend == "wgpu:97"), "{e}");
        }
        // One name is today's executor; a list is sharded; replicas report counters.
        assert_eq!(silica::graph::open("cpu", ix.clone()).unwrap().backend_name(), "cpu");
        // The template backend is opened through the same registry entry as any other.
        assert_eq!(silica::graph::open("template", ix.clone()).unwrap().backend_name(), "template");
        assert_eq!(silica::graph::open("template,template", ix.clone()).unwrap().backend_name(), "templatex2");
        assert_eq!(silica::graph::open("cpu,cpu,cpu", ix.clone()).unwrap().backend_name(), "cpux3");
        let rep = silica::graph::open("cpu,cpu|cpu,cpu", ix.clone()).unwrap();
        let q = vec![0.5f32; 8];
        for _ in 0..4 {
            rep.search(&SearchRequest { queries: &q, filters: &[], params: SearchParams { k: 3, ..Default::default() } }).unwrap();
        }
        let st = rep.replicas();
        assert_eq!(st.iter().map(|r| r.devices.as_str()).collect::<Vec<_>>(), vec!["cpu,cpu", "cpu,cpu"]);
        assert_eq!(st.iter().map(|r| r.batches).sum::<u64>(), 4);
        assert!(st.iter().all(|r| r.batches == 2 && r.queries == 2 && r.in_flight == 0), "serial searches alternate: {st:?}");
    }
}
