#!/usr/bin/env bash
# One device call for the GPU build stage (CudaCompute, cuda/kmeans.cu) on the H200:
# correctness against the CPU reference, memcheck, then the timing at production shape.
# Needs no Rust: prebuilt binaries in $BIN (default .bin/cuda-build):
#   cuda_build   the test binary of tests/cuda_build.rs
#                (cargo test --release --no-run; cp target/release/deps/cuda_build-<hash>)
#   ptx/*.ptx    optional fallback when libnvrtc cannot be found (SILICA_PTX_DIR=... 
#                cargo test --release --test nvrtc writes them, kmeans.ptx included)
#   bash scripts/cuda-build-check.sh [tests|memcheck|timing|all]...
# Writes logs and timing.json to $OUT (default /tmp/out). Exit 0 only if every step run passed.
#
# What it checks:
#   tests    every test of tests/cuda_build.rs on the GPU: assign bit-identical to
#            assign_cpu (edge sizes, ties, -0/+0, 64 MiB and 8 KiB staging chunks, up to
#            65536 lists, D up to 1024); train quality within 0.01 of the CPU's, unit-norm
#            finite centroids, deterministic for a seed, empty clusters repaired; typed
#            errors. Fails if the binary skipped for lack of a device.
#   memcheck compute-sanitizer memcheck over the small tests (out-of-bounds, misaligned).
#   timing   the ignored timing test: assign 20M x 128 codes to 4096 lists (spot-checked
#            on 4096 rows by the integer rule) and train 4096 centroids on 262144 x 128
#            (10 iterations; init timed alone), with the CPU's train for quality. Prints
#            one JSON line: assign_s (floor ~0.16 s: 1.05e13 MACs at ~67 TMAC/s dp4a),
#            assign_tmacs, train_init_s, train_s, cpu_train_s, quality_cuda vs quality_cpu.
#            SILICA_TIMING_ROWS=N changes the 20M.
set -uo pipefail
BIN=${BIN:-.bin/cuda-build}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
has() { for s in "${steps[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

# cudarc (cuda-12080 bindings) dlopens libnvrtc.so / libnvrtc.so.12: point an unversioned
# name at whatever libnvrtc.so.* the image has (as scripts/cuda-device-run.sh does).
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
if [ -n "$lib" ]; then
  ln -sf "$lib" $NV/libnvrtc.so
  export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fi
[ -d "$BIN/ptx" ] && export SILICA_CUDA_PTX_DIR=$BIN/ptx
echo "libnvrtc: ${lib:-none}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
chmod +x $BIN/cuda_build 2>/dev/null
rc=0
if has tests; then
  echo "== tests/cuda_build.rs (CUDA vs CPU) =="
  $BIN/cuda_build --test-threads=1 2>&1 | tee $OUT/cuda-build-tests.log | grep -E "^test |test result|panicked|SKIP|quality" ; [ ${PIPESTATUS[0]} -eq 0 ] || rc=1
  if grep -q "SKIP: no CUDA device" $OUT/cuda-build-tests.log; then echo "FAIL: the tests skipped: no CUDA device seen"; rc=1; fi
fi
if has memcheck; then
  echo "== compute-sanitizer memcheck (small tests) =="
  timeout 400 compute-sanitizer --tool memcheck --error-exitcode 99 $BIN/cuda_build --test-threads=1 \
    assign_refuses train_repairs train_init_is > $OUT/cuda-build-memcheck.log 2>&1; m=$?
  grep -E "ERROR SUMMARY|test result|Invalid|out of bounds|misaligned" $OUT/cuda-build-memcheck.log | sort | uniq -c | head -20
  echo "memcheck exit: $m"; [ $m -eq 0 ] || rc=1
fi
if has timing; then
  echo "== timing: assign 20M x 128 x 4096, train 262144 x 128 x 4096 =="
  $BIN/cuda_build timing_ --ignored --nocapture --test-threads=1 > $OUT/cuda-build-timing.log 2>&1; t=$?
  grep -E '^\{' $OUT/cuda-build-timing.log | tail -1 | tee $OUT/timing.json
  grep -E "panicked|test result" $OUT/cuda-build-timing.log
  echo "timing exit: $t"; [ $t -eq 0 ] || rc=1
fi
exit $rc
