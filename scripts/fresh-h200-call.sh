#!/usr/bin/env bash
# One H200 call for issue 11 (prebuilt binary only): synthesize an N x 128 catalog (5M by
# default; N=20000000 for 20M, which needs its own call: its build alone takes minutes),
# build it on cuda (nlist 4096), then scripts/fresh-h200.sh at 0 / 2,000 / 10,000 items/s
# (SECS each, nprobe 32, 64 connections, filtered mix), checking every acknowledged item.
#
#   cargo build --release        # on a machine with the toolchain; carry the binary if needed
#   N=5000000 SECS=40 OUT=/tmp/out bash scripts/fresh-h200-call.sh
# Environment [defaults]: SILICA [target/release/silica], N [5000000], SECS [40],
#   OUT [/tmp/out] (results in $OUT/fresh), SCRATCH [/tmp/fresh-cat] (catalog, deleted after).
#
# At 5M and SECS=40 the whole call takes about 5 minutes (synth + build ~1 min, then per
# rate a server start, 5 s warm-up, SECS of load and the self-find check).
#
# Look at $OUT/fresh/summary.json: per rate qps_vs_no_writes and last_window_vs_no_writes
# (target >= 0.9), ack_p99_ms (target <= 20), self_find (every acknowledged item: N/N),
# rss_mb_first_last_max and gpu_mem_mb_first_last_max (steady), capacity_vs_no_writes_last_5s
# (server CPU per search), compactions, and write_phases (per step of the write path: count,
# mean ms, p99 bucket bound; what an acknowledgement waits for is queue + validate +
# wal_append + wal_sync + apply + publish, fold_* and compaction_pause say what the
# background work costs); samples-r*.csv hold RSS / GPU memory over time.
set -uo pipefail
OUTER=${OUT:-/tmp/out}; mkdir -p "$OUTER/fresh"
silica=${SILICA:-target/release/silica}; n=${N:-5000000}; secs=${SECS:-40}
. "$(dirname "$0")/device-env.sh"   # libnvrtc under the name cudarc loads; NCCL_NVLS_ENABLE=0
chmod +x "$silica"
S=${SCRATCH:-/tmp/fresh-cat}; mkdir -p "$S"
"$silica" synth --n "$n" --queries 1024 --out $S/cat 2>&1 | tail -1
python3 scripts/mkfilters.py $S/cat/attributes.jsonl 1024 $S/cat/filters.jsonl
"$silica" build --backend cuda --vectors $S/cat/vectors.npy --attributes $S/cat/attributes.jsonl --nlist 4096 --no-calibrate --out $S/i.silica 2>&1 | grep -v ETA | tail -1
rm -f $S/cat/vectors.npy
SILICA="$silica" OUT="$OUTER/fresh" SECS="$secs" CHECK=all LOAD_FLAGS="--nprobe 32" \
  bash scripts/fresh-h200.sh $S/i.silica $S/cat/queries.npy $S/cat/filters.jsonl 2>&1 | tail -25
rm -rf $S "$OUTER/fresh/work.silica"*
