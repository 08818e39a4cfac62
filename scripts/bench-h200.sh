#!/usr/bin/env bash
# The whole `silica bench` on one GPU host (H200) in one call (BENCHMARKS.md, "silica bench"):
#   * the peer suite (DESIGN.md's table: N=20M, D=128, 4096 lists, random probes, k0=2048,
#     Bloom row) on each backend in $BACKENDS,
#   * the clustered recall workload (N=1M, nlist 1024, B=16, nprobe 32, k 100, recall on 16 queries),
# and leaves under $OUT (at most 8 files): tables.md, log.txt, env.txt, peer-<backend>.json,
# single-<backend>.json.
#
# From a clone (the binary built with the GPU features; only the binary is needed on the GPU
# host, no Rust):
#   cargo build --release --features cuda,wgpu
#   bash scripts/bench-h200.sh
#
# Environment [defaults]: SILICA_BIN [target/release/silica; .bin/bench/silica when that
# prebuilt copy exists], BACKENDS ["cuda wgpu cpu"], TIME_BUDGET seconds per workload [3],
# PER_BACKEND_TIMEOUT seconds [150], OUT [/tmp/silica-bench-out]; scripts/device-env.sh
# (NVRTC; a Vulkan loader from VULKAN_DEBS where the host has none). Run it from the root of
# the tree.
set -uo pipefail
if [ -z "${SILICA_BIN:-}" ] && [ -f .bin/bench/silica ]; then SILICA_BIN=.bin/bench/silica; fi
BIN=${SILICA_BIN:-target/release/silica}
BACKENDS=${BACKENDS:-cuda wgpu cpu}
TB=${TIME_BUDGET:-3}
TO=${PER_BACKEND_TIMEOUT:-150}
OUT=${OUT:-/tmp/silica-bench-out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"

. "$(dirname "$0")/device-env.sh"   # libnvrtc for cuda; Vulkan loader + NVIDIA ICD for wgpu

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  uname -a
  nproc
  free -g | head -2
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv 2>&1
  "$BIN" --version 2>&1
} > "$OUT/env.txt"
cat "$OUT/env.txt"
chmod +x "$BIN" 2>/dev/null

echo "# silica bench on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(date -u +%Y-%m-%d)" > "$OUT/tables.md"
for b in $BACKENDS; do
  echo "== $b: peer suite" | tee -a "$LOG"
  if timeout "$TO" "$BIN" bench --backend "$b" --suite peer --time-budget "$TB" --json > "$OUT/peer-$b.json" 2>> "$LOG"; then
    python3 - "$OUT/peer-$b.json" >> "$OUT/tables.md" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
clock = r["rows"][0]["report"]["clock"] if r["rows"] else "?"
print(f"\n## backend {r['backend']} ({clock} clock), N = {r['n']}, index generated in {r['gen_s']:.2f} s\n")
print("| workload | silica p50 ms | p99 ms | unique bytes | GB/s | peer ms | ratio (peer/silica) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for x in r["rows"]:
    ratio = "n/a" if x["ratio"] is None else f"{x['ratio']:.3g}x"
    print(f"| {x['name']} | {x['silica_ms_p50']:.3f} | {x['silica_ms_p99']:.3f} | {x['bytes_read']} | {x['gbps']:.1f} | {x['peer_ms']:.3f} | {ratio} |")
EOF
  else
    echo "peer suite on $b failed (rc $?), see log.txt" | tee -a "$OUT/tables.md" "$LOG"
    tail -5 "$LOG"
  fi
  echo "== $b: clustered recall workload" | tee -a "$LOG"
  if timeout "$TO" "$BIN" bench --backend "$b" --n 1000000 --dim 128 --nlist 1024 --batch 16 --nprobe 32 --k 100 \
       --clustered --recall-sample 16 --time-budget "$TB" --json > "$OUT/single-$b.json" 2>> "$LOG"; then
    python3 - "$OUT/single-$b.json" >> "$OUT/tables.md" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"\n{r['backend']}: N=1M clustered, B=16 nprobe=32 k=100: p50 {r['latency_ms_p50']:.3f} ms, p99 {r['latency_ms_p99']:.3f} ms, "
      f"{r['qps']:.0f} QPS, {r['gbps']:.1f} GB/s, recall@100 {r['recall']:.4f} ({r['clock']} clock)")
for name, s in r["stages"].items():
    if s and not s.get("given"):
        print(f"  {name}: p50 {s['latency_ms_p50']:.3f} ms, {s['bytes_read']} B, {s['gbps']:.1f} GB/s")
EOF
  else
    echo "single workload on $b failed (rc $?), see log.txt" | tee -a "$OUT/tables.md" "$LOG"
  fi
done
cat "$OUT/tables.md"
