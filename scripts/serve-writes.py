#!/usr/bin/env python3
"""Write load for `silica serve` on the Debian index: one client posting upsert batches
(Debian vectors with noise, real attribute values) back to back, each acknowledged after
its write-ahead log fsync; prints batch latency percentiles and items/s, then triggers
POST /v1/compact and prints its report.

usage: scripts/serve-writes.py http://127.0.0.1:PORT data/debian SECONDS BATCH [--no-compact]
"""
import json, sys, time, urllib.request
import numpy as np

url, src, secs, batch = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
emb = np.load(f"{src}/embeddings.npy").astype(np.float32)
items = [json.loads(l) for l in open(f"{src}/items.jsonl")]
rng = np.random.default_rng(1)

def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode() if body is not None else b"", {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as r:
        return json.load(r)

lat, n, t0 = [], 0, time.time()
while time.time() - t0 < secs:
    rows = rng.integers(0, len(items), batch)
    body = {"items": [{
        "id": f"w-{n + j}",
        "vector": (emb[r] + rng.normal(0, 0.01, emb.shape[1]).astype(np.float32)).tolist(),
        "attributes": {k: items[r][k] for k in ("section", "priority", "architecture", "tags")},
    } for j, r in enumerate(rows)]}
    s = time.time()
    post("/v1/items", body)
    lat.append(time.time() - s)
    n += batch
el = time.time() - t0
lat = np.array(lat) * 1e3
print(f"upserts: {n} items in {len(lat)} batches of {batch} over {el:.1f}s = {n / el:.0f} items/s; "
      f"batch latency p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
if "--no-compact" not in sys.argv:
    print("compact:", post("/v1/compact", None))
