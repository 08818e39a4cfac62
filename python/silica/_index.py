"""``silica.Index``: build, load, save, search, update (FAISS-shaped)."""

import json
import math

import numpy as np

from . import _errors
from ._silica import Core

_RERANK = (None, "auto", "none", "refine", "model")


def _is_torch(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


# DLPack device types (dlpack.h DLDeviceType).
_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED = 1, 2, 3, 13


def _dlpack_device(x):
    """``(device_type, device_id)`` of a DLPack producer other than a numpy array (a torch
    tensor, a CuPy or JAX array, anything with ``__dlpack__`` and ``__dlpack_device__``),
    else ``None``."""
    if isinstance(x, np.ndarray) or not hasattr(x, "__dlpack__") or not hasattr(x, "__dlpack_device__"):
        return None
    t, i = x.__dlpack_device__()
    return int(t), int(i)


def _rows_of(x):
    shape = tuple(getattr(x, "shape", ()))
    return shape[0] if len(shape) == 2 else 1


def _schema_text(schema):
    """``Index.build(schema=...)`` as ``--schema`` text: a dict ``{field: type}``, a string
    as is, or ``None``."""
    if schema is None:
        return ""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return ",".join(f"{k}:{v}" for k, v in schema.items())
    raise _errors.InvalidParameter(f"schema: expected a dict or a string, got {type(schema).__name__}", field="schema")


class DeviceArray:
    """A CUDA search result for DLPack consumers other than torch (``cupy.from_dlpack(a)``,
    ``jax.dlpack.from_dlpack(a)``): float32 scores or int64 rows ``[B, k]`` in device memory
    silica allocated, freed when the consumer's array is. Exported once; ready on the legacy
    default stream (torch inputs get torch tensors instead, ready on torch's current stream).
    """

    def __init__(self, capsule, device_id, shape, dtype):
        self._capsule, self._device, self.shape, self.dtype = capsule, device_id, shape, dtype

    def __dlpack__(self, stream=None, **kwargs):
        if self._capsule is None:
            raise BufferError("this silica.DeviceArray was already exported")
        c, self._capsule = self._capsule, None
        return c

    def __dlpack_device__(self):
        return (_KDL_CUDA, self._device)

    def __repr__(self):
        return f"silica.DeviceArray(shape={self.shape}, dtype={self.dtype}, device=cuda:{self._device})"


def as_matrix(x, what, dim=None):
    """``x`` (numpy array of any float dtype, torch tensor, nested lists) as a C-contiguous
    float32 ``[N, D]`` array; a 1-D vector becomes ``[1, D]``. Raises DimensionError for a
    wrong shape, InvalidParameter for a non-float dtype, NonFiniteError for NaN/Inf (with the
    first bad ``row``/``col``)."""
    if _is_torch(x):
        x = x.detach().to("cpu").numpy()
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise _errors.InvalidParameter(f"{what}: expected a float array, got dtype {a.dtype}", field=what)
    if np.issubdtype(a.dtype, np.integer):
        raise _errors.InvalidParameter(f"{what}: expected a float array, got dtype {a.dtype} (convert with .astype('float32') if that is meant)", field=what)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise _errors.DimensionError(f"{what}: expected a 2-D array [N, D], got shape {tuple(a.shape)}", field=what)
    if dim is not None and a.shape[1] != dim:
        raise _errors.DimensionError(f"{what}: dimension {a.shape[1]} does not match the index dimension {dim}", field=what)
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(f)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = a[row, col]
        if np.isfinite(value):
            raise _errors.OutOfRangeError(f"{what}: row {row}, column {col}: {value!r} is beyond the float32 range", field=what, row=row, col=col)
        raise _errors.NonFiniteError(f"{what}: row {row}, column {col} is not finite ({value})", field=what, row=row, col=col)
    return f


def _jsonable(v):
    """numpy scalars and arrays, and pandas' NaN for a missing value, as JSON values."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if hasattr(v, "as_py"):  # pyarrow scalar
        return v.as_py()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _records(attributes, n):
    """Attributes as a list of dicts: a list/tuple of dicts, a pandas DataFrame, a pyarrow
    Table, or ``None`` (ids ``"0"``..``"N-1"``)."""
    if attributes is None:
        return [{"id": str(i)} for i in range(n)]
    mod = type(attributes).__module__
    if mod.startswith("pandas"):
        recs = attributes.to_dict("records")
        # pandas marks a missing value NaN: an absent attribute, not a number.
        return [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))} for r in recs]
    if mod.startswith("pyarrow"):
        return attributes.to_pylist()
    if isinstance(attributes, dict):
        raise _errors.InvalidParameter("attributes: expected one dict per vector (a list of dicts), a pandas DataFrame or a pyarrow Table, got a dict", field="attributes")
    return list(attributes)


def _dumps(obj, field, i):
    if not isinstance(obj, dict):
        raise _errors.AttributesError(f"{field}[{i}]: expected a dict, got {type(obj).__name__}", field=f"{field}[{i}]", row=i)
    try:
        return json.dumps(obj, default=_jsonable, allow_nan=False, ensure_ascii=False)
    except ValueError:
        raise _errors.AttributesError(f"{field}[{i}]: a NaN or infinite number (JSON holds only finite numbers; leave the key out for a missing value)", field=f"{field}[{i}]", row=i) from None
    except TypeError as e:
        raise _errors.AttributesError(f"{field}[{i}]: {e}", field=f"{field}[{i}]", row=i) from None


def _filters(filter, b):
    if filter is None:
        return []
    if isinstance(filter, str):
        return [filter]
    fl = list(filter)
    if len(fl) != b:
        raise _errors.CountMismatchError(f"search: filters has {len(fl)} rows but queries has {b}", field="filter")
    for i, f in enumerate(fl):
        if f is None:
            fl[i] = ""
        elif not isinstance(f, str):
            raise _errors.InvalidParameter(f"filter[{i}]: expected a string, got {type(f).__name__}", field=f"filter[{i}]")
    return fl


def _count(name, v, minimum=1, optional=True):
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise _errors.InvalidParameter(f"invalid parameter `{name}`: expected an integer, got {v!r}", field=name)
    if v < minimum:
        raise _errors.InvalidParameter(f"invalid parameter `{name}`: must be at least {minimum}", field=name)
    return int(v)


class Index:
    """A silica index: one artifact of tensors searched as one forward pass
    (Bloom filter -> IVF probe -> int8 scan + top-K0 -> rerank -> top-k).

    Make one with :meth:`Index.build` or :meth:`Index.load`. Searches release the GIL and
    run concurrently; updates are serialized (the server's store, one batch at a time).
    """

    def __init__(self, core):
        if not isinstance(core, Core):
            raise TypeError("use Index.build(...) or Index.load(path)")
        self._core = core

    # ---- making one -------------------------------------------------------------------

    @classmethod
    def build(cls, vectors, attributes=None, *, metric="ip", nlist=None, features=(), bloom_bits=1024,
              bloom_hashes=5, store_embeddings=True, kmeans_iters=10, seed=1, calibrate=True,
              target_recall=0.99, calibration_queries=500, build_device="cpu", device="auto", progress=True,
              schema=None):
        """Build an index in memory, as ``silica build`` does from files.

        vectors: ``[N, D]`` numpy array of any float dtype (converted to float32), a torch
            tensor, or nested lists; NaN/Inf raise NonFiniteError naming row and column.
        attributes: one dict per vector (``id``: external id, unique; string and
            list-of-string values are filterable; numbers named in ``features`` are rerank
            features; other numbers and booleans become typed columns, filterable with
            ``<``, ``BETWEEN``, ``IS NULL``...), a pandas DataFrame or a pyarrow Table;
            ``None``: ids ``"0".."N-1"``.
        schema: field types where the values do not say them, as ``silica build --schema``:
            a dict ``{"published": "timestamp", "year": "int"}`` or the text
            ``"published:timestamp,year:int"`` (types: string, strings, int, float, bool,
            timestamp; timestamps are RFC 3339 strings). A value that does not fit its
            type raises an error naming the line and field.
        metric: ``"ip"``, ``"cosine"`` or ``"l2"`` (squared Euclidean distance; scores are
            the negated squared distance, best first). nlist: inverted lists (default: the
            power of two nearest 4*sqrt(N)). calibrate: measure the default nprobe reaching
            ``target_recall`` on ``calibration_queries`` held-out rows (as ``silica build``).
        build_device: k-means device, ``"cpu"`` or ``"cuda"``. device: where the index is
            searched (``auto``, ``cpu``, ``wgpu``, ``cuda``, ``cuda:N``).
        progress: progress bars on a terminal, else log lines (``RUST_LOG`` overrides).
        """
        x = as_matrix(vectors, "vectors")
        recs = _records(attributes, x.shape[0])
        if len(recs) != x.shape[0]:
            raise _errors.CountMismatchError(f"index build: attributes has {len(recs)} rows but vectors has {x.shape[0]}", field="attributes")
        jsonl = "\n".join(_dumps(r, "attributes", i) for i, r in enumerate(recs)).encode()
        if isinstance(features, str):
            features = [features]
        core = Core.build(x, jsonl, str(metric), _count("nlist", nlist), _count("bloom_bits", bloom_bits, optional=False),
                          _count("bloom_hashes", bloom_hashes, optional=False), list(features), bool(store_embeddings),
                          _count("kmeans_iters", kmeans_iters, minimum=0, optional=False), _count("seed", seed, minimum=0, optional=False),
                          bool(calibrate), float(target_recall), _count("calibration_queries", calibration_queries, optional=False),
                          str(build_device), str(device), bool(progress), _schema_text(schema))
        return cls(core)

    @classmethod
    def load(cls, path, device="auto", *, verify=True):
        """Load an artifact (``*.silica``), memory-mapped; checksums verified unless
        ``verify=False``. device: ``auto`` (CUDA, else a hardware wgpu GPU, else the CPU),
        ``cpu``, ``wgpu``, ``cuda`` or ``cuda:N``. A write-ahead log beside it (``PATH.wal``,
        from ``silica serve`` or earlier updates) is replayed, and the artifact locked."""
        return cls(Core.load(str(path), str(device), bool(verify)))

    def save(self, path):
        """Write the artifact to ``path`` atomically (readable by ``silica search``,
        ``silica serve`` and any safetensors reader). After updates the index is compacted
        first, as ``silica compact`` does: fresh items join the inverted lists and ``rows``
        are renumbered (ids are kept)."""
        self._core.save(str(path))

    # ---- searching --------------------------------------------------------------------

    def search(self, queries, k, filter=None, *, nprobe=None, k0=None, rerank=None, task_weights=None, zero_copy=None):
        """Top-``k`` items for each query, best first.

        queries: ``[B, D]`` (or ``[D]``) numpy array of any float dtype, nested lists, a torch
            tensor, or any DLPack producer (``__dlpack__``). filter: ``None``, one filter
            string for every query, or a list of B strings (``""``/``None`` = none), in the
            filter language of the README.

        CUDA tensors (torch, or any DLPack producer on kDLCUDA), C-contiguous float32,
        float16 or bfloat16: with an index loaded on that GPU (``device="cuda"``, no updates
        yet) they are searched in place, without a host copy either way: the queries are
        read from the tensor's memory (validated and quantized on the device, same bits as
        the host path) and the results are written to device memory returned as torch
        tensors on the input's device (``torch.from_dlpack`` of capsules silica exports;
        other producers get :class:`DeviceArray`). The search is ordered after the work
        queued so far on torch's current stream, and work queued there afterwards sees the
        results. Otherwise (an index on the CPU or wgpu, or with updates) they take one host
        copy each way. ``zero_copy``: ``None`` (default) in place when possible, ``True``
        in place or BackendError, ``False`` always through the host.
        nprobe: lists probed (default: the index's calibrated value); k0: candidates the int8
            scan keeps for rerank (default max(4k, 64) with refine); rerank: ``"none"``,
            ``"refine"``, ``"model"`` or ``None`` (refine when the index stores embeddings);
            task_weights: one weight per task for ``"model"``.

        Returns ``(scores, rows)``: float32 ``[B, k]`` and int64 ``[B, k]``; ``rows`` are the
        0-based rows of the vectors the index was built from (items added later get new
        numbers), ``-1`` with score ``-inf`` where fewer than k items pass the filter.
        """
        k = _count("k", k, optional=False)
        if rerank not in _RERANK:
            raise _errors.InvalidParameter(f"invalid parameter `rerank`: unknown mode {rerank!r}; expected none, refine, model or auto", field="rerank")
        tw = None if task_weights is None else [float(w) for w in task_weights]
        opts = (_count("nprobe", nprobe), _count("k0", k0), rerank, tw)
        dl = _dlpack_device(queries)
        if dl is not None and dl[0] in (_KDL_CUDA, _KDL_CUDA_MANAGED):
            return self._search_cuda(queries, k, filter, opts, zero_copy, dl[1])
        if dl is not None and not _is_torch(queries):
            # A host DLPack producer (not numpy): read in place.
            cap = queries.__dlpack__()
            return self._core.search_dlpack(cap, k, _filters(filter, _rows_of(queries)), *opts, 0)
        q = as_matrix(queries, "queries", self.dim)
        return self._core.search(q, k, _filters(filter, q.shape[0]), *opts)

    def _search_cuda(self, x, k, filter, opts, zero_copy, device_id):
        torch_in = _is_torch(x)
        if zero_copy is not False and (zero_copy or self._core.device_ordinal() is not None):
            if torch_in:
                import torch
                import torch.utils.dlpack
                t = x.detach()
                if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
                    raise _errors.InvalidParameter(f"queries: expected float32, float16 or bfloat16 elements, got {t.dtype} (convert with .float())", field="queries")
                stream = torch.cuda.current_stream(t.device).cuda_stream
                cap = torch.utils.dlpack.to_dlpack(t)
            else:
                stream = 0  # __dlpack__() without a stream: ready on the legacy default stream
                cap = x.__dlpack__()
            b = _rows_of(x)
            s, r = self._core.search_dlpack(cap, k, _filters(filter, b), *opts, stream)
            del cap  # borrowed for the search only (the producer's capsule frees itself)
            if torch_in:
                return torch.from_dlpack(s), torch.from_dlpack(r)
            return DeviceArray(s, device_id, (b, k), "float32"), DeviceArray(r, device_id, (b, k), "int64")
        if not torch_in:
            raise _errors.BackendError("queries: CUDA arrays other than torch tensors are searched in place only (an index on their cuda device, zero_copy not False)", backend="cuda")
        # One host copy each way (synchronizes torch's current stream: the producer is done).
        q = x.detach().float().cpu().numpy()
        s, r = self._core.search(as_matrix(q, "queries", self.dim), k, _filters(filter, q.shape[0] if q.ndim == 2 else 1), *opts)
        import torch
        dev = x.device
        return torch.from_numpy(s).to(dev), torch.from_numpy(r).to(dev)

    def ids(self, rows):
        """External ids of ``rows`` (any shape of ints, e.g. a search's ``rows``), as nested
        lists of the same shape; ``None`` for -1 and for deleted or replaced items."""
        r = np.asarray(rows)
        if r.dtype.kind not in "iu":
            raise _errors.InvalidParameter(f"rows: expected integers, got dtype {r.dtype}", field="rows")
        out = self._core.ids(np.ascontiguousarray(r.reshape(-1), dtype=np.int64))
        return _shape(out, r.shape)

    def fields(self, rows, names=None):
        """Attribute values of ``rows``: per row a dict ``{name: value}`` (a string, a list of
        strings for multi-valued fields; an int, float or bool for typed columns, a
        timestamp as an RFC 3339 string; ``None`` where the item has none), or ``None`` for
        -1 / deleted rows; nested like ``rows``. names: field names (default: all, string
        fields then typed columns)."""
        r = np.asarray(rows)
        if r.dtype.kind not in "iu":
            raise _errors.InvalidParameter(f"rows: expected integers, got dtype {r.dtype}", field="rows")
        if names is None:
            names = list(self.field_names) + list(self.columns)
        elif isinstance(names, str):
            names = [names]
        out = self._core.fields(np.ascontiguousarray(r.reshape(-1), dtype=np.int64), list(names))
        return _shape(out, r.shape)

    # ---- updates (the server's semantics) ---------------------------------------------

    def upsert(self, ids, vectors, attributes=None, features=None):
        """Insert or replace items, as ``POST /v1/items``: one atomic batch (a search sees
        all of it or none), validated first (a bad item fails the batch, naming
        ``items[i]...``; nothing changes), logged and fsynced to ``PATH.wal``.

        ids: list of N strings; vectors: ``[N, D]``; attributes: N dicts ``{field: str |
        list[str]}`` (fields of the index only); features: N dicts ``{name: number}``.
        Returns the index version containing the batch. The first update of an index built
        in memory writes it to a private temporary artifact (the server's store needs one).
        """
        if isinstance(ids, str):
            ids = [ids]
        ids = [str(i) if isinstance(i, (int, np.integer)) else i for i in ids]
        _nonempty(ids, "items", "no items")
        for i, v in enumerate(ids):
            if not isinstance(v, str):
                raise _errors.UpdateError(f"items[{i}].id: must be a string", field=f"items[{i}].id", code="bad_request")
        x = as_matrix(vectors, "vectors", self.dim)
        if x.shape[0] != len(ids):
            raise _errors.CountMismatchError(f"upsert: ids has {len(ids)} rows but vectors has {x.shape[0]}", field="ids")
        attrs = _per_item(attributes, len(ids), "attributes")
        feats = _per_item(features, len(ids), "features")
        return self._core.upsert(ids, x, attrs, feats)

    def delete(self, ids):
        """Delete items by id (one batch, as ``DELETE /v1/items/{id}``); an unknown id raises
        ItemNotFound and deletes nothing. Returns the new version."""
        if isinstance(ids, str):
            ids = [ids]
        _nonempty(ids, "ids", "no ids")
        return self._core.delete([str(i) for i in ids])

    def patch(self, ids, attributes):
        """Replace the named attribute fields of items (``PATCH /v1/items/{id}``; ``[]``
        clears a field). ids: one id or a list; attributes: one dict or one per id."""
        if isinstance(ids, str):
            ids, attributes = [ids], [attributes]
        ids = [str(i) for i in ids]
        _nonempty(ids, "ids", "no ids")
        return self._core.patch(ids, _per_item(attributes, len(ids), "attributes"))

    def compact(self):
        """Fold updates into the artifact now (``silica compact``): rows are renumbered."""
        self._core.compact()

    # ---- facts ------------------------------------------------------------------------

    @property
    def info(self):
        """dim, n (live items), nlist, metric, backend, version, default_nprobe, fields,
        columns (typed columns: ``{name: type}``), features, has_embeddings, rerank_tasks
        (default task weights), path."""
        return self._core.info()

    @property
    def dim(self):
        """Vector dimension D."""
        return self._core.dim()

    @property
    def nlist(self):
        return self._core.info()["nlist"]

    @property
    def metric(self):
        return self._core.info()["metric"]

    @property
    def device(self):
        return self._core.info()["backend"]

    @property
    def field_names(self):
        """Names of the string fields."""
        return self._core.info()["fields"]

    @property
    def columns(self):
        """Typed columns, ``{name: type}`` (type: int, float, bool or timestamp)."""
        return self._core.info()["columns"]

    @property
    def version(self):
        """Update batches applied since the index was built (0 before any)."""
        return self._core.info()["version"]

    def __len__(self):
        return self._core.info()["n"]

    def __repr__(self):
        i = self._core.info()
        return f"silica.Index(n={i['n']}, dim={i['dim']}, nlist={i['nlist']}, metric={i['metric']!r}, device={i['backend']!r})"


def _nonempty(ids, field, message):
    if len(ids) == 0:
        raise _errors.UpdateError(f"{field}: {message}", field=field, code="bad_request")


def _per_item(v, n, what):
    if v is None:
        return ["{}"] * n
    if isinstance(v, dict) and n == 1:
        v = [v]
    v = list(v)
    if len(v) != n:
        raise _errors.CountMismatchError(f"update: {what} has {len(v)} rows but ids has {n}", field=what)
    out = []
    for i, d in enumerate(v):
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise _errors.UpdateError(f"items[{i}].{what}: expected a dict, got {type(d).__name__}", field=f"items[{i}].{what}", code="bad_request")
        try:
            out.append(json.dumps(d, default=_jsonable, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise _errors.UpdateError(f"items[{i}].{what}: {e}", field=f"items[{i}].{what}", code="bad_request") from None
    return out


def _shape(flat, shape):
    if len(shape) == 0:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = int(np.prod(shape[1:]))
    return [_shape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
