#!/usr/bin/env bash
# Device call 2 (stop 19): 20M x 128 built with --backend cuda (phase breakdown), load to
# serving-ready, serving curve at 20M (calibrated nprobe and nprobe 64).
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] == $*"; }
el "cuda_build tests"; timeout 60 $B/cuda_build --test-threads=1 > $OUT/cuda_build.log 2>&1; echo "exit $?"; grep -E "test result|panicked|quality" $OUT/cuda_build.log | head -8
S=/tmp/s; mkdir -p $S
el "synth 20M"; $B/silica synth --n 20000000 --queries 1024 --out $S/cat 2>&1 | tail -1
python3 notes/stop19/mkfilters.py $S/cat/attributes.jsonl 1024 $S/cat/filters.jsonl
el "build cuda 20M"; ( time RUST_LOG=info $B/silica build --backend cuda --vectors $S/cat/vectors.npy --attributes $S/cat/attributes.jsonl --nlist 4096 --out $S/cuda.silica ) > $OUT/build-cuda20m.log 2>&1; echo "exit $?"; grep -vE "ETA|^\s*$" $OUT/build-cuda20m.log | tail -14
$B/silica inspect $S/cuda.silica | grep -A1 "calibration" | tee $OUT/calib-cuda20m.txt
rm -f $S/cat/vectors.npy
el "load times 20M"; OUT=$OUT/load BACKENDS=cuda RUNS=1 timeout 120 bash scripts/load-h200.sh $S/cuda.silica $B/silica > $OUT/load.log 2>&1; echo "exit $?"; grep -o '"cmd": "serve".*' $OUT/load/load.json | head -c 600; echo
el "serve curve 20M (calibrated nprobe)"; SILICA=$B/silica OUT=$OUT/serve CONNS="256 1024" WORKERS="1 3" OPEN_RATE=0 timeout 150 bash scripts/serve-h200.sh $S/cuda.silica $S/cat/queries.npy $S/cat/filters.jsonl 5 2>&1 | grep -E "^w[0-9]|run " | sort -u
el "serve 20M nprobe 64"; SILICA=$B/silica OUT=$OUT/serve64 CONNS="256 1024" WORKERS="3" BODIES="binary" OPEN_RATE=0 LOAD_FLAGS="--nprobe 64" timeout 80 bash scripts/serve-h200.sh $S/cuda.silica $S/cat/queries.npy $S/cat/filters.jsonl 5 2>&1 | grep -E "^w[0-9]" | sort -u
el "done"
