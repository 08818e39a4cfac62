#!/usr/bin/env bash
# Device call 1 (this stop): conformance (cuda, wgpu) + cuda_golden, then the real path
# through the executor at 5M and 20M per filter pass, then the peer suite.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/*
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
echo "== conformance"; SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 300 $B/conformance 2>&1 | grep -E "test result|panicked|FAILED|cuda::" | head -40
echo "== cuda_golden"; timeout 200 $B/cuda_golden --test-threads=2 2>&1 | grep -E "test result|panicked|FAILED" | head

L=$OUT/bench.jsonl
for N in 5000000:4096 20000000:16384; do n=${N%:*}; l=${N#*:}
  for bsz in 256 16; do
    for fp in none 0.2 0.01 0.001 0.0001; do
      f=""; [ $fp != none ] && f="--filter-pass $fp"
      echo "== n $n nlist $l B $bsz filter $fp"
      timeout 150 $B/silica bench --backend cuda --n $n --nlist $l --batch $bsz --nprobe 32 --k 10 --clustered $f --recall-sample 32 --time-budget 2 --json 2>>$OUT/bench.log | tee -a $L | python3 -c 'import json,sys; r=json.load(sys.stdin); s=r["stages"]; print("qps %.0f p50 %.3f ms wall %.3f recall %s cand %d/%d" % (r["qps"], r["latency_ms_p50"], r["wall_ms_p50"], r["recall"], r["candidate_queries"], r["pool_queries"]), {k: round(v["latency_ms_p50"],3) for k,v in s.items() if v})'
    done
  done
done
echo "== peer suite"; timeout 200 $B/silica bench --backend cuda --suite peer > $OUT/peer.txt 2>&1; echo "exit $?"; tail -14 $OUT/peer.txt
