//! Posting lists: the attribute CSR inverted, value id -> the rows holding it.
//!
//! A selective filter's passing rows all lie in the postings of a few values (its
//! *driver*, [`driver`]): `tags = t AND lang = l` passes only rows in `t`'s or in `l`'s
//! posting, whichever is shorter. The planner's posting route (DESIGN.md "Selective filters
//! keep recall"; [`crate::backend::Backend::scan_postings`]) verifies exactly those rows
//! instead of walking the whole index's Bloom words, so a selective filter costs its
//! candidates, not N/64 words per query.
//!
//! Typed columns get *value buckets*: the rows holding a value, sorted by key and cut into
//! at most [`BUCKETS`] runs of at least [`BUCKET_MIN`] rows, each with its key range,
//! appended as pseudo value ids after the dictionary's ([`Buckets`]). A range term's driver
//! is the buckets its range overlaps (the exact plan check trims the edge buckets), and the
//! buckets inside it bound the rows it passes from below, so a selective range costs its
//! candidates and a broad one skips the candidate routes.
//!
//! Postings are derived, not stored: the executor builds them from `attrs.*` and `cols.*` on first use
//! and hands them on to the versions `Search::with_index` makes. A version whose rows were
//! patched keeps the lists and records the rows as *stale* ([`PostingState`]; their
//! entries may be wrong): every posting search verifies the stale rows besides the
//! driver's rows and skips them inside the postings, so the answer stays exact.

use super::Attributes;
use super::columns::{Column, Columns, KeyTest};
use rayon::prelude::*;
use std::sync::Arc;

/// Rows of every global value id: value `v`'s rows are `rows[offsets[v]..offsets[v+1]]`,
/// ascending. Ids `0..V` are the dictionary's values; then each typed column's value
/// buckets ([`Buckets`]).
pub struct Postings {
    /// `[V + buckets + 1]` offsets into `rows` (V = the schema's number of value ids).
    pub offsets: Vec<u64>,
    /// `[nnz]` rows (sorted index rows), grouped by value.
    pub rows: Vec<u32>,
    /// Value buckets per typed column, ids ascending from V.
    pub buckets: Vec<Buckets>,
}

impl std::fmt::Debug for Postings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Postings({} values, {} buckets, {} entries)",
            self.values(),
            self.buckets.iter().map(|b| b.len()).sum::<usize>(),
            self.rows.len()
        )
    }
}

/// Most value buckets per typed column: a range's edge buckets (checked row by row) then
/// hold at most 2/4096 of the column's rows.
pub const BUCKETS: usize = 4096;

/// Fewest rows per value bucket (but the last): smaller buckets add offsets and driver
/// ids faster than they trim edge rows.
pub const BUCKET_MIN: usize = 256;

/// One typed column's value buckets: bucket `i` is pseudo value id `base + i`, holding
/// the rows whose key lies in `keys[i]` (inclusive min, max), ascending; the buckets
/// partition the rows that have a value, in key order (one key may straddle two buckets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    /// The column's field name.
    pub name: String,
    /// Id of bucket 0.
    pub base: u32,
    /// `[buckets]` min and max key of each bucket.
    pub keys: Vec<(u64, u64)>,
    /// Rows holding a value (the sum of the buckets' lengths).
    pub present: u64,
}

impl Buckets {
    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// True when the column has no value.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// Whether value id `v` is one of these buckets.
    pub fn holds(&self, v: u32) -> bool {
        v >= self.base && ((v - self.base) as usize) < self.keys.len()
    }
    /// The buckets `test` may pass a row of (`KeyTest::block` not `Some(false)`), as
    /// ascending, disjoint spans of bucket indices; `None` for an `IS NULL` test (its rows
    /// are in no bucket). `O(ranges x log buckets)`: the buckets are in key order.
    pub fn overlapping_spans(&self, test: &KeyTest) -> Option<Vec<(usize, usize)>> {
        if test.null {
            return None;
        }
        Some(if test.negate { self.complement(&self.spans(&test.ranges, true)) } else { self.spans(&test.ranges, false) })
    }

    /// The buckets every row of which passes `test` (`KeyTest::block` is `Some(true)`), as
    /// spans; none for an `IS NULL` test.
    pub fn inside_spans(&self, test: &KeyTest) -> Vec<(usize, usize)> {
        match (test.null, test.negate) {
            (true, _) => Vec::new(),
            (false, false) => self.spans(&test.ranges, true),
            (false, true) => self.complement(&self.spans(&test.ranges, false)),
        }
    }

    /// Ids of [`Buckets::overlapping_spans`], ascending.
    pub fn overlapping(&self, test: &KeyTest) -> Option<Vec<u32>> {
        self.overlapping_spans(test).map(|sp| self.ids(&sp))
    }

    /// The ids of `spans`, ascending.
    pub fn ids(&self, spans: &[(usize, usize)]) -> Vec<u32> {
        spans.iter().flat_map(|&(a, b)| a as u32 + self.base..b as u32 + self.base).collect()
    }

