//! Sharding by inverted lists: one [`Backend`] made of G backends of one kind (G CPUs
//! standing in for G GPUs, `cuda:0,cuda:1`, or two shards on one GPU), so that
//! [`crate::graph`] stays the only sequencer: the executor runs its usual stages on
//! [`Sharded`], which fans each one out.
//!
//! * **Layout** ([`layout`]): each shard holds a contiguous run of lists balanced by rows
//!   (bytes), its rows only, and every centroid.
//! * **Stage 1** runs once, on shard 0; the host copy of its probes is uploaded to the other
//!   shards ([`Backend::upload_probes`]). Every shard gets all probed lists: the lists it
//!   does not own are empty in its index, so it scans exactly its share.
//! * **Stages 2-3** (and the candidate route, [`Backend::scan_candidates`]) run on every
//!   shard at once (one thread each); typed masks bound to the whole index are sliced per
//!   shard (word slices: shards start at multiples of [`layout::ALIGN`] rows). The per-shard
//!   top-K0 are read back and **merged on the host** in the top-K order every backend uses
//!   (score descending, ties by lower row: [`crate::topk::Scored`]), rows mapped back to
//!   the whole index, so the merged top-K0 is bit-identical to the single-device one.
//! * **Stage 4** hands each shard its share of the merged top-K0 ([`Backend::upload_cands`])
//!   and re-scores there (the embeddings live on their shard); **stage 5** takes each
//!   shard's top-k and merges them on the host the same way.
//!
//! CUDA shards therefore exchange candidates through the host (device -> host copies of
//! `[B, K0]` rows and scores per shard, host -> device copies of each share), not NCCL or
//! peer copies: no multicast API is called. The candidate route's admission rule is checked
//! on the host against the whole index for the queries the shards answered, so routing is
//! the same as on one device.

pub mod layout;

use super::{Backend, Candidates, Changed, Mask, Probes, QueryBatch, Rerank};
use crate::error::{Error, Result};
use crate::filter::Plan;
use crate::model::Index;
use crate::topk::{Scored, top_k};
use layout::{Layout, Span};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// G backends of one kind as one backend (module docs). Cheap to clone.
#[derive(Clone)]
pub struct Sharded<B: Backend> {
    shards: Vec<B>,
    name: &'static str,
}

impl<B: Backend> Sharded<B> {
    /// One shard per handle, in order (shard `s` holds the `s`-th run of lists). Handles
    /// may be lanes of one device (several shards on one GPU).
    ///
    /// # Errors
    /// [`Error::Param`] naming `devices` when `shards` is empty.
    pub fn new(shards: Vec<B>) -> Result<Sharded<B>> {
        let first = shards.first().ok_or_else(|| Error::param("devices", "a sharded backend needs at least one device"))?;
        let name = intern(format!("{}x{}", first.name(), shards.len()));
        Ok(Sharded { shards, name })
    }

    /// The shard backends.
    pub fn shards(&self) -> &[B] {
        &self.shards
    }

    /// The layout of a resident index (tests, `silica` logs).
    pub fn layout(ix: &ShardedResident<B>) -> &Layout {
        &ix.layout
    }

