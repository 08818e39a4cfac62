//! The main job on the bundled real corpus (data/debian): build with defaults through the
//! CLI, then `silica eval --json` must reach the bar.

use std::path::Path;
use std::process::Command;

fn silica() -> Command {
    Command::new(env!("CARGO_BIN_EXE_silica"))
}

#[test]
fn debian_recall_with_default_settings() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/debian");
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("debian.silica");
    let st = silica()
        .args(["build", "--vectors"])
        .arg(data.join("embeddings.npy"))
        .arg("--attributes")
        .arg(data.join("items.jsonl"))
        .arg("--out")
        .arg(&index)
        .status()
        .unwrap();
    assert!(st.success());
    let out = silica()
        .args(["eval", "--index"])
        .arg(&index)
        .arg("--queries")
        .arg(data.join("queries.npy"))
        .arg("--filters")
        .arg(data.join("queries.jsonl"))
        .arg("--ground-truth")
        .arg(data.join("ground_truth.jsonl"))
        .args(["--k", "10", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recall = v["recall"].as_f64().unwrap();
    let selective = v["recall_selective"].as_f64().unwrap();
    eprintln!("{v}");
    assert!(recall >= 0.98, "recall@10 {recall} < 0.98");
    assert!(selective >= 0.99, "recall@10 on <1% filters {selective} < 0.99");
    assert_eq!(v["filter_violations"].as_u64(), Some(0));
    assert!(v["qps"].as_f64().unwrap() > 0.0);

    // Queries written after the default nprobe was calibrated (data/debian/heldout): the
    // defaults must hold on them too.
    let held = data.join("heldout");
    let out = silica()
        .args(["eval", "--index"])
        .arg(&index)
        .arg("--queries")
        .arg(held.join("queries.npy"))
        .arg("--filters")
        .arg(held.join("queries.jsonl"))
        .arg("--ground-truth")
        .arg(held.join("ground_truth.jsonl"))
        .args(["--k", "10", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("held out: {h}");
    assert!(h["recall"].as_f64().unwrap() >= 0.98, "held-out recall@10 {} < 0.98", h["recall"]);
    assert!(h["recall_selective"].as_f64().unwrap() >= 0.99, "held-out recall@10 on <1% filters {} < 0.99", h["recall_selective"]);
    assert_eq!(h["filter_violations"].as_u64(), Some(0));

    // The calibrated default is stored, shown by inspect, and used when no nprobe is given.
    let out = silica().arg("inspect").arg(&index).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("default nprobe")).unwrap_or_else(|| panic!("inspect shows no calibration:\n{text}"));
    let nprobe: usize = line.split("default nprobe ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((1..=1024).contains(&nprobe) && line.contains(">= 0.99"), "{line}");
    let with = |extra: &[&str]| {
        let out = silica()
            .args(["search", "--index"])
            .arg(&index)
            .arg("--queries")
            .arg(held.join("queries.npy"))
            .arg("--filters")
            .arg(held.join("queries.jsonl"))
            .args(["--k", "10", "--out", "-"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    assert_eq!(with(&[]), with(&["--nprobe", &nprobe.to_string()]), "search without --nprobe uses the calibrated {nprobe}");

    // Sharded by inverted lists over 2 and 3 CPU backends: exactly the single-device answer
    // (rows, ids, score bits as printed) for every public and held-out query, with the
    // default refine, with int8 scores only, and probing every list.
    for queries in [&data, &held] {
        let run = |extra: &[&str]| {
            let out = silica()
                .args(["search", "--index"])
                .arg(&index)
                .arg("--queries")
                .arg(queries.join("queries.npy"))
                .arg("--filters")
                .arg(queries.join("queries.jsonl"))
                .args(["--k", "10", "--out", "-"])
                .args(extra)
                .output()
                .unwrap();
            assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        for mode in [&[][..], &["--rerank", "none"], &["--nprobe", "1024", "--rerank", "none"]] {
            let one = run(mode);
            assert_eq!(one, run(&[mode, &["--devices", "cpu"]].concat()), "--devices cpu is --backend cpu");
            for devices in ["cpu,cpu", "cpu,cpu,cpu"] {
                assert!(run(&[mode, &["--devices", devices]].concat()) == one, "--devices {devices} {mode:?} differs from one device");
            }
        }
    }

    // `search` writes one line per query with rows/ids/scores, best first, ids matching rows.
    let res = dir.path().join("r.jsonl");
    let st = silica()
        .args(["search", "--index"])
        .arg(&index)
        .arg("--queries")
        .arg(data.join("queries.npy"))
        .arg("--filters")
        .arg(data.join("queries.jsonl"))
        .args(["--k", "5", "--out"])
        .arg(&res)
        .status()
        .unwrap();
    assert!(st.success());
    let items: Vec<serde_json::Value> =
        std::fs::read_to_string(data.join("items.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&res).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 80);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["qid"].as_u64(), Some(i as u64));
        let rows = l["rows"].as_array().unwrap();
        let scores: Vec<f64> = l["scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
        assert!(!rows.is_empty() && rows.len() <= 5);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "scores sorted");
        for (r, id) in rows.iter().zip(l["ids"].as_array().unwrap()) {
            assert_eq!(&items[r.as_u64().unwrap() as usize]["id"], id);
        }
    }
}
