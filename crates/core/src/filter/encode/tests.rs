use super::*;
use crate::filter::Term;
use crate::model::{BloomParams, BloomPlanes};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// A random postfix program up to `depth` deep: Bloom terms (0..4 values, 3 plane rows
/// each, 0..4 sorted ids) and bound typed terms with random masks over `words` words.
fn random_plan(rng: &mut impl Rng, depth: usize, words: usize, plan: &mut Plan) {
    if depth == 0 || rng.random_bool(0.3) {
        if rng.random_bool(0.3) {
            let typed = Some(Arc::new(TypedTest::Present { field: "f".into(), ids: Vec::new(), null: false }));
            let mask: Vec<u64> = (0..words).map(|_| rng.random::<u64>() & rng.random::<u64>()).collect();
            plan.terms.push(Term { typed, mask: Some(mask.into()), ..Term::default() });
        } else {
            let nv = rng.random_range(0..4);
            let bloom_rows = (0..nv).map(|_| (0..3).map(|_| rng.random_range(0..64)).collect()).collect();
            let mut value_ids: Vec<u32> = (0..rng.random_range(0..4)).map(|_| rng.random_range(0..20)).collect();
            value_ids.sort_unstable();
            value_ids.dedup();
            plan.terms.push(Term { value_ids, bloom_rows, ..Term::default() });
        }
        plan.ops.push(Op::Term(plan.terms.len() as u32 - 1));
        return;
    }
    match rng.random_range(0..3) {
        0 => {
            random_plan(rng, depth - 1, words, plan);
            plan.ops.push(Op::Not);
        }
        k => {
            random_plan(rng, depth - 1, words, plan);
            random_plan(rng, depth - 1, words, plan);
            plan.ops.push(if k == 1 { Op::And } else { Op::Or });
        }
    }
}

fn planes(rng: &mut impl Rng, words: usize) -> BloomPlanes {
    BloomPlanes {
        params: BloomParams { bits: 64, hashes: 3, seed: 0 },
        words,
        planes: (0..64 * words).map(|_| rng.random::<u64>() | rng.random::<u64>()).collect(),
    }
}

fn limits(words: usize) -> Limits {
    Limits { planes: Some(64), hashes: Some(3), mask_words: Some(words), col_terms: false }
}

#[test]
fn random_plans_encode_validate_and_evaluate_like_the_plan() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for words in [1usize, 2, 7] {
        let planes = planes(&mut rng, words);
        let mut plans = vec![Plan::all(), Plan::nothing()];
        for _ in 0..150 {
            let mut p = Plan::default();
            let depth = rng.random_range(0..6);
            random_plan(&mut rng, depth, words, &mut p);
            plans.push(p);
        }
        assert!(plans.iter().any(|p| p.has_typed()), "the random plans include typed terms");
        // Shared plans (the same &Plan) share one record.
        let refs: Vec<&Plan> = plans.iter().chain(plans.iter().take(3)).collect();
        let enc = encode(&refs).unwrap();
        enc.validate(&limits(words)).unwrap();
        assert_eq!(enc.offsets.len(), refs.len());
        assert_eq!(enc.offsets[plans.len()], enc.offsets[0]);
        assert_eq!(enc.offsets[plans.len() + 2], enc.offsets[2]);
        for (q, p) in refs.iter().enumerate() {
            assert_eq!(enc.offsets[q] & TRIVIAL_BIT != 0, p.is_all(), "plan {q}: only the empty plan is trivial");
            for w in 0..words {
                assert_eq!(enc.bloom_word(q, &planes, w), p.bloom_word(&planes, w), "plan {q} word {w}");
            }
            for _ in 0..30 {
                let mut row: Vec<u32> = (0..rng.random_range(0..5)).map(|_| rng.random_range(0..20)).collect();
                row.sort_unstable();
                row.dedup();
                let r = rng.random_range(0..words * 64);
                assert_eq!(enc.matches(q, r, &row), p.matches_bound(r, &row), "plan {q} row {r} {row:?}");
            }
        }
        // The wgpu single-buffer form: the table points at the same records.
        let blob = enc.with_table(1 << 30).unwrap();
        let h = refs.len().next_multiple_of(2);
        for q in 0..refs.len() {
            let o = blob[q];
            assert_eq!(o & TRIVIAL_BIT, enc.offsets[q] & TRIVIAL_BIT);
            assert_eq!(&blob[(o & !TRIVIAL_BIT) as usize..], enc.plan(q));
            assert_eq!((o & !TRIVIAL_BIT) as usize % 2, (enc.offsets[q] & !TRIVIAL_BIT) as usize % 2, "alignment kept");
        }
        assert_eq!(blob.len(), h + enc.words.len());
        assert!(matches!(enc.with_table(blob.len()), Err(EncodeError::TooLarge { .. })));
    }
}

