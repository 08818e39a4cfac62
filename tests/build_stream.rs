//! The streaming builder: the file it writes equals the in-memory build, list order,
//! codes, Bloom planes and CSR follow from the centroids alone (any device), checksums
//! verify, `patch_metadata` works in place, and bad input leaves nothing behind.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::model::attributes::{parse_jsonl, read_jsonl};
use silica::model::compute::{BuildCompute, CpuCompute};
use silica::model::kmeans::KMeansParams;
use silica::model::npy::{self, Matrix};
use silica::model::quantize::quantize;
use silica::model::{BloomPlanes, I8Matrix, format, writer};
use silica::{BuildParams, Error, Index, IndexBuilder, Metric};
use std::path::{Path, PathBuf};

/// `n` random rows with attributes; every 7th row has no attribute but its id, every 5th
/// an empty tag list.
fn corpus(n: usize, d: usize, seed: u64) -> (Vec<f32>, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut jsonl = String::new();
    for i in 0..n {
        let line = if i % 7 == 3 {
            serde_json::json!({"id": format!("r{i}"), "w": 1.5})
        } else {
            let tags: Vec<String> =
                if i % 5 == 0 { vec![] } else { (0..rng.random_range(1..4)).map(|_| format!("t{}", rng.random_range(0..9))).collect() };
            serde_json::json!({"id": format!("r{i}"), "color": format!("c{}", rng.random_range(0..4)), "tags": tags, "w": rng.random_range(0..50)})
        };
        jsonl.push_str(&line.to_string());
        jsonl.push('\n');
    }
    (data, jsonl)
}

struct Files {
    dir: tempfile::TempDir,
    vectors: PathBuf,
    attrs: PathBuf,
}

fn files(n: usize, d: usize, f16: bool, seed: u64) -> (Files, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let (data, jsonl) = corpus(n, d, seed);
    let vectors = dir.path().join("v.npy");
    npy::write(&vectors, n, d, &data, f16).unwrap();
    let attrs = dir.path().join("a.jsonl");
    std::fs::write(&attrs, jsonl).unwrap();
    (Files { dir, vectors, attrs }, data)
}

fn assert_same(a: &Index, b: &Index, what: &str) {
    assert_eq!(a.centroids, b.centroids, "{what}: centroids");
    assert_eq!(a.centroid_codes, b.centroid_codes, "{what}: centroid codes");
    assert_eq!(a.list_offsets, b.list_offsets, "{what}: list offsets");
    assert_eq!(a.items, b.items, "{what}: codes");
    assert_eq!(a.embeddings, b.embeddings, "{what}: embeddings");
    assert_eq!(a.features, b.features, "{what}: features");
    assert_eq!(a.ids, b.ids, "{what}: ids");
    assert_eq!(a.source_rows, b.source_rows, "{what}: source rows");
    assert_eq!(a.bloom, b.bloom, "{what}: bloom");
    assert_eq!(a.attrs, b.attrs, "{what}: attrs");
}

fn no_leftovers(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".silica-tmp") || n.ends_with(".silica"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn streamed_file_equals_the_in_memory_build() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // (N, D, nlist): one row, N not a multiple of 64, nlist = N, several chunks of the
    // 65,536-row passes.
    for (n, d, nlist) in [(1, 3, None), (130, 8, Some(5)), (77, 16, Some(77)), (70_001, 4, Some(16))] {
        for f16 in [false, true] {
            let seed = rng.random();
            let (fs, _) = files(n, d, f16, seed);
            let metric = if rng.random_bool(0.5) { Metric::Cosine } else { Metric::Ip };
            let params = BuildParams {
                nlist,
                metric,
                seed,
                features: vec!["w".into()],
                store_embeddings: rng.random_bool(0.7),
                kmeans_iters: 3,
                ..Default::default()
            };
            let b = IndexBuilder::new(params.clone());
            let out = fs.dir.path().join("x.silica");
            let s = b.build_to_file(&fs.vectors, &fs.attrs, &out, &CpuCompute, None).unwrap();
            assert_eq!((s.n, s.dim, s.bytes), (n, d, std::fs::metadata(&out).unwrap().len()));
            let streamed = format::load(&out).unwrap();
            let what = format!("n {n} d {d} f16 {f16} {metric}");
            assert_same(&streamed, &b.build_files(&fs.vectors, &fs.attrs).unwrap(), &what);
            // The in-memory Matrix path too.
            let m = npy::read(&fs.vectors).unwrap();
            let table = read_jsonl(&fs.attrs, &params.features).unwrap();
            assert_same(&streamed, &b.build(m, table).unwrap(), &what);
            let checks = format::checksums(&std::fs::read(&out).unwrap(), &out).unwrap().expect("checksums stored");
            assert!(checks.iter().all(|c| c.problem.is_none()), "{what}: {checks:?}");
            assert_eq!(checks.len(), format::inspect(&out).unwrap().1.len() + 1, "every tensor and the metadata checked");
        }
    }
}

