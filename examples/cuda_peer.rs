//! Peer benchmark of the CUDA backend against the SilverTorch rows of DESIGN.md, on the
//! same synthetic workload, generated in memory: N = 20M items, D = 128, uniform random
//! int8 codes, 4096 equal inverted lists, probes drawn uniformly without replacement,
//! k0 = 2048; B = 16/256 x nprobe = 32/64. Bloom: 1024 random bit-planes, 16 queries,
//! each `(a OR b OR c) AND (d OR e OR f) AND (g OR h OR i)` with 5 hashes per value.
//! Times are CUDA-event medians (after warm-up) of the stage calls as the executor makes
//! them. Checks the scan against the CPU backend bit for bit at full size first.
//!
//! ```text
//! cargo run --release --example cuda_peer [-- --quick] [--json out.json]
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use silica::backend::cpu::Cpu;
use silica::backend::cuda::{self, Cuda};
use silica::backend::{Backend, Probes, Rerank};
use silica::filter::{Op, Plan, Term};
use silica::graph::prepare_queries;
use silica::model::{Attributes, BloomParams, BloomPlanes, I8Matrix, Index, Metric};
use std::sync::Arc;

const D: usize = 128;
const L: usize = 4096;
/// Device-to-device copy on the H200 (DESIGN.md): the bandwidth ceiling.
const BW: f64 = 4.2e12;
/// dp4a peak assumed for the floor: 64 IDP4A / clk / SM x 132 SMs x 1.98 GHz.
const DP4A: f64 = 64.0 * 132.0 * 1.98e9;

fn fill_random(out: &mut [u8], seed: u64) {
    out.par_chunks_mut(1 << 20).enumerate().for_each(|(i, c)| {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.fill(c);
    });
}

