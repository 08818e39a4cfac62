#!/usr/bin/env bash
# Load time of a built artifact (issue 10: an 80M x 128 artifact serving-ready in <= 60 s):
#   * `silica inspect` (header only),
#   * `silica search` of 4 queries, wall clock (almost all of it is the load), per backend,
#     with and without --no-verify, and the load's phase line (map / verify / value checks),
#   * `silica serve` from start to `GET /healthz` answering, per backend, with its phase
#     lines (map / verify / value checks, upload, id map).
# Every measurement runs RUNS times: the first may read the file from disk, later ones
# from the page cache (COLD=1 drops the page cache before each run: needs root).
#   scripts/load-h200.sh ARTIFACT.silica [SILICA_BIN]     (env: BACKENDS="cpu cuda" RUNS=2 OUT=dir)
# Needs only the prebuilt binary, bash, curl and coreutils. Writes $OUT/load.json and logs.
set -euo pipefail
art="$1"; bin="${2:-target/release/silica}"
out="${OUT:-/tmp/load-h200}"; mkdir -p "$out"
. "$(dirname "$0")/device-env.sh"   # libnvrtc for the cuda backend
backends="${BACKENDS:-cpu cuda}"; runs="${RUNS:-2}"; port="${PORT:-18191}"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
cold() { if [ "${COLD:-0}" = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }
# The "loaded ..." / "open on ..." info lines of a log, as one JSON string.
phases() { { grep -hoE '(loaded|open on) .*' "$1" || true; } | tr '\n' ';' | sed 's/"/\\"/g'; }

t0=$(now); "$bin" inspect --no-verify "$art" >"$out/inspect.txt"; t1=$(now)
inspect_s=$(secs "$t0" "$t1")
dim=$(awk '$1 == "dim" { print $2 }' "$out/inspect.txt")
n=$(awk '$1 == "n" { print $2 }' "$out/inspect.txt")
bytes=$(stat -c %s "$art")
# 4 queries of all ones (.npy f32 [4, dim]).
q="$out/q.npy"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (4, $dim), }"
pad=$(( 63 - (10 + ${#hdr}) % 64 ))
{ printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr} + pad + 1) % 256 )))\\x$(printf %02x $(( (${#hdr} + pad + 1) / 256 )))"
  printf '%s%*s\n' "$hdr" "$pad" ''; for _ in $(seq $(( 4 * dim ))); do printf '\x00\x00\x80\x3f'; done; } >"$q"

rows=()
for be in $backends; do
  for flags in "" "--no-verify"; do
    for run in $(seq "$runs"); do
      cold
      log="$out/search-$be${flags:+-noverify}-$run.log"
      t0=$(now)
      if RUST_LOG=info "$bin" search --index "$art" --queries "$q" --k 10 --backend "$be" $flags --out "$out/r.jsonl" 2>"$log"; then ok=true; else ok=false; fi
      t1=$(now)
      rows+=("{\"cmd\": \"search\", \"backend\": \"$be\", \"flags\": \"$flags\", \"run\": $run, \"ok\": $ok, \"wall_s\": $(secs "$t0" "$t1"), \"phases\": \"$(phases "$log")\"}")
      echo "search $be $flags run $run: $(secs "$t0" "$t1") s ($ok)"
    done
  done
  for run in $(seq "$runs"); do
    cold
    log="$out/serve-$be-$run.log"
    t0=$(now)
    RUST_LOG=info "$bin" serve --index "$art" --addr 127.0.0.1:$port --backend "$be" >"$log" 2>&1 &
    pid=$!
    ok=false
    for _ in $(seq 6000); do
      if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ok=true; break; fi
      kill -0 $pid 2>/dev/null || break
      sleep 0.05
    done
    t1=$(now)
    kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
    # A crash-safe log sits beside the artifact; the next start replays it (nothing written here).
    rows+=("{\"cmd\": \"serve\", \"backend\": \"$be\", \"run\": $run, \"healthy\": $ok, \"to_healthy_s\": $(secs "$t0" "$t1"), \"phases\": \"$(phases "$log")\"}")
    echo "serve $be run $run: healthy after $(secs "$t0" "$t1") s ($ok)"
  done
done
{
  echo "{\"artifact\": \"$art\", \"bytes\": $bytes, \"n\": $n, \"dim\": $dim, \"host\": \"$(hostname)\", \"cores\": $(nproc), \"date\": \"$(date -u +%FT%TZ)\","
  echo " \"inspect_s\": $inspect_s, \"runs\": ["
  for i in "${!rows[@]}"; do echo "  ${rows[$i]}$([ "$i" -lt $(( ${#rows[@]} - 1 )) ] && echo ,)"; done
  echo "]}"
} >"$out/load.json"
echo "wrote $out/load.json"
