#!/usr/bin/env bash
# The sharded CUDA path on ONE GPU (issue 17): `--devices cuda:0,cuda:0` (two shards, one
# lane each, on the same H200) must give exactly `--devices cuda:0`'s answers, bit for bit,
# on a synthetic catalog with a filter mix that takes both planner routes (candidate route
# and probe path). Prints PASS or FAIL per comparison and a final verdict; exits non-zero
# on any FAIL. Needs only prebuilt binaries (no Rust, no python).
#
#   scripts/shard-h200.sh                  # N=200000 catalog built here
#   N=1000000 SHARDS="2 3 4" scripts/shard-h200.sh
#
# Steps: GPU conformance (when the test binary is in $BIN: `conformance sharded_cuda2::`,
# the whole golden suite over Sharded<Cuda> with 2 shards on cuda:0, plus `cuda::` for
# reference), `silica synth` + `silica build --backend cuda`, then `silica search` with
# `--devices cuda:0` and with cuda:0 repeated S times for S in $SHARDS, for rerank
# none (stages 1-3 + the scale multiply), refine (the default) and nprobe = nlist; each output
# is compared byte for byte (rows, ids and printed score bits) with `cmp`. Also `--devices
# cpu,cpu` against `--devices cpu` on the same index, and timing lines (`silica bench
# --batch 16`) for cuda:0 vs cuda:0,cuda:0 (no speed claim: both shards share one GPU).
#
# Environment [defaults]: BIN [target/release; .bin/h1 when that git-ignored folder of
# prebuilt copies holds silica] (silica; optional conformance test binary named
# `conformance`, a copy of target/release/deps/conformance-*), OUT [/tmp/shard-h200], N [200000], NLIST [1024],
# SHARDS ["2 3"], SCRATCH [/tmp/shard-h200-data] (deleted after).
# Device time: ~1-2 min at the defaults.
set -uo pipefail
bin="${BIN:-}"
if [ -z "$bin" ]; then if [ -x .bin/h1/silica ]; then bin=.bin/h1; else bin=target/release; fi; fi
silica="$bin/silica"
out="${OUT:-/tmp/shard-h200}"; mkdir -p "$out"
n="${N:-200000}"; nlist="${NLIST:-1024}"; shards="${SHARDS:-2 3}"
scratch="${SCRATCH:-/tmp/shard-h200-data}"; mkdir -p "$scratch"
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] == $*"; }