fn synthetic(n: usize, embeddings: bool) -> Index {
    let mut codes = vec![0u8; n * D];
    fill_random(&mut codes, 1);
    let codes: Vec<i8> = codes.into_par_iter().map(|b| (b as i8).max(-127)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let scale: Vec<f32> = (0..n).map(|_| rng.random_range(0.004f32..0.008)).collect();
    let ccodes: Vec<i8> = (0..L * D).map(|_| rng.random_range(-127..=127)).collect();
    let cscale: Vec<f32> = (0..L).map(|_| rng.random_range(0.004f32..0.008)).collect();
    let list_offsets: Vec<u64> = (0..=L).map(|l| (l * n / L) as u64).collect();
    let words = n.div_ceil(64);
    let mut planes = vec![0u8; 1024 * words * 8];
    fill_random(&mut planes, 3);
    let planes: Vec<u64> = bytemuck::cast_slice::<u8, u64>(&planes).to_vec();
    let emb = embeddings.then(|| {
        let mut e = vec![0u8; n * D * 2];
        fill_random(&mut e, 4);
        // Random f16 in [-1, 1): sign + exponent below 15 keeps values finite and small.
        e.par_chunks_mut(2).map(|h| half::f16::from_bits(u16::from_le_bytes([h[0], h[1]]) & 0xbbff)).collect::<Vec<_>>()
    });
    Index {
        dim: D,
        metric: Metric::Ip,
        centroids: Vec::new(),
        centroid_codes: I8Matrix { rows: L, dim: D, codes: ccodes.into(), scale: cscale.into() },
        list_offsets,
        items: I8Matrix { rows: n, dim: D, codes: codes.into(), scale: scale.into() },
        embeddings: emb.map(Into::into),
        features: None,
        feature_names: Vec::new(),
        ids: Default::default(),
        source_rows: Default::default(),
        bloom: BloomPlanes { params: BloomParams { bits: 1024, hashes: 5, seed: 0 }, words, planes: planes.into() },
        attrs: Attributes { schema: Default::default(), offsets: vec![0; n + 1].into(), values: Default::default() },
        rerank: None,
        live: None,
        calibration: None,
        sqnorms: Default::default(),
        columns: Default::default(),
    }
}

/// nprobe distinct lists per query, uniform.
fn random_probes(b: usize, np: usize, seed: u64) -> Probes {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lists = Vec::with_capacity(b * np);
    let mut perm: Vec<u32> = (0..L as u32).collect();
    for _ in 0..b {
        for i in 0..np {
            let j = rng.random_range(i..L);
            perm.swap(i, j);
        }
        lists.extend_from_slice(&perm[..np]);
    }
    Probes { nprobe: np, lists }
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bloom_plan(rng: &mut ChaCha8Rng) -> Plan {
    let terms = (0..3)
        .map(|_| Term {
            value_ids: Vec::new(),
            bloom_rows: (0..3).map(|_| (0..5).map(|_| rng.random_range(0..1024)).collect()).collect(),
            ..Default::default()
        })
        .collect();
    Plan { ops: vec![Op::Term(0), Op::Term(1), Op::And, Op::Term(2), Op::And], terms }
}

struct Row {
    name: String,
    ms: f32,
    min_ms: f32,
    bytes: f64,
    ops: f64,
    peer_ms: Option<f64>,
    note: String,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let variants = args.iter().any(|a| a == "--variants");
    let json = args.iter().position(|a| a == "--json").map(|i| args[i + 1].clone());
    let n: usize = if quick { 2_000_000 } else { 20_000_000 };
    let reps = if quick { 5 } else { 30 };
    if !cuda::available() {
        anyhow::bail!("no CUDA device");
    }
    let cuda = Cuda::new()?;
    // `--profile-scan B:NP:TW,...`: only run those scans (once each), for ncu.
    if let Some(i) = args.iter().position(|a| a == "--profile-scan") {
        let index = Arc::new(synthetic(n, false));
        let ix = cuda.upload(&index)?;
        let all = Plan::all();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for spec in args[i + 1].split(',') {
            let v: Vec<usize> = spec.split(':').map(|x| x.parse().unwrap()).collect();
            let (b, np, tw) = (v[0], v[1], v[2] as u32);
            cuda.set_tuning(silica::backend::cuda::Tuning { tile_words: tw, ..Default::default() });
            let qf: Vec<f32> = (0..b * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let q = prepare_queries(&index, &qf)?;
            let probes = cuda.probes_from_host(&random_probes(b, np, (b * 1000 + np) as u64), b)?;
            let plans: Vec<&Plan> = vec![&all; b];
            let mask = cuda.filter(&ix, &plans, &probes)?;
            let ms = cuda.time(|| cuda.scan(&ix, &q, &probes, &mask, &plans, 2048))?.1;
            eprintln!("profile scan B={b} nprobe={np} tw={tw}: {ms:.3} ms");
        }
        return Ok(());
    }
    eprintln!("device: {} ({} SMs, {})", cuda.dev().name(), cuda.dev().sms(), cuda.dev().arch());
    for (name, regs, local, smem) in cuda.dev().kernel_info() {
        eprintln!("  kernel {name:16} {regs:3} regs, {local} B local, {smem} B static smem");
    }
    let t = std::time::Instant::now();
    let index = Arc::new(synthetic(n, true));
    eprintln!("synthetic index N={n}: {:.1}s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let ix = cuda.upload(&index)?;
    eprintln!("upload: {:.1}s", t.elapsed().as_secs_f64());
    let rows_per_list = n as f64 / L as f64;
    let (rb, rms) = cuda.read_ceiling(&ix)?;
    eprintln!(
        "streaming read of {:.2} GB: {rms:.3} ms = {:.2} TB/s (read ceiling)",
        rb as f64 / 1e9,
        rb as f64 / (rms as f64 * 1e-3) / 1e12
    );
    let mut out: Vec<Row> = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let all = Plan::all();

    // --- scan + top-2048 (probe given), the SilverTorch rows -------------------------
    let peers = [(16usize, 32usize, 0.554f64), (16, 64, 0.725), (256, 32, 3.119), (256, 64, 5.679)];
    for &(b, np, peer) in &peers {
        let qf: Vec<f32> = (0..b * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let q = prepare_queries(&index, &qf)?;
        let hp = random_probes(b, np, (b * 1000 + np) as u64);
        let probes = cuda.probes_from_host(&hp, b)?;
        let plans: Vec<&Plan> = vec![&all; b];
        let mask = cuda.filter(&ix, &plans, &probes)?;
        let k0 = 2048;
        // Exact at full size: GPU scan == CPU scan, bit for bit.
        if np == 64 && (b == 16 || !quick) {
            let cpu = Cpu;
            let rc = cpu.upload(&index)?;
            let mc = cpu.filter(&rc, &plans, &hp)?;
            let want = cpu.scan(&rc, &q, &hp, &mc, &plans, k0)?;
            let got = cuda.read_cands(&cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?)?;
            anyhow::ensure!(got == want, "B={b} nprobe={np}: CUDA scan differs from the CPU scan");
            eprintln!("B={b} nprobe={np}: CUDA scan == CPU scan (bit-identical, {} candidates/query)", want.counts[0]);
        }
        for _ in 0..3 {
            cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?;
        }
        let mut times = Vec::new();
        for _ in 0..reps {
            times.push(cuda.time(|| cuda.scan(&ix, &q, &probes, &mask, &plans, k0))?.1);
        }
        cuda.profile_start();
        cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?;
        cuda.synchronize()?;
        let phases = cuda.profile_take()?;
        let uniq: std::collections::BTreeSet<u32> = hp.lists.iter().copied().collect();
        let bytes = uniq.len() as f64 * rows_per_list * D as f64;
        let ops = (b * np) as f64 * rows_per_list * (D / 4) as f64;
        out.push(Row {
            name: format!("scan+top2048 B={b} nprobe={np}"),
            ms: median(times.clone()),
            min_ms: times.iter().copied().fold(f32::MAX, f32::min),
            bytes,
            ops,
            peer_ms: Some(peer),
            note: phases.iter().map(|(p, ms)| format!("{p} {ms:.3}")).collect::<Vec<_>>().join(", "),
        });
        // Tuning variants (same inputs), to see what each part of the design buys.
        if variants {
            let d = silica::backend::cuda::Tuning::default();
            for (vname, t) in [
                ("generic kernel (no cp.async pipeline)", silica::backend::cuda::Tuning { fast: false, tile_words: 1, ..d }),
                ("no programmatic dependent launch", silica::backend::cuda::Tuning { pdl: false, ..d }),
                ("separate group and grouped sample", silica::backend::cuda::Tuning { fuse_prepare: false, ..d }),
                ("per-tile pipeline (not streamed)", silica::backend::cuda::Tuning { stream: false, ..d }),
                ("per-tile pipeline, tile 1 word", silica::backend::cuda::Tuning { stream: false, tile_words: 1, ..d }),
                ("tile 4 words", silica::backend::cuda::Tuning { tile_words: 4, ..d }),
                ("tile 2 words", silica::backend::cuda::Tuning { tile_words: 2, ..d }),
                ("tile 1 word", silica::backend::cuda::Tuning { tile_words: 1, ..d }),
                ("sample every 32", silica::backend::cuda::Tuning { sample_every: 32, ..d }),
                ("sample every 128", silica::backend::cuda::Tuning { sample_every: 128, ..d }),
                ("candidates from global", silica::backend::cuda::Tuning { smem_keys: 0, ..d }),
            ] {
                cuda.set_tuning(t);
                cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?;
                let mut vt = Vec::new();
                for _ in 0..reps.min(15) {
                    vt.push(cuda.time(|| cuda.scan(&ix, &q, &probes, &mask, &plans, k0))?.1);
                }
                cuda.profile_start();
                cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?;
                cuda.synchronize()?;
                let ph = cuda.profile_take()?;
                cuda.set_tuning(d);
                out.push(Row {
                    name: format!("  variant B={b} nprobe={np}: {vname}"),
                    ms: median(vt.clone()),
                    min_ms: vt.iter().copied().fold(f32::MAX, f32::min),
                    bytes,
                    ops,
                    peer_ms: Some(peer),
                    note: ph.iter().map(|(p, ms)| format!("{p} {ms:.3}")).collect::<Vec<_>>().join(", "),
                });
            }
        }
        // Filter stage (trivial plan) for the same probes, for reference.
        let mut ft = Vec::new();
        for _ in 0..reps {
            ft.push(cuda.time(|| cuda.filter(&ix, &plans, &probes))?.1);
        }
        out.push(Row {
            name: format!("filter (no predicate) B={b} nprobe={np}"),
            ms: median(ft.clone()),
            min_ms: ft.iter().copied().fold(f32::MAX, f32::min),
            bytes: 0.0,
            ops: 0.0,
            peer_ms: None,
            note: String::new(),
        });
    }

    // --- Bloom search: 16 queries, 3 AND of 3-way OR, 5 hashes -----------------------
    {
        let bplans: Vec<Plan> = (0..16).map(|_| bloom_plan(&mut rng)).collect();
        let refs: Vec<&Plan> = bplans.iter().collect();
        let cpu_counts = Cpu.count(&Cpu.upload(&index)?, &refs[..2])?;
        let gpu_counts = cuda.count(&ix, &refs[..2])?;
        anyhow::ensure!(cpu_counts == gpu_counts, "Bloom counts differ: {cpu_counts:?} vs {gpu_counts:?}");
        for _ in 0..3 {
            cuda.bloom_masks(&ix, &refs, true)?;
        }
        let mut times = Vec::new();
        for _ in 0..reps {
            times.push(cuda.time(|| cuda.bloom_masks(&ix, &refs, true))?.1);
        }
        let mut planes: std::collections::BTreeSet<u32> = Default::default();
        for p in &bplans {
            for t in &p.terms {
                for r in &t.bloom_rows {
                    planes.extend(r.iter().copied());
                }
            }
        }
        let words = n.div_ceil(64) as f64;
        let bytes = planes.len() as f64 * words * 8.0 + 16.0 * words * 8.0;
        out.push(Row {
            name: "Bloom masks, 16 queries x 20M items (whole index)".into(),
            ms: median(times.clone()),
            min_ms: times.iter().copied().fold(f32::MAX, f32::min),
            bytes,
            ops: 0.0,
            peer_ms: Some(1.889),
            note: format!("{} distinct planes read, random 50% bit density", planes.len()),
        });
        // Probe-then-filter with the same plans (B=16, nprobe=64).
        let hp = random_probes(16, 64, 99);
        let probes = cuda.probes_from_host(&hp, 16)?;
        let mut ft = Vec::new();
        for _ in 0..reps {
            ft.push(cuda.time(|| cuda.filter(&ix, &refs, &probes))?.1);
        }
        out.push(Row {
            name: "probe-then-filter, same 16 Bloom plans, nprobe=64".into(),
            ms: median(ft.clone()),
            min_ms: ft.iter().copied().fold(f32::MAX, f32::min),
            bytes: 0.0,
            ops: 0.0,
            peer_ms: None,
            note: String::new(),
        });
        // Stage 2 over all 4096 lists (what `silica bench --suite peer` times for this row).
        let all_lists = Probes { nprobe: L, lists: (0..16).flat_map(|_| 0..L as u32).collect() };
        let probes = cuda.probes_from_host(&all_lists, 16)?;
        let mut ft = Vec::new();
        for _ in 0..reps {
            ft.push(cuda.time(|| cuda.filter(&ix, &refs, &probes))?.1);
        }
        out.push(Row {
            name: "stage 2 over all 4096 lists, same 16 Bloom plans".into(),
            ms: median(ft.clone()),
            min_ms: ft.iter().copied().fold(f32::MAX, f32::min),
            bytes,
            ops: 0.0,
            peer_ms: Some(1.889),
            note: "bloom_full + mask_gather".into(),
        });
    }

    // --- probe -------------------------------------------------------------------------
    for b in [16usize, 256] {
        let qf: Vec<f32> = (0..b * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let q = prepare_queries(&index, &qf)?;
        let want = Cpu.probe(&Cpu.upload(&index)?, &q, 64)?;
        anyhow::ensure!(cuda.read_probes(&cuda.probe(&ix, &q, 64)?)? == want, "probe differs from CPU");
        let mut times = Vec::new();
        for _ in 0..reps {
            times.push(cuda.time(|| cuda.probe(&ix, &q, 64))?.1);
        }
        out.push(Row {
            name: format!("probe B={b} nprobe=64 (L=4096)"),
            ms: median(times.clone()),
            min_ms: times.iter().copied().fold(f32::MAX, f32::min),
            bytes: (L * D) as f64,
            ops: (b * L * D / 4) as f64,
            peer_ms: None,
            note: String::new(),
        });
    }

    // --- large K0 (Faiss-GPU stops at 2048) -------------------------------------------
    for &(b, k0) in &[(16usize, 100_000usize), (16, 262_144), (256, 100_000), (256, 262_144)] {
        let qf: Vec<f32> = (0..b * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let q = prepare_queries(&index, &qf)?;
        let hp = random_probes(b, 64, 5 + b as u64);
        let probes = cuda.probes_from_host(&hp, b)?;
        let plans: Vec<&Plan> = vec![&all; b];
        let mask = cuda.filter(&ix, &plans, &probes)?;
        if b == 16 && k0 == 262_144 {
            let cpu = Cpu;
            let rc = cpu.upload(&index)?;
            let want = cpu.scan(&rc, &q, &hp, &cpu.filter(&rc, &plans, &hp)?, &plans, k0)?;
            anyhow::ensure!(
                cuda.read_cands(&cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?)? == want,
                "k0={k0}: CUDA scan differs from CPU"
            );
            eprintln!("k0={k0} B={b}: CUDA scan == CPU scan");
        }
        cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?;
        let mut times = Vec::new();
        for _ in 0..reps.min(7) {
            times.push(cuda.time(|| cuda.scan(&ix, &q, &probes, &mask, &plans, k0))?.1);
        }
        cuda.profile_start();
        cuda.scan(&ix, &q, &probes, &mask, &plans, k0)?;
        cuda.synchronize()?;
        let phases = cuda.profile_take()?;
        let uniq: std::collections::BTreeSet<u32> = hp.lists.iter().copied().collect();
        out.push(Row {
            name: format!("scan+top{k0} B={b} nprobe=64"),
            ms: median(times.clone()),
            min_ms: times.iter().copied().fold(f32::MAX, f32::min),
            bytes: uniq.len() as f64 * rows_per_list * D as f64,
            ops: (b * 64) as f64 * rows_per_list * 32.0,
            peer_ms: None,
            note: phases.iter().map(|(p, ms)| format!("{p} {ms:.3}")).collect::<Vec<_>>().join(", "),
        });
    }

    // --- end to end: probe + filter + scan (k0 10000) + refine rerank + select 1000 ----
    {
        let b = 256;
        let qf: Vec<f32> = (0..b * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let q = prepare_queries(&index, &qf)?;
        let plans: Vec<&Plan> = vec![&all; b];
        let run = || -> silica::Result<_> {
            let p = cuda.probe(&ix, &q, 64)?;
            let m = cuda.filter(&ix, &plans, &p)?;
            let c = cuda.scan(&ix, &q, &p, &m, &plans, 10_000)?;
            let c = cuda.rerank(&ix, &q, c, &Rerank::Refine)?;
            cuda.select(c, 1000)
        };
        for _ in 0..3 {
            run()?;
        }
        let mut times = Vec::new();
        for _ in 0..reps.min(15) {
            times.push(cuda.time(run)?.1);
        }
        // Per stage.
        let p = cuda.probe(&ix, &q, 64)?;
        let m = cuda.filter(&ix, &plans, &p)?;
        let tp = cuda.time(|| cuda.probe(&ix, &q, 64))?.1;
        let tf = cuda.time(|| cuda.filter(&ix, &plans, &p))?.1;
        let (c, ts) = cuda.time(|| cuda.scan(&ix, &q, &p, &m, &plans, 10_000))?;
        let (c, tr) = cuda.time(|| cuda.rerank(&ix, &q, c, &Rerank::Refine))?;
        let (c, tsel) = cuda.time(|| cuda.select(c, 1000))?;
        let counts = cuda.read_counts(&c)?;
        anyhow::ensure!(counts.iter().all(|&c| c == 1000), "e2e: short results");
        out.push(Row {
            name: "end to end B=256 N=20M: probe64 + filter + scan k0=10000 + refine + select 1000".into(),
            ms: median(times.clone()),
            min_ms: times.iter().copied().fold(f32::MAX, f32::min),
            bytes: 0.0,
            ops: 0.0,
            peer_ms: None,
            note: format!("probe {tp:.3}, filter {tf:.3}, scan {ts:.3}, refine {tr:.3}, select {tsel:.3} ms"),
        });
    }

    println!(
        "\n| workload | median ms | min ms | bytes floor ms (4.2 TB/s) | dp4a floor ms | effective GB/s | SilverTorch ms | speed-up | phases |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &out {
        let bf = if r.bytes > 0.0 { format!("{:.3}", r.bytes / BW * 1e3) } else { "-".into() };
        let of = if r.ops > 0.0 { format!("{:.3}", r.ops / DP4A * 1e3) } else { "-".into() };
        let gbs = if r.bytes > 0.0 { format!("{:.0}", r.bytes / (r.ms as f64 * 1e-3) / 1e9) } else { "-".into() };
        let (pm, su) = match r.peer_ms {
            Some(p) => (format!("{p}"), format!("{:.2}x", p / r.ms as f64)),
            None => ("-".into(), "-".into()),
        };
        println!("| {} | {:.3} | {:.3} | {bf} | {of} | {gbs} | {pm} | {su} | {} |", r.name, r.ms, r.min_ms, r.note);
    }
    if let Some(path) = json {
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "median_ms": r.ms, "min_ms": r.min_ms, "bytes": r.bytes, "dp4a": r.ops, "peer_ms": r.peer_ms, "note": r.note}))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}
