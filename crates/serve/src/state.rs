//! The serving state: the main index (a left-right [`Pair`]) and the fresh segment
//! ([`FreshRows`]: new items in their inverted lists of the main centroids, searched on the
//! main index's backend), tombstones (`Index.live`), the attribute dictionary, the id map
//! and the write-ahead log.
//!
//! [`Store`] is owned by one writer thread. For each group of update batches it validates
//! every batch (a bad batch fails alone and leaves nothing behind), appends the good ones
//! to the log, fsyncs once, applies them to the unpublished copies and publishes one
//! [`Snapshot`] with an atomic pointer swap (`arc-swap`). Searches load the current snapshot
//! once per executor call, so a search sees an update batch whole or not at all.

use super::compact;
use super::dict::Dict;
use super::error::ApiError;
use super::fresh::FreshRows;
use super::ids::IdMap;
use super::metrics::WritePhases;
use super::segment::{self, NewRow, Pair, SegOp};
use super::update::{Batch, Checked, Context, Op, check_attrs, check_id, check_item, check_typed};
use super::wal::{self, Wal};
use arc_swap::ArcSwap;
use serde::Serialize;
use silica_core::backend::Changed;
use silica_core::error::{Error, Result};
use silica_core::filter::{Filter, FilterError};
use silica_core::graph::{self, Search, SearchRequest, SearchResponse, segments::search_segments};
use silica_core::model::{Index, compute, format, load};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Sizes and counters of one snapshot (`GET /v1/stats`, `/metrics`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Update batches applied since the artifact was loaded (log replay included).
    pub version: u64,
    pub backend: String,
    pub dim: usize,
    pub metric: String,
    pub nlist: usize,
    /// Rows of the main index, and how many are live (not deleted or replaced).
    pub main_rows: usize,
    pub main_live: usize,
    /// Rows of the fresh segment (in the inverted lists of the main centroids, probed like
    /// the main index), and how many are live.
    pub fresh_rows: usize,
    pub fresh_live: usize,
    /// Live items (main + fresh).
    pub items: usize,
    /// Attribute values added to the dictionary since the artifact was written.
    pub appended_values: u32,
    pub wal_bytes: u64,
    pub compactions: u64,
    /// Fresh rows + dead main rows that trigger an automatic compaction (0: never).
    pub compact_threshold: usize,
}

/// An immutable view that searches run against.
pub struct Snapshot {
    pub version: u64,
    pub main: Arc<dyn Search>,
    /// The fresh segment's lists part (main's centroids and nlist) and tail (one list).
    pub fresh: Option<Arc<dyn Search>>,
    pub tail: Option<Arc<dyn Search>>,
    pub dict: Dict,
    pub stats: Stats,
}

impl Snapshot {
    /// The main index.
    pub fn index(&self) -> &Arc<Index> {
        self.main.index()
    }
    /// Compile a filter against this snapshot's dictionary.
    pub fn compile(&self, text: &str) -> std::result::Result<Filter, FilterError> {
        Filter::compile(text, &self.dict, &self.index().bloom.params)
    }
    /// Search the main index and the fresh segment, merged.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<SearchResponse>> {
        let extra: Vec<&dyn Search> = self.fresh.iter().chain(&self.tail).map(|s| &**s).collect();
        search_segments(&*self.main, &extra, req)
    }
}

/// An update batch as the writer takes it: with its log record and its new rows' lists
/// computed beforehand, off the writer thread ([`Incoming::prepare`]), so that one writer
/// keeps up with many clients (serializing a record and assigning a batch's vectors to the
/// centroids cost more than the rest of a commit).
pub struct Incoming {
    pub batch: Batch,
    /// The batch's log record (`serde_json` of `batch`); `None`: encoded by the writer.
    pub payload: Option<Vec<u8>>,
    /// The lists of the batch's upserts; `None`: assigned by the writer.
    pub lists: Option<Assigned>,
}

/// Lists of a batch's upserts (in op order) by the build's assignment rule, and the
/// centroids they were computed against: the writer uses them only while the main index
/// has the same centroids (a compaction in between may not).
pub struct Assigned {
    codes: silica_core::model::Tensor<i8>,
    scale: silica_core::model::Tensor<f32>,
    lists: Vec<u32>,
}

impl Incoming {
    /// A batch taken as is (the writer encodes and assigns it).
    pub fn new(batch: Batch) -> Incoming {
        Incoming { batch, payload: None, lists: None }
    }

    /// Encode `batch`'s log record and assign its upserts' vectors to `main`'s centroids
    /// (any thread; the writer checks the centroids again). An upsert whose vector the
    /// writer will refuse (dimension, values) leaves the lists to the writer.
    pub fn prepare(batch: Batch, main: &Index) -> Incoming {
        let payload = serde_json::to_vec(&batch).ok();
        Incoming { payload, ..Incoming::assign(batch, main) }
    }

    /// [`Incoming::prepare`] without the log record (a batch replayed from the log).
    pub fn assign(batch: Batch, main: &Index) -> Incoming {
        let (d, mut codes, mut scales) = (main.dim, Vec::new(), Vec::new());
        let mut ok = true;
        for op in &batch.ops {
            if let Op::Upsert { item } = op {
                let v = (item.vector.len() == d
                    && silica_core::model::finite::check_vector(&item.vector, main.metric != silica_core::Metric::Cosine).is_ok())
                .then(|| super::update::stored_vector(&item.vector, main.metric))
                .flatten();
                let Some(v) = v else {
                    ok = false;
                    break;
                };
                let at = codes.len();
                codes.resize(at + d, 0i8);
                scales.push(silica_core::model::quantize::quantize_row(&v, &mut codes[at..]));
            }
        }
        let lists = ok.then(|| Assigned {
            codes: main.centroid_codes.codes.clone(),
            scale: main.centroid_codes.scale.clone(),
            lists: assign_lists(main, &codes, &scales),
        });
        Incoming { batch, payload: None, lists }
    }
}

