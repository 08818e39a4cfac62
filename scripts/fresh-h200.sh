#!/usr/bin/env bash
# Freshness at GPU speed (issue 11): serving QPS of `silica serve` while an upsert stream
# writes new items, per stream rate, with write-acknowledgement latency, server RSS and
# device memory over time, and a k = 1 self-find check of acknowledged items.
#
#   scripts/fresh-h200.sh INDEX.silica QUERIES.npy FILTERS.jsonl
#
# For each rate in RATES (items/s; 0 = no writes): copy INDEX to $OUT/work.silica (writes and
# compactions change the copy, never INDEX), start `silica serve` on it, run `silica load`
# closed loop (CONNS connections, filtered query mix) for SECS seconds with the stream posting
# batches of BATCH new random unit vectors (`--upsert-rate`), while a sampler writes every
# second: time, server RSS (MB), GPU memory used (MB, nvidia-smi), fresh rows, compactions,
# server CPU seconds (user + system) and searches answered so far. Stream ids are unique per
# rate (`r<RATE>-<i>`), so items accumulate as in production. The stream posts on
# UPSERT_CONNS connections at once (batch j on connection j mod UPSERT_CONNS, open loop).
# Afterwards the load generator looks up CHECK acknowledged items (all: every one) by their
# own vector (k = 1, 64 per request).
#
# Server CPU per search (`cpu_ms_per_search`, writer and HTTP included; over the measured
# window and over its last 5 s) is the capacity figure on a shared machine, where QPS
# swings with other tenants' load: QPS x no-writes CPU / stream CPU is what an unshared
# machine of the same cores would lose to the stream.
#
# Environment (defaults in brackets):
#   SILICA [./target/release/silica, else ./silica]   OUT [/tmp/fresh-h200]   PORT [18230]
#   BACKEND [cuda]  RATES ["0 2000 10000"]  SECS [60]  WARMUP [5]  CONNS [64]  BATCH [100]
#   K [10]  CHECK [all]  UPSERT_CONNS [8]  SERVE_THREADS [10]  LOAD_THREADS [6]  WINDOW [5]
#   SERVE_FLAGS [""] (e.g. "--compact-threshold 0" to keep every item fresh, "--fresh-tail 4096")
#   LOAD_FLAGS [""] (e.g. "--nprobe 32"; default: the index's calibrated nprobe)
# Writes $OUT/summary.json (one row per rate: qps, window_qps, p99, ack p99, self-find, RSS and
# GPU memory min/max, write_phases: count / mean ms / p99 bucket bound per step of the write
# path from the server's silica_write_phase_seconds) and per rate load-*.json, samples-*.csv, serve-*.log.
# Needs only the prebuilt binary, bash, curl, python3 (no numpy), nvidia-smi (optional).
set -euo pipefail
index="$1"; queries="$2"; filters="$3"
silica="${SILICA:-}"
if [ -z "$silica" ]; then
  if [ -x ./target/release/silica ]; then silica=./target/release/silica; else silica=./silica; fi
fi
out="${OUT:-/tmp/fresh-h200}"; mkdir -p "$out"
port="${PORT:-18230}"; backend="${BACKEND:-cuda}"; rates="${RATES:-0 2000 10000}"
secs="${SECS:-60}"; warmup="${WARMUP:-5}"; conns="${CONNS:-64}"; batch="${BATCH:-100}"
k="${K:-10}"; check="${CHECK:-all}"; window="${WINDOW:-5}"; upsert_conns="${UPSERT_CONNS:-8}"
[ "$check" = all ] && check=1000000000
serve_threads="${SERVE_THREADS:-10}"; load_threads="${LOAD_THREADS:-6}"
work="$out/work.silica"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
echo "$(nproc) cores; $("$silica" --version 2>/dev/null || echo silica)" > "$out/host.txt"

