//! In-place updates of an [`Index`] and the left-right pair that publishes them.
//!
//! * [`SegOp`]: the two changes the main index takes in place: kill a row (clear its
//!   `live` bit) and rewrite a row's attributes (its Bloom column across all planes + its
//!   exact CSR row). New rows go to the fresh segment ([`super::fresh`]).
//! * [`Pair`]: two copies of a segment. Readers search the *published* copy; the writer
//!   applies an update batch to the other copy, then swaps. The next batch first replays
//!   the previous batch's ops on the now-spare copy. So a batch costs O(what changes)
//!   instead of a full copy of the index, and a reader never sees half a batch.

use half::f16;
use silica_core::model::Index;
use silica_core::model::quantize::quantize_row;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A row to append to the fresh segment, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRow {
    pub id: String,
    /// Global row number reported as `rows` in results.
    pub source_row: u64,
    /// Inverted list (of the main index's centroids) by the build's assignment rule.
    pub list: u32,
    /// `[D]` int8 codes and their scale.
    pub codes: Vec<i8>,
    pub scale: f32,
    /// `[D]` f16 rerank embedding (when the index stores embeddings).
    pub embedding: Option<Vec<f16>>,
    /// `[F]` features in the index's feature order.
    pub features: Vec<f32>,
    /// Sorted, distinct global value ids.
    pub values: Vec<u32>,
    /// Bloom bit positions of all values.
    pub bits: Vec<u32>,
    /// One key per typed column of the main index (`Columns::cols` order; `None`: no value).
    pub typed: Vec<Option<u64>>,
}

impl NewRow {
    /// Quantize `x` (already normalized for cosine) into a row of list `list`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        id: String,
        source_row: u64,
        x: &[f32],
        list: u32,
        with_embedding: bool,
        features: Vec<f32>,
        values: Vec<u32>,
        bits: Vec<u32>,
    ) -> NewRow {
        let mut codes = vec![0i8; x.len()];
        let scale = quantize_row(x, &mut codes);
        let embedding = with_embedding.then(|| x.iter().map(|&v| f16::from_f32(v)).collect());
        NewRow { id, source_row, list, codes, scale, embedding, features, values, bits, typed: Vec::new() }
    }
}

/// One change to a segment.
#[derive(Clone, Debug, PartialEq)]
pub enum SegOp {
    /// Clear row's live bit (delete, or replaced by a newer version).
    Kill(u32),
    /// Replace a row's attribute values (sorted ids) and Bloom bits.
    SetAttrs { row: u32, values: Arc<[u32]>, bits: Arc<[u32]> },
    /// Set a row's value of typed column `col` (`Columns::cols` index; `None`: no value).
    /// Host only: typed terms are bound to host masks per snapshot, so no device tensor
    /// changes.
    SetTyped { row: u32, col: usize, key: Option<u64> },
}

/// Number of live rows of `ix`.
pub fn live_rows(ix: &Index) -> usize {
    match &ix.live {
        None => ix.len(),
        Some(l) => (0..ix.len()).filter(|&r| l[r / 64] >> (r % 64) & 1 == 1).count(),
    }
}

/// True when row `r` is live.
pub fn is_live(ix: &Index, r: usize) -> bool {
    ix.live_word(r / 64) >> (r % 64) & 1 == 1
}

/// Apply one op in place.
pub fn apply(ix: &mut Index, op: &SegOp) {
    match op {
        SegOp::Kill(r) => kill(ix, *r as usize),
        SegOp::SetAttrs { row, values, bits } => set_attrs(ix, *row as usize, values, bits),
        SegOp::SetTyped { row, col, key } => ix.columns.cols[*col].set(*row as usize, *key, &ix.list_offsets),
    }
}

fn kill(ix: &mut Index, r: usize) {
    let words = ix.len().div_ceil(64).max(ix.bloom.words);
    let live = ix.live.get_or_insert_with(|| vec![!0u64; words]);
    live[r / 64] &= !(1u64 << (r % 64));
}

