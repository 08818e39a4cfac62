#!/usr/bin/env bash
# Device call 3: e2e at 5M with the host breakdown; nprobe 32 and 96.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
echo "== conformance"; SILICA_REQUIRE_BACKENDS=cuda timeout 200 $B/conformance cuda 2>&1 | grep -E "test result|panicked|FAILED" | head
echo "== cuda_golden"; timeout 200 $B/cuda_golden --test-threads=2 2>&1 | grep -E "test result|panicked|FAILED" | head
for np in 32; do
echo "== e2e 5M nprobe $np"; timeout 250 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe $np --json > $OUT/e2e5m-np$np.json 2> $OUT/e2e5m-np$np.log; echo "exit $?"
python3 - <<'PY' $OUT/e2e5m-np$np.json
import json,sys
try: r=json.load(open(sys.argv[1]))
except Exception as e: print("no json", e); sys.exit()
print({k: r[k] for k in r if k.endswith("_s")})
for c in r["classes"]:
    print("%-6s B=%-4d qps %8.0f ratio %.2f host p50 %.3f p99 %.3f dev p50 %.3f recall %.4f viol %d cand %.2f" % (c["class"], c["batch"], c["qps"], c.get("qps_ratio",0), c["host_ms_p50"], c["host_ms_p99"], c["device_ms_p50"], c["recall"], c["violations"], c["candidate_share"]))
    print("      host:", {k: round(v,3) for k,v in c["host_breakdown_ms"].items()})
PY
done
