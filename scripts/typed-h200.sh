#!/usr/bin/env bash
# Issue 14 on the H200: typed filters (ranges, !=, NOT IN, IS NULL, booleans, timestamps)
# must be bit-identical on cuda, and their speed next to the same queries unfiltered.
#
#   scripts/typed-h200.sh            (from a checkout holding target/release, built here with
#                                     `cargo test --release --no-run` and
#                                     `cargo build --release --example typed_bench`)
#
# 1. tests/typed_filters.rs with SILICA_REQUIRE_BACKENDS=cuda: random typed filters over
#    every operator, exhaustive answers equal a brute-force SQL evaluator, cuda answers equal
#    the CPU's rows and score bits (look for `test result: ok. 3 passed`).
# 2. tests/conformance.rs, the `cuda::` cases (the fixture now has int/float/bool/timestamp
#    columns and typed leaves mixed with Bloom terms on every stage; look for `ok`, no FAILED).
# 3. examples/typed_bench on cuda, N = 1M, D = 128, batch 1 and 256: recall@10 and QPS of
#    range filters vs unfiltered (copy the tables into BENCHMARKS.md "Typed range filters").
# Environment: OUT [/tmp/typed-h200], N [1000000], D [128], QUERIES [512].
set -uo pipefail
out="${OUT:-/tmp/typed-h200}"; mkdir -p "$out"
n="${N:-1000000}"; d="${D:-128}"; nq="${QUERIES:-512}"
bin() { ls -t target/release/deps/"$1"-* 2>/dev/null | grep -v '\.d$' | head -1; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
export SILICA_REQUIRE_BACKENDS=cuda
t=$(bin typed_filters); echo "== $t" | tee "$out/typed_filters.txt"
"$t" --test-threads 1 >> "$out/typed_filters.txt" 2>&1; echo "typed_filters rc=$?" | tee -a "$out/typed_filters.txt"
t=$(bin conformance); echo "== $t" | tee "$out/conformance_cuda.txt"
"$t" cuda:: --test-threads 1 >> "$out/conformance_cuda.txt" 2>&1; echo "conformance cuda rc=$?" | tee -a "$out/conformance_cuda.txt"
for b in 1 256; do
  ./target/release/examples/typed_bench --backend cuda --n "$n" --d "$d" --queries "$nq" --batch "$b" > "$out/bench-b$b.txt" 2>&1
  echo "typed_bench batch $b rc=$?"; cat "$out/bench-b$b.txt"
done
grep -h "test result\|FAILED\|panicked" "$out"/*.txt | sort | uniq -c
