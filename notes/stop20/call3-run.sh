#!/usr/bin/env bash
# Device call 3 (stop 20, issue 12 on merged main): cuda_golden, then scripts/serve-h200.sh
# (conformance cuda:: incl. concurrent lanes, serve_pipeline, 5M synth + cuda build,
# executor QPS, HTTP sweep 16..1024 connections, workers 1 and 3, binary body). Everything
# under $OUT/r is packed into one tarball (the tool returns at most 8 files).
set -uo pipefail
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x .bin/h1/*
SILICA_REQUIRE_BACKENDS=cuda timeout 120 .bin/h1/cuda_golden 2>&1 | grep -E "test result|FAILED|panicked" | head -5
OUT=$R timeout 500 bash scripts/serve-h200.sh 2>&1 | tail -60
cat $R/summary.txt 2>/dev/null | head -50
tar czf $OUTER/serve.tgz -C $R . && ls -la $OUTER/serve.tgz
