//! Loading an artifact without copying it: read the safetensors header, check the file
//! length against it, memory-map the file, verify checksums (parallel across tensors),
//! run the value checks (parallel), and hand out tensors as views into the map.
//!
//! A tensor is a view ([`Tensor::mapped`]) when its offset in the file is aligned for its
//! dtype; silica's writer orders tensors by descending dtype size after an 8-byte-padded
//! header, so every tensor of an artifact it wrote is. Otherwise the tensor is copied (debug
//! log). The map is read-only; `silica serve` updates copy the tensors they change.
//!
//! A file truncated *while* mapped would fault on access (SIGBUS); the length check before
//! mapping catches every file that is short when it is opened.

use super::format::Verify;
use super::tensor::{Map, Tensor};
use crate::error::{Error, Result};
use crate::progress::{Bar, terminal_bar};
use safetensors::Dtype;
use safetensors::tensor::Metadata;
use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest safetensors header silica reads (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of the header: name, dtype, shape and byte range in the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    /// Tensor name (e.g. `items.codes`).
    pub name: String,
    /// Element dtype.
    pub dtype: Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Byte range relative to the start of the data section.
    pub range: std::ops::Range<usize>,
}

/// The safetensors header of an artifact, read without touching the data section.
#[derive(Clone, Debug)]
pub struct Header {
    /// Byte offset of the data section (8 + JSON length).
    pub data_start: usize,
    /// File length in bytes.
    pub file_len: u64,
    /// `__metadata__` entries.
    pub info: HashMap<String, String>,
    /// Every tensor, sorted by name.
    pub tensors: Vec<TensorEntry>,
}

fn format_err(path: &Path, reason: String) -> Error {
    Error::Format { path: path.into(), reason }
}

/// Read the header of the safetensors file at `path` (8 + JSON length bytes).
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or read; [`Error::Format`] when it is
/// shorter than its header (or 8 bytes), the header length exceeds 100 MB, or the header is
/// not safetensors JSON.
pub fn read_header(path: &Path) -> Result<Header> {
    let bad = |r: String| format_err(path, r);
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if file_len < 8 {
        return Err(bad(format!("not a safetensors file: {file_len} bytes, too short for a header")));
    }
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > file_len {
        return Err(bad(format!("not a safetensors file: header length {n} runs past the end of the file ({file_len} bytes; truncated?)")));
    }
    let mut json = vec![0u8; n as usize];
    f.read_exact(&mut json).map_err(|e| Error::io(path, e))?;
    let meta: Metadata = serde_json::from_slice(&json).map_err(|e| bad(format!("not a safetensors file: header: {e}")))?;
    let mut tensors: Vec<TensorEntry> = meta
        .tensors()
        .into_iter()
        .map(|(name, t)| TensorEntry { name, dtype: t.dtype, shape: t.shape.clone(), range: t.data_offsets.0..t.data_offsets.1 })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Header { data_start: 8 + n as usize, file_len, info: meta.metadata().clone().unwrap_or_default(), tensors })
}

impl Header {
    /// Check that every tensor's byte range matches its shape and lies in the file, and that
    /// the data section ends where the file ends.
    ///
    /// # Errors
    /// [`Error::Format`] naming the first tensor whose byte range does not hold its
    /// dtype x shape or runs past the file, or when the data section's length differs from
    /// what the header describes.
    pub fn check_len(&self, path: &Path) -> Result<()> {
        let bad = |r: String| format_err(path, r);
        let data_len = self.file_len - self.data_start as u64;
        let mut end = 0u64;
        for t in &self.tensors {
            let want = t.shape.iter().try_fold(t.dtype.bitsize() as u64 / 8, |a, &d| a.checked_mul(d as u64));
            let (s, e) = (t.range.start as u64, t.range.end as u64);
            if e < s || want != Some(e - s) {
                return Err(bad(format!("tensor `{}`: byte range {s}..{e} does not hold {:?} {:?}", t.name, t.dtype, t.shape)));
            }
            if e > data_len {
                return Err(bad(format!(
                    "tensor `{}` ends at data byte {e} but the file holds {data_len} data bytes ({} bytes in all): truncated?",
                    t.name, self.file_len
                )));
            }
            end = end.max(e);
        }
        if end != data_len {
            return Err(bad(format!("the header describes {end} data bytes but the file holds {data_len}: damaged or extended")));
        }
        Ok(())
    }
}

/// An artifact's header and read-only memory map.
pub struct Artifact {
    /// The file mapped.
    pub path: PathBuf,
    /// Its checked header.
    pub header: Header,
    /// The read-only map of the whole file (`file_len` bytes).
    pub map: Map,
}

