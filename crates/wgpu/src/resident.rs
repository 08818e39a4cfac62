//! The index on the device, uploaded once per load.
//!
//! Per-row tensors are split into row chunks (boundaries multiples of 64 rows, so Bloom
//! and mask words never straddle chunks) small enough that every tensor of a chunk fits
//! one storage binding (`max_storage_buffer_binding_size`, e.g. 128 MiB on lavapipe).
//! Kernels that touch rows run once per chunk. Re-layouts (DESIGN.md allows them):
//! * item codes: blocks of 32 rows, 16 codes (one `vec4<u32>`) at a time: vec4 t of chunk
//!   row rr at `((rr/32)*d16 + t)*32 + rr%32`; rows padded with zeros to d16*16 codes;
//! * Bloom planes and the live bitset: u32 words (the halves of the artifact's u64 words),
//!   plane-major within the chunk;
//! * attribute CSR offsets: u32, rebased to the chunk's first value;
//! * f16 embeddings: u32 pairs, rows padded to an even length.

use super::gpu::{Buf, Gpu};
use super::kernels::{Kernel, Rec, groups_for};
use super::params;
use rayon::prelude::*;
use silica_core::backend::Changed;
use silica_core::error::{Error, Result};
use silica_core::model::{Index, metric};
use std::sync::Arc;

/// Rows `[lo, hi)` of the index and their tensors.
pub struct Chunk {
    pub lo: u32,
    pub hi: u32,
    /// First u32 mask word (`lo / 32`) and u32 words covered (`2*(ceil(hi/64) - lo/64)`).
    pub cw_lo: u32,
    pub cw_n: u32,
    // What only the item vectors decide: shared between versions of an index (update).
    pub codes: Arc<Buf>,
    pub scale: Arc<Buf>,
    pub emb: Option<Arc<Buf>>,
    pub feats: Option<Arc<Buf>>,
    /// `l2` only: f32 bias of each row ([`silica_core::model::metric::bias`]).
    pub bias: Option<Arc<Buf>>,
    // What deletes (live) and attribute patches (the rest) change.
    pub aoff: Arc<Buf>,
    pub avals: Arc<Buf>,
    pub planes: Arc<Buf>,
    pub live: Arc<Buf>,
}

/// Patches of an update as `(index, value)` pairs over the whole tensors (`Changed`).
struct Patch {
    planes: Option<(Vec<u64>, Vec<u64>)>,
    values: Option<(Vec<u64>, Vec<u32>)>,
}

/// The index resident on one wgpu device.
pub struct Resident {
    pub index: Arc<Index>,
    pub n: u32,
    pub d16: u32,
    pub nlist: u32,
    pub centroids: Arc<Buf>,
    pub cscale: Arc<Buf>,
    /// `l2` only: f32 `[L]` centroid biases.
    pub cbias: Option<Arc<Buf>>,
    pub loff: Arc<Buf>,
    pub chunks: Vec<Chunk>,
    /// Largest list, in rows and in u32 mask words.
    pub max_list: u32,
    pub max_span: u32,
    /// `ebound[n]`: rows of the n largest lists; `mbound[n]`: u32 mask words of the n widest.
    ebound: Vec<u64>,
    mbound: Vec<u64>,
}

/// Largest D the kernels hold in workgroup memory (MAX_D16 = 128 vec4 = 2048 codes).
pub const MAX_DIM: usize = 2048;

fn span_words(s: u64, e: u64) -> u64 {
    2 * (e.div_ceil(64) - s / 64)
}

fn prefix_desc(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::with_capacity(v.len() + 1);
    out.push(0);
    for x in v {
        out.push(out.last().copied().unwrap_or(0) + x);
    }
    out
}

