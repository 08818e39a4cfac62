#!/usr/bin/env python3
"""Write latency of `silica serve`: start BIN on INDEX (a Debian-corpus artifact) with
BACKEND on 127.0.0.1:PORT, time 12 PATCH and then 12 DELETE requests (each: WAL fsync, apply,
publish a new snapshot on the device), print the medians, then check a search sees the
last patch.

    python3 scripts/serve-write-latency.py target/release/silica debian.silica cuda 18080

The H200 figures in BENCHMARKS.md ("silica serve", write latency) come from this script."""
import json, subprocess, sys, time, urllib.request, statistics, shutil, os
bin_, index, backend, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
work = f"/tmp/wlat-{port}"
shutil.rmtree(work, ignore_errors=True); os.makedirs(work)
ix = os.path.join(work, "ix.silica"); shutil.copy(index, ix)
p = subprocess.Popen([bin_, "serve", "--index", ix, "--backend", backend, "--addr", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=open(work + "/log", "w"))
base = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=1); break
    except Exception:
        time.sleep(0.1)
ids = ["0ad", "0ad-data", "0ad-data-common", "0install", "0install-core"]

def timed(req):
    t = time.perf_counter()
    try:
        urllib.request.urlopen(req, timeout=60).read()
    except Exception as e:
        print(req.get_method(), "failed:", e)
    return (time.perf_counter() - t) * 1e3

lat = []
for i in range(12):
    body = json.dumps({"attributes": {"section": f"s{i}"}}).encode()
    lat.append(timed(urllib.request.Request(f"{base}/v1/items/{ids[i % len(ids)]}", data=body, method="PATCH", headers={"content-type": "application/json"})))
# Deletes of 12 other items (first lines of the Debian items file after the patched ones).
doomed = ["0xffff", "2048", "2048-qt", "2ping", "2to3", "2vcard", "3270-common", "389-ds", "389-ds-base", "389-ds-base-dev", "389-ds-base-libs", "3dchess"]
dlat = [timed(urllib.request.Request(f"{base}/v1/items/{d}", method="DELETE")) for d in doomed]
# A search after the writes still answers.
q = json.dumps({"vector": [0.05] * 384, "k": 5, "filter": 'section = "s11"'}).encode()
r = json.loads(urllib.request.urlopen(urllib.request.Request(base + "/v1/search", data=q, headers={"content-type": "application/json"}), timeout=60).read())
p.terminate(); p.wait()
print(f"{backend} {os.path.basename(bin_)}: PATCH latency ms median {statistics.median(lat):.1f}, first {lat[0]:.1f}, max {max(lat):.1f} (12 requests); "
      f"DELETE median {statistics.median(dlat):.1f}, max {max(dlat):.1f} (12 requests); search after: {r.get('ids')}")