fn set_attrs(ix: &mut Index, r: usize, values: &[u32], bits: &[u32]) {
    // Bloom: row r is bit r%64 of word r/64 in every plane; clear the column, set the new bits.
    let (words, w, bit) = (ix.bloom.words, r / 64, 1u64 << (r % 64));
    for p in 0..ix.bloom.params.bits as usize {
        ix.bloom.planes[p * words + w] &= !bit;
    }
    for &p in bits {
        ix.bloom.planes[p as usize * words + w] |= bit;
    }
    // Exact CSR row: overwrite when the length is unchanged, else splice and shift offsets.
    let a = &mut ix.attrs;
    let (s, e) = (a.offsets[r] as usize, a.offsets[r + 1] as usize);
    if e - s == values.len() {
        a.values[s..e].copy_from_slice(values);
    } else {
        a.values.make_mut().splice(s..e, values.iter().copied());
        let delta = values.len() as i64 - (e - s) as i64;
        for o in &mut a.offsets[r + 1..] {
            *o = (*o as i64 + delta) as u64;
        }
    }
}

/// Two copies of a segment (left-right): `published` is what snapshots search; the
/// writer mutates the other copy and swaps it in with [`Pair::publish`].
pub struct Pair {
    published: Arc<Index>,
    /// The other copy, behind by `lag` (None until a first update needs it).
    spare: Option<Arc<Index>>,
    lag: Vec<SegOp>,
    /// The copy being updated (uniquely owned) and the ops applied to it since publish.
    working: Option<Arc<Index>>,
    pending: Vec<SegOp>,
}

/// How long the writer waits for searches still holding the spare copy before copying it.
const WAIT_FOR_READERS: Duration = Duration::from_millis(200);

impl Pair {
    pub fn new(ix: Arc<Index>) -> Pair {
        Pair { published: ix, spare: None, lag: Vec::new(), working: None, pending: Vec::new() }
    }

    /// The latest state, including unpublished ops.
    pub fn current(&self) -> &Index {
        self.working.as_deref().unwrap_or(&self.published)
    }

    /// The published copy.
    pub fn published(&self) -> &Arc<Index> {
        &self.published
    }

    /// True when ops were applied since the last publish.
    pub fn dirty(&self) -> bool {
        self.working.is_some()
    }

    /// Apply `op` to the working copy (not visible to readers until [`Pair::publish`]).
    pub fn apply(&mut self, op: SegOp) {
        apply(self.acquire(), &op);
        self.pending.push(op);
    }