. "$(dirname "$0")/device-env.sh"   # libnvrtc under the name cudarc loads; NCCL_NVLS_ENABLE=0
chmod +x "$bin"/* 2>/dev/null || true
"$silica" devices > "$out/devices.txt" 2>&1; cat "$out/devices.txt"

fails=0; passes=0
verdict() { # name rc
  if [ "$2" = 0 ]; then echo "PASS $1"; passes=$((passes + 1)); else echo "FAIL $1"; fails=$((fails + 1)); fi
}

if [ -x "$bin/conformance" ]; then
  el "conformance sharded_cuda2:: (2 shards on cuda:0) and cuda::"
  SILICA_REQUIRE_BACKENDS=sharded_cuda2,cuda "$bin/conformance" --test-threads 1 sharded_cuda2:: > "$out/conformance-sharded.txt" 2>&1
  verdict "conformance sharded_cuda2:: ($(grep -o 'test result.*' "$out/conformance-sharded.txt" | head -1))" $?
  SILICA_REQUIRE_BACKENDS=cuda "$bin/conformance" --test-threads 1 cuda:: > "$out/conformance-cuda.txt" 2>&1
  verdict "conformance cuda:: ($(grep -o 'test result.*' "$out/conformance-cuda.txt" | head -1))" $?
else
  echo "(no $bin/conformance: GPU conformance skipped; carry target/release/deps/conformance-* as $bin/conformance)"
fi

el "synth N=$n + build --backend cuda --nlist $nlist"
"$silica" synth --n "$n" --dim 128 --queries 512 --out "$scratch/cat" > "$out/synth.log" 2>&1 || { echo "FAIL synth"; exit 1; }
"$silica" build --vectors "$scratch/cat/vectors.npy" --attributes "$scratch/cat/attributes.jsonl" --out "$scratch/ix.silica" \
  --nlist "$nlist" --backend cuda > "$out/build.log" 2>&1 || { echo "FAIL build"; tail -5 "$out/build.log"; exit 1; }
# 512 queries, filters cycling through none / broad / mid / selective / negated / multi-valued.
: > "$scratch/filters.jsonl"
for i in $(seq 0 511); do
  case $((i % 8)) in
    0) f='' ;;
    1) f='country = \"c000\"' ;;
    2) f='lang = \"l03\" AND status = \"active\"' ;;
    3) f='tags = \"t00017\"' ;;
    4) f='country IN (\"c005\", \"c017\") AND NOT status = \"blocked\"' ;;
    5) f='tags = \"t00003\" OR tags = \"t00101\"' ;;
    6) f='age_rating = \"NC-17\" AND lang = \"l01\"' ;;
    7) f='country = \"c001\" AND tags = \"t00002\"' ;;
  esac
  echo "{\"filter\": \"$f\"}" >> "$scratch/filters.jsonl"
done

search() { # devices tag extra...
  local dev=$1 tag=$2; shift 2
  "$silica" search --index "$scratch/ix.silica" --queries "$scratch/cat/queries.npy" --filters "$scratch/filters.jsonl" \
    --k 10 --devices "$dev" --no-verify --out "$scratch/$tag.jsonl" "$@" > "$out/$tag.log" 2>&1
}
rep() { local r=""; for _ in $(seq 1 "$2"); do r="$r${r:+,}$1"; done; echo "$r"; }

for mode in none refine all; do
  case $mode in
    none) extra=(--rerank none) ;;
    refine) extra=() ;;
    all) extra=(--rerank none --nprobe "$nlist") ;;
  esac
  el "rerank $mode"
  search cuda:0 "one-$mode" "${extra[@]}" || { verdict "search cuda:0 ($mode) ran" 1; continue; }
  for s in $shards; do
    dev=$(rep cuda:0 "$s")
    if search "$dev" "s$s-$mode" "${extra[@]}"; then
      cmp -s "$scratch/one-$mode.jsonl" "$scratch/s$s-$mode.jsonl"
      verdict "--devices $dev == --devices cuda:0 ($mode, 512 queries, bit for bit)" $?
    else
      verdict "--devices $dev ($mode) ran: $(tail -1 "$out/s$s-$mode.log")" 1
    fi
  done
done

el "cpu,cpu vs cpu on the same index (rerank none)"
search cpu cpu-none --rerank none && search cpu,cpu cpu2-none --rerank none
cmp -s "$scratch/cpu-none.jsonl" "$scratch/cpu2-none.jsonl"; verdict "--devices cpu,cpu == --devices cpu" $?
cmp -s "$scratch/cpu-none.jsonl" "$scratch/one-none.jsonl"; verdict "--devices cpu == --devices cuda:0 (stages 1-3 across backends)" $?

el "timing (silica bench --batch 16, 1M synthetic; both shards share one GPU, so no speed-up is expected)"
for dev in cuda:0 cuda:0,cuda:0; do
  "$silica" bench --devices "$dev" --n 1000000 --nlist 1024 --batch 16 --nprobe 32 --k 100 --json > "$out/bench-$dev.json" 2> "$out/bench-$dev.log" \
    && echo "  $dev: $(grep -oE '"(qps|latency_ms|p50_ms)":[0-9.]*' "$out/bench-$dev.json" | head -3 | tr '\n' ' ')" || echo "  $dev: bench failed: $(tail -1 "$out/bench-$dev.log")"
done

rm -rf "$scratch"
echo "$passes passed, $fails failed"
if [ "$fails" = 0 ]; then echo "SHARD-H200: PASS"; else echo "SHARD-H200: FAIL"; exit 1; fi
