//! The index on the device, re-laid for the kernels (DESIGN.md allows re-layout on
//! upload; the artifact stays backend-neutral):
//! * item codes interleaved by 32-row groups (`cuda/common.cuh`, "Interleaved item
//!   codes"): D padded with zeros to `nc*16`, rows padded to a multiple of 64;
//! * centroid codes row-major, padded to `nc*16`;
//! * per list: first row, end row, 64-row word count (as `cpu::word_span` counts them).
//!
//! Large tensors go up through two pinned staging buffers with overlapped copies
//! ([`Dev::upload_staged`](super::Dev)), read straight from the (mapped) host tensors.

use super::args::{CodesRows, CopyWords, ScatterWords};
use super::device::Launch;
use super::kernels::KernelId as K;
use super::{DBuf, Dev};
use rayon::prelude::*;
use silica_core::backend::{Changed, cpu::word_span};
use silica_core::error::{Error, Result};
use silica_core::model::Index;
use std::sync::Arc;

/// An index resident on the GPU. The tensors behind `Arc` never change for one set of
/// item vectors and lists, so an incremental update (`update` in this module) shares
/// them between versions of an index.
pub struct Resident {
    pub(crate) index: Arc<Index>,
    pub(crate) n: usize,
    pub(crate) d: usize,
    /// 16-byte chunks per row (D padded to nc*16).
    pub(crate) nc: usize,
    pub(crate) l: usize,
    /// 64-row words: ceil(N / 64).
    pub(crate) words: usize,
    pub(crate) codes: Arc<DBuf<u8>>,
    /// The same codes row-major, `[N, nc*16]` (`codes_rows`): what the candidate route
    /// gathers from (scattered rows read whole lines instead of nc lines each).
    pub(crate) rowcodes: Arc<DBuf<u8>>,
    pub(crate) scale: Arc<DBuf<f32>>,
    pub(crate) cent: Arc<DBuf<u8>>,
    pub(crate) cscale: Arc<DBuf<f32>>,
    pub(crate) list_start: Arc<DBuf<u32>>,
    pub(crate) list_end: Arc<DBuf<u32>>,
    pub(crate) list_nw: Arc<DBuf<u32>>,
    pub(crate) planes: Arc<DBuf<u64>>,
    pub(crate) live: Option<Arc<DBuf<u64>>>,
    pub(crate) attr_off: Arc<DBuf<u64>>,
    pub(crate) attr_vals: Arc<DBuf<u32>>,
    pub(crate) emb: Option<Arc<DBuf<u16>>>,
    pub(crate) feats: Option<Arc<DBuf<f32>>>,
    /// `l2` only: f32 `[N]` row biases and `[L]` centroid biases (`model::metric::bias`).
    pub(crate) bias: Option<Arc<DBuf<f32>>>,
    pub(crate) cbias: Option<Arc<DBuf<f32>>>,
    /// Posting lists (`model::postings`), uploaded on the first posting search and kept
    /// for versions of the index that share the host lists.
    pub(crate) post: std::sync::Mutex<Option<DevPostings>>,
    /// Typed columns as the kernels compare them (`plans::COL_TERM`), uploaded on the first
    /// search with an unbound typed column term and kept for versions with equal columns.
    pub(crate) cols: std::sync::Mutex<Option<Arc<DevColumns>>>,
    /// `items.source_rows` `[N]` u64, uploaded by the first device-output search
    /// ([`super::devio`]) and kept.
    pub(crate) source_rows: std::sync::Mutex<Option<Arc<DBuf<u64>>>>,
    /// Largest list word count.
    pub(crate) max_nw: usize,
    /// rows_desc[i] = rows of the i-th largest list (descending).
    pub(crate) rows_desc: Vec<u64>,
    /// nw_desc[i] = words of the i-th largest list by words (descending).
    pub(crate) nw_desc: Vec<u64>,
}

