//! Compiled filters: a postfix program over terms. Backends evaluate it twice:
//! * [`Plan::bloom_word`]: over 64 items at once from Bloom bit-planes. A term is the OR
//!   over its values of the AND of the value's k planes. `NOT` yields all ones: a Bloom
//!   hit cannot prove presence, so negation never prunes (DESIGN.md invariants).
//!   The result is a superset of the passing items ("maybe" mask).
//! * [`Plan::matches`]: exactly, over a row's sorted attribute value ids.
//!
//! Typed terms (numeric and boolean comparisons, `IS [NOT] NULL`, a string field's
//! presence under `!=` / `NOT IN`) carry a [`TypedTest`]. [`Plan::bind`] evaluates each
//! against one index into an exact row bitset (`Term::mask`, skipping lists and words by
//! their stored min/max); a backend then reads the mask word for both the Bloom pass
//! (it is exact, so it prunes) and the exact pass (its bit). The executor binds plans
//! once per search, against the snapshot it searches. Backends that evaluate typed column
//! terms themselves (`Backend::typed_terms`: cpu, cuda) get column terms unbound and
//! compute the same bits per word ([`Plan::bloom_word_in`], `Column::word`) and per row
//! ([`Plan::matches_in`]) over the probed lists only, so a bound that changes per query
//! costs no pass over the whole column.

use super::parse::{CmpOp, Value};
use super::{Expr, FilterError};
use crate::model::columns::{KeyTest, key_f64, key_i64, parse_timestamp};
use crate::model::{BloomParams, BloomPlanes, ColumnType, Index, Schema};
use std::sync::Arc;

/// What filter compilation needs from an attribute dictionary. [`Schema`] implements it;
/// `silica serve` implements it over a schema plus values appended after the build.
pub trait Dictionary {
    /// Field index by name.
    fn field(&self, name: &str) -> Option<usize>;
    /// Global value id of `value` in field `field`, if known.
    fn value_id(&self, field: usize, value: &str) -> Option<u32>;
    /// All field names (for "unknown field" messages).
    fn field_names(&self) -> Vec<String>;
    /// The type of typed column `name`, if the index has one.
    fn column(&self, name: &str) -> Option<ColumnType> {
        let _ = name;
        None
    }
    /// Global value ids of string field `field`, as sorted inclusive intervals (for
    /// presence tests: `IS NULL`, `!=`).
    fn field_ids(&self, field: usize) -> Vec<(u32, u32)>;
}

impl Dictionary for Schema {
    fn field(&self, name: &str) -> Option<usize> {
        Schema::field(self, name)
    }
    fn value_id(&self, field: usize, value: &str) -> Option<u32> {
        Schema::value_id(self, field, value)
    }
    fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).chain(self.columns.iter().map(|c| c.name.clone())).collect()
    }
    fn column(&self, name: &str) -> Option<ColumnType> {
        self.columns.iter().find(|c| c.name == name).map(|c| c.ty)
    }
    fn field_ids(&self, field: usize) -> Vec<(u32, u32)> {
        let f = &self.fields[field];
        if f.values.is_empty() { Vec::new() } else { vec![(f.base, f.base + f.values.len() as u32 - 1)] }
    }
}

/// A typed term's test, evaluated per index by [`Plan::bind`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypedTest {
    /// A typed column's key test.
    Column {
        /// The column's field name.
        name: String,
        /// The interval test over its order-preserving keys.
        test: KeyTest,
    },
    /// A string field's presence: the row holds a value id in `ids` (`null`: it holds none).
    Present {
        /// The string field's name.
        field: String,
        /// The field's global value ids, sorted inclusive intervals.
        ids: Vec<(u32, u32)>,
        /// `IS NULL`: pass rows holding none of `ids` instead.
        null: bool,
    },
}

