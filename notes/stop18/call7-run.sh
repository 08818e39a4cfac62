#!/usr/bin/env bash
# Device call 7: after the review refactor (one Bloom program walk): cuda conformance + golden, one e2e-free sweep row.
set -uo pipefail
B=$PWD/.bin/h1
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
echo "== conformance cuda"; SILICA_REQUIRE_BACKENDS=cuda timeout 200 $B/conformance cuda 2>&1 | grep -E "test result|panicked|FAILED" | head
echo "== cuda_golden"; timeout 200 $B/cuda_golden --test-threads=2 2>&1 | grep -E "test result|panicked|FAILED" | head
for fp in 0.001 0.0001; do timeout 100 $B/silica bench --backend cuda --n 5000000 --nlist 4096 --batch 256 --nprobe 32 --k 10 --clustered --filter-pass $fp --recall-sample 16 --time-budget 1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print("pass", r["filter_pass"], "qps %.0f p50 %.3f recall %s cand %d/%d" % (r["qps"], r["latency_ms_p50"], r["recall"], r["candidate_queries"], r["pool_queries"]))'; done
