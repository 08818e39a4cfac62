//! Filter plans (Bloom superset + exact semantics) on random filters, and the artifact
//! round trip.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::{Filter, FilterError};

/// A random filter text and an independent evaluator of it over (section, tags).
/// A predicate over (field, values).
type Pred = Box<dyn Fn(&str, &[&str]) -> bool>;

fn random_filter(rng: &mut ChaCha8Rng, depth: usize) -> (String, Pred) {
    let pick = |rng: &mut ChaCha8Rng, xs: &[&'static str]| xs[rng.random_range(0..xs.len())];
    match if depth == 0 { rng.random_range(0..2) } else { rng.random_range(0..5) } {
        0 => {
            let v = pick(rng, SECTIONS);
            (format!("section = \"{v}\""), Box::new(move |s, _| s == v))
        }
        1 => {
            let vs: Vec<&'static str> = (0..rng.random_range(1..3)).map(|_| pick(rng, TAGS)).collect();
            let list = vs.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ");
            (format!("tags IN ({list})"), Box::new(move |_, t| t.iter().any(|x| vs.contains(x))))
        }
        2 => {
            let (a, fa) = random_filter(rng, depth - 1);
            (format!("NOT ({a})"), Box::new(move |s, t| !fa(s, t)))
        }
        3 => {
            let (a, fa) = random_filter(rng, depth - 1);
            let (b, fb) = random_filter(rng, depth - 1);
            (format!("({a}) AND ({b})"), Box::new(move |s, t| fa(s, t) && fb(s, t)))
        }
        _ => {
            let (a, fa) = random_filter(rng, depth - 1);
            let (b, fb) = random_filter(rng, depth - 1);
            (format!("({a}) OR ({b})"), Box::new(move |s, t| fa(s, t) || fb(s, t)))
        }
    }
}

#[test]
fn plans_are_exact_and_bloom_is_a_superset() {
    let (ix, _) = random_index(333, 4, 3, 1, &[]);
    let (_, jsonl) = random_corpus(333, 4, 1);
    let rows: Vec<serde_json::Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..200 {
        let (text, eval) = random_filter(&mut rng, 3);
        let f = Filter::compile(&text, &ix.attrs.schema, &ix.bloom.params).unwrap();
        for r in 0..ix.len() {
            let src = &rows[ix.source_rows[r] as usize];
            let tags: Vec<&str> = src["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            let want = eval(src["section"].as_str().unwrap(), &tags);
            assert_eq!(f.plan.matches(ix.attrs.row(r)), want, "{text} row {r}");
            if want {
                assert_ne!(f.plan.bloom_word(&ix.bloom, r / 64) & (1 << (r % 64)), 0, "Bloom must keep passing row {r}: {text}");
            }
        }
    }
}

#[test]
fn bloom_blocks_equal_word_by_word_evaluation() {
    // 4,500 rows = 71 words: a full block of 64, a partial one, and blocks at odd offsets.
    let (ix, _) = random_index(4500, 4, 3, 1, &[]);
    let words = ix.bloom.words;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..100 {
        let (text, _) = random_filter(&mut rng, 3);
        let f = Filter::compile(&text, &ix.attrs.schema, &ix.bloom.params).unwrap();
        for (w0, n) in [(0, 64), (64, words - 64), (0, 0), (5, 1), (7, 33), (words - 1, 1)] {
            let mut out = vec![0xdead_beefu64; n];
            f.plan.bloom_words(&ix.bloom, w0, &mut out);
            let want: Vec<u64> = (w0..w0 + n).map(|w| f.plan.bloom_word(&ix.bloom, w)).collect();
            assert_eq!(out, want, "{text} block {w0}+{n}");
        }
    }
    let all = Filter::compile("", &ix.attrs.schema, &ix.bloom.params).unwrap();
    let mut out = vec![0u64; 10];
    all.plan.bloom_words(&ix.bloom, 3, &mut out);
    assert!(out.iter().all(|&w| w == !0), "the empty filter passes everything");
}

#[test]
fn an_artifact_with_code_minus_128_is_rejected() {
    let (mut ix, _) = random_index(100, 8, 4, 1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.silica");
    ix.items.codes[8 * 37 + 3] = i8::MIN;
    silica::model::format::save(&ix, &p).unwrap();
    let e = silica::model::format::load(&p).unwrap_err().to_string();
    assert!(e.contains("items.codes") && e.contains("-128") && e.contains("row 37"), "{e}");
}

#[test]
fn unknown_fields_and_deep_nesting_are_errors() {
    let (ix, _) = random_index(50, 4, 2, 1, &[]);
    let e = Filter::compile(r#"section = "libs" AND colour = "red""#, &ix.attrs.schema, &ix.bloom.params).unwrap_err();
    assert!(matches!(e, FilterError::UnknownField { column: 22, ref field, .. } if field == "colour"), "{e}");
    let deep = (0..40).fold(String::from(r#"section = "a""#), |acc, _| format!(r#"section = "b" OR ({acc})"#));
    assert!(Filter::compile(&deep, &ix.attrs.schema, &ix.bloom.params).is_err());
    let chain = vec![r#"section = "a""#; 200].join(" OR ");
    assert!(Filter::compile(&chain, &ix.attrs.schema, &ix.bloom.params).is_ok(), "left-deep chains need no stack");
}

#[test]
fn artifact_round_trips_and_is_a_plain_safetensors_file() {
    let (ix, _) = random_index(129, 12, 5, 3, &["rank"]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.silica");
    silica::model::format::save(&ix, &p).unwrap();
    let back = silica::model::format::load(&p).unwrap();
    assert_eq!(back.items, ix.items);
    assert_eq!(back.centroid_codes, ix.centroid_codes);
    assert_eq!(back.list_offsets, ix.list_offsets);
    assert_eq!(back.bloom, ix.bloom);
    assert_eq!(back.attrs, ix.attrs);
    assert_eq!(back.ids, ix.ids);
    assert_eq!(back.source_rows, ix.source_rows);
    assert_eq!(back.embeddings, ix.embeddings);
    assert_eq!(back.features, ix.features);
    let (meta, tensors) = silica::model::format::inspect(&p).unwrap();
    assert_eq!(meta["n"], "129");
    let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    for want in [
        "ivf.centroids",
        "ivf.centroid_codes",
        "ivf.centroid_scale",
        "ivf.list_offsets",
        "items.codes",
        "items.scale",
        "items.embeddings",
        "items.features",
        "items.row_ids",
        "bloom.planes",
        "attrs.offsets",
        "attrs.values",
    ] {
        assert!(names.contains(&want), "missing {want}");
    }
}