impl Artifact {
    /// Read and check the header ([`Header::check_len`]), then map the file.
    ///
    /// # Errors
    /// What [`read_header`] and [`Header::check_len`] return; [`Error::Io`] when the file
    /// cannot be opened or mapped; [`Error::Format`] when its length changed meanwhile.
    pub fn open(path: &Path) -> Result<Artifact> {
        let header = read_header(path)?;
        header.check_len(path)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is only read. Another process truncating the file while it is
        // mapped would fault on access (documented in the module docs); the length was
        // checked against the header just above.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if map.len() as u64 != header.file_len {
            return Err(format_err(path, format!("changed while opening ({} bytes, then {})", header.file_len, map.len())));
        }
        Ok(Artifact { path: path.into(), header, map: Arc::new(map) })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// Where a decoder takes tensors from: the bytes of a safetensors file and, when they are a
/// memory map, the map (tensors then view it instead of copying).
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// The whole safetensors file.
    pub bytes: &'a [u8],
    /// The map `bytes` lies in, or `None` for bytes in memory (tensors are then copied).
    pub map: Option<&'a Map>,
}

impl Source<'_> {
    /// `data` (a sub-slice of `bytes`) as a tensor: a view when mapped and aligned, else a copy.
    pub fn tensor<T: bytemuck::Pod>(&self, name: &str, data: &[u8]) -> Tensor<T> {
        if let Some(map) = self.map {
            let offset = data.as_ptr() as usize - map.as_ptr() as usize;
            if let Some(t) = Tensor::mapped(map, offset, data.len()) {
                return t;
            }
            log::debug!("tensor `{name}` at file offset {offset} is not aligned for {} bytes: copied", std::mem::align_of::<T>());
        }
        Tensor::copied(data)
    }
}

/// Seconds spent in each load phase (logged by [`load`], reported by `silica serve`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Times {
    /// Header read, length check and mmap.
    pub map: f64,
    /// Checksums (0 with `--no-verify`).
    pub verify: f64,
    /// Shape, range and value checks, tensor views.
    pub values: f64,
}

impl std::fmt::Display for Times {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "map {:.3}s, verify {:.3}s, value checks {:.3}s", self.map, self.verify, self.values)
    }
}

/// Map and decode the artifact at `path` (see the module docs); `verify` says whether to
/// check the checksums. Also returns the phase times (logged at info level).
///
/// # Errors
/// What [`Artifact::open`] and [`Artifact::index`] return.
pub fn load(path: &Path, verify: Verify) -> Result<(super::Index, Times)> {
    let t = Instant::now();
    let a = Artifact::open(path)?;
    let map = t.elapsed().as_secs_f64();
    let (index, mut times) = a.index(verify)?;
    times.map = map;
    log::info!("loaded {} ({} items, {:.2} GB): {times}", path.display(), index.len(), a.header.file_len as f64 / 1e9);
    Ok((index, times))
}

impl Artifact {
    /// Decode the index from the map (checksums first when `verify` says so).
    ///
    /// # Errors
    /// As [`super::format::decode`] ([`Error::Format`]).
    pub fn index(&self, verify: Verify) -> Result<(super::Index, Times)> {
        super::format::decode(Source { bytes: &self.map, map: Some(&self.map) }, &self.path, verify)
    }
}

/// Progress of a long byte-counting step: a bar on a terminal, else a log line every 5 s
/// (bytes done, GB/s, ETA). Hidden below 256 MiB.
pub struct Progress {
    bar: Option<Bar>,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
    what: String,
}

impl Progress {
    /// Progress of `what` (the bar's label) over `total` bytes.
    pub fn new(what: &str, total: u64) -> Progress {
        let big = total >= 256 << 20;
        let bar = if big && std::io::stderr().is_terminal() {
            terminal_bar(total, "{spinner} {msg:<14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}", what)
        } else {
            None
        };
        let now = Instant::now();
        Progress {
            bar,
            total: if big { total } else { 0 },
            done: AtomicU64::new(0),
            started: now,
            last_log: Mutex::new(now),
            what: what.into(),
        }
    }

    /// Count `n` more bytes done (any thread).
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
        } else if self.total > 0 {
            let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                let s = self.started.elapsed().as_secs_f64();
                let rate = done as f64 / s.max(1e-9);
                let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1.0);
                log::info!(
                    "{}: {:.2}/{:.2} GB, {:.2} GB/s, ETA {eta:.0}s",
                    self.what,
                    done as f64 / 1e9,
                    self.total as f64 / 1e9,
                    rate / 1e9
                );
            }
        }
    }

    /// Clear the bar (no-op without one).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
