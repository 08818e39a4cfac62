#!/usr/bin/env bash
# Device call 1 (stop 20, issue 9): cuda conformance with the planner changes, cand_score
# vs cand_score_g8 on the candidate route, per-kernel times (ncu) there, and the e2e 5M
# planner sweep (candidate budget x widening share) through the real executor.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
echo "== conformance (cuda required)"
SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 240 $B/conformance --test-threads 4 2>&1 | grep -E "test result|FAILED|panicked" | head -20
SILICA_REQUIRE_BACKENDS=cuda timeout 120 $B/cuda_golden 2>&1 | grep -E "test result|FAILED|panicked" | head -10
echo "== cand_score A/B (synthetic, candidate route: nprobe 128 -> budget 156k rows at 5M)"
for kern in thread g8; do
  for fp in 0.01 0.001; do
    SILICA_CAND_SCORE=$kern timeout 120 $B/silica bench --backend cuda --n 5000000 --nlist 4096 --batch 256 --nprobe 128 --k 10 --clustered --filter-pass $fp --recall-sample 16 --time-budget 2 --json > $OUT/ab-$kern-$fp.json 2>$OUT/ab-$kern-$fp.err
    python3 -c "import json,sys;d=json.load(open('$OUT/ab-$kern-$fp.json'));print('$kern $fp', 'qps',round(d.get('qps',0)), 'lat p50',d.get('latency_ms_p50'), {k:v.get('latency_ms_p50') for k,v in d.get('stages',{}).items()})" 2>&1 | tail -1
  done
done
echo "== ncu per kernel (candidate route, 1%)"
if command -v ncu >/dev/null; then
  timeout 200 ncu --clock-control none --print-summary per-kernel --launch-skip 200 --launch-count 80 \
    $B/silica bench --backend cuda --n 5000000 --nlist 4096 --batch 256 --nprobe 128 --k 10 --clustered --filter-pass 0.01 --recall-sample 1 --iters 30 --time-budget 1 > $OUT/ncu-cand.txt 2>&1
  grep -E "^\s+[a-z_0-9]+.*\(|Duration|Memory Throughput|DRAM Throughput" $OUT/ncu-cand.txt | head -60
else echo "no ncu"; fi
echo "== e2e 5M planner sweep"
( time timeout 420 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 --candidate-budget 1,2,4 --widen-share 0,0.5 --time-budget 1 --json > $OUT/e2e5m.json ) 2> $OUT/e2e5m.err
tail -3 $OUT/e2e5m.err
python3 - $OUT/e2e5m.json <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for r in d['classes']:
    print(f"cb={r['candidate_budget']} w={r['widen_share']:.2f} {r['class']:>6} B={r['batch']:<4} qps={r['qps']:>9.0f} x{r['qps_ratio']:.2f} recall={r['recall']:.4f} dev={r['device_ms_p50']:.3f} cand={r['candidate_share']:.2f}")
PY