/// The device copy of an index's posting lists (stale rows travel with each call).
#[derive(Clone)]
pub(crate) struct DevPostings {
    /// The host postings these were uploaded from (identity decides reuse).
    pub(crate) host: Arc<silica_core::model::postings::Postings>,
    pub(crate) rows: Arc<DBuf<u32>>,
}

/// The typed columns of an index on the device, per column: `[N]` order-preserving u64
/// keys (`model::columns::Values::key`), `[ceil(N/64)]` presence bits and
/// `[ceil(N/64), 2]` per-word min/max keys (buffers of at least one element).
pub(crate) struct DevColumns {
    pub(crate) by_name: Vec<(String, super::plans::DevColumn)>,
    _bufs: Vec<DBuf<u64>>,
}

impl DevColumns {
    fn upload(dev: &Dev, ix: &Index) -> Result<DevColumns> {
        let (mut by_name, mut bufs) = (Vec::new(), Vec::new());
        for c in ix.columns.cols.iter().filter(|c| c.len() == ix.len()) {
            let n = c.len();
            let words = n.div_ceil(64);
            let keys = if n == 0 {
                dev.alloc::<u64>(1)?
            } else {
                dev.upload_staged::<u64>(n, 1, |first, dst| dst.par_iter_mut().enumerate().for_each(|(i, k)| *k = c.values.key(first + i)))?
            };
            let present = if words == 0 { dev.alloc::<u64>(1)? } else { dev.upload(&c.present)? };
            let ranges: Vec<u64> = (0..c.word_range.len()).map(|i| c.word_range.key(i)).collect();
            let word_range = if ranges.is_empty() { dev.alloc::<u64>(1)? } else { dev.upload(&ranges)? };
            by_name.push((
                c.name.clone(),
                super::plans::DevColumn { keys: keys.ptr(), present: present.ptr(), word_range: word_range.ptr(), n: n as u64 },
            ));
            bufs.extend([keys, present, word_range]);
        }
        // Searches on other lanes (streams) read these next: the copies must have landed.
        dev.sync()?;
        Ok(DevColumns { by_name, _bufs: bufs })
    }

    /// Column `name`'s device addresses.
    pub(crate) fn get(&self, name: &str) -> Option<super::plans::DevColumn> {
        self.by_name.iter().find(|(n, _)| n == name).map(|(_, c)| *c)
    }
}

impl Resident {
    /// The index's typed columns on the device (uploaded on first use, then kept).
    pub(crate) fn columns(&self, dev: &Dev) -> Result<Arc<DevColumns>> {
        let mut g = self.cols.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(DevColumns::upload(dev, &self.index)?);
        *g = Some(c.clone());
        Ok(c)
    }

    /// The device rows of `host` (uploaded on first use, then kept).
    pub(crate) fn postings(&self, dev: &Dev, host: &Arc<silica_core::model::postings::Postings>) -> Result<Arc<DBuf<u32>>> {
        let mut g = self.post.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = g.as_ref().filter(|p| Arc::ptr_eq(&p.host, host)) {
            return Ok(p.rows.clone());
        }
        let rows = Arc::new(if host.rows.is_empty() { dev.alloc::<u32>(1)? } else { dev.upload_large(&host.rows)? });
        *g = Some(DevPostings { host: host.clone(), rows: rows.clone() });
        Ok(rows)
    }

    /// The host index this was uploaded from.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }
    /// Rows held by the `np` largest lists: an upper bound of the rows a query scans.
    pub(crate) fn max_rows(&self, np: usize) -> u64 {
        self.rows_desc.iter().take(np).sum()
    }
    /// Words of the `np` largest lists (by words).
    pub(crate) fn max_words(&self, np: usize) -> u64 {
        self.nw_desc.iter().take(np).sum()
    }
}

/// Interleave `[n, d]` int8 rows into 32-row groups of `nc` 16-byte chunks.
#[cfg(test)]
pub(crate) fn interleave(codes: &[i8], n: usize, d: usize, nc: usize, groups: usize) -> Vec<u8> {
    let mut out = vec![0u8; groups * nc * 32 * 16];
    interleave_into(codes, n, d, nc, 0, &mut out);
    out
}

