//! The `*.silica` artifact: one safetensors file (DESIGN.md "The index artifact"),
//! readable by any safetensors reader. Writes go to a temporary file in the target
//! directory that is renamed into place, so a failed write leaves no partial artifact.
//!
//! Tensors beyond the DESIGN table: `items.row_id_offsets` (I64 [N+1], the offsets of the
//! `items.row_ids` UTF-8 blob), `items.source_rows` (I64 [N], source line of each sorted
//! row), `attrs.dict` + `attrs.dict_offsets` (the value dictionaries, UTF-8 blob + I64
//! offsets, in global value-id order).
//!
//! Integrity: `__metadata__["checksums"]` is a JSON map from each tensor name to the
//! xxh3-64 (16 hex digits) of its bytes, plus `"__metadata__"`: the xxh3-64 of every other
//! metadata entry as a sorted JSON object (so the Bloom seed and schema are covered).
//! Loading verifies them (see [`Verify`]); artifacts without them (older silica) load
//! with a warning. Value checks (finite centroids, finite non-negative scales, finite
//! embeddings and features, code range, CSR offsets, UTF-8 ids) run on every load.
//!
//! Loading from a file goes through [`super::load`] (memory map; tensors are views into it).
//! For that, a writer must put every tensor at a file offset aligned for its dtype: the
//! header padded to a multiple of 8 bytes, then the tensors by descending dtype size (8-byte
//! `I64`/`U64` first, then `F32`/`U32`, `F16`, then `U8`/`I8`), as `safetensors::serialize`
//! (used by [`to_bytes`]) orders them. A misaligned tensor still loads, as a copy.

use super::attributes::{Attributes, FieldSchema, Schema};
use super::load::{Progress, Source, Times};
use super::{BloomParams, BloomPlanes, I8Matrix, Ids, Index, Metric, Tensor};
use crate::error::{Error, Result};
use crate::rerank::RerankModel;
use half::f16;
use rayon::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Artifact format version written to `__metadata__["format_version"]`.
pub const FORMAT_VERSION: u32 = 1;

/// The metadata key of the build-time nprobe calibration (JSON, see [`super::calibration`]).
pub const CALIBRATION: &str = "calibration";

/// The metadata key of the typed columns (JSON list of `{name, type}`).
pub const COLUMNS: &str = "columns";

/// The metadata key of the checksum map, and the map's entry for the metadata itself.
pub const CHECKSUMS: &str = "checksums";
pub const META_ENTRY: &str = "__metadata__";

/// Whether loading checks the stored checksums (`--no-verify` skips them; value checks
/// always run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    #[default]
    Checksums,
    Skip,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// xxh3-64 of every metadata entry except the checksum map, as a sorted JSON object.
pub(crate) fn meta_checksum(info: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = info.iter().filter(|(k, _)| k.as_str() != CHECKSUMS).collect();
    hex(serde_json::to_string(&sorted).expect("strings serialize").as_bytes())
}

/// One line of [`verify`]: a tensor (or `__metadata__`) and what its check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// `None`: OK; else why not.
    pub problem: Option<String>,
}

/// Check every stored checksum of safetensors `bytes`, in parallel across tensors (largest
/// first; a progress bar or log lines at scale): one [`Check`] per tensor plus
/// `__metadata__`, sorted by name. `Ok(None)`: the artifact has no checksums.
/// Errors: not a safetensors file, a malformed checksum map.
pub fn checksums(bytes: &[u8], path: &Path) -> Result<Option<Vec<Check>>> {
    let bad = |reason: String| Error::Format { path: path.into(), reason };
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let info = header.metadata().clone().unwrap_or_default();
    let Some(text) = info.get(CHECKSUMS) else { return Ok(None) };
    let want: BTreeMap<String, String> =
        serde_json::from_str(text).map_err(|e| bad(format!("metadata `{CHECKSUMS}` is not a JSON map of names to hex: {e}")))?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.push(META_ENTRY.into());
    names.extend(want.keys().filter(|k| k.as_str() != META_ENTRY && st.tensor(k).is_err()).cloned());
    // Largest first, so that the longest sequential hash starts at once.
    let size = |n: &String| st.tensor(n).map(|t| t.data().len()).unwrap_or(0);
    names.sort_by_key(|n| std::cmp::Reverse(size(n)));
    let progress = Progress::new("verify", names.iter().map(|n| size(n) as u64).sum());
    let mut checks: Vec<Check> = names
        .par_iter()
        .map(|name| {
            let got = match (name.as_str(), st.tensor(name)) {
                (META_ENTRY, _) => Some(meta_checksum(&info)),
                (_, Ok(t)) => Some(hash_counted(t.data(), &progress)),
                (_, Err(_)) => None,
            };
            let problem = match (want.get(name), got) {
                (Some(w), Some(g)) if *w == g => None,
                (Some(w), Some(g)) => Some(format!("checksum mismatch (stored {w}, computed {g})")),
                (None, _) => Some("has no stored checksum".to_string()),
                (Some(_), None) => Some("listed in the checksums but missing from the file".to_string()),
            };
            Check { name: name.clone(), problem }
        })
        .collect();
    progress.finish();
    checks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(checks))
}