sampler() { # pid csv: one line per second until the server exits
  local pid=$1 csv=$2 t0; t0=$(date +%s.%N)
  echo "t_s,rss_mb,gpu_mem_mb,fresh_rows,items,compactions,epoch_s,cpu_s,searches" > "$csv"
  local hz; hz=$(getconf CLK_TCK)
  while kill -0 "$pid" 2>/dev/null; do
    local rss gpu stats fr it co cpu searches now
    now=$(date +%s.%N)
    cpu=$(awk -v hz="$hz" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo "")
    searches=$(curl -s --max-time 1 "http://127.0.0.1:$port/metrics" | awk '/^silica_requests_total\{route="search",status="200"\}/ {print $2}' || echo "")
    rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo "")
    gpu=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' ' || echo "")
    stats=$(curl -s --max-time 1 "http://127.0.0.1:$port/v1/stats" || echo "{}")
    fr=$(echo "$stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s.get("fresh_rows",""), s.get("items",""), s.get("compactions",""))' 2>/dev/null || echo "  ")
    read -r fr it co <<< "$fr"
    echo "$(awk -v a="$t0" -v b="$now" 'BEGIN {printf "%.1f", b - a}'),$rss,$gpu,$fr,$it,$co,$now,$cpu,$searches" >> "$csv"
    sleep 1
  done
}

for rate in $rates; do
  label="r$rate"
  rm -f "$work" "$work.wal" "$work.wal.next" "$work.lock"
  cp "$index" "$work"
  log="$out/serve-$label.log"
  # shellcheck disable=SC2086
  "$silica" serve --index "$work" --addr 127.0.0.1:$port --backend "$backend" --threads "$serve_threads" \
    --max-queue 65536 ${SERVE_FLAGS:-} > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do grep -q listening "$log" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.5; done
  if ! grep -q listening "$log"; then echo "server did not start:"; tail -5 "$log"; kill $pid 2>/dev/null || true; exit 1; fi
  sampler "$pid" "$out/samples-$label.csv" &
  spid=$!
  stream=()
  if [ "$rate" != 0 ]; then stream=(--upsert-rate "$rate" --upsert-batch "$batch" --upsert-connections "$upsert_conns" --upsert-prefix "r$rate-" --upsert-check "$check"); fi
  date +%s.%N > "$out/load-start-$label.txt"
  # shellcheck disable=SC2086
  "$silica" load --url "http://127.0.0.1:$port" --queries "$queries" --filters "$filters" --k "$k" \
    --connections "$conns" --duration "$secs" --warmup "$warmup" --threads "$load_threads" --window "$window" \
    "${stream[@]}" ${LOAD_FLAGS:-} --out "$out/load-$label.json" > /dev/null 2> "$out/load-$label.err" \
    || echo "load $label failed: $(tail -1 "$out/load-$label.err")"
  curl -s "http://127.0.0.1:$port/v1/stats" > "$out/stats-$label.json" || true
  curl -s "http://127.0.0.1:$port/metrics" > "$out/metrics-$label.txt" || true
  kill $pid; wait $pid 2>/dev/null || true
  wait $spid 2>/dev/null || true
  python3 - "$out" "$label" <<'PY' || true
import json, sys
out, label = sys.argv[1], sys.argv[2]
r = json.load(open(f"{out}/load-{label}.json"))
u = r.get("upserts") or {}
print(f"{label}: {r['qps']:.0f} QPS (windows {[round(x) for x in r['window_qps']]}), p99 {r['latency_ms']['p99']:.2f} ms, errors {r['errors']}"
      + (f"; acked {u['acked']} ({u['acked_per_s']:.0f}/s), ack p50 {u['ack_ms']['p50']:.1f} p99 {u['ack_ms']['p99']:.1f} ms, self-find {u['self_find_found']}/{u['self_find_checked']}" if u else ""))
PY
done
rm -f "$work" "$work.wal" "$work.wal.next" "$work.lock"