#[test]
fn an_empty_batch_still_has_words() {
    let enc = encode(&[]).unwrap();
    assert_eq!(enc.words, vec![0]);
    assert!(enc.offsets.is_empty());
    enc.validate(&Limits::default()).unwrap();
}

fn bloom_term(ids: Vec<u32>) -> Term {
    let bloom_rows = ids.iter().map(|&v| vec![v % 64, (v * 7) % 64, (v * 13) % 64]).collect();
    Term { value_ids: ids, bloom_rows, ..Term::default() }
}

#[test]
fn malformed_plans_are_refused_with_typed_errors() {
    let t = || bloom_term(vec![1, 2]);
    let plan = |ops: Vec<Op>, n: usize| Plan { ops, terms: (0..n).map(|_| t()).collect() };
    let err = |p: &Plan| encode(&[p]).unwrap_err();
    assert_eq!(err(&plan(vec![Op::And], 0)), EncodeError::Underflow { plan: 0, op: 0 });
    assert_eq!(err(&plan(vec![Op::Term(0), Op::Or], 1)), EncodeError::Underflow { plan: 0, op: 1 });
    assert_eq!(err(&plan(vec![Op::Not], 1)), EncodeError::Underflow { plan: 0, op: 0 });
    assert_eq!(err(&plan(vec![Op::Term(0), Op::Term(0)], 1)), EncodeError::Leftover { plan: 0, values: 2 });
    assert_eq!(err(&plan(vec![Op::Term(1)], 1)), EncodeError::MissingTerm { plan: 0, term: 1 });
    // 33 values on the stack, then 32 ANDs: one deeper than the kernels hold; 32 is fine.
    for (n, ok) in [(32usize, true), (33, false)] {
        let ops: Vec<Op> = std::iter::repeat_n(Op::Term(0), n).chain(std::iter::repeat_n(Op::And, n - 1)).collect();
        let r = encode(&[&plan(ops, 1)]);
        assert_eq!(r.is_ok(), ok, "{n} deep: {r:?}");
        if !ok {
            assert_eq!(r.unwrap_err(), EncodeError::TooDeep { plan: 0, depth: 33 });
        }
    }
    let mut mixed = plan(vec![Op::Term(0)], 1);
    mixed.terms[0].bloom_rows[1].pop();
    assert_eq!(err(&mixed), EncodeError::MixedHashes { plan: 0 });
    let typed = Some(Arc::new(TypedTest::Present { field: "f".into(), ids: vec![(0, 3)], null: false }));
    let unbound = Plan { ops: vec![Op::Term(0)], terms: vec![Term { typed, ..Term::default() }] };
    assert_eq!(encode(&[&Plan::all(), &unbound]).unwrap_err(), EncodeError::Unbound { plan: 1 });
    // Every error converts to the crate's typed parameter error.
    assert!(matches!(crate::error::Error::from(err(&plan(vec![Op::And], 0))), crate::error::Error::Param { .. }));
}

