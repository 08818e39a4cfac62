//! Trust the artifact: per-tensor xxh3-64 checksums (and one over the metadata, Bloom seed
//! included) are checked on load, value checks always run, `silica verify` reports every
//! entry, and `--no-verify` skips only the checksums. Loading maps the file: a truncated
//! file or a tensor past its end is a typed error, and views and copies read the same.

mod common;
mod serve_common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use silica::model::format::{self, Verify};
use std::ops::Range;
use std::path::Path;
use std::process::Command;

/// Byte range of tensor `name`'s data in safetensors `bytes`.
fn range(bytes: &[u8], name: &str) -> Range<usize> {
    let (n, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let (a, b) = meta.info(name).unwrap().data_offsets;
    8 + n + a..8 + n + b
}

/// `bytes` with its `__metadata__` rewritten by `edit` (the header re-padded to 8 bytes).
fn with_meta(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header["__metadata__"].as_object_mut().unwrap());
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn set_f32(bytes: &mut [u8], name: &str, i: usize, x: f32) {
    let at = range(bytes, name).start + 4 * i;
    bytes[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

/// The four kinds of damage of issue 13, each at a random place: (what, bytes, tensor named).
fn damaged(good: &[u8], rng: &mut ChaCha8Rng, n: usize) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    // 4 KiB of Bloom planes zeroed, where they hold some set bit.
    let r = range(good, "bloom.planes");
    let mut b = good.to_vec();
    loop {
        let at = r.start + 8 * rng.random_range(0..(r.len() - 4096) / 8);
        if b[at..at + 4096].iter().any(|&x| x != 0) {
            b[at..at + 4096].fill(0);
            break;
        }
    }
    out.push(("zeroed bloom planes", b, "bloom.planes"));
    // Another Bloom seed in the metadata: every filter would hash to other bits.
    let seed = rng.random_range(1..u64::MAX);
    let b = with_meta(good, |m| {
        let mut bloom: serde_json::Value = serde_json::from_str(m["bloom"].as_str().unwrap()).unwrap();
        bloom["seed"] = seed.into();
        m.insert("bloom".into(), bloom.to_string().into());
    });
    out.push(("bloom seed changed", b, "metadata"));
    // One byte of item codes changed (staying in [-127, 127]).
    let r = range(good, "items.codes");
    let mut b = good.to_vec();
    let at = rng.random_range(r);
    b[at] = if b[at] as i8 == 0 { 1 } else { (-(b[at] as i8)) as u8 };
    out.push(("flipped code byte", b, "items.codes"));
    // NaN in one item scale.
    let mut b = good.to_vec();
    set_f32(&mut b, "items.scale", rng.random_range(0..n), f32::NAN);
    out.push(("NaN scale", b, "items.scale"));
    out
}

#[test]
fn damage_is_refused_on_load_naming_the_tensor() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for trial in 0..3 {
        let n = rng.random_range(100..600);
        let (ix, _) = common::random_index(n, 8, 4, trial, &["rank"]);
        let good = format::to_bytes(&ix).unwrap();
        let back = format::from_bytes(&good, Path::new("good.silica")).unwrap();
        let sums = |b: &[u8]| -> serde_json::Value {
            let (_, m) = SafeTensors::read_metadata(b).unwrap();
            serde_json::from_str(&m.metadata().as_ref().unwrap()[format::CHECKSUMS]).unwrap()
        };
        assert_eq!(sums(&format::to_bytes(&back).unwrap()), sums(&good), "a verified load round-trips");
        for (what, bytes, tensor) in damaged(&good, &mut rng, n) {
            assert!(bytes != good, "{what}: the damage changed nothing");
            let e = format::from_bytes(&bytes, Path::new("bad.silica")).err().unwrap_or_else(|| panic!("{what}: loaded")).to_string();
            assert!(e.contains(tensor) && e.contains("bad.silica"), "{what}: {e}");
            let skipped = format::from_bytes_with(&bytes, Path::new("bad.silica"), Verify::Skip);
            match tensor {
                // Value checks still run without checksums.
                "items.scale" => assert!(skipped.err().unwrap().to_string().contains("`items.scale` holds NaN"), "{what}"),
                _ => assert!(skipped.is_ok(), "{what}: --no-verify loads"),
            }
        }
    }
}

#[test]
fn value_checks_run_without_checksums() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let n = 300;
    let (ix, _) = common::random_index(n, 8, 4, 2, &[]);
    let old = with_meta(&format::to_bytes(&ix).unwrap(), |m| {
        m.remove(format::CHECKSUMS);
    });
    format::from_bytes(&old, Path::new("old.silica")).expect("an artifact without checksums still loads");
    for (name, rows, x) in [
        ("items.scale", n, f32::NAN),
        ("items.scale", n, -0.5),
        ("items.scale", n, f32::INFINITY),
        ("ivf.centroid_scale", 4, f32::NAN),
        ("ivf.centroids", 32, f32::NEG_INFINITY),
    ] {
        let mut b = old.clone();
        let i = rng.random_range(0..rows);
        set_f32(&mut b, name, i, x);
        let e = format::from_bytes(&b, Path::new("old.silica")).err().unwrap_or_else(|| panic!("{name} = {x} loaded")).to_string();
        assert!(e.contains(&format!("`{name}` holds {x}")), "{name} = {x}: {e}");
    }
}