    /// `f(s)` for every shard, one thread per shard when there are several.
    fn each<T: Send>(&self, f: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
        if self.shards.len() == 1 {
            return Ok(vec![f(0)?]);
        }
        std::thread::scope(|sc| {
            let f = &f;
            let handles: Vec<_> = (0..self.shards.len()).map(|s| sc.spawn(move || f(s))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    }

    fn upload_with(
        &self,
        index: &Arc<Index>,
        layout: Arc<Layout>,
        old: Option<(&ShardedResident<B>, &Changed)>,
    ) -> Result<ShardedResident<B>> {
        let parts = self.each(|s| {
            let sub = Arc::new(layout::shard_index(index, &layout.spans[s]));
            match old {
                Some((o, changed)) => self.shards[s].update(&o.parts[s], &sub, &shard_changed(changed, &layout.spans[s])),
                None => self.shards[s].upload(&sub),
            }
        })?;
        Ok(ShardedResident { index: index.clone(), layout, parts, masks: Mutex::default() })
    }
}

/// A backend name for `silica` output (`cpux3`), leaked once per distinct name.
pub(crate) fn intern(name: String) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut g = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = g.iter().find(|n| **n == name) {
        return n;
    }
    let n: &'static str = Box::leak(name.into_boxed_str());
    g.push(n);
    n
}

/// `changed` with its word and row lists moved into shard `span`'s numbering.
fn shard_changed(changed: &Changed, span: &Span) -> Changed {
    let (w0, ws) = (span.word0() as u32, span.words() as u32);
    let (r0, n) = (span.base as u32, span.len() as u32);
    Changed {
        live: changed.live,
        planes: changed.planes,
        plane_words: changed.plane_words.as_ref().map(|w| w.iter().filter(|&&w| w >= w0 && w < w0 + ws).map(|&w| w - w0).collect()),
        attrs: changed.attrs,
        attr_rows: changed.attr_rows.as_ref().map(|r| r.iter().filter(|&&r| r >= r0 && r < r0 + n).map(|&r| r - r0).collect()),
        columns: changed.columns,
        column_rows: changed.column_rows.as_ref().map(|r| r.iter().filter(|&&r| r >= r0 && r < r0 + n).map(|&r| r - r0).collect()),
    }
}

/// The index on every shard.
pub struct ShardedResident<B: Backend> {
    index: Arc<Index>,
    layout: Arc<Layout>,
    parts: Vec<B::Resident>,
    /// Typed masks of the whole index (kept alive: the key is the address) -> per-shard slices.
    masks: Mutex<HashMap<usize, MaskSlices>>,
}

/// A typed mask of the whole index and its slice per shard.
type MaskSlices = (Arc<[u64]>, Vec<Arc<[u64]>>);

/// Most whole-index masks whose shard slices are kept (then the cache starts over).
const MASK_SLICES: usize = 256;

impl<B: Backend> ShardedResident<B> {
    /// Shard `s`'s slice of a typed mask of the whole index.
    fn mask_slice(&self, m: &Arc<[u64]>, s: usize) -> Arc<[u64]> {
        let key = Arc::as_ptr(m) as *const u64 as usize;
        let mut g = self.masks.lock().unwrap_or_else(|e| e.into_inner());
        if !g.get(&key).is_some_and(|(k, _)| Arc::ptr_eq(k, m)) {
            if g.len() >= MASK_SLICES {
                g.clear();
            }
            let slices = self.layout.spans.iter().map(|sp| layout::mask_words(m, sp).into()).collect();
            g.insert(key, (m.clone(), slices));
        }
        g[&key].1[s].clone()
    }

    /// `plans` for shard `s`: plans with bound typed masks get sliced copies (one per
    /// distinct plan address), the rest are borrowed.
    fn plans_for<'a>(&self, plans: &[&'a Plan], s: usize) -> ShardPlans<'a> {
        let mut owned: Vec<Plan> = Vec::new();
        let mut keys: Vec<*const Plan> = Vec::new();
        let which = plans
            .iter()
            .map(|&p| {
                if !p.terms.iter().any(|t| t.mask.is_some()) {
                    return Ok(p);
                }
                Err(keys.iter().position(|&k| std::ptr::eq(k, p)).unwrap_or_else(|| {
                    let mut c = p.clone();
                    for t in &mut c.terms {
                        if let Some(m) = &t.mask {
                            t.mask = Some(self.mask_slice(m, s));
                        }
                    }
                    keys.push(p);
                    owned.push(c);
                    owned.len() - 1
                }))
            })
            .collect();
        ShardPlans { owned, which }
    }
}

struct ShardPlans<'a> {
    owned: Vec<Plan>,
    which: Vec<std::result::Result<&'a Plan, usize>>,
}

impl ShardPlans<'_> {
    fn refs(&self) -> Vec<&Plan> {
        self.which
            .iter()
            .map(|w| match *w {
                Ok(p) => p,
                Err(i) => &self.owned[i],
            })
            .collect()
    }
}

