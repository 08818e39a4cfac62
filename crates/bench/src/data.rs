//! Synthetic workloads for `silica bench`, generated straight into an [`Index`] in memory
//! (no file, no k-means): 20M x 128 items take seconds.
//!
//! **Determinism.** Every random value comes from a ChaCha8 stream keyed by
//! `(seed, purpose, chunk)`: item rows in fixed chunks of [`CHUNK_ROWS`], queries, probes
//! and filters one stream per query. Chunk boundaries do not depend on the thread count,
//! so the same seed gives the same bits on any machine and any rayon pool.
//!
//! **Layout.** Lists are equal-sized (list `l` holds `N/L` rows, the first `N mod L` lists
//! one more), rows are already sorted by list, exactly as the artifact stores them.
//!
//! * [`Vectors::Random`]: uniform random int8 codes in `[-127, 127]`, scales uniform in
//!   `[0.5, 1.5) / 127`, random centroids: the DESIGN.md peer table's workload.
//! * [`Vectors::Clustered`]: a two-level Gaussian mixture so that recall means something:
//!   `G = max(1, L/16)` unit group centres `g`; list centre `c_l = normalize(g_(l mod G) +
//!   0.5 z)` (`z` standard normal / sqrt(D)); item / query of list `l`: `c_l + spread z`,
//!   quantized with the artifact's int8 rule. A list's centroid is its mixture centre
//!   (what k-means would estimate), so probing is real work with real misses.
//! * Attributes ([`FilterSpec`]): `A` single-valued fields `f00, f01, ..` with `V` values
//!   `v00000, ..` each, drawn uniformly per row; each query's filter is
//!   `f00 IN (O distinct values) AND f01 IN (..) ..`, so it passes `(O/V)^A` of the items
//!   with `V = round(O / pass^(1/A))`. Bloom bit-planes follow the artifact's hashing spec.

use half::f16;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use silica_core::backend::Probes;
use silica_core::error::{Error, Result};
use silica_core::filter::Filter;
use silica_core::model::quantize::{quantize, quantize_row};
use silica_core::model::{Attributes, BloomParams, BloomPlanes, FieldSchema, I8Matrix, Index, Metric, Schema};
use std::sync::Arc;

/// Rows per generation chunk (one ChaCha8 stream each). Fixed: determinism depends on it.
pub const CHUNK_ROWS: usize = 4096;

/// Stream purposes (high 16 bits of the ChaCha8 stream id).
const ITEMS: u64 = 1;
const ATTRS: u64 = 2;
const CENTRES: u64 = 3;
const QUERIES: u64 = 4;
const PROBES: u64 = 5;
const FILTERS: u64 = 6;

fn stream(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose << 48 | index);
    rng
}

/// How item vectors are made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Vectors {
    /// Uniform random int8 codes (the peer table's workload).
    Random,
    /// Two-level Gaussian mixture; `spread` is the noise norm relative to unit centres.
    /// With 1.5 (the CLI default), N = 1M, 1024 lists, k = 100, recall@100 rises from
    /// about 0.80 at nprobe 8 to 0.99 at nprobe 32.
    Clustered { spread: f32 },
}

/// Attributes and per-query filters: `and_terms` clauses, each `field IN (or_values values)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterSpec {
    /// Requested passing fraction, in (0, 1].
    pub pass: f64,
    /// Clauses ANDed (A >= 1, at most 99).
    pub and_terms: usize,
    /// Values ORed per clause (O >= 1).
    pub or_values: usize,
}

