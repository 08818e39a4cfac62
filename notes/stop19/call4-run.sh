#!/usr/bin/env bash
# Device call 4 (stop 19): where a 20M --backend cuda build spends its time (finer phase logs).
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
S=/tmp/s; mkdir -p $S
$B/silica synth --n 20000000 --queries 16 --out $S/cat 2>&1 | tail -1
( time RUST_LOG=info timeout 240 $B/silica build --backend cuda --vectors $S/cat/vectors.npy --attributes $S/cat/attributes.jsonl --nlist 4096 --out $S/cuda.silica ) > $OUT/build-cuda-20m.log 2>&1; echo "exit $?"
grep -vE "ETA|^\s*$" $OUT/build-cuda-20m.log | cut -c 1-220 | tail -24
