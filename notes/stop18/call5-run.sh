#!/usr/bin/env bash
# Device call 3: e2e at 5M with the host breakdown; nprobe 32 and 96.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
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
L=$OUT/bench.jsonl
for N in 20000000:16384; do n=${N%:*}; l=${N#*:}
  for bsz in 256; do
    for fp in none 0.2 0.01 0.001 0.0001; do
      f=""; [ $fp != none ] && f="--filter-pass $fp"
      echo "== n $n nlist $l B $bsz filter $fp"
      timeout 100 $B/silica bench --backend cuda --n $n --nlist $l --batch $bsz --nprobe 32 --k 10 --clustered $f --recall-sample 32 --time-budget 1 --json 2>>$OUT/bench.log | tee -a $L | python3 -c 'import json,sys; r=json.load(sys.stdin); s=r["stages"]; print("qps %.0f p50 %.3f ms wall %.3f recall %s cand %d/%d" % (r["qps"], r["latency_ms_p50"], r["wall_ms_p50"], r["recall"], r["candidate_queries"], r["pool_queries"]), {k: round(v["latency_ms_p50"],3) for k,v in s.items() if v})'
    done
  done
done
