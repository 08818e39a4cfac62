//! The one binary encoding of filter plans that every GPU backend's kernels read
//! (`cuda/common.cuh` "Filter plans", `shaders/filter.wgsl`, `shaders/scan.wgsl`), with
//! its validator ([`Encoded::validate`]) and host evaluators ([`Encoded::matches`],
//! [`Encoded::bloom_word`]) that prove the words mean the [`Plan`] they came from.
//!
//! Layout, in u32 words: one record per distinct plan of a batch, `[n_ops][ops..]`
//! followed by its term records. An op is `kind << 30 | arg`: kind 0 Term (arg = offset
//! of its record from the plan start), 1 And, 2 Or, 3 Not. Term records:
//! * Bloom (string) term: `[nb][k][nb*k plane rows][nid][nid sorted value ids]`; value
//!   v's k plane rows at `2 + v*k`.
//! * Bound typed term ([`Plan::bind`]): `[MASK_TERM][m]`; its exact row mask, one u64
//!   per 64-row word (low half first), starts `m` words after the plan start, at an even
//!   word of `words` (8-byte aligned for the CUDA kernels' u64 loads).
//! * Unbound typed column term (CUDA only: `Backend::typed_terms`): `[COL_TERM][m]` with
//!   u64 data at `m` (even): the column's device addresses (keys, presence bits, per-word
//!   min/max keys), N, `negate | null << 1 | nranges << 8`, then the test's inclusive key
//!   intervals (`cuda/common.cuh` `col_word`, `col_row`).
//!
//! Per query, `offsets[q]` is the word offset of its plan's record, with [`TRIVIAL_BIT`]
//! set exactly when the plan passes everything (no ops). Queries sharing a `&Plan` share
//! its record. The wgpu shaders read [`Encoded::with_table`]: the offsets first (as
//! absolute offsets into the same buffer), then the records.

use super::{Op, Plan, TypedTest};
use std::collections::HashMap;

/// Shift of an op's kind (`op >> KIND_SHIFT`: 0 Term, 1 And, 2 Or, 3 Not).
pub const KIND_SHIFT: u32 = 30;
/// An op's argument bits (a Term's record offset from the plan start).
pub const ARG_MASK: u32 = (1 << KIND_SHIFT) - 1;
/// Op kind: push a term.
pub const TERM: u32 = 0;
/// Op: AND the two top values.
pub const AND: u32 = 1 << KIND_SHIFT;
/// Op: OR the two top values.
pub const OR: u32 = 2 << KIND_SHIFT;
/// Op: negate the top value (a Bloom "maybe" negates to all ones).
pub const NOT: u32 = 3 << KIND_SHIFT;
/// First word of a bound typed term's record (`MASK_TERM` in cuda/common.cuh and the shaders).
pub const MASK_TERM: u32 = u32::MAX;
/// First word of an unbound typed column term's record (`COL_TERM` in cuda/common.cuh).
pub const COL_TERM: u32 = u32::MAX - 1;
/// Bit 31 of a query's plan offset: the plan passes everything (kernels skip filtering).
pub const TRIVIAL_BIT: u32 = 1 << 31;
/// The kernels' evaluation stack (CUDA: one u32 of bits; WGSL: 32 entries) = [`super::MAX_DEPTH`].
pub const STACK: usize = super::MAX_DEPTH;
/// u32 words of a COL_TERM record's data before its key intervals (five u64).
const COL_HEAD: usize = 10;