    /// Per key interval, the buckets meeting it (`inside`: lying within it), merged.
    fn spans(&self, ranges: &[(u64, u64)], inside: bool) -> Vec<(usize, usize)> {
        let k = &self.keys;
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges {
            let (s, e) = if inside {
                (k.partition_point(|x| x.0 < a), k.partition_point(|x| x.1 <= b))
            } else {
                (k.partition_point(|x| x.1 < a), k.partition_point(|x| x.0 <= b))
            };
            if s >= e {
                continue;
            }
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    }

    /// The bucket indices outside `spans` (ascending, disjoint), as spans.
    fn complement(&self, spans: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(spans.len() + 1);
        let mut at = 0;
        for &(s, e) in spans {
            if s > at {
                out.push((at, s));
            }
            at = e;
        }
        if at < self.keys.len() {
            out.push((at, self.keys.len()));
        }
        out
    }
}

/// A typed column's rows with a value, sorted by (key, row), cut into buckets (rows
/// ascending within each): `(keys, rows per bucket)`.
fn bucket_column(c: &Column) -> (Vec<(u64, u64)>, Vec<Vec<u32>>) {
    let n = c.len();
    let mut kr: Vec<(u64, u32)> = (0..n).into_par_iter().filter(|&r| c.has(r)).map(|r| (c.values.key(r), r as u32)).collect();
    kr.par_sort_unstable();
    let size = kr.len().div_ceil(BUCKETS).max(BUCKET_MIN);
    kr.par_chunks(size)
        .map(|ch| {
            let mut rows: Vec<u32> = ch.iter().map(|x| x.1).collect();
            rows.sort_unstable();
            ((ch[0].0, ch[ch.len() - 1].0), rows)
        })
        .unzip()
}

/// Per-thread histograms are used while `values x threads` counters fit in this many bytes;
/// past it (a field with millions of distinct values) the counting sort runs on one thread.
const PARALLEL_HISTOGRAM_BYTES: usize = 256 << 20;

impl Postings {
    /// Invert `attrs` ([`Postings::build_strings`]) and bucket each typed column of `cols`
    /// that covers `attrs`'s rows ([`Buckets`]; `O(N log N)` per column).
    pub fn build(attrs: &Attributes, cols: &Columns) -> Postings {
        let mut p = Self::build_strings(attrs);
        for c in cols.cols.iter().filter(|c| c.len() == attrs.len()) {
            let (keys, rows) = bucket_column(c);
            let base = p.values() as u32;
            let present = rows.iter().map(|r| r.len() as u64).sum();
            p.offsets.pop();
            for r in rows {
                p.offsets.push(p.rows.len() as u64);
                p.rows.extend(r);
            }
            p.offsets.push(p.rows.len() as u64);
            p.buckets.push(Buckets { name: c.name.clone(), base, keys, present });
        }
        p
    }

    /// Invert `attrs` only (no buckets): a counting sort by value, `O(nnz + V)`, rows
    /// ascending per value.
    pub fn build_strings(attrs: &Attributes) -> Postings {
        let nv = attrs.schema.num_values().max(attrs.values.iter().copied().max().map_or(0, |m| m as usize + 1));
        let n = attrs.len();
        let threads = rayon::current_num_threads().max(1);
        let chunks = if nv.saturating_mul(threads).saturating_mul(4) <= PARALLEL_HISTOGRAM_BYTES && n >= 1 << 16 { threads } else { 1 };
        let per = n.div_ceil(chunks).max(1);
        let ranges: Vec<std::ops::Range<usize>> = (0..chunks).map(|c| (c * per).min(n)..((c + 1) * per).min(n)).collect();
        let vals = |r: &std::ops::Range<usize>| {
            let (a, b) = (attrs.offsets[r.start] as usize, attrs.offsets[r.end] as usize);
            &attrs.values[a..b]
        };
        // Histogram per row range, then each range's first slot per value (ranges in row
        // order, so each value's rows stay ascending).
        let mut hist: Vec<Vec<u32>> = ranges
            .par_iter()
            .map(|r| {
                let mut h = vec![0u32; nv];
                for &v in vals(r) {
                    h[v as usize] += 1;
                }
                h
            })
            .collect();
        let mut offsets = vec![0u64; nv + 1];
        let mut at = 0u64;
        for v in 0..nv {
            offsets[v] = at;
            for h in hist.iter_mut() {
                let c = h[v] as u64;
                h[v] = at as u32;
                at += c;
            }
        }
        offsets[nv] = at;
        if at > u32::MAX as u64 {
            // Slots are u32 in the per-range cursors; more entries than that take one range.
            return Self::build_serial(attrs, nv);
        }
        let mut rows = vec![0u32; at as usize];
        let out = SyncPtr(rows.as_mut_ptr());
        ranges.par_iter().zip(hist.par_iter_mut()).for_each(|(range, cur)| {
            let out = &out;
            for r in range.clone() {
                for &v in attrs.row(r) {
                    let slot = &mut cur[v as usize];
                    // SAFETY: each (range, value) owns the disjoint slots the prefix sum gave it.
                    unsafe { *out.0.add(*slot as usize) = r as u32 };
                    *slot += 1;
                }
            }
        });
        Postings { offsets, rows, buckets: Vec::new() }
    }

