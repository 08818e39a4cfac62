//! Streaming artifact writer: the safetensors header is written first (every shape is
//! known before any data), then each tensor's bytes at their known offset as the builder
//! produces them, each tensor hashed on the way (streaming xxh3-64, the per-tensor
//! checksums of [`super::format`]); [`ArtifactWriter::finish`] rewrites the header with the
//! checksums. The result is byte-for-byte a safetensors file that [`super::format::load`]
//! reads.
//!
//! Layout: 8-byte little-endian header length `H`, `H` bytes of header JSON followed by
//! [`SLACK`] or more spaces (safetensors allows trailing whitespace), `8 + H` a multiple of
//! 64, then the tensors ordered by element size (8-byte dtypes first) and name, so each
//! tensor starts at a multiple of its element size. The slack lets [`patch_metadata`] add
//! or change metadata entries in place after the tensors exist.

use super::format::{self, CHECKSUMS, META_ENTRY};
use crate::error::{Error, Result};
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

/// Spaces reserved after the header JSON for later metadata ([`patch_metadata`]).
pub const SLACK: usize = 16 << 10;

/// One tensor of the plan: name, dtype, shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: &str, dtype: Dtype, shape: Vec<usize>) -> Self {
        TensorSpec { name: name.into(), dtype, shape }
    }
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * (self.dtype.bitsize() / 8) as u64
    }
}

/// Where output bytes go: a file (positioned writes, nothing mapped) or memory.
pub trait Output {
    /// Write `bytes` at absolute `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Start writing what is written so far to stable storage without waiting for it
    /// (a hint; the final `sync_all` still decides durability).
    fn start_writeback(&mut self) {}
}

impl Output for File {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all_at(bytes, offset)
    }
    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the whole file (nbytes 0 = to the end); this
        // flag only queues dirty pages for writing and returns. Failure is harmless here.
        unsafe { libc::sync_file_range(self.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
}

impl Output for Vec<u8> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let (s, e) = (offset as usize, offset as usize + bytes.len());
        if self.len() < e {
            self.resize(e, 0);
        }
        self[s..e].copy_from_slice(bytes);
        Ok(())
    }
}

/// Writes one artifact: tensors are filled by appending bytes in order ([`ArtifactWriter::put`]).
pub struct ArtifactWriter<O: Output> {
    out: O,
    /// What errors name.
    path: std::path::PathBuf,
    specs: Vec<TensorSpec>,
    by_name: HashMap<String, usize>,
    /// Absolute start offset of each tensor.
    start: Vec<u64>,
    written: Vec<u64>,
    hashers: Vec<Xxh3>,
    meta: HashMap<String, String>,
    /// Header JSON length H (JSON + padding).
    header_len: usize,
    total: u64,
    /// Bytes appended since the last [`ArtifactWriter::writeback`] started one.
    unsynced: u64,
}

/// Bytes between two writeback starts: the final fsync then waits for at most about this
/// much (plus what the disk has not caught up with), instead of the whole file at the end.
const WRITEBACK_BYTES: u64 = 256 << 20;

fn fail(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format { path: path.into(), reason: reason.into() }
}

/// The header JSON: `__metadata__` then each tensor with its data offsets (relative to the
/// data start).
fn header_json(specs: &[TensorSpec], rel: &[(u64, u64)], meta: &HashMap<String, String>) -> String {
    let mut m = serde_json::Map::new();
    let sorted: BTreeMap<&String, &String> = meta.iter().collect();
    m.insert("__metadata__".into(), serde_json::to_value(sorted).expect("strings serialize"));
    for (s, &(a, b)) in specs.iter().zip(rel) {
        m.insert(s.name.clone(), serde_json::json!({"dtype": s.dtype, "shape": s.shape, "data_offsets": [a, b]}));
    }
    serde_json::to_string(&m).expect("header serializes")
}