/// [`hex`] of `data`, streamed in 64 MiB chunks that count towards `progress` (the same
/// value as one xxh3 call over the whole tensor).
fn hash_counted(data: &[u8], progress: &Progress) -> String {
    const CHUNK: usize = 64 << 20;
    if data.len() <= CHUNK {
        progress.inc(data.len() as u64);
        return hex(data);
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for c in data.chunks(CHUNK) {
        h.update(c);
        progress.inc(c.len() as u64);
    }
    format!("{:016x}", h.digest())
}

/// The JSON-valued metadata entries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub format_version: u32,
    pub dim: usize,
    pub nlist: usize,
    pub n: usize,
    pub metric: Metric,
    pub quantization: String,
    pub bloom: BloomParams,
    pub bloom_hash: String,
    pub schema: Vec<FieldSchema>,
    pub features: Vec<String>,
    pub rerank: Option<String>,
    pub generator: String,
    /// The build-time nprobe calibration (absent: not calibrated).
    pub calibration: Option<super::calibration::Calibration>,
    /// Typed columns (`cols.*` tensors; absent in older artifacts: none).
    pub columns: Vec<super::columns::ColumnSchema>,
}

/// `__metadata__["rerank"]` of an embedded model.
pub fn rerank_summary(m: &RerankModel) -> String {
    format!("mlp: {} hidden layers, {} tasks, input {}", m.layers.len(), m.tasks(), m.input_dim())
}

/// `__metadata__["quantization"]`.
pub const QUANTIZATION: &str = "int8 symmetric per row: scale = absmax/127, round half to even";

/// The `quantization` metadata of an index of `metric` (l2 adds its query rule and score).
pub fn quantization(metric: Metric) -> String {
    match metric {
        Metric::L2 => format!(
            "{QUANTIZATION}; l2: query scale = the power of two >= absmax/127, score = ((dot as f32) * qscale - (sqnorm as f32 * scale) * 0.5) * scale"
        ),
        _ => QUANTIZATION.into(),
    }
}

/// Human-readable summary of an index's metadata.
pub fn meta_of(ix: &Index) -> Meta {
    Meta {
        format_version: FORMAT_VERSION,
        dim: ix.dim,
        nlist: ix.nlist(),
        n: ix.len(),
        metric: ix.metric,
        quantization: quantization(ix.metric),
        bloom: ix.bloom.params,
        bloom_hash: BloomParams::HASH.into(),
        schema: ix.attrs.schema.fields.clone(),
        features: ix.feature_names.clone(),
        rerank: ix.rerank.as_ref().map(rerank_summary),
        generator: format!("silica {}", env!("CARGO_PKG_VERSION")),
        calibration: ix.calibration.clone(),
        columns: ix.columns.schema(),
    }
}

fn b<T: bytemuck::Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn blob(strings: impl Iterator<Item = impl AsRef<str>>) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut offs = vec![0u64];
    for s in strings {
        bytes.extend_from_slice(s.as_ref().as_bytes());
        offs.push(bytes.len() as u64);
    }
    (bytes, offs)
}

