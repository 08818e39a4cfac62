#!/usr/bin/env bash
# One device call for the CUDA backend (H200): correctness, then every timing.
# Expects prebuilt binaries in $BIN (default .bin/cuda): cuda_golden (test binary),
# cuda_peer (example), ptx/*.ptx (fallback when libnvrtc cannot be found).
#   bash .bin/cuda/run.sh [golden|memcheck|peer|all]...
set -uo pipefail
BIN=${BIN:-.bin/cuda}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
has() { for s in "${steps[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

# cudarc (cuda-12080 bindings) dlopens libnvrtc.so / libnvrtc.so.12; the image has CUDA 13:
# point an unversioned name at whatever libnvrtc.so.* exists.
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
if [ -n "$lib" ]; then
  ln -sf "$lib" $NV/libnvrtc.so
  export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fi
export SILICA_CUDA_PTX_DIR=$BIN/ptx
echo "libnvrtc: ${lib:-none}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
chmod +x $BIN/cuda_golden $BIN/cuda_peer 2>/dev/null
rc=0
if has golden; then
  echo "== golden (CUDA vs CPU) =="
  $BIN/cuda_golden --test-threads=2 2>&1 | tee $OUT/golden.log | grep -E "^test |test result|panicked|SKIP" ; [ ${PIPESTATUS[0]} -eq 0 ] || rc=1
fi
if has memcheck; then
  echo "== compute-sanitizer memcheck (small tests) =="
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 99 $BIN/cuda_golden small_ --test-threads=1 > $OUT/memcheck.log 2>&1; m=$?
  grep -E "ERROR SUMMARY|test result|Invalid|out of bounds" $OUT/memcheck.log | sort | uniq -c | head -20
  echo "memcheck exit: $m"; [ $m -eq 0 ] || rc=1
fi
if has peer; then
  echo "== peer benchmark =="
  $BIN/cuda_peer ${PEER_ARGS:-} --json $OUT/peer.json 2>&1 | tee $OUT/peer.log | tail -40
  [ ${PIPESTATUS[0]} -eq 0 ] || rc=1
fi
if has bench; then
  echo "== silica bench --backend cuda --suite peer =="
  chmod +x $BIN/silica
  $BIN/silica bench --backend cuda --suite peer --json > $OUT/bench-peer.json 2> $OUT/bench-peer.log; b=$?
  tail -25 $OUT/bench-peer.log; echo "bench exit: $b"; [ $b -eq 0 ] || rc=1
fi
if has ncu; then
  echo "== ncu (scan kernels) =="
  timeout 400 ncu --clock-control none --target-processes all -k "regex:${NCU_KERNELS:-scan_main_fast|scan_sample_fast|group_all|scan_threshold|scan_select}" \
    --launch-skip ${NCU_SKIP:-0} --launch-count ${NCU_COUNT:-15} \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section InstructionStats --section SourceCounters \
    $BIN/cuda_peer --profile-scan ${NCU_SCANS:-256:64:4,256:64:1,16:64:4} > $OUT/ncu.txt 2>&1; echo "ncu exit: $?"
  grep -E "^  [a-z_]+|Duration|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slot|Executed Ipc|L1/TEX Hit|L2 Hit|DRAM Throughput|No Eligible|One or More" $OUT/ncu.txt | head -150
fi
exit $rc