/// Trains nothing (fixed centroids) and assigns by the rule written with i32 dots: a
/// second implementation of the assignment, as another device would be.
struct Fixed(Vec<f32>);

impl BuildCompute for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn train(&self, _: &[f32], _: usize, _: &KMeansParams, _: &dyn Fn()) -> silica::Result<Vec<f32>> {
        Ok(self.0.clone())
    }
    fn assign(&self, codes: &[i8], c: &I8Matrix) -> silica::Result<Vec<u32>> {
        Ok(codes.chunks(c.dim).map(|x| by_hand(x, c)).collect())
    }
}

fn by_hand(x: &[i8], c: &I8Matrix) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for l in 0..c.rows {
        let dot: i32 = x.iter().zip(c.row(l)).map(|(&a, &b)| a as i32 * b as i32).sum();
        if dot as f32 * c.scale[l] > best.1 {
            best = (l as u32, dot as f32 * c.scale[l]);
        }
    }
    best.0
}

#[test]
fn fixed_centroids_fix_list_order_codes_bloom_and_csr() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (n, d, k) = (300, 12, 7);
    let (data, jsonl) = corpus(n, d, 3);
    let centroids: Vec<f32> = (0..k * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let table = parse_jsonl(jsonl.as_bytes(), Path::new("a.jsonl"), &[]).unwrap();
    let params = BuildParams { nlist: Some(k), ..Default::default() };
    let b = IndexBuilder::new(params.clone());
    let src =
        |data: &[f32]| silica::model::source::VectorSource::from_matrix(Matrix { rows: n, dim: d, data: data.to_vec(), was_f16: false });
    let ix = b.build_source(&src(&data), &table, &Fixed(centroids.clone())).unwrap();

    // The expected artifact, derived from the centroids alone.
    let cq = quantize(&centroids, d);
    let xq = quantize(&data, d);
    let lists: Vec<u32> = (0..n).map(|r| by_hand(xq.row(r), &cq)).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&r| (lists[r], r));
    assert_eq!(ix.centroid_codes, cq);
    assert_eq!(ix.source_rows, order.iter().map(|&r| r as u64).collect::<Vec<_>>());
    for l in 0..k {
        assert!(ix.list_range(l).all(|s| lists[order[s]] == l as u32), "list {l}");
    }
    for (s, &r) in order.iter().enumerate() {
        assert_eq!(ix.items.row(s), xq.row(r), "codes of sorted row {s}");
        assert_eq!(ix.items.scale[s], xq.scale[r]);
        assert_eq!(ix.attrs.row(s), table.attrs.row(r), "CSR row {s}");
        assert_eq!(ix.ids.get(s), table.ids[r].as_str());
    }
    let value_bits: Vec<Vec<u32>> =
        ix.attrs.schema.fields.iter().flat_map(|f| f.values.iter().map(|v| params.bloom.positions(&f.name, v))).collect();
    let want = BloomPlanes::build(params.bloom, n, |s| ix.attrs.row(s).iter().flat_map(|&v| value_bits[v as usize].clone()).collect());
    assert_eq!(ix.bloom, want);
    // The CPU reference assigns identically for these centroids.
    assert_same(&b.build_source(&src(&data), &table, &FixedCpu(centroids)).unwrap(), &ix, "cpu assign");
}

/// Fixed centroids, the CPU reference assignment.
struct FixedCpu(Vec<f32>);

impl BuildCompute for FixedCpu {
    fn name(&self) -> &'static str {
        "fixed-cpu"
    }
    fn train(&self, _: &[f32], _: usize, _: &KMeansParams, _: &dyn Fn()) -> silica::Result<Vec<f32>> {
        Ok(self.0.clone())
    }
    fn assign(&self, codes: &[i8], c: &I8Matrix) -> silica::Result<Vec<u32>> {
        CpuCompute.assign(codes, c)
    }
}

