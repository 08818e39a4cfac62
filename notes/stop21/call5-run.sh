#!/usr/bin/env bash
# Device call 5 (stop 21): issue 10's 80M build with the rest of the session's device time
# (scripts/build-scale-h200.sh STEPS=80m: synth 80M x 128, build --backend cuda --nlist 8192
# --no-embeddings with calibration, serve healthy), deadline cut to what is left.
set -uo pipefail
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x .bin/h4/silica
BIN=.bin/h4/silica STEPS=80m OUT=$R/build DEADLINE=${DEADLINE:-500} timeout 510 bash scripts/build-scale-h200.sh > $R/build.out 2>&1
tail -4 $R/build.out; cat $R/build/build-scale.json | head -c 3000; echo
rm -rf /tmp/silica-scale