/// A malformed plan, or an encoding the kernels would misread.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The program needs a deeper evaluation stack than the kernels have.
    #[error("filter plan {plan} nests {depth} deep, deeper than the kernels' {STACK}-entry evaluation stack")]
    TooDeep {
        /// Index of the plan among those encoded.
        plan: usize,
        /// Stack depth the program needs.
        depth: usize,
    },
    /// An And/Or/Not finds too few values on the stack.
    #[error("filter plan {plan}: op {op} pops an empty stack")]
    Underflow {
        /// Index of the plan among those encoded.
        plan: usize,
        /// Index of the op in the plan.
        op: usize,
    },
    /// The program does not end with exactly one value.
    #[error("filter plan {plan} leaves {values} values on the stack, not one")]
    Leftover {
        /// Index of the plan among those encoded.
        plan: usize,
        /// Values left on the stack.
        values: usize,
    },
    /// A Term op names a term the plan lacks.
    #[error("filter plan {plan} names term {term} it lacks")]
    MissingTerm {
        /// Index of the plan among those encoded.
        plan: usize,
        /// The term index named.
        term: u32,
    },
    /// A typed term not bound to the index and not evaluable by the backend.
    #[error("filter plan {plan}: typed filter term not bound to the index (Plan::bind)")]
    Unbound {
        /// Index of the plan among those encoded.
        plan: usize,
    },
    /// An unbound typed column term whose column is not resident on the device.
    #[error("typed filter term on column {name:?} neither bound (Plan::bind) nor resident on the device")]
    NoColumn {
        /// The column name.
        name: String,
    },
    /// A Bloom term whose values carry differing numbers of plane rows.
    #[error("filter plan {plan}: Bloom term with differing hash counts")]
    MixedHashes {
        /// Index of the plan among those encoded.
        plan: usize,
    },
    /// A Bloom term compiled for another Bloom k than the index's.
    #[error("filter compiled for {got} Bloom hashes, index uses {want}")]
    Hashes {
        /// Hashes per value in the filter.
        got: u32,
        /// Hashes per value in the index.
        want: u32,
    },
    /// A Bloom plane row past the index's planes.
    #[error("filter plan {plan}: Bloom plane row {row} out of range (the index has {bits} planes)")]
    PlaneRow {
        /// Index of the plan among those encoded.
        plan: usize,
        /// The plane row.
        row: u32,
        /// Bloom planes in the index.
        bits: u32,
    },
    /// Value ids that are not strictly ascending (the kernels merge sorted lists).
    #[error("filter plan {plan}: term value ids not strictly ascending")]
    Unsorted {
        /// Index of the plan among those encoded.
        plan: usize,
    },
    /// The words do not fit the 31-bit offsets (30-bit inside one plan).
    #[error("encoded filter plans too large ({words} words)")]
    TooLarge {
        /// u32 words the encoding needs.
        words: usize,
    },
    /// A plan offset, op or record reaching past the words.
    #[error("filter plan {plan}: {what} out of range")]
    OutOfRange {
        /// Index of the plan among those encoded.
        plan: usize,
        /// The part out of range.
        what: &'static str,
    },
    /// A mask or column record not at an even word.
    #[error("filter plan {plan}: typed term data not 8-byte aligned")]
    Misaligned {
        /// Index of the plan among those encoded.
        plan: usize,
    },
    /// [`TRIVIAL_BIT`] set on a plan with ops, or missing on one without.
    #[error("filter plan {plan}: trivial flag disagrees with its {ops} ops")]
    TrivialFlag {
        /// Index of the plan among those encoded.
        plan: usize,
        /// Ops in the plan.
        ops: usize,
    },
    /// A column term where the reading backend has no column evaluation.
    #[error("filter plan {plan}: column term not supported by this backend")]
    ColumnTerm {
        /// Index of the plan among those encoded.
        plan: usize,
    },
}

impl From<EncodeError> for crate::error::Error {
    fn from(e: EncodeError) -> Self {
        crate::error::Error::param("filters", e.to_string())
    }
}

/// A typed column resident on the device, as a [`COL_TERM`] record names it: addresses of
/// its `[N]` u64 keys, `[ceil(N/64)]` presence bits, `[ceil(N/64), 2]` word min/max keys,
/// and N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevColumn {
    /// Device address of the `[N]` u64 keys.
    pub keys: u64,
    /// Device address of the `[ceil(N/64)]` u64 presence bits.
    pub present: u64,
    /// Device address of the `[ceil(N/64), 2]` u64 per-word (min, max) keys.
    pub word_range: u64,
    /// Rows N.
    pub n: u64,
}

/// A decoded [`COL_TERM`] record: the column and its key test (inclusive intervals).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColTerm {
    /// The column's device addresses.
    pub col: DevColumn,
    /// The test is negated (a present key outside every interval passes).
    pub negate: bool,
    /// `IS NULL`: passes rows without a key.
    pub null: bool,
    /// Inclusive key intervals.
    pub ranges: Vec<(u64, u64)>,
}