#[test]
fn corrupted_encodings_fail_validation_with_typed_errors() {
    let typed = Some(Arc::new(TypedTest::Present { field: "f".into(), ids: Vec::new(), null: false }));
    let masked = Term { typed, mask: Some(vec![!0u64, 5].into()), ..Term::default() };
    // (t0 AND t1) OR NOT t1: a Bloom term then a mask term.
    let p =
        Plan { ops: vec![Op::Term(0), Op::Term(1), Op::And, Op::Term(1), Op::Not, Op::Or], terms: vec![bloom_term(vec![3, 9]), masked] };
    let good = encode(&[&Plan::all(), &p]).unwrap();
    let lim = limits(2);
    good.validate(&lim).unwrap();
    let base = (good.offsets[1] & !TRIVIAL_BIT) as usize;
    let bloom = base + (good.words[base + 1] & ARG_MASK) as usize;
    let check = |f: &dyn Fn(&mut Encoded), lim: &Limits, want: EncodeError| {
        let mut e = good.clone();
        f(&mut e);
        assert_eq!(e.validate(lim), Err(want));
    };
    check(&|e| e.offsets[1] = e.words.len() as u32, &lim, EncodeError::OutOfRange { plan: 1, what: "plan offset" });
    check(&|e| e.offsets[0] &= !TRIVIAL_BIT, &lim, EncodeError::TrivialFlag { plan: 0, ops: 0 });
    check(&|e| e.offsets[1] |= TRIVIAL_BIT, &lim, EncodeError::TrivialFlag { plan: 1, ops: 6 });
    check(&|e| e.words[base] = 1 << 20, &lim, EncodeError::OutOfRange { plan: 1, what: "ops" });
    check(&|e| e.words[base + 1] = TERM | 1 << 20, &lim, EncodeError::OutOfRange { plan: 1, what: "term record" });
    check(&|e| e.words[base + 1] = AND, &lim, EncodeError::Underflow { plan: 1, op: 0 });
    check(&|e| e.words[base + 6] = NOT, &lim, EncodeError::Leftover { plan: 1, values: 2 });
    check(&|e| e.words[bloom] = 1 << 20, &lim, EncodeError::OutOfRange { plan: 1, what: "Bloom term rows" });
    check(&|e| e.words[bloom + 2] = 64, &lim, EncodeError::PlaneRow { plan: 1, row: 64, bits: 64 });
    check(&|e| e.words[bloom + 8] = 1 << 20, &lim, EncodeError::OutOfRange { plan: 1, what: "Bloom term ids" });
    check(&|e| e.words.swap(bloom + 9, bloom + 10), &lim, EncodeError::Unsorted { plan: 1 });
    check(&|_| {}, &Limits { hashes: Some(4), ..lim }, EncodeError::Hashes { got: 3, want: 4 });
    check(&|_| {}, &Limits { mask_words: Some(3), ..lim }, EncodeError::OutOfRange { plan: 1, what: "typed term mask" });
    let mask_rec = base + (good.words[base + 2] & ARG_MASK) as usize;
    assert_eq!(good.words[mask_rec], MASK_TERM);
    check(&|e| e.words[mask_rec + 1] += 1, &lim, EncodeError::Misaligned { plan: 1 });
    check(&|e| e.words[mask_rec] = COL_TERM, &lim, EncodeError::ColumnTerm { plan: 1 });
    check(&|e| e.words[mask_rec + 1] = 1 << 20, &lim, EncodeError::OutOfRange { plan: 1, what: "typed term mask" });
}

/// Host mirror of `col_word` / `col_row` (cuda/common.cuh) over a decoded COL_TERM
/// record whose addresses `mem` resolves: checked against `Column::word` / `Column::test`.
fn col_word(c: &ColTerm, mem: &dyn Fn(u64) -> Vec<u64>, w: usize) -> u64 {
    let (pres, wr, keys) = (mem(c.col.present), mem(c.col.word_range), mem(c.col.keys));
    let hit = |k: u64| c.ranges.iter().any(|&(a, b)| a <= k && k <= b) != c.negate;
    let p = pres[w];
    if c.null {
        return !p & crate::backend::cpu::range_bits(w, &(0..c.col.n as usize));
    }
    let (lo, hi) = (wr[2 * w], wr[2 * w + 1]);
    if p == 0 {
        0
    } else if c.ranges.iter().any(|&(a, b)| a <= lo && hi <= b) {
        if c.negate { 0 } else { p }
    } else if c.ranges.iter().all(|&(a, b)| b < lo || hi < a) {
        if c.negate { p } else { 0 }
    } else {
        (0..64).filter(|&i| p >> i & 1 == 1 && hit(keys[w * 64 + i])).fold(0, |m, i| m | 1 << i)
    }
}