    fn build_serial(attrs: &Attributes, nv: usize) -> Postings {
        let mut offsets = vec![0u64; nv + 1];
        for &v in attrs.values.iter() {
            offsets[v as usize + 1] += 1;
        }
        for v in 0..nv {
            offsets[v + 1] += offsets[v];
        }
        let mut cur = offsets.clone();
        let mut rows = vec![0u32; attrs.values.len()];
        for r in 0..attrs.len() {
            for &v in attrs.row(r) {
                rows[cur[v as usize] as usize] = r as u32;
                cur[v as usize] += 1;
            }
        }
        Postings { offsets, rows, buckets: Vec::new() }
    }

    /// The value buckets of typed column `name`.
    pub fn buckets_of(&self, name: &str) -> Option<&Buckets> {
        self.buckets.iter().find(|b| b.name == name)
    }

    /// Rows in the buckets `spans` of `b` (`O(spans)`: the offsets are prefix sums).
    pub fn spans_len(&self, b: &Buckets, spans: &[(usize, usize)]) -> u64 {
        let at = |i: usize| self.offsets.get(b.base as usize + i).copied().unwrap_or(0);
        spans.iter().map(|&(s, e)| at(e) - at(s)).sum()
    }

    /// Number of value ids V.
    pub fn values(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Rows holding value `v` (empty for an unknown id).
    pub fn rows_of(&self, v: u32) -> &[u32] {
        match (self.offsets.get(v as usize), self.offsets.get(v as usize + 1)) {
            (Some(&a), Some(&b)) => &self.rows[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Length of value `v`'s posting.
    pub fn len_of(&self, v: u32) -> u64 {
        self.rows_of(v).len() as u64
    }
}

struct SyncPtr(*mut u32);
// SAFETY: used only for the disjoint writes of `Postings::build`.
unsafe impl Sync for SyncPtr {}

/// Posting lists of one index version: the lists, shared between versions with the same
/// attribute values, and the rows patched since they were built.
#[derive(Clone, Debug)]
pub struct PostingState {
    /// The posting lists (row ids per value id).
    pub lists: Arc<Postings>,
    /// Rows (ascending, distinct) whose values changed after `lists` was built; their
    /// entries in `lists` may be wrong, so searches verify them separately.
    pub stale: Arc<[u32]>,
}

impl PostingState {
    /// The postings of `ix` (its attributes and typed columns), nothing stale.
    pub fn build(ix: &super::Index) -> PostingState {
        Self::from_lists(Postings::build(&ix.attrs, &ix.columns))
    }

    /// `lists`, nothing stale.
    pub fn from_lists(lists: Postings) -> PostingState {
        PostingState { lists: Arc::new(lists), stale: Arc::from(Vec::new()) }
    }

    /// The same lists with `rows` (ascending, distinct) also stale.
    pub fn with_stale(&self, rows: &[u32]) -> PostingState {
        let mut s = Vec::with_capacity(self.stale.len() + rows.len());
        let (mut i, mut j) = (0, 0);
        while i < self.stale.len() || j < rows.len() {
            let next = match (self.stale.get(i), rows.get(j)) {
                (Some(&a), Some(&b)) if a == b => {
                    i += 1;
                    j += 1;
                    a
                }
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    a
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (None, None) => unreachable!(),
            };
            s.push(next);
        }
        PostingState { lists: self.lists.clone(), stale: s.into() }
    }

    /// Driver rows plus stale rows a posting search of `driver` verifies.
    pub fn candidates_len(&self, driver: &[u32]) -> u64 {
        driver.iter().map(|&v| self.lists.len_of(v)).sum::<u64>() + self.stale.len() as u64
    }
}

/// A plan's driver over `post`: the sorted value ids whose postings hold every row (that
/// is not stale) the plan can pass, and their total length; `None` when no such set is
/// known (a `NOT`, an `IS NULL` or string-presence term, an `OR` with such a side, an `OR`
/// over two typed columns, or the pass-all plan).
///
/// String term (`f IN (v..)`): its value ids. Typed column term: the value buckets its
/// test overlaps ([`Buckets::overlapping`]). `AND`: the shorter driver of the two sides
/// (either one bounds the conjunction). `OR`: the union of both sides' drivers, unless it
/// holds buckets of two columns (a row would then be in two of its postings, which the
/// first-hit rule of [`candidate_rows`] cannot see: it reads string values only).
pub fn driver(plan: &crate::filter::Plan, post: &Postings) -> Option<(Vec<u32>, u64)> {
    driver_within(plan, post, u64::MAX)
}

/// A side of a plan while its driver is worked out.
enum Side {
    /// No driver.
    Unknown,
    /// A driver of more than the budget's rows (its ids are not kept).
    Long(u64),
    /// A driver within the budget.
    Ids(Vec<u32>, u64),
}

impl Side {
    fn len(&self) -> u64 {
        match self {
            Side::Unknown => u64::MAX,
            Side::Long(l) | Side::Ids(_, l) => *l,
        }
    }
}

/// [`driver`], `None` also when the driver holds more than `cap` rows: then no value ids
/// are gathered (a typed term's length comes from its bucket spans), so the planner's cost
/// per query does not grow with a broad range's buckets.
pub fn driver_within(plan: &crate::filter::Plan, post: &Postings, cap: u64) -> Option<(Vec<u32>, u64)> {
    use crate::filter::{Op, TypedTest};
    if plan.is_all() {
        return None;
    }
    let len = |ids: &[u32]| ids.iter().map(|&v| post.len_of(v)).sum::<u64>();
    let bounded = |ids: Vec<u32>, l: u64| if l > cap { Side::Long(l) } else { Side::Ids(ids, l) };
    let mut st: Vec<Side> = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        match *op {
            Op::Term(i) => {
                let t = &plan.terms[i as usize];
                st.push(match t.typed.as_deref() {
                    None => bounded(t.value_ids.clone(), len(&t.value_ids)),
                    Some(TypedTest::Column { name, test }) => {
                        match post.buckets_of(name).and_then(|b| Some((b, b.overlapping_spans(test)?))) {
                            Some((b, spans)) => {
                                let l = post.spans_len(b, &spans);
                                if l > cap { Side::Long(l) } else { Side::Ids(b.ids(&spans), l) }
                            }
                            None => Side::Unknown,
                        }
                    }
                    Some(TypedTest::Present { .. }) => Side::Unknown,
                });
            }
            Op::Not => {
                st.pop()?;
                st.push(Side::Unknown);
            }
            Op::And | Op::Or => {
                let b = st.pop()?;
                let a = st.pop()?;
                st.push(match (a, b, *op == Op::And) {
                    (Side::Unknown, x, true) | (x, Side::Unknown, true) => x,
                    (x, y, true) => {
                        if y.len() < x.len() {
                            y
                        } else {
                            x
                        }
                    }
                    (Side::Unknown, _, false) | (_, Side::Unknown, false) => Side::Unknown,
                    (Side::Ids(mut x, _), Side::Ids(y, _), false) => {
                        x.extend(y);
                        x.sort_unstable();
                        x.dedup();
                        let columns = post.buckets.iter().filter(|b| x.iter().any(|&v| b.holds(v))).count();
                        let l = len(&x);
                        if columns > 1 { Side::Unknown } else { bounded(x, l) }
                    }
                    // A long side makes the union long (a cross-column union is no driver
                    // either way: both leave the query to the other routes).
                    (x, y, false) => Side::Long(x.len().saturating_add(y.len())),
                });
            }
        }
    }
    match (st.len(), st.pop()) {
        (1, Some(Side::Ids(ids, l))) => Some((ids, l)),
        _ => None,
    }
}

/// Whether every row of the plan's driver ([`driver`]) passes the plan: the plan is
/// untyped terms joined by `OR` only (a term's rows hold its values; an `OR` passes the
/// union). Then, with no stale rows, a posting search need not re-check the plan on the
/// driver's rows (only the live bits).
pub fn driver_is_exact(plan: &crate::filter::Plan) -> bool {
    use crate::filter::Op;
    !plan.is_all()
        && plan.ops.iter().all(|op| match *op {
            Op::Term(i) => plan.terms[i as usize].typed.is_none(),
            Op::Or => true,
            _ => false,
        })
}

/// The plan a posting search that visits only `driver`'s rows may check them with: the
/// pass-all plan when every row of `driver` passes (the plan is [`driver_is_exact`] and
/// `driver` is exactly its value ids, not a wider set) and nothing is stale (only live
/// bits are then read), else `plan`. Only for backends whose `scan_postings` restricts
/// itself to the driver's rows (not the default, which scans every row under the plan).
pub fn check_plan<'a>(
    plan: &'a crate::filter::Plan,
    driver: &[u32],
    state: &PostingState,
    all: &'a crate::filter::Plan,
) -> &'a crate::filter::Plan {
    if !state.stale.is_empty() || !driver_is_exact(plan) {
        return plan;
    }
    let mut ids: Vec<u32> = plan.terms.iter().flat_map(|t| t.value_ids.iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids == driver { all } else { plan }
}

/// Bloom plane words a whole-index Bloom pass of `plan` reads per 64-row word (each
/// requested value's hash planes; a bound typed term's mask word; an unbound column
/// term's 64 keys, [`UNBOUND_TYPED_READS`]), at least 1: the Bloom route's cost per word,
/// which the planner weighs against a driver's rows.
pub fn bloom_reads(plan: &crate::filter::Plan) -> u64 {
    plan.terms
        .iter()
        .map(|t| match (&t.typed, &t.mask) {
            (None, _) => t.bloom_rows.iter().map(|r| r.len() as u64).sum(),
            (Some(_), Some(_)) => 1,
            (Some(test), None) => match test.as_ref() {
                crate::filter::TypedTest::Column { .. } => UNBOUND_TYPED_READS,
                crate::filter::TypedTest::Present { .. } => 1,
            },
        })
        .sum::<u64>()
        .max(1)
}

/// [`bloom_reads`] of an unbound typed column term: a word whose key range does not decide
/// the test compares its 64 keys (a plane word's read each, in cost).
pub const UNBOUND_TYPED_READS: u64 = 64;

/// A lower bound of the rows of `0..n` that `plan` passes, from posting lengths (`post`
/// built over the same `n` rows): a term on a single-valued field passes exactly the sum
/// of its values' postings, one on a multi-valued field at least the longest; `NOT x`
/// at least `n` minus an upper bound of `x`; `a AND b` at least `lo(a) + lo(b) - n`; `a OR
/// b` at least the larger. A typed column term passes at least the rows of the value
/// buckets inside its test and at most those of the buckets it overlaps (`IS NULL`:
/// exactly the rows without a value); other typed terms bound nothing (0 .. n). Rows patched since the
/// postings were built are not counted by it: subtract them (and dead rows) before use.
pub fn lower_bound(plan: &crate::filter::Plan, post: &Postings, schema: &super::Schema, n: u64) -> u64 {
    use crate::filter::Op;
    if plan.is_all() {
        return n;
    }
    let multi = |v: u32| schema.fields.iter().rev().find(|f| f.base <= v).is_none_or(|f| f.multi);
    let mut st: Vec<(u64, u64)> = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        let b = match *op {
            Op::Term(i) => {
                let t = &plan.terms[i as usize];
                if let Some(test) = &t.typed {
                    match test.as_ref() {
                        crate::filter::TypedTest::Column { name, test } => match post.buckets_of(name) {
                            Some(b) if test.null => {
                                let none = n.saturating_sub(b.present);
                                (none, none)
                            }
                            Some(b) => (
                                post.spans_len(b, &b.inside_spans(test)).min(n),
                                post.spans_len(b, &b.overlapping_spans(test).unwrap_or_default()).min(n),
                            ),
                            None => (0, n),
                        },
                        crate::filter::TypedTest::Present { .. } => (0, n),
                    }
                } else {
                    let sum = t.value_ids.iter().map(|&v| post.len_of(v)).sum::<u64>().min(n);
                    let lo = if t.value_ids.iter().any(|&v| multi(v)) {
                        t.value_ids.iter().map(|&v| post.len_of(v)).max().unwrap_or(0)
                    } else {
                        sum
                    };
                    (lo, sum)
                }
            }
            Op::Not => {
                let Some((lo, hi)) = st.pop() else { return 0 };
                (n - hi.min(n), n - lo.min(n))
            }
            Op::And | Op::Or => {
                let (Some(y), Some(x)) = (st.pop(), st.pop()) else { return 0 };
                if *op == Op::And { ((x.0 + y.0).saturating_sub(n), x.1.min(y.1)) } else { (x.0.max(y.0), (x.1 + y.1).min(n)) }
            }
        };
        st.push(b);
    }
    if st.len() == 1 { st[0].0 } else { 0 }
}

/// The rows a posting search of `driver` over `post` verifies, in the order every backend
/// must treat as the same set: each row of the driver's postings once (from the smallest
/// driver value it holds, so a row in two postings is not taken twice) unless it is stale,
/// then every stale row. The plan is checked on these rows by the caller.
pub fn candidate_rows(post: &Postings, stale: &[u32], attrs: &Attributes, driver: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for &v in driver {
        for &r in post.rows_of(v) {
            if stale.binary_search(&r).is_ok() || !first_hit(attrs.row(r as usize), driver, v) {
                continue;
            }
            out.push(r);
        }
    }
    out.extend_from_slice(stale);
    out
}

/// Whether `v` is the smallest value of `driver` (sorted) that `row` (sorted) holds.
#[inline]
pub fn first_hit(row: &[u32], driver: &[u32], v: u32) -> bool {
    if driver.len() <= 1 {
        return true;
    }
    let (mut i, mut j) = (0, 0);
    while i < row.len() && j < driver.len() {
        match row[i].cmp(&driver[j]) {
            std::cmp::Ordering::Equal => return row[i] == v,
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldSchema, Schema};
    use rand::{Rng, SeedableRng};

    fn attrs(n: usize, nv: u32, seed: u64) -> Attributes {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut offsets = vec![0u64];
        let mut values = Vec::new();
        for _ in 0..n {
            let mut row: Vec<u32> = (0..rng.random_range(0..4)).map(|_| rng.random_range(0..nv)).collect();
            row.sort_unstable();
            row.dedup();
            values.extend(row);
            offsets.push(values.len() as u64);
        }
        let field = FieldSchema { name: "f".into(), multi: true, base: 0, values: (0..nv).map(|v| v.to_string()).collect() };
        Attributes { schema: Schema { fields: vec![field], ..Default::default() }, offsets: offsets.into(), values: values.into() }
    }

    #[test]
    fn postings_invert_the_csr_in_row_order() {
        // Sizes around the parallel threshold (1 << 16 rows) and an empty table.
        for (n, nv) in [(0usize, 3u32), (1, 1), (100, 7), (70_001, 5), (70_001, 40_000)] {
            let a = attrs(n, nv, n as u64);
            let p = Postings::build_strings(&a);
            assert_eq!(p.values(), nv as usize);
            let mut want = vec![Vec::new(); nv as usize];
            for r in 0..n {
                a.row(r).iter().for_each(|&v| want[v as usize].push(r as u32));
            }
            for v in 0..nv {
                assert_eq!(p.rows_of(v), &want[v as usize][..], "n {n} value {v}");
            }
            assert!(p.rows_of(nv).is_empty(), "an unknown value has no rows");
        }
    }

    #[test]
    fn candidate_rows_take_each_row_once_and_every_stale_row() {
        let a = attrs(5_000, 9, 3);
        let p = Postings::build_strings(&a);
        let stale = [4u32, 17, 4_999];
        let driver = [1u32, 2, 5];
        let got = candidate_rows(&p, &stale, &a, &driver);
        let mut want: Vec<u32> =
            (0..5_000u32).filter(|r| !stale.contains(r) && a.row(*r as usize).iter().any(|v| driver.contains(v))).collect();
        want.extend(stale);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        want.sort_unstable();
        assert_eq!(sorted, want);
        assert_eq!(got.len(), want.len(), "no row twice");
    }

    #[test]
    fn lower_bounds_never_exceed_the_passing_rows() {
        use crate::filter::Filter;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 3_000;
        // Field a single-valued (0..6), field b multi-valued (6..12).
        let (mut offsets, mut values) = (vec![0u64], Vec::new());
        for _ in 0..n {
            let mut row = vec![rng.random_range(0..6u32)];
            row.extend((0..rng.random_range(0..3)).map(|_| rng.random_range(6..12u32)));
            row.sort_unstable();
            row.dedup();
            values.extend(row);
            offsets.push(values.len() as u64);
        }
        let fs =
            |name: &str, multi, base| FieldSchema { name: name.into(), multi, base, values: (0..6).map(|v| format!("v{v}")).collect() };
        let a = Attributes {
            schema: Schema { fields: vec![fs("a", false, 0), fs("b", true, 6)], ..Default::default() },
            offsets: offsets.into(),
            values: values.into(),
        };
        let p = Postings::build_strings(&a);
        let bloom = crate::model::BloomParams { bits: 64, hashes: 2, seed: 1 };
        let mut tight = 0;
        for text in [
            "a = \"v1\"",
            "a IN (\"v1\", \"v2\")",
            "b IN (\"v1\", \"v2\")",
            "NOT a = \"v0\"",
            "a IN (\"v1\", \"v2\", \"v3\", \"v4\") AND NOT b = \"v0\"",
            "a = \"v1\" OR b = \"v5\"",
            "NOT (a = \"v1\" AND b = \"v2\")",
            "a = \"v1\" AND a = \"v2\"",
        ] {
            let plan = Filter::compile(text, &a.schema, &bloom).unwrap().plan;
            let pass = (0..n).filter(|&r| plan.matches(a.row(r))).count() as u64;
            let lo = lower_bound(&plan, &p, &a.schema, n as u64);
            assert!(lo <= pass, "{text}: bound {lo} > passing {pass}");
            tight += (lo == pass) as usize;
        }
        assert!(tight >= 3, "single-valued terms are bounded exactly");
        // An exact driver: every row its postings hold passes; the others have rows that fail.
        let mut exact = 0;
        for text in [
            "a = \"v1\"",
            "b IN (\"v1\", \"v2\")",
            "a = \"v1\" OR b = \"v5\"",
            "a = \"v1\" OR (a = \"v2\" OR b = \"v0\")",
            "a = \"v1\" AND b = \"v2\"",
            "NOT a = \"v0\"",
            "a IN (\"v1\", \"v2\") AND NOT b = \"v0\"",
        ] {
            let plan = Filter::compile(text, &a.schema, &bloom).unwrap().plan;
            let (ids, _) = driver(&plan, &p).unwrap_or_default();
            let rows = candidate_rows(&p, &[], &a, &ids);
            let all_pass = !ids.is_empty() && rows.iter().all(|&r| plan.matches(a.row(r as usize)));
            assert_eq!(driver_is_exact(&plan), all_pass, "{text}");
            exact += driver_is_exact(&plan) as usize;
        }
        assert_eq!(exact, 4);
        assert!(!driver_is_exact(&crate::filter::Plan::all()));
        // check_plan: the pass-all plan only for the plan's own driver and nothing stale.
        let all = crate::filter::Plan::all();
        let plan = Filter::compile("a = \"v1\" OR b = \"v5\"", &a.schema, &bloom).unwrap().plan;
        let (own, _) = driver(&plan, &p).unwrap();
        let state = PostingState::from_lists(Postings::build_strings(&a));
        assert!(check_plan(&plan, &own, &state, &all).is_all());
        let mut wider = own.clone();
        wider.push(11);
        assert!(!check_plan(&plan, &wider, &state, &all).is_all(), "a wider driver keeps the plan");
        assert!(!check_plan(&plan, &own, &state.with_stale(&[3]), &all).is_all(), "stale rows keep the plan");
    }

    #[test]
    fn with_stale_merges_sorted_distinct_rows() {
        let a = attrs(300, 4, 9);
        let st = PostingState::from_lists(Postings::build_strings(&a)).with_stale(&[3, 7, 200]).with_stale(&[1, 7, 299]);
        assert_eq!(&st.stale[..], &[1, 3, 7, 200, 299]);
        let d = [0u32, 2];
        assert_eq!(st.candidates_len(&d), st.lists.len_of(0) + st.lists.len_of(2) + 5);
    }

    /// A string field `f` (values 0..nv, from [`attrs`]) and typed columns `price` (float,
    /// `present` of the rows, keys of quarter steps in [-25, 25)) and `year` (int,
    /// 1990..2010, every row).
    fn with_columns(n: usize, nv: u32, present: f64, seed: u64) -> (Attributes, Columns) {
        use crate::model::columns::{ColumnSchema, ColumnType, key_f64, key_i64};
        let mut a = attrs(n, nv, seed);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 77);
        let price: Vec<Option<u64>> =
            (0..n).map(|_| rng.random_bool(present).then(|| key_f64(rng.random_range(-100..100) as f64 / 4.0))).collect();
        let year: Vec<Option<u64>> = (0..n).map(|_| Some(key_i64(rng.random_range(1990..2010)))).collect();
        let lists = [0, n as u64];
        let cols = Columns {
            cols: vec![
                Column::from_keys("price", ColumnType::Float, &price, &lists),
                Column::from_keys("year", ColumnType::Int, &year, &lists),
            ],
        };
        a.schema.columns =
            vec![ColumnSchema { name: "price".into(), ty: ColumnType::Float }, ColumnSchema { name: "year".into(), ty: ColumnType::Int }];
        (a, cols)
    }

    #[test]
    fn value_buckets_partition_the_present_rows_in_key_order() {
        // Empty, one row, fewer rows than a bucket, not a multiple of BUCKET_MIN, more
        // rows than BUCKETS x BUCKET_MIN (buckets grow past the minimum), nobody present.
        for (n, present) in [(0usize, 0.9), (1, 1.0), (255, 0.9), (70_001, 0.9), (BUCKETS * BUCKET_MIN + 999, 0.5), (300, 0.0)] {
            let (a, cols) = with_columns(n, 5, present, n as u64);
            let p = Postings::build(&a, &cols);
            assert_eq!(p.buckets.len(), 2, "one bucket set per column");
            let strings = Postings::build_strings(&a);
            assert_eq!(p.buckets[0].base as usize, strings.values(), "buckets follow the dictionary's ids");
            for v in 0..strings.values() as u32 {
                assert_eq!(p.rows_of(v), strings.rows_of(v), "string postings unchanged");
            }
            for (b, c) in p.buckets.iter().zip(&cols.cols) {
                assert_eq!(b.name, c.name);
                assert!(b.len() <= BUCKETS, "n {n}: {} buckets", b.len());
                let mut seen = vec![false; n];
                let mut last = 0u64;
                for (i, &(lo, hi)) in b.keys.iter().enumerate() {
                    let rows = p.rows_of(b.base + i as u32);
                    assert!(i + 1 == b.len() || rows.len() >= BUCKET_MIN, "n {n}: bucket {i} holds {} rows", rows.len());
                    assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows ascending in a bucket");
                    let keys: Vec<u64> = rows.iter().map(|&r| c.values.key(r as usize)).collect();
                    assert_eq!((lo, hi), (*keys.iter().min().unwrap(), *keys.iter().max().unwrap()), "bucket {i}'s key range");
                    assert!(lo >= last, "buckets in key order");
                    last = hi;
                    for &r in rows {
                        assert!(c.has(r as usize) && !seen[r as usize], "row {r}: present, in one bucket");
                        seen[r as usize] = true;
                    }
                }
                let present = (0..n).filter(|&r| c.has(r)).count();
                assert_eq!(seen.iter().filter(|&&x| x).count(), present, "every present row is in a bucket");
                assert_eq!(b.present, present as u64);
            }
            let last = p.buckets.last().unwrap();
            assert_eq!(p.values(), last.base as usize + last.len(), "offsets end after the last bucket");
        }
    }

    fn val(c: &Column, r: usize) -> f64 {
        match &c.values {
            crate::model::columns::Values::I64(v) => v[r] as f64,
            crate::model::columns::Values::F64(v) => v[r],
            crate::model::columns::Values::U8(v) => v[r] as f64,
        }
    }

    #[test]
    fn typed_drivers_hold_every_passing_row_and_bound_it() {
        use crate::filter::Filter;
        let n = 20_000;
        let (a, cols) = with_columns(n, 6, 0.8, 4);
        let p = Postings::build(&a, &cols);
        let bloom = crate::model::BloomParams { bits: 64, hashes: 2, seed: 1 };
        let (price, year) = (&cols.cols[0], &cols.cols[1]);
        let cases: [(&str, &dyn Fn(usize) -> bool, bool); 12] = [
            ("price < -20", &|r| price.has(r) && val(price, r) < -20.0, true),
            ("price BETWEEN 3 AND 3.5", &|r| price.has(r) && (3.0..=3.5).contains(&val(price, r)), true),
            ("price >= 24.75", &|r| price.has(r) && val(price, r) >= 24.75, true),
            ("price > 100", &|_| false, true),
            ("price != 0", &|r| price.has(r) && val(price, r) != 0.0, true),
            ("price NOT IN (1, 2)", &|r| price.has(r) && ![1.0, 2.0].contains(&val(price, r)), true),
            ("price IS NULL", &|r| !price.has(r), false),
            ("price IS NOT NULL", &|r| price.has(r), true),
            ("year = 2001 AND price < 0", &|r| val(year, r) == 2001.0 && price.has(r) && val(price, r) < 0.0, true),
            ("price < -24 OR price > 24", &|r| price.has(r) && (val(price, r) < -24.0 || val(price, r) > 24.0), true),
            ("price < -24 OR f = \"1\"", &|r| (price.has(r) && val(price, r) < -24.0) || a.row(r).contains(&1), true),
            ("price < -24 OR year = 2001", &|r| (price.has(r) && val(price, r) < -24.0) || val(year, r) == 2001.0, false),
        ];
        for (text, pass, has_driver) in cases {
            let plan = Filter::compile(text, &a.schema, &bloom).unwrap_or_else(|e| panic!("{text}: {e}")).plan;
            let passing: Vec<u32> = (0..n).filter(|&r| pass(r)).map(|r| r as u32).collect();
            let lo = lower_bound(&plan, &p, &a.schema, n as u64);
            assert!(lo <= passing.len() as u64, "{text}: bound {lo} > passing {}", passing.len());
            if text == "price IS NULL" {
                assert_eq!(lo, passing.len() as u64, "IS NULL is bounded exactly");
            }
            if text == "price BETWEEN 3 AND 3.5" || text == "price < -20" {
                assert!(lo * 10 >= passing.len() as u64 * 9 || passing.len() < 2 * BUCKET_MIN, "{text}: bound {lo} of {}", passing.len());
            }
            match driver(&plan, &p) {
                Some((ids, len)) => {
                    assert!(has_driver, "{text}: no driver expected");
                    assert_eq!(len, ids.iter().map(|&v| p.len_of(v)).sum::<u64>());
                    let rows = candidate_rows(&p, &[], &a, &ids);
                    let mut sorted = rows.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), rows.len(), "{text}: a candidate row twice");
                    for r in &passing {
                        assert!(sorted.binary_search(r).is_ok(), "{text}: passing row {r} outside the driver");
                    }
                    if text.starts_with("price BETWEEN") {
                        assert!(
                            rows.len() <= passing.len() + 2 * n.div_ceil(BUCKETS).max(BUCKET_MIN),
                            "{text}: {} rows for {}",
                            rows.len(),
                            passing.len()
                        );
                    }
                }
                None => assert!(!has_driver, "{text}: a driver expected"),
            }
            assert!(!driver_is_exact(&plan), "{text}: a typed driver is checked row by row");
        }
        // Unbound column terms cost 64 plane words per word on the Bloom route; bound, 1.
        let plan = Filter::compile("price < 0", &a.schema, &bloom).unwrap().plan;
        assert_eq!(bloom_reads(&plan), UNBOUND_TYPED_READS);
    }

