"""``silica.Client``: a small client for ``silica serve`` (standard library + numpy).

Searches go as the binary body by default (``B * D`` little-endian f32, parameters in the
query string, binary answer: README "Binary search"); ``binary=False`` sends JSON. Error
answers raise :class:`silica.ServerError` with the server's ``status``, ``code``, ``field``.
"""

import json
import struct
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from ._errors import ServerError
from ._index import as_matrix

_OCTET = "application/octet-stream"


class Client:
    """Client(url="http://127.0.0.1:8080", token=None, timeout=30.0)

    token: the server's ``--token`` (sent as ``Authorization: Bearer`` on every request)."""

    def __init__(self, url="http://127.0.0.1:8080", token=None, timeout=30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method, path, body=None, ctype="application/json", accept="application/json"):
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = ctype
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["error"]
            except Exception:
                raise ServerError(f"{e.code} {raw[:200]!r}", status=e.code, code=None) from None
            field = err.get("field")
            msg = f"{e.code} {field}: {err.get('message')}" if field else f"{e.code} {err.get('message')}"
            raise ServerError(msg, status=e.code, code=err.get("code"), field=field) from None

    def _json(self, method, path, obj=None):
        body = None if obj is None else json.dumps(obj).encode()
        raw, _ = self._request(method, path, body)
        return json.loads(raw) if raw else None

    def search(self, queries, k, filter=None, *, nprobe=None, k0=None, rerank=None, task_weights=None,
               timeout_ms=None, binary=True, return_ids=False):
        """Search like :meth:`silica.Index.search`: ``(scores f32 [B, k], rows i64 [B, k])``
        padded with -inf / -1; with ``return_ids=True`` also the ids (lists, ``None``
        padded) and the server's ``version`` as a fourth value."""
        q = as_matrix(queries, "queries")
        b = q.shape[0]
        params = {"k": k}
        for name, v in (("nprobe", nprobe), ("k0", k0), ("rerank", rerank), ("timeout_ms", timeout_ms)):
            if v is not None:
                params[name] = v
        if binary:
            if task_weights is not None:
                params["task_weights"] = ",".join(repr(float(w)) for w in task_weights)
            if isinstance(filter, str):
                params["filter"] = filter
            elif filter is not None:
                params["filters"] = json.dumps([f or "" for f in filter])
            path = "/v1/search?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
            raw, _ = self._request("POST", path, q.astype("<f4").tobytes(), ctype=_OCTET, accept=_OCTET)
            version, results = _decode(raw)
        else:
            body = dict(params, vectors=q.tolist())
            if task_weights is not None:
                body["task_weights"] = [float(w) for w in task_weights]
            if isinstance(filter, str):
                body["filter"] = filter
            elif filter is not None:
                body["filters"] = [f or "" for f in filter]
            ans = self._json("POST", "/v1/search", body)
            version = ans["version"]
            results = [(r["rows"], r["scores"], r["ids"]) for r in ans["results"]]
        scores = np.full((b, k), -np.inf, dtype=np.float32)
        rows = np.full((b, k), -1, dtype=np.int64)
        ids = [[None] * k for _ in range(b)]
        for i, (rr, ss, ii) in enumerate(results):
            n = min(len(rr), k)
            rows[i, :n] = rr[:n]
            scores[i, :n] = ss[:n]
            ids[i][:n] = ii[:n]
        if return_ids:
            return scores, rows, ids, version
        return scores, rows

    def upsert(self, ids, vectors, attributes=None, features=None):
        """``POST /v1/items``: returns the version containing the batch."""
        if isinstance(ids, str):
            ids = [ids]
        x = as_matrix(vectors, "vectors")
        items = []
        for i, id_ in enumerate(ids):
            item = {"id": str(id_), "vector": x[i].tolist()}
            if attributes is not None and attributes[i]:
                item["attributes"] = attributes[i]
            if features is not None and features[i]:
                item["features"] = features[i]
            items.append(item)
        return self._json("POST", "/v1/items", {"items": items})["version"]

    def delete(self, id):
        """``DELETE /v1/items/{id}``: returns the new version."""
        return self._json("DELETE", "/v1/items/" + urllib.parse.quote(str(id), safe=""))["version"]

    def patch(self, id, attributes):
        """``PATCH /v1/items/{id}`` (named fields replaced, ``[]`` clears)."""
        return self._json("PATCH", "/v1/items/" + urllib.parse.quote(str(id), safe=""), {"attributes": attributes})["version"]

    def compact(self):
        return self._json("POST", "/v1/compact")

    def stats(self):
        return self._json("GET", "/v1/stats")

    def health(self):
        """True when ``/healthz`` answers 200."""
        try:
            self._request("GET", "/healthz")
            return True
        except (ServerError, OSError):
            return False


def _decode(raw):
    """The binary answer: ``u64 version | u32 B | per query: u32 n | n u64 rows | n f32
    scores | n x (u32 len, UTF-8 id)``."""
    version, b = struct.unpack_from("<QI", raw, 0)
    off = 12
    out = []
    for _ in range(b):
        (n,) = struct.unpack_from("<I", raw, off)
        off += 4
        rows = np.frombuffer(raw, "<u8", n, off).astype(np.int64)
        off += 8 * n
        scores = np.frombuffer(raw, "<f4", n, off).astype(np.float32)
        off += 4 * n
        ids = []
        for _ in range(n):
            (ln,) = struct.unpack_from("<I", raw, off)
            off += 4
            ids.append(raw[off:off + ln].decode())
            off += ln
        out.append((rows, scores, ids))
    if off != len(raw):
        raise ServerError(f"binary answer: {len(raw) - off} trailing bytes", status=200, code="protocol")
    return version, out