/// A placeholder checksum map of the final one's length (16 hex digits per entry).
fn placeholder_sums(specs: &[TensorSpec]) -> String {
    let sums: BTreeMap<String, String> =
        specs.iter().map(|s| s.name.clone()).chain([META_ENTRY.to_string()]).map(|n| (n, "0".repeat(16))).collect();
    serde_json::to_string(&sums).expect("strings serialize")
}

impl<O: Output> ArtifactWriter<O> {
    /// Plan the file and write its header. `meta`: every metadata entry except the checksum
    /// map (see [`format::entries`]). Errors: duplicate tensor names, I/O.
    pub fn new(out: O, path: &Path, mut specs: Vec<TensorSpec>, meta: HashMap<String, String>) -> Result<Self> {
        specs.sort_by(|a, b| b.dtype.bitsize().cmp(&a.dtype.bitsize()).then_with(|| a.name.cmp(&b.name)));
        let mut by_name = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            if by_name.insert(s.name.clone(), i).is_some() {
                return Err(Error::backend("writer", format!("tensor `{}` planned twice", s.name)));
            }
        }
        let mut rel = Vec::with_capacity(specs.len());
        let mut at = 0u64;
        for s in &specs {
            rel.push((at, at + s.bytes()));
            at += s.bytes();
        }
        let mut with_sums = meta.clone();
        with_sums.insert(CHECKSUMS.into(), placeholder_sums(&specs));
        let json = header_json(&specs, &rel, &with_sums);
        let header_len = (8 + json.len() + SLACK).div_ceil(64) * 64 - 8;
        let data_start = 8 + header_len as u64;
        let start = rel.iter().map(|r| data_start + r.0).collect();
        let n = specs.len();
        let mut w = ArtifactWriter {
            out,
            path: path.into(),
            specs,
            by_name,
            start,
            written: vec![0; n],
            hashers: (0..n).map(|_| Xxh3::new()).collect(),
            meta,
            header_len,
            total: data_start + at,
            unsynced: 0,
        };
        w.write_header(&placeholder_sums(&w.specs))?;
        // Size the output now: a file short of its end would not parse.
        if w.total > data_start {
            let end = w.total - 1;
            w.out.write_at(end, &[0]).map_err(|e| Error::io(&w.path, e))?;
        }
        Ok(w)
    }

    fn write_header(&mut self, sums: &str) -> Result<()> {
        let mut meta = self.meta.clone();
        meta.insert(CHECKSUMS.into(), sums.to_string());
        let rel: Vec<(u64, u64)> = self
            .specs
            .iter()
            .zip(&self.start)
            .map(|(s, &a)| (a - 8 - self.header_len as u64, a - 8 - self.header_len as u64 + s.bytes()))
            .collect();
        let mut json = header_json(&self.specs, &rel, &meta).into_bytes();
        if json.len() > self.header_len {
            return Err(fail(&self.path, "header outgrew its reserved space"));
        }
        json.resize(self.header_len, b' ');
        let mut buf = (self.header_len as u64).to_le_bytes().to_vec();
        buf.extend_from_slice(&json);
        self.out.write_at(0, &buf).map_err(|e| Error::io(&self.path, e))
    }

    /// The tensor id of `name` (for [`ArtifactWriter::put`]). Panics on a name not planned.
    pub fn id(&self, name: &str) -> usize {
        self.by_name[name]
    }

    /// True when `name` is planned.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Append `bytes` to tensor `t`. Errors: more bytes than its shape holds, I/O.
    pub fn put(&mut self, t: usize, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let end = self.written[t] + bytes.len() as u64;
        if end > self.specs[t].bytes() {
            return Err(Error::backend(
                "writer",
                format!("tensor `{}`: {end} bytes written, shape holds {}", self.specs[t].name, self.specs[t].bytes()),
            ));
        }
        self.out.write_at(self.start[t] + self.written[t], bytes).map_err(|e| Error::io(&self.path, e))?;
        self.hashers[t].update(bytes);
        self.written[t] = end;
        self.unsynced += bytes.len() as u64;
        Ok(())
    }

    /// Start writeback of what is written (see [`Output::start_writeback`]) once at least
    /// [`WRITEBACK_BYTES`] were appended since the last start; a streaming build calls it
    /// after each chunk so the disk writes overlap the build.
    pub fn writeback(&mut self) {
        if self.unsynced >= WRITEBACK_BYTES {
            self.out.start_writeback();
            self.unsynced = 0;
        }
    }

    /// Append a slice of plain values to tensor `name`.
    pub fn put_pod<T: bytemuck::Pod>(&mut self, name: &str, v: &[T]) -> Result<()> {
        let t = self.id(name);
        self.put(t, bytemuck::cast_slice(v))
    }

    /// Write the checksums into the header; returns the output and its total size in bytes.
    /// Errors: a tensor not completely written, I/O.
    pub fn finish(mut self) -> Result<(O, u64)> {
        if let Some(t) = (0..self.specs.len()).find(|&t| self.written[t] != self.specs[t].bytes()) {
            return Err(Error::backend(
                "writer",
                format!("tensor `{}`: {} of {} bytes written", self.specs[t].name, self.written[t], self.specs[t].bytes()),
            ));
        }
        let mut sums: BTreeMap<String, String> =
            self.specs.iter().zip(&self.hashers).map(|(s, h)| (s.name.clone(), format!("{:016x}", h.digest()))).collect();
        sums.insert(META_ENTRY.into(), format::meta_checksum(&self.meta));
        self.write_header(&serde_json::to_string(&sums).expect("strings serialize"))?;
        Ok((self.out, self.total))
    }
}

