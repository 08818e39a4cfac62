#!/usr/bin/env bash
# Load test of `silica serve` on the Debian index with wrk: QPS and latency at 1, 16 and
# 128 concurrent connections, and the executor batch-size distribution from /metrics.
# A fresh server per concurrency level, so each histogram belongs to one run.
#   scripts/serve-bench.sh INDEX.silica [SECONDS] [extra serve flags...]
# Needs: target/release/silica, wrk (apt-get install -y wrk), python3 + numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
index="$1"; secs="${2:-15}"; shift 2 || shift $#
out="${OUT:-/tmp/serve-bench}"; mkdir -p "$out"
python3 scripts/serve-load.py data/debian "$out/debian.lua" >/dev/null
port=18181
for c in 1 16 128; do
  t=$(( c < 2 ? 1 : 2 ))
  ./target/release/silica serve --index "$index" --addr 127.0.0.1:$port "$@" >"$out/serve-$c.out" 2>"$out/serve-$c.err" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out/serve-$c.out" 2>/dev/null && break; sleep 0.1; done
  # Warm-up, then the measured run.
  wrk -t$t -c$c -d2s -s "$out/debian.lua" http://127.0.0.1:$port/v1/search >/dev/null
  curl -s http://127.0.0.1:$port/metrics >"$out/metrics-$c-before.txt"
  wrk -t$t -c$c -d${secs}s --latency -s "$out/debian.lua" http://127.0.0.1:$port/v1/search | tee "$out/wrk-$c.txt"
  curl -s http://127.0.0.1:$port/metrics >"$out/metrics-$c.txt"
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$out/metrics-$c-before.txt" "$out/metrics-$c.txt" <<'PY'
import sys, re
def buckets(path):
    b = {}
    for l in open(path):
        m = re.match(r'silica_batch_queries_bucket\{le="([^"]+)"\} (\d+)', l)
        if m: b[m.group(1)] = int(m.group(2))
    return b
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
prev, rows, calls = 0, [], b["+Inf"] - a["+Inf"]
for le in b:
    cum = b[le] - a.get(le, 0)
    if cum - prev: rows.append(f"<={le}: {100*(cum-prev)/calls:.1f}%")
    prev = cum
print(f"executor calls {calls}; queries per call: " + ", ".join(rows))
PY
done