fn silica(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_silica")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_verify_and_no_verify() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let n = 400;
    let (ix, _) = common::random_index(n, 8, 4, 5, &[]);
    let good = format::to_bytes(&ix).unwrap();
    std::fs::write(p("good.silica"), &good).unwrap();
    std::fs::write(p("q.npy"), silica::model::npy::encode(3, 8, &common::random_queries(3, 8, 5), false)).unwrap();
    let (ok, out, err) = silica(&["verify", &p("good.silica")]);
    assert!(ok, "{out}{err}");
    for t in ["items.codes", "bloom.planes", "__metadata__", "values"] {
        assert!(out.lines().any(|l| l.contains(t) && l.contains("OK")), "{t} not OK:\n{out}");
    }
    for (what, bytes, tensor) in damaged(&good, &mut rng, n) {
        std::fs::write(p("bad.silica"), &bytes).unwrap();
        let (ok, out, _) = silica(&["verify", &p("bad.silica")]);
        assert!(!ok, "{what}: verify must fail:\n{out}");
        let bad: Vec<&str> = out.lines().filter(|l| l.contains("BAD")).collect();
        let named = if tensor == "metadata" { "__metadata__" } else { tensor };
        assert!(bad.iter().any(|l| l.contains(named)), "{what}: {named} not BAD:\n{out}");
        let search = |extra: &[&str]| {
            let (ix, q, out) = (p("bad.silica"), p("q.npy"), p("r.jsonl"));
            let mut a = vec!["search", "--index", &ix, "--queries", &q, "--k", "3", "--out", &out];
            a.extend_from_slice(extra);
            silica(&a)
        };
        let (ok, _, err) = search(&[]);
        assert!(!ok && err.contains(tensor), "{what}: search must refuse naming {tensor}: {err}");
        // inspect reads only the header: damaged tensors still show it, damaged metadata is refused.
        let (ok, out, err) = silica(&["inspect", &p("bad.silica")]);
        if tensor == "metadata" {
            assert!(!ok && err.contains(named), "{what}: inspect must refuse: {err}");
        } else {
            assert!(ok && out.contains("items.codes") && out.contains("checksums"), "{what}: inspect must show the header: {out}{err}");
        }
        let (ok, _, err) = silica(&["inspect", "--verify", &p("bad.silica")]);
        assert!(!ok && err.contains(named), "{what}: inspect --verify must refuse: {err}");
        let (ok, _, err) = search(&["--no-verify"]);
        assert_eq!(ok, tensor != "items.scale", "{what}: --no-verify skips only the checksums: {err}");
        let (ok, _, err) = silica(&["inspect", "--no-verify", &p("bad.silica")]);
        assert!(ok, "{what}: {err}");
    }
    // serve: refused naming the tensor; --no-verify starts (the damage is in the codes).
    let (_, codes, _) = damaged(&good, &mut rng, n).remove(2);
    std::fs::write(p("bad.silica"), &codes).unwrap();
    let e = serve_common::Server::try_start(Path::new(&p("bad.silica")), &[]).err().expect("serve must refuse");
    assert!(e.contains("items.codes"), "{e}");
    serve_common::Server::start(Path::new(&p("bad.silica")), &["--no-verify"]);
    // An older artifact (no checksums) loads with a warning; verify says it cannot vouch for it.
    std::fs::write(
        p("old.silica"),
        with_meta(&good, |m| {
            m.remove(format::CHECKSUMS);
        }),
    )
    .unwrap();
    let (ok, _, err) = silica(&["search", "--index", &p("old.silica"), "--queries", &p("q.npy"), "--k", "3", "--out", &p("r.jsonl")]);
    assert!(ok && err.contains("no checksums"), "{err}");
    let (ok, out, _) = silica(&["verify", &p("old.silica")]);
    assert!(!ok && out.contains("no checksums"), "{out}");
}