/// Stage 1 output: the host probes (the whole index's list ids) and each shard's copy.
pub struct ShardProbes<P> {
    host: Arc<Probes>,
    parts: Vec<P>,
}

/// Stage 2 output: each shard's mask over its rows.
pub struct ShardMask<M> {
    probes: Arc<Probes>,
    layout: Arc<Layout>,
    parts: Vec<M>,
}

/// Stage 3-5 output: merged on the host (rows of the whole index), or after stage 4 each
/// shard's re-scored share (rows of the shard's index).
pub enum ShardCands<C> {
    /// Merged on the host: `[B, k]` rows of the whole index.
    Host(Candidates),
    /// After stage 4: each shard's re-scored share.
    Parts {
        /// The merged candidates the shares were cut from (their slots and rows).
        order: Candidates,
        /// One share per shard, rows of that shard's index.
        parts: Vec<C>,
        /// The shards' spans, to map shard rows back to rows of the whole index.
        layout: Arc<Layout>,
    },
}

/// Per query, the `k` best of every shard's valid entries (rows offset by the shard's
/// base), best first, ties by lower row: the order of [`crate::topk`].
fn merge(parts: &[Candidates], spans: &[Span], b: usize, k: usize) -> Candidates {
    let per_query: Vec<Vec<Scored>> = (0..b)
        .map(|q| {
            let all: Vec<Scored> = parts
                .iter()
                .zip(spans)
                .flat_map(|(c, sp)| c.query(q).map(move |(row, score)| Scored { score, row: row + sp.base as u32 }))
                .collect();
            top_k(all, k)
        })
        .collect();
    super::cpu::pack(per_query, k)
}