/// A decoded term record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TermRecord<'a> {
    /// A string term: `nb` requested values, `k` plane rows each (`rows`: nb*k, value v's
    /// at `v*k`), and its sorted value ids.
    Bloom {
        /// Requested values.
        nb: u32,
        /// Plane rows per value (the index's Bloom k).
        k: u32,
        /// `nb * k` plane rows, value v's at `v * k`.
        rows: &'a [u32],
        /// Sorted value ids (exact test).
        ids: &'a [u32],
    },
    /// A bound typed term: its exact mask as u32 pairs (u64 word w = `[2w]` | `[2w+1]` << 32),
    /// reaching to the end of the words.
    Mask(&'a [u32]),
    /// An unbound typed column term.
    Column(ColTerm),
}

/// What a reading backend bounds the encoding by ([`Encoded::validate`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bloom planes of the index (plane rows must be below); `None`: unchecked.
    pub planes: Option<u32>,
    /// Bloom k of the index (every Bloom term's k); `None`: unchecked.
    pub hashes: Option<u32>,
    /// u64 words every mask must hold (ceil(N/64)); `None`: unchecked.
    pub mask_words: Option<usize>,
    /// The backend evaluates [`COL_TERM`] records.
    pub col_terms: bool,
}

/// Encoded plans of a batch: `words`, and per query the offset of its plan record
/// (with [`TRIVIAL_BIT`] set when the plan passes everything). `words` is never empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// The plan records, u32 words.
    pub words: Vec<u32>,
    /// Per query, the word offset of its plan record | [`TRIVIAL_BIT`] when trivial.
    pub offsets: Vec<u32>,
}

/// Encode `plans` (one per query; typed terms bound). Queries sharing a `&Plan` share its
/// record. Errors: a malformed program, an unbound typed term, a plan too large.
pub fn encode(plans: &[&Plan]) -> Result<Encoded, EncodeError> {
    encode_with(plans, &|_| None)
}

/// [`encode`] with unbound typed column terms as [`COL_TERM`] records over the device
/// columns `cols` gives by name. Errors: as [`encode`], and an unbound typed term whose
/// column `cols` lacks (or a presence test: those are always bound). The result passes
/// [`Encoded::validate`] with default [`Limits`] (column terms allowed when present).
pub fn encode_with(plans: &[&Plan], cols: &dyn Fn(&str) -> Option<DevColumn>) -> Result<Encoded, EncodeError> {
    let mut enc = Encoded::default();
    let mut seen: HashMap<*const Plan, u32> = HashMap::new();
    for (i, &plan) in plans.iter().enumerate() {
        let key = plan as *const Plan;
        if let Some(&off) = seen.get(&key) {
            enc.offsets.push(off);
            continue;
        }
        let off =
            u32::try_from(enc.words.len()).ok().filter(|&o| o < TRIVIAL_BIT).ok_or(EncodeError::TooLarge { words: enc.words.len() })?;
        encode_one(i, plan, &mut enc.words, cols)?;
        let off = if plan.is_all() { off | TRIVIAL_BIT } else { off };
        seen.insert(key, off);
        enc.offsets.push(off);
    }
    if enc.words.is_empty() {
        enc.words.push(0);
    }
    if enc.words.len() >= TRIVIAL_BIT as usize {
        return Err(EncodeError::TooLarge { words: enc.words.len() });
    }
    let col_terms = enc.words.contains(&COL_TERM);
    enc.validate(&Limits { col_terms, ..Limits::default() })?;
    Ok(enc)
}

/// Check that the postfix program is well formed and fits the kernels' stack.
fn check_program(i: usize, plan: &Plan) -> Result<(), EncodeError> {
    let mut depth = 0usize;
    for (j, op) in plan.ops.iter().enumerate() {
        match op {
            Op::Term(t) if *t as usize >= plan.terms.len() => return Err(EncodeError::MissingTerm { plan: i, term: *t }),
            Op::Term(_) => depth += 1,
            Op::And | Op::Or if depth < 2 => return Err(EncodeError::Underflow { plan: i, op: j }),
            Op::And | Op::Or => depth -= 1,
            Op::Not if depth < 1 => return Err(EncodeError::Underflow { plan: i, op: j }),
            Op::Not => {}
        }
    }
    if !plan.ops.is_empty() && depth != 1 {
        return Err(EncodeError::Leftover { plan: i, values: depth });
    }
    if plan.stack_depth() > STACK {
        return Err(EncodeError::TooDeep { plan: i, depth: plan.stack_depth() });
    }
    Ok(())
}

