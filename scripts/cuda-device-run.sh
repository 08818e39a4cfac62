#!/usr/bin/env bash
# The CUDA backend on one GPU (H200) in one call, prebuilt binaries only: correctness, then
# every timing. Steps (arguments, default all):
#   golden    tests/cuda_golden.rs: CUDA stages vs the CPU reference, bit for bit.
#   memcheck  compute-sanitizer memcheck over the small golden tests (exit 0 = no error).
#   peer      examples/cuda_peer: the peer table (DESIGN.md) against the in-process peer kernels.
#   bench     `silica bench --backend cuda --suite peer --json` (BENCHMARKS.md's peer rows).
#   ncu       Nsight Compute sections of the scan kernels (NCU_KERNELS regex, NCU_SKIP,
#             NCU_COUNT, NCU_SCANS for `cuda_peer --profile-scan`); not part of all.
# From a clone (build on a machine with the toolchain):
#   cargo test --release --no-run --test cuda_golden && cargo build --release --example cuda_peer && cargo build --release
#   bash scripts/cuda-device-run.sh golden memcheck peer bench
# Binaries [defaults]: $BIN/NAME when BIN is set (a folder of copies: cuda_golden, cuda_peer,
# silica, optional ptx/*.ptx used when libnvrtc cannot be found), else the build outputs
# (newest target/release/deps/cuda_golden-*, target/release/examples/cuda_peer,
# target/release/silica). OUT [/tmp/out]: logs, peer.json, bench-peer.json, ncu.txt.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
has() { for s in "${steps[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

. "$(dirname "$0")/device-env.sh"   # libnvrtc under the name cudarc (cuda-12080 bindings) dlopens
pick() { # name fallback
  if [ -n "${BIN:-}" ]; then echo "$BIN/$1"; else echo "$2"; fi
}
golden=$(pick cuda_golden "$(ls -t target/release/deps/cuda_golden-* 2>/dev/null | grep -v '\.d$' | head -1)")
peer=$(pick cuda_peer target/release/examples/cuda_peer)
silica=$(pick silica target/release/silica)
[ -n "${BIN:-}" ] && [ -d "$BIN/ptx" ] && export SILICA_CUDA_PTX_DIR=$BIN/ptx
echo "libnvrtc: ${NVRTC_FOUND:-none}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
chmod +x "$golden" "$peer" "$silica" 2>/dev/null
rc=0
if has golden; then
  echo "== golden (CUDA vs CPU) =="
  "$golden" --test-threads=2 2>&1 | tee "$OUT"/golden.log | grep -E "^test |test result|panicked|SKIP" ; [ ${PIPESTATUS[0]} -eq 0 ] || rc=1
fi
if has memcheck; then
  echo "== compute-sanitizer memcheck (small tests) =="
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 99 "$golden" small_ --test-threads=1 > "$OUT"/memcheck.log 2>&1; m=$?
  grep -E "ERROR SUMMARY|test result|Invalid|out of bounds" "$OUT"/memcheck.log | sort | uniq -c | head -20
  echo "memcheck exit: $m"; [ $m -eq 0 ] || rc=1
fi
if has peer; then
  echo "== peer benchmark =="
  "$peer" ${PEER_ARGS:-} --json "$OUT"/peer.json 2>&1 | tee "$OUT"/peer.log | tail -40
  [ ${PIPESTATUS[0]} -eq 0 ] || rc=1
fi
if has bench; then
  echo "== silica bench --backend cuda --suite peer =="
  "$silica" bench --backend cuda --suite peer --json > "$OUT"/bench-peer.json 2> "$OUT"/bench-peer.log; b=$?
  tail -25 "$OUT"/bench-peer.log; echo "bench exit: $b"; [ $b -eq 0 ] || rc=1
fi
if has ncu; then
  echo "== ncu (scan kernels) =="
  timeout 400 ncu --clock-control none --target-processes all -k "regex:${NCU_KERNELS:-scan_main_fast|scan_sample_fast|group_all|scan_threshold|scan_select}" \
    --launch-skip ${NCU_SKIP:-0} --launch-count ${NCU_COUNT:-15} \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section InstructionStats --section SourceCounters \
    "$peer" --profile-scan ${NCU_SCANS:-256:64:4,256:64:1,16:64:4} > "$OUT"/ncu.txt 2>&1; echo "ncu exit: $?"
  grep -E "^  [a-z_]+|Duration|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slot|Executed Ipc|L1/TEX Hit|L2 Hit|DRAM Throughput|No Eligible|One or More" "$OUT"/ncu.txt | head -150
fi
exit $rc