python3 - "$out" "$rates" "$warmup" <<'PY'
import csv, json, sys
out, rates = sys.argv[1], sys.argv[2].split()
rows = []
base = None; base_cpu = None
for rate in rates:
    label = f"r{rate}"
    try:
        r = json.load(open(f"{out}/load-{label}.json"))
    except Exception as e:
        rows.append({"rate": int(rate), "error": str(e)}); continue
    s = list(csv.DictReader(open(f"{out}/samples-{label}.csv")))
    col = lambda k: [float(x[k]) for x in s if x.get(k) not in (None, "")]
    rss, gpu = col("rss_mb"), col("gpu_mem_mb")
    # Server CPU per search between two instants (nearest samples), in ms.
    t_start = float(open(f"{out}/load-start-{label}.txt").read())
    def cpu_per_search(a, b):
        pts = [(float(x["epoch_s"]), float(x["cpu_s"]), float(x["searches"])) for x in s if x.get("cpu_s") and x.get("searches")]
        if len(pts) < 2:
            return None
        pa = min(pts, key=lambda p: abs(p[0] - a)); pb = min(pts, key=lambda p: abs(p[0] - b))
        return 1e3 * (pb[1] - pa[1]) / (pb[2] - pa[2]) if pb[2] > pa[2] else None
    u = r.get("upserts") or {}
    warm = float(sys.argv[3]); t0 = t_start + warm; t1 = t0 + r["duration_s"]
    cpu_all, cpu_last = cpu_per_search(t0, t1), cpu_per_search(t1 - 5, t1)
    if int(rate) == 0:
        base = r["qps"]; base_cpu = cpu_all
    rows.append({
        "rate": int(rate), "qps": r["qps"], "window_qps": r["window_qps"], "p99_ms": r["latency_ms"]["p99"],
        "qps_vs_no_writes": (r["qps"] / base) if base else None,
        "last_window_vs_no_writes": (r["window_qps"][-1] / base) if base and r["window_qps"] else None,
        "errors": r["errors"], "acked": u.get("acked"), "acked_per_s": u.get("acked_per_s"),
        "ack_p50_ms": (u.get("ack_ms") or {}).get("p50"), "ack_p99_ms": (u.get("ack_ms") or {}).get("p99"),
        "self_find": f"{u.get('self_find_found')}/{u.get('self_find_checked')}" if u else None,
        "self_find_misses": u.get("self_find_misses"),
        "rss_mb_first_last_max": [rss[0], rss[-1], max(rss)] if rss else None,
        "gpu_mem_mb_first_last_max": [gpu[0], gpu[-1], max(gpu)] if gpu else None,
        "fresh_rows_max": max(col("fresh_rows"), default=None), "compactions": max(col("compactions"), default=None),
        "cpu_ms_per_search": cpu_all, "cpu_ms_per_search_last_5s": cpu_last,
        "capacity_vs_no_writes_last_5s": (base_cpu / cpu_last) if base and base_cpu and cpu_last else None,
    })
def phases(label):
    """Write-path phases from the server's /metrics at the end of a run: count, mean ms and
    the bucket bound holding the p99 (silica_write_phase_seconds)."""
    import re
    try:
        text = open(f"{out}/metrics-{label}.txt").read()
    except OSError:
        return None
    got = {}
    for m in re.finditer(r'^silica_write_phase_seconds_(bucket|sum|count)\{phase="([a-z_]+)"(?:,le="([^"]+)")?\} (\S+)$', text, re.M):
        kind, ph, le, v = m.group(1), m.group(2), m.group(3), float(m.group(4))
        g = got.setdefault(ph, {"buckets": []})
        if kind == "bucket":
            g["buckets"].append((float("inf") if le == "+Inf" else float(le), v))
        else:
            g[kind] = v
    res = {}
    for ph, g in got.items():
        n = g.get("count", 0)
        if not n:
            continue
        p99 = next((le for le, c in g["buckets"] if c >= 0.99 * n), None)
        res[ph] = {"count": int(n), "mean_ms": round(1e3 * g.get("sum", 0) / n, 3), "p99_le_ms": None if p99 in (None, float("inf")) else 1e3 * p99}
    return res
for x in rows:
    if "error" not in x:
        x["write_phases"] = phases(f"r{x['rate']}")
json.dump({"rows": rows}, open(f"{out}/summary.json", "w"), indent=1)
for x in rows:
    print(json.dumps(x))
print(f"wrote {out}/summary.json")
PY
