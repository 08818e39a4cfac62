"""The Python package on a GPU host (run by scripts/python-h200.sh, which installs the wheel,
builds the index and runs the CLI on it). Prints one RESULT/FAIL line per check and writes
python-h200.json (and the profiler traces) into OUT.

    python3 scripts/python-h200.py OUT INDEX QUERIES.npy MIX.jsonl CLI_RESULTS.jsonl RUST_EVAL.json VECTORS.npy
"""

import json
import os
import sys
import threading
import time

import numpy as np

import silica

B, K = 256, 10
report = {"silica": silica.__version__, "devices": silica.devices()}


def say(ok, name, detail):
    print(f"{'RESULT' if ok else 'FAIL'} {name}: {detail}", flush=True)
    report.setdefault("checks", {})[name] = {"ok": bool(ok), "detail": detail}


def filters_of(path):
    return [json.loads(line).get("filter") or "" for line in open(path).read().splitlines()]


def qps(search, q, f, secs=3.0, sync=lambda: None):
    """The loop of eval::measure_qps: all queries in batches of B, passes for >= secs."""
    def one_pass():
        for s in range(0, len(q), B):
            search(q[s:s + B], f[s:s + B] if f else None)
        sync()
    one_pass()
    t0, passes = time.perf_counter(), 0
    while time.perf_counter() - t0 < secs:
        one_pass()
        passes += 1
    return passes * len(q) / (time.perf_counter() - t0)


def threaded_qps(index, q, threads=4, secs=2.0):
    stop = time.perf_counter() + secs
    counts = [0] * threads

    def work(t):
        while time.perf_counter() < stop:
            for s in range(0, len(q), B):
                index.search(q[s:s + B], K)
                counts[t] += min(B, len(q) - s)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    [t.start() for t in ts]
    [t.join() for t in ts]
    return sum(counts) / (time.perf_counter() - t0)


def identity_vs_cli(index, q, f, cli_path):
    cli = [json.loads(line) for line in open(cli_path).read().splitlines()]
    scores, rows = index.search(q[:len(cli)], K, f[:len(cli)])
    ids = index.ids(rows)
    bad = 0
    for i, r in enumerate(cli):
        n = len(r["rows"])
        same = rows[i, :n].tolist() == r["rows"] and ids[i][:n] == r["ids"] and scores[i, :n].tolist() == [float(np.float32(s)) for s in r["scores"]]
        bad += not same
    say(bad == 0 and len(cli) > 0, "identity numpy == silica search (filtered mix)", f"{len(cli)} queries, {bad} differ")


def memcpys(trace_path):
    """(name, bytes) of every GPU memcpy in a chrome trace of torch.profiler."""
    ev = json.load(open(trace_path)).get("traceEvents", [])
    return [(e.get("name", ""), int((e.get("args") or {}).get("bytes", -1))) for e in ev if e.get("cat") == "gpu_memcpy"]