/// Serialize an index to safetensors bytes.
pub fn to_bytes(ix: &Index) -> Result<Vec<u8>> {
    let (n, d, l) = (ix.len(), ix.dim, ix.nlist());
    let (id_bytes, id_offs) = ix.ids.parts();
    let dict = ix.attrs.schema.fields.iter().flat_map(|f| f.values.iter());
    let (dict_bytes, dict_offs) = blob(dict);
    let rerank = ix.rerank.as_ref().map(|m| m.tensors()).unwrap_or_default();
    let mut t: Vec<(String, Dtype, Vec<usize>, &[u8])> = vec![
        ("ivf.centroids".into(), Dtype::F32, vec![l, d], b(&ix.centroids)),
        ("ivf.centroid_codes".into(), Dtype::I8, vec![l, d], b(&ix.centroid_codes.codes)),
        ("ivf.centroid_scale".into(), Dtype::F32, vec![l], b(&ix.centroid_codes.scale)),
        ("ivf.list_offsets".into(), Dtype::I64, vec![l + 1], b(&ix.list_offsets)),
        ("items.codes".into(), Dtype::I8, vec![n, d], b(&ix.items.codes)),
        ("items.scale".into(), Dtype::F32, vec![n], b(&ix.items.scale)),
        ("items.row_ids".into(), Dtype::U8, vec![id_bytes.len()], id_bytes),
        ("items.row_id_offsets".into(), Dtype::I64, vec![n + 1], b(id_offs)),
        ("items.source_rows".into(), Dtype::I64, vec![n], b(&ix.source_rows)),
        ("bloom.planes".into(), Dtype::U64, vec![ix.bloom.params.bits as usize, ix.bloom.words], b(&ix.bloom.planes)),
        ("attrs.offsets".into(), Dtype::I64, vec![n + 1], b(&ix.attrs.offsets)),
        ("attrs.values".into(), Dtype::U32, vec![ix.attrs.values.len()], b(&ix.attrs.values)),
        ("attrs.dict".into(), Dtype::U8, vec![dict_bytes.len()], &dict_bytes),
        ("attrs.dict_offsets".into(), Dtype::I64, vec![dict_offs.len()], b(&dict_offs)),
    ];
    if ix.metric == Metric::L2 {
        t.push(("items.sqnorms".into(), Dtype::I32, vec![n], b(&ix.sqnorms)));
    }
    if let Some(e) = &ix.embeddings {
        t.push(("items.embeddings".into(), Dtype::F16, vec![n, d], b(&e[..])));
    }
    if let Some(f) = &ix.features {
        t.push(("items.features".into(), Dtype::F32, vec![n, ix.feature_names.len()], b(&f[..])));
    }
    for (name, shape, data) in &rerank {
        t.push((name.clone(), Dtype::F32, shape.clone(), b(data)));
    }
    t.extend(ix.columns.tensors());
    let views = t
        .iter()
        .map(|(name, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::backend("format", format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let sums: BTreeMap<String, String> = t.iter().map(|(name, _, _, data)| (name.clone(), hex(data))).collect();
    let mut info = entries(&meta_of(ix));
    let mut sums = sums;
    sums.insert(META_ENTRY.into(), meta_checksum(&info));
    info.insert(CHECKSUMS.into(), serde_json::to_string(&sums).expect("strings serialize"));
    safetensors::serialize(views, Some(info)).map_err(|e| Error::backend("format", e.to_string()))
}

/// The metadata entries of `meta` as stored (every entry but the checksum map).
pub fn entries(meta: &Meta) -> HashMap<String, String> {
    let mut info = HashMap::new();
    let js = |v: &dyn erased::Ser| v.json();
    info.insert("format_version".into(), meta.format_version.to_string());
    info.insert("dim".into(), meta.dim.to_string());
    info.insert("nlist".into(), meta.nlist.to_string());
    info.insert("n".into(), meta.n.to_string());
    info.insert("metric".into(), meta.metric.to_string());
    info.insert("quantization".into(), meta.quantization.clone());
    info.insert("bloom".into(), js(&meta.bloom));
    info.insert("bloom_hash".into(), meta.bloom_hash.clone());
    info.insert("schema".into(), js(&meta.schema));
    info.insert("features".into(), js(&meta.features));
    info.insert("rerank".into(), meta.rerank.clone().unwrap_or_default());
    info.insert("generator".into(), meta.generator.clone());
    if let Some(c) = &meta.calibration {
        info.insert(CALIBRATION.into(), js(c));
    }
    // Only when there are typed columns, so artifacts without them keep their metadata.
    if !meta.columns.is_empty() {
        info.insert(COLUMNS.into(), js(&meta.columns));
    }
    info
}

mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("metadata serializes")
        }
    }
}

