#!/usr/bin/env bash
# Several H200s of one host (issue 17), for when `status` lends nvidia-h200-x2/-x4/-x8: one
# call, only prebuilt binaries (silica; optionally the conformance test binary).
#
#   scripts/multigpu-h200.sh                       # every step, G = 1, 2, 4, 8 up to the GPUs present
#   STEPS="check peer" GS="1 2" scripts/multigpu-h200.sh
#
# Steps ($STEPS, default "check peer e2e serve"):
#   check  `silica devices` (must list every GPU), the golden suite over all GPUs as shards
#          (`conformance sharded_cuda_gpus::`, and `sharded_cuda2::` = 2 shards on cuda:0),
#          and `silica search --devices cuda:0,..,cuda:G-1` == `--devices cuda:0` bit for bit
#          on a synthetic catalog (N_CHECK rows; rerank none and refine).
#   peer   `silica bench --suite peer --devices cuda:0..cuda:G-1` per G: DESIGN.md's kernel rows
#          (N_PEER = 20M, random probes, k0 2048) with the lists sharded over G GPUs; B = 16
#          rows are the sharded latency to compare with the single-GPU latency at 20M.
#   e2e    `silica bench --suite e2e --devices ...` per G (N_E2E rows, filter classes, B = 256, 16).
#   serve  one catalog of N_SERVE rows built once (`silica build --backend cuda`); `silica
#          serve --devices cuda:0..cuda:G-1 --replicas G` (G replicas of the whole index) and
#          `--replicas 1` (one index sharded over G) under `silica load` (closed loop,
#          CONNS connections, filtered mix); QPS per G and the ratio to G = 1 (target for
#          replication: >= 0.8 x G); /v1/stats `replicas` shows the batches per replica.
# Everything lands in $OUT (summary.txt first) and is packed into $OUT.tar.gz.
#
# Environment [defaults]: BIN [target/release; .bin/h1 when that git-ignored folder of
# prebuilt copies holds silica], OUT [/tmp/multigpu-h200],
# GS ["1 2 4 8", cut to the GPUs present], N_CHECK [500000], N_PEER [20000000],
# N_E2E [5000000], N_SERVE [20000000] (80000000 for the issue's 80M: ~50 GB per replica
# with embeddings; build needs ~30 GB disk with --no-embeddings, set BUILD_FLAGS),
# BUILD_FLAGS [""], CONNS [256], SECS [10], PORT [18300], SCRATCH [/tmp/mg] (deleted after).
# NVLink multicast stays off: NCCL_NVLS_ENABLE=0 (silica calls no NCCL or multicast API;
# shards exchange candidates through host memory).
set -uo pipefail
bin="${BIN:-}"
if [ -z "$bin" ]; then if [ -x .bin/h1/silica ]; then bin=.bin/h1; else bin=target/release; fi; fi
silica="$bin/silica"
out="${OUT:-/tmp/multigpu-h200}"; mkdir -p "$out"
scratch="${SCRATCH:-/tmp/mg}"; mkdir -p "$scratch"
steps="${STEPS:-check peer e2e serve}"
n_check="${N_CHECK:-500000}"; n_peer="${N_PEER:-20000000}"; n_e2e="${N_E2E:-5000000}"; n_serve="${N_SERVE:-20000000}"
conns="${CONNS:-256}"; secs="${SECS:-10}"; port="${PORT:-18300}"; build_flags="${BUILD_FLAGS:-}"
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] == $*" | tee -a "$out/summary.txt"; }
say() { echo "$*" | tee -a "$out/summary.txt"; }

