//! The fresh segment of `silica serve`: items written since the artifact, searched on the
//! main index's backend by the same probe and kernels as built items.
//!
//! The segment is an [`Index`] over the **main index's centroids** (same `ivf.centroids`,
//! `ivf.centroid_codes`, so the same nlist and the same probe ranking). Every fresh row is
//! quantized by the build's rule ([`silica_core::model::quantize`]) and placed in the list the
//! build's assignment rule gives it ([`silica_core::model::compute`]: argmax of the int8 dot times
//! the centroid scale), which is where a rebuild with the same centroids would put it. A
//! search probes the same `nprobe` lists in both segments ([`silica_core::graph::segments`]), so
//! what a query pays for fresh items is the rows its probed fresh lists hold.
//!
//! [`FreshRows`] keeps the rows in arrival order (a row's number here is its arrival
//! index: what [`super::state::Loc::Fresh`] holds), in two parts:
//!
//! * the **lists** part, rows `0..folded`, laid out by list (stable by arrival) with their
//!   Bloom planes, exact attribute CSR and live bitset ([`FreshRows::build_lists`]);
//! * the **tail**, rows `folded..`: the latest items, in one list that every query scans
//!   whole ([`FreshRows::build_tail`]), at most [`FreshRows::tail_limit`] rows. When it
//!   reaches that, [`FreshRows::fold_tail`] moves it into the lists part, which is then
//!   rebuilt (O(fresh rows), once per `tail_limit` new items instead of once per write).
//!
//! A query therefore pays for fresh items the rows of its probed fresh lists plus at most
//! `tail_limit` tail rows, however many fresh items there are. Each part is rebuilt only in
//! a published version that changed it; a published [`Index`] is immutable, so an older
//! snapshot keeps answering from its own copy.

use super::segment::NewRow;
use half::f16;
use silica_core::model::{Attributes, BloomPlanes, I8Matrix, Ids, Index, Schema};
use std::sync::Arc;

/// Fresh rows in arrival order, and the segment built from them. See the module docs.
pub struct FreshRows {
    rows: Vec<Arc<NewRow>>,
    live: Vec<bool>,
    dead: usize,
    /// Rows `0..folded` are the lists part, the rest the tail.
    folded: usize,
    /// Most rows the tail holds before [`FreshRows::fold_tail`].
    tail_limit: usize,
    /// Parts changed since their last build.
    lists_dirty: bool,
    tail_dirty: bool,
    /// A fold built off the writer ([`FreshRows::begin_fold`]): rows `0..to` go into the
    /// lists part when it is installed; `touched`: one of them changed since it began.
    folding: Option<Fold>,
}

#[derive(Clone, Copy, Debug)]
struct Fold {
    to: usize,
    touched: bool,
}

impl FreshRows {
    /// An empty store whose tail holds at most `tail_limit` rows (>= 1).
    pub fn new(tail_limit: usize) -> FreshRows {
        FreshRows {
            rows: Vec::new(),
            live: Vec::new(),
            dead: 0,
            folded: 0,
            tail_limit: tail_limit.max(1),
            lists_dirty: false,
            tail_dirty: false,
            folding: None,
        }
    }

    /// The same rows with another tail limit (>= 1).
    pub fn with_tail_limit(mut self, n: usize) -> FreshRows {
        self.tail_limit = n.max(1);
        self
    }

    /// Most rows of the tail (see the module docs).
    pub fn tail_limit(&self) -> usize {
        self.tail_limit
    }

    /// Rows in the tail.
    pub fn tail_len(&self) -> usize {
        self.rows.len() - self.folded
    }

    /// True when the tail is full: [`FreshRows::fold_tail`] is due.
    pub fn tail_full(&self) -> bool {
        self.tail_len() >= self.tail_limit
    }

    /// Move the tail into the lists part (both change).
    pub fn fold_tail(&mut self) {
        if self.tail_len() > 0 {
            self.folded = self.rows.len();
            (self.lists_dirty, self.tail_dirty) = (true, true);
        }
    }

    /// Start a fold built off the writer thread: returns a copy of the rows with the tail
    /// folded, whose [`FreshRows::build_lists`] is the next lists part (O(rows) on any
    /// thread; rows are shared, not copied). Meanwhile this store keeps taking rows (the
    /// tail may pass its limit) until [`FreshRows::finish_fold`]. None when a fold is
    /// already running or the tail is empty.
    pub fn begin_fold(&mut self) -> Option<FreshRows> {
        if self.folding.is_some() || self.tail_len() == 0 {
            return None;
        }
        let to = self.rows.len();
        self.folding = Some(Fold { to, touched: false });
        Some(FreshRows {
            rows: self.rows.clone(),
            live: self.live.clone(),
            dead: self.dead,
            folded: to,
            tail_limit: self.tail_limit,
            lists_dirty: true,
            tail_dirty: false,
            folding: None,
        })
    }