/// Refuse to replace anything but a regular file (or nothing) at `path`: a rename over a
/// directory fails with a confusing error, and one over a FIFO, device or a symlink to
/// one would silently replace it with a plain file.
pub fn check_target(path: &Path) -> Result<()> {
    let refuse = |what: &str| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()));
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(refuse("is a directory; give a file path for the output")),
        Ok(m) if !m.is_file() => {
            Err(refuse("exists and is not a regular file (a FIFO, device or socket, or a symlink to one); refusing to replace it"))
        }
        _ => Ok(()),
    }
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
/// The file gets mode 0666 less the umask (0644 by default), as `File::create` would.
/// Errors: `path` is a directory or another non-regular file ([`check_target`]), I/O.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    check_target(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".silica-tmp-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Save an index to `path` (atomically).
pub fn save(ix: &Index, path: &Path) -> Result<()> {
    write_atomic(path, &to_bytes(ix)?)
}

/// Load an index from `path`, verifying its checksums.
pub fn load(path: &Path) -> Result<Index> {
    load_with(path, Verify::Checksums)
}

/// Load an index from `path` through a memory map (tensors are views into it, see
/// [`super::load`]); `verify` says whether to check the checksums.
pub fn load_with(path: &Path, verify: Verify) -> Result<Index> {
    Ok(super::load::load(path, verify)?.0)
}

/// Metadata entries and the (name, dtype, shape) table of an artifact.
pub type Table = (HashMap<String, String>, Vec<(String, Dtype, Vec<usize>)>);

/// Read the metadata and tensor table from the header alone (for `silica inspect`): the
/// data section is not read, so a file whose tensors are damaged or cut short still shows.
pub fn inspect(path: &Path) -> Result<Table> {
    let h = super::load::read_header(path)?;
    if let Err(e) = h.check_len(path) {
        log::warn!("{e}");
    }
    Ok((h.info, h.tensors.into_iter().map(|t| (t.name, t.dtype, t.shape)).collect()))
}

/// Check the `__metadata__` checksum alone (header only). `Ok(None)`: no checksums.
pub fn meta_check(info: &HashMap<String, String>, path: &Path) -> Result<Option<Check>> {
    let Some(text) = info.get(CHECKSUMS) else { return Ok(None) };
    let want: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| Error::Format {
        path: path.into(),
        reason: format!("metadata `{CHECKSUMS}` is not a JSON map of names to hex: {e}"),
    })?;
    let got = meta_checksum(info);
    let problem = match want.get(META_ENTRY) {
        Some(w) if *w == got => None,
        Some(w) => Some(format!("checksum mismatch (stored {w}, computed {got})")),
        None => Some("has no stored checksum".to_string()),
    };
    Ok(Some(Check { name: META_ENTRY.into(), problem }))
}

/// Decode an index from safetensors bytes, verifying checksums, shapes and invariants.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Index> {
    from_bytes_with(bytes, path, Verify::Checksums)
}

/// [`from_bytes`]; `verify` says whether to check the checksums. Errors
/// ([`Error::Format`]) name the tensor or metadata entry at fault. Tensors are copied.
pub fn from_bytes_with(bytes: &[u8], path: &Path, verify: Verify) -> Result<Index> {
    Ok(decode(Source { bytes, map: None }, path, verify)?.0)
}