/// Pack int8 rows `[rows, d]` into vec4<u32> rows of `d16` vec4s (zero padded), plain
/// row-major (`interleave = false`) or in the 32-row blocked layout.
fn pack_codes(codes: &[i8], d: usize, rows: usize, d16: usize, interleave: bool) -> Vec<u8> {
    let blocks = rows.div_ceil(32);
    let total = if interleave { blocks * 32 * d16 * 16 } else { rows * d16 * 16 };
    let mut out = vec![0u8; total.max(16)];
    if interleave {
        out[..total].par_chunks_mut(32 * d16 * 16).enumerate().for_each(|(b, blk)| {
            for lane in 0..32 {
                let r = b * 32 + lane;
                if r >= rows {
                    break;
                }
                let row = &codes[r * d..(r + 1) * d];
                for t in 0..d16 {
                    let dst = &mut blk[(t * 32 + lane) * 16..(t * 32 + lane) * 16 + 16];
                    for (i, x) in dst.iter_mut().enumerate() {
                        *x = row.get(t * 16 + i).map_or(0, |&c| c as u8);
                    }
                }
            }
        });
    } else {
        for r in 0..rows {
            for (i, &c) in codes[r * d..(r + 1) * d].iter().enumerate() {
                out[r * d16 * 16 + i] = c as u8;
            }
        }
    }
    out
}

