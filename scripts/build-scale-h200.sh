#!/usr/bin/env bash
# Build and load at production scale on the H200 host (issue 10), prebuilt binary only.
#
#   STEPS="80m" bash scripts/build-scale-h200.sh             # 80M build + serve (~6-7 min), one device call
#   STEPS="recall" bash scripts/build-scale-h200.sh          # 20M cuda- vs cpu-built recall (~5-6 min), one call
#   STEPS="20m" bash scripts/build-scale-h200.sh             # 20M build with calibration + serve (~2 min)
#
# From a clone: `cargo build --release` (only the binary is needed on the GPU host).
# Env: BIN (default target/release/silica), STEPS (default "20m recall"), SCRATCH (default
# /tmp/silica-scale), OUT (results; default ./build-scale-out), DEADLINE (seconds for the whole
# call, default 570: every step's `timeout` is cut to what is left), NPROBES for the recall
# step (default "32 128"), N20 / N80 (default 20000000 / 80000000, smaller for a dry run),
# NLIST20 / NLIST80 (4096 / 8192), BACKEND (default cuda). A dry run without a GPU:
#   BIN=target/release/silica BACKEND=cpu N20=100000 N80=150000 NLIST20=256 NLIST80=256 STEPS="20m recall 80m"
#
# Steps (each under `timeout`, RUST_LOG=info phase logs kept in $OUT/*.log, peak RSS from
# /usr/bin/time -v when present, else the build's own VmHWM line):
#   20m     silica synth 20M x 128 (f16 + JSONL, 5 fields) -> silica build --backend cuda
#           --nlist 4096 (calibration on: the default user path) -> silica serve --backend cuda
#           until GET /healthz answers. Target: build <= 60 s, peak RSS <= 1.5x artifact.
#   recall  (after 20m, same catalog; alone it synthesizes and builds gpu-20m with
#           --no-calibrate first) silica build --backend cpu --no-calibrate; truth: the
#           CUDA-built index searched exhaustively (nprobe 4096, k0 1000, refine: int8 codes are
#           per row, so exhaustive candidates do not depend on the centroids); silica eval of
#           both artifacts at each of NPROBES (--backend cuda, 1000 synth queries, no filter).
#           Target: |recall_cuda - recall_cpu| <= 0.005 at the same nprobe.
#   80m     silica synth 80M x 128 -> silica build --backend cuda --nlist 8192 --no-embeddings
#           (calibration on) -> serve healthy. Target: build <= 300 s, healthy <= 60 s.
#
# Disk plan (64 GiB): 80M x 128 f16 vectors 20.5 GB + JSONL 9.8 GB + artifact. With f16
# embeddings the artifact is ~48 GB (78 GB in all: does not fit), so 80M builds with
# --no-embeddings (int8 codes + scales, Bloom, CSR, ids: ~28 GB; 58 GB in all). The JSONL is
# deleted as soon as the build logs that the attributes are parsed (the build no longer maps
# it) and the vectors after the build, before serving. 20M: 5.1 + 2.5 GB inputs, ~12 GB per
# artifact (two for the recall step).
# Writes $OUT/build-scale.json: per step rc, wall seconds, peak RSS, artifact bytes, phase lines.
#
# Expected (16 cores, 128 GB; predictions from stop 19's phase logs, not yet measured):
#   part 1 (20m recall), ~5 min: synth 20M ~20-30 s; GPU build ~65-70 s (attributes ~10 s,
#   k-means ~5 s, assign ~2 s, header ~6 s, pass 2 ~10 s, fsync ~1-2 s, calibration ~16 s);
#   serve healthy ~8 s; CPU build (no calibration) ~100-120 s; truth ~15 s; 4 evals ~10 s each.
#   part 2 (80m), ~7-8 min: synth 80M ~60-90 s; GPU build ~170-250 s (calibration is the
#   unknown: it logs map / open / truth / sweep seconds); serve healthy ~20-30 s.
set -u
BIN=${BIN:-target/release/silica}
STEPS=${STEPS:-20m recall}
SCRATCH=${SCRATCH:-/tmp/silica-scale}
OUT=${OUT:-./build-scale-out}
DEADLINE=${DEADLINE:-570}
NPROBES=${NPROBES:-32 128}
N20=${N20:-20000000}
N80=${N80:-80000000}
NLIST20=${NLIST20:-4096}
NLIST80=${NLIST80:-8192}
PORT=${PORT:-18193}
BACKEND=${BACKEND:-cuda}   # the GPU build/search backend (cpu for a dry run without a GPU)
mkdir -p "$SCRATCH" "$OUT"
. "$(dirname "$0")/device-env.sh"   # libnvrtc for the cuda build and search
export RUST_LOG=${RUST_LOG:-info}
T_START=$(date +%s)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# Seconds left for a step capped at $1 (a few kept back for the summary).
left() { local l=$(( DEADLINE - ($(date +%s) - T_START) - 10 )); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
jstr() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr '\n\t' '  '; }
# The phase lines of a log: the "... in X s" info lines, not the periodic progress.
phases() { { grep -aE 'INFO|default nprobe|built ' "$1" | grep -avE '[0-9]+/[0-9]+ (rows|iterations) \(' | sed -E 's/^\[[^]]*\] ?//' || true; } | tail -40 | jstr; }
rows=()
row() { rows+=("$1"); echo "$1" | cut -c1-400; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GB RAM; disk: $(df -h "$SCRATCH" | tail -1)"
"$BIN" devices 2>&1 | head -5

synth() { # n dir
  local t0 rc; t0=$(now)
  [ -f "$2/vectors.npy" ] && { echo "synth: $2 exists"; return 0; }
  timeout "$(left 200)" "$BIN" synth --n "$1" --dim 128 --queries 1000 --out "$2" >"$OUT/synth-$1.log" 2>&1; rc=$?
  row "{\"step\":\"synth\",\"n\":$1,\"rc\":$rc,\"wall_s\":$(secs "$t0" "$(now)"),\"bytes\":$(du -sb "$2" 2>/dev/null | cut -f1 || echo 0)}"
  df -h "$SCRATCH" | tail -1
  return $rc
}

build() { # name n cap-seconds args...   (artifact $SCRATCH/name.silica, log $OUT/name.log)
  local name=$1 n=$2 cap=$3; shift 3
  local art=$SCRATCH/$name.silica log=$OUT/$name.log t0 rc rss wall size
  t0=$(now)
  if [ -x /usr/bin/time ]; then
    timeout "$(left "$cap")" /usr/bin/time -v "$BIN" build --out "$art" "$@" >"$log" 2>&1; rc=$?
  else
    timeout "$(left "$cap")" "$BIN" build --out "$art" "$@" >"$log" 2>&1; rc=$?
  fi
  wall=$(secs "$t0" "$(now)")
  rss=$(grep -ao 'peak RSS [0-9.]* MB' "$log" | grep -o '[0-9.]*' | tail -1)
  [ -z "$rss" ] && rss=$(awk '/Maximum resident/ {printf "%.1f", $6/1000}' "$log")
  size=$(stat -c %s "$art" 2>/dev/null || echo 0)
  local ratio=null
  [ "$size" -gt 0 ] && [ -n "$rss" ] && ratio=$(awk -v r="$rss" -v s="$size" 'BEGIN { printf "%.3f", r * 1e6 / s }')
  row "{\"step\":\"build\",\"name\":\"$name\",\"n\":$n,\"args\":\"$*\",\"rc\":$rc,\"wall_s\":$wall,\"peak_rss_mb\":${rss:-null},\"artifact_bytes\":$size,\"rss_over_artifact\":$ratio,\"phases\":\"$(phases "$log")\"}"
  return $rc
}

serve_ready() { # name   (serve --backend cuda until /healthz answers; then stopped)
  local art=$SCRATCH/$1.silica log=$OUT/serve-$1.log t0 pid ok=false lim
  lim=$(left 90)
  t0=$(now)
  "$BIN" serve --index "$art" --addr 127.0.0.1:$PORT --backend "$BACKEND" >"$log" 2>&1 &
  pid=$!
  local end=$(( $(date +%s) + lim ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then ok=true; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  local t1; t1=$(now)
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  rm -f "$art.wal" "$art.lock"
  row "{\"step\":\"serve_ready\",\"name\":\"$1\",\"healthy\":$ok,\"to_healthy_s\":$(secs "$t0" "$t1"),\"phases\":\"$(phases "$log")\"}"
}

# Delete $2 once log $1 says the attributes are parsed (the build maps the JSONL only then).
drop_jsonl_after_parse() {
  ( while kill -0 "$3" 2>/dev/null; do
      if grep -aq 'attributes: [0-9]* rows in' "$1" 2>/dev/null; then rm -f "$2"; echo "deleted $2 after the attribute phase"; break; fi
      sleep 1
    done ) &
}

for step in $STEPS; do
  case $step in
  20m)
    cat=$SCRATCH/cat20m
    synth "$N20" "$cat" || continue
    build gpu-20m "$N20" 200 --vectors "$cat/vectors.npy" --attributes "$cat/attributes.jsonl" --nlist "$NLIST20" --backend "$BACKEND"
    serve_ready gpu-20m
    ;;
  recall)
    cat=$SCRATCH/cat20m
    # Alone (a fresh machine): the catalog and the GPU build first, without calibration
    # (the recall is compared at fixed nprobes; calibration is the 20m step's to measure).
    if [ ! -f "$SCRATCH/gpu-20m.silica" ]; then
      synth "$N20" "$cat" || continue
      build gpu-20m "$N20" 200 --vectors "$cat/vectors.npy" --attributes "$cat/attributes.jsonl" --nlist "$NLIST20" --backend "$BACKEND" --no-calibrate
    fi
    build cpu-20m "$N20" 300 --vectors "$cat/vectors.npy" --attributes "$cat/attributes.jsonl" --nlist "$NLIST20" --backend cpu --no-calibrate
    q=$cat/queries.npy
    for _ in $(seq 1000); do echo '{"filter": ""}'; done >"$SCRATCH/nofilter.jsonl"
    t0=$(now)
    timeout "$(left 120)" "$BIN" search --index "$SCRATCH/gpu-20m.silica" --queries "$q" --k 10 --nprobe "$NLIST20" --k0 1000 --backend "$BACKEND" --out "$SCRATCH/gt-raw.jsonl" >"$OUT/truth.log" 2>&1
    rc=$?
    sed -e 's/"ids":/"ext_ids":/' -e 's/"rows":/"ids":/' "$SCRATCH/gt-raw.jsonl" >"$SCRATCH/gt.jsonl"
    row "{\"step\":\"truth\",\"rc\":$rc,\"wall_s\":$(secs "$t0" "$(now)")}"
    for p in $NPROBES; do
      for who in gpu cpu; do
        [ -f "$SCRATCH/$who-20m.silica" ] || continue
        t0=$(now)
        r=$(timeout "$(left 90)" "$BIN" eval --index "$SCRATCH/$who-20m.silica" --queries "$q" --filters "$SCRATCH/nofilter.jsonl" --ground-truth "$SCRATCH/gt.jsonl" --k 10 --nprobe "$p" --backend "$BACKEND" --json 2>"$OUT/eval-$who-$p.log" | tail -1)
        row "{\"step\":\"eval\",\"built_on\":\"$who\",\"nprobe\":$p,\"wall_s\":$(secs "$t0" "$(now)"),\"result\":${r:-null}}"
      done
    done
    rm -f "$SCRATCH/cpu-20m.silica"
    ;;
  80m)
    rm -rf "$SCRATCH/cat20m" "$SCRATCH"/*-20m.silica
    cat=$SCRATCH/cat80m
    synth "$N80" "$cat" || continue
    art_log=$OUT/gpu-80m.log; : >"$art_log"
    ( build gpu-80m "$N80" 420 --vectors "$cat/vectors.npy" --attributes "$cat/attributes.jsonl" --nlist "$NLIST80" --backend "$BACKEND" --no-embeddings; echo "${rows[-1]}" >"$SCRATCH/row80" ) &
    bpid=$!
    drop_jsonl_after_parse "$art_log" "$cat/attributes.jsonl" $bpid
    wait $bpid
    rows+=("$(cat "$SCRATCH/row80" 2>/dev/null || echo '{"step":"build","name":"gpu-80m","rc":-1}')")
    df -h "$SCRATCH" | tail -1
    rm -rf "$cat"
    serve_ready gpu-80m
    rm -f "$SCRATCH/gpu-80m.silica"
    ;;
  *) echo "unknown step $step (20m, recall, 80m)";;
  esac
done
( IFS=,; echo "{\"machine\":\"$(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GB\",\"date\":\"$(date -u +%FT%TZ)\",\"binary\":\"$("$BIN" --version 2>/dev/null)\",\"steps\":\"$STEPS\",\"total_s\":$(( $(date +%s) - T_START )),\"rows\":[${rows[*]}]}" ) >"$OUT/build-scale.json"
echo "wrote $OUT/build-scale.json (total $(( $(date +%s) - T_START )) s)"