impl FilterSpec {
    /// Values per field: `V = max(O, round(O / pass^(1/A)))`.
    pub fn vocab(&self) -> usize {
        let per_clause = self.pass.powf(1.0 / self.and_terms as f64);
        ((self.or_values as f64 / per_clause).round() as usize).max(self.or_values)
    }
    /// The fraction the generated filters pass in expectation: `(O/V)^A`.
    pub fn realised(&self) -> f64 {
        (self.or_values as f64 / self.vocab() as f64).powi(self.and_terms as i32)
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    /// Items N (>= 1).
    pub n: usize,
    /// Dimension D (>= 1).
    pub dim: usize,
    /// Lists L (1..=N).
    pub nlist: usize,
    pub seed: u64,
    pub vectors: Vectors,
    /// Attributes + Bloom planes; `None`: no attributes, a single all-zero Bloom plane.
    pub filter: Option<FilterSpec>,
    /// Bloom bits and hashes (used only with `filter`).
    pub bloom: BloomParams,
    /// Store f16 `items.embeddings` (needed by refine rerank; 2 bytes per item and dim).
    pub embeddings: bool,
    /// Fill `ids` (`"r<row>"`) and `source_rows` so that `Executor::search` can map rows;
    /// off by default (24 bytes + a string per item).
    pub ids: bool,
}

impl SynthSpec {
    /// Check ranges; errors name the offending flag.
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::param("n", "must be at least 1"));
        }
        if self.n > u32::MAX as usize {
            return Err(Error::param("n", format!("{} exceeds the u32 row range", self.n)));
        }
        if self.dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        if self.nlist == 0 || self.nlist > self.n {
            return Err(Error::param("nlist", format!("{} lists for {} items; need 1 <= nlist <= n", self.nlist, self.n)));
        }
        if let Vectors::Clustered { spread } = self.vectors
            && !(spread.is_finite() && spread >= 0.0)
        {
            return Err(Error::param("spread", format!("{spread} must be finite and >= 0")));
        }
        if let Some(f) = &self.filter {
            if !(f.pass > 0.0 && f.pass <= 1.0) {
                return Err(Error::param("filter-pass", format!("{} is not in (0, 1]", f.pass)));
            }
            if f.and_terms == 0 || f.and_terms > 99 || f.or_values == 0 {
                return Err(Error::param("filter-terms", format!("{}:{} needs 1..=99 clauses of >= 1 values", f.and_terms, f.or_values)));
            }
            if f.vocab() > 99_999 {
                return Err(Error::param("filter-pass", format!("{} needs {} values per field (at most 99999)", f.pass, f.vocab())));
            }
            if self.bloom.bits == 0 || self.bloom.hashes == 0 {
                return Err(Error::param("bloom-bits", "Bloom bits and hashes must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A generated index plus what is needed to make matching queries, probes and filters.
#[derive(Clone, Debug)]
pub struct Synth {
    pub spec: SynthSpec,
    pub index: Arc<Index>,
}

/// `[L+1]` offsets of equal lists.
pub fn equal_offsets(n: usize, nlist: usize) -> Vec<u64> {
    let (q, r) = (n / nlist, n % nlist);
    (0..=nlist).map(|l| (l * q + l.min(r)) as u64).collect()
}

/// Fill `out` with `c + spread * z / sqrt(D)`.
fn gaussian_around(rng: &mut ChaCha8Rng, c: &[f32], spread: f32, out: &mut [f32]) {
    let s = spread / (c.len() as f32).sqrt();
    for (o, &m) in out.iter_mut().zip(c) {
        let z: f32 = rng.sample(StandardNormal);
        *o = m + s * z;
    }
}

fn normalize(x: &mut [f32]) {
    let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
    if n > 0.0 {
        x.iter_mut().for_each(|v| *v /= n);
    }
}

/// Mixture centres `[L, D]` (see the module docs).
fn centres(seed: u64, nlist: usize, d: usize) -> Vec<f32> {
    let mut rng = stream(seed, CENTRES, 0);
    let groups = (nlist / 16).max(1);
    let mut g = vec![0f32; groups * d];
    for row in g.chunks_mut(d) {
        gaussian_around(&mut rng, &vec![0.0; d], (d as f32).sqrt(), row);
        normalize(row);
    }
    let mut c = vec![0f32; nlist * d];
    for (l, row) in c.chunks_mut(d).enumerate() {
        gaussian_around(&mut rng, &g[(l % groups) * d..(l % groups + 1) * d], 0.5, row);
        normalize(row);
    }
    c
}

impl Synth {
    /// Generate the index of `spec` (in parallel; deterministic for the seed).
    pub fn generate(spec: SynthSpec) -> Result<Synth> {
        spec.validate()?;
        let (n, d, nlist, seed) = (spec.n, spec.dim, spec.nlist, spec.seed);
        let list_offsets = equal_offsets(n, nlist);
        let (centroids, items, embeddings) = match spec.vectors {
            Vectors::Random => {
                let mut rng = stream(seed, CENTRES, 0);
                let c: Vec<f32> = (0..nlist * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let (items, emb) = random_items(&spec);
                (c, items, emb)
            }
            Vectors::Clustered { spread } => {
                let c = centres(seed, nlist, d);
                let (items, emb) = clustered_items(&spec, &c, &list_offsets, spread);
                (c, items, emb)
            }
        };
        let centroid_codes = quantize(&centroids, d);
        let (attrs, bloom) = match &spec.filter {
            Some(f) => attributes(&spec, f),
            None => (
                Attributes { schema: Schema::default(), offsets: vec![0; n + 1].into(), values: Default::default() },
                BloomPlanes {
                    params: BloomParams { bits: 1, hashes: 1, seed: spec.bloom.seed },
                    words: n.div_ceil(64),
                    planes: vec![0; n.div_ceil(64)].into(),
                },
            ),
        };
        let (ids, source_rows): (Vec<String>, Vec<u64>) =
            if spec.ids { ((0..n).map(|r| format!("r{r}")).collect(), (0..n as u64).collect()) } else { (Vec::new(), Vec::new()) };
        let index = Index {
            dim: d,
            metric: Metric::Ip,
            centroids,
            centroid_codes,
            list_offsets,
            items,
            embeddings: embeddings.map(Into::into),
            features: None,
            feature_names: Vec::new(),
            ids: ids.iter().collect::<silica_core::model::Ids>(),
            source_rows: source_rows.into(),
            bloom,
            attrs,
            rerank: None,
            live: None,
            calibration: None,
            sqnorms: Default::default(),
            columns: Default::default(),
        };
        Ok(Synth { spec, index: Arc::new(index) })
    }

    /// `count` query vectors `[count, D]` f32, query `i` from its own stream (`start + i`).
    /// Clustered: drawn like the items (a uniform list, its centre plus noise); random:
    /// uniform in `[-1, 1)`.
    pub fn queries(&self, start: usize, count: usize) -> Vec<f32> {
        let (d, ix) = (self.spec.dim, &self.index);
        let mut out = vec![0f32; count * d];
        out.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
            let mut rng = stream(self.spec.seed, QUERIES, (start + i) as u64);
            match self.spec.vectors {
                Vectors::Random => row.iter_mut().for_each(|x| *x = rng.random_range(-1.0f32..1.0)),
                Vectors::Clustered { spread } => {
                    let l = rng.random_range(0..ix.nlist());
                    gaussian_around(&mut rng, &ix.centroids[l * d..(l + 1) * d], spread, row);
                }
            }
        });
        out
    }

    /// Probes for queries `start..start+count`: `nprobe` distinct lists per query, drawn
    /// uniformly without replacement (order = draw order).
    pub fn random_probes(&self, start: usize, count: usize, nprobe: usize) -> Result<Probes> {
        let nlist = self.index.nlist();
        if nprobe == 0 || nprobe > nlist {
            return Err(Error::param("nprobe", format!("{nprobe} must be in 1..={nlist}")));
        }
        let lists = (0..count)
            .flat_map(|i| {
                let mut rng = stream(self.spec.seed, PROBES, (start + i) as u64);
                rand::seq::index::sample(&mut rng, nlist, nprobe).into_iter().map(|l| l as u32).collect::<Vec<_>>()
            })
            .collect();
        Ok(Probes { nprobe, lists })
    }

    /// Filters for queries `start..start+count` (see the module docs); all-pass without a
    /// [`FilterSpec`].
    pub fn filters(&self, start: usize, count: usize) -> Result<Vec<Filter>> {
        let Some(f) = &self.spec.filter else { return Ok(vec![Filter::all(); count]) };
        let v = f.vocab();
        (0..count)
            .map(|i| {
                let mut rng = stream(self.spec.seed, FILTERS, (start + i) as u64);
                let clauses: Vec<String> = (0..f.and_terms)
                    .map(|j| {
                        let vals: Vec<String> = rand::seq::index::sample(&mut rng, v, f.or_values)
                            .into_iter()
                            .map(|x| format!("\"{}\"", value_name(x)))
                            .collect();
                        format!("{} IN ({})", field_name(j), vals.join(", "))
                    })
                    .collect();
                Ok(Filter::compile(&clauses.join(" AND "), &self.index.attrs.schema, &self.index.bloom.params)?)
            })
            .collect()
    }
}

fn field_name(j: usize) -> String {
    format!("f{j:02}")
}
fn value_name(v: usize) -> String {
    format!("v{v:05}")
}

/// Uniform random int8 codes and scales, chunk-parallel.
fn random_items(spec: &SynthSpec) -> (I8Matrix, Option<Vec<f16>>) {
    let (n, d) = (spec.n, spec.dim);
    let mut codes = vec![0i8; n * d];
    let mut scale = vec![0f32; n];
    codes.par_chunks_mut(CHUNK_ROWS * d).zip(scale.par_chunks_mut(CHUNK_ROWS)).enumerate().for_each(|(c, (codes, scale))| {
        let mut rng = stream(spec.seed, ITEMS, c as u64);
        rng.fill_bytes(bytemuck::cast_slice_mut(codes));
        // -128 is outside the quantizer's range [-127, 127]; fold it onto -127.
        codes.iter_mut().for_each(|x| *x = (*x).max(-127));
        scale.iter_mut().for_each(|s| *s = rng.random_range(0.5f32..1.5) / 127.0);
    });
    let items = I8Matrix { rows: n, dim: d, codes: codes.into(), scale: scale.into() };
    let emb = spec.embeddings.then(|| {
        let mut e = vec![f16::ZERO; n * d];
        e.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
            for (x, &c) in row.iter_mut().zip(items.row(r)) {
                *x = f16::from_f32(c as f32 * items.scale[r]);
            }
        });
        e
    });
    (items, emb)
}

/// Mixture items, quantized with the artifact's rule, chunk-parallel.
fn clustered_items(spec: &SynthSpec, c: &[f32], offsets: &[u64], spread: f32) -> (I8Matrix, Option<Vec<f16>>) {
    let (n, d) = (spec.n, spec.dim);
    let mut codes = vec![0i8; n * d];
    let mut scale = vec![0f32; n];
    let mut emb = spec.embeddings.then(|| vec![f16::ZERO; n * d]);
    let emb_chunks: Vec<Option<&mut [f16]>> = match emb.as_mut() {
        Some(e) => e.chunks_mut(CHUNK_ROWS * d).map(Some).collect(),
        None => (0..n.div_ceil(CHUNK_ROWS)).map(|_| None).collect(),
    };
    codes.par_chunks_mut(CHUNK_ROWS * d).zip(scale.par_chunks_mut(CHUNK_ROWS)).zip(emb_chunks).enumerate().for_each(
        |(ch, ((codes, scale), mut emb))| {
            let mut rng = stream(spec.seed, ITEMS, ch as u64);
            let r0 = ch * CHUNK_ROWS;
            let mut l = offsets.partition_point(|&o| o as usize <= r0) - 1;
            let mut x = vec![0f32; d];
            for (i, (code, s)) in codes.chunks_mut(d).zip(scale.iter_mut()).enumerate() {
                while offsets[l + 1] as usize <= r0 + i {
                    l += 1;
                }
                gaussian_around(&mut rng, &c[l * d..(l + 1) * d], spread, &mut x);
                *s = quantize_row(&x, code);
                if let Some(e) = emb.as_deref_mut() {
                    e[i * d..(i + 1) * d].iter_mut().zip(&x).for_each(|(o, &v)| *o = f16::from_f32(v));
                }
            }
        },
    );
    (I8Matrix { rows: n, dim: d, codes: codes.into(), scale: scale.into() }, emb)
}

/// Attribute CSR (A values per row) and Bloom planes for `f`.
fn attributes(spec: &SynthSpec, f: &FilterSpec) -> (Attributes, BloomPlanes) {
    let (n, a, v) = (spec.n, f.and_terms, f.vocab());
    let fields: Vec<FieldSchema> = (0..a)
        .map(|j| FieldSchema { name: field_name(j), multi: false, base: (j * v) as u32, values: (0..v).map(value_name).collect() })
        .collect();
    let mut values = vec![0u32; n * a];
    values.par_chunks_mut(CHUNK_ROWS * a).enumerate().for_each(|(c, vals)| {
        let mut rng = stream(spec.seed, ATTRS, c as u64);
        for row in vals.chunks_mut(a) {
            for (j, x) in row.iter_mut().enumerate() {
                *x = (j * v + rng.random_range(0..v)) as u32;
            }
        }
    });
    let offsets: Vec<u64> = (0..=n as u64).into_par_iter().map(|r| r * a as u64).collect();
    // Bloom positions of every global value id.
    let pos: Vec<Vec<u32>> = fields.iter().flat_map(|fs| fs.values.iter().map(|val| spec.bloom.positions(&fs.name, val))).collect();
    let bloom = bloom_planes(spec.bloom, n, &values, a, &pos);
    (Attributes { schema: Schema { fields, columns: Vec::new() }, offsets: offsets.into(), values: values.into() }, bloom)
}

/// Plane-major Bloom bits of rows with `a` value ids each, written in parallel by
/// disjoint word ranges of every plane.
fn bloom_planes(params: BloomParams, n: usize, values: &[u32], a: usize, pos: &[Vec<u32>]) -> BloomPlanes {
    const TASK_WORDS: usize = 512;
    let (m, words) = (params.bits as usize, n.div_ceil(64));
    let mut planes = vec![0u64; m * words];
    let tasks = words.div_ceil(TASK_WORDS);
    let mut parts: Vec<Vec<&mut [u64]>> = (0..tasks).map(|_| Vec::with_capacity(m)).collect();
    for plane in planes.chunks_mut(words) {
        for (t, part) in plane.chunks_mut(TASK_WORDS).enumerate() {
            parts[t].push(part);
        }
    }
    parts.into_par_iter().enumerate().for_each(|(t, mut part)| {
        let r0 = t * TASK_WORDS * 64;
        for r in r0..(r0 + TASK_WORDS * 64).min(n) {
            let (w, bit) = ((r - r0) / 64, 1u64 << (r % 64));
            for &val in &values[r * a..(r + 1) * a] {
                for &b in &pos[val as usize] {
                    part[b as usize][w] |= bit;
                }
            }
        }
    });
    BloomPlanes { params, words, planes: planes.into() }
}