/// Set metadata `entries` (key, value) of the artifact at `path` in place, recomputing the
/// `__metadata__` checksum. The tensors are untouched. Errors ([`Error::Format`]): not a
/// safetensors file, a key of `checksums`, or a header that would not fit in the space
/// written for it (rebuild or re-save the artifact to get new slack), I/O.
pub fn patch_metadata(path: &Path, entries: &[(String, String)]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0).map_err(io)?;
    let h = u64::from_le_bytes(len) as usize;
    let size = file.metadata().map_err(io)?.len() as usize;
    if h > 100_000_000 || 8 + h > size {
        return Err(fail(path, "not a safetensors file (bad header length)"));
    }
    let mut header = vec![0u8; h];
    file.read_exact_at(&mut header, 8).map_err(io)?;
    let mut json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| fail(path, format!("header is not JSON: {e}")))?;
    let mut meta: HashMap<String, String> = match json.get("__metadata__") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| fail(path, format!("__metadata__: {e}")))?,
        None => HashMap::new(),
    };
    for (k, v) in entries {
        if k == CHECKSUMS {
            return Err(fail(path, format!("metadata `{CHECKSUMS}` is written by silica, not patched")));
        }
        meta.insert(k.clone(), v.clone());
    }
    if let Some(text) = meta.get(CHECKSUMS) {
        let mut sums: BTreeMap<String, String> =
            serde_json::from_str(text).map_err(|e| fail(path, format!("metadata `{CHECKSUMS}`: {e}")))?;
        sums.insert(META_ENTRY.into(), format::meta_checksum(&meta));
        meta.insert(CHECKSUMS.into(), serde_json::to_string(&sums).expect("strings serialize"));
    }
    let sorted: BTreeMap<&String, &String> = meta.iter().collect();
    json.insert("__metadata__".into(), serde_json::to_value(sorted).expect("strings serialize"));
    let mut text = serde_json::to_string(&json).expect("header serializes").into_bytes();
    if text.len() > h {
        return Err(fail(
            path,
            format!("patched header needs {} bytes, the file has room for {h}; re-save the artifact to get new slack", text.len()),
        ));
    }
    text.resize(h, b' ');
    file.write_all_at(&text, 8).map_err(io)?;
    file.sync_all().map_err(io)
}