impl TypedTest {
    /// Exact test of sorted row `r` of `ix` (`row`: its value ids).
    fn test(&self, ix: &Index, r: usize, row: &[u32]) -> bool {
        match self {
            TypedTest::Column { name, test } => match ix.columns.get(name) {
                Some(c) if c.len() == ix.len() => c.test(test, r),
                _ => test.null,
            },
            TypedTest::Present { ids, null, .. } => row.iter().any(|&v| ids.iter().any(|&(a, b)| a <= v && v <= b)) != *null,
        }
    }

    /// The rows of `ix` passing, as a bitset `[ceil(N/64)]` (bits past N clear).
    fn mask(&self, ix: &Index) -> Vec<u64> {
        use rayon::prelude::*;
        let n = ix.len();
        match self {
            TypedTest::Column { name, test } => match ix.columns.get(name) {
                Some(c) if c.len() == n => c.eval(test, &ix.list_offsets),
                _ => (0..n.div_ceil(64)).map(|w| self.word(ix, w)).collect(),
            },
            TypedTest::Present { .. } => (0..n.div_ceil(64)).into_par_iter().map(|w| self.word(ix, w)).collect(),
        }
    }

    /// Word `w` of `TypedTest::mask` (the whole bitset), computed alone (a column test: from the column's
    /// word min/max and, when they do not decide it, its 64 keys; see [`Column::word`]).
    ///
    /// [`Column::word`]: crate::model::columns::Column::word
    pub fn word(&self, ix: &Index, w: usize) -> u64 {
        let n = ix.len();
        match self {
            TypedTest::Column { name, test } => match ix.columns.get(name) {
                Some(c) if c.len() == n => c.word(test, w),
                _ => {
                    if test.null {
                        crate::backend::cpu::range_bits(w, &(0..n))
                    } else {
                        0
                    }
                }
            },
            TypedTest::Present { .. } => {
                let mut m = 0u64;
                for r in w * 64..((w + 1) * 64).min(n) {
                    if self.test(ix, r, ix.attrs.row(r)) {
                        m |= 1 << (r % 64);
                    }
                }
                m
            }
        }
    }

    /// True when a backend that evaluates typed column terms itself
    /// ([`crate::backend::Backend::typed_terms`]) still needs this test as a host mask:
    /// presence tests of string fields (they read the attribute CSR; one mask per field,
    /// cached per snapshot) and tests of a column `ix` lacks (a constant mask).
    pub fn needs_host_mask(&self, ix: &Index) -> bool {
        match self {
            TypedTest::Column { name, .. } => ix.columns.get(name).is_none_or(|c| c.len() != ix.len()),
            TypedTest::Present { .. } => true,
        }
    }
}

/// Deepest evaluation stack a plan may need (kernels use fixed-size stacks).
pub const MAX_DEPTH: usize = 32;

/// Words per [`Plan::bloom_words`] call (its stack is `MAX_DEPTH x BLOOM_BLOCK` words, 16 KiB).
pub const BLOOM_BLOCK: usize = 64;

/// One term: the row passes when it has any of `value_ids` (a string term), or when it
/// passes `typed` (a typed term; then `value_ids` and `bloom_rows` are empty).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Term {
    /// Sorted global value ids (values absent from the dictionary are dropped: they match nothing).
    pub value_ids: Vec<u32>,
    /// Per requested value (present or not), its k Bloom plane rows.
    pub bloom_rows: Vec<Vec<u32>>,
    /// A typed term's test.
    pub typed: Option<Arc<TypedTest>>,
    /// A typed term's exact row bitset over the index it was bound to ([`Plan::bind`]).
    pub mask: Option<Arc<[u64]>>,
}

impl Term {
    /// Word `w` of a bound typed term's mask (an unbound one: all ones, a superset).
    #[inline]
    fn mask_word(&self, w: usize) -> u64 {
        self.mask.as_ref().map_or(!0, |m| m[w])
    }

    /// Word `w` of a typed term over `ix`, exactly: its bound mask when that covers `ix`,
    /// else its test evaluated on the word ([`TypedTest::word`]).
    #[inline]
    fn typed_word(&self, ix: &Index, w: usize) -> u64 {
        match (&self.mask, &self.typed) {
            (Some(m), _) if m.len() == ix.len().div_ceil(64) => m[w],
            (_, Some(t)) => t.word(ix, w),
            (_, None) => !0,
        }
    }
}