def torch_checks(index, q, f, out_dir, vectors_path):
    import torch
    import torch.nn.functional as F
    import silica.torch as st
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available() and index.device == "cuda"
    dev = torch.device("cuda" if cuda else "cpu")
    r = {"device": str(dev)}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    qt = torch.from_numpy(q).to(dev)
    fb = f[:B] if f else None

    # 1. In place == the numpy path, bit for bit (f32; f16 / bf16 against the numpy path of the
    # same converted values); unfiltered and the filtered mix (the planner's routes, widening).
    bad = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for filt in (None, fb):
            x = qt[:B].to(dtype)
            s, rows = index.search(x, K, filt, zero_copy=True if cuda else None)
            s, rows = torch.as_tensor(s), torch.as_tensor(rows)  # numpy for CPU tensors (smoke test)
            sync()
            ws, wr = index.search(x.float().cpu().numpy(), K, filt)
            on_dev = s.device == x.device and rows.device == x.device
            if not (on_dev and np.array_equal(rows.cpu().numpy(), wr) and np.array_equal(s.cpu().numpy(), ws)):
                bad.append(f"{dtype} {'filtered' if filt else 'unfiltered'}")
    say(not bad, "torch in place == numpy (f32/f16/bf16 x unfiltered/filtered)", "all equal" if not bad else f"differ: {bad}")

    # 2. No copy of the query or result size on the in-place path (the host-copy path, traced
    # the same way, shows both directions).
    qbytes, rbytes = B * index.dim * 4, B * K * 4
    small = min(qbytes, rbytes)
    x = qt[:B].contiguous()
    for mode, zc in (("in_place", True), ("host_copy", False)):
        if not cuda and zc:
            continue
        fn = lambda: index.search(x, K, zero_copy=zc)  # noqa: E731
        fn()
        sync()
        path = f"{out_dir}/trace-{mode}.json"
        try:
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    fn()
                sync()
            prof.export_chrome_trace(path)
            m = memcpys(path)
            big = [c for c in m if c[1] >= small]
            r[f"memcpy_{mode}"] = {"count": len(m), "bytes": sorted({b for _, b in m}), "at_least_result_size": big[:20]}
        except Exception as e:  # profiler unavailable: the timings below still tell
            r[f"memcpy_{mode}"] = f"unavailable: {e}"
    mi = r.get("memcpy_in_place")
    if isinstance(mi, dict):
        hc = r.get("memcpy_host_copy")
        say(not mi["at_least_result_size"], "profiler: no memcpy >= result size in place",
            f"in place {mi['count']} copies of sizes {mi['bytes']} over 5 calls; host copy path: {hc if isinstance(hc, str) else len(hc['at_least_result_size'])} large copies (query {qbytes} B, results {rbytes}+{2 * rbytes} B)")

    def timed(fn, n=50):
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return (time.perf_counter() - t0) / n * 1e3
    host = q[:B].copy()
    r["ms_in_place"] = timed(lambda: index.search(x, K)) if cuda else None
    r["ms_host_copy"] = timed(lambda: index.search(x, K, zero_copy=False))
    r["ms_numpy"] = timed(lambda: index.search(host, K))
    r["ms_copy_queries_d2h"] = timed(lambda: x.cpu())
    say(True, "ms per B=256 call", f"in place {r['ms_in_place']}, host copy {r['ms_host_copy']:.3f}, numpy {r['ms_numpy']:.3f}, queries D2H alone {r['ms_copy_queries_d2h']:.3f}")

    # 3. A toy two-tower model ending in retrieval: forward, loss over the retrieved items'
    # embeddings (the item tower: the catalog's vectors), backward through the user tower.
    d = index.dim
    items = torch.from_numpy(np.load(vectors_path, mmap_mode="r")[:].astype(np.float16)).to(dev)

    class TwoTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, d))
            self.retrieve = st.IndexModule(index, k=K)

        def forward(self, feats, filters=None):
            u = F.normalize(self.user(feats), dim=-1)
            scores, rows = self.retrieve(u, filters)
            return u, scores, rows

    m = TwoTower().to(dev)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    feats = torch.randn(B, 32, device=dev)
    u, s2, r2 = m(feats, fb)
    valid = r2 >= 0
    cand = items[r2.clamp(min=0)].float()                     # [B, K, D]
    logits = (u.unsqueeze(1) * cand).sum(-1).masked_fill(~valid, float("-inf"))
    loss = F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=dev))
    opt.zero_grad()
    loss.backward()
    g = [p.grad for p in m.user.parameters()]
    grads_ok = all(t is not None and bool(torch.isfinite(t).all()) for t in g) and any(float(t.abs().sum()) > 0 for t in g)
    opt.step()
    es, er = index.search(u.detach().cpu().numpy(), K, fb)
    same = bool(np.array_equal(r2.cpu().numpy(), er))
    r["two_tower"] = {"loss": float(loss), "grads_ok": grads_ok, "rows_match_numpy": same, "outputs_on": str(r2.device), "requires_grad_scores": bool(s2.requires_grad)}
    with torch.no_grad():
        r["two_tower_forward_ms"] = timed(lambda: m(feats), n=20)
    say(grads_ok and same and r2.device == feats.device, "two-tower forward + backward", json.dumps(r["two_tower"]))

    # 4. QPS with torch tensors in and out.
    r["torch_qps_b256"] = qps(lambda a, b: index.search(a, K, b), qt, [], sync=sync)
    return r


def main():
    out_dir, path, qpath, mix, cli, evalj, vectors = sys.argv[1:8]
    device = os.environ.get("SILICA_PY_DEVICE", "cuda")
    ix = silica.Index.load(path, device=device)
    q = np.load(qpath).astype(np.float32)
    f = filters_of(mix)
    report["index"] = repr(ix)
    identity_vs_cli(ix, q, f, cli)
    try:
        rust = json.load(open(evalj))["qps"]
    except Exception as e:
        rust = None
        say(False, "rust eval", f"no QPS: {e}")
    py = qps(lambda a, b: ix.search(a, K), q, [])
    report.update(rust_eval_qps_b256=rust, python_numpy_qps_b256=py)
    if rust:
        say(py / rust >= 0.9, "QPS numpy in/out vs rust eval at B=256 (at most 10% slower)", f"python {py:.0f} vs rust {rust:.0f} (ratio {py / rust:.3f})")
    report["python_qps_b256_4_threads"] = threaded_qps(ix, q)
    say(True, "QPS numpy, 4 threads", f"{report['python_qps_b256_4_threads']:.0f}")
    try:
        import torch  # noqa: F401
        t = torch_checks(ix, q, f, out_dir, vectors)
        report["torch"] = t
        if rust:
            say(t["torch_qps_b256"] / rust >= 0.9, "QPS torch CUDA in/out (in place) vs rust eval at B=256 (at most 10% slower)",
                f"python {t['torch_qps_b256']:.0f} vs rust {rust:.0f} (ratio {t['torch_qps_b256'] / rust:.3f})")
    except ImportError as e:
        say(False, "torch", f"not importable: {e}")
    except Exception as e:
        import traceback
        traceback.print_exc()
        say(False, "torch", f"{type(e).__name__}: {e}")
    json.dump(report, open(f"{out_dir}/python-h200.json", "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
