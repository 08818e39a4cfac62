//! Bad input through the CLI: non-zero exit, a message naming the problem, and no
//! partial output file (and an existing output left untouched).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn silica(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_silica")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (m, jsonl) = common::random_corpus(300, 8, 3);
        std::fs::write(dir.path().join("v.npy"), silica::model::npy::encode(300, 8, &m.data, false)).unwrap();
        std::fs::write(dir.path().join("a.jsonl"), jsonl).unwrap();
        let q = common::random_queries(4, 8, 1);
        std::fs::write(dir.path().join("q.npy"), silica::model::npy::encode(4, 8, &q, false)).unwrap();
        std::fs::write(dir.path().join("f.jsonl"), "{\"filter\": \"section = \\\"libs\\\"\"}\n".repeat(4)).unwrap();
        let f = Fixture { dir };
        let (ok, err) =
            silica(&["build", "--vectors", &f.p("v.npy"), "--attributes", &f.p("a.jsonl"), "--out", &f.p("i.silica"), "--nlist", "8"]);
        assert!(ok, "{err}");
        f
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
        self.p(name)
    }
}

/// Run, expect failure whose message contains every `needles`, and no `out` file.
fn fails(args: &[&str], needles: &[&str], out: &str) {
    let (ok, err) = silica(args);
    assert!(!ok, "expected failure: {args:?}");
    for n in needles {
        assert!(err.contains(n), "message {err:?} should mention {n:?}");
    }
    assert!(!Path::new(out).exists(), "partial output {out} left behind");
    let dir = Path::new(out).parent().unwrap();
    let stray: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".silica-"))
        .collect();
    assert!(stray.is_empty(), "temp files left: {stray:?}");
}

#[test]
fn build_rejects_bad_vectors_and_attributes() {
    let f = Fixture::new();
    let out = f.p("out.silica");
    let a = f.p("a.jsonl");
    let build = |v: &str, a: &str| {
        vec!["build".to_string(), "--vectors".into(), v.into(), "--attributes".into(), a.into(), "--out".into(), out.clone()]
    };
    let run = |args: Vec<String>, needles: &[&str]| fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles, &out);

    let mut nan = vec![0.5f32; 300 * 8];
    nan[8 * 17 + 3] = f32::NAN;
    run(build(&f.write("nan.npy", silica::model::npy::encode(300, 8, &nan, false)), &a), &["row 17", "column 3", "not finite"]);
    let mut inf = vec![0.5f32; 300 * 8];
    inf[5] = f32::INFINITY;
    run(build(&f.write("inf.npy", silica::model::npy::encode(300, 8, &inf, false)), &a), &["row 0", "column 5"]);
    // A value beyond the f16 range of the stored embeddings, at a random row and column.
    let (r, c) = (rand::random_range(0..300), rand::random_range(0..8));
    let mut big = vec![0.5f32; 300 * 8];
    big[8 * r + c] = -7e4;
    run(build(&f.write("big.npy", silica::model::npy::encode(300, 8, &big, false)), &a), &[&format!("row {r}, column {c}"), "f16 range"]);
    let good = std::fs::read(f.p("v.npy")).unwrap();
    run(build(&f.write("trunc.npy", &good[..good.len() - 10]), &a), &["trunc.npy", "truncated"]);
    run(build(&f.write("text.npy", "id,vec\n1,2\n"), &a), &["text.npy", "not a .npy file"]);
    run(build(&f.p("missing.npy"), &a), &["missing.npy"]);
    // Attribute count != vector count.
    let lines: Vec<&str> = std::fs::read_to_string(&a).unwrap().leak().lines().collect();
    run(build(&f.p("v.npy"), &f.write("short.jsonl", lines[..299].join("\n"))), &["attributes has 299 rows", "vectors has 300"]);
    // Malformed JSONL names the line.
    let mut bad = lines.clone();
    bad[41] = "{\"id\": \"x\", \"section\": ";
    run(build(&f.p("v.npy"), &f.write("bad.jsonl", bad.join("\n"))), &["bad.jsonl:42", "malformed JSON"]);
    // A feature no line carries; a duplicate key; an empty id.
    let mut args = build(&f.p("v.npy"), &a);
    args.extend(["--features".into(), "rank,weight".into()]);
    run(args, &["feature `weight`"]);
    // Calibration settings are checked before anything is built.
    for (flag, value) in [("--target-recall", "1.5"), ("--target-recall", "0"), ("--calibration-queries", "0")] {
        let mut args = build(&f.p("v.npy"), &a);
        args.extend([flag.into(), value.into()]);
        run(args, &[&flag[2..]]);
    }
    let mut dup = lines.clone();
    dup[7] = "{\"id\": \"x\", \"section\": \"a\", \"section\": \"b\"}";
    run(build(&f.p("v.npy"), &f.write("dup.jsonl", dup.join("\n"))), &["dup.jsonl:8", "duplicate key `section`"]);
    let mut empty = lines.clone();
    empty[3] = "{\"id\": \"\"}";
    run(build(&f.p("v.npy"), &f.write("empty.jsonl", empty.join("\n"))), &["empty.jsonl:4", "`id` is empty"]);
    // Fields that are not indexed (objects) are named in a warning; numbers and booleans
    // are typed columns now, so they are not.
    let mut flags = lines.clone();
    flags[0] = "{\"id\": \"item-0\", \"section\": \"libs\", \"flag\": true, \"rank\": 3, \"meta\": {\"a\": 1}}";
    let (ok, err) = silica(&[
        "build",
        "--vectors",
        &f.p("v.npy"),
        "--attributes",
        &f.write("flags.jsonl", flags.join("\n")),
        "--out",
        &out,
        "--nlist",
        "4",
    ]);
    assert!(ok && err.contains("fields not indexed") && err.contains("are): meta"), "{err}");
    std::fs::remove_file(&out).unwrap();
    // A field holding a number on one line and a string on another is an error naming the line.
    let mut mixed = lines.clone();
    mixed[5] = "{\"id\": \"item-5\", \"rank\": \"high\"}";
    run(build(&f.p("v.npy"), &f.write("mixed.jsonl", mixed.join("\n"))), &["mixed.jsonl:6", "`rank`"]);
    // Unwritable output (a directory that does not exist).
    let (ok, err) = silica(&["build", "--vectors", &f.p("v.npy"), "--attributes", &a, "--out", "/nonexistent-dir/x.silica"]);
    assert!(!ok && err.contains("/nonexistent-dir/x.silica"), "{err}");
}

