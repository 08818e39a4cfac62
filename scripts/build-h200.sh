#!/usr/bin/env bash
# Build at scale on the H200 host with only the prebuilt binary (issue 10).
#
#   cargo build --release            # on a machine with the toolchain (carry the binary if the GPU host has none)
#   scripts/build-h200.sh [SILICA_BINARY] [SIZES]       e.g. scripts/build-h200.sh target/release/silica "20000000 80000000"
# SILICA_BINARY [target/release/silica]; SCRATCH and OUT below; scripts/device-env.sh for NVRTC.
#
# For each N in SIZES (default: 20000000): `silica synth` writes the e2e catalog
# (vectors.npy f16 [N,128] + attributes.jsonl, 5 fields) into $SCRATCH (default /tmp/silica-build),
# then `silica build --nlist 4096` runs with --backend cpu and --backend cuda (skipped with a
# note when the binary says cuda is not available). Records wall seconds and peak RSS (the
# build prints `peak RSS` from /proc VmHWM; /usr/bin/time -v is used when present) and the
# artifact size, into $OUT/build-h200.json (or ./build-h200.json without $OUT).
#
# Disk (64 GB): N=20M needs 5.1 GB input + ~12 GB artifact. N=80M needs 20.5 GB input + ~48 GB
# artifact with embeddings, more than fits beside the input: 80M builds use --no-embeddings
# (artifact ~28 GB) and each artifact is deleted after it is measured.
# Targets: 20M <= 60 s and 80M <= 300 s with --backend cuda; peak RSS <= 1.5x artifact.
set -u
BIN=${1:-target/release/silica}
SIZES=${2:-20000000}
SCRATCH=${SCRATCH:-/tmp/silica-build}
RESULT=${OUT:-.}/build-h200.json
mkdir -p "$SCRATCH"
. "$(dirname "$0")/device-env.sh"   # libnvrtc for the cuda build (cuda/kmeans.cu)
export RUST_LOG=${RUST_LOG:-info}
rows=()
measure() { # name n backend extra-args...
  local name=$1 n=$2 backend=$3; shift 3
  local cat=$SCRATCH/cat$n art=$SCRATCH/$name.silica log=$SCRATCH/$name.log
  local t0 t1 rc
  t0=$(date +%s.%N)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$BIN" build --vectors "$cat/vectors.npy" --attributes "$cat/attributes.jsonl" --out "$art" --nlist 4096 --backend "$backend" "$@" >"$log" 2>&1
  else
    "$BIN" build --vectors "$cat/vectors.npy" --attributes "$cat/attributes.jsonl" --out "$art" --nlist 4096 --backend "$backend" "$@" >"$log" 2>&1
  fi
  rc=$?
  t1=$(date +%s.%N)
  local wall rss size
  wall=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")
  rss=$(grep -o 'peak RSS [0-9.]* MB' "$log" | grep -o '[0-9.]*' | tail -1)
  [ -z "$rss" ] && rss=$(awk '/Maximum resident/ {print $6/1000}' "$log")
  size=$(stat -c %s "$art" 2>/dev/null || echo 0)
  echo "$name: rc=$rc wall=${wall}s rss=${rss:-?}MB artifact=$size bytes"
  tail -3 "$log"
  rows+=("{\"name\":\"$name\",\"n\":$n,\"backend\":\"$backend\",\"args\":\"$*\",\"rc\":$rc,\"wall_s\":$wall,\"peak_rss_mb\":${rss:-null},\"artifact_bytes\":$size,\"log_tail\":$(tail -5 "$log" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))' 2>/dev/null || echo '""')}")
  cp "$log" "${OUT:-.}/" 2>/dev/null
}
for n in $SIZES; do
  extra=()
  [ "$n" -gt 40000000 ] && extra=(--no-embeddings)
  t0=$(date +%s)
  "$BIN" synth --n "$n" --dim 128 --queries 1000 --out "$SCRATCH/cat$n" || { echo "synth failed"; exit 1; }
  echo "synth N=$n: $(( $(date +%s) - t0 )) s"; df -h "$SCRATCH" | tail -1
  measure "cpu-$n" "$n" cpu "${extra[@]}"
  rm -f "$SCRATCH/cpu-$n.silica"
  measure "cuda-$n" "$n" cuda "${extra[@]}"
  rm -f "$SCRATCH/cuda-$n.silica"
  rm -rf "$SCRATCH/cat$n"
done
( IFS=,; echo "{\"machine\":\"$(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GB\",\"date\":\"$(date -u +%FT%TZ)\",\"rows\":[${rows[*]}]}" ) > "$RESULT"
echo "wrote $RESULT"