fn col_row(c: &ColTerm, mem: &dyn Fn(u64) -> Vec<u64>, r: usize) -> bool {
    let has = mem(c.col.present)[r / 64] >> (r % 64) & 1 == 1;
    if c.null { !has } else { has && c.ranges.iter().any(|&(a, b)| a <= mem(c.col.keys)[r] && mem(c.col.keys)[r] <= b) != c.negate }
}

#[test]
fn column_terms_encode_the_test_and_the_device_columns() {
    use crate::model::ColumnType;
    use crate::model::columns::{Column, KeyTest};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for n in [0usize, 1, 63, 64, 65, 300] {
        // Clustered keys (so word min/max decide some words), 20% absent, 3 lists.
        let keys: Vec<Option<u64>> = (0..n).map(|r| rng.random_bool(0.8).then(|| (r as u64 / 50) * 10 + rng.random_range(0..12))).collect();
        let lists = [0, n as u64 / 3, n as u64 / 2, n as u64];
        let col = Column::from_keys("x", ColumnType::Int, &keys, &lists);
        let kv: Vec<u64> = (0..n).map(|i| col.values.key(i)).collect();
        let wr: Vec<u64> = (0..col.word_range.len()).map(|i| col.word_range.key(i)).collect();
        let mem = |a: u64| match a {
            0x1000 => kv.clone(),
            0x2000 => col.present.to_vec(),
            _ => wr.clone(),
        };
        let dc = DevColumn { keys: 0x1000, present: 0x2000, word_range: 0x3000, n: n as u64 };
        for _ in 0..40 {
            let mut ranges: Vec<(u64, u64)> = (0..rng.random_range(0..4))
                .map(|_| {
                    let a = rng.random_range(0..40);
                    (a, a + rng.random_range(0..15))
                })
                .collect();
            ranges.sort_unstable();
            let test = KeyTest { ranges, negate: rng.random_bool(0.3), null: rng.random_bool(0.15) };
            let typed = Some(Arc::new(TypedTest::Column { name: "x".into(), test: test.clone() }));
            // NOT of the column term, so the record sits after an odd number of words.
            let plan = Plan { ops: vec![Op::Term(0), Op::Not], terms: vec![Term { typed, ..Term::default() }] };
            assert_eq!(encode(&[&plan]).unwrap_err(), EncodeError::NoColumn { name: "x".into() });
            let enc = encode_with(&[&Plan::all(), &plan], &|name| (name == "x").then_some(dc)).unwrap();
            assert!(matches!(enc.validate(&Limits::default()), Err(EncodeError::ColumnTerm { plan: 1 })));
            enc.validate(&Limits { col_terms: true, ..Limits::default() }).unwrap();
            let p = enc.plan(1);
            let TermRecord::Column(c) = Encoded::term(p, p[1] & ARG_MASK, 1).unwrap() else { panic!("not a column term") };
            assert_eq!((c.col, c.negate, c.null, &c.ranges), (dc, test.negate, test.null, &test.ranges));
            let planes = BloomPlanes { params: BloomParams { bits: 1, hashes: 1, seed: 0 }, words: 0, planes: Vec::new().into() };
            for w in 0..n.div_ceil(64) {
                let got = enc.bloom_word_with(1, &planes, w, &|c, w| col_word(c, &mem, w));
                assert_eq!(got, !0, "NOT of a maybe is all ones");
                assert_eq!(col_word(&c, &mem, w), col.word(&test, w), "n {n} word {w} {test:?}");
            }
            for r in 0..n {
                assert_eq!(col_row(&c, &mem, r), col.test(&test, r), "n {n} row {r} {test:?}");
                assert_eq!(enc.matches_with(1, r, &[], &|c, r| col_row(c, &mem, r)), !col.test(&test, r), "n {n} row {r}");
            }
        }
    }
}
