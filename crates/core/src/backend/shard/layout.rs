//! How an index is cut into shards: contiguous runs of inverted lists, balanced by rows
//! (every row costs the same bytes: D codes, one scale, D f16 embeddings, ...), and each
//! shard's own [`Index`] holding its rows and every centroid.
//!
//! Rows are sorted by list, so a run of lists `l0..l1` is the row range
//! `offsets[l0]..offsets[l1]`. A shard's index starts at `base`, that range's start rounded
//! down to a multiple of [`ALIGN`] rows: every 64-row bitmap (Bloom planes, live bits,
//! typed masks and presence bits) is then a plain word slice of the whole index's, and the
//! candidate route's sampled words (every [`SAMPLE_EVERY`]-th) are the same words, so the
//! per-shard counts add up to the whole index's exactly. The up to `ALIGN - 1` rows before
//! the range (the previous shard's last rows) are in no list and dead (live bit clear): no
//! stage ever scans or counts them.

use crate::backend::SAMPLE_EVERY;
use crate::model::columns::Values;
use crate::model::{BloomPlanes, Index, Tensor};
use std::ops::Range;

/// Shard index rows start at multiples of this many rows (64-row words x [`SAMPLE_EVERY`]).
pub const ALIGN: usize = 64 * SAMPLE_EVERY;

/// One shard's part of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// Inverted lists the shard owns (a contiguous run; empty for a shard without lists).
    pub lists: Range<usize>,
    /// Rows of the whole index those lists hold.
    pub rows: Range<usize>,
    /// Row of the whole index at the shard's row 0: `rows.start` rounded down to [`ALIGN`].
    pub base: usize,
}

impl Span {
    /// Rows of the shard's index (its own rows plus the leading dead padding).
    pub fn len(&self) -> usize {
        self.rows.end - self.base
    }
    /// True when the shard's index has no rows at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// 64-row word of the whole index at the shard's word 0.
    pub fn word0(&self) -> usize {
        self.base / 64
    }
    /// 64-row words of the shard's index.
    pub fn words(&self) -> usize {
        self.len().div_ceil(64)
    }
}

/// The shards of one index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub spans: Vec<Span>,
}

impl Layout {
    /// `g >= 1` shards of contiguous list runs whose row counts are as close to `N / g` as
    /// list boundaries allow: boundary `s` is the list offset nearest to `s * N / g` (ties
    /// to the lower list), never before boundary `s - 1`. Shards may own no lists or no
    /// rows (more shards than non-empty lists).
    pub fn balanced(list_offsets: &[u64], g: usize) -> Layout {
        let g = g.max(1);
        let l = list_offsets.len().saturating_sub(1);
        let n = list_offsets.last().copied().unwrap_or(0);
        let mut cuts = vec![0usize];
        for s in 1..g {
            let target = (n as u128 * s as u128 / g as u128) as u64;
            let prev = *cuts.last().expect("starts with 0");
            // First boundary at or past the target, then the nearer of it and the one before.
            let at = prev + list_offsets[prev..=l].partition_point(|&o| o < target);
            let best = if at > prev && (at > l || target - list_offsets[at - 1] <= list_offsets[at] - target) { at - 1 } else { at };
            cuts.push(best.min(l));
        }
        cuts.push(l);
        let spans = cuts
            .windows(2)
            .map(|w| {
                let rows = list_offsets[w[0]] as usize..list_offsets[w[1]] as usize;
                Span { lists: w[0]..w[1], base: rows.start / ALIGN * ALIGN, rows }
            })
            .collect();
        Layout { spans }
    }

    /// The shard owning list `l`.
    pub fn owner(&self, l: usize) -> usize {
        self.spans.iter().position(|s| s.lists.contains(&l)).unwrap_or(self.spans.len() - 1)
    }

    /// The shard holding row `r` of the whole index.
    pub fn shard_of_row(&self, r: usize) -> usize {
        self.spans.iter().position(|s| s.rows.contains(&r)).unwrap_or(self.spans.len() - 1)
    }
}

fn values(v: &Values, r: Range<usize>) -> Values {
    match v {
        Values::I64(t) => Values::I64(t.slice(r)),
        Values::F64(t) => Values::F64(t.slice(r)),
        Values::U8(t) => Values::U8(t.slice(r)),
    }
}

/// Words `w0..w0 + words` of a 64-row bitmap with bits below row `keep.start` and from
/// row `keep.end` on (rows of the slice) cleared.
fn bits(src: &[u64], w0: usize, words: usize, keep: Range<usize>) -> Vec<u64> {
    (0..words).map(|i| src.get(w0 + i).copied().unwrap_or(0) & crate::backend::cpu::range_bits(i, &keep)).collect()
}

/// Words of a bound mask for a shard ([`Span::word0`], [`Span::words`]).
pub fn mask_words(mask: &[u64], span: &Span) -> Vec<u64> {
    (0..span.words()).map(|i| mask.get(span.word0() + i).copied().unwrap_or(0)).collect()
}