    /// True while a fold begun by [`FreshRows::begin_fold`] is not finished.
    pub fn folding(&self) -> bool {
        self.folding.is_some()
    }

    /// The fold begun by [`FreshRows::begin_fold`] was built: its rows are the lists part
    /// now (the tail is what came after). Returns true when its build is current (install
    /// it); false when one of its rows was deleted, replaced or patched meanwhile (the
    /// lists part is then marked changed, to be rebuilt at the next publish) or no fold ran.
    pub fn finish_fold(&mut self) -> bool {
        let Some(f) = self.folding.take() else { return false };
        self.folded = f.to;
        self.tail_dirty = true;
        if f.touched {
            self.lists_dirty = true;
        }
        !f.touched
    }

    fn touch(&mut self, r: u32) {
        if let Some(f) = self.folding.as_mut().filter(|f| (r as usize) < f.to) {
            f.touched = true;
        }
        if (r as usize) < self.folded {
            self.lists_dirty = true;
        } else {
            self.tail_dirty = true;
        }
    }

    /// Rows appended (live or dead).
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// Rows deleted or replaced.
    pub fn dead(&self) -> usize {
        self.dead
    }
    /// True when a part changed since its last build.
    pub fn dirty(&self) -> bool {
        self.lists_dirty || self.tail_dirty
    }
    /// True when the lists part changed since [`FreshRows::build_lists`].
    pub fn lists_dirty(&self) -> bool {
        self.lists_dirty
    }
    /// True when the tail changed since [`FreshRows::build_tail`].
    pub fn tail_dirty(&self) -> bool {
        self.tail_dirty
    }

    /// Append a row (its `list` already assigned) to the tail; returns its arrival index.
    pub fn append(&mut self, row: NewRow) -> u32 {
        self.rows.push(Arc::new(row));
        self.live.push(true);
        self.tail_dirty = true;
        (self.rows.len() - 1) as u32
    }

    /// Mark row `r` dead (delete, or replaced by a newer version). Idempotent.
    pub fn kill(&mut self, r: u32) {
        let l = &mut self.live[r as usize];
        if *l {
            *l = false;
            self.dead += 1;
            self.touch(r);
        }
    }

    /// Fresh row `r` (live or not).
    pub fn row(&self, r: u32) -> &NewRow {
        &self.rows[r as usize]
    }

    /// Set row `r`'s key of typed column `col` (the main index's `Columns::cols` order).
    pub fn set_typed(&mut self, r: u32, col: usize, key: Option<u64>) {
        let row = Arc::make_mut(&mut self.rows[r as usize]);
        if row.typed.len() <= col {
            row.typed.resize(col + 1, None);
        }
        row.typed[col] = key;
        self.touch(r);
    }

    /// Sorted value ids of row `r`.
    pub fn values(&self, r: u32) -> &[u32] {
        &self.rows[r as usize].values
    }

    /// Replace row `r`'s attribute values (sorted, distinct) and Bloom bits.
    pub fn set_attrs(&mut self, r: u32, values: Vec<u32>, bits: Vec<u32>) {
        let row = Arc::make_mut(&mut self.rows[r as usize]);
        row.values = values;
        row.bits = bits;
        self.touch(r);
    }

    /// The lists part over `main`'s centroids (see the module docs); clears
    /// [`FreshRows::lists_dirty`]. O(rows of the part): every array is written once.
    pub fn build_lists(&mut self, main: &Index) -> Index {
        self.lists_dirty = false;
        let l = main.nlist();
        let rows = &self.rows[..self.folded];
        // Counting sort by list, stable by arrival.
        let mut list_offsets = vec![0u64; l + 1];
        for r in rows {
            list_offsets[r.list as usize + 1] += 1;
        }
        for i in 0..l {
            list_offsets[i + 1] += list_offsets[i];
        }
        let mut cursor = list_offsets.clone();
        let mut order = vec![0usize; rows.len()];
        for (a, r) in rows.iter().enumerate() {
            order[cursor[r.list as usize] as usize] = a;
            cursor[r.list as usize] += 1;
        }
        self.layout(main, &order, list_offsets, main.centroids.clone(), main.centroid_codes.clone())
    }