/// Postfix instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Push term `i`.
    Term(u32),
    /// Pop two, push their AND.
    And,
    /// Pop two, push their OR.
    Or,
    /// Negate the top (over Bloom words: all ones, see the module docs).
    Not,
}

/// A compiled filter. An empty `ops` passes everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// The postfix program; at most [`MAX_DEPTH`] deep ([`Plan::stack_depth`]).
    pub ops: Vec<Op>,
    /// The terms `Op::Term(i)` pushes, indexed by `i`.
    pub terms: Vec<Term>,
}

impl Plan {
    /// The plan that passes every item.
    pub fn all() -> Plan {
        Plan::default()
    }

    /// The plan that passes no item (one term with no values: no Bloom row, no value id).
    pub fn nothing() -> Plan {
        Plan { ops: vec![Op::Term(0)], terms: vec![Term::default()] }
    }

    /// True when the plan passes every item without evaluation.
    pub fn is_all(&self) -> bool {
        self.ops.is_empty()
    }

    /// Maximum evaluation stack depth (for fixed-size stacks in kernels).
    pub fn stack_depth(&self) -> usize {
        let (mut d, mut m) = (0usize, 0usize);
        for op in &self.ops {
            match op {
                Op::Term(_) => d += 1,
                Op::And | Op::Or => d -= 1,
                Op::Not => {}
            }
            m = m.max(d);
        }
        m
    }

    /// Resolve `expr` against `schema`. Unknown fields are an error naming the column.
    ///
    /// # Errors
    /// [`FilterError::UnknownField`] for a field `schema` lacks; [`FilterError::Type`] for
    /// a value or operator that does not fit the field's type; [`FilterError::Syntax`]
    /// (column 1) when the program would need a stack deeper than [`MAX_DEPTH`].
    pub fn compile<D: Dictionary + ?Sized>(expr: Option<&Expr>, schema: &D, bloom: &BloomParams) -> Result<Plan, FilterError> {
        let mut plan = Plan::default();
        if let Some(e) = expr {
            plan.emit(e, schema, bloom)?;
        }
        if plan.stack_depth() > MAX_DEPTH {
            return Err(FilterError::Syntax {
                column: 1,
                token: String::new(),
                message: format!("filter nests deeper than {MAX_DEPTH} levels; add parentheses to group it"),
            });
        }
        Ok(plan)
    }

    fn push(&mut self, t: Term) {
        self.terms.push(t);
        self.ops.push(Op::Term(self.terms.len() as u32 - 1));
    }

    fn typed(&mut self, t: TypedTest) {
        self.push(Term { typed: Some(Arc::new(t)), ..Term::default() });
    }