/// Shard `span`'s index: rows `span.base..span.rows.end` of `ix` (views of the map when
/// `ix` is mapped), every centroid, the shard's lists at their rows and every other list
/// empty, padding rows dead. Ids and source rows stay with the whole index (the executor
/// maps results); the shard's are empty.
pub fn shard_index(ix: &Index, span: &Span) -> Index {
    let (d, base, end) = (ix.dim, span.base, span.rows.end);
    let n = span.len();
    let (w0, ws) = (span.word0(), span.words());
    let mut sub = ix.clone();
    sub.items.rows = n;
    sub.items.codes = ix.items.codes.slice(base * d..end * d);
    sub.items.scale = ix.items.scale.slice(base..end);
    if !ix.sqnorms.is_empty() {
        sub.sqnorms = ix.sqnorms.slice(base..end);
    }
    sub.embeddings = ix.embeddings.as_ref().map(|e| e.slice(base * d..end * d));
    let f = ix.feature_names.len();
    sub.features = ix.features.as_ref().map(|t| t.slice(base * f..end * f));
    let first = (span.rows.start - base) as u64;
    sub.list_offsets = (0..=ix.nlist())
        .map(|l| match l {
            l if l <= span.lists.start => first,
            l if l >= span.lists.end => n as u64,
            l => ix.list_offsets[l] - base as u64,
        })
        .collect();
    sub.ids = Default::default();
    sub.source_rows = Tensor::from(Vec::new());
    let m = ix.bloom.params.bits as usize;
    let mut planes = Vec::with_capacity(m * ws);
    for b in 0..m {
        let row = &ix.bloom.planes[b * ix.bloom.words..(b + 1) * ix.bloom.words];
        planes.extend((0..ws).map(|i| row.get(w0 + i).copied().unwrap_or(0)));
    }
    sub.bloom = BloomPlanes { params: ix.bloom.params, words: ws, planes: planes.into() };
    let (a0, a1) = (ix.attrs.offsets[base] as usize, ix.attrs.offsets[end] as usize);
    sub.attrs.offsets = ix.attrs.offsets[base..=end].iter().map(|&o| o - a0 as u64).collect::<Vec<u64>>().into();
    sub.attrs.values = ix.attrs.values.slice(a0..a1);
    for (c, src) in sub.columns.cols.iter_mut().zip(&ix.columns.cols) {
        c.values = values(&src.values, base..end);
        c.present = bits(&src.present, w0, ws, 0..n).into();
        c.word_range = values(&src.word_range, 2 * w0..2 * (w0 + ws));
    }
    // Live: the shard's own rows that are live in `ix`; padding rows dead.
    let own = span.rows.start - base..n;
    sub.live = match &ix.live {
        None if own.start == 0 => None,
        None => Some(bits(&vec![!0u64; w0 + ws], w0, ws, own)),
        Some(live) => Some(bits(live, w0, ws, own)),
    };
    sub.calibration = None;
    sub
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(sizes: &[u64]) -> Vec<u64> {
        std::iter::once(0)
            .chain(sizes.iter().scan(0, |a, &s| {
                *a += s;
                Some(*a)
            }))
            .collect()
    }

    #[test]
    fn balanced_cuts_cover_every_list_once_near_equal_rows() {
        let off = offsets(&[500, 0, 700, 300, 1, 0, 2000, 999]);
        for g in 1..=10 {
            let lay = Layout::balanced(&off, g);
            assert_eq!(lay.spans.len(), g);
            assert_eq!(lay.spans[0].lists.start, 0);
            assert_eq!(lay.spans[g - 1].lists.end, 8);
            for w in lay.spans.windows(2) {
                assert_eq!(w[0].lists.end, w[1].lists.start, "g = {g}");
                assert_eq!(w[0].rows.end, w[1].rows.start);
            }
            for s in &lay.spans {
                assert_eq!(s.base % ALIGN, 0);
                assert!(s.base <= s.rows.start && s.rows.start - s.base < ALIGN);
            }
        }
        // Two shards: the list offsets around half of 4500 rows are 1501 (before list 6)
        // and 3501 (after it); 1501 is nearer.
        let two = Layout::balanced(&off, 2);
        assert_eq!(two.spans[0].lists, 0..6);
        assert_eq!(two.spans[0].rows, 0..1501);
        assert_eq!(two.spans[1].base, 1024);
    }

    #[test]
    fn more_shards_than_lists_leaves_empty_shards() {
        let off = offsets(&[10, 0, 7]);
        let lay = Layout::balanced(&off, 5);
        assert_eq!(lay.spans.iter().map(|s| s.rows.len()).sum::<usize>(), 17);
        assert!(lay.spans.iter().any(|s| s.rows.is_empty()));
        let empty = Layout::balanced(&offsets(&[0, 0]), 3);
        assert!(empty.spans.iter().all(|s| s.is_empty()));
        assert_eq!(empty.spans[2].lists, 0..2);
    }
}