    /// The tail as a one-list segment in arrival order (probed whole); clears
    /// [`FreshRows::tail_dirty`].
    pub fn build_tail(&mut self, main: &Index) -> Index {
        self.tail_dirty = false;
        let d = main.dim;
        let order: Vec<usize> = (self.folded..self.rows.len()).collect();
        let one = I8Matrix { rows: 1, dim: d, codes: vec![0; d].into(), scale: vec![0.0].into() };
        self.layout(main, &order, vec![0, order.len() as u64], vec![0.0; d], one)
    }

    /// An index of rows `order` (arrival indices, in row order) with these lists.
    fn layout(&self, main: &Index, order: &[usize], list_offsets: Vec<u64>, centroids: Vec<f32>, centroid_codes: I8Matrix) -> Index {
        let (d, n) = (main.dim, order.len());
        let f = main.feature_names.len();
        let (mut codes, mut scale) = (Vec::with_capacity(n * d), Vec::with_capacity(n));
        let mut emb: Option<Vec<f16>> = main.embeddings.as_ref().map(|_| Vec::with_capacity(n * d));
        let mut feats: Option<Vec<f32>> = main.features.as_ref().map(|_| Vec::with_capacity(n * f));
        let (mut ids, mut source_rows) = (Ids::default(), Vec::with_capacity(n));
        let (mut offsets, mut values) = (Vec::with_capacity(n + 1), Vec::new());
        offsets.push(0u64);
        let words = n.div_ceil(64);
        let params = main.bloom.params;
        let mut planes = vec![0u64; params.bits as usize * words];
        let mut live = vec![0u64; words];
        for (s, &a) in order.iter().enumerate() {
            let row = &self.rows[a];
            codes.extend_from_slice(&row.codes);
            scale.push(row.scale);
            if let Some(e) = emb.as_mut() {
                match &row.embedding {
                    Some(x) => e.extend_from_slice(x),
                    None => e.extend(row.codes.iter().map(|&c| f16::from_f32(c as f32 * row.scale))),
                }
            }
            if let Some(x) = feats.as_mut() {
                x.extend_from_slice(&row.features);
            }
            ids.push(&row.id);
            source_rows.push(row.source_row);
            values.extend_from_slice(&row.values);
            offsets.push(values.len() as u64);
            let (w, bit) = (s / 64, 1u64 << (s % 64));
            for &p in &row.bits {
                planes[p as usize * words + w] |= bit;
            }
            if self.live[a] {
                live[w] |= bit;
            }
        }
        let items = I8Matrix { rows: n, dim: d, codes: codes.into(), scale: scale.into() };
        // The main index's typed columns over these rows (a row without a key has no value).
        let columns = silica_core::model::Columns {
            cols: main
                .columns
                .cols
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let keys: Vec<Option<u64>> = order.iter().map(|&a| self.rows[a].typed.get(j).copied().flatten()).collect();
                    silica_core::model::Column::from_keys(&c.name, c.ty, &keys, &list_offsets)
                })
                .collect(),
        };
        Index {
            dim: d,
            metric: main.metric,
            centroids,
            centroid_codes,
            list_offsets,
            sqnorms: silica_core::model::metric::sqnorms_for(main.metric, &items),
            items,
            embeddings: emb.map(Into::into),
            features: feats.map(Into::into),
            feature_names: main.feature_names.clone(),
            ids,
            source_rows: source_rows.into(),
            bloom: BloomPlanes { params, words, planes: planes.into() },
            attrs: Attributes { schema: Schema::default(), offsets: offsets.into(), values: values.into() },
            rerank: main.rerank.clone(),
            live: Some(live),
            calibration: None,
            columns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use silica_core::model::BloomParams;
    use silica_core::model::quantize::quantize;

    fn main_index(l: usize, d: usize) -> Index {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let c: Vec<f32> = (0..l * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Index {
            dim: d,
            metric: silica_core::Metric::Ip,
            centroid_codes: quantize(&c, d),
            centroids: c,
            list_offsets: vec![0; l + 1],
            items: I8Matrix { rows: 0, dim: d, codes: Default::default(), scale: Default::default() },
            embeddings: Some(Default::default()),
            features: None,
            feature_names: vec![],
            ids: Default::default(),
            source_rows: Default::default(),
            bloom: BloomPlanes { params: BloomParams { bits: 32, hashes: 2, seed: 0 }, words: 0, planes: Default::default() },
            attrs: Attributes { offsets: vec![0].into(), ..Default::default() },
            rerank: None,
            live: None,
            calibration: None,
            sqnorms: Default::default(),
            columns: Default::default(),
        }
    }

    #[test]
    fn a_background_fold_installs_only_when_its_rows_did_not_change() {
        let (l, d) = (5, 4);
        let main = main_index(l, d);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let row = |i: usize, rng: &mut rand_chacha::ChaCha8Rng| {
            let x: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let list = silica_core::model::compute::assign_cpu(&quantize(&x, d).codes, &main.centroid_codes)[0];
            NewRow::encode(format!("r{i}"), i as u64, &x, list, true, vec![], vec![], vec![])
        };
        for touch in [None, Some(2u32), Some(9)] {
            let mut f = FreshRows::new(4);
            assert!(f.begin_fold().is_none(), "an empty tail has nothing to fold");
            for i in 0..6 {
                f.append(row(i, &mut rng));
            }
            let mut job = f.begin_fold().expect("a tail to fold");
            assert!(f.begin_fold().is_none() && f.folding(), "one fold at a time");
            // Writes go on meanwhile: the tail passes its limit.
            for i in 6..11 {
                f.append(row(i, &mut rng));
            }
            if let Some(r) = touch {
                f.kill(r);
            }
            let built = job.build_lists(&main);
            assert_eq!(built.len(), 6);
            let current = f.finish_fold();
            // A kill among the folded rows voids the build; a kill in the newer tail does not.
            assert_eq!(current, touch.is_none_or(|r| r >= 6), "touch {touch:?}");
            assert_eq!((f.folding(), f.tail_len(), f.lists_dirty(), f.tail_dirty()), (false, 5, !current, true));
            assert!(!f.finish_fold(), "no fold running");
            let tail = f.build_tail(&main);
            assert_eq!((0..tail.len()).map(|s| tail.source_rows[s]).collect::<Vec<_>>(), vec![6, 7, 8, 9, 10]);
        }
    }

    #[test]
    fn build_lays_rows_out_by_list_with_their_bits_and_values() {
        let (l, d) = (7, 5);
        let main = main_index(l, d);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for n in [0usize, 1, 63, 64, 65, 200] {
            let mut f = FreshRows::new(1000);
            let mut want_list = Vec::new();
            for i in 0..n {
                let x: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let vals = vec![i as u32 % 3, 10 + i as u32 % 5];
                let bits = vec![(i % 32) as u32, ((i * 7) % 32) as u32];
                let list = silica_core::model::compute::assign_cpu(&quantize(&x, d).codes, &main.centroid_codes)[0];
                want_list.push(list);
                f.append(NewRow::encode(format!("r{i}"), 100 + i as u64, &x, list, true, vec![], vals, bits));
            }
            for r in (0..n as u32).step_by(4) {
                f.kill(r);
            }
            if n > 3 {
                f.set_attrs(3, vec![42], vec![31]);
            }
            assert!(n == 0 || f.tail_dirty());
            let tail = f.build_tail(&main);
            assert_eq!((tail.nlist(), tail.len(), f.tail_dirty()), (1, n, false));
            for s in 0..n {
                assert_eq!(tail.source_rows[s], 100 + s as u64, "the tail is in arrival order");
            }
            f.fold_tail();
            assert!(f.tail_len() == 0 && (n == 0 || f.lists_dirty()));
            let ix = f.build_lists(&main);
            assert!(!f.lists_dirty());
            assert_eq!(f.build_tail(&main).len(), 0);
            assert_eq!((ix.len(), ix.nlist(), ix.bloom.words), (n, l, n.div_ceil(64)));
            let mut seen = 0;
            for li in 0..l {
                let mut last = None;
                for s in ix.list_range(li) {
                    let a = (ix.source_rows[s] - 100) as usize;
                    assert_eq!(want_list[a] as usize, li, "row {a} sits in its assigned list");
                    assert!(last < Some(a), "stable by arrival");
                    last = Some(a);
                    assert_eq!(&ix.ids[s], format!("r{a}").as_str());
                    assert_eq!(ix.items.row(s), &f.rows[a].codes[..]);
                    assert_eq!(ix.attrs.row(s), f.values(a as u32));
                    assert_eq!(ix.live_word(s / 64) >> (s % 64) & 1 == 1, !a.is_multiple_of(4), "live bit of row {a}");
                    for p in 0..32u32 {
                        assert_eq!(ix.bloom.word(p, s / 64) >> (s % 64) & 1 == 1, f.rows[a].bits.contains(&p));
                    }
                    seen += 1;
                }
            }
            assert_eq!(seen, n);
            assert_eq!(f.dead(), n.div_ceil(4));
        }
    }
}