/// An artifact written to a temporary file.
fn file_of(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f
}

#[test]
fn truncated_or_short_files_are_typed_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let (ix, _) = common::random_index(333, 8, 4, 3, &["rank"]);
    let good = format::to_bytes(&ix).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    // Cut anywhere: in the length prefix, in the header, in the data, one byte short.
    let cuts = [0, 3, 8, 8 + n / 2, 8 + n, rng.random_range(8 + n..good.len()), good.len() - 1];
    for cut in cuts {
        let f = file_of(&good[..cut]);
        for verify in [Verify::Checksums, Verify::Skip] {
            let e = format::load_with(f.path(), verify).err().unwrap_or_else(|| panic!("cut at {cut}: loaded"));
            assert!(matches!(e, silica::Error::Format { .. }), "cut at {cut}: {e}");
        }
        if cut > 8 + n {
            let e = format::load(f.path()).unwrap_err().to_string();
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
            // The header is intact: inspect still shows it.
            let (meta, tensors) = format::inspect(f.path()).unwrap();
            assert!(meta.contains_key("checksums") && tensors.iter().any(|t| t.0 == "items.codes"));
        }
    }
    // Extra bytes after the data section are refused too.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 8]);
    let e = format::load(file_of(&long).path()).unwrap_err().to_string();
    assert!(e.contains("extended"), "{e}");
}

/// `bytes` with the header rewritten by `edit` on the tensor table (re-padded to 8 bytes).
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn a_tensor_past_the_end_is_a_typed_error_naming_it() {
    let (ix, _) = common::random_index(200, 8, 4, 4, &[]);
    let good = format::to_bytes(&ix).unwrap();
    // Grow the last tensor by 4096 rows in the header only: it now ends past the file.
    let mut last = String::new();
    let bad = with_header(&good, |h| {
        let (name, _) = h.iter().filter(|(k, _)| *k != "__metadata__").max_by_key(|(_, v)| v["data_offsets"][1].as_u64().unwrap()).unwrap();
        last = name.clone();
        let t = h.get_mut(&last).unwrap();
        let row: u64 = t["shape"].as_array().unwrap()[1..].iter().map(|x| x.as_u64().unwrap()).product();
        let size = match t["dtype"].as_str().unwrap() {
            "U8" | "I8" => 1,
            "F16" => 2,
            "F32" | "U32" => 4,
            _ => 8,
        };
        t["shape"][0] = (t["shape"][0].as_u64().unwrap() + 4096).into();
        t["data_offsets"][1] = (t["data_offsets"][1].as_u64().unwrap() + 4096 * row * size).into();
    });
    let f = file_of(&bad);
    for verify in [Verify::Checksums, Verify::Skip] {
        let e = format::load_with(f.path(), verify).unwrap_err().to_string();
        assert!(e.contains(&format!("`{last}`")) && e.contains("truncated"), "{e}");
    }
}