fn encode_one(i: usize, plan: &Plan, out: &mut Vec<u32>, cols: &dyn Fn(&str) -> Option<DevColumn>) -> Result<(), EncodeError> {
    check_program(i, plan)?;
    let base = out.len();
    let nops = plan.ops.len();
    out.push(nops as u32);
    out.extend(std::iter::repeat_n(0u32, nops));
    let too_large = |out: &Vec<u32>| EncodeError::TooLarge { words: out.len() };
    // `[tag][m]`, padding to an even word; returns the data offset m (from the plan start).
    let typed_head = |out: &mut Vec<u32>, tag: u32| -> Result<usize, EncodeError> {
        let rel = out.len() - base;
        out.extend_from_slice(&[tag, 0]);
        if out.len() % 2 == 1 {
            out.push(0);
        }
        let m = out.len() - base;
        if m >= 1 << 31 {
            return Err(too_large(out));
        }
        out[base + rel + 1] = m as u32;
        Ok(m)
    };
    let mut term_off = vec![0u32; plan.terms.len()];
    for (ti, t) in plan.terms.iter().enumerate() {
        let rel = out.len() - base;
        if rel > ARG_MASK as usize {
            return Err(too_large(out));
        }
        term_off[ti] = rel as u32;
        if let (None, Some(TypedTest::Column { name, test })) = (&t.mask, t.typed.as_deref()) {
            let c = cols(name).ok_or_else(|| EncodeError::NoColumn { name: name.clone() })?;
            if test.ranges.len() >= 1 << 24 {
                return Err(too_large(out));
            }
            typed_head(out, COL_TERM)?;
            let flags = test.negate as u64 | (test.null as u64) << 1 | (test.ranges.len() as u64) << 8;
            let data = [c.keys, c.present, c.word_range, c.n, flags].into_iter().chain(test.ranges.iter().flat_map(|&(a, b)| [a, b]));
            out.extend(data.flat_map(|x| [x as u32, (x >> 32) as u32]));
            continue;
        }
        if t.typed.is_some() {
            let mask = t.mask.as_ref().ok_or(EncodeError::Unbound { plan: i })?;
            typed_head(out, MASK_TERM)?;
            out.extend(mask.iter().flat_map(|&x| [x as u32, (x >> 32) as u32]));
            continue;
        }
        let k = t.bloom_rows.first().map_or(0, |r| r.len());
        if t.bloom_rows.iter().any(|r| r.len() != k) {
            return Err(EncodeError::MixedHashes { plan: i });
        }
        out.push(t.bloom_rows.len() as u32);
        out.push(k as u32);
        for rows in &t.bloom_rows {
            out.extend_from_slice(rows);
        }
        out.push(t.value_ids.len() as u32);
        out.extend_from_slice(&t.value_ids);
    }
    for (j, op) in plan.ops.iter().enumerate() {
        out[base + 1 + j] = match *op {
            Op::Term(t) => TERM | term_off[t as usize],
            Op::And => AND,
            Op::Or => OR,
            Op::Not => NOT,
        };
    }
    Ok(())
}

/// u64 from two u32 words, low first.
#[inline]
fn u64_at(w: &[u32], i: usize) -> u64 {
    w[i] as u64 | (w[i + 1] as u64) << 32
}

impl Encoded {
    /// The record of query `q`'s plan (from its first word to the end of the words).
    pub fn plan(&self, q: usize) -> &[u32] {
        &self.words[(self.offsets[q] & !TRIVIAL_BIT) as usize..]
    }