    fn emit<D: Dictionary + ?Sized>(&mut self, e: &Expr, schema: &D, bloom: &BloomParams) -> Result<(), FilterError> {
        let (field, column) = match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.emit(a, schema, bloom)?;
                self.emit(b, schema, bloom)?;
                self.ops.push(if matches!(e, Expr::And(..)) { Op::And } else { Op::Or });
                return Ok(());
            }
            Expr::Not(a) => {
                self.emit(a, schema, bloom)?;
                self.ops.push(Op::Not);
                return Ok(());
            }
            Expr::Term { field, column, .. }
            | Expr::Cmp { field, column, .. }
            | Expr::In { field, column, .. }
            | Expr::Between { field, column, .. }
            | Expr::Null { field, column, .. } => (field, *column),
        };
        if let Some(ty) = schema.column(field) {
            return self.emit_typed(e, field, ty);
        }
        let f = schema.field(field).ok_or_else(|| FilterError::UnknownField {
            column,
            field: field.clone(),
            known: schema.field_names().join(", "),
        })?;
        let present = |null| TypedTest::Present { field: field.clone(), ids: schema.field_ids(f), null };
        let strings = |vals: &[(Value, usize)]| -> Result<Vec<String>, FilterError> {
            vals.iter()
                .map(|(v, at)| match v {
                    Value::Str(s) => Ok(s.clone()),
                    other => Err(FilterError::Type {
                        column: *at,
                        field: field.clone(),
                        message: format!("holds strings; compare it with a double-quoted string, not {other}"),
                    }),
                })
                .collect()
        };
        match e {
            Expr::Term { values, .. } => self.string_term(field, f, values, schema, bloom),
            // `!=` and `NOT IN` follow SQL: a row without the field matches neither.
            Expr::Cmp { op: CmpOp::Ne, value, at, .. } | Expr::Cmp { op: CmpOp::Eq, value, at, .. } => {
                let values = strings(&[(value.clone(), *at)])?;
                let ne = matches!(e, Expr::Cmp { op: CmpOp::Ne, .. });
                if ne {
                    self.typed(present(false));
                }
                self.string_term(field, f, &values, schema, bloom);
                if ne {
                    self.ops.push(Op::Not);
                    self.ops.push(Op::And);
                }
            }
            Expr::In { values, negated, .. } => {
                let values = strings(values)?;
                if *negated {
                    self.typed(present(false));
                }
                self.string_term(field, f, &values, schema, bloom);
                if *negated {
                    self.ops.push(Op::Not);
                    self.ops.push(Op::And);
                }
            }
            Expr::Null { negated, .. } => self.typed(present(!negated)),
            Expr::Cmp { at, .. } | Expr::Between { lo: (_, at), .. } => {
                return Err(FilterError::Type {
                    column: *at,
                    field: field.clone(),
                    message: "holds strings; ordering comparisons (<, <=, >, >=, BETWEEN) need an int, float, bool or timestamp field"
                        .into(),
                });
            }
            Expr::And(..) | Expr::Or(..) | Expr::Not(..) => unreachable!("handled above"),
        }
        Ok(())
    }

    fn string_term<D: Dictionary + ?Sized>(&mut self, field: &str, f: usize, values: &[String], schema: &D, bloom: &BloomParams) {
        let mut value_ids: Vec<u32> = values.iter().filter_map(|v| schema.value_id(f, v)).collect();
        value_ids.sort_unstable();
        value_ids.dedup();
        let bloom_rows = values.iter().map(|v| bloom.positions(field, v)).collect();
        self.push(Term { value_ids, bloom_rows, ..Term::default() });
    }

    /// A typed column's condition as one key test.
    fn emit_typed(&mut self, e: &Expr, field: &str, ty: ColumnType) -> Result<(), FilterError> {
        let key = |v: &Value, at: usize| typed_key(v, ty, field, at);
        let test = match e {
            Expr::Term { values, column, .. } => {
                let mut ks = values.iter().map(|v| key(&Value::Str(v.clone()), *column)).collect::<Result<Vec<u64>, _>>()?;
                ks.sort_unstable();
                ks.dedup();
                KeyTest { ranges: ks.into_iter().map(|k| (k, k)).collect(), negate: false, null: false }
            }
            Expr::Cmp { op, value, at, .. } => {
                let k = key(value, *at)?;
                let ranges = match op {
                    CmpOp::Eq | CmpOp::Ne => vec![(k, k)],
                    CmpOp::Lt => k.checked_sub(1).map(|h| vec![(0, h)]).unwrap_or_default(),
                    CmpOp::Le => vec![(0, k)],
                    CmpOp::Gt => k.checked_add(1).map(|l| vec![(l, u64::MAX)]).unwrap_or_default(),
                    CmpOp::Ge => vec![(k, u64::MAX)],
                };
                KeyTest { ranges, negate: *op == CmpOp::Ne, null: false }
            }
            Expr::In { values, negated, .. } => {
                let mut ks = values.iter().map(|(v, at)| key(v, *at)).collect::<Result<Vec<u64>, _>>()?;
                ks.sort_unstable();
                ks.dedup();
                KeyTest { ranges: ks.into_iter().map(|k| (k, k)).collect(), negate: *negated, null: false }
            }
            Expr::Between { lo, hi, .. } => {
                let (a, b) = (key(&lo.0, lo.1)?, key(&hi.0, hi.1)?);
                KeyTest { ranges: if a <= b { vec![(a, b)] } else { Vec::new() }, negate: false, null: false }
            }
            Expr::Null { negated, .. } => {
                if *negated {
                    KeyTest { ranges: vec![(0, u64::MAX)], negate: false, null: false }
                } else {
                    KeyTest { ranges: Vec::new(), negate: false, null: true }
                }
            }
            Expr::And(..) | Expr::Or(..) | Expr::Not(..) => unreachable!("typed leaves only"),
        };
        self.typed(TypedTest::Column { name: field.to_string(), test });
        Ok(())
    }

    /// True when some term is typed (the plan must be bound to an index before a GPU
    /// backend evaluates it).
    pub fn has_typed(&self) -> bool {
        self.terms.iter().any(|t| t.typed.is_some())
    }

    /// True when every typed term carries a mask for `n` rows.
    pub fn is_bound(&self, n: usize) -> bool {
        self.terms.iter().all(|t| t.typed.is_none() || t.mask.as_ref().is_some_and(|m| m.len() == n.div_ceil(64)))
    }

    /// This plan with every typed term's exact row mask computed over `ix`
    /// ([`TypedTest`]); string terms are unchanged. Cost: per typed term, one pass over the
    /// lists and words whose min/max do not decide it (presence tests: one pass over the
    /// attribute CSR).
    pub fn bind(&self, ix: &Index) -> Plan {
        self.bind_with(|test| test.mask(ix).into())
    }

    /// [`Plan::bind`] with the masks from `mask` (a cache over one index: the executor
    /// keeps the masks of recent typed terms of its snapshot).
    pub fn bind_with(&self, mask: impl FnMut(&TypedTest) -> Arc<[u64]>) -> Plan {
        self.bind_some(|_| true, mask)
    }

    /// [`Plan::bind_with`] for the typed terms whose test passes `bind`; the other typed
    /// terms are left unbound (a mask they carry is dropped: it may describe another
    /// snapshot), for backends that evaluate them per query.
    pub fn bind_some(&self, bind: impl Fn(&TypedTest) -> bool, mut mask: impl FnMut(&TypedTest) -> Arc<[u64]>) -> Plan {
        self.bind_opt(|t| bind(t).then(|| mask(t)))
    }

    /// [`Plan::bind_some`] with one closure: `mask` gives a typed term's mask, or `None`
    /// to leave it unbound.
    pub fn bind_opt(&self, mut mask: impl FnMut(&TypedTest) -> Option<Arc<[u64]>>) -> Plan {
        let mut p = self.clone();
        for t in &mut p.terms {
            if let Some(test) = &t.typed {
                t.mask = mask(test);
            }
        }
        p
    }

    /// The exact row mask of `test` over `ix` (what [`Plan::bind`] stores).
    pub fn typed_mask(test: &TypedTest, ix: &Index) -> Vec<u64> {
        test.mask(ix)
    }

    /// Exact evaluation of sorted row `r` of `ix` (`row` = its value ids): typed terms read
    /// their bound mask, or (unbound) test the index's column directly.
    pub fn matches_in(&self, ix: &Index, r: usize, row: &[u32]) -> bool {
        let hit = |t: &Term| {
            let h = match (&t.mask, &t.typed) {
                (Some(m), Some(_)) if m.len() == ix.len().div_ceil(64) => m[r / 64] >> (r % 64) & 1 == 1,
                (_, Some(test)) => test.test(ix, r, row),
                (_, None) => t.value_ids.iter().any(|v| row.binary_search(v).is_ok()),
            };
            if h { !0 } else { 0 }
        };
        self.run(hit, |x| !x) != 0
    }

    /// Exact evaluation of row `r` (value ids `row`) from bound masks alone (what the
    /// kernels compute; an unbound typed term does not match).
    pub fn matches_bound(&self, r: usize, row: &[u32]) -> bool {
        let hit = |t: &Term| {
            let h = match (&t.mask, &t.typed) {
                (Some(m), Some(_)) => m.get(r / 64).is_some_and(|w| w >> (r % 64) & 1 == 1),
                (None, Some(_)) => false,
                (_, None) => t.value_ids.iter().any(|v| row.binary_search(v).is_ok()),
            };
            if h { !0 } else { 0 }
        };
        self.run(hit, |x| !x) != 0
    }

    /// [`Plan::matches_in`] for row `r` of `ix`.
    pub fn matches_row(&self, ix: &Index, r: usize) -> bool {
        self.matches_in(ix, r, ix.attrs.row(r))
    }

    /// Run the postfix program over 64-bit lanes: `term` gives a term's lanes, `not` negates
    /// (exactly, or as "maybe": all ones); AND and OR are bitwise. Empty program: all ones.
    #[inline(always)]
    fn run(&self, term: impl Fn(&Term) -> u64, not: impl Fn(u64) -> u64) -> u64 {
        let mut stack = [0u64; MAX_DEPTH];
        let mut sp = 0usize;
        for op in &self.ops {
            match *op {
                Op::Term(t) => {
                    stack[sp] = term(&self.terms[t as usize]);
                    sp += 1;
                }
                Op::Not => stack[sp - 1] = not(stack[sp - 1]),
                Op::And => {
                    sp -= 1;
                    stack[sp - 1] &= stack[sp];
                }
                Op::Or => {
                    sp -= 1;
                    stack[sp - 1] |= stack[sp];
                }
            }
        }
        if self.ops.is_empty() { !0 } else { stack[0] }
    }

    /// Exact evaluation over one row's sorted value ids (string terms only: a typed term
    /// needs the row's index, see [`Plan::matches_in`]; here it does not match).
    pub fn matches(&self, row: &[u32]) -> bool {
        let hit = |t: &Term| if t.value_ids.iter().any(|v| row.binary_search(v).is_ok()) { !0 } else { 0 };
        self.run(hit, |x| !x) != 0
    }

    /// [`Plan::bloom_word`] for the consecutive words `w0 .. w0 + out.len()` (at most
    /// [`BLOOM_BLOCK`]) at once: the same program with every step a loop over the block,
    /// which the compiler vectorizes and which reads each plane sequentially. Used where a
    /// filter is evaluated over all words (the planner's Bloom count).
    pub fn bloom_words(&self, planes: &BloomPlanes, w0: usize, out: &mut [u64]) {
        self.bloom_words_with(planes, w0, out, |t, w| t.mask_word(w))
    }

    /// [`Plan::bloom_words`] over `ix` with its typed terms exact (bound or not:
    /// [`Plan::bloom_word_in`]).
    pub fn bloom_words_in(&self, ix: &Index, w0: usize, out: &mut [u64]) {
        self.bloom_words_with(&ix.bloom, w0, out, |t, w| t.typed_word(ix, w))
    }

    fn bloom_words_with(&self, planes: &BloomPlanes, w0: usize, out: &mut [u64], typed: impl Fn(&Term, usize) -> u64) {
        let n = out.len();
        assert!(n <= BLOOM_BLOCK && w0 + n <= planes.words, "block of {n} words at {w0} outside 0..{}", planes.words);
        if self.ops.is_empty() {
            out.fill(!0);
            return;
        }
        let mut stack = [[0u64; BLOOM_BLOCK]; MAX_DEPTH];
        let mut sp = 0usize;
        for op in &self.ops {
            match *op {
                Op::Term(t) => {
                    let dst = &mut stack[sp][..n];
                    let term = &self.terms[t as usize];
                    if term.typed.is_some() {
                        dst.iter_mut().enumerate().for_each(|(i, d)| *d = typed(term, w0 + i));
                        sp += 1;
                        continue;
                    }
                    dst.fill(0);
                    for rows in &term.bloom_rows {
                        let mut all = [!0u64; BLOOM_BLOCK];
                        for &b in rows {
                            let plane = &planes.planes[b as usize * planes.words + w0..][..n];
                            all[..n].iter_mut().zip(plane).for_each(|(a, p)| *a &= p);
                        }
                        dst.iter_mut().zip(&all[..n]).for_each(|(d, a)| *d |= a);
                    }
                    sp += 1;
                }
                // A Bloom hit cannot prove presence, so NOT cannot prune: all ones.
                Op::Not => stack[sp - 1][..n].fill(!0),
                Op::And | Op::Or => {
                    sp -= 1;
                    let (lo, hi) = stack.split_at_mut(sp);
                    let (a, b) = (&mut lo[sp - 1][..n], &hi[0][..n]);
                    if *op == Op::And {
                        a.iter_mut().zip(b).for_each(|(x, y)| *x &= y);
                    } else {
                        a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
                    }
                }
            }
        }
        out.copy_from_slice(&stack[0][..n]);
    }

    /// Bloom "maybe" mask of the 64 items of word `w`: a superset of the passing items.
    /// A term is the OR over its values of the AND of the value's planes; NOT gives all ones.
    pub fn bloom_word(&self, planes: &BloomPlanes, w: usize) -> u64 {
        let maybe = |t: &Term| {
            if t.typed.is_some() {
                t.mask_word(w)
            } else {
                t.bloom_rows.iter().fold(0u64, |any, rows| any | rows.iter().fold(!0u64, |all, &b| all & planes.word(b, w)))
            }
        };
        self.run(maybe, |_| !0)
    }

    /// [`Plan::bloom_word`] over `ix` with every typed term exact: its bound mask, or
    /// (unbound) its test evaluated on word `w` from the index's column
    /// ([`TypedTest::word`]). What backends that evaluate typed terms per query compute.
    pub fn bloom_word_in(&self, ix: &Index, w: usize) -> u64 {
        let planes = &ix.bloom;
        let maybe = |t: &Term| {
            if t.typed.is_some() {
                t.typed_word(ix, w)
            } else {
                t.bloom_rows.iter().fold(0u64, |any, rows| any | rows.iter().fold(!0u64, |all, &b| all & planes.word(b, w)))
            }
        };
        self.run(maybe, |_| !0)
    }
}