/// Rebuild safetensors `bytes` with one tensor `pad` bytes further (a filler tensor first),
/// so that tensors after it are misaligned; checksums stay valid.
fn misaligned(bytes: &[u8], pad: usize) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let h = header.as_object_mut().unwrap();
    for (k, v) in h.iter_mut() {
        if k != "__metadata__" {
            let o = v["data_offsets"].as_array_mut().unwrap();
            *o = vec![(o[0].as_u64().unwrap() + pad as u64).into(), (o[1].as_u64().unwrap() + pad as u64).into()];
        }
    }
    h.insert("zz.pad".into(), serde_json::json!({"dtype": "U8", "shape": [pad], "data_offsets": [0, pad]}));
    let meta = h["__metadata__"].as_object_mut().unwrap();
    let mut sums: serde_json::Map<String, serde_json::Value> = serde_json::from_str(meta[format::CHECKSUMS].as_str().unwrap()).unwrap();
    sums.insert("zz.pad".into(), format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&vec![7u8; pad])).into());
    meta.insert(format::CHECKSUMS.into(), serde_json::Value::Object(sums).to_string().into());
    let mut hb = serde_json::to_vec(&header).unwrap();
    hb.resize(hb.len().div_ceil(8) * 8, b' ');
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hb);
    out.extend(std::iter::repeat_n(7u8, pad));
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn mapped_loads_view_aligned_tensors_and_copy_misaligned_ones() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for trial in 0..3 {
        let n = rng.random_range(1..700);
        let (ix, _) = common::random_index(n, 8, 4, 10 + trial, &["rank"]);
        let good = format::to_bytes(&ix).unwrap();
        let copied = format::from_bytes(&good, Path::new("x")).unwrap();
        let f = file_of(&good);
        let mapped = format::load(f.path()).unwrap();
        // Every O(N) tensor of silica's own layout is a view.
        assert!(mapped.items.codes.is_mapped() && mapped.items.scale.is_mapped() && mapped.bloom.planes.is_mapped());
        assert!(
            mapped.attrs.offsets.is_mapped() && mapped.attrs.values.is_mapped() && mapped.source_rows.is_mapped() && mapped.ids.is_mapped()
        );
        assert!(mapped.embeddings.as_ref().is_none_or(|e| e.is_mapped()));
        same(&mapped, &copied);
        let sums = |b: &[u8]| -> serde_json::Value {
            let (_, m) = SafeTensors::read_metadata(b).unwrap();
            serde_json::from_str(&m.metadata().as_ref().unwrap()[format::CHECKSUMS]).unwrap()
        };
        assert_eq!(sums(&format::to_bytes(&mapped).unwrap()), sums(&good), "a mapped index writes the same tensors");
        // Shift every tensor by 1, 2 or 3 bytes: 2-, 4- and 8-byte tensors are copied, same values.
        let shifted = misaligned(&good, 1 + trial as usize);
        let g = file_of(&shifted);
        let m2 = format::load(g.path()).unwrap();
        assert!(!m2.items.scale.is_mapped() && !m2.bloom.planes.is_mapped() && !m2.attrs.values.is_mapped());
        assert!(m2.items.codes.is_mapped(), "int8 codes need no alignment");
        same(&m2, &copied);
    }
}

fn same(a: &silica::model::Index, b: &silica::model::Index) {
    assert_eq!(a.items, b.items);
    assert_eq!(a.centroids, b.centroids);
    assert_eq!(a.centroid_codes, b.centroid_codes);
    assert_eq!(a.list_offsets, b.list_offsets);
    assert_eq!(a.embeddings, b.embeddings);
    assert_eq!(a.features, b.features);
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.source_rows, b.source_rows);
    assert_eq!(a.bloom, b.bloom);
    assert_eq!(a.attrs, b.attrs);
}