    /// Decode the term record at `arg` words after the start of plan `p` (a slice of
    /// [`Encoded::words`] from the plan start). Errors: a record reaching past the words.
    pub fn term(p: &[u32], arg: u32, plan: usize) -> Result<TermRecord<'_>, EncodeError> {
        let oob = |what| EncodeError::OutOfRange { plan, what };
        let t = p.get(arg as usize..).filter(|t| t.len() >= 2).ok_or(oob("term record"))?;
        match t[0] {
            MASK_TERM => Ok(TermRecord::Mask(p.get(t[1] as usize..).ok_or(oob("typed term mask"))?)),
            COL_TERM => {
                let d = p.get(t[1] as usize..).filter(|d| d.len() >= COL_HEAD).ok_or(oob("column term data"))?;
                let flags = u64_at(d, 8);
                let nr = (flags >> 8) as usize;
                let r = d.get(COL_HEAD..COL_HEAD + 4 * nr).ok_or(oob("column term intervals"))?;
                Ok(TermRecord::Column(ColTerm {
                    col: DevColumn { keys: u64_at(d, 0), present: u64_at(d, 2), word_range: u64_at(d, 4), n: u64_at(d, 6) },
                    negate: flags & 1 == 1,
                    null: flags & 2 == 2,
                    ranges: r.chunks(4).map(|c| (u64_at(c, 0), u64_at(c, 2))).collect(),
                }))
            }
            nb => {
                let (nb, k) = (nb as usize, t[1] as usize);
                let nrows = nb.checked_mul(k).filter(|&n| n < t.len()).ok_or(oob("Bloom term rows"))?;
                let nid = *t.get(2 + nrows).ok_or(oob("Bloom term ids"))? as usize;
                let ids = t.get(3 + nrows..3 + nrows + nid).ok_or(oob("Bloom term ids"))?;
                Ok(TermRecord::Bloom { nb: nb as u32, k: k as u32, rows: &t[2..2 + nrows], ids })
            }
        }
    }

    /// Check that every query's record is one the kernels read as intended, within
    /// `lim`: offsets and records in range, a well-formed program no deeper than
    /// [`STACK`], the trivial flag exactly on plans without ops, masks and column data at
    /// even words, strictly ascending value ids, plane rows and k within the index.
    /// Errors: the first violation found, typed.
    pub fn validate(&self, lim: &Limits) -> Result<(), EncodeError> {
        for (q, &off) in self.offsets.iter().enumerate() {
            let start = (off & !TRIVIAL_BIT) as usize;
            let p = self.words.get(start..).filter(|p| !p.is_empty()).ok_or(EncodeError::OutOfRange { plan: q, what: "plan offset" })?;
            let nops = p[0] as usize;
            if (nops == 0) != (off & TRIVIAL_BIT != 0) {
                return Err(EncodeError::TrivialFlag { plan: q, ops: nops });
            }
            let ops = p.get(1..1 + nops).ok_or(EncodeError::OutOfRange { plan: q, what: "ops" })?;
            let (mut depth, mut max) = (0usize, 0usize);
            for (j, &op) in ops.iter().enumerate() {
                match op >> KIND_SHIFT {
                    0 => {
                        depth += 1;
                        self.check_term(q, start, p, op & ARG_MASK, lim)?;
                    }
                    3 if depth >= 1 => {}
                    1 | 2 if depth >= 2 => depth -= 1,
                    _ => return Err(EncodeError::Underflow { plan: q, op: j }),
                }
                max = max.max(depth);
            }
            if max > STACK {
                return Err(EncodeError::TooDeep { plan: q, depth: max });
            }
            if nops != 0 && depth != 1 {
                return Err(EncodeError::Leftover { plan: q, values: depth });
            }
        }
        Ok(())
    }

    fn check_term(&self, q: usize, start: usize, p: &[u32], arg: u32, lim: &Limits) -> Result<(), EncodeError> {
        let aligned = |t: &[u32]| if (start + t[1] as usize).is_multiple_of(2) { Ok(()) } else { Err(EncodeError::Misaligned { plan: q }) };
        if p.get(arg as usize) == Some(&COL_TERM) && !lim.col_terms {
            return Err(EncodeError::ColumnTerm { plan: q });
        }
        match Self::term(p, arg, q)? {
            TermRecord::Mask(m) => {
                aligned(&p[arg as usize..])?;
                if lim.mask_words.is_some_and(|n| m.len() < 2 * n) {
                    return Err(EncodeError::OutOfRange { plan: q, what: "typed term mask" });
                }
            }
            TermRecord::Column(_) => aligned(&p[arg as usize..])?,
            TermRecord::Bloom { k, rows, ids, .. } => {
                if let Some(want) = lim.hashes.filter(|&h| !rows.is_empty() && h != k) {
                    return Err(EncodeError::Hashes { got: k, want });
                }
                if let Some((bits, &row)) = lim.planes.and_then(|b| rows.iter().find(|&&r| r >= b).map(|r| (b, r))) {
                    return Err(EncodeError::PlaneRow { plan: q, row, bits });
                }
                if ids.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(EncodeError::Unsorted { plan: q });
                }
            }
        }
        Ok(())
    }

    /// Run query `q`'s program over 64-bit lanes: `term` gives a term's value, `not`
    /// negates; AND and OR are bitwise; a trivial plan is all ones. Panics on an encoding
    /// that fails [`Encoded::validate`].
    pub fn run(&self, q: usize, term: impl Fn(&TermRecord) -> u64, not: impl Fn(u64) -> u64) -> u64 {
        let p = self.plan(q);
        let nops = p[0] as usize;
        if nops == 0 {
            return !0;
        }
        let mut st: Vec<u64> = Vec::with_capacity(STACK);
        for &op in &p[1..1 + nops] {
            match op >> KIND_SHIFT {
                0 => st.push(term(&Self::term(p, op & ARG_MASK, q).expect("validated encoding"))),
                3 => {
                    let x = st.last_mut().expect("validated encoding");
                    *x = not(*x);
                }
                kind => {
                    let b = st.pop().expect("validated encoding");
                    let a = st.last_mut().expect("validated encoding");
                    *a = if kind == 1 { *a & b } else { *a | b };
                }
            }
        }
        st[0]
    }

    /// Host mirror of the kernels' Bloom pass (`plan_bloom_word`, filter.wgsl
    /// `bloom_word`): query `q`'s "maybe" word `w` over `planes`; a Bloom term is the OR
    /// over its values of the AND of the value's k planes, a bound typed term its mask
    /// word, NOT all ones. `col` evaluates a column term on word `w` (CUDA's `col_word`).
    pub fn bloom_word_with(&self, q: usize, planes: &crate::model::BloomPlanes, w: usize, col: &dyn Fn(&ColTerm, usize) -> u64) -> u64 {
        let term = |t: &TermRecord| match t {
            TermRecord::Mask(m) => u64_at(m, 2 * w),
            TermRecord::Column(c) => col(c, w),
            TermRecord::Bloom { nb, k, rows, .. } => (0..*nb as usize)
                .map(|v| &rows[v * *k as usize..(v + 1) * *k as usize])
                .fold(0u64, |any, v| any | v.iter().fold(!0u64, |all, &h| all & planes.word(h, w))),
        };
        self.run(q, term, |_| !0)
    }

    /// [`Encoded::bloom_word_with`] for encodings without column terms.
    pub fn bloom_word(&self, q: usize, planes: &crate::model::BloomPlanes, w: usize) -> u64 {
        self.bloom_word_with(q, planes, w, &|_, _| unreachable!("column term outside a COL_TERM encoding"))
    }

    /// Host mirror of the kernels' exact pass (`plan_match`, scan.wgsl `matches`): does
    /// row `r` with sorted value ids `row` pass query `q`'s plan? A Bloom term passes
    /// when the row holds any of its ids, a bound typed term reads bit `r` of its mask;
    /// `col` evaluates a column term on row `r` (CUDA's `col_row`).
    pub fn matches_with(&self, q: usize, r: usize, row: &[u32], col: &dyn Fn(&ColTerm, usize) -> bool) -> bool {
        let term = |t: &TermRecord| {
            let hit = match t {
                TermRecord::Mask(m) => u64_at(m, 2 * (r / 64)) >> (r % 64) & 1 == 1,
                TermRecord::Column(c) => col(c, r),
                TermRecord::Bloom { ids, .. } => ids.iter().any(|v| row.binary_search(v).is_ok()),
            };
            if hit { !0 } else { 0 }
        };
        self.run(q, term, |x| !x) != 0
    }

    /// [`Encoded::matches_with`] for encodings without column terms.
    pub fn matches(&self, q: usize, r: usize, row: &[u32]) -> bool {
        self.matches_with(q, r, row, &|_, _| unreachable!("column term outside a COL_TERM encoding"))
    }

    /// The single-buffer form the wgpu shaders read: `h` = the query count rounded up
    /// to even, then `blob[q]` = `h + offsets[q]` (with [`TRIVIAL_BIT`] kept) and the
    /// records at `blob[h ..]` (even, so masks stay 8-byte aligned). Errors: a blob
    /// beyond `max_words`.
    pub fn with_table(&self, max_words: usize) -> Result<Vec<u32>, EncodeError> {
        let h = self.offsets.len().next_multiple_of(2);
        let len = h + self.words.len();
        if len >= max_words.min(TRIVIAL_BIT as usize) {
            return Err(EncodeError::TooLarge { words: len });
        }
        let mut blob = Vec::with_capacity(len);
        blob.extend(self.offsets.iter().map(|&o| ((o & !TRIVIAL_BIT) + h as u32) | (o & TRIVIAL_BIT)));
        blob.resize(h, 0);
        blob.extend_from_slice(&self.words);
        Ok(blob)
    }
}

#[cfg(test)]
mod tests;