#[test]
fn search_rejects_bad_queries_filters_and_params() {
    let f = Fixture::new();
    let out = f.p("r.jsonl");
    let (i, q, fl) = (f.p("i.silica"), f.p("q.npy"), f.p("f.jsonl"));
    let search = |q: &str, fl: &str, extra: &[&str]| {
        let mut v = vec!["search", "--index", &i, "--queries", q, "--filters", fl, "--out", &out];
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, needles: &[&str]| fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles, &out);

    let wrong_dim = f.write("q7.npy", silica::model::npy::encode(2, 7, &[0.1; 14], false));
    run(search(&wrong_dim, &fl, &["--k", "3"]), &["dimension 7", "index dimension 8"]);
    run(
        search(&q, &f.write("uf.jsonl", "{\"filter\": \"colour = \\\"red\\\"\"}\n".repeat(4)), &["--k", "3"]),
        &["unknown field `colour`", "column 1", "query 0"],
    );
    run(
        search(&q, &f.write("sf.jsonl", "{\"filter\": \"section = \\\"libs\\\" AND\"}\n".repeat(4)), &["--k", "3"]),
        &["syntax error at column 21"],
    );
    run(search(&q, &fl, &["--k", "0"]), &["`k`"]);
    // Finite values whose sum of squares overflows f32 (every score would be Inf or NaN).
    let mut huge = common::random_queries(4, 8, 9);
    let r = rand::random_range(0..4);
    huge[r * 8..(r + 1) * 8].fill(3.4e38);
    let huge = f.write("huge.npy", silica::model::npy::encode(4, 8, &huge, false));
    run(search(&huge, &fl, &["--k", "3"]), &[&format!("row {r}"), "sum of squares", "overflows f32"]);
    run(search(&q, &fl, &["--k", "3", "--nprobe", "9"]), &["`nprobe`", "nlist = 8"]);
    run(search(&q, &f.write("f2.jsonl", "{\"filter\": \"\"}\n"), &["--k", "3"]), &["has 1 rows", "queries has 4"]);
    // An existing output is left untouched by a failed search.
    std::fs::write(&out, "keep me").unwrap();
    let (ok, _) = silica(&search(&q, &fl, &["--k", "0"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    std::fs::remove_file(&out).unwrap();
    // Unwritable output.
    let (ok, err) = silica(&["search", "--index", &i, "--queries", &q, "--k", "3", "--out", "/nonexistent-dir/r.jsonl"]);
    assert!(!ok && err.contains("/nonexistent-dir/r.jsonl"), "{err}");
    // A good search still works and writes the file.
    let (ok, err) = silica(&search(&q, &fl, &["--k", "3"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 4);
}

#[test]
fn load_rejects_corrupt_artifacts() {
    let f = Fixture::new();
    let bytes = std::fs::read(f.p("i.silica")).unwrap();
    let q = f.p("q.npy");
    for (name, data) in [("trunc.silica", bytes[..bytes.len() / 2].to_vec()), ("junk.silica", b"not safetensors at all".to_vec())] {
        let p = f.write(name, data);
        let out = f.p("r.jsonl");
        fails(&["search", "--index", &p, "--queries", &q, "--k", "1", "--out", &out], &[name], &out);
    }
}

#[test]
fn inspect_prints_metadata_and_tensors() {
    let f = Fixture::new();
    let out = Command::new(env!("CARGO_BIN_EXE_silica")).args(["inspect", &f.p("i.silica")]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["format_version", "bloom_hash", "items.codes", "I8", "[300, 8]", "bloom.planes", "U64", "[1024, 5]"] {
        assert!(text.contains(needle), "inspect output lacks {needle}:\n{text}");
    }
}

#[test]
fn search_with_a_rerank_model_file() {
    use safetensors::tensor::TensorView;
    let f = Fixture::new();
    // input = 2*D + F = 16 (no features), one hidden layer of 4, 2 tasks.
    let tensors: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("rerank.layers.0.weight", vec![4, 16], (0..64).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect()),
        ("rerank.layers.0.bias", vec![4], vec![0.1, -0.1, 0.0, 0.2]),
        ("rerank.heads.weight", vec![2, 4], vec![0.5, -0.3, 0.2, 0.1, -0.4, 0.6, 0.3, -0.2]),
        ("rerank.heads.bias", vec![2], vec![0.0, 0.1]),
        ("rerank.task_weights", vec![2], vec![0.7, 0.3]),
    ];
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| bytemuck::cast_slice(&t.2).to_vec()).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| (t.0.to_string(), TensorView::new(safetensors::Dtype::F32, t.1.clone(), b).unwrap()))
        .collect();
    let model = f.write("m.safetensors", safetensors::serialize(views, None).unwrap());
    let out = f.p("r.jsonl");
    let args = [
        "search",
        "--index",
        &f.p("i.silica"),
        "--queries",
        &f.p("q.npy"),
        "--k",
        "5",
        "--rerank",
        "model",
        "--rerank-model",
        &model,
        "--task-weights",
        "0.5,0.5",
        "--out",
        &out,
    ];
    let (ok, err) = silica(&args);
    assert!(ok, "{err}");
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s: Vec<f64> = v["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(s.len(), 5);
        assert!(
            s.windows(2).all(|w| w[0] >= w[1]) && s.iter().all(|&x| (0.0..=1.0).contains(&x)),
            "composite of sigmoids with weights summing to 1: {s:?}"
        );
    }
    // Missing model and wrong task-weight count are clear errors.
    std::fs::remove_file(&out).unwrap();
    fails(
        &["search", "--index", &f.p("i.silica"), "--queries", &f.p("q.npy"), "--k", "5", "--rerank", "model", "--out", &out],
        &["model rerank needs a model"],
        &out,
    );
    fails(
        &[
            "search",
            "--index",
            &f.p("i.silica"),
            "--queries",
            &f.p("q.npy"),
            "--k",
            "5",
            "--rerank",
            "model",
            "--rerank-model",
            &model,
            "--task-weights",
            "1",
            "--out",
            &out,
        ],
        &["task_weights", "need 2"],
        &out,
    );
}

/// `--out -` writes to stdout; a directory, FIFO or symlink to a device is refused (and left
/// as it was); files get mode 0666 less the umask.
#[test]
fn outputs_stdout_non_regular_targets_and_umask() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let f = Fixture::new();
    let (i, q, fl) = (f.p("i.silica"), f.p("q.npy"), f.p("f.jsonl"));
    let run = |out: &str| {
        Command::new(env!("CARGO_BIN_EXE_silica"))
            .args(["search", "--index", &i, "--queries", &q, "--filters", &fl, "--k", "3", "--out", out])
            .output()
            .unwrap()
    };
    let o = run("-");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().enumerate().all(|(n, l)| l["qid"] == n && l["ids"].as_array().unwrap().len() == 3));
    let o = Command::new(env!("CARGO_BIN_EXE_silica"))
        .args(["build", "--vectors", &f.p("v.npy"), "--attributes", &f.p("a.jsonl"), "--nlist", "4", "--out", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(silica::model::format::from_bytes(&o.stdout, Path::new("stdout")).unwrap().len(), 300);

    // Non-regular targets.
    std::fs::create_dir(f.p("adir")).unwrap();
    assert!(Command::new("mkfifo").arg(f.p("fifo")).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/null", f.p("null")).unwrap();
    for (name, needle) in [("adir", "is a directory"), ("fifo", "not a regular file"), ("null", "not a regular file")] {
        for build in [false, true] {
            let o = if build {
                Command::new(env!("CARGO_BIN_EXE_silica"))
                    .args(["build", "--vectors", &f.p("v.npy"), "--attributes", &f.p("a.jsonl"), "--nlist", "4", "--out", &f.p(name)])
                    .output()
                    .unwrap()
            } else {
                run(&f.p(name))
            };
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && err.contains(needle) && err.contains(name), "{name}: {err}");
            assert!(!err.contains("os error"), "{name}: one clear message, not an OS error: {err}");
        }
    }
    assert!(std::fs::metadata(f.p("adir")).unwrap().is_dir());
    assert!(std::fs::metadata(f.p("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read_link(f.p("null")).unwrap(), Path::new("/dev/null"));

    // Modes follow the umask, for both writers.
    for (umask, want) in [("022", 0o644), ("027", 0o640), ("077", 0o600)] {
        let out = f.p(&format!("r{umask}.jsonl"));
        let ix = f.p(&format!("i{umask}.silica"));
        let s1 = Command::new("sh")
            .args([
                "-c",
                &format!("umask {umask} && exec \"$0\" search --index {i} --queries {q} --k 2 --out {out}"),
                env!("CARGO_BIN_EXE_silica"),
            ])
            .output()
            .unwrap()
            .status;
        let s2 = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "umask {umask} && exec \"$0\" build --vectors {} --attributes {} --nlist 4 --out {ix}",
                    f.p("v.npy"),
                    f.p("a.jsonl")
                ),
                env!("CARGO_BIN_EXE_silica"),
            ])
            .output()
            .unwrap()
            .status;
        assert!(s1.success() && s2.success());
        for p in [&out, &ix] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, want, "{p} under umask {umask}");
        }
    }
}

#[test]
fn bench_rejects_bad_candidate_budgets() {
    // Refused before any catalog is generated, naming the flag.
    for (args, needle) in [
        (&["bench", "--backend", "cpu", "--suite", "e2e", "--n", "100", "--candidate-budget", "4,0"][..], "candidate-budget"),
        (&["bench", "--backend", "cpu", "--n", "100", "--candidate-budget", "2"][..], "candidate-budget"),
        (&["bench", "--suite", "peer", "--candidate-budget", "2"][..], "candidate-budget"),
    ] {
        let (ok, err) = silica(args);
        assert!(!ok, "expected failure: {args:?}");
        assert!(err.contains(needle), "message {err:?} should mention {needle:?}");
    }
}