impl Assigned {
    /// True when these lists were computed against `main`'s centroids.
    fn current(&self, main: &Index) -> bool {
        let c = &main.centroid_codes;
        (self.codes.as_ptr() == c.codes.as_ptr() && self.scale.as_ptr() == c.scale.as_ptr())
            || (self.codes[..] == c.codes[..] && self.scale[..] == c.scale[..])
    }
}

/// Lists of rows (`codes` `[n, D]`, `scales` `[n]`) of `main`'s centroids by the build's
/// rule (on the calling thread).
fn assign_lists(main: &Index, codes: &[i8], scales: &[f32]) -> Vec<u32> {
    match (codes.is_empty(), main.metric) {
        (true, _) => Vec::new(),
        (false, silica_core::Metric::L2) => compute::assign_l2(codes, scales, &main.centroid_codes, false),
        (false, _) => compute::assign_on_thread(codes, &main.centroid_codes),
    }
}

/// Where an id lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    Main(u32),
    Fresh(u32),
}

/// A validated op, ready to apply.
enum Prepared {
    Upsert(Checked),
    Delete(String),
    Patch(String, Vec<(usize, Vec<String>)>, Vec<(String, Option<u64>)>),
}

/// Options of [`Store::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Backend of the main index and the fresh segment (`cpu`, `wgpu`, `cuda`).
    pub backend: String,
    /// Fresh rows + dead main rows that trigger compaction; `None`: max(2048, N/32); 0: never.
    pub compact_threshold: Option<usize>,
    /// Start from the records before a damaged log record, moving the log aside
    /// (`--wal-recover`; see [`wal::open_with`]); without it such a log refuses to start.
    pub wal_recover: bool,
    /// Check the artifact's checksums when loading it (value checks always run).
    pub verify: bool,
}

/// Everything that depends on the loaded artifact (replaced by compaction).
struct Segments {
    main: Pair,
    /// Fresh rows in arrival order, and the two parts last built from them (published).
    fresh: FreshRows,
    fresh_ix: Arc<Index>,
    tail_ix: Arc<Index>,
    main_exec: Arc<dyn Search>,
    fresh_exec: Option<Arc<dyn Search>>,
    tail_exec: Option<Arc<dyn Search>>,
    dict: Dict,
    ids: IdMap,
    /// Next global row number (`rows` in results) for an appended item.
    next_row: u64,
    dead_main: usize,
    /// The `id` attribute field, when the schema has one (every item then carries it).
    id_field: Option<usize>,
}

impl Segments {
    fn new(index: Index, backend: &str) -> Result<Segments> {
        Segments::open(index, |ix| Ok(Arc::from(silica_registry::open(backend, ix)?)))
    }