fn bytes_f32(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

impl Resident {
    pub fn upload(g: &Gpu, index: &Arc<Index>) -> Result<Resident> {
        let ix = index.as_ref();
        let (n, d, l) = (ix.len(), ix.dim, ix.nlist());
        if d == 0 || d > MAX_DIM {
            return Err(Error::backend("wgpu", format!("dimension {d} is outside 1..={MAX_DIM} supported by the wgpu kernels")));
        }
        if n >= 1 << 31 {
            return Err(Error::backend("wgpu", format!("{n} items: the wgpu backend addresses rows with 31 bits")));
        }
        if l > 65535 {
            return Err(Error::backend("wgpu", format!("nlist {l} exceeds 65535 (one dispatch dimension)")));
        }
        let d16 = d.div_ceil(16);
        let centroids = Arc::new(g.resident("ivf.centroid_codes", &pack_codes(&ix.centroid_codes.codes, d, l, d16, false))?);
        let cscale = Arc::new(g.resident("ivf.centroid_scale", bytes_f32(&ix.centroid_codes.scale))?);
        let cbias = match ix.metric {
            silica_core::Metric::L2 => {
                let c = &ix.centroid_codes;
                Some(Arc::new(g.resident("ivf.centroid_bias", bytes_f32(&metric::biases(c, &metric::sqnorms(c))))?))
            }
            _ => None,
        };
        let loff: Vec<u32> = ix.list_offsets.iter().map(|&o| o as u32).collect();
        let loff_buf = Arc::new(g.resident("ivf.list_offsets", bytemuck::cast_slice(&loff))?);
        let lens: Vec<u64> = (0..l).map(|i| ix.list_offsets[i + 1] - ix.list_offsets[i]).collect();
        let spans: Vec<u64> = (0..l).map(|i| span_words(ix.list_offsets[i], ix.list_offsets[i + 1])).collect();
        let max_list = lens.iter().copied().max().unwrap_or(0) as u32;
        if max_list as u64 > 65535 * 256 {
            return Err(Error::backend(
                "wgpu",
                format!("a list of {max_list} rows exceeds one dispatch (65535 x 256 rows); use more lists"),
            ));
        }
        // Compile the scan for this row width now, not on the first search.
        g.pipelines.scan(d16 as u32)?;
        let max_span = spans.iter().copied().max().unwrap_or(0) as u32;

        let mut chunks = Vec::new();
        for (lo, hi) in Self::chunk_bounds(g, ix)? {
            chunks.push(Self::upload_chunk(g, ix, lo, hi, None)?);
        }
        Ok(Resident {
            index: index.clone(),
            n: n as u32,
            d16: d16 as u32,
            nlist: l as u32,
            centroids,
            cscale,
            cbias,
            loff: loff_buf,
            chunks,
            max_list,
            max_span,
            ebound: prefix_desc(lens),
            mbound: prefix_desc(spans),
        })
    }

    /// Upload `index`, sharing with `old` the centroids, lists, codes, scales, embeddings
    /// and features when `index` has the same rows, lists and row chunks, and the live
    /// bits, planes and attributes that `changed` does not name (`Backend::update`);
    /// otherwise a full upload.
    pub fn update(g: &Gpu, old: &Resident, index: &Arc<Index>, changed: &Changed) -> Result<Resident> {
        let ix = index.as_ref();
        let same = old.index.same_vectors_and_lists(ix);
        let bounds = Self::chunk_bounds(g, ix)?;
        if !same
            || bounds.len() != old.chunks.len()
            || bounds.iter().zip(&old.chunks).any(|(&(lo, hi), c)| (lo as u32, hi as u32) != (c.lo, c.hi))
        {
            return Self::upload(g, index);
        }
        // Patches as (index, value) pairs over the whole plane and attribute-value arrays.
        let patch = Patch { planes: changed.plane_patch(&ix.bloom), values: changed.attr_patch(&old.index.attrs, &ix.attrs) };
        let chunks = bounds
            .iter()
            .zip(&old.chunks)
            .map(|(&(lo, hi), c)| Self::upload_chunk(g, ix, lo, hi, Some((c, changed, &patch))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Resident {
            index: index.clone(),
            centroids: old.centroids.clone(),
            cscale: old.cscale.clone(),
            cbias: old.cbias.clone(),
            loff: old.loff.clone(),
            chunks,
            ebound: old.ebound.clone(),
            mbound: old.mbound.clone(),
            ..*old
        })
    }

    /// Row chunks `[lo, hi)`: every per-row tensor of a chunk must fit one binding.
    fn chunk_bounds(g: &Gpu, ix: &Index) -> Result<Vec<(usize, usize)>> {
        let (n, d) = (ix.len(), ix.dim);
        let d16 = d.div_ceil(16);
        let m = ix.bloom.params.bits as u64;
        let d2 = d.div_ceil(2) as u64;
        let f = ix.feature_names.len() as u64;
        let per_row =
            [(d16 * 16) as u64, 4, 4, m.div_ceil(8), d2 * 4 * ix.embeddings.is_some() as u64, f * 4 * ix.features.is_some() as u64]
                .into_iter()
                .max()
                .unwrap_or(4);
        let mut cap = (g.max_binding / per_row) / 64 * 64;
        if let Some(r) = g.chunk_rows {
            cap = cap.min(r as u64);
        }
        if cap == 0 && n > 0 {
            return Err(Error::backend(
                "wgpu",
                format!("64 rows need {} bytes, more than the largest binding {}", per_row * 64, g.max_binding),
            ));
        }
        let mut bounds = Vec::new();
        let mut lo = 0usize;
        while lo < n {
            let mut hi = n.min(lo + cap as usize);
            while (ix.attrs.offsets[hi] - ix.attrs.offsets[lo]) * 4 > g.max_binding {
                let half = ((hi - lo) / 2) / 64 * 64;
                if half == 0 {
                    return Err(Error::backend("wgpu", format!("rows {lo}.. carry more attribute values than one binding holds")));
                }
                hi = lo + half;
            }
            bounds.push((lo, hi));
            lo = hi;
        }
        Ok(bounds)
    }

    /// Rows `[lo, hi)` on the device. With `shared`, the vector tensors and whatever the
    /// `Changed` does not name are taken from that chunk of the previous version.
    fn upload_chunk(g: &Gpu, ix: &Index, lo: usize, hi: usize, shared: Option<(&Chunk, &Changed, &Patch)>) -> Result<Chunk> {
        let (w0, w1) = (lo / 64, hi.div_ceil(64));
        let keep = |f: fn(&Changed) -> bool| shared.filter(|(_, ch, _)| !f(ch)).map(|(c, _, _)| c);
        let (aoff, avals) = match (keep(|ch| ch.attrs), shared) {
            (Some(c), _) => (c.aoff.clone(), c.avals.clone()),
            (None, Some((c, _, Patch { values: Some((idx, val)), .. }))) => {
                // Same counts, so the same chunk-local offsets: patch the values only.
                let (a0, a1) = (ix.attrs.offsets[lo], ix.attrs.offsets[hi]);
                let local: Vec<(u32, u32)> =
                    idx.iter().zip(val).filter(|(i, _)| (a0..a1).contains(*i)).map(|(&i, &v)| ((i - a0) as u32, v)).collect();
                (c.aoff.clone(), Arc::new(Self::patched(g, "attrs.values", &c.avals, &local)?))
            }
            _ => {
                let a0 = ix.attrs.offsets[lo];
                let aoff: Vec<u32> = ix.attrs.offsets[lo..=hi].iter().map(|&o| (o - a0) as u32).collect();
                let aoff = g.resident("attrs.offsets", bytemuck::cast_slice(&aoff))?;
                let avals =
                    g.resident("attrs.values", bytemuck::cast_slice(&ix.attrs.values[a0 as usize..ix.attrs.offsets[hi] as usize]))?;
                (Arc::new(aoff), Arc::new(avals))
            }
        };
        let planes = match (keep(|ch| ch.planes), shared) {
            (Some(c), _) => c.planes.clone(),
            (None, Some((c, _, Patch { planes: Some((idx, val)), .. }))) => {
                // Chunk-local u64 word index of plane b, word w: b * (w1 - w0) + (w - w0).
                let words = ix.bloom.words;
                let mut local: Vec<(u32, u32)> = Vec::new();
                for (&i, &v) in idx.iter().zip(val) {
                    let (b, w) = (i as usize / words, i as usize % words);
                    if (w0..w1).contains(&w) {
                        let at = (b * (w1 - w0) + (w - w0)) as u32;
                        local.push((2 * at, v as u32));
                        local.push((2 * at + 1, (v >> 32) as u32));
                    }
                }
                Arc::new(Self::patched(g, "bloom.planes", &c.planes, &local)?)
            }
            (None, _) => Arc::new(Self::upload_planes(g, ix, w0, w1)?),
        };
        let live = match keep(|ch| ch.live) {
            Some(c) => c.live.clone(),
            None => {
                let live: Vec<u32> = (w0..w1)
                    .flat_map(|w| {
                        let x = ix.live_word(w);
                        [x as u32, (x >> 32) as u32]
                    })
                    .collect();
                Arc::new(g.resident("live", bytemuck::cast_slice(&live))?)
            }
        };
        let (codes, scale, emb, feats) = match shared {
            Some((c, _, _)) => (c.codes.clone(), c.scale.clone(), c.emb.clone(), c.feats.clone()),
            None => Self::upload_vectors(g, ix, lo, hi)?,
        };
        let bias = match shared {
            Some((c, _, _)) => c.bias.clone(),
            None if ix.metric == silica_core::Metric::L2 => {
                let b: Vec<f32> = (lo..hi).map(|r| metric::bias(ix.sqnorms[r], ix.items.scale[r])).collect();
                Some(Arc::new(g.resident("items.bias", bytes_f32(&b))?))
            }
            None => None,
        };
        Ok(Chunk {
            lo: lo as u32,
            hi: hi as u32,
            cw_lo: (w0 * 2) as u32,
            cw_n: ((w1 - w0) * 2) as u32,
            codes,
            scale,
            aoff,
            avals,
            planes,
            live,
            emb,
            feats,
            bias,
        })
    }

    /// A copy of `old` made on the device with the u32 words `(index, value)` of `words`
    /// written over it (update.wgsl): the new snapshot of a patched tensor.
    fn patched(g: &Gpu, label: &str, old: &Buf, words: &[(u32, u32)]) -> Result<Buf> {
        let out = g.resident_empty(label, old.len)?;
        let mut rec = Rec::new(g);
        rec.copy(&old.view(), 0, &out.view(), 0, old.len);
        let (idx, val): (Vec<u32>, Vec<u32>) = words.iter().copied().unzip();
        // Held until the submission is recorded (as every upload is).
        let (iv, vv) = (g.upload(bytemuck::cast_slice(&idx))?, g.upload(bytemuck::cast_slice(&val))?);
        if !idx.is_empty() {
            let n = idx.len() as u32;
            rec.dispatch(
                Kernel::ScatterU32,
                &params::Update { n, _pad0: 0, _pad1: 0, _pad2: 0 },
                &[(1, &iv.view()), (2, &vv.view()), (3, &out.view())],
                [groups_for(n as u64, 256), 1, 1],
            );
        }
        rec.submit()?;
        drop((iv, vv));
        Ok(out)
    }

    /// u64 words `[w0, w1)` of every Bloom plane, as u32 halves.
    fn upload_planes(g: &Gpu, ix: &Index, w0: usize, w1: usize) -> Result<Buf> {
        let words = ix.bloom.words;
        let m = ix.bloom.params.bits as usize;
        let mut planes = vec![0u32; m * (w1 - w0) * 2];
        planes.par_chunks_mut((w1 - w0) * 2).enumerate().for_each(|(b, out)| {
            for (i, w) in (w0..w1).enumerate() {
                let x = ix.bloom.planes.get(b * words + w).copied().unwrap_or(0);
                out[2 * i] = x as u32;
                out[2 * i + 1] = (x >> 32) as u32;
            }
        });
        g.resident("bloom.planes", bytemuck::cast_slice(&planes))
    }

    /// Codes, scales, embeddings and features of rows `[lo, hi)`.
    #[allow(clippy::type_complexity)]
    fn upload_vectors(g: &Gpu, ix: &Index, lo: usize, hi: usize) -> Result<(Arc<Buf>, Arc<Buf>, Option<Arc<Buf>>, Option<Arc<Buf>>)> {
        let (d, rows) = (ix.dim, hi - lo);
        let d16 = d.div_ceil(16);
        let codes = Arc::new(g.resident("items.codes", &pack_codes(&ix.items.codes[lo * d..hi * d], d, rows, d16, true))?);
        let scale = Arc::new(g.resident("items.scale", bytes_f32(&ix.items.scale[lo..hi]))?);
        let emb = match &ix.embeddings {
            // Even D: the rows are already the device layout (one f16 pair per u32); the
            // (mapped) tensor is handed to wgpu as is.
            Some(e) if d % 2 == 0 => Some(Arc::new(g.resident("items.embeddings", bytemuck::cast_slice(&e[lo * d..hi * d]))?)),
            Some(e) => {
                let d2 = d.div_ceil(2);
                let mut v = vec![0u16; rows * d2 * 2];
                for r in 0..rows {
                    for c in 0..d {
                        v[r * d2 * 2 + c] = e[(lo + r) * d + c].to_bits();
                    }
                }
                Some(Arc::new(g.resident("items.embeddings", bytemuck::cast_slice(&v))?))
            }
            None => None,
        };
        let f = ix.feature_names.len();
        let feats = match &ix.features {
            Some(x) if f > 0 => Some(Arc::new(g.resident("items.features", bytes_f32(&x[lo * f..hi * f]))?)),
            _ => None,
        };
        Ok((codes, scale, emb, feats))
    }

    /// Scan entries per query region for `nprobe` lists (rows of the nprobe largest lists).
    pub fn entry_bound(&self, nprobe: usize) -> u64 {
        self.ebound[nprobe.min(self.ebound.len() - 1)]
    }
    /// Mask words per query region for `nprobe` lists.
    pub fn mask_bound(&self, nprobe: usize) -> u64 {
        self.mbound[nprobe.min(self.mbound.len() - 1)]
    }
}
