#!/usr/bin/env bash
# Per-kernel device times of the wgpu backend on the H200, one workload per process so that
# each profile belongs to one peer-table row (SILICA_WGPU_PROFILE=1 prints them on exit).
# Rows: the peer suite's B=16/nprobe 64, B=256/nprobe 64 and Bloom rows (N=20M, D=128).
# From a clone, as scripts/bench-h200.sh (same binary, same environment):
#   cargo build --release --features cuda,wgpu && bash scripts/wgpu-profile-h200.sh
# Environment [defaults]: SILICA_BIN [target/release/silica; .bin/bench/silica when present],
# BACKENDS [wgpu], TIME_BUDGET [1], OUT [/tmp/silica-profile-out].
# Leaves profile-<backend>-<row>.txt (stderr: the profile) and profile-<backend>-<row>.json
# (the bench report) under $OUT.
set -uo pipefail
if [ -z "${SILICA_BIN:-}" ] && [ -f .bin/bench/silica ]; then SILICA_BIN=.bin/bench/silica; fi
BIN=${SILICA_BIN:-target/release/silica}
OUT=${OUT:-/tmp/silica-profile-out}
TB=${TIME_BUDGET:-1}
mkdir -p "$OUT"
. "$(dirname "$0")/device-env.sh"   # Vulkan loader + NVIDIA ICD for wgpu
chmod +x "$BIN" 2>/dev/null

peer="--n 20000000 --dim 128 --nlist 4096 --random-probes --k 2048 --time-budget $TB --json"
declare -A rows=(
  [b16-np64]="--batch 16 --nprobe 64"
  [b256-np64]="--batch 256 --nprobe 64"
  [bloom]="--batch 16 --nprobe 4096 --filter-pass 0.1 --filter-terms 3:3"
)
for name in b16-np64 b256-np64 bloom; do
  for b in ${BACKENDS:-wgpu}; do
    echo "== $b $name"
    SILICA_WGPU_PROFILE=1 timeout 120 "$BIN" bench --backend "$b" $peer ${rows[$name]} \
      > "$OUT/profile-$b-$name.json" 2> "$OUT/profile-$b-$name.txt"
    echo "rc $?"
    python3 - "$OUT/profile-$b-$name.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("no report:", e); sys.exit()
print(f"p50 {r['latency_ms_p50']:.3f} ms  {r['gbps']:.0f} GB/s")
for name, s in r["stages"].items():
    if s and not s.get("given"):
        print(f"  {name}: p50 {s['latency_ms_p50']:.3f} ms, {s['bytes_read']} B, {s['gbps']:.1f} GB/s")
EOF
    grep -A30 "wgpu profile" "$OUT/profile-$b-$name.txt" | head -30
  done
done