/// Decode an index from `src` (tensors view the map where there is one and they are
/// aligned), verifying checksums (unless `verify` is `Skip`), shapes and invariants.
pub fn decode(src: Source, path: &Path, verify: Verify) -> Result<(Index, Times)> {
    let bytes = src.bytes;
    let mut times = Times::default();
    let bad = |reason: String| Error::Format { path: path.into(), reason };
    let t0 = std::time::Instant::now();
    if verify == Verify::Checksums {
        match checksums(bytes, path)? {
            None => log::warn!("{}: no checksums (written by an older silica); integrity not verified", path.display()),
            Some(checks) => {
                if let Some(c) = checks.iter().find(|c| c.problem.is_some()) {
                    let what =
                        if c.name == META_ENTRY { "metadata (bloom, schema, ...)".to_string() } else { format!("tensor `{}`", c.name) };
                    return Err(bad(format!(
                        "{what}: {}; the file is damaged (`silica verify` checks every tensor)",
                        c.problem.as_deref().unwrap_or_default()
                    )));
                }
            }
        }
    }
    times.verify = t0.elapsed().as_secs_f64();
    let t0 = std::time::Instant::now();
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let info = header.metadata().clone().ok_or_else(|| bad("no __metadata__".into()))?;
    let get = |k: &str| info.get(k).cloned().ok_or_else(|| bad(format!("metadata has no `{k}`")));
    let num = |k: &str| -> Result<usize> { get(k)?.parse().map_err(|_| bad(format!("metadata `{k}` is not a number"))) };
    let version = num("format_version")?;
    if version != FORMAT_VERSION as usize {
        return Err(bad(format!("format version {version} is not supported (this silica reads {FORMAT_VERSION})")));
    }
    let (d, l, n) = (num("dim")?, num("nlist")?, num("n")?);
    let metric = match get("metric")?.as_str() {
        "ip" => Metric::Ip,
        "cosine" => Metric::Cosine,
        "l2" => Metric::L2,
        m => return Err(bad(format!("unknown metric {m}"))),
    };
    let bloom: BloomParams = serde_json::from_str(&get("bloom")?).map_err(|e| bad(format!("metadata `bloom`: {e}")))?;
    let mut fields: Vec<FieldSchema> = serde_json::from_str(&get("schema")?).map_err(|e| bad(format!("metadata `schema`: {e}")))?;
    let feature_names: Vec<String> = serde_json::from_str(&get("features")?).map_err(|e| bad(format!("metadata `features`: {e}")))?;
    let calibration = match info.get(CALIBRATION) {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| bad(format!("metadata `{CALIBRATION}`: {e}")))?),
        None => None,
    };
    let column_schema: Vec<super::columns::ColumnSchema> = match info.get(COLUMNS) {
        Some(text) => serde_json::from_str(text).map_err(|e| bad(format!("metadata `{COLUMNS}`: {e}")))?,
        None => Vec::new(),
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;

    let raw = |name: &str, dt: Dtype, shape: &[usize]| -> Result<&[u8]> {
        let t = st.tensor(name).map_err(|_| bad(format!("missing tensor `{name}`")))?;
        if t.dtype() != dt || t.shape() != shape {
            return Err(bad(format!("tensor `{name}` is {:?} {:?}, expected {dt:?} {shape:?}", t.dtype(), t.shape())));
        }
        Ok(t.data())
    };
    fn cast<T: bytemuck::Pod>(v: &[u8]) -> Vec<T> {
        bytemuck::pod_collect_to_vec(v)
    }
    let view = |name: &str, dt: Dtype, shape: &[usize]| -> Result<Tensor<u8>> { Ok(src.tensor(name, raw(name, dt, shape)?)) };
    macro_rules! tensor {
        ($t:ty, $name:expr, $dt:expr, $shape:expr) => {
            raw($name, $dt, $shape).map(|b| src.tensor::<$t>($name, b))
        };
    }
    let len_of =
        |name: &str| st.tensor(name).map(|t| t.shape().first().copied().unwrap_or(0)).map_err(|_| bad(format!("missing tensor `{name}`")));

    // Small tensors are copied; the O(N) ones view the map.
    let centroids: Vec<f32> = cast(raw("ivf.centroids", Dtype::F32, &[l, d])?);
    let ccodes: Vec<i8> = cast(raw("ivf.centroid_codes", Dtype::I8, &[l, d])?);
    let cscale: Vec<f32> = cast(raw("ivf.centroid_scale", Dtype::F32, &[l])?);
    let list_offsets: Vec<u64> = cast(raw("ivf.list_offsets", Dtype::I64, &[l + 1])?);
    let codes: Tensor<i8> = tensor!(i8, "items.codes", Dtype::I8, &[n, d])?;
    let scale: Tensor<f32> = tensor!(f32, "items.scale", Dtype::F32, &[n])?;
    let id_bytes = view("items.row_ids", Dtype::U8, &[len_of("items.row_ids")?])?;
    let id_offs: Tensor<u64> = tensor!(u64, "items.row_id_offsets", Dtype::I64, &[n + 1])?;
    let source_rows: Tensor<u64> = tensor!(u64, "items.source_rows", Dtype::I64, &[n])?;
    let words = n.div_ceil(64);
    let planes: Tensor<u64> = tensor!(u64, "bloom.planes", Dtype::U64, &[bloom.bits as usize, words])?;
    let attr_offs: Tensor<u64> = tensor!(u64, "attrs.offsets", Dtype::I64, &[n + 1])?;
    let attr_vals: Tensor<u32> = tensor!(u32, "attrs.values", Dtype::U32, &[len_of("attrs.values")?])?;
    let dict_bytes = raw("attrs.dict", Dtype::U8, &[len_of("attrs.dict")?])?;
    let dict_offs: Vec<u64> = cast(raw("attrs.dict_offsets", Dtype::I64, &[len_of("attrs.dict_offsets")?])?);
    let sqnorms: Tensor<i32> = if metric == Metric::L2 { tensor!(i32, "items.sqnorms", Dtype::I32, &[n])? } else { Tensor::default() };
    let embeddings = match st.tensor("items.embeddings") {
        Ok(_) => Some(tensor!(f16, "items.embeddings", Dtype::F16, &[n, d])?),
        Err(_) => None,
    };
    let features = match st.tensor("items.features") {
        Ok(_) => Some(tensor!(f32, "items.features", Dtype::F32, &[n, feature_names.len()])?),
        Err(_) => None,
    };
    let rerank = RerankModel::from_safetensors(&st, &path.display().to_string())?;
    let mut cols = Vec::with_capacity(column_schema.len());
    for cs in &column_schema {
        use super::columns::{ColumnType, Values};
        let values = |what: &str, shape: &[usize]| -> Result<Values> {
            let name = format!("cols.{}.{what}", cs.name);
            Ok(match cs.ty {
                ColumnType::Int | ColumnType::Timestamp => Values::I64(tensor!(i64, &name, Dtype::I64, shape)?),
                ColumnType::Float => Values::F64(tensor!(f64, &name, Dtype::F64, shape)?),
                ColumnType::Bool => Values::U8(tensor!(u8, &name, Dtype::U8, shape)?),
            })
        };
        let (values, word_range, list_range) =
            (values("values", &[n])?, values("word_range", &[words, 2])?, values("list_range", &[l, 2])?);
        if let Values::F64(v) = &values
            && first_bad(v, |x| !x.is_finite()).is_some()
        {
            return Err(bad(format!("tensor `cols.{}.values` holds a non-finite value", cs.name)));
        }
        let present: Tensor<u64> = tensor!(u64, &format!("cols.{}.present", cs.name), Dtype::U64, &[words])?;
        cols.push(super::Column { name: cs.name.clone(), ty: cs.ty, values, present, word_range, list_range });
    }

    // Invariants: monotone offsets that end where the data ends, ids in range.
    let monotone = |o: &[u64], end: usize, what: &str| -> Result<()> {
        let decreasing = first_bad_by(o.len().saturating_sub(1), |a, b| (a..b).any(|i| o[i] > o[i + 1])).is_some();
        if o.first() != Some(&0) || decreasing || o.last().copied() != Some(end as u64) {
            return Err(bad(format!("`{what}` offsets are not a valid CSR over {end} entries")));
        }
        Ok(())
    };
    monotone(&list_offsets, n, "ivf.list_offsets")?;
    monotone(&attr_offs, attr_vals.len(), "attrs.offsets")?;
    monotone(&dict_offs, dict_bytes.len(), "attrs.dict_offsets")?;
    let ids = Ids::new(id_bytes, id_offs).map_err(|e| bad(format!("`items.row_ids`: {e}")))?;
    let strings = |bytes: &[u8], offs: &[u64], what: &str| -> Result<Vec<String>> {
        offs.windows(2)
            .map(|w| String::from_utf8(bytes[w[0] as usize..w[1] as usize].to_vec()).map_err(|_| bad(format!("`{what}` is not UTF-8"))))
            .collect()
    };
    let dict = strings(dict_bytes, &dict_offs, "attrs.dict")?;
    // Field f owns value ids base_f .. base_{f+1} (the last field: .. dictionary size).
    let total = dict_offs.len() - 1;
    let mut dict = dict.into_iter();
    for i in 0..fields.len() {
        let end = fields.get(i + 1).map(|f| f.base as usize).unwrap_or(total);
        let start = fields[i].base as usize;
        if end < start || end > total || (i == 0 && start != 0) {
            return Err(bad(format!("schema field `{}` has an invalid value range {start}..{end}", fields[i].name)));
        }
        fields[i].values = dict.by_ref().take(end - start).collect();
    }
    // Every backend's int8 dot is exact for codes in the quantizer's range [-127, 127].
    for (name, c) in [("ivf.centroid_codes", &ccodes[..]), ("items.codes", &codes[..])] {
        if let Some(i) = first_bad(c, |&x| x == i8::MIN) {
            return Err(bad(format!(
                "`{name}` holds -128 at row {}; int8 codes are in [-127, 127] (symmetric quantization)",
                i / d.max(1)
            )));
        }
    }
    // l2: the stored squared code norms are those of the codes (every backend ranks by them).
    if metric == Metric::L2
        && let Some(r) = first_bad_by(n, |a, b| (a..b).any(|r| sqnorms[r] != super::metric::sqnorm(&codes[r * d..(r + 1) * d])))
    {
        return Err(bad(format!("`items.sqnorms` is not the squared norm of the codes (rows {r}.. hold a mismatch)")));
    }
    check_values(&centroids, &cscale, &scale, embeddings.as_deref(), features.as_deref(), d.max(1), feature_names.len().max(1))
        .map_err(bad)?;
    if first_bad(&attr_vals, |&v| v as usize >= total).is_some() || first_bad(&source_rows, |&r| r as usize >= n).is_some() {
        return Err(bad("attribute value id or source row out of range".into()));
    }
    times.values = t0.elapsed().as_secs_f64();
    let index = Index {
        dim: d,
        metric,
        centroids,
        centroid_codes: I8Matrix { rows: l, dim: d, codes: ccodes.into(), scale: cscale.into() },
        list_offsets,
        items: I8Matrix { rows: n, dim: d, codes, scale },
        sqnorms,
        embeddings,
        features,
        feature_names,
        ids,
        source_rows,
        bloom: BloomPlanes { params: bloom, words, planes },
        attrs: Attributes { schema: Schema { fields, columns: column_schema.clone() }, offsets: attr_offs, values: attr_vals },
        rerank,
        live: None,
        calibration,
        columns: super::Columns { cols },
    };
    Ok((index, times))
}