    #[test]
    fn bucket_spans_are_the_buckets_block_decides() {
        // Random key tests (1-3 intervals, negated or not) against the brute-force rule on
        // every bucket: overlapping = block != Some(false), inside = block == Some(true).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (a, cols) = with_columns(40_000, 3, 0.7, 8);
        let p = Postings::build(&a, &cols);
        let b = &p.buckets[0];
        assert!(b.len() > 100, "{} buckets", b.len());
        let ids = |f: &dyn Fn(Option<bool>) -> bool, t: &KeyTest| -> Vec<u32> {
            (0..b.len()).filter(|&i| f(t.block(b.keys[i].0, b.keys[i].1))).map(|i| b.base + i as u32).collect()
        };
        for case in 0..500 {
            let mut cuts: Vec<u64> = (0..2 * rng.random_range(1..=3usize))
                .map(|_| crate::model::columns::key_f64(rng.random_range(-110..110) as f64 / 4.0))
                .collect();
            cuts.sort_unstable();
            let ranges: Vec<(u64, u64)> = cuts.chunks(2).map(|c| (c[0], c[1])).collect();
            let t = KeyTest { ranges, negate: case % 2 == 1, null: false };
            assert_eq!(b.overlapping(&t).unwrap(), ids(&|x| x != Some(false), &t), "{t:?}");
            let inside = b.ids(&b.inside_spans(&t));
            assert_eq!(inside, ids(&|x| x == Some(true), &t), "{t:?}");
            let len = p.spans_len(b, &b.inside_spans(&t));
            assert_eq!(len, inside.iter().map(|&v| p.len_of(v)).sum::<u64>());
        }
        assert!(b.overlapping(&KeyTest { ranges: vec![], negate: false, null: true }).is_none(), "IS NULL has no buckets");
        // A driver past the budget is not gathered.
        let bloom = crate::model::BloomParams { bits: 64, hashes: 2, seed: 1 };
        let plan = crate::filter::Filter::compile("price < 0", &a.schema, &bloom).unwrap().plan;
        let (_, l) = driver(&plan, &p).unwrap();
        assert!(driver_within(&plan, &p, l - 1).is_none() && driver_within(&plan, &p, l).is_some());
    }
}
