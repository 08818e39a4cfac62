//! `silica._silica.Core`: one index (built or loaded) on one device, searched with the GIL
//! released, updated through the serving store of `silica serve` (same validation, same
//! write-ahead log, same snapshot swap). `silica.Index` (Python) wraps it.

use crate::view::{RowMap, View, column_at, id_at, values_at};
use crate::{api_error, dlpack, error};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use silica::Error;
use silica::backend::cuda::{Cuda, DType, DeviceQueries, DeviceResults, SearchDevice};
use silica::graph::{self, RerankMode, SearchParams, SearchRequest, calibrate};
use silica::model::build::BuildParams;
use silica::model::npy::Matrix;
use silica::model::source::VectorSource;
use silica::model::{BloomParams, Index, IndexBuilder, Metric, attributes, format};
use silica::serve::state::{Options, Store};
use silica::serve::update::{Batch, Item, Op};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// True when `RUST_LOG` chose the log level (builds then leave it alone).
pub static LOG_EXPLICIT: AtomicBool = AtomicBool::new(false);

/// Why an update was not applied.
enum Refused {
    Silica(Error),
    Api(silica::serve::error::ApiError),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Silica(e)
    }
}

fn refused(r: Refused) -> PyErr {
    match r {
        Refused::Silica(e) => error(e),
        Refused::Api(e) => api_error(e),
    }
}

struct Inner {
    view: Arc<View>,
    /// The serving store, opened by the first update (or at load when a log exists).
    store: Option<Store>,
    /// The artifact file this index was loaded from (the store's file once it is open).
    path: Option<PathBuf>,
    /// Where an index built in memory keeps its artifact and log once it is updated.
    tmp: Option<tempfile::TempDir>,
    device: String,
    /// The row map of `view` (rebuilt when the view changes: updates, compaction).
    rows: Option<(Arc<View>, Arc<RowMap>)>,
}

/// The native index. Shapes and dtypes are checked by the Python wrapper; this class
/// still refuses anything it cannot search (typed errors, nothing changed).
#[pyclass(module = "silica._silica", name = "Core")]
pub struct Core {
    inner: Mutex<Inner>,
    /// Compiled filters of one view by text (a request names the same few filters again
    /// and again; `silica eval` compiles them once too). Locked only without the GIL.
    filters: Mutex<FilterCache>,
}

/// The view the cached filters were compiled against, and the filters by text.
type FilterCache = Option<(Arc<View>, HashMap<String, silica::Filter>)>;

/// Most filters kept per view.
const FILTER_CACHE: usize = 4096;

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Device names: `auto`, `cpu`, `wgpu`, `cuda`, `cuda:N`.
fn check_device(device: &str) -> silica::Result<String> {
    let d = device.trim().to_ascii_lowercase();
    let ok = matches!(d.as_str(), "auto" | "cpu" | "wgpu" | "cuda")
        || d.strip_prefix("cuda:").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(Error::param("device", format!("unknown device `{device}`; expected auto, cpu, wgpu, cuda or cuda:N")));
    }
    Ok(d)
}

fn parse_rerank(s: Option<&str>) -> silica::Result<RerankMode> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => Ok(RerankMode::Auto),
        Some("none") => Ok(RerankMode::None),
        Some("refine") => Ok(RerankMode::Refine),
        Some("model") => Ok(RerankMode::Model),
        Some(other) => Err(Error::param("rerank", format!("unknown mode `{other}`; expected none, refine, model or auto"))),
    }
}

fn store_options(device: &str) -> Options {
    // The server's own defaults: automatic compaction at max(2048, N/32) changed rows.
    Options { backend: device.to_string(), compact_threshold: None, wal_recover: false, verify: false }
}

fn open_static(index: Index, device: &str) -> silica::Result<Arc<View>> {
    let exec: Arc<dyn graph::Search> = Arc::from(graph::open(device, Arc::new(index))?);
    Ok(Arc::new(View::new_static(exec)))
}

