#!/usr/bin/env bash
# Issue 14 on the H200: typed (numeric / bool / timestamp) filter terms evaluated in the CUDA
# kernels per query (COL_TERM plan records over device-resident key columns) instead of a
# host mask per distinct bound. Prebuilt binaries only (no Rust there). Build here first:
#   cargo test --release --no-run && cargo build --release --example typed_bench
# then carry target/release/examples/typed_bench and target/release/deps/{conformance,
# typed_filters}-* and run from the checkout root:
#   bash scripts/typed-device-h200.sh
# Prints one PASS/FAIL line per check and the bench tables; everything goes into one
# tarball, $OUT/typed-device-h200.tar.gz (logs also left in $OUT/typed-device/).
#  1. conformance cuda::typed_per_query_bounds_match_reference_bit_for_bit: per-query random
#     ranges, NULL tests, NOT and Bloom mixes, unbound (device-evaluated) on cuda: masks,
#     counts, scans, candidate route equal the row references and the host-mask answers.
#  2. conformance cuda:: (all): the bound-mask path (MASK_TERM) and everything else unchanged.
#  3. typed_filters with cuda required: random typed filters through the executor (first
#     sightings device-evaluated, repeats from the mask cache), cuda == cpu bit for bit.
#  4. typed_bench --backend cuda --n 1000000 --d 128 --queries 512 --batch 256, twice: the
#     default (per-query bounds evaluated on the device) and SILICA_TYPED_HOST_MASKS=1 (every
#     bound a host mask: the old path). Look at the "a per query" rows: recall@10 >= 0.99 and
#     "vs none" >= 0.5 is the issue's target; compare with the repeated rows and the old path.
# Environment: OUT (default /tmp), TYPED_BENCH (default target/release/examples/typed_bench),
# CONFORMANCE, TYPED_FILTERS (test binaries; default: newest target/release/deps/NAME-*),
# SILICA_BIN (recorded only; default target/release/silica), N [1000000], QUERIES [512],
# PARTS ["tests bench"]; without a GPU (dry run): PARTS=bench BACKEND=cpu N=20000.
set -uo pipefail
top="${OUT:-/tmp}"; out="$top/typed-device"; mkdir -p "$out"
bin() { ls -t target/release/deps/"$1"-* 2>/dev/null | grep -v '\.d$' | head -1; }
conf="${CONFORMANCE:-$(bin conformance)}"; tf="${TYPED_FILTERS:-$(bin typed_filters)}"
bench="${TYPED_BENCH:-target/release/examples/typed_bench}"
silica="${SILICA_BIN:-target/release/silica}"
n="${N:-1000000}"; nq="${QUERIES:-512}"; backend="${BACKEND:-cuda}"; parts="${PARTS:-tests bench}"
export SILICA_REQUIRE_BACKENDS=cuda
{ date -u; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>&1; ls -l "$conf" "$tf" "$bench" "$silica" 2>&1; git log -1 --oneline 2>/dev/null; } > "$out/env.txt"
check() {
  local name=$1; shift
  "$@" > "$out/$name.txt" 2>&1; local rc=$?
  if [ $rc -eq 0 ] && grep -q "test result: ok" "$out/$name.txt" && ! grep -q "FAILED\|panicked\|skipping" "$out/$name.txt"; then
    echo "PASS $name $(grep -h 'test result' "$out/$name.txt" | head -1)"
  else
    echo "FAIL $name (rc=$rc)"; grep -h "panicked\|FAILED\|skipping\|left\|right" "$out/$name.txt" | head -20
  fi
}
if [[ " $parts " == *" tests "* ]]; then
  check conformance_typed_per_query "$conf" cuda::typed_per_query --test-threads 1
  check conformance_cuda "$conf" cuda:: --test-threads 1
  check typed_filters "$tf" --test-threads 1
fi
if [[ " $parts " == *" bench "* ]]; then
  for mode in device host; do
    if [ $mode = host ]; then export SILICA_TYPED_HOST_MASKS=1; else unset SILICA_TYPED_HOST_MASKS; fi
    "$bench" --backend "$backend" --n "$n" --d 128 --queries "$nq" --batch 256 > "$out/bench-$mode.txt" 2>&1
    echo "== typed_bench $backend N=$n, typed terms: $mode (rc=$?)"
    grep -v "^built" "$out/bench-$mode.txt" | tail -22
  done
  unset SILICA_TYPED_HOST_MASKS
fi
grep -h "^test .*FAILED" "$out"/*.txt 2>/dev/null | sort | uniq -c
tar -czf "$top/typed-device-h200.tar.gz" -C "$top" typed-device && echo "results: $top/typed-device-h200.tar.gz"