#[test]
fn patch_metadata_round_trips_and_refuses_what_does_not_fit() {
    let (fs, _) = files(200, 8, true, 4);
    let out = fs.dir.path().join("x.silica");
    IndexBuilder::new(BuildParams { nlist: Some(4), ..Default::default() })
        .build_to_file(&fs.vectors, &fs.attrs, &out, &CpuCompute, None)
        .unwrap();
    let before = format::load(&out).unwrap();
    let value = serde_json::json!({"nprobe": [1, 2, 4], "recall": [0.5, 0.8, 0.99]}).to_string();
    writer::patch_metadata(&out, &[("note".into(), value.clone())]).unwrap();
    let (meta, _) = format::inspect(&out).unwrap();
    assert_eq!(meta.get("note"), Some(&value));
    let checks = format::checksums(&std::fs::read(&out).unwrap(), &out).unwrap().unwrap();
    assert!(checks.iter().all(|c| c.problem.is_none()), "{checks:?}");
    assert_same(&format::load(&out).unwrap(), &before, "after patch");
    // Patch again (replace), then a value larger than the slack: refused, file unchanged.
    writer::patch_metadata(&out, &[("note".into(), "{}".into())]).unwrap();
    assert_eq!(format::inspect(&out).unwrap().0.get("note").map(String::as_str), Some("{}"));
    let bytes = std::fs::read(&out).unwrap();
    let e = writer::patch_metadata(&out, &[("big".into(), "x".repeat(writer::SLACK + 64))]).unwrap_err();
    assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("room"), "{e}");
    let e = writer::patch_metadata(&out, &[(format::CHECKSUMS.into(), "{}".into())]).unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), bytes, "a refused patch leaves the file as it was");
    // A hand-edited metadata entry is caught by the metadata checksum.
    let mut bad = bytes.clone();
    let pat = b"\"note\":\"{}\"";
    let at = bad.windows(pat.len()).position(|w| w == pat).expect("entry in the header") + pat.len() - 3;
    bad[at] = b'[';
    bad[at + 1] = b']';
    let e = format::from_bytes(&bad, &out).unwrap_err().to_string();
    assert!(e.contains("metadata"), "{e}");
}

#[test]
fn bad_input_is_a_typed_error_and_leaves_no_file() {
    let b = IndexBuilder::new(BuildParams { nlist: Some(4), ..Default::default() });
    let (fs, data) = files(100, 8, false, 6);
    let out = fs.dir.path().join("x.silica");
    // Truncated npy.
    let bytes = std::fs::read(&fs.vectors).unwrap();
    let cut = fs.dir.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let e = b.build_to_file(&cut, &fs.attrs, &out, &CpuCompute, None).unwrap_err();
    assert!(matches!(e, Error::Npy { .. }) && e.to_string().contains("truncated"), "{e}");
    // One JSONL line too few.
    let short = fs.dir.path().join("short.jsonl");
    let text = std::fs::read_to_string(&fs.attrs).unwrap();
    std::fs::write(&short, text.lines().take(99).collect::<Vec<_>>().join("\n")).unwrap();
    let e = b.build_to_file(&fs.vectors, &short, &out, &CpuCompute, None).unwrap_err();
    assert!(matches!(e, Error::CountMismatch { left: 99, right: 100, .. }), "{e}");
    // NaN in a row outside the training sample and inside it: the row is named.
    for row in [97usize, 0] {
        let mut v = data.clone();
        v[row * 8 + 3] = f32::NAN;
        let nan = fs.dir.path().join("nan.npy");
        npy::write(&nan, 100, 8, &v, row == 0).unwrap();
        let bp = BuildParams { nlist: Some(4), sample_per_list: 2, ..Default::default() };
        let e = IndexBuilder::new(bp).build_to_file(&nan, &fs.attrs, &out, &CpuCompute, None).unwrap_err();
        assert!(matches!(e, Error::NonFinite { row: r, col: 3, .. } if r == row), "{e}");
    }
    std::fs::remove_file(fs.dir.path().join("nan.npy")).unwrap();
    no_leftovers(fs.dir.path());
    // An existing artifact is untouched by a failed build.
    std::fs::write(&out, b"old").unwrap();
    assert!(b.build_to_file(&cut, &fs.attrs, &out, &CpuCompute, None).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
}
