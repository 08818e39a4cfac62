//! Index building: vectors + attributes -> artifact (streamed to a file) or [`Index`].
//!
//! Steps (one sequence, [`IndexBuilder::write`]; the in-memory [`IndexBuilder::build`] is
//! the same sequence written into a buffer and decoded):
//! 1. validate; gather the k-means training sample from the source (cosine: normalized);
//! 2. train centroids ([`BuildCompute::train`]), quantize them (`ivf.centroid_codes`);
//! 3. pass 1, in chunks of [`CHUNK`] rows: quantize, assign by the integer rule
//!    ([`BuildCompute::assign`], see [`super::compute`]); only a u32 list per row is kept;
//! 4. counting sort: list order, stable by source row;
//! 5. pass 2, in chunks of sorted rows: re-read, quantize, and write codes, scales, f16
//!    embeddings, features, ids, source rows and the attribute CSR at their offsets, and
//!    the chunk's words of the Bloom planes (held in memory, written last).
//!
//! Memory: the attribute table, the Bloom planes (`M * N / 8` bytes), 12 bytes per row
//! (list, sort order, scale) and one chunk; vectors stay in the mapped input.

use super::attributes::AttributeTable;
use super::compute::{BuildCompute, CpuCompute};
use super::format::{self, FORMAT_VERSION, Meta};
use super::kmeans::KMeansParams;
use super::npy::Matrix;
use super::quantize::{quantize, quantize_row};
use super::source::VectorSource;
use super::writer::{ArtifactWriter, Output, TensorSpec};
use super::{BloomParams, Index, Metric};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rerank::RerankModel;
use half::f16;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use safetensors::Dtype;
use std::path::Path;

/// Rows per chunk of both passes (a multiple of 64: a chunk owns whole Bloom words).
pub const CHUNK: usize = 1 << 16;

/// Build settings. `Default` gives the CLI defaults.
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Number of inverted lists; `None` picks [`default_nlist`].
    pub nlist: Option<usize>,
    pub bloom: BloomParams,
    pub metric: Metric,
    /// Lloyd iterations.
    pub kmeans_iters: usize,
    /// At most this many training rows per list.
    pub sample_per_list: usize,
    pub seed: u64,
    /// Store `items.embeddings` (f16) for `refine` rerank.
    pub store_embeddings: bool,
    /// Numeric attribute fields to store as rerank features.
    pub features: Vec<String>,
    /// Declared field types (`--schema`); undeclared fields are typed by value.
    pub schema: Vec<(String, super::attributes::FieldType)>,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            nlist: None,
            bloom: BloomParams::default(),
            metric: Metric::Ip,
            kmeans_iters: 10,
            sample_per_list: 64,
            seed: 1,
            store_embeddings: true,
            features: Vec::new(),
            schema: Vec::new(),
            progress: false,
        }
    }
}

/// Default nlist for N items: the power of two nearest 4·√N (Faiss's rule of thumb,
/// 1024 for the 63,666-item Debian corpus), at least 1 and at most N.
pub fn default_nlist(n: usize) -> usize {
    if n <= 1 {
        return 1;
    }
    let target = 4.0 * (n as f64).sqrt();
    let p = 2f64.powf(target.log2().round()) as usize;
    p.clamp(1, n)
}

/// Builds an index artifact from vectors and attributes (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    pub params: BuildParams,
}

/// What a build wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSummary {
    pub n: usize,
    pub dim: usize,
    pub nlist: usize,
    /// Artifact size in bytes.
    pub bytes: u64,
}

/// The training sample: source rows, sorted (all rows when N <= k * per_list).
pub fn sample_rows(n: usize, k: usize, per_list: usize, seed: u64) -> Vec<usize> {
    let m = n.min(k.saturating_mul(per_list).max(k));
    if m == n {
        return (0..n).collect();
    }
    let mut v = rand::seq::index::sample(&mut ChaCha8Rng::seed_from_u64(seed), n, m).into_vec();
    v.sort_unstable();
    v
}