impl Inner {
    /// The store, opened on first use: on the loaded artifact, or for an index built in
    /// memory on a copy written to a private temporary directory.
    fn store(&mut self) -> silica::Result<&mut Store> {
        if self.store.is_none() {
            let path = match &self.path {
                Some(p) => p.clone(),
                None => {
                    let dir = tempfile::Builder::new().prefix("silica-index-").tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
                    let p = dir.path().join("index.silica");
                    format::save(self.view.main(), &p)?;
                    self.tmp = Some(dir);
                    self.path = Some(p.clone());
                    p
                }
            };
            let store = Store::open(&path, store_options(&self.device))?;
            self.view = Arc::new(View::Served(store.snapshot()));
            self.store = Some(store);
        }
        Ok(self.store.as_mut().expect("opened above"))
    }

    /// Commit one update batch as the server's writer does (validate, log + fsync, apply,
    /// publish; compact when the threshold is reached). Returns the new version.
    /// Runs without the GIL and under the mutex: errors are turned into Python exceptions
    /// only by the caller, after both are back in order (raising needs the GIL).
    fn commit(&mut self, batch: Batch) -> Result<u64, Refused> {
        let store = self.store()?;
        let r = store.commit(std::slice::from_ref(&batch))?.pop().expect("one result per batch");
        let version = r.map_err(|e| Refused::Api(e.into()))?;
        if store.needs_compaction() {
            store.compact()?;
        }
        self.view = Arc::new(View::Served(store.snapshot()));
        Ok(version)
    }

