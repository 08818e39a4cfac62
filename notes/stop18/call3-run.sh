#!/usr/bin/env bash
# Device call 2 (this stop): conformance + golden; e2e suite at 5M (real builder); the
# synthetic filter sweep through the executor at 5M and 20M.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/*
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance"; SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 300 $B/conformance 2>&1 | grep -E "test result|panicked|FAILED" | head -20
echo "== cuda_golden"; timeout 200 $B/cuda_golden --test-threads=2 2>&1 | grep -E "test result|panicked|FAILED" | head
echo "== e2e 5M"; /usr/bin/time -v timeout 400 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 ${E2E_ARGS:-} --json > $OUT/e2e5m.json 2> $OUT/e2e5m.log; echo "exit $?"
python3 - <<'PY' $OUT/e2e5m.json
import json,sys
try: r=json.load(open(sys.argv[1]))
except Exception as e: print("no json", e); sys.exit()
print({k: r[k] for k in r if k.endswith("_s")})
for c in r["classes"]: print("%-6s B=%-4d qps %8.0f ratio %.2f host p50 %.3f p99 %.3f dev p50 %.3f recall %.4f viol %d cand %.2f pass %s" % (c["class"], c["batch"], c["qps"], c.get("qps_ratio",0), c["host_ms_p50"], c["host_ms_p99"], c["device_ms_p50"], c["recall"], c["violations"], c["candidate_share"], c.get("pass_fraction")))
PY
grep -E "Maximum resident|Elapsed" $OUT/e2e5m.log
L=$OUT/bench.jsonl
for N in 5000000:4096 20000000:16384; do n=${N%:*}; l=${N#*:}
  for bsz in 256 16; do
    for fp in none 0.2 0.01 0.001 0.0001; do
      f=""; [ $fp != none ] && f="--filter-pass $fp"
      echo "== n $n nlist $l B $bsz filter $fp"
      timeout 100 $B/silica bench --backend cuda --n $n --nlist $l --batch $bsz --nprobe 32 --k 10 --clustered $f --recall-sample 32 --time-budget 1 --json 2>>$OUT/bench.log | tee -a $L | python3 -c 'import json,sys; r=json.load(sys.stdin); s=r["stages"]; print("qps %.0f p50 %.3f ms wall %.3f recall %s cand %d/%d" % (r["qps"], r["latency_ms_p50"], r["wall_ms_p50"], r["recall"], r["candidate_queries"], r["pool_queries"]), {k: round(v["latency_ms_p50"],3) for k,v in s.items() if v})'
    done
  done
done
