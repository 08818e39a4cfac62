//! Filter plans as the kernels read them (`cuda/common.cuh`, "Filter plans"): one u32
//! record per distinct plan of a batch, `[n_ops][ops..]` followed by term records
//! `[nb][k][nb*k plane rows][nid][nid sorted value ids]`; an op is `kind << 30 | arg`
//! (Term: arg = offset of its record from the plan start; 1 And, 2 Or, 3 Not). A typed
//! term (bound, [`Plan::bind`]) is the record `[MASK_TERM][m]`: its exact row mask, one
//! u64 per 64-row word, starts `m` words after the plan start, at an even word of the
//! buffer (8-byte aligned). An unbound typed column term (the executor leaves them
//! unbound: `Backend::typed_terms`) is the record `[COL_TERM][m]` with u64 data at `m`:
//! the column's device addresses (keys, presence bits, per-word min/max keys), N,
//! `negate | null << 1 | nranges << 8`, then the test's inclusive key intervals
//! (`cuda/common.cuh` `col_word`, `col_row`): a bound that changes per query costs its
//! few words here, not a mask over every row.

use silica_core::error::{Error, Result};
use silica_core::filter::{Op, Plan};

const TERM: u32 = 0;
const AND: u32 = 1 << 30;
const OR: u32 = 2 << 30;
const NOT: u32 = 3 << 30;
/// First word of a typed term's record (`MASK_TERM` in cuda/common.cuh).
pub const MASK_TERM: u32 = u32::MAX;
/// First word of an unbound typed column term's record (`COL_TERM` in cuda/common.cuh).
pub const COL_TERM: u32 = u32::MAX - 1;

/// A typed column resident on the device, as a [`COL_TERM`] record names it: addresses of
/// its `[N]` u64 keys, `[ceil(N/64)]` presence bits, `[ceil(N/64), 2]` word min/max keys,
/// and N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevColumn {
    pub keys: u64,
    pub present: u64,
    pub word_range: u64,
    pub n: u64,
}

/// Bit 31 of a query's plan offset: the plan passes everything (kernels skip filtering).
pub const TRIVIAL_BIT: u32 = 1 << 31;

/// Encoded plans of a batch: `words`, and per query the offset of its plan record
/// (with [`TRIVIAL_BIT`] set when the plan passes everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub words: Vec<u32>,
    pub offsets: Vec<u32>,
}

/// Encode `plans` (one per query; typed terms bound). Queries sharing a `&Plan` share its record.
pub fn encode(plans: &[&Plan]) -> Result<Encoded> {
    encode_with(plans, &|_| None)
}

/// [`encode`] with unbound typed column terms as [`COL_TERM`] records over the device
/// columns `cols` gives by name. Errors: an unbound typed term whose column `cols` lacks
/// (or a presence test: those are always bound).
pub fn encode_with(plans: &[&Plan], cols: &dyn Fn(&str) -> Option<DevColumn>) -> Result<Encoded> {
    let mut enc = Encoded::default();
    let mut seen: Vec<(*const Plan, u32)> = Vec::new();
    for &plan in plans {
        let ptr = plan as *const Plan;
        if let Some(&(_, off)) = seen.iter().find(|(p, _)| *p == ptr) {
            enc.offsets.push(off);
            continue;
        }
        let off = u32::try_from(enc.words.len())
            .ok()
            .filter(|&o| o < TRIVIAL_BIT)
            .ok_or_else(|| Error::param("filters", "encoded filter plans exceed 2^31 words"))?;
        encode_one(plan, &mut enc.words, cols)?;
        let off = if plan.is_all() { off | TRIVIAL_BIT } else { off };
        seen.push((ptr, off));
        enc.offsets.push(off);
    }
    if enc.words.is_empty() {
        enc.words.push(0);
    }
    Ok(enc)
}