/// Rows `rows` of `src` as f32 into `out` (`[rows.len(), D]`), value-checked
/// ([`super::finite`]) and, for cosine, normalized. `scattered`: the rows are spread over
/// the input, read them by positioned reads ([`VectorSource::read_row_into`]) so that
/// the mapped input's pages stay out of the resident set. Errors name the first bad
/// source row.
fn prepare(src: &VectorSource, rows: &[u32], metric: Metric, out: &mut [f32], scattered: bool) -> Result<()> {
    let d = src.dim;
    let bad = out
        .par_chunks_mut(d)
        .zip(rows.par_iter())
        .map_init(Vec::new, |buf, (o, &r)| {
            let r = r as usize;
            if scattered {
                if let Err(e) = src.read_row_into(r, o, buf) {
                    return Some((r, e));
                }
            } else {
                src.row_into(r, o);
            }
            if let Err(f) = super::finite::check_vector(o, metric != Metric::Cosine) {
                let e = match f.col {
                    Some(col) if !f.value.is_finite() => Error::NonFinite { what: "vectors".into(), row: r, col, value: f.value },
                    col => Error::OutOfRange { what: "vectors".into(), row: r, col, reason: f.reason },
                };
                return Some((r, e));
            }
            if metric == Metric::Cosine {
                let norm = o.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm == 0.0 {
                    return Some((r, Error::param("vectors", format!("row {r} is all zeros; cosine needs non-zero vectors"))));
                }
                o.iter_mut().for_each(|x| *x /= norm);
            }
            None
        })
        .flatten()
        .min_by_key(|e| e.0);
    bad.map_or(Ok(()), |(_, e)| Err(e))
}

fn blob_len<S: AsRef<str>>(v: impl Iterator<Item = S>) -> (usize, usize) {
    v.fold((0, 0), |(n, b), s| (n + 1, b + s.as_ref().len()))
}

impl IndexBuilder {
    pub fn new(params: BuildParams) -> Self {
        IndexBuilder { params }
    }

    /// Read `vectors` (.npy, mapped) and `attributes` (.jsonl), build in memory on the CPU.
    pub fn build_files(&self, vectors: &Path, attributes: &Path) -> Result<Index> {
        let src = VectorSource::open(vectors)?;
        let table = super::attributes::read_jsonl_with(attributes, &self.params.features, &self.params.schema)?;
        self.build_source(&src, &table, &CpuCompute)
    }

    /// Build an index in memory on the CPU. Errors: NaN/Inf in vectors, `ip` values beyond
    /// the f16 range (±65504), a sum of squares beyond f32 (row and column named:
    /// [`super::finite`]), N = 0, D = 0, attribute rows != vector rows, nlist = 0 or > N,
    /// zero vectors with `cosine`.
    pub fn build(&self, vectors: Matrix, table: AttributeTable) -> Result<Index> {
        self.build_source(&VectorSource::from_matrix(vectors), &table, &CpuCompute)
    }

    /// [`IndexBuilder::build`] from any source on `compute`: the artifact is written into
    /// memory by [`IndexBuilder::write`] and decoded, so it is exactly what a file holds.
    pub fn build_source(&self, src: &VectorSource, table: &AttributeTable, compute: &dyn BuildCompute) -> Result<Index> {
        let path = Path::new("<in-memory build>");
        let (bytes, _) = self.write(src, table, compute, None, Vec::new(), path)?;
        format::from_bytes_with(&bytes, path, format::Verify::Skip)
    }