/// Groups `first_group..` of [`interleave`] into `out` (a whole number of groups).
pub(crate) fn interleave_into(codes: &[i8], n: usize, d: usize, nc: usize, first_group: usize, out: &mut [u8]) {
    let gbytes = nc * 32 * 16;
    out.par_chunks_mut(gbytes).enumerate().for_each(|(j, dst)| {
        let g = first_group + j;
        dst.fill(0);
        for i in 0..32 {
            let r = g * 32 + i;
            if r >= n {
                break;
            }
            let row = &codes[r * d..(r + 1) * d];
            for c in 0..nc {
                let lo = c * 16;
                let len = 16.min(d.saturating_sub(lo));
                let at = (c * 32 + i) * 16;
                for b in 0..len {
                    dst[at + b] = row[lo + b] as u8;
                }
            }
        }
    });
}

/// Pad `[rows, d]` int8 rows to `[rows, nc*16]`.
pub(crate) fn pad_rows(codes: &[i8], rows: usize, d: usize, nc: usize) -> Vec<u8> {
    let w = nc * 16;
    let mut out = vec![0u8; rows * w];
    for r in 0..rows {
        for c in 0..d {
            out[r * w + c] = codes[r * d + c] as u8;
        }
    }
    out
}

/// Upload `index`, sharing with `old` every tensor that only the item vectors and lists
/// determine when `index` has the same rows, dimension, lists, embeddings and features,
/// and the live bits, planes and attributes that `changed` does not name (see
/// `Backend::update`); otherwise a full [`upload`].
pub(crate) fn update(dev: &Dev, old: &Resident, index: &Arc<Index>, changed: &Changed) -> Result<Resident> {
    let ix = index.as_ref();
    if !old.index.same_vectors_and_lists(ix) {
        return upload(dev, index);
    }
    check(ix)?;
    // Attribute values patched in place when every patched row keeps its value count.
    let patch = changed.attr_patch(&old.index.attrs, &ix.attrs);
    Ok(Resident {
        index: index.clone(),
        codes: old.codes.clone(),
        rowcodes: old.rowcodes.clone(),
        scale: old.scale.clone(),
        cent: old.cent.clone(),
        cscale: old.cscale.clone(),
        list_start: old.list_start.clone(),
        list_end: old.list_end.clone(),
        list_nw: old.list_nw.clone(),
        emb: old.emb.clone(),
        feats: old.feats.clone(),
        bias: old.bias.clone(),
        cbias: old.cbias.clone(),
        planes: if !changed.planes {
            old.planes.clone()
        } else if let Some((idx, val)) = changed.plane_patch(&ix.bloom) {
            Arc::new(patched(dev, &old.planes, &idx, &val)?)
        } else {
            Arc::new(dev.upload(&ix.bloom.planes)?)
        },
        live: if changed.live || ix.live.is_some() != old.live.is_some() {
            ix.live.as_ref().map(|v| dev.upload(v).map(Arc::new)).transpose()?
        } else {
            old.live.clone()
        },
        attr_off: if changed.attrs && patch.is_none() { Arc::new(dev.upload(&ix.attrs.offsets)?) } else { old.attr_off.clone() },
        attr_vals: match (&patch, changed.attrs) {
            (_, false) => old.attr_vals.clone(),
            (Some((idx, val)), true) => Arc::new(patched(dev, &old.attr_vals, idx, val)?),
            (None, true) => Arc::new(dev.upload(&ix.attrs.values)?),
        },
        post: std::sync::Mutex::new(old.post.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        // Typed updates change columns: those are uploaded again on their first use.
        cols: std::sync::Mutex::new(old.cols.lock().unwrap_or_else(|e| e.into_inner()).clone().filter(|_| old.index.columns == ix.columns)),
        source_rows: Default::default(),
        rows_desc: old.rows_desc.clone(),
        nw_desc: old.nw_desc.clone(),
        ..*old
    })
}

/// A copy of `old` on the device with `old[idx[i]] = val[i]`, by update.cu's `copy_*` and
/// `scatter_*` kernels for `T` (`u64`: Bloom planes, `u32`: attribute values).
fn patched<T: cudarc::driver::DeviceRepr>(dev: &Dev, old: &DBuf<T>, idx: &[u64], val: &[T]) -> Result<DBuf<T>> {
    let bits = 8 * std::mem::size_of::<T>();
    let out = dev.alloc::<T>(old.len())?;
    let n = old.len() as u64;
    let grid = |n: u64| Launch::new(n.div_ceil(256).clamp(1, 65535) as u32, 256, 0);
    let (copy, scatter) = match bits {
        64 => (K::CopyU64, K::ScatterU64),
        32 => (K::CopyU32, K::ScatterU32),
        _ => unreachable!("patched: u32 or u64 elements"),
    };
    dev.launch(copy, grid(n), &CopyWords { dst: out.ptr(), src: old.ptr(), n })?;
    if !idx.is_empty() {
        let (di, dv) = (dev.upload(idx)?, dev.upload(val)?);
        let args = ScatterWords { dst: out.ptr(), idx: di.ptr(), val: dv.ptr(), n: idx.len() as u32 };
        dev.launch(scatter, grid(idx.len() as u64), &args)?;
        // The index buffers must outlive the kernel that reads them.
        dev.sync()?;
    }
    Ok(out)
}

/// The shape checks every upload makes.
fn check(ix: &Index) -> Result<()> {
    let (n, d, l) = (ix.len(), ix.dim, ix.nlist());
    let bad = |what: &str| Error::backend("cuda", format!("cannot upload index: {what}"));
    if d == 0 {
        return Err(bad("dimension 0"));
    }
    if n >= u32::MAX as usize - 64 {
        return Err(bad("more than 2^32 - 65 rows (rows are u32 on the device)"));
    }
    if ix.items.codes.len() != n * d || ix.items.scale.len() != n || ix.list_offsets.last().copied().unwrap_or(0) as usize != n {
        return Err(bad("item codes, scales and list offsets disagree"));
    }
    if ix.centroid_codes.codes.len() != l * d || ix.centroid_codes.scale.len() != l {
        return Err(bad("centroid codes do not match nlist x D"));
    }
    let words = n.div_ceil(64);
    if ix.bloom.words != words || ix.bloom.planes.len() != ix.bloom.params.bits as usize * words {
        return Err(bad("Bloom planes do not cover ceil(N/64) words"));
    }
    if ix.attrs.offsets.len() != n + 1 {
        return Err(bad("attribute offsets are not N+1 long"));
    }
    if ix.live.as_ref().is_some_and(|live| live.len() != words) {
        return Err(bad("live bitset is not ceil(N/64) words"));
    }
    Ok(())
}

pub(crate) fn upload(dev: &Dev, index: &Arc<Index>) -> Result<Resident> {
    let ix = index.as_ref();
    check(ix)?;
    let (n, d, l) = (ix.len(), ix.dim, ix.nlist());
    let bad = |what: &str| Error::backend("cuda", format!("cannot upload index: {what}"));
    let nc = d.div_ceil(16);
    let words = n.div_ceil(64);
    // Interleaved straight into the pinned staging buffers: no host copy of all codes.
    let gbytes = nc * 32 * 16;
    let codes =
        dev.upload_staged::<u8>(2 * words * gbytes, gbytes, |first, dst| interleave_into(&ix.items.codes, n, d, nc, first / gbytes, dst))?;
    let rowcodes = dev.alloc::<u8>(n * nc * 16)?;
    if n > 0 {
        let blocks = (n * nc).div_ceil(256).min(1 << 16) as u32;
        let args = CodesRows { codes: codes.ptr(), nc: nc as u32, n: n as u64, out: rowcodes.ptr() };
        dev.launch(K::CodesRows, Launch::new(blocks, 256, 0), &args)?;
    }
    let cent = pad_rows(&ix.centroid_codes.codes, l, d, nc);
    let mut list_start = Vec::with_capacity(l);
    let mut list_end = Vec::with_capacity(l);
    let mut list_nw = Vec::with_capacity(l);
    for li in 0..l {
        let r = ix.list_range(li);
        if r.start > r.end {
            return Err(bad("list offsets decrease"));
        }
        let (w0, w1) = word_span(&r);
        list_start.push(r.start as u32);
        list_end.push(r.end as u32);
        list_nw.push((w1 - w0) as u32);
    }
    let mut rows_desc: Vec<u64> = (0..l).map(|li| (list_end[li] - list_start[li]) as u64).collect();
    rows_desc.sort_unstable_by(|a, b| b.cmp(a));
    let mut nw_desc: Vec<u64> = list_nw.iter().map(|&w| w as u64).collect();
    nw_desc.sort_unstable_by(|a, b| b.cmp(a));
    let emb = match &ix.embeddings {
        Some(e) if e.len() == n * d => Some(Arc::new(dev.upload_large::<u16>(bytemuck::cast_slice(&e[..]))?)),
        Some(_) => return Err(bad("embeddings are not N x D")),
        None => None,
    };
    let feats = match &ix.features {
        Some(f) if f.len() == n * ix.feature_names.len() => Some(Arc::new(dev.upload_large(f)?)),
        Some(_) => return Err(bad("features are not N x F")),
        None => None,
    };
    let (bias, cbias) = if ix.metric == silica_core::Metric::L2 {
        use silica_core::model::metric;
        if ix.sqnorms.len() != n {
            return Err(bad("l2 index without items.sqnorms for every row"));
        }
        let c = &ix.centroid_codes;
        let b = metric::biases(&ix.items, &ix.sqnorms);
        (Some(Arc::new(dev.upload_large(&b)?)), Some(Arc::new(dev.upload(&metric::biases(c, &metric::sqnorms(c)))?)))
    } else {
        (None, None)
    };
    Ok(Resident {
        index: index.clone(),
        bias,
        cbias,
        n,
        d,
        nc,
        l,
        words,
        codes: Arc::new(codes),
        rowcodes: Arc::new(rowcodes),
        scale: Arc::new(dev.upload_large(&ix.items.scale)?),
        cent: Arc::new(dev.upload(&cent)?),
        cscale: Arc::new(dev.upload(&ix.centroid_codes.scale)?),
        max_nw: list_nw.iter().copied().max().unwrap_or(0) as usize,
        list_start: Arc::new(dev.upload(&list_start)?),
        list_end: Arc::new(dev.upload(&list_end)?),
        list_nw: Arc::new(dev.upload(&list_nw)?),
        planes: Arc::new(dev.upload_large(&ix.bloom.planes)?),
        live: ix.live.as_ref().map(|v| dev.upload(v).map(Arc::new)).transpose()?,
        attr_off: Arc::new(dev.upload_large(&ix.attrs.offsets)?),
        attr_vals: Arc::new(dev.upload_large(&ix.attrs.values)?),
        emb,
        feats,
        post: Default::default(),
        cols: Default::default(),
        source_rows: Default::default(),
        rows_desc,
        nw_desc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_places_chunks() {
        let (n, d) = (70usize, 20usize);
        let nc = d.div_ceil(16);
        let codes: Vec<i8> = (0..n * d).map(|i| (i % 251) as i8).collect();
        let out = interleave(&codes, n, d, nc, 2 * n.div_ceil(64));
        for r in 0..n {
            for c in 0..nc * 16 {
                let slot = ((r / 32) * nc + c / 16) * 32 + r % 32;
                let got = out[slot * 16 + c % 16] as i8;
                let want = if c < d { codes[r * d + c] } else { 0 };
                assert_eq!(got, want, "row {r} col {c}");
            }
        }
        // Padding rows are zero.
        assert!(out[((n / 32) * nc * 32 + n % 32) * 16..][..16].iter().all(|&b| b == 0));
    }
}
