#!/usr/bin/env bash
# Device call 2 (stop 20, issue 9): cand_score over the row-major copy (codes_rows),
# planner candidate budget 4 by default; conformance + golden on cuda; the candidate
# route's kernels (ncu); e2e 5M with budgets 1 and 4.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
echo "== conformance (cuda required; no Vulkan adapter on this machine in call 1)"
SILICA_REQUIRE_BACKENDS=cuda timeout 240 $B/conformance --test-threads 4 cuda 2>&1 | grep -E "test result|FAILED|panicked" | head -20
SILICA_REQUIRE_BACKENDS=cuda timeout 120 $B/cuda_golden 2>&1 | grep -E "test result|FAILED|panicked" | head -10
echo "== candidate route (synthetic; nprobe 128 at 5M, 512 at 20M)"
for cfg in "5000000 4096 128" "20000000 16384 512"; do set -- $cfg
  for fp in 0.01 0.001; do
    timeout 150 $B/silica bench --backend cuda --n $1 --nlist $2 --batch 256 --nprobe $3 --k 10 --clustered --filter-pass $fp --recall-sample 16 --time-budget 2 --json > $OUT/cand-$1-$fp.json 2>$OUT/cand-$1-$fp.err
    python3 -c "import json;d=json.load(open('$OUT/cand-$1-$fp.json'));print('$1 $fp qps',round(d['qps']),'dev p50',round(d['latency_ms_p50'],3),'cand',round(d['stages']['candidates']['latency_ms_p50'],3),'recall',d['recall'])" 2>&1 | tail -1
  done
done
echo "== ncu per kernel (candidate route, 1%, 5M)"
timeout 200 ncu --clock-control none --print-summary per-kernel --launch-skip 200 --launch-count 80 \
  $B/silica bench --backend cuda --n 5000000 --nlist 4096 --batch 256 --nprobe 128 --k 10 --clustered --filter-pass 0.01 --recall-sample 1 --iters 30 --time-budget 1 > $OUT/ncu-cand.txt 2>&1
grep -E "^\s+[a-z_0-9]+ \(|Duration|DRAM Throughput" $OUT/ncu-cand.txt | head -40
echo "== e2e 5M, budgets 1 and 4"
( time timeout 400 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 --candidate-budget 1,4 --time-budget 1.5 --json > $OUT/e2e5m.json ) 2> $OUT/e2e5m.err
tail -3 $OUT/e2e5m.err
python3 - $OUT/e2e5m.json <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print('build_s',d['build_s'],'truth_s',d['truth_s'])
for r in d['classes']:
    b=r['host_breakdown_ms']
    print(f"cb={r['candidate_budget']} {r['class']:>6} B={r['batch']:<4} qps={r['qps']:>9.0f} x{r['qps_ratio']:.2f} recall={r['recall']:.4f} host={r['host_ms_p50']:.3f}/{r['host_ms_p99']:.3f} dev={r['device_ms_p50']:.3f} cand={r['candidate_share']:.2f} other={b['other']:.3f}")
PY