    /// Stream-build the artifact of `vectors` + `attributes` into the file `out`
    /// (atomically: a temporary file in its directory renamed into place; on error
    /// nothing is left behind). `rerank`: a model to embed (input width 2·D + F).
    pub fn build_to_file(
        &self,
        vectors: &Path,
        attributes: &Path,
        out: &Path,
        compute: &dyn BuildCompute,
        rerank: Option<&RerankModel>,
    ) -> Result<BuildSummary> {
        use std::os::unix::fs::PermissionsExt;
        format::check_target(out)?;
        let src = VectorSource::open(vectors)?;
        let t0 = std::time::Instant::now();
        let table = super::attributes::read_jsonl_with(attributes, &self.params.features, &self.params.schema)?;
        // The parse's per-batch buffers are freed now; give their pages back before the
        // passes allocate the Bloom planes.
        crate::progress::release_free_memory();
        log::info!("attributes: {} rows in {:.2}s; {}", table.ids.len(), t0.elapsed().as_secs_f64(), crate::progress::rss_note());
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".silica-tmp-")
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| Error::io(out, e))?;
        let file = tmp.as_file().try_clone().map_err(|e| Error::io(out, e))?;
        let (file, summary) = self.write(&src, &table, compute, rerank, file, out)?;
        drop((table, src));
        crate::progress::release_free_memory();
        let t1 = std::time::Instant::now();
        file.sync_all().map_err(|e| Error::io(out, e))?;
        log::info!(
            "sync: {:.1} MB to disk in {:.2}s; {}",
            summary.bytes as f64 / 1e6,
            t1.elapsed().as_secs_f64(),
            crate::progress::rss_note()
        );
        tmp.persist(out).map_err(|e| Error::io(out, e.error))?;
        Ok(summary)
    }

    /// The build steps (module docs) writing into `out`; `path` names it in errors.
    pub fn write<O: Output>(
        &self,
        src: &VectorSource,
        table: &AttributeTable,
        compute: &dyn BuildCompute,
        rerank: Option<&RerankModel>,
        out: O,
        path: &Path,
    ) -> Result<(O, BuildSummary)> {
        let p = &self.params;
        let (n, d) = (src.rows, src.dim);
        if d == 0 {
            return Err(Error::param("vectors", "dimension D is 0"));
        }
        if n == 0 {
            return Err(Error::param("vectors", "no vectors to index (N = 0)"));
        }
        if n > u32::MAX as usize {
            return Err(Error::param("vectors", format!("{n} rows exceed the u32 row range")));
        }
        if d > super::compute::MAX_EXACT_DIM {
            return Err(Error::param(
                "vectors",
                format!("dimension {d} exceeds {} (the int8 assignment dot must be exact in f32)", super::compute::MAX_EXACT_DIM),
            ));
        }
        if table.ids.len() != n {
            return Err(Error::CountMismatch {
                what: "index build".into(),
                left_name: "attributes".into(),
                left: table.ids.len(),
                right_name: "vectors".into(),
                right: n,
            });
        }
        if p.bloom.bits == 0 || p.bloom.hashes == 0 {
            return Err(Error::param("bloom-bits", "Bloom bits and hashes must be at least 1"));
        }
        let nlist = p.nlist.unwrap_or_else(|| default_nlist(n));
        if nlist == 0 {
            return Err(Error::param("nlist", "must be at least 1"));
        }
        if nlist > n {
            return Err(Error::param("nlist", format!("{nlist} lists for {n} vectors; nlist must be <= N")));
        }
        let nf = table.feature_names.len();
        if let Some(m) = rerank
            && m.input_dim() != 2 * d + nf
        {
            return Err(Error::param("rerank-model", format!("input width {} != 2*D + F = {}", m.input_dim(), 2 * d + nf)));
        }

        // 1-2. Sample, train, quantize the centroids.
        let t0 = std::time::Instant::now();
        let sample = sample_rows(n, nlist, p.sample_per_list, p.seed);
        let sample_rows32: Vec<u32> = sample.iter().map(|&r| r as u32).collect();
        let mut x = vec![0f32; sample.len() * d];
        prepare(src, &sample_rows32, p.metric, &mut x, true)?;
        log::info!("sample: {} rows gathered in {:.2}s", sample.len(), t0.elapsed().as_secs_f64());
        let kp = KMeansParams { k: nlist, iters: p.kmeans_iters, sample_per_cluster: p.sample_per_list, seed: p.seed };
        let pb = Progress::new(p.progress, "k-means", p.kmeans_iters as u64, "iterations");
        // l2: plain k-means and the l2 assignment rule, on the host on every build device
        // (the device k-means is spherical).
        let l2 = p.metric == Metric::L2;
        if l2 && compute.name() != "cpu" {
            log::warn!("--metric l2 trains and assigns on the cpu (the {} k-means is spherical)", compute.name());
        }
        let centroids =
            if l2 { super::kmeans::train_with(&x, d, &kp, true, &|| pb.inc(1)) } else { compute.train(&x, d, &kp, &|| pb.inc(1))? };
        pb.finish();
        drop(x);
        if centroids.len() != nlist * d {
            return Err(Error::backend(compute.name(), format!("trained {} values, expected {nlist} x {d}", centroids.len())));
        }
        let cq = quantize(&centroids, d);
        log::info!("k-means: {nlist} lists from {} rows on {} in {:.2}s", sample.len(), compute.name(), t0.elapsed().as_secs_f64());

        // 3. Pass 1: quantize + assign, chunk by chunk.
        let pb = Progress::new(p.progress, "assign", n as u64, "rows");
        let mut lists: Vec<u32> = Vec::with_capacity(n);
        let mut buf = vec![0f32; CHUNK.min(n) * d];
        let mut codes = vec![0i8; CHUNK.min(n) * d];
        for a in (0..n).step_by(CHUNK) {
            let b = (a + CHUNK).min(n);
            let rows: Vec<u32> = (a as u32..b as u32).collect();
            let (x, c) = (&mut buf[..(b - a) * d], &mut codes[..(b - a) * d]);
            prepare(src, &rows, p.metric, x, false)?;
            let sc: Vec<f32> = c.par_chunks_mut(d).zip(x.par_chunks(d)).map(|(c, x)| quantize_row(x, c)).collect();
            let l = if l2 { super::compute::assign_l2(c, &sc, &cq, true) } else { compute.assign(c, &cq)? };
            if l.len() != b - a || l.iter().any(|&l| l as usize >= nlist) {
                return Err(Error::backend(compute.name(), format!("assignment of rows {a}..{b} is malformed")));
            }
            lists.extend_from_slice(&l);
            src.release(a..b);
            pb.inc((b - a) as u64);
        }
        pb.finish();
        drop((buf, codes));

        // 4. Counting sort by list, stable by source row.
        let mut list_offsets = vec![0u64; nlist + 1];
        for &l in &lists {
            list_offsets[l as usize + 1] += 1;
        }
        for l in 0..nlist {
            list_offsets[l + 1] += list_offsets[l];
        }
        let mut cursor = list_offsets.clone();
        let mut perm = vec![0u32; n];
        for (r, &l) in lists.iter().enumerate() {
            perm[cursor[l as usize] as usize] = r as u32;
            cursor[l as usize] += 1;
        }
        drop(lists);
        drop(cursor);
        let t_head = std::time::Instant::now();

        // The plan: every shape is known now.
        let schema = &table.attrs.schema;
        let (_, id_bytes) = blob_len(table.ids.iter());
        let (nvalues, dict_bytes) = blob_len(schema.fields.iter().flat_map(|f| f.values.iter()));
        let (bits, words) = (p.bloom.bits as usize, n.div_ceil(64));
        let mut specs = vec![
            TensorSpec::new("ivf.centroids", Dtype::F32, vec![nlist, d]),
            TensorSpec::new("ivf.centroid_codes", Dtype::I8, vec![nlist, d]),
            TensorSpec::new("ivf.centroid_scale", Dtype::F32, vec![nlist]),
            TensorSpec::new("ivf.list_offsets", Dtype::I64, vec![nlist + 1]),
            TensorSpec::new("items.codes", Dtype::I8, vec![n, d]),
            TensorSpec::new("items.scale", Dtype::F32, vec![n]),
            TensorSpec::new("items.row_ids", Dtype::U8, vec![id_bytes]),
            TensorSpec::new("items.row_id_offsets", Dtype::I64, vec![n + 1]),
            TensorSpec::new("items.source_rows", Dtype::I64, vec![n]),
            TensorSpec::new("bloom.planes", Dtype::U64, vec![bits, words]),
            TensorSpec::new("attrs.offsets", Dtype::I64, vec![n + 1]),
            TensorSpec::new("attrs.values", Dtype::U32, vec![table.attrs.values.len()]),
            TensorSpec::new("attrs.dict", Dtype::U8, vec![dict_bytes]),
            TensorSpec::new("attrs.dict_offsets", Dtype::I64, vec![nvalues + 1]),
        ];
        if l2 {
            specs.push(TensorSpec::new("items.sqnorms", Dtype::I32, vec![n]));
        }
        if p.store_embeddings {
            specs.push(TensorSpec::new("items.embeddings", Dtype::F16, vec![n, d]));
        }
        if nf > 0 {
            specs.push(TensorSpec::new("items.features", Dtype::F32, vec![n, nf]));
        }
        let rerank_tensors = rerank.map(|m| m.tensors()).unwrap_or_default();
        for (name, shape, _) in &rerank_tensors {
            specs.push(TensorSpec::new(name, Dtype::F32, shape.clone()));
        }
        // Typed columns in sorted-row order (8 or 1 bytes per row each: held in memory).
        let columns = super::Columns {
            cols: table
                .columns
                .iter()
                .map(|c| {
                    let keys: Vec<Option<u64>> = perm.iter().map(|&r| c.keys.get(r as usize).copied().flatten()).collect();
                    super::Column::from_keys(&c.name, c.ty, &keys, &list_offsets)
                })
                .collect(),
        };
        let column_tensors = columns.tensors();
        for (name, dt, shape, _) in &column_tensors {
            specs.push(TensorSpec::new(name, *dt, shape.clone()));
        }
        let meta = Meta {
            format_version: FORMAT_VERSION,
            dim: d,
            nlist,
            n,
            metric: p.metric,
            quantization: format::quantization(p.metric),
            bloom: p.bloom,
            bloom_hash: BloomParams::HASH.into(),
            schema: schema.fields.clone(),
            features: table.feature_names.clone(),
            rerank: rerank.map(format::rerank_summary),
            generator: format!("silica {}", env!("CARGO_PKG_VERSION")),
            calibration: None,
            columns: table.columns.iter().map(|c| super::columns::ColumnSchema { name: c.name.clone(), ty: c.ty }).collect(),
        };
        let mut w = ArtifactWriter::new(out, path, specs, format::entries(&meta))?;

        // Small tensors.
        w.put_pod("ivf.centroids", &centroids)?;
        w.put_pod("ivf.centroid_codes", &cq.codes)?;
        w.put_pod("ivf.centroid_scale", &cq.scale)?;
        w.put_pod("ivf.list_offsets", &list_offsets)?;
        // The dictionary blob and its offsets, gathered in parallel pieces (`id` has a value
        // per row, each its own heap string) and written in order.
        let dict_id = w.id("attrs.dict");
        let values: Vec<&String> = schema.fields.iter().flat_map(|f| f.values.iter()).collect();
        let pieces: Vec<(Vec<u8>, Vec<u64>)> = values
            .par_chunks(1 << 16)
            .map(|c| {
                let (mut blob, mut ends) = (Vec::new(), Vec::with_capacity(c.len()));
                for v in c {
                    blob.extend_from_slice(v.as_bytes());
                    ends.push(blob.len() as u64);
                }
                (blob, ends)
            })
            .collect();
        drop(values);
        w.put_pod("attrs.dict_offsets", &[0u64])?;
        let mut base = 0u64;
        for (blob, mut ends) in pieces {
            w.put(dict_id, &blob)?;
            ends.iter_mut().for_each(|e| *e += base);
            w.put_pod("attrs.dict_offsets", &ends)?;
            base += blob.len() as u64;
        }
        for (name, _, data) in &rerank_tensors {
            w.put_pod(name, data)?;
        }
        for (name, _, _, data) in &column_tensors {
            let t = w.id(name);
            w.put(t, data)?;
        }
        drop(column_tensors);
        drop(columns);

        log::info!("header, centroids, dictionaries written in {:.2}s", t_head.elapsed().as_secs_f64());
        // 5. Pass 2: sorted rows, chunk by chunk.
        let value_bits: Vec<u32> =
            schema.fields.par_iter().flat_map_iter(|f| f.values.iter().flat_map(|v| p.bloom.positions(&f.name, v))).collect();
        let k = p.bloom.hashes as usize;
        let mut planes = vec![0u64; bits * words];
        w.put_pod("items.row_id_offsets", &[0u64])?;
        w.put_pod("attrs.offsets", &[0u64])?;
        let pb = Progress::new(p.progress, "write", n as u64, "rows");
        // A producer thread computes chunk i + 1 (rayon inside) while this one writes chunk
        // i: the writes (one thread: positioned writes and streaming checksums) overlap the
        // compute instead of following it.
        let chunks = n.div_ceil(CHUNK);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Pass2Chunk>>(1);
        let ctx = Pass2 { src, table, perm: &perm, metric: p.metric, embeddings: p.store_embeddings, nf, bits, k, value_bits: &value_bits };
        std::thread::scope(|scope| -> Result<()> {
            scope.spawn(|| {
                let (mut id_end, mut attr_end) = (0u64, 0u64);
                for ch in 0..chunks {
                    let a = ch * CHUNK;
                    let out = ctx.chunk(a, (a + CHUNK).min(n), &mut id_end, &mut attr_end);
                    let failed = out.is_err();
                    if tx.send(out).is_err() || failed {
                        return;
                    }
                }
            });
            for ch in 0..chunks {
                // A closed channel means the producer stopped after sending its error.
                let c = rx.recv().map_err(|_| Error::backend(compute.name(), format!("build pass 2 stopped at chunk {ch}")))??;
                w.put_pod("items.codes", &c.codes)?;
                w.put_pod("items.scale", &c.scale)?;
                if let Some(q) = &c.sqnorms {
                    w.put_pod("items.sqnorms", q)?;
                }
                if let Some(e) = &c.embeddings {
                    w.put_pod("items.embeddings", e)?;
                }
                if nf > 0 {
                    w.put_pod("items.features", &c.features)?;
                }
                w.put_pod("items.source_rows", &c.source_rows)?;
                let t = w.id("items.row_ids");
                w.put(t, &c.ids)?;
                w.put_pod("items.row_id_offsets", &c.id_offs)?;
                w.put_pod("attrs.values", &c.vals)?;
                w.put_pod("attrs.offsets", &c.val_offs)?;
                for (wd, col) in c.bloom {
                    for (bit, m) in col {
                        planes[bit as usize * words + wd] = m;
                    }
                }
                w.writeback();
                pb.inc(c.scale.len() as u64);
            }
            Ok(())
        })?;
        pb.finish();
        src.release(0..n);
        let t_bloom = std::time::Instant::now();
        w.put_pod("bloom.planes", &planes)?;
        let note = crate::progress::rss_note();
        drop(planes);
        let (out, bytes) = w.finish()?;
        log::info!("Bloom planes and checksums written in {:.2}s; before: {note}", t_bloom.elapsed().as_secs_f64());
        Ok((out, BuildSummary { n, dim: d, nlist, bytes }))
    }
}

