#!/usr/bin/env bash
# Device call 3 (stop 19): 20M build after the parallel attribute parser, cuda then cpu
# (calibration curves compared at the same nprobe), serving at nprobe 32.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] == $*"; }
S=/tmp/s; mkdir -p $S
el "synth 20M"; $B/silica synth --n 20000000 --queries 1024 --out $S/cat 2>&1 | tail -1
python3 notes/stop19/mkfilters.py $S/cat/attributes.jsonl 1024 $S/cat/filters.jsonl
for be in cuda cpu; do
  el "build $be 20M"; ( time RUST_LOG=info timeout 260 $B/silica build --backend $be --vectors $S/cat/vectors.npy --attributes $S/cat/attributes.jsonl --nlist 4096 --out $S/$be.silica ) > $OUT/build-$be-20m.log 2>&1; echo "exit $?"; grep -vE "ETA|^\s*$" $OUT/build-$be-20m.log | tail -12
  $B/silica inspect $S/$be.silica | grep -A1 "calibration" | tee $OUT/calib-$be-20m.txt
  [ $be = cuda ] && { el "serve 20M nprobe 32"; SILICA=$B/silica OUT=$OUT/serve32 CONNS="1024" WORKERS="1 3" BODIES="binary" OPEN_RATE=0 LOAD_FLAGS="--nprobe 32" timeout 70 bash scripts/serve-h200.sh $S/cuda.silica $S/cat/queries.npy $S/cat/filters.jsonl 5 2>&1 | grep -E "^w[0-9]" | sort -u; rm -f $S/cuda.silica; }
done
el "done"