    fn acquire(&mut self) -> &mut Index {
        if self.working.is_none() {
            let mut s = match self.spare.take() {
                Some(s) => s,
                None => {
                    self.lag.clear();
                    Arc::new((*self.published).clone())
                }
            };
            // Searches that started on an older snapshot may still hold the spare copy;
            // they finish in milliseconds. Past the wait, copy it instead (make_mut).
            let t0 = Instant::now();
            let mut pause = Duration::from_micros(20);
            while Arc::strong_count(&s) > 1 && t0.elapsed() < WAIT_FOR_READERS {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            let m = Arc::make_mut(&mut s);
            for op in self.lag.drain(..) {
                apply(m, &op);
            }
            self.working = Some(s);
        }
        Arc::get_mut(self.working.as_mut().expect("acquired above")).expect("the working copy is uniquely owned")
    }

    /// What the last [`Pair::publish`] changed (for `Search::with_index`): deletes change
    /// the live bits, attribute patches the Bloom planes (in the patched rows' words) and
    /// the attributes, typed patches the columns (in the patched rows).
    pub fn published_changes(&self) -> silica_core::backend::Changed {
        use silica_core::backend::Changed;
        let mut c = Changed::NONE;
        let (mut rows, mut typed): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
        for op in &self.lag {
            match op {
                SegOp::Kill(_) => c.live = true,
                SegOp::SetTyped { row, .. } => {
                    c.columns = true;
                    typed.push(*row);
                }
                SegOp::SetAttrs { row, .. } => {
                    (c.planes, c.attrs) = (true, true);
                    rows.push(*row);
                }
            }
        }
        if c.planes {
            rows.sort_unstable();
            rows.dedup();
            let mut words: Vec<u32> = rows.iter().map(|r| r / 64).collect();
            words.dedup();
            c.plane_words = Some(words.into());
            c.attr_rows = Some(rows.into());
        }
        if c.columns {
            typed.sort_unstable();
            typed.dedup();
            c.column_rows = Some(typed.into());
        }
        c
    }

    /// Publish the working copy; returns it, or `None` when nothing changed.
    pub fn publish(&mut self) -> Option<Arc<Index>> {
        let w = self.working.take()?;
        let old = std::mem::replace(&mut self.published, w);
        self.spare = Some(old);
        self.lag = std::mem::take(&mut self.pending);
        Some(self.published.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silica_core::model::{Attributes, BloomParams, BloomPlanes, I8Matrix};

    fn fresh_with(n: usize) -> (Index, Vec<Arc<NewRow>>) {
        let mut main = Index {
            dim: 3,
            metric: silica_core::Metric::Ip,
            centroids: vec![0.0; 3],
            centroid_codes: I8Matrix { rows: 1, dim: 3, codes: vec![0; 3].into(), scale: vec![0.0].into() },
            list_offsets: vec![0, 0],
            items: I8Matrix { rows: 0, dim: 3, codes: Default::default(), scale: Default::default() },
            embeddings: Some(Default::default()),
            features: None,
            feature_names: vec![],
            ids: Default::default(),
            source_rows: Default::default(),
            bloom: BloomPlanes { params: BloomParams { bits: 16, hashes: 2, seed: 0 }, words: 0, planes: Default::default() },
            attrs: Attributes::default(),
            rerank: None,
            live: None,
            calibration: None,
            sqnorms: Default::default(),
            columns: Default::default(),
        };
        main.attrs.offsets = vec![0].into();
        // A one-list segment of n rows (arrival order = row order), laid out by the fresh store.
        let mut fresh = super::super::fresh::FreshRows::new(usize::MAX);
        let rows: Vec<Arc<NewRow>> = (0..n)
            .map(|i| {
                let v = vec![i as u32 % 4, 10 + (i as u32 % 3)];
                let bits = v.iter().flat_map(|&x| main.bloom.params.positions("f", &x.to_string())).collect();
                Arc::new(NewRow::encode(format!("r{i}"), 100 + i as u64, &[i as f32, 1.0, -2.0], 0, true, vec![], v, bits))
            })
            .collect();
        for r in &rows {
            fresh.append((**r).clone());
        }
        (fresh.build_tail(&main), rows)
    }

    /// Planes rebuilt from scratch over the current rows (the reference for in-place edits).
    fn rebuilt(ix: &Index, bits_of: impl Fn(usize) -> Vec<u32> + Sync) -> BloomPlanes {
        BloomPlanes::build(ix.bloom.params, ix.len(), bits_of)
    }

    #[test]
    fn rows_across_word_boundaries_keep_their_bits() {
        for n in [0usize, 1, 63, 64, 65, 130] {
            let (f, rows) = fresh_with(n);
            assert_eq!(f.len(), n);
            assert_eq!(f.list_range(0), 0..n);
            assert_eq!(live_rows(&f), n);
            let want = rebuilt(&f, |r| rows[r].bits.clone());
            for p in 0..16u32 {
                for w in 0..want.words {
                    assert_eq!(f.bloom.word(p, w), want.word(p, w), "n={n} plane {p} word {w}");
                }
            }
            for (r, row) in rows.iter().enumerate() {
                assert_eq!(f.attrs.row(r), &row.values[..]);
                assert_eq!(&f.items.row(r), &row.codes.as_slice());
                assert_eq!(&f.ids[r], row.id.as_str());
            }
            assert_eq!(f.embeddings.as_ref().unwrap().len(), 3 * n);
        }
    }

    #[test]
    fn set_attrs_rewrites_one_column_and_csr_row() {
        let (mut f, rows) = fresh_with(70);
        let mut vals: Vec<Vec<u32>> = rows.iter().map(|r| r.values.clone()).collect();
        let mut bits: Vec<Vec<u32>> = rows.iter().map(|r| r.bits.clone()).collect();
        // Longer, shorter and same-length rewrites, including the last row.
        for (r, v) in [(3usize, vec![1u32, 2, 3]), (64, vec![]), (69, vec![7, 8]), (0, vec![5])] {
            let b: Vec<u32> = v.iter().flat_map(|&x| f.bloom.params.positions("g", &x.to_string())).collect();
            apply(&mut f, &SegOp::SetAttrs { row: r as u32, values: v.clone().into(), bits: b.clone().into() });
            vals[r] = v;
            bits[r] = b;
        }
        let want = rebuilt(&f, |r| bits[r].clone());
        for p in 0..16u32 {
            for w in 0..want.words {
                assert_eq!(f.bloom.word(p, w), want.word(p, w));
            }
        }
        for (r, v) in vals.iter().enumerate() {
            assert_eq!(f.attrs.row(r), &v[..], "row {r}");
        }
        apply(&mut f, &SegOp::Kill(64));
        assert!(!is_live(&f, 64) && is_live(&f, 63) && is_live(&f, 65));
        assert_eq!(live_rows(&f), 69);
    }

    #[test]
    fn pair_publishes_whole_batches_and_replays_lag() {
        let (f, _) = fresh_with(5);
        let mut p = Pair::new(Arc::new(f));
        let reader = p.published().clone();
        p.apply(SegOp::Kill(1));
        p.apply(SegOp::Kill(2));
        assert_eq!(live_rows(p.published()), 5, "unpublished ops are invisible");
        assert_eq!(live_rows(p.current()), 3);
        let v1 = p.publish().unwrap();
        assert_eq!(
            p.published_changes(),
            silica_core::backend::Changed { live: true, ..silica_core::backend::Changed::NONE },
            "deletes change only live bits"
        );
        assert_eq!(live_rows(&v1), 3);
        assert_eq!(live_rows(&reader), 5, "an old snapshot keeps its state");
        assert!(p.publish().is_none());
        drop(reader);
        drop(v1);
        // The spare (old published) copy catches up with the lag before the next op.
        p.apply(SegOp::Kill(4));
        let v2 = p.publish().unwrap();
        assert_eq!(live_rows(&v2), 2);
        assert!(!is_live(&v2, 1) && !is_live(&v2, 2) && !is_live(&v2, 4));
        // A reader holding the spare copy past the wait: the writer copies it instead of
        // blocking, and the reader keeps its state.
        let held = v2;
        p.apply(SegOp::Kill(0));
        let v3 = p.publish().unwrap();
        assert_eq!(live_rows(&v3), 1);
        let t0 = Instant::now();
        p.apply(SegOp::Kill(3));
        assert!(t0.elapsed() >= WAIT_FOR_READERS);
        let v4 = p.publish().unwrap();
        assert_eq!(live_rows(&v4), 0);
        assert_eq!(live_rows(&held), 2);
        // A patch changes planes and attributes, not live bits; an append, everything.
        p.apply(SegOp::SetAttrs { row: 2, values: vec![1u32].into(), bits: vec![3u32].into() });
        p.publish().unwrap();
        assert_eq!(
            p.published_changes(),
            silica_core::backend::Changed {
                planes: true,
                attrs: true,
                plane_words: Some(vec![0u32].into()),
                attr_rows: Some(vec![2u32].into()),
                ..silica_core::backend::Changed::NONE
            }
        );
    }
}