impl<B: Backend> Backend for Sharded<B>
where
    B::Probes: Send + Sync,
    B::Mask: Send + Sync,
    B::Cands: Send + Sync,
{
    type Resident = ShardedResident<B>;
    type Probes = ShardProbes<B::Probes>;
    type Mask = ShardMask<B::Mask>;
    type Cands = ShardCands<B::Cands>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn lane(&self) -> Result<Self> {
        Ok(Sharded { shards: self.shards.iter().map(|b| b.lane()).collect::<Result<_>>()?, name: self.name })
    }

    fn upload(&self, index: &Arc<Index>) -> Result<ShardedResident<B>> {
        self.upload_with(index, Arc::new(Layout::balanced(&index.list_offsets, self.shards.len())), None)
    }

    /// Same rows and lists: the same layout, and each shard updates its part (its own
    /// changed words and rows); otherwise a new layout and a full upload.
    fn update(&self, old: &ShardedResident<B>, index: &Arc<Index>, changed: &Changed) -> Result<ShardedResident<B>> {
        if !old.index.same_vectors_and_lists(index) || old.parts.len() != self.shards.len() {
            return self.upload(index);
        }
        self.upload_with(index, old.layout.clone(), Some((old, changed)))
    }

    fn probe(&self, ix: &ShardedResident<B>, q: &QueryBatch, nprobe: usize) -> Result<Self::Probes> {
        let first = self.shards[0].probe(&ix.parts[0], q, nprobe)?;
        let host = Arc::new(self.shards[0].read_probes(&first)?);
        let mut parts = vec![first];
        for s in 1..self.shards.len() {
            parts.push(self.shards[s].upload_probes(&ix.parts[s], &host)?);
        }
        Ok(ShardProbes { host, parts })
    }

    fn upload_probes(&self, ix: &ShardedResident<B>, p: &Probes) -> Result<Self::Probes> {
        super::check_probes(p, p.lists.len() / p.nprobe.max(1), ix.index.nlist())?;
        let parts = (0..self.shards.len()).map(|s| self.shards[s].upload_probes(&ix.parts[s], p)).collect::<Result<_>>()?;
        Ok(ShardProbes { host: Arc::new(p.clone()), parts })
    }

    fn filter(&self, ix: &ShardedResident<B>, plans: &[&Plan], probes: &Self::Probes) -> Result<Self::Mask> {
        let parts = self.each(|s| {
            let sp = ix.plans_for(plans, s);
            self.shards[s].filter(&ix.parts[s], &sp.refs(), &probes.parts[s])
        })?;
        Ok(ShardMask { probes: probes.host.clone(), layout: ix.layout.clone(), parts })
    }

    fn count(&self, ix: &ShardedResident<B>, plans: &[&Plan]) -> Result<Vec<u64>> {
        let per = self.each(|s| self.shards[s].count(&ix.parts[s], &ix.plans_for(plans, s).refs()))?;
        Ok((0..plans.len()).map(|i| per.iter().map(|c| c[i]).sum()).collect())
    }

    fn scan(
        &self,
        ix: &ShardedResident<B>,
        q: &QueryBatch,
        probes: &Self::Probes,
        mask: &Self::Mask,
        plans: &[&Plan],
        k0: usize,
    ) -> Result<Self::Cands> {
        let parts = self.each(|s| {
            let sp = ix.plans_for(plans, s);
            let c = self.shards[s].scan(&ix.parts[s], q, &probes.parts[s], &mask.parts[s], &sp.refs(), k0)?;
            self.shards[s].read_cands(&c)
        })?;
        Ok(ShardCands::Host(merge(&parts, &ix.layout.spans, q.len, k0)))
    }

    /// Every shard runs the candidate route over its rows with the same `cap`; a query is
    /// answered when every shard answered, their Bloom counts sum to at most `cap`, and the
    /// whole index's sampled count admits it ([`super::admit_candidates`], checked on the
    /// host for those queries only: a shard's sample is a part of it, so a shard never
    /// turns away a query the whole index admits).
    fn scan_candidates(
        &self,
        ix: &ShardedResident<B>,
        q: &QueryBatch,
        plans: &[&Plan],
        k0: usize,
        cap: u64,
    ) -> Result<(Self::Cands, Vec<Option<u64>>)> {
        if plans.len() != q.len {
            return Err(Error::param("filters", format!("{} plans for {} queries", plans.len(), q.len)));
        }
        let per = self.each(|s| {
            let sp = ix.plans_for(plans, s);
            let (c, a) = self.shards[s].scan_candidates(&ix.parts[s], q, &sp.refs(), k0, cap)?;
            Ok((self.shards[s].read_cands(&c)?, a))
        })?;
        let n = ix.index.len() as u64;
        let answers: Vec<Option<u64>> = {
            use rayon::prelude::*;
            (0..q.len)
                .into_par_iter()
                .map(|i| {
                    let total = per.iter().try_fold(0u64, |t, (_, a)| a[i].map(|c| t + c))?;
                    (total <= cap && (cap >= n || super::admit_candidates(super::sampled_bloom_count(&ix.index, plans[i]), cap, n)))
                        .then_some(total)
                })
                .collect()
        };
        let (mut parts, _): (Vec<Candidates>, Vec<_>) = per.into_iter().unzip();
        // Queries left to the probe path are not scanned (count 0), as on one device.
        for c in &mut parts {
            for (i, a) in answers.iter().enumerate() {
                if a.is_none() {
                    c.counts[i] = 0;
                }
            }
        }
        Ok((ShardCands::Host(merge(&parts, &ix.layout.spans, q.len, k0)), answers))
    }

    fn resident_index<'a>(&self, ix: &'a ShardedResident<B>) -> &'a Arc<Index> {
        &ix.index
    }

    /// Each shard re-scores its share of the merged candidates (in their merged order).
    fn rerank(&self, ix: &ShardedResident<B>, q: &QueryBatch, cands: Self::Cands, mode: &Rerank) -> Result<Self::Cands> {
        let c = match cands {
            ShardCands::Host(c) => c,
            ShardCands::Parts { .. } => return Err(Error::backend(self.name, "candidates re-scored twice")),
        };
        let (b, k) = (c.len(), c.k);
        let parts = self.each(|s| {
            let sp = &ix.layout.spans[s];
            let mut mine = Candidates::empty(b, k);
            for i in 0..b {
                let mut j = 0;
                for (row, score) in c.query(i).filter(|&(r, _)| sp.rows.contains(&(r as usize))) {
                    mine.rows[i * k + j] = row - sp.base as u32;
                    mine.scores[i * k + j] = score;
                    j += 1;
                }
                mine.counts[i] = j as u32;
            }
            let up = self.shards[s].upload_cands(&ix.parts[s], &mine)?;
            self.shards[s].rerank(&ix.parts[s], q, up, mode)
        })?;
        Ok(ShardCands::Parts { order: c, parts, layout: ix.layout.clone() })
    }

    fn select(&self, cands: Self::Cands, k: usize) -> Result<Self::Cands> {
        match cands {
            ShardCands::Host(c) => {
                let per_query = (0..c.len()).map(|i| top_k(c.query(i).map(|(row, score)| Scored { score, row }).collect(), k)).collect();
                Ok(ShardCands::Host(super::cpu::pack(per_query, k)))
            }
            ShardCands::Parts { parts, layout, .. } => {
                let parts: Vec<Mutex<Option<B::Cands>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
                let got = self.each(|s| {
                    let mine = parts[s].lock().unwrap_or_else(|e| e.into_inner()).take().expect("each shard takes its part once");
                    self.shards[s].read_cands(&self.shards[s].select(mine, k)?)
                })?;
                let b = got.first().map_or(0, |c| c.len());
                Ok(ShardCands::Host(merge(&got, &layout.spans, b, k)))
            }
        }
    }

    fn synchronize(&self) -> Result<()> {
        self.shards.iter().try_for_each(|b| b.synchronize())
    }

    fn upload_cands(&self, _ix: &ShardedResident<B>, c: &Candidates) -> Result<Self::Cands> {
        Ok(ShardCands::Host(c.clone()))
    }

    fn read_probes(&self, p: &Self::Probes) -> Result<Probes> {
        Ok((*p.host).clone())
    }

    /// The whole index's mask: for each (query, probe) pair, the words of the shard that
    /// owns the list (shards start at multiples of 64 rows, so words carry over as they are).
    fn read_mask(&self, m: &Self::Mask) -> Result<Mask> {
        let parts: Vec<Mask> = self.shards.iter().zip(&m.parts).map(|(b, p)| b.read_mask(p)).collect::<Result<_>>()?;
        let layout = &m.layout;
        let mut out = Mask { offsets: vec![0], words: Vec::new() };
        for (p, &l) in m.probes.lists.iter().enumerate() {
            let part = &parts[layout.owner(l as usize)];
            out.words.extend_from_slice(&part.words[part.offsets[p]..part.offsets[p + 1]]);
            out.offsets.push(out.words.len());
        }
        Ok(out)
    }

    fn read_cands(&self, c: &Self::Cands) -> Result<Candidates> {
        match c {
            ShardCands::Host(c) => Ok(c.clone()),
            // Re-scored in place: each slot of the merged order takes its shard's next score.
            ShardCands::Parts { order, parts, layout } => {
                let got: Vec<Candidates> = self.shards.iter().zip(parts).map(|(b, p)| b.read_cands(p)).collect::<Result<_>>()?;
                let mut out = order.clone();
                for q in 0..out.len() {
                    let mut next = vec![0usize; got.len()];
                    for i in q * out.k..q * out.k + out.counts[q] as usize {
                        let s = layout.shard_of_row(out.rows[i] as usize);
                        out.scores[i] = got[s].scores[q * got[s].k + next[s]];
                        next[s] += 1;
                    }
                }
                Ok(out)
            }
        }
    }

    fn read_counts(&self, c: &Self::Cands) -> Result<Vec<u32>> {
        match c {
            ShardCands::Host(c) => Ok(c.counts.clone()),
            ShardCands::Parts { parts, .. } => {
                let per: Vec<Vec<u32>> = self.shards.iter().zip(parts).map(|(b, p)| b.read_counts(p)).collect::<Result<_>>()?;
                Ok((0..per.first().map_or(0, |c| c.len())).map(|i| per.iter().map(|c| c[i]).sum()).collect())
            }
        }
    }
}
