#!/usr/bin/env bash
# Serving throughput of `silica serve --backend cuda` on one artifact, measured with the
# built-in load generator (`silica load`; the H200 host has no wrk and no Rust): closed loop
# at 16/64/256/1024 connections with JSON and binary bodies over a filtered query mix, for
# each --workers setting, plus an open-loop run at a target rate. Everything lands in $OUT
# as JSON (one report per run, /metrics after each, summary.json) and, when matplotlib is
# present, $OUT/serve-curve.png (QPS and p99 over connections).
#
#   scripts/serve-h200.sh INDEX.silica QUERIES.npy FILTERS.jsonl [SECONDS]
#
# QUERIES.npy: [Q, D] f32 query rows; FILTERS.jsonl: one {"filter": "..."} per query ("" =
# none), as `silica search --filters` reads. Environment (defaults in brackets):
#   SILICA [./target/release/silica, else ./silica]  OUT [/tmp/serve-h200]  PORT [18200]
#   CONNS ["16 64 256 1024"]  BODIES ["json binary"]  WORKERS ["1 3"]  K [10]
#   OPEN_RATE [50000] (open loop, binary, 1024 connections; 0 skips)
#   SERVE_THREADS [10] (HTTP threads of the server)  LOAD_THREADS [6] (client threads)
#   BACKEND [cuda] (cpu/wgpu for a smoke test elsewhere)
#   SERVE_FLAGS [""] (extra `silica serve` flags, e.g. "--max-batch 512 --max-wait-us 300")
#   LOAD_FLAGS [""] (extra `silica load` flags, e.g. "--nprobe 32"; default: the index's nprobe)
# Needs only the prebuilt binary (and python3 for the summary; numpy/matplotlib optional).
set -euo pipefail
index="$1"; queries="$2"; filters="$3"; secs="${4:-8}"
silica="${SILICA:-}"
if [ -z "$silica" ]; then
  if [ -x ./target/release/silica ]; then silica=./target/release/silica; else silica=./silica; fi
fi
out="${OUT:-/tmp/serve-h200}"; mkdir -p "$out"
port="${PORT:-18200}"; conns="${CONNS:-16 64 256 1024}"; bodies="${BODIES:-json binary}"
workers_list="${WORKERS:-1 3}"; k="${K:-10}"; open_rate="${OPEN_RATE:-50000}"
serve_threads="${SERVE_THREADS:-10}"; load_threads="${LOAD_THREADS:-6}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
nproc > "$out/nproc.txt"

load() { # label connections body [extra load flags]
  local label=$1 c=$2 body=$3; shift 3
  "$silica" load --url "http://127.0.0.1:$port" --queries "$queries" --filters "$filters" --k "$k" \
    --connections "$c" --duration "$secs" --warmup 3 --body "$body" --threads "$load_threads" ${LOAD_FLAGS:-} "$@" \
    --out "$out/load-$label.json" > /dev/null 2> "$out/load-$label.err" || echo "load $label failed: $(tail -1 "$out/load-$label.err")"
  curl -s "http://127.0.0.1:$port/metrics" > "$out/metrics-$label.txt" 2>/dev/null || true
  python3 -c "import json; r=json.load(open('$out/load-$label.json')); l=r['latency_ms']; print(f\"$label: {r['qps']:.0f} QPS p50 {l['p50']:.2f} p99 {l['p99']:.2f} p999 {l['p999']:.2f} ms errors {r['errors']} batch {r['mean_batch_queries']}\")" 2>/dev/null || true
}

for w in $workers_list; do
  log="$out/serve-w$w.log"
  # shellcheck disable=SC2086
  "$silica" serve --index "$index" --addr 127.0.0.1:$port --backend "${BACKEND:-cuda}" --workers "$w" \
    --threads "$serve_threads" --max-queue 65536 ${SERVE_FLAGS:-} > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do grep -q listening "$log" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.5; done
  if ! grep -q listening "$log"; then echo "server did not start:"; tail -5 "$log"; kill $pid 2>/dev/null || true; exit 1; fi
  echo "workers $w: $(grep -m1 listening "$log")"
  for c in $conns; do
    for body in $bodies; do load "w$w-c$c-$body" "$c" "$body"; done
  done
  if [ "$open_rate" != 0 ]; then load "w$w-open$open_rate-binary" 1024 binary --mode open --rate "$open_rate"; fi
  kill $pid; wait $pid 2>/dev/null || true
done

python3 - "$out" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
runs = []
for p in sorted(glob.glob(f"{out}/load-*.json")):
    r = json.load(open(p))
    r["label"] = os.path.basename(p)[5:-5]
    m = re.match(r"w(\d+)-", r["label"])
    r["workers"] = int(m.group(1)) if m else None
    runs.append(r)
json.dump(runs, open(f"{out}/summary.json", "w"), indent=1)
print(f"{'run':28} {'QPS':>8} {'p50':>7} {'p99':>7} {'p999':>7}  errors")
for r in runs:
    l = r["latency_ms"]
    print(f"{r['label']:28} {r['qps']:8.0f} {l['p50']:7.2f} {l['p99']:7.2f} {l['p999']:7.2f}  {r['errors']}")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except Exception as e:
    print(f"no PNG (matplotlib: {e})")
    sys.exit(0)
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
for w in sorted({r["workers"] for r in runs if r["mode"] == "closed"}):
    for body in ("json", "binary"):
        pts = sorted((r["connections"], r["qps"], r["latency_ms"]["p99"]) for r in runs if r["mode"] == "closed" and r["workers"] == w and r["body"] == body)
        if not pts:
            continue
        c, q, p = zip(*pts)
        a.plot(c, q, marker="o", label=f"{body}, workers {w}")
        b.plot(c, p, marker="o", label=f"{body}, workers {w}")
for ax, t in ((a, "QPS"), (b, "p99 latency (ms)")):
    ax.set_xscale("log", base=2); ax.set_xlabel("connections (closed loop)"); ax.set_title(t); ax.grid(alpha=.3)
b.set_yscale("log"); a.legend()
fig.suptitle("silica serve --backend cuda, filtered query mix")
fig.tight_layout(); fig.savefig(f"{out}/serve-curve.png", dpi=120)
print(f"wrote {out}/serve-curve.png")
PY