/// Index of the first element of `v` that is `bad`, scanning 64 Ki-element blocks in
/// parallel (a whole block per task, so the test vectorizes; per-element parallel
/// iterators cost more than the test itself at 10^8 elements).
fn first_bad<T: Sync>(v: &[T], bad: impl Fn(&T) -> bool + Sync) -> Option<usize> {
    first_bad_by(v.len(), |a, b| v[a..b].iter().any(&bad)).map(|a| a + v[a..].iter().position(&bad).expect("the block holds one"))
}

/// Start of the first block `[a, b)` of `0..len` (64 Ki elements) where `any(a, b)` holds.
fn first_bad_by(len: usize, any: impl Fn(usize, usize) -> bool + Sync) -> Option<usize> {
    const BLOCK: usize = 1 << 16;
    (0..len.div_ceil(BLOCK))
        .into_par_iter()
        .map(|c| (c * BLOCK, ((c + 1) * BLOCK).min(len)))
        .find_first(|&(a, b)| any(a, b))
        .map(|(a, _)| a)
}

/// Float tensors must hold what silica writes: finite centroids, embeddings and features,
/// finite non-negative scales (a NaN there would become a NaN score).
fn check_values(
    centroids: &[f32],
    cscale: &[f32],
    scale: &[f32],
    emb: Option<&[f16]>,
    feats: Option<&[f32]>,
    d: usize,
    f: usize,
) -> std::result::Result<(), String> {
    let first = |v: &[f32], bad: fn(f32) -> bool| first_bad(v, |&x| bad(x));
    let not_finite = |x: f32| !x.is_finite();
    let not_scale = |x: f32| !x.is_finite() || x < 0.0;
    for (name, v, per_row, test, what) in [
        ("ivf.centroids", centroids, d, not_finite as fn(f32) -> bool, "finite"),
        ("ivf.centroid_scale", cscale, 1, not_scale, "finite and >= 0"),
        ("items.scale", scale, 1, not_scale, "finite and >= 0"),
        ("items.features", feats.unwrap_or_default(), f, not_finite, "finite"),
    ] {
        if let Some(i) = first(v, test) {
            return Err(format!("tensor `{name}` holds {} at row {}; its values must be {what}", v[i], i / per_row));
        }
    }
    // f16 is finite unless its exponent bits are all ones (compared as bits: vectorizes).
    if let Some(i) = emb.and_then(|e| first_bad(bytemuck::cast_slice::<f16, u16>(e), |&x| x & 0x7c00 == 0x7c00)) {
        return Err(format!("tensor `items.embeddings` holds {} at row {}; its values must be finite", emb.unwrap_or_default()[i], i / d));
    }
    Ok(())
}
