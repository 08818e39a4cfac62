"""The Python package on a GPU host (run by scripts/python-h200.sh, which installs the wheel
and builds the indexes). For each index given:

1. identity: Index.load(device="cuda").search == `silica search --backend cuda` (rows, ids,
   scores, bit for bit);
2. QPS from Python at B=256 (numpy in, numpy out), the same loop `silica eval --batch 256`
   times (same queries, filters, k, default nprobe), against the figure `silica eval` printed;
3. torch: IndexModule on CUDA tensors in and out (time per call split into the copies and
   the search, torch.profiler's memcpy events), IndexModule at the end of a toy two-tower
   model, and concurrent searches from 4 threads (the GIL is released).

    python3 scripts/python-h200.py OUT NAME INDEX QUERIES.npy FILTERS.jsonl CLI_RESULTS.jsonl EVAL.json [NAME ...]
"""

import json
import os
import sys
import threading
import time

import numpy as np

import silica

B, K = 256, 10


def filters_of(path):
    return [json.loads(l).get("filter") or "" for l in open(path).read().splitlines()]


def python_qps(index, q, f, secs=2.0):
    """The loop of eval::measure_qps: all queries in batches of B, passes for >= secs."""
    def one_pass():
        for s in range(0, len(q), B):
            index.search(q[s:s + B], K, f[s:s + B] if f else None)
    one_pass()
    t0, passes = time.perf_counter(), 0
    while time.perf_counter() - t0 < secs:
        one_pass()
        passes += 1
    return passes * len(q) / (time.perf_counter() - t0)


def threaded_qps(index, q, f, threads=4, secs=2.0):
    stop = time.perf_counter() + secs
    counts = [0] * threads

    def work(t):
        while time.perf_counter() < stop:
            for s in range(0, len(q), B):
                index.search(q[s:s + B], K, f[s:s + B] if f else None)
                counts[t] += min(B, len(q) - s)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    [t.start() for t in ts]
    [t.join() for t in ts]
    return sum(counts) / (time.perf_counter() - t0)


def identity(index, q, f, cli_path):
    cli = [json.loads(l) for l in open(cli_path).read().splitlines()]
    scores, rows = index.search(q, K, f or None)
    ids = index.ids(rows)
    bad = 0
    for i, r in enumerate(cli):
        n = len(r["rows"])
        same = rows[i, :n].tolist() == r["rows"] and ids[i][:n] == r["ids"] and scores[i, :n].tolist() == [float(np.float32(s)) for s in r["scores"]]
        bad += not same
    return {"queries": len(cli), "differing": bad}


def torch_checks(index, q, f):
    import torch
    import silica.torch as st

    out = {}
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # cpu: a smoke test
    out["device"] = str(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    mod = st.IndexModule(index, k=K)
    qt = torch.from_numpy(q[:B].copy()).to(dev)
    fb = f[:B] if f else None
    scores, rows = mod(qt, fb)
    sync()
    ref_s, ref_r = index.search(q[:B], K, fb)
    out["outputs_on_input_device"] = scores.device == qt.device and rows.device == qt.device
    out["cuda_matches_numpy"] = bool(np.array_equal(rows.cpu().numpy(), ref_r) and np.array_equal(scores.cpu().numpy(), ref_s))

    # Where the time of one call goes: D2H of the queries, the search, H2D of the results.
    def timed(fn, n=50):
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return (time.perf_counter() - t0) / n * 1e3
    host = q[:B].copy()
    out["ms_module_cuda_in_out"] = timed(lambda: mod(qt, fb))
    out["ms_search_numpy"] = timed(lambda: index.search(host, K, fb))
    out["ms_copy_queries_d2h"] = timed(lambda: qt.cpu())
    out["ms_copy_results_h2d"] = timed(lambda: (torch.from_numpy(ref_s).to(dev), torch.from_numpy(ref_r).to(dev)))
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            mod(qt, fb)
            sync()
        mem = [e for e in prof.key_averages() if "memcpy" in e.key.lower() or "Memcpy" in e.key]
        out["profiler_memcpy"] = {e.key: e.count for e in mem}
    except Exception as e:  # profiler unavailable: the timing above still tells
        out["profiler_memcpy"] = f"unavailable: {e}"

    # A toy two-tower model ending in retrieval: user features -> user tower -> index.
    d = index.dim

    class TwoTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, d))
            self.retrieve = st.IndexModule(index, k=K)

        def forward(self, feats, filters=None):
            u = torch.nn.functional.normalize(self.user(feats), dim=-1)
            return self.retrieve(u, filters)

    m = TwoTower().to(dev).eval()
    feats = torch.randn(B, 32, device=dev)
    with torch.no_grad():
        s2, r2 = m(feats)
        u = torch.nn.functional.normalize(m.user(feats), dim=-1).cpu().numpy()
    es, er = index.search(u, K)
    out["two_tower_ok"] = bool(s2.shape == (B, K) and r2.device == feats.device and np.array_equal(r2.cpu().numpy(), er))
    out["two_tower_ms"] = timed(lambda: m(feats), n=20)
    return out


def main():
    out_dir, args = sys.argv[1], sys.argv[2:]
    report = {"silica": silica.__version__, "devices": silica.devices()}
    for i in range(0, len(args), 6):
        name, path, qpath, fpath, cli, evalj = args[i:i + 6]
        ix = silica.Index.load(path, device=os.environ.get("SILICA_PY_DEVICE", "cuda"))
        q = np.load(qpath).astype(np.float32)
        f = filters_of(fpath)
        f = f if any(f) else []
        r = {"index": repr(ix), "queries": len(q)}
        r["identity_vs_cli"] = identity(ix, q, f, cli)
        rust = json.load(open(evalj))
        r["rust_eval_qps_b256"] = rust["qps"]
        r["python_qps_b256"] = python_qps(ix, q, f)
        r["python_over_rust"] = r["python_qps_b256"] / rust["qps"]
        r["python_qps_b256_4_threads"] = threaded_qps(ix, q, f)
        try:
            import torch
            r["torch"] = torch_checks(ix, q, f)
        except ImportError as e:
            r["torch"] = f"torch not importable: {e}"
        except Exception as e:
            r["torch"] = f"FAILED: {type(e).__name__}: {e}"
        report[name] = r
        print(f"{name}: identity {r['identity_vs_cli']}, QPS python {r['python_qps_b256']:.0f} vs rust {rust['qps']:.0f} "
              f"(ratio {r['python_over_rust']:.3f}), 4 threads {r['python_qps_b256_4_threads']:.0f}")
        print(f"{name}: torch {json.dumps(r['torch'])}")
    json.dump(report, open(f"{out_dir}/python-h200.json", "w"), indent=1)


if __name__ == "__main__":
    main()
