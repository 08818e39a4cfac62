#!/usr/bin/env bash
# One device call for the GPU build stage (CudaCompute, cuda/kmeans.cu) on the H200:
# correctness against the CPU reference, memcheck, then the timing at production shape.
# Needs no Rust on the GPU host: the test binary of tests/cuda_build.rs
# (`cargo test --release --no-run --test cuda_build`), taken from $BIN/cuda_build when BIN
# (a folder of copies) is set, else the newest target/release/deps/cuda_build-*; with BIN also
#   $BIN/ptx/*.ptx  optional fallback when libnvrtc cannot be found (SILICA_PTX_DIR=... 
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
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
has() { for s in "${steps[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

. "$(dirname "$0")/device-env.sh"   # libnvrtc under the name cudarc (cuda-12080 bindings) dlopens
if [ -n "${BIN:-}" ]; then cb=$BIN/cuda_build; else cb=$(ls -t target/release/deps/cuda_build-* 2>/dev/null | grep -v '\.d$' | head -1); fi
[ -n "${BIN:-}" ] && [ -d "$BIN/ptx" ] && export SILICA_CUDA_PTX_DIR=$BIN/ptx
echo "libnvrtc: ${NVRTC_FOUND:-none}; cuda_build: ${cb:-not found}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
chmod +x "$cb" 2>/dev/null
rc=0
if has tests; then
  echo "== tests/cuda_build.rs (CUDA vs CPU) =="
  "$cb" --test-threads=1 2>&1 | tee $OUT/cuda-build-tests.log | grep -E "^test |test result|panicked|SKIP|quality" ; [ ${PIPESTATUS[0]} -eq 0 ] || rc=1
  if grep -q "SKIP: no CUDA device" $OUT/cuda-build-tests.log; then echo "FAIL: the tests skipped: no CUDA device seen"; rc=1; fi
fi
if has memcheck; then
  echo "== compute-sanitizer memcheck (small tests) =="
  timeout 400 compute-sanitizer --tool memcheck --error-exitcode 99 "$cb" --test-threads=1 \
    assign_refuses train_repairs train_init_is > $OUT/cuda-build-memcheck.log 2>&1; m=$?
  grep -E "ERROR SUMMARY|test result|Invalid|out of bounds|misaligned" $OUT/cuda-build-memcheck.log | sort | uniq -c | head -20
  echo "memcheck exit: $m"; [ $m -eq 0 ] || rc=1
fi
if has timing; then
  echo "== timing: assign 20M x 128 x 4096, train 262144 x 128 x 4096 =="
  "$cb" timing_ --ignored --nocapture --test-threads=1 > $OUT/cuda-build-timing.log 2>&1; t=$?
  grep -E '^\{' $OUT/cuda-build-timing.log | tail -1 | tee $OUT/timing.json
  grep -E "panicked|test result" $OUT/cuda-build-timing.log
  echo "timing exit: $t"; [ $t -eq 0 ] || rc=1
fi
exit $rc
