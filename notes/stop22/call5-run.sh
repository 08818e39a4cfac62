#!/usr/bin/env bash
# Device call 5 (stop 22, issue 10): 20M CUDA-built vs CPU-built recall@10 at the same nprobe
# scattered rows, malloc trim, calibration resolution 1/64): scripts/build-scale-h200.sh
# STEPS=80m (synth 80M x 128, build --backend cuda --nlist 8192 --no-embeddings, serve healthy).
set -uo pipefail
B=/tmp/b; mkdir -p $B; tar xJf .bin/h3/bins.tar.xz -C $B; chmod +x $B/*
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
BIN=$B/silica STEPS=recall OUT=$R/build DEADLINE=490 timeout 500 bash scripts/build-scale-h200.sh > $R/build.out 2>&1
tail -30 $R/build.out; head -c 3000 $R/build/build-scale.json 2>/dev/null; echo
rm -rf /tmp/silica-scale
tar czf $OUTER/call5.tgz -C $R . && ls -la $OUTER/call5.tgz