fn encode_one(plan: &Plan, out: &mut Vec<u32>, cols: &dyn Fn(&str) -> Option<DevColumn>) -> Result<()> {
    let base = out.len();
    let nops = plan.ops.len();
    // The kernels' stacks hold 32 entries (filter::plan's MAX_DEPTH, enforced at compile).
    if plan.stack_depth() > 32 {
        return Err(Error::param("filters", "filter plan nests deeper than 32 levels"));
    }
    out.push(nops as u32);
    out.extend(std::iter::repeat_n(0u32, nops));
    let mut term_off = vec![0u32; plan.terms.len()];
    for (i, t) in plan.terms.iter().enumerate() {
        let rel = out.len() - base;
        if rel >= 1 << 30 {
            return Err(Error::param("filters", "filter plan too large"));
        }
        term_off[i] = rel as u32;
        if let (None, Some(silica_core::filter::TypedTest::Column { name, test })) = (&t.mask, t.typed.as_deref()) {
            let c = cols(name).ok_or_else(|| {
                Error::param(
                    "filters",
                    format!("typed filter term on column {name:?} neither bound (Plan::bind) nor resident on the device"),
                )
            })?;
            out.extend_from_slice(&[COL_TERM, 0]);
            if out.len() % 2 == 1 {
                out.push(0);
            }
            let m = out.len() - base;
            if m >= 1 << 31 || test.ranges.len() >= 1 << 24 {
                return Err(Error::param("filters", "filter plan too large"));
            }
            out[base + rel + 1] = m as u32;
            let flags = test.negate as u64 | (test.null as u64) << 1 | (test.ranges.len() as u64) << 8;
            let data = [c.keys, c.present, c.word_range, c.n, flags].into_iter().chain(test.ranges.iter().flat_map(|&(a, b)| [a, b]));
            out.extend(data.flat_map(|x| [x as u32, (x >> 32) as u32]));
            continue;
        }
        if t.typed.is_some() {
            let mask = t.mask.as_ref().ok_or_else(|| Error::param("filters", "typed filter term not bound to the index (Plan::bind)"))?;
            out.extend_from_slice(&[MASK_TERM, 0]);
            if out.len() % 2 == 1 {
                out.push(0);
            }
            let m = out.len() - base;
            if m >= 1 << 31 {
                return Err(Error::param("filters", "filter plan too large"));
            }
            out[base + rel + 1] = m as u32;
            out.extend(mask.iter().flat_map(|&x| [x as u32, (x >> 32) as u32]));
            continue;
        }
        let k = t.bloom_rows.first().map_or(0, |r| r.len());
        if t.bloom_rows.iter().any(|r| r.len() != k) {
            return Err(Error::param("filters", "Bloom terms with differing hash counts"));
        }
        out.push(t.bloom_rows.len() as u32);
        out.push(k as u32);
        for rows in &t.bloom_rows {
            out.extend_from_slice(rows);
        }
        out.push(t.value_ids.len() as u32);
        out.extend_from_slice(&t.value_ids);
    }
    for (i, op) in plan.ops.iter().enumerate() {
        out[base + 1 + i] = match *op {
            Op::Term(t) => {
                TERM | *term_off.get(t as usize).ok_or_else(|| Error::param("filters", format!("plan names term {t} it lacks")))?
            }
            Op::And => AND,
            Op::Or => OR,
            Op::Not => NOT,
        };
    }
    Ok(())
}

/// The encoded postfix program of the plan at `off` (the kernels' layout) over 64-bit
/// lanes: `term` gets a term record `[nb, k, plane rows (nb x k), nid, ids..]`, `not`
/// negates (exactly, or as Bloom "maybe"), AND and OR are bitwise; an empty plan is all ones.
fn run_encoded(words: &[u32], off: u32, term: impl Fn(&[u32]) -> u64, not: impl Fn(u64) -> u64) -> u64 {
    let p = &words[(off & !TRIVIAL_BIT) as usize..];
    let nops = p[0] as usize;
    if nops == 0 {
        return !0;
    }
    let mut st = Vec::new();
    for &op in &p[1..1 + nops] {
        match op >> 30 {
            0 => st.push(term(&p[(op & 0x3fff_ffff) as usize..])),
            3 => {
                let x = st.last_mut().expect("stack");
                *x = not(*x);
            }
            kind => {
                let b = st.pop().expect("stack");
                let a = st.last_mut().expect("stack");
                *a = if kind == 1 { *a & b } else { *a | b };
            }
        }
    }
    st[0]
}

/// Word `w` of the mask at `t[1]` words after plan `p`'s start.
fn mask_word(p: &[u32], t: &[u32], w: usize) -> u64 {
    let m = &p[t[1] as usize + 2 * w..];
    m[0] as u64 | (m[1] as u64) << 32
}

