//! Compiled filters: a postfix program over terms. Backends evaluate it twice:
//! * [`Plan::bloom_word`]: over 64 items at once from Bloom bit-planes. A term is the OR
//!   over its values of the AND of the value's k planes. `NOT` yields all ones: a Bloom
//!   hit cannot prove presence, so negation never prunes (DESIGN.md invariants).
//!   The result is a superset of the passing items ("maybe" mask).
//! * [`Plan::matches`]: exactly, over a row's sorted attribute value ids.

use super::{Expr, FilterError};
use crate::model::{BloomParams, BloomPlanes, Schema};

/// What filter compilation needs from an attribute dictionary. [`Schema`] implements it;
/// `silica serve` implements it over a schema plus values appended after the build.
pub trait Dictionary {
    /// Field index by name.
    fn field(&self, name: &str) -> Option<usize>;
    /// Global value id of `value` in field `field`, if known.
    fn value_id(&self, field: usize, value: &str) -> Option<u32>;
    /// All field names (for "unknown field" messages).
    fn field_names(&self) -> Vec<String>;
}

impl Dictionary for Schema {
    fn field(&self, name: &str) -> Option<usize> {
        Schema::field(self, name)
    }
    fn value_id(&self, field: usize, value: &str) -> Option<u32> {
        Schema::value_id(self, field, value)
    }
    fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }
}

/// Deepest evaluation stack a plan may need (kernels use fixed-size stacks).
pub const MAX_DEPTH: usize = 32;

/// Words per [`Plan::bloom_words`] call (its stack is `MAX_DEPTH x BLOOM_BLOCK` words, 16 KiB).
pub const BLOOM_BLOCK: usize = 64;

/// One term: the row passes when it has any of `value_ids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// Sorted global value ids (values absent from the dictionary are dropped: they match nothing).
    pub value_ids: Vec<u32>,
    /// Per requested value (present or not), its k Bloom plane rows.
    pub bloom_rows: Vec<Vec<u32>>,
}

/// Postfix instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Push term `i`.
    Term(u32),
    And,
    Or,
    Not,
}

/// A compiled filter. An empty `ops` passes everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub terms: Vec<Term>,
}

impl Plan {
    /// The plan that passes every item.
    pub fn all() -> Plan {
        Plan::default()
    }

    /// The plan that passes no item (one term with no values: no Bloom row, no value id).
    pub fn nothing() -> Plan {
        Plan { ops: vec![Op::Term(0)], terms: vec![Term { value_ids: Vec::new(), bloom_rows: Vec::new() }] }
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

    fn emit<D: Dictionary + ?Sized>(&mut self, e: &Expr, schema: &D, bloom: &BloomParams) -> Result<(), FilterError> {
        match e {
            Expr::Term { field, column, values } => {
                let f = schema.field(field).ok_or_else(|| FilterError::UnknownField {
                    column: *column,
                    field: field.clone(),
                    known: schema.field_names().join(", "),
                })?;
                let mut value_ids: Vec<u32> = values.iter().filter_map(|v| schema.value_id(f, v)).collect();
                value_ids.sort_unstable();
                value_ids.dedup();
                let bloom_rows = values.iter().map(|v| bloom.positions(field, v)).collect();
                self.terms.push(Term { value_ids, bloom_rows });
                self.ops.push(Op::Term(self.terms.len() as u32 - 1));
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.emit(a, schema, bloom)?;
                self.emit(b, schema, bloom)?;
                self.ops.push(if matches!(e, Expr::And(..)) { Op::And } else { Op::Or });
            }
            Expr::Not(a) => {
                self.emit(a, schema, bloom)?;
                self.ops.push(Op::Not);
            }
        }
        Ok(())
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

    /// Exact evaluation over one row's sorted value ids.
    pub fn matches(&self, row: &[u32]) -> bool {
        let hit = |t: &Term| if t.value_ids.iter().any(|v| row.binary_search(v).is_ok()) { !0 } else { 0 };
        self.run(hit, |x| !x) != 0
    }

    /// [`Plan::bloom_word`] for the consecutive words `w0 .. w0 + out.len()` (at most
    /// [`BLOOM_BLOCK`]) at once: the same program with every step a loop over the block,
    /// which the compiler vectorizes and which reads each plane sequentially. Used where a
    /// filter is evaluated over all words (the planner's Bloom count).
    pub fn bloom_words(&self, planes: &BloomPlanes, w0: usize, out: &mut [u64]) {
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
                    dst.fill(0);
                    for rows in &self.terms[t as usize].bloom_rows {
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
        let maybe = |t: &Term| t.bloom_rows.iter().fold(0u64, |any, rows| any | rows.iter().fold(!0u64, |all, &b| all & planes.word(b, w)));
        self.run(maybe, |_| !0)
    }
}