/// What pass 2 reads (shared by its producer thread).
struct Pass2<'a> {
    src: &'a VectorSource,
    table: &'a AttributeTable,
    /// Sorted row -> source row.
    perm: &'a [u32],
    metric: Metric,
    embeddings: bool,
    nf: usize,
    bits: usize,
    /// Bloom hashes per value.
    k: usize,
    /// `k` Bloom positions per global value id.
    value_bits: &'a [u32],
}

/// Sorted rows `a..b`, ready to append to their tensors.
struct Pass2Chunk {
    codes: Vec<i8>,
    scale: Vec<f32>,
    /// l2: per-row sums of squared codes (`items.sqnorms`).
    sqnorms: Option<Vec<i32>>,
    embeddings: Option<Vec<f16>>,
    features: Vec<f32>,
    source_rows: Vec<u64>,
    ids: Vec<u8>,
    id_offs: Vec<u64>,
    vals: Vec<u32>,
    val_offs: Vec<u64>,
    /// Per 64-row word of the chunk, its non-zero (plane, bits) pairs.
    bloom: Vec<(usize, Vec<(u32, u64)>)>,
}

impl Pass2<'_> {
    /// Sorted rows `a..b`; `id_end`/`attr_end`: the blob and CSR ends before them (advanced).
    fn chunk(&self, a: usize, b: usize, id_end: &mut u64, attr_end: &mut u64) -> Result<Pass2Chunk> {
        let (n, d, nf, table) = (self.perm.len(), self.src.dim, self.nf, self.table);
        let rows = &self.perm[a..b];
        let mut x = vec![0f32; (b - a) * d];
        let (mut codes, mut scale) = (vec![0i8; (b - a) * d], vec![0f32; b - a]);
        prepare(self.src, rows, self.metric, &mut x, true)?;
        codes.par_chunks_mut(d).zip(x.par_chunks(d)).zip(scale.par_iter_mut()).for_each(|((c, x), s)| *s = quantize_row(x, c));
        let sqnorms = (self.metric == Metric::L2).then(|| codes.par_chunks(d).map(super::metric::sqnorm).collect());
        let embeddings = self.embeddings.then(|| x.par_iter().map(|&v| f16::from_f32(v)).collect());
        let features = if nf > 0 {
            rows.iter().flat_map(|&r| table.features[r as usize * nf..(r as usize + 1) * nf].iter().copied()).collect()
        } else {
            Vec::new()
        };
        let source_rows = rows.iter().map(|&r| r as u64).collect();
        // Ids and attribute values of the rows (random reads of the table), in parallel
        // pieces, then joined with their running offsets: (id bytes, their ends, value ids, their ends) per piece.
        type Piece = (Vec<u8>, Vec<u64>, Vec<u32>, Vec<u64>);
        let parts: Vec<Piece> = rows
            .par_chunks(4096)
            .map(|rs| {
                let (mut ids, mut io, mut vals, mut vo) =
                    (Vec::new(), Vec::with_capacity(rs.len()), Vec::new(), Vec::with_capacity(rs.len()));
                for &r in rs {
                    ids.extend_from_slice(table.ids[r as usize].as_bytes());
                    io.push(ids.len() as u64);
                    vals.extend_from_slice(table.attrs.row(r as usize));
                    vo.push(vals.len() as u64);
                }
                (ids, io, vals, vo)
            })
            .collect();
        let (mut ids, mut id_offs) = (Vec::new(), Vec::with_capacity(b - a));
        let (mut vals, mut val_offs) = (Vec::new(), Vec::with_capacity(b - a));
        for (i, io, v, vo) in parts {
            let (ib, vb) = (*id_end + ids.len() as u64, *attr_end + vals.len() as u64);
            id_offs.extend(io.iter().map(|o| ib + o));
            val_offs.extend(vo.iter().map(|o| vb + o));
            ids.extend_from_slice(&i);
            vals.extend_from_slice(&v);
        }
        *id_end += ids.len() as u64;
        *attr_end += vals.len() as u64;
        // Bloom: this chunk owns words a/64 .. ceil(b/64).
        let (bits, k) = (self.bits, self.k);
        let bloom = (a / 64..b.div_ceil(64))
            .into_par_iter()
            .map(|wd| {
                let mut col = vec![0u64; bits];
                for (sr, &r) in self.perm.iter().enumerate().take(((wd + 1) * 64).min(n)).skip(wd * 64) {
                    for &v in table.attrs.row(r as usize) {
                        for &bit in &self.value_bits[v as usize * k..(v as usize + 1) * k] {
                            col[bit as usize] |= 1u64 << (sr % 64);
                        }
                    }
                }
                (wd, col.into_iter().enumerate().filter(|c| c.1 != 0).map(|(i, m)| (i as u32, m)).collect())
            })
            .collect();
        Ok(Pass2Chunk { codes, scale, sqnorms, embeddings, features, source_rows, ids, id_offs, vals, val_offs, bloom })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_nlist_is_sane() {
        assert_eq!(default_nlist(1), 1);
        assert_eq!(default_nlist(63_666), 1024);
        assert!(default_nlist(10) <= 10);
        assert_eq!(default_nlist(1_000_000), 4096);
    }
}
