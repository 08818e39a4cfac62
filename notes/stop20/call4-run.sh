#!/usr/bin/env bash
# Device call 4 (stop 20): issue 14 typed filters on cuda (typed_filters with cuda required,
# typed_bench at 1M), then issue 12 at 20M (scripts/serve-h200.sh, nlist 4096 as stop 19,
# nprobe 32, workers 3). Outputs packed into one tarball.
set -uo pipefail
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R/typed $R/serve20m
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x .bin/h1/*
echo "== typed_filters (cuda required)"
SILICA_REQUIRE_BACKENDS=cuda timeout 120 .bin/h1/typed_filters --test-threads 1 > $R/typed/typed_filters.txt 2>&1; echo "rc $?"
grep -E "test |test result|FAILED|panicked" $R/typed/typed_filters.txt | head -8
echo "== typed_bench cuda 1M B=256"
timeout 150 .bin/h1/typed_bench --backend cuda --n 1000000 --d 128 --queries 512 --batch 256 > $R/typed/bench-b256.txt 2>&1; echo "rc $?"; cat $R/typed/bench-b256.txt | tail -30
echo "== serve 20M"
OUT=$R/serve20m N=20000000 NLIST=4096 NPROBES=32 WORKERS=3 CONNS="16 256 1024" BIN=.bin/h1 timeout 380 bash scripts/serve-h200.sh 2>&1 | tail -30
tar czf $OUTER/call4.tgz -C $R . && ls -la $OUTER/call4.tgz