    fn row_map(&mut self) -> Arc<RowMap> {
        match &self.rows {
            Some((v, m)) if Arc::ptr_eq(v, &self.view) => m.clone(),
            _ => {
                let m = Arc::new(RowMap::new(&self.view));
                self.rows = Some((self.view.clone(), m.clone()));
                m
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_index(
    data: Vec<f32>,
    rows: usize,
    dim: usize,
    jsonl: Vec<u8>,
    p: BuildParams,
    build_device: &str,
    calibrate_opts: Option<calibrate::CalibrateOptions>,
    schema: &str,
) -> silica::Result<Index> {
    let schema = attributes::parse_schema(schema)?;
    if let Some(o) = &calibrate_opts {
        o.validate()?;
    }
    let compute: Box<dyn silica::model::compute::BuildCompute> = match build_device {
        "cpu" => Box::new(silica::model::compute::CpuCompute),
        "cuda" => Box::new(silica::backend::cuda::CudaCompute::new()?),
        other => return Err(Error::param("build_device", format!("unknown build device `{other}`; expected cpu or cuda"))),
    };
    let table = attributes::parse_jsonl_with(std::io::Cursor::new(jsonl), Path::new("attributes"), &p.features, &schema)?;
    let src = VectorSource::from_matrix(Matrix { rows, dim, data, was_f16: false });
    let path = Path::new("<in-memory build>");
    let (bytes, _) = IndexBuilder::new(p).write(&src, &table, compute.as_ref(), None, Vec::new(), path)?;
    drop((src, table));
    let mut index = format::from_bytes_with(&bytes, path, format::Verify::Skip)?;
    drop(bytes);
    if let Some(o) = calibrate_opts {
        // As `silica build` does: held-out rows searched on the build device, the chosen
        // nprobe stored in the index's metadata.
        let ix = Arc::new(index);
        let s = graph::open(build_device, ix.clone())?;
        let c = calibrate::calibrate(s.as_ref(), &o)?;
        drop(s);
        index = Arc::try_unwrap(ix).unwrap_or_else(|a| (*a).clone());
        log::info!("default nprobe {} (recall@{} target {})", c.nprobe, c.k, c.target_recall);
        index.calibration = Some(c);
    }
    Ok(index)
}

/// Search settings besides k and the filters.
struct SearchArgs {
    nprobe: Option<usize>,
    k0: Option<usize>,
    rerank: Option<String>,
    task_weights: Option<Vec<f32>>,
}

type Answer<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

impl Core {
    /// Search host queries `q` (`[b, d]` f32) with the GIL released: numpy scores and rows.
    #[allow(clippy::too_many_arguments)]
    fn host_search<'py>(
        &self,
        py: Python<'py>,
        view: Arc<View>,
        q: Vec<f32>,
        b: usize,
        d: usize,
        k: usize,
        filters: Vec<String>,
        a: SearchArgs,
    ) -> PyResult<Answer<'py>> {
        if d != view.main().dim {
            return Err(error(Error::Dimension { what: "queries".into(), expected: view.main().dim, got: d }));
        }
        if k == 0 {
            return Err(error(Error::param("k", "must be at least 1")));
        }
        let rerank = parse_rerank(a.rerank.as_deref()).map_err(error)?;
        let (nprobe, k0, task_weights) = (a.nprobe, a.k0, a.task_weights);
        let (scores, rows) = py
            .detach(move || -> silica::Result<(Vec<f32>, Vec<i64>)> {
                let compiled = self.compile_filters(&view, &filters, b)?;
                let params = SearchParams { k, nprobe, k0, rerank, task_weights };
                let res = view.search(&SearchRequest { queries: &q, filters: &compiled, params })?;
                let mut scores = vec![f32::NEG_INFINITY; b * k];
                let mut rows = vec![-1i64; b * k];
                for (i, r) in res.iter().enumerate() {
                    for (j, (&row, &s)) in r.rows.iter().zip(&r.scores).take(k).enumerate() {
                        rows[i * k + j] = row as i64;
                        scores[i * k + j] = s;
                    }
                }
                Ok((scores, rows))
            })
            .map_err(error)?;
        let scores = Array2::from_shape_vec((b, k), scores).expect("b * k scores").into_pyarray(py);
        let rows = Array2::from_shape_vec((b, k), rows).expect("b * k rows").into_pyarray(py);
        Ok((scores, rows))
    }

    /// The device path of `search_dlpack`: in place on the index's GPU, results exported.
    #[allow(clippy::too_many_arguments)]
    fn device_search<'py>(
        &self,
        py: Python<'py>,
        view: Arc<View>,
        v: &dlpack::View,
        k: usize,
        filters: Vec<String>,
        a: SearchArgs,
        stream: u64,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let exec = match view.as_ref() {
            View::Static { exec, .. } => exec.as_any().and_then(|x| x.downcast_ref::<graph::Executor<Cuda>>()),
            View::Served(_) => None,
        };
        let Some(exec) = exec else {
            let why = if matches!(view.as_ref(), View::Served(_)) {
                "an index with updates merges its segments on the host".to_string()
            } else {
                format!("this index is on {}", view.backend_name())
            };
            return Err(error(Error::backend(
                "cuda",
                format!(
                    "CUDA queries are searched in place only by an index loaded on one cuda device without updates ({why}); copy them to the host (tensor.cpu()) or pass zero_copy=False"
                ),
            )));
        };
        if k == 0 {
            return Err(error(Error::param("k", "must be at least 1")));
        }
        if v.device_id < 0 {
            return Err(error(Error::param("queries", format!("bad CUDA device id {}", v.device_id))));
        }
        let rerank = parse_rerank(a.rerank.as_deref()).map_err(error)?;
        let dq = DeviceQueries {
            ptr: v.ptr,
            rows: v.rows,
            dim: v.dim,
            dtype: match v.elem {
                dlpack::Elem::F32 => DType::F32,
                dlpack::Elem::F16 => DType::F16,
                dlpack::Elem::BF16 => DType::BF16,
            },
        };
        let (b, device) = (v.rows, v.device_id as usize);
        let params = SearchParams { k, nprobe: a.nprobe, k0: a.k0, rerank, task_weights: a.task_weights };
        let res = py
            .detach(|| -> silica::Result<DeviceResults> {
                let compiled = self.compile_filters(&view, &filters, b)?;
                exec.search_device(&dq, device, &compiled, &params, stream)
            })
            .map_err(error)?;
        let (sp, rp, ord) = (res.scores, res.rows, res.ordinal as i32);
        let keep: Arc<dyn Send + Sync> = Arc::new(res);
        let scores = dlpack::export(py, keep.clone(), sp, b, k, true, 32, ord)?;
        let rows = dlpack::export(py, keep, rp, b, k, false, 64, ord)?;
        Ok((scores, rows))
    }

    /// `text` compiled against `view`'s dictionary, from the cache when it holds it.
    fn compiled(&self, view: &Arc<View>, text: &str) -> silica::Result<silica::Filter> {
        {
            let c = self.filters.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((v, m)) = c.as_ref()
                && Arc::ptr_eq(v, view)
                && let Some(f) = m.get(text)
            {
                return Ok(f.clone());
            }
        }
        let f = view.compile(text)?;
        let mut c = self.filters.lock().unwrap_or_else(|e| e.into_inner());
        if !c.as_ref().is_some_and(|(v, _)| Arc::ptr_eq(v, view)) {
            *c = Some((view.clone(), HashMap::new()));
        }
        let m = &mut c.as_mut().expect("set above").1;
        if m.len() >= FILTER_CACHE {
            m.clear();
        }
        m.insert(text.to_string(), f.clone());
        Ok(f)
    }

    /// One filter per query: none, one for all (`[text]`), or exactly B.
    fn compile_filters(&self, view: &Arc<View>, texts: &[String], b: usize) -> silica::Result<Vec<silica::Filter>> {
        match texts.len() {
            0 => Ok(Vec::new()),
            1 if b != 1 => Ok(vec![self.compiled(view, &texts[0])?; b]),
            n if n == b => texts.iter().map(|t| self.compiled(view, t)).collect(),
            n => Err(Error::CountMismatch {
                what: "search".into(),
                left_name: "filters".into(),
                left: n,
                right_name: "queries".into(),
                right: b,
            }),
        }
    }

    /// The current view. The mutex is only ever waited for without the GIL: an update
    /// holds it (without the GIL) for its whole commit, and must not wait for us.
    fn view(&self, py: Python<'_>) -> Arc<View> {
        match self.inner.try_lock() {
            Ok(g) => g.view.clone(),
            Err(_) => py.detach(|| lock(&self.inner).view.clone()),
        }
    }
}

#[pymethods]
impl Core {
    /// Build from `vectors` (f32 `[N, D]`, C order) and attributes as JSON Lines bytes
    /// (line i describes row i, as `silica build --attributes`). See `silica.Index.build`.
    #[staticmethod]
    #[pyo3(signature = (vectors, attributes_jsonl, metric, nlist, bloom_bits, bloom_hashes, features, store_embeddings, kmeans_iters, seed, calibrate, target_recall, calibration_queries, build_device, device, progress, schema = String::new()))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        vectors: PyReadonlyArray2<'_, f32>,
        attributes_jsonl: Vec<u8>,
        metric: &str,
        nlist: Option<usize>,
        bloom_bits: u32,
        bloom_hashes: u32,
        features: Vec<String>,
        store_embeddings: bool,
        kmeans_iters: usize,
        seed: u64,
        calibrate: bool,
        target_recall: f64,
        calibration_queries: usize,
        build_device: &str,
        device: &str,
        progress: bool,
        schema: String,
    ) -> PyResult<Core> {
        let metric = match metric.to_ascii_lowercase().as_str() {
            "ip" => Metric::Ip,
            "cosine" => Metric::Cosine,
            "l2" => Metric::L2,
            other => return Err(error(Error::param("metric", format!("unknown metric `{other}`; expected ip, cosine or l2")))),
        };
        let device = check_device(device).map_err(error)?;
        let shape = vectors.shape();
        let (rows, dim) = (shape[0], shape[1]);
        let data = vectors.as_slice().map_err(|_| error(Error::param("vectors", "must be C-contiguous")))?.to_vec();
        let params = BuildParams {
            nlist,
            bloom: BloomParams { bits: bloom_bits, hashes: bloom_hashes, ..Default::default() },
            metric,
            kmeans_iters,
            seed,
            store_embeddings,
            features,
            progress,
            ..Default::default()
        };
        let opts =
            calibrate.then(|| calibrate::CalibrateOptions { target_recall, queries: calibration_queries, seed, ..Default::default() });
        let build_device = build_device.to_ascii_lowercase();
        let view = py
            .detach(|| {
                let show = progress && !LOG_EXPLICIT.load(Ordering::Relaxed);
                if show {
                    log::set_max_level(log::LevelFilter::Info);
                }
                let r = build_index(data, rows, dim, attributes_jsonl, params, &build_device, opts, &schema)
                    .and_then(|ix| open_static(ix, &device));
                if show {
                    log::set_max_level(log::LevelFilter::Warn);
                }
                r
            })
            .map_err(error)?;
        Ok(Core { inner: Mutex::new(Inner { view, store: None, path: None, tmp: None, device, rows: None }), filters: Mutex::new(None) })
    }