. "$(dirname "$0")/device-env.sh"   # libnvrtc under the name cudarc loads; NCCL_NVLS_ENABLE=0
chmod +x "$bin"/* 2>/dev/null || true
nvidia-smi topo -m > "$out/topo.txt" 2>&1 || true
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
gs=""; for g in ${GS:-1 2 4 8}; do [ "$g" -le "$ngpu" ] && gs="$gs $g"; done
say "GPUs: $ngpu; G values:$gs; steps: $steps"
"$silica" devices > "$out/devices.txt" 2>&1
listed=$(grep -c '^ *\*\? *cuda ' "$out/devices.txt" || true)
say "silica devices lists $listed CUDA device(s) (nvidia-smi: $ngpu): $([ "$listed" = "$ngpu" ] && echo PASS || echo FAIL)"
devs() { local r=""; for i in $(seq 0 $(($1 - 1))); do r="$r${r:+,}cuda:$i"; done; echo "$r"; }

filters() { # file count
  : > "$1"
  for i in $(seq 0 $(($2 - 1))); do
    case $((i % 6)) in
      0) f='' ;; 1) f='country = \"c000\"' ;; 2) f='lang = \"l03\" AND status = \"active\"' ;;
      3) f='tags = \"t00017\"' ;; 4) f='country IN (\"c005\", \"c017\") AND NOT status = \"blocked\"' ;;
      5) f='age_rating = \"NC-17\" AND lang = \"l01\"' ;;
    esac
    echo "{\"filter\": \"$f\"}" >> "$1"
  done
}
catalog() { # n dir
  [ -f "$2/ix.silica" ] && return 0
  "$silica" synth --n "$1" --dim 128 --queries 1024 --out "$2" > "$out/synth-$1.log" 2>&1 &&
  "$silica" build --vectors "$2/vectors.npy" --attributes "$2/attributes.jsonl" --out "$2/ix.silica" --nlist 4096 --backend cuda $build_flags > "$out/build-$1.log" 2>&1 &&
  rm -f "$2/vectors.npy" "$2/attributes.jsonl" && filters "$2/filters.jsonl" 1024
}

if [[ " $steps " == *" check "* ]]; then
  if [ -x "$bin/conformance" ]; then
    el "conformance sharded_cuda_gpus:: (all $ngpu GPUs as shards) + sharded_cuda2::"
    SILICA_REQUIRE_BACKENDS=sharded_cuda_gpus,sharded_cuda2 "$bin/conformance" --test-threads 1 sharded_cuda > "$out/conformance.txt" 2>&1
    say "conformance sharded_cuda*: $([ $? = 0 ] && echo PASS || echo FAIL) $(grep -o 'test result.*' "$out/conformance.txt" | head -1)"
  fi
  el "search --devices cuda:0..G-1 vs cuda:0, N=$n_check"
  if catalog "$n_check" "$scratch/check"; then
    for mode in none refine; do
      extra=(); [ $mode = none ] && extra=(--rerank none)
      "$silica" search --index "$scratch/check/ix.silica" --queries "$scratch/check/queries.npy" --filters "$scratch/check/filters.jsonl" --k 10 --no-verify --devices cuda:0 --out "$scratch/one.jsonl" "${extra[@]}" 2> "$out/check-one-$mode.log"
      for g in $gs; do
        [ "$g" = 1 ] && continue
        "$silica" search --index "$scratch/check/ix.silica" --queries "$scratch/check/queries.npy" --filters "$scratch/check/filters.jsonl" --k 10 --no-verify --devices "$(devs "$g")" --out "$scratch/g$g.jsonl" "${extra[@]}" 2> "$out/check-g$g-$mode.log"
        cmp -s "$scratch/one.jsonl" "$scratch/g$g.jsonl" && say "PASS --devices $(devs "$g") == cuda:0 ($mode)" || say "FAIL --devices $(devs "$g") != cuda:0 ($mode): $(tail -1 "$out/check-g$g-$mode.log")"
      done
    done
    rm -rf "$scratch/check"
  else
    say "FAIL catalog for the check (see $out/build-$n_check.log)"
  fi
fi

if [[ " $steps " == *" peer "* ]]; then
  for g in $gs; do
    el "peer suite, N=$n_peer, devices $(devs "$g")"
    "$silica" bench --suite peer --n "$n_peer" --devices "$(devs "$g")" --json > "$out/peer-g$g.json" 2> "$out/peer-g$g.log" || say "peer G=$g failed: $(tail -1 "$out/peer-g$g.log")"
    "$silica" bench --suite peer --n "$n_peer" --devices "$(devs "$g")" > "$out/peer-g$g.txt" 2>&1 && sed 's/^/  /' "$out/peer-g$g.txt" | tee -a "$out/summary.txt" > /dev/null
  done
fi

if [[ " $steps " == *" e2e "* ]]; then
  for g in $gs; do
    el "e2e suite, N=$n_e2e, devices $(devs "$g")"
    "$silica" bench --suite e2e --n "$n_e2e" --nlist 4096 --nprobe 32 --batch 256,16 --time-budget 1.5 --devices "$(devs "$g")" > "$out/e2e-g$g.txt" 2> "$out/e2e-g$g.log" || say "e2e G=$g failed: $(tail -1 "$out/e2e-g$g.log")"
    sed 's/^/  /' "$out/e2e-g$g.txt" >> "$out/summary.txt"
  done
fi

if [[ " $steps " == *" serve "* ]]; then
  el "serve: catalog N=$n_serve"
  if catalog "$n_serve" "$scratch/serve"; then
    base=""
    for layout in replicas sharded; do
      for g in $gs; do
        [ $layout = sharded ] && [ "$g" = 1 ] && continue
        r=1; [ $layout = replicas ] && r=$g
        tag="$layout-g$g"
        "$silica" serve --index "$scratch/serve/ix.silica" --addr "127.0.0.1:$port" --devices "$(devs "$g")" --replicas "$r" --workers $((2 * r + 1)) --no-verify > "$out/serve-$tag.out" 2> "$out/serve-$tag.log" &
        pid=$!
        for _ in $(seq 1 600); do grep -q listening "$out/serve-$tag.out" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 1; done
        "$silica" load --url "http://127.0.0.1:$port" --queries "$scratch/serve/queries.npy" --filters "$scratch/serve/filters.jsonl" --k 10 \
          --connections "$conns" --duration "$secs" --warmup 2 --body binary --out "$out/load-$tag.json" > "$out/load-$tag.txt" 2>&1
        curl -s "http://127.0.0.1:$port/v1/stats" > "$out/stats-$tag.json" 2>/dev/null || true
        kill $pid 2>/dev/null; wait $pid 2>/dev/null
        qps=$(grep -oE '"qps": ?[0-9.]+' "$out/load-$tag.json" | head -1 | grep -oE '[0-9.]+$')
        [ $layout = replicas ] && [ "$g" = 1 ] && base=$qps
        ratio=""; [ -n "$base" ] && [ -n "$qps" ] && ratio=$(awk "BEGIN{printf \"%.2f\", $qps / $base}")
        say "  $tag: QPS ${qps:-?} (x$ratio of 1 GPU; replication target >= $(awk "BEGIN{print 0.8 * $g}")) replicas: $(grep -oE '"batches":[0-9]+' "$out/stats-$tag.json" | tr '\n' ' ')"
      done
    done
  else
    say "FAIL serve catalog (see $out/build-$n_serve.log)"
  fi
fi

rm -rf "$scratch"
el "done"
tar -czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")" && echo "packed $out.tar.gz"