    /// [`Segments::new`] with the main index's searcher made by `open` (a compaction
    /// re-uploads through the serving searcher: same device context, kernels and lanes).
    fn open(index: Index, open: impl FnOnce(Arc<Index>) -> Result<Arc<dyn Search>>) -> Result<Segments> {
        let index = Arc::new(index);
        let mut fresh = FreshRows::new(default_tail_limit(&index));
        let fresh_ix = Arc::new(fresh.build_lists(&index));
        let tail_ix = Arc::new(fresh.build_tail(&index));
        let t0 = Instant::now();
        let main_exec = open(index.clone())?;
        let t1 = Instant::now();
        if index.len() >= u32::MAX as usize {
            return Err(Error::backend("serve", format!("{} rows: serve addresses rows with 32 bits", index.len())));
        }
        let ids = IdMap::new(index.ids.clone());
        log::info!(
            "open on {}: upload {:.3}s, id map {:.3}s",
            main_exec.backend_name(),
            (t1 - t0).as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
        let dict = Dict::new(index.attrs.schema.clone());
        let id_field = index.attrs.schema.field("id");
        let dead_main = index.len() - segment::live_rows(&index);
        let next_row = index.source_rows.iter().max().map_or(0, |&m| m + 1).max(index.len() as u64);
        Ok(Segments {
            main: Pair::new(index),
            fresh,
            fresh_ix,
            tail_ix,
            main_exec,
            fresh_exec: None,
            tail_exec: None,
            dict,
            ids,
            next_row,
            dead_main,
            id_field,
        })
    }
}

/// The writer-side state. See the module docs.
pub struct Store {
    path: PathBuf,
    opts: Options,
    threshold: usize,
    wal: Wal,
    _lock: wal::Lock,
    shared: Arc<ArcSwap<Snapshot>>,
    version: u64,
    compactions: u64,
    /// [`Store::set_fresh_tail_limit`] (kept across compactions).
    tail_limit: Option<usize>,
    /// [`Store::set_background_folds`]: a full tail is folded by [`FoldJob`]s, not in publish.
    background_folds: bool,
    /// Write-path timings ([`Store::set_phases`]).
    phases: Arc<WritePhases>,
    seg: Segments,
}

/// The fresh lists part rebuilt with the tail folded in, off the writer thread (see
/// [`Store::begin_fold`]): O(fresh rows) layout and upload that writes need not wait for.
pub struct FoldJob {
    rows: FreshRows,
    main: Arc<Index>,
    /// The searcher whose device the new part is uploaded to.
    exec: Arc<dyn Search>,
    /// [`Store`]'s compaction count when it began (a compaction in between voids it).
    generation: u64,
    phases: Arc<WritePhases>,
}

/// A built [`FoldJob`], for [`Store::finish_fold`].
pub struct FoldedLists {
    ix: Arc<Index>,
    exec: Option<Arc<dyn Search>>,
    generation: u64,
}

impl FoldJob {
    /// Lay out and upload the new lists part (any thread).
    pub fn run(mut self) -> Result<FoldedLists> {
        let t0 = Instant::now();
        let ix = Arc::new(self.rows.build_lists(&self.main));
        let t1 = Instant::now();
        let exec = if ix.is_empty() { None } else { Some(Arc::from(self.exec.with_index(ix.clone(), &Changed::ALL)?)) };
        self.phases.observe("fold_build", (t1 - t0).as_secs_f64());
        self.phases.observe("fold_upload", t1.elapsed().as_secs_f64());
        Ok(FoldedLists { ix, exec, generation: self.generation })
    }
}

/// What a compaction did.
#[derive(Clone, Debug, Serialize)]
pub struct CompactReport {
    /// Rows (main + fresh, live or dead) before, live rows written.
    pub rows_before: usize,
    pub rows_after: usize,
    /// Fresh items folded into the inverted lists.
    pub fresh_folded: usize,
    /// Update batches written while it ran, re-applied on top of the new artifact.
    pub replayed: usize,
    pub bytes: usize,
    /// Total time, and the part during which writes waited.
    pub seconds: f64,
    pub pause_seconds: f64,
}

/// The state to compact, detached from the store (runs on its own thread).
pub struct CompactionJob {
    path: PathBuf,
    /// The serving main searcher: the compacted index is uploaded through it.
    exec: Arc<dyn Search>,
    started: Instant,
    /// Log length when the state was taken: later records are the tail.
    wal_offset: u64,
    /// Version of that state (the new log's base version).
    version: u64,
    rows_before: usize,
    fresh_folded: usize,
    main: Arc<Index>,
    fresh: Arc<Index>,
    tail: Arc<Index>,
    dict: Dict,
}

/// A compacted artifact written to a temporary file beside the artifact (fsynced), ready
/// for [`Store::finish_compaction`]. Dropping it removes the file.
pub struct PreparedCompaction {
    /// The new artifact, loaded as the store will serve it (built off the write path).
    seg: Segments,
    rows_after: usize,
    file: tempfile::NamedTempFile,
    hash: u64,
    bytes: usize,
    wal_offset: u64,
    version: u64,
    started: Instant,
    rows_before: usize,
    fresh_folded: usize,
}

impl CompactionJob {
    /// Fold, serialize and write the new artifact to a temporary file (the slow part).
    pub fn run(self) -> Result<PreparedCompaction> {
        let index = compact::fold(&self.main, &[&self.fresh, &self.tail], &self.dict)?;
        drop((self.main, self.fresh, self.tail));
        let bytes = format::to_bytes(&index)?;
        let hash = wal::artifact_hash(&bytes);
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut file = tempfile::Builder::new().prefix(&temp_prefix(&self.path)).tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
        use std::io::Write;
        file.write_all(&bytes).map_err(|e| Error::io(file.path(), e))?;
        file.as_file().sync_all().map_err(|e| Error::io(file.path(), e))?;
        super::crash::point("compact-written");
        let rows_after = index.len();
        let exec = self.exec;
        let seg = Segments::open(index, |ix| Ok(Arc::from(exec.with_index(ix, &Changed::ALL)?)))?;
        Ok(PreparedCompaction {
            seg,
            rows_after,
            file,
            hash,
            bytes: bytes.len(),
            wal_offset: self.wal_offset,
            version: self.version,
            started: self.started,
            rows_before: self.rows_before,
            fresh_folded: self.fresh_folded,
        })
    }
}

/// Prefix of the temporary file a compaction of `index` writes (beside it).
fn temp_prefix(index: &Path) -> String {
    format!(".{}.compact-", index.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
}

/// Remove temporary files left by compactions that were killed (called under the lock).
fn remove_stale_temps(index: &Path) {
    let dir = match index.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = temp_prefix(index);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            log::warn!("removing {} (left by an interrupted compaction)", e.path().display());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Default compaction threshold (fresh rows + dead main rows): fresh rows cost a query
/// only what its probed lists hold, so compaction is about memory and the fresh lists'
/// rebuild cost, not query speed.
fn default_threshold(n: usize) -> usize {
    (n / 32).max(16384)
}

/// Default size of the fresh tail (scanned whole by every query): a sixteenth of the rows
/// a default search of `main` scans, at least 512.
pub fn default_tail_limit(main: &Index) -> usize {
    let (np, nlist, n) = (main.default_nprobe(), main.nlist(), main.len() as u64);
    let scanned = graph::candidate_budget(np, nlist, n, 1);
    (scanned as usize / 16).max(512)
}

impl Store {
    /// Lock the artifact at `path`, load it, open its log (finishing an interrupted
    /// compaction) and replay the log. Errors: lock held, unreadable artifact, a log of
    /// another artifact, a log record that no longer applies.
    pub fn open(path: &Path, opts: Options) -> Result<Store> {
        let lock = wal::lock(path)?;
        remove_stale_temps(path);
        let t0 = Instant::now();
        let artifact = load::Artifact::open(path)?;
        let map_s = t0.elapsed().as_secs_f64();
        // The log names its artifact by a hash of the whole file: computed beside the checksums.
        let verify = if opts.verify { format::Verify::Checksums } else { format::Verify::Skip };
        let (hash, index) = rayon::join(|| wal::artifact_hash(artifact.bytes()), || artifact.index(verify));
        let (index, mut times) = index?;
        times.map = map_s;
        let opened = wal::open_with(path, hash, opts.wal_recover)?;
        let threshold = opts.compact_threshold.unwrap_or_else(|| default_threshold(index.len()));
        let (n, gb) = (index.len(), artifact.header.file_len as f64 / 1e9);
        drop(artifact);
        let t1 = Instant::now();
        let seg = Segments::new(index, &opts.backend)?;
        log::info!(
            "loaded {} ({n} items, {gb:.2} GB): {times}, open {:.3}s; total {:.3}s",
            path.display(),
            t1.elapsed().as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
        let snap = Arc::new(ArcSwap::from_pointee(Snapshot {
            version: 0,
            main: seg.main_exec.clone(),
            fresh: None,
            tail: None,
            dict: seg.dict.clone(),
            stats: Stats::default(),
        }));
        // Versions continue from the batches already folded into the artifact.
        let version = opened.base_version;
        let mut store = Store {
            path: path.to_path_buf(),
            opts,
            threshold,
            wal: opened.wal,
            _lock: lock,
            shared: snap,
            version,
            compactions: 0,
            tail_limit: None,
            background_folds: false,
            phases: Default::default(),
            seg,
        };
        let t0 = Instant::now();
        let wal_path = wal::wal_path(path);
        for (i, inc) in store.parse_records(&opened.records).into_iter().enumerate() {
            let bad = |reason: String| Error::Format { path: wal_path.clone(), reason: format!("record {i}: {reason}") };
            let inc = inc.map_err(|e| bad(format!("not an update batch: {e}")))?;
            let prepared = store.validate(&inc.batch.ops).map_err(|e| bad(format!("no longer applies: {e}")))?;
            store.apply_incoming(prepared, &inc);
            store.version += 1;
        }
        if !opened.records.is_empty() {
            log::info!(
                "replayed {} update batches from {} in {:.3}s",
                opened.records.len(),
                wal_path.display(),
                t0.elapsed().as_secs_f64()
            );
        }
        store.publish()?;
        Ok(store)
    }

    /// The snapshot cell readers load from.
    pub fn shared(&self) -> Arc<ArcSwap<Snapshot>> {
        self.shared.clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.load_full()
    }

    /// Validate, log (fsync) and apply a group of update batches, then publish them in one
    /// snapshot. Returns per batch the version that contains it or its error. The outer
    /// error is fatal (the log could not be written): the caller must stop the process,
    /// since applied-but-unlogged state must never be served.
    pub fn commit(&mut self, batches: &[Batch]) -> Result<Vec<std::result::Result<u64, ApiError>>> {
        let incoming: Vec<Incoming> = batches.iter().cloned().map(Incoming::new).collect();
        self.commit_incoming(&incoming)
    }

    /// [`Store::commit`] of batches whose records and lists may be prepared already
    /// ([`Incoming::prepare`]): the same result, bit for bit.
    pub fn commit_incoming(&mut self, batches: &[Incoming]) -> Result<Vec<std::result::Result<u64, ApiError>>> {
        let mut out = Vec::with_capacity(batches.len());
        let mut ok = 0u64;
        let (mut validate, mut append, mut apply) = (0.0, 0.0, 0.0);
        for inc in batches {
            let b = &inc.batch;
            let t0 = Instant::now();
            let v = self.validate(&b.ops);
            validate += t0.elapsed().as_secs_f64();
            match v {
                Err(e) => out.push(Err(e)),
                Ok(p) => {
                    let t1 = Instant::now();
                    let encoded;
                    let payload = match &inc.payload {
                        Some(p) => p,
                        None => {
                            encoded =
                                serde_json::to_vec(b).map_err(|e| Error::backend("serve", format!("encoding an update batch: {e}")))?;
                            &encoded
                        }
                    };
                    self.wal.append(payload)?;
                    super::crash::point("commit-logged");
                    let t2 = Instant::now();
                    self.apply_incoming(p, inc);
                    (append, apply) = (append + (t2 - t1).as_secs_f64(), apply + t2.elapsed().as_secs_f64());
                    ok += 1;
                    out.push(Ok(0));
                }
            }
        }
        self.phases.observe("validate", validate);
        if ok > 0 {
            self.phases.observe("wal_append", append);
            self.phases.observe("apply", apply);
            let t0 = Instant::now();
            self.wal.sync()?;
            self.phases.observe("wal_sync", t0.elapsed().as_secs_f64());
            super::crash::point("commit-synced");
            self.version += ok;
            self.publish()?;
        }
        let v = self.version;
        Ok(out.into_iter().map(|r| r.map(|_| v)).collect())
    }

    fn exists(&self, id: &str, overlay: &HashMap<&str, bool>) -> bool {
        overlay.get(id).copied().unwrap_or_else(|| self.seg.ids.contains_key(id))
    }

    /// Check a batch against the current state, simulating its own earlier ops (upsert
    /// then patch of the same id is fine; deleting twice is 404).
    fn validate(&self, ops: &[Op]) -> std::result::Result<Vec<Prepared>, ApiError> {
        let main = self.seg.main.current();
        let ctx = Context { dim: main.dim, metric: main.metric, feature_names: &main.feature_names, dict: &self.seg.dict };
        let mut overlay: HashMap<&str, bool> = HashMap::new();
        let mut out = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Upsert { item } => {
                    let c = check_item(item, &ctx, &format!("items[{i}]"))?;
                    overlay.insert(&item.id, true);
                    out.push(Prepared::Upsert(c));
                }
                Op::Delete { id } => {
                    check_id(id, "id")?;
                    if !self.exists(id, &overlay) {
                        return Err(ApiError::not_found(id));
                    }
                    overlay.insert(id, false);
                    out.push(Prepared::Delete(id.clone()));
                }
                Op::Patch { id, attributes } => {
                    check_id(id, "id")?;
                    if !self.exists(id, &overlay) {
                        return Err(ApiError::not_found(id));
                    }
                    let a = check_attrs(attributes, &self.seg.dict, "attributes")?;
                    let t = check_typed(attributes, &self.seg.dict, "attributes")?;
                    out.push(Prepared::Patch(id.clone(), a, t));
                }
            }
        }
        Ok(out)
    }

    /// Log records parsed and their upserts assigned to lists in parallel (a replay's
    /// slow part: writes wait for a compaction's replay), in order.
    fn parse_records(&self, records: &[Vec<u8>]) -> Vec<std::result::Result<Incoming, String>> {
        use rayon::prelude::*;
        let main = self.seg.main.current().clone();
        records
            .par_iter()
            .map(|rec| serde_json::from_slice::<Batch>(rec).map(|b| Incoming::assign(b, &main)).map_err(|e| e.to_string()))
            .collect()
    }

    /// [`Store::apply_with`] of a validated batch, with its lists when they are current.
    fn apply_incoming(&mut self, ops: Vec<Prepared>, inc: &Incoming) {
        let lists = inc.lists.as_ref().filter(|a| a.current(self.seg.main.current())).map(|a| &a.lists[..]);
        self.apply_with(ops, lists);
    }

    /// Apply validated ops; `lists`: their upserts' lists, when computed beforehand
    /// against the current centroids ([`Incoming::prepare`]).
    fn apply_with(&mut self, ops: Vec<Prepared>, lists: Option<&[u32]>) {
        let upserts = ops.iter().filter(|op| matches!(op, Prepared::Upsert(_))).count();
        let lists: Vec<u32> = match lists.filter(|l| l.len() == upserts) {
            Some(l) => l.to_vec(),
            None => {
                // New rows' lists by the build's rule, one assignment pass for the whole batch.
                let d = self.seg.main.current().dim;
                let (mut codes, mut scales) = (Vec::new(), Vec::new());
                for op in &ops {
                    if let Prepared::Upsert(c) = op {
                        let at = codes.len();
                        codes.resize(at + d, 0i8);
                        scales.push(silica_core::model::quantize::quantize_row(&c.vector, &mut codes[at..]));
                    }
                }
                assign_lists(self.seg.main.current(), &codes, &scales)
            }
        };
        let mut lists = lists.into_iter();
        for op in ops {
            match op {
                Prepared::Upsert(c) => {
                    let list = lists.next().expect("one list per upsert");
                    self.upsert(c, list)
                }
                Prepared::Delete(id) => {
                    let loc = self.seg.ids.remove(&id).expect("validated: the id exists");
                    self.kill(loc);
                }
                Prepared::Patch(id, attrs, typed) => {
                    let loc = self.seg.ids.get(&id).expect("validated: the id exists");
                    if !attrs.is_empty() {
                        self.patch(loc, attrs);
                    }
                    self.patch_typed(loc, typed);
                }
            }
        }
    }

    fn kill(&mut self, loc: Loc) {
        match loc {
            Loc::Main(r) => {
                self.seg.main.apply(SegOp::Kill(r));
                self.seg.dead_main += 1;
            }
            Loc::Fresh(r) => self.seg.fresh.kill(r),
        }
    }

    /// Value ids (sorted, distinct) and Bloom bits of (field, value) pairs; new values are
    /// appended to the dictionary.
    fn encode_attrs(&mut self, pairs: &[(usize, String)]) -> (Vec<u32>, Vec<u32>) {
        let bloom = self.seg.main.current().bloom.params;
        let mut values = Vec::with_capacity(pairs.len());
        let mut bits = Vec::with_capacity(pairs.len() * bloom.hashes as usize);
        for (f, v) in pairs {
            values.push(self.seg.dict.intern(*f, v));
            bits.extend(bloom.positions(&self.seg.dict.schema().fields[*f].name, v));
        }
        values.sort_unstable();
        values.dedup();
        bits.sort_unstable();
        bits.dedup();
        (values, bits)
    }

    fn upsert(&mut self, c: Checked, list: u32) {
        if let Some(loc) = self.seg.ids.remove(&c.id) {
            self.kill(loc);
        }
        let mut pairs: Vec<(usize, String)> = c.attrs.into_iter().flat_map(|(f, vs)| vs.into_iter().map(move |v| (f, v))).collect();
        if let Some(f) = self.seg.id_field {
            pairs.push((f, c.id.clone()));
        }
        let (values, bits) = self.encode_attrs(&pairs);
        let with_embedding = self.seg.main.current().embeddings.is_some();
        let mut row = NewRow::encode(c.id.clone(), self.seg.next_row, &c.vector, list, with_embedding, c.features, values, bits);
        let cols = &self.seg.main.current().columns.cols;
        row.typed = cols.iter().map(|col| c.typed.iter().find(|(n, _)| *n == col.name).and_then(|(_, k)| *k)).collect();
        self.seg.next_row += 1;
        let r = self.seg.fresh.append(row);
        self.seg.ids.insert_fresh(c.id, r);
    }

    fn patch(&mut self, loc: Loc, attrs: Vec<(usize, Vec<String>)>) {
        let current = match loc {
            Loc::Main(r) => self.seg.main.current().attrs.row(r as usize),
            Loc::Fresh(r) => self.seg.fresh.values(r),
        };
        let fields: HashSet<usize> = attrs.iter().map(|(f, _)| *f).collect();
        let mut pairs: Vec<(usize, String)> =
            current.iter().filter_map(|&v| self.seg.dict.describe(v)).filter(|(f, _)| !fields.contains(f)).collect();
        pairs.extend(attrs.into_iter().flat_map(|(f, vs)| vs.into_iter().map(move |v| (f, v))));
        let (values, bits) = self.encode_attrs(&pairs);
        match loc {
            Loc::Main(r) => self.seg.main.apply(SegOp::SetAttrs { row: r, values: values.into(), bits: bits.into() }),
            Loc::Fresh(r) => self.seg.fresh.set_attrs(r, values, bits),
        }
    }

    /// Set typed column values (validated names; `None` clears).
    fn patch_typed(&mut self, loc: Loc, typed: Vec<(String, Option<u64>)>) {
        for (name, key) in typed {
            let Some(col) = self.seg.main.current().columns.cols.iter().position(|c| c.name == name) else { continue };
            match loc {
                Loc::Main(r) => self.seg.main.apply(SegOp::SetTyped { row: r, col, key }),
                Loc::Fresh(r) => self.seg.fresh.set_typed(r, col, key),
            }
        }
    }

    /// Swap in the working copies and publish a snapshot of the current version.
    fn publish(&mut self) -> Result<()> {
        let start = Instant::now();
        if let Some(ix) = self.seg.main.publish() {
            // Same device, unchanged tensors shared: only live bits, planes, attributes move.
            let changed = self.seg.main.published_changes();
            self.seg.main_exec = Arc::from(self.seg.main_exec.with_index(ix, &changed)?);
            self.phases.observe("publish_main", start.elapsed().as_secs_f64());
        }
        // The fresh parts on the main index's device (same context and kernels).
        let on_device = |ix: &Arc<Index>, exec: &Option<Arc<dyn Search>>, main: &Arc<dyn Search>| -> Result<Option<Arc<dyn Search>>> {
            if ix.is_empty() {
                return Ok(None);
            }
            Ok(Some(Arc::from(exec.as_ref().unwrap_or(main).with_index(ix.clone(), &Changed::ALL)?)))
        };
        if self.seg.fresh.tail_full() && !self.background_folds {
            self.seg.fresh.fold_tail();
        }
        if self.seg.fresh.lists_dirty() {
            let t0 = Instant::now();
            let ix = Arc::new(self.seg.fresh.build_lists(self.seg.main.current()));
            self.seg.fresh_exec = on_device(&ix, &self.seg.fresh_exec, &self.seg.main_exec)?;
            self.seg.fresh_ix = ix;
            self.phases.observe("publish_lists", t0.elapsed().as_secs_f64());
        }
        if self.seg.fresh.tail_dirty() {
            let t0 = Instant::now();
            let ix = Arc::new(self.seg.fresh.build_tail(self.seg.main.current()));
            self.seg.tail_exec = on_device(&ix, &self.seg.tail_exec, &self.seg.main_exec)?;
            self.seg.tail_ix = ix;
            self.phases.observe("publish_tail", t0.elapsed().as_secs_f64());
        }
        let snap = Snapshot {
            version: self.version,
            main: self.seg.main_exec.clone(),
            fresh: self.seg.fresh_exec.clone(),
            tail: self.seg.tail_exec.clone(),
            dict: self.seg.dict.clone(),
            stats: self.stats(),
        };
        self.shared.store(Arc::new(snap));
        self.phases.observe("publish", start.elapsed().as_secs_f64());
        Ok(())
    }

    /// Current sizes and counters.
    pub fn stats(&self) -> Stats {
        let (main, fresh) = (self.seg.main.current(), &self.seg.fresh);
        let main_live = main.len() - self.seg.dead_main;
        let fresh_live = fresh.len() - fresh.dead();
        Stats {
            version: self.version,
            backend: self.seg.main_exec.backend_name().to_string(),
            dim: main.dim,
            metric: main.metric.to_string(),
            nlist: main.nlist(),
            main_rows: main.len(),
            main_live,
            fresh_rows: fresh.len(),
            fresh_live,
            items: main_live + fresh_live,
            appended_values: self.seg.dict.appended(),
            wal_bytes: self.wal.len(),
            compactions: self.compactions,
            compact_threshold: self.threshold,
        }
    }

    /// True when the fresh segment plus dead main rows reached the compaction threshold.
    pub fn needs_compaction(&self) -> bool {
        self.threshold > 0 && self.seg.fresh.len() + self.seg.dead_main >= self.threshold
    }

    /// Start a compaction of the current (published) state: the returned job runs on any
    /// thread while this store keeps taking updates; hand its result to
    /// [`Store::finish_compaction`].
    pub fn begin_compaction(&self) -> CompactionJob {
        let (main, fresh) = (self.seg.main.published().clone(), self.seg.fresh_ix.clone());
        debug_assert!(!self.seg.main.dirty() && !self.seg.fresh.dirty(), "compaction starts from a published state");
        CompactionJob {
            path: self.path.clone(),
            exec: self.seg.main_exec.clone(),
            started: Instant::now(),
            wal_offset: self.wal.len(),
            version: self.version,
            rows_before: main.len() + self.seg.fresh.len(),
            fresh_folded: self.seg.fresh.len() - self.seg.fresh.dead(),
            tail: self.seg.tail_ix.clone(),
            dict: self.seg.dict.clone(),
            main,
            fresh,
        }
    }

    /// Install a finished compaction: log the records written since it started after the
    /// new artifact's header (`.wal.next`), rename the artifact into place, rotate the log,
    /// then serve the new artifact with those records re-applied. Writes wait only for this
    /// step. On error before the rename, nothing changes. A failure after it (the log cannot
    /// be rotated) aborts the process: the next start finishes the rotation.
    pub fn finish_compaction(&mut self, done: PreparedCompaction) -> Result<CompactReport> {
        let t0 = Instant::now();
        let tail = self.wal.read_from(done.wal_offset)?;
        wal::begin_rotation(&self.path, done.hash, done.version, &tail)?;
        super::crash::point("compact-wal-next");
        if let Err(e) = done.file.persist(&self.path) {
            wal::abort_rotation(&self.path);
            return Err(Error::io(&self.path, e.error));
        }
        super::crash::point("compact-renamed");
        // The artifact on disk is now the new one; the old log no longer matches it.
        let opened = match wal::finish_rotation(&self.path, done.hash) {
            Ok(o) => o,
            Err(e) => {
                log::error!(
                    "compaction wrote {} but could not rotate its log ({e}); stopping so that the next start finishes it",
                    self.path.display()
                );
                std::process::abort();
            }
        };
        super::crash::point("compact-rotated");
        self.wal = opened.wal;
        let rows_after = done.rows_after;
        if self.opts.compact_threshold.is_none() {
            self.threshold = default_threshold(rows_after);
        }
        let old = std::mem::replace(&mut self.seg, done.seg);
        if let Some(n) = self.tail_limit {
            let rows = std::mem::replace(&mut self.seg.fresh, FreshRows::new(1));
            self.seg.fresh = rows.with_tail_limit(n);
        }
        // Freeing two copies of the old index takes a while; not on the write path.
        std::thread::spawn(move || drop(old));
        // Re-apply what was written while the compaction ran (already counted in `version`):
        // the records parse in parallel (writes wait for this step), then apply in order.
        for (i, inc) in self.parse_records(&opened.records).into_iter().enumerate() {
            let applied = inc.and_then(|inc| self.validate(&inc.batch.ops).map(|p| (p, inc)).map_err(|e| e.to_string()));
            match applied {
                Ok((p, inc)) => self.apply_incoming(p, &inc),
                Err(e) => {
                    log::error!("record {i} logged during compaction does not apply to the compacted index ({e}); stopping");
                    std::process::abort();
                }
            }
        }
        self.compactions += 1;
        // The records re-applied are all in the tail now (at 10,000 items/s, a compaction of
        // tens of seconds leaves hundreds of thousands): fold them into the lists here, once,
        // instead of every query scanning them whole and every commit re-making them until
        // a background fold lands.
        if self.seg.fresh.tail_full() {
            self.seg.fresh.fold_tail();
        }
        self.publish()?;
        super::crash::point("compact-done");
        Ok(CompactReport {
            rows_before: done.rows_before,
            rows_after,
            fresh_folded: done.fresh_folded,
            replayed: opened.records.len(),
            bytes: done.bytes,
            seconds: done.started.elapsed().as_secs_f64(),
            pause_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Compact now, on this thread (`silica compact`, tests).
    pub fn compact(&mut self) -> Result<CompactReport> {
        let done = self.begin_compaction().run()?;
        self.finish_compaction(done)
    }

    /// Most rows of the fresh tail before it is folded into the fresh lists (see
    /// [`super::fresh`]); takes effect at the next publish. `n >= 1`.
    pub fn set_fresh_tail_limit(&mut self, n: usize) -> Result<()> {
        let rows = std::mem::replace(&mut self.seg.fresh, FreshRows::new(1));
        self.seg.fresh = rows.with_tail_limit(n);
        self.tail_limit = Some(n);
        self.publish()
    }

    /// Fold full tails off the writer thread ([`Store::begin_fold`], driven by the caller:
    /// the server's writer) instead of inside the publish that filled them; the tail then
    /// grows past its limit until the fold is installed.
    pub fn set_background_folds(&mut self, on: bool) {
        self.background_folds = on;
    }

    /// Record write-path timings into `phases` (the server's `/metrics`; see
    /// [`super::metrics::WRITE_PHASES`]).
    pub fn set_phases(&mut self, phases: Arc<WritePhases>) {
        self.phases = phases;
    }

    /// A fold of the full tail into the fresh lists, to run on another thread and hand to
    /// [`Store::finish_fold`]; `None` when the tail is not full or a fold is running.
    pub fn begin_fold(&mut self) -> Option<FoldJob> {
        if !self.seg.fresh.tail_full() || self.seg.fresh.folding() {
            return None;
        }
        let rows = self.seg.fresh.begin_fold()?;
        let exec = self.seg.fresh_exec.clone().unwrap_or_else(|| self.seg.main_exec.clone());
        Some(FoldJob { rows, main: self.seg.main.published().clone(), exec, generation: self.compactions, phases: self.phases.clone() })
    }

    /// Install a finished fold and publish (the tail shrinks to the rows that came after
    /// it). A fold from before a compaction is dropped; one whose rows changed meanwhile
    /// is rebuilt here instead (rare: deletes, replacements or patches of fresh rows).
    pub fn finish_fold(&mut self, done: Result<FoldedLists>) -> Result<()> {
        let t0 = Instant::now();
        let r = self.install_fold(done);
        self.phases.observe("fold_install", t0.elapsed().as_secs_f64());
        r
    }

    fn install_fold(&mut self, done: Result<FoldedLists>) -> Result<()> {
        let done = match done {
            Ok(d) if d.generation == self.compactions => d,
            Ok(_) => return Ok(()),
            Err(e) => {
                // Nothing was installed: fold in the next publish instead.
                log::warn!("background fold failed ({e}); folding on the writer");
                self.seg.fresh.finish_fold();
                self.seg.fresh.fold_tail();
                return self.publish();
            }
        };
        if self.seg.fresh.finish_fold() {
            self.seg.fresh_ix = done.ix;
            self.seg.fresh_exec = done.exec;
        }
        self.publish()
    }

    /// Where an id lives now (tests, diagnostics).
    pub fn locate(&self, id: &str) -> Option<Loc> {
        self.seg.ids.get(id)
    }

    /// `GET /v1/items/{id}` and search `fields`: the live item `id` as JSON, or `None` when
    /// no live item has it. `names`: the attributes to return (`None`: every field of the
    /// schema and every typed column); each a string (a list for a multi-valued field),
    /// a typed column's number, bool or RFC 3339 timestamp, or `null` where the item has no
    /// value. `vector`: also `"vector"`, the stored f16 embedding as f32 (the dequantized
    /// int8 codes without embeddings; unit-normalized for cosine). Errors: an unknown name
    /// (400 naming `fields`).
    pub fn item_json(
        &self,
        id: &str,
        names: Option<&[String]>,
        vector: bool,
    ) -> std::result::Result<Option<serde_json::Map<String, serde_json::Value>>, ApiError> {
        use serde_json::Value;
        let dict = &self.seg.dict;
        let schema = dict.schema();
        let main = self.seg.main.current();
        let all: Vec<String>;
        let names = match names {
            Some(n) => n,
            None => {
                all = schema.fields.iter().map(|f| f.name.clone()).chain(main.columns.cols.iter().map(|c| c.name.clone())).collect();
                &all
            }
        };
        for n in names {
            if schema.field(n).is_none() && main.columns.get(n).is_none() {
                let known: Vec<String> = silica_core::filter::Dictionary::field_names(schema);
                return Err(ApiError::bad("fields", format!("unknown field `{n}` (known fields: {})", known.join(", "))));
            }
        }
        let Some(loc) = self.seg.ids.get(id) else { return Ok(None) };
        let (values, vec): (&[u32], Vec<f32>) = match loc {
            Loc::Main(r) => {
                let r = r as usize;
                if main.live_word(r / 64) >> (r % 64) & 1 == 0 {
                    return Ok(None);
                }
                let d = main.dim;
                let v = if !vector {
                    Vec::new()
                } else if let Some(e) = &main.embeddings {
                    e[r * d..(r + 1) * d].iter().map(|x| x.to_f32()).collect()
                } else {
                    main.items.row(r).iter().map(|&c| c as f32 * main.items.scale[r]).collect()
                };
                (main.attrs.row(r), v)
            }
            Loc::Fresh(r) => {
                let row = self.seg.fresh.row(r);
                let v = if !vector {
                    Vec::new()
                } else if let Some(e) = &row.embedding {
                    e.iter().map(|x| x.to_f32()).collect()
                } else {
                    row.codes.iter().map(|&c| c as f32 * row.scale).collect()
                };
                (&row.values[..], v)
            }
        };
        let mut out = serde_json::Map::new();
        out.insert("id".into(), Value::String(id.to_string()));
        for n in names {
            let v = if let Some(c) = main.columns.get(n) {
                match loc {
                    Loc::Main(r) => c.json(r as usize),
                    Loc::Fresh(r) => {
                        let j = main.columns.cols.iter().position(|x| x.name == c.name).expect("a column of main");
                        match self.seg.fresh.row(r).typed.get(j).copied().flatten() {
                            // One-row column: the value rendered as the column renders it.
                            Some(k) => silica_core::model::Column::from_keys(&c.name, c.ty, &[Some(k)], &[0, 1]).json(0),
                            None => Value::Null,
                        }
                    }
                }
            } else {
                let f = schema.field(n).expect("checked above");
                let vals: Vec<Value> =
                    values.iter().filter_map(|&v| dict.describe(v).filter(|(g, _)| *g == f).map(|(_, s)| Value::String(s))).collect();
                if schema.fields[f].multi { Value::Array(vals) } else { vals.into_iter().next().unwrap_or(Value::Null) }
            };
            out.insert(n.clone(), v);
        }
        if vector {
            out.insert("vector".into(), Value::Array(vec.into_iter().map(|x| serde_json::json!(x)).collect()));
        }
        Ok(Some(out))
    }
}