/// Order-preserving key of literal `v` for a column of type `ty` (errors name the column
/// of the literal): int takes integers, float any number, bool `true`/`false`, timestamp
/// an RFC 3339 string or integer microseconds.
fn typed_key(v: &Value, ty: ColumnType, field: &str, at: usize) -> Result<u64, FilterError> {
    let err = |m: String| FilterError::Type { column: at, field: field.to_string(), message: m };
    let int = |n: &str| n.parse::<i64>().map_err(|_| err(format!("is an {} field; {n} is not an integer in i64 range", ty.name())));
    match (ty, v) {
        (ColumnType::Int, Value::Num(n)) => Ok(key_i64(int(n)?)),
        (ColumnType::Timestamp, Value::Num(n)) => Ok(key_i64(int(n)?)),
        (ColumnType::Timestamp, Value::Str(s)) => parse_timestamp(s).map(key_i64).map_err(err),
        (ColumnType::Float, Value::Num(n)) => {
            n.parse::<f64>().ok().filter(|x| x.is_finite()).map(key_f64).ok_or_else(|| err(format!("{n} is not a finite number")))
        }
        (ColumnType::Bool, Value::Bool(b)) => Ok(*b as u64),
        (ty, other) => Err(err(format!(
            "is a {} field; compare it with {}, not {other}",
            ty.name(),
            match ty {
                ColumnType::Int => "an integer",
                ColumnType::Float => "a number",
                ColumnType::Bool => "true or false",
                ColumnType::Timestamp => "an RFC 3339 string such as \"2024-05-01T00:00:00Z\" or integer microseconds",
            }
        ))),
    }
}