/// Host mirror of the kernels' `plan_bloom_word` (tests check the encoding with it).
pub fn bloom_word(words: &[u32], off: u32, planes: &silica_core::model::BloomPlanes, w: usize) -> u64 {
    let p = &words[(off & !TRIVIAL_BIT) as usize..];
    let term = |t: &[u32]| {
        if t[0] == MASK_TERM {
            return mask_word(p, t, w);
        }
        let (nb, k) = (t[0] as usize, t[1] as usize);
        (0..nb).fold(0u64, |any, v| any | (0..k).fold(!0u64, |all, h| all & planes.word(t[2 + v * k + h], w)))
    };
    run_encoded(words, off, term, |_| !0)
}

/// Host mirror of the kernels' `plan_match` for row `r` with value ids `row`.
pub fn matches(words: &[u32], off: u32, r: usize, row: &[u32]) -> bool {
    let p = &words[(off & !TRIVIAL_BIT) as usize..];
    let term = |t: &[u32]| {
        if t[0] == MASK_TERM {
            return if mask_word(p, t, r / 64) >> (r % 64) & 1 == 1 { !0 } else { 0 };
        }
        let (nb, k) = (t[0] as usize, t[1] as usize);
        let ids = &t[2 + nb * k..];
        if ids[1..1 + ids[0] as usize].iter().any(|v| row.binary_search(v).is_ok()) { !0 } else { 0 }
    };
    run_encoded(words, off, term, |x| !x) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use silica_core::filter::Term;
    use silica_core::model::{BloomParams, BloomPlanes};

    fn random_plan(rng: &mut impl Rng, depth: usize, plan: &mut Plan) {
        if depth == 0 || rng.random_bool(0.3) {
            if rng.random_bool(0.3) {
                // A typed term with a random bound mask over 7 words.
                let typed =
                    Some(std::sync::Arc::new(silica_core::filter::TypedTest::Present { field: "f".into(), ids: Vec::new(), null: false }));
                let mask: Vec<u64> = (0..7).map(|_| rng.random::<u64>() & rng.random::<u64>()).collect();
                plan.terms.push(Term { typed, mask: Some(mask.into()), ..Term::default() });
                plan.ops.push(Op::Term(plan.terms.len() as u32 - 1));
                return;
            }
            let nv = rng.random_range(0..4);
            let bloom_rows = (0..nv).map(|_| (0..3).map(|_| rng.random_range(0..64)).collect()).collect();
            let mut value_ids: Vec<u32> = (0..rng.random_range(0..4)).map(|_| rng.random_range(0..20)).collect();
            value_ids.sort_unstable();
            value_ids.dedup();
            plan.terms.push(Term { value_ids, bloom_rows, ..Term::default() });
            plan.ops.push(Op::Term(plan.terms.len() as u32 - 1));
            return;
        }
        match rng.random_range(0..3) {
            0 => {
                random_plan(rng, depth - 1, plan);
                plan.ops.push(Op::Not);
            }
            k => {
                random_plan(rng, depth - 1, plan);
                random_plan(rng, depth - 1, plan);
                plan.ops.push(if k == 1 { Op::And } else { Op::Or });
            }
        }
    }

    /// Host mirror of `col_word` / `col_row` (cuda/common.cuh) over a COL_TERM record whose
    /// addresses `mem` resolves: the record layout and the word rule checked against
    /// `Column::word` / `Column::test` (the CPU reference) without a GPU.
    fn col_eval(p: &[u32], t: &[u32], mem: &dyn Fn(u64) -> Vec<u64>, w: usize, row: Option<usize>) -> bool_or_word::R {
        let d: Vec<u64> = p[t[1] as usize..].chunks(2).take(5).map(|c| c[0] as u64 | (c[1] as u64) << 32).collect();
        let nr = (d[4] >> 8) as usize;
        let ranges: Vec<(u64, u64)> = p[t[1] as usize + 10..]
            .chunks(4)
            .take(nr)
            .map(|c| (c[0] as u64 | (c[1] as u64) << 32, c[2] as u64 | (c[3] as u64) << 32))
            .collect();
        let (keys, pres, wr, n, neg, null) = (mem(d[0]), mem(d[1]), mem(d[2]), d[3] as usize, d[4] & 1 == 1, d[4] & 2 == 2);
        let hit = |k: u64| ranges.iter().any(|&(a, b)| a <= k && k <= b) != neg;
        if let Some(r) = row {
            let has = pres[r / 64] >> (r % 64) & 1 == 1;
            return bool_or_word::R::Row(if null { !has } else { has && hit(keys[r]) });
        }
        let p = pres[w];
        if null {
            return bool_or_word::R::Word(!p & silica_core::backend::cpu::range_bits(w, &(0..n)));
        }
        let (lo, hi) = (wr[2 * w], wr[2 * w + 1]);
        let inside = ranges.iter().any(|&(a, b)| a <= lo && hi <= b);
        let apart = ranges.iter().all(|&(a, b)| b < lo || hi < a);
        bool_or_word::R::Word(if p == 0 {
            0
        } else if inside {
            if neg { 0 } else { p }
        } else if apart {
            if neg { p } else { 0 }
        } else {
            (0..64).filter(|&i| p >> i & 1 == 1 && hit(keys[w * 64 + i])).fold(0, |m, i| m | 1 << i)
        })
    }
    mod bool_or_word {
        #[derive(Debug, PartialEq)]
        pub enum R {
            Word(u64),
            Row(bool),
        }
    }

    #[test]
    fn column_terms_encode_the_test_and_the_device_columns() {
        use silica_core::filter::TypedTest;
        use silica_core::model::ColumnType;
        use silica_core::model::columns::{Column, KeyTest};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for n in [0usize, 1, 63, 64, 65, 300] {
            // Clustered keys (so word min/max decide some words), 20% absent, 3 lists.
            let keys: Vec<Option<u64>> =
                (0..n).map(|r| rng.random_bool(0.8).then(|| (r as u64 / 50) * 10 + rng.random_range(0..12))).collect();
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
                let typed = Some(std::sync::Arc::new(TypedTest::Column { name: "x".into(), test: test.clone() }));
                let plan = Plan { ops: vec![Op::Term(0)], terms: vec![Term { typed, ..Term::default() }] };
                assert!(encode(&[&plan]).is_err(), "an unbound column term without device columns is refused");
                let enc = encode_with(&[&plan], &|name| (name == "x").then_some(dc)).unwrap();
                let p = &enc.words[..];
                let t = &p[(p[1] & 0x3fff_ffff) as usize..];
                assert_eq!(t[0], COL_TERM);
                assert_eq!(t[1] % 2, 0, "data at an even word");
                for w in 0..n.div_ceil(64) {
                    assert_eq!(col_eval(p, t, &mem, w, None), bool_or_word::R::Word(col.word(&test, w)), "n {n} word {w} {test:?}");
                }
                for r in 0..n {
                    assert_eq!(col_eval(p, t, &mem, 0, Some(r)), bool_or_word::R::Row(col.test(&test, r)), "n {n} row {r} {test:?}");
                }
            }
        }
    }

    #[test]
    fn encoded_plans_evaluate_like_plan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let words = 7;
        let planes = BloomPlanes {
            params: BloomParams { bits: 64, hashes: 3, seed: 0 },
            words,
            planes: (0..64 * words).map(|_| rng.random::<u64>() | rng.random::<u64>()).collect(),
        };
        let mut plans = vec![Plan::all()];
        for _ in 0..200 {
            let mut p = Plan::default();
            random_plan(&mut rng, 5, &mut p);
            plans.push(p);
        }
        let refs: Vec<&Plan> = plans.iter().chain(plans.iter().take(3)).collect();
        let enc = encode(&refs).unwrap();
        assert_eq!(enc.offsets.len(), refs.len());
        // Shared plans share a record; only the empty plan is flagged trivial.
        assert_eq!(enc.offsets[plans.len()], enc.offsets[0]);
        assert!(enc.offsets[0] & TRIVIAL_BIT != 0);
        assert!(enc.offsets[1..plans.len()].iter().all(|o| o & TRIVIAL_BIT == 0));
        assert!(plans.iter().any(|p| p.has_typed()), "the random plans include typed terms");
        // An unbound typed term is refused, not evaluated as something else.
        let mut unbound = plans.iter().find(|p| p.has_typed()).unwrap().clone();
        unbound.terms.iter_mut().for_each(|t| t.mask = None);
        assert!(encode(&[&unbound]).is_err());
        for (i, p) in refs.iter().enumerate() {
            for w in 0..words {
                assert_eq!(bloom_word(&enc.words, enc.offsets[i], &planes, w), p.bloom_word(&planes, w), "plan {i} word {w}");
            }
            for _ in 0..20 {
                let mut row: Vec<u32> = (0..rng.random_range(0..5)).map(|_| rng.random_range(0..20)).collect();
                row.sort_unstable();
                row.dedup();
                let r = rng.random_range(0..words * 64);
                assert_eq!(matches(&enc.words, enc.offsets[i], r, &row), p.matches_bound(r, &row), "plan {i} row {r} {row:?}");
            }
        }
    }
}