    /// Load an artifact (checksums verified unless `verify=False`). When a write-ahead log
    /// (`PATH.wal`) exists, the index opens as `silica serve` does: locked, log replayed.
    #[staticmethod]
    #[pyo3(signature = (path, device, verify))]
    fn load(py: Python<'_>, path: PathBuf, device: &str, verify: bool) -> PyResult<Core> {
        let device = check_device(device).map_err(error)?;
        py.detach(|| {
            let wal = silica::serve::wal::wal_path(&path);
            let (view, store) = if wal.exists() {
                let store = Store::open(&path, Options { verify, ..store_options(&device) })?;
                (Arc::new(View::Served(store.snapshot())), Some(store))
            } else {
                let index = format::load_with(&path, if verify { format::Verify::Checksums } else { format::Verify::Skip })?;
                (open_static(index, &device)?, None)
            };
            let inner = Inner { view, store, path: Some(path.clone()), tmp: None, device: device.clone(), rows: None };
            Ok(Core { inner: Mutex::new(inner), filters: Mutex::new(None) })
        })
        .map_err(error)
    }

    /// Write the artifact to `path` (atomically). After updates, the store is compacted
    /// first (fresh items folded into the lists; rows renumbered, ids kept), as `silica
    /// compact` does, and the compacted artifact is copied to `path`.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| {
            let mut g = lock(&self.inner);
            format::check_target(&path)?;
            match g.store.as_mut() {
                None => format::save(g.view.main(), &path),
                Some(store) => {
                    store.compact()?;
                    let snap = store.snapshot();
                    let src = g.path.clone().expect("a store has a path");
                    g.view = Arc::new(View::Served(snap));
                    if std::fs::canonicalize(&src).ok() != std::fs::canonicalize(&path).ok() {
                        let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
                        format::write_atomic(&path, &bytes)?;
                    }
                    Ok(())
                }
            }
        })
        .map_err(error)
    }

    /// Search `queries` (f32 `[B, D]`). `filters`: empty (none), or one text per query
    /// (`""` = none). Returns `(scores f32 [B, k], rows i64 [B, k])`, best first, rows -1
    /// and scores -inf where fewer than k items pass.
    #[pyo3(signature = (queries, k, filters, nprobe, k0, rerank, task_weights))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        filters: Vec<String>,
        nprobe: Option<usize>,
        k0: Option<usize>,
        rerank: Option<String>,
        task_weights: Option<Vec<f32>>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
        let view = self.view(py);
        let shape = queries.shape();
        let (b, d) = (shape[0], shape[1]);
        let q = queries.as_slice().map_err(|_| error(Error::param("queries", "must be C-contiguous")))?.to_vec();
        self.host_search(py, view, q, b, d, k, filters, SearchArgs { nprobe, k0, rerank, task_weights })
    }

    /// The GPU ordinal when [`Core::search_dlpack`] searches CUDA tensors in place here:
    /// an index without updates (the serving store merges segments on the host) opened
    /// on one cuda device; else `None` (callers copy through the host).
    fn device_ordinal(&self, py: Python<'_>) -> Option<usize> {
        match self.view(py).as_ref() {
            View::Static { exec, .. } => exec.as_any()?.downcast_ref::<graph::Executor<Cuda>>().map(|e| e.backend().ordinal()),
            View::Served(_) => None,
        }
    }

    /// Search the DLPack tensor in `capsule` (`[B, D]` or `[D]`, C-contiguous f32 / f16 /
    /// bf16; borrowed, not consumed). Host memory (kDLCPU, kDLCUDAHost): read in place,
    /// returns numpy arrays as `search`. Device memory (kDLCUDA): searched in place on the
    /// index's GPU (see `device_ordinal`), ordered after the work submitted so far to
    /// `stream` (a CUstream handle; 0: legacy default), and the results, scores f32
    /// `[B, k]` and rows i64 `[B, k]`, stay on the device: returns two `dltensor` capsules,
    /// ready on `stream`.
    #[pyo3(signature = (capsule, k, filters, nprobe, k0, rerank, task_weights, stream))]
    #[allow(clippy::too_many_arguments)]
    fn search_dlpack<'py>(
        &self,
        py: Python<'py>,
        capsule: &Bound<'py, PyAny>,
        k: usize,
        filters: Vec<String>,
        nprobe: Option<usize>,
        k0: Option<usize>,
        rerank: Option<String>,
        task_weights: Option<Vec<f32>>,
        stream: u64,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let v = dlpack::view(capsule)?;
        let view = self.view(py);
        let args = SearchArgs { nprobe, k0, rerank, task_weights };
        match v.device_type {
            dlpack::KDL_CPU | dlpack::KDL_CUDA_HOST => {
                // SAFETY: host memory of a capsule the caller holds for this call.
                let q = unsafe { dlpack::host_f32(&v) };
                let (s, r) = self.host_search(py, view, q, v.rows, v.dim, k, filters, args)?;
                Ok((s.into_any(), r.into_any()))
            }
            dlpack::KDL_CUDA | dlpack::KDL_CUDA_MANAGED => self.device_search(py, view, &v, k, filters, args, stream),
            t => Err(error(Error::param("queries", format!("DLPack device type {t} is not supported (CPU or CUDA tensors)")))),
        }
    }

    /// External ids of `rows` (flat i64); `None` for -1, unknown, deleted or replaced rows.
    fn ids(&self, py: Python<'_>, rows: PyReadonlyArray1<'_, i64>) -> PyResult<Vec<Option<String>>> {
        let rows = rows.as_slice().map_err(|_| error(Error::param("rows", "must be contiguous")))?.to_vec();
        let (view, map) = py.detach(|| {
            let mut g = lock(&self.inner);
            let map = g.row_map();
            (g.view.clone(), map)
        });
        Ok(rows.iter().map(|&r| map.locate(&view, r).map(|at| id_at(&view, at))).collect())
    }

    /// Attribute values of `rows` (flat i64) for the fields `names`: one dict per row,
    /// `{name: str | list[str] | int | float | bool | None}` (lists for multi-valued string
    /// fields; typed columns as their type, timestamps as RFC 3339 strings; `None` where
    /// the item has no value); `None` for rows that are not live.
    fn fields<'py>(&self, py: Python<'py>, rows: PyReadonlyArray1<'py, i64>, names: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let rows = rows.as_slice().map_err(|_| error(Error::param("rows", "must be contiguous")))?.to_vec();
        let (view, map) = py.detach(|| {
            let mut g = lock(&self.inner);
            let map = g.row_map();
            (g.view.clone(), map)
        });
        let schema = view.dict().schema();
        // Per name: a string field (its id, multi-valued) or a typed column (None).
        let mut cols = Vec::with_capacity(names.len());
        for n in &names {
            match schema.field(n) {
                Some(f) => cols.push((n, Some((f, schema.fields[f].multi)))),
                None if schema.columns.iter().any(|c| &c.name == n) => cols.push((n, None)),
                None => {
                    let known: Vec<&str> =
                        schema.fields.iter().map(|f| f.name.as_str()).chain(schema.columns.iter().map(|c| c.name.as_str())).collect();
                    return Err(error(Error::param("names", format!("unknown field `{n}` (known fields: {})", known.join(", ")))));
                }
            }
        }
        let out = PyList::empty(py);
        for &r in &rows {
            match map.locate(&view, r) {
                None => out.append(py.None())?,
                Some(at) => {
                    let d = PyDict::new(py);
                    for &(n, kind) in &cols {
                        match kind {
                            Some((f, true)) => d.set_item(n, values_at(&view, at, f))?,
                            Some((f, false)) => d.set_item(n, values_at(&view, at, f).into_iter().next())?,
                            None => d.set_item(n, json_to_py(py, &column_at(&view, at, n))?)?,
                        }
                    }
                    out.append(d)?;
                }
            }
        }
        Ok(out)
    }

    /// Insert or replace items (one batch, atomic). `attributes_json`: one JSON object per
    /// item (`field -> str | list[str]`); `features_json` likewise (`name -> number`).
    /// Returns the version that contains the batch.
    fn upsert(
        &self,
        py: Python<'_>,
        ids: Vec<String>,
        vectors: PyReadonlyArray2<'_, f32>,
        attributes_json: Vec<String>,
        features_json: Vec<String>,
    ) -> PyResult<u64> {
        let d = vectors.shape()[1];
        let data = vectors.as_slice().map_err(|_| error(Error::param("vectors", "must be C-contiguous")))?.to_vec();
        let mut ops = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            let attributes: BTreeMap<String, serde_json::Value> = parse_json(&attributes_json[i], &format!("items[{i}].attributes"))?;
            let features: BTreeMap<String, f64> = parse_json(&features_json[i], &format!("items[{i}].features"))?;
            let vector = if d == 0 { Vec::new() } else { data[i * d..(i + 1) * d].to_vec() };
            ops.push(Op::Upsert { item: Item { id, vector, attributes, features } });
        }
        py.detach(|| lock(&self.inner).commit(Batch { ops })).map_err(refused)
    }

    /// Delete items by id (one batch; an unknown id fails the whole batch with ItemNotFound).
    fn delete(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<u64> {
        let ops = ids.into_iter().map(|id| Op::Delete { id }).collect();
        py.detach(|| lock(&self.inner).commit(Batch { ops })).map_err(refused)
    }

    /// Replace the named attribute fields of items (one batch; `[]` clears a field).
    fn patch(&self, py: Python<'_>, ids: Vec<String>, attributes_json: Vec<String>) -> PyResult<u64> {
        let mut ops = Vec::with_capacity(ids.len());
        for (i, (id, a)) in ids.into_iter().zip(attributes_json).enumerate() {
            let attributes = parse_json(&a, &format!("attributes[{i}]"))?;
            ops.push(Op::Patch { id, attributes });
        }
        py.detach(|| lock(&self.inner).commit(Batch { ops })).map_err(refused)
    }

    /// Fold the updates into the artifact now (`silica compact`); no-op without updates.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut g = lock(&self.inner);
            if let Some(store) = g.store.as_mut() {
                store.compact()?;
                let snap = store.snapshot();
                g.view = Arc::new(View::Served(snap));
            }
            Ok(())
        })
        .map_err(error)
    }

    /// Vector dimension D (cheap: what every search checks against).
    fn dim(&self, py: Python<'_>) -> usize {
        self.view(py).main().dim
    }

    /// Sizes and settings: dim, n (live items), nlist, metric, backend, version,
    /// default_nprobe, fields, features, has_embeddings, has_rerank_model, path.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (v, path, updatable) = py.detach(|| {
            let g = lock(&self.inner);
            (g.view.clone(), g.path.clone().filter(|_| g.tmp.is_none()), g.store.is_some())
        });
        let ix = v.main();
        let d = PyDict::new(py);
        d.set_item("dim", ix.dim)?;
        d.set_item("n", py.detach(|| v.live_items()))?;
        d.set_item("nlist", ix.nlist())?;
        d.set_item("metric", ix.metric.to_string())?;
        d.set_item("backend", v.backend_name())?;
        d.set_item("version", v.version())?;
        d.set_item("default_nprobe", ix.default_nprobe())?;
        d.set_item("fields", v.dict().schema().fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>())?;
        let columns = PyDict::new(py);
        for c in &v.dict().schema().columns {
            columns.set_item(&c.name, c.ty.name())?;
        }
        d.set_item("columns", columns)?;
        d.set_item("features", ix.feature_names.clone())?;
        d.set_item("has_embeddings", ix.embeddings.is_some())?;
        d.set_item("rerank_tasks", ix.rerank.as_ref().map(|m| m.task_weights.clone()))?;
        d.set_item("path", path.map(|p| p.display().to_string()))?;
        d.set_item("updatable_log", updatable)?;
        Ok(d)
    }
}

/// A scalar JSON value (what a typed column gives) as a Python object.
fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    use serde_json::Value as J;
    match v {
        J::Null => Ok(py.None().into_bound(py)),
        J::Bool(b) => b.into_bound_py_any(py),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into_bound_py_any(py),
            None => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py),
        },
        J::String(s) => s.into_bound_py_any(py),
        other => other.to_string().into_bound_py_any(py),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str, field: &str) -> PyResult<T> {
    serde_json::from_str(s).map_err(|e| {
        crate::raise(
            "UpdateError",
            format!("{field}: {e}"),
            &[("field", field.to_string()), ("code", "bad_request".into()), ("status", "400".into())],
        )
    })
}

/// Devices this build finds: `[(backend, name, details, auto)]` (`silica devices`).
#[pyfunction]
pub fn devices(py: Python<'_>) -> Vec<(String, String, String, bool)> {
    py.detach(|| silica::device::report().into_iter().map(|r| (r.backend.to_string(), r.name, r.details, r.auto)).collect())
}
