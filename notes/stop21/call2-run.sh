#!/usr/bin/env bash
# Device call 2 (stop 21): main after merging shard (17), fresh2 (11), build2 (10) and the
# planner's two candidate routes (9). Checks: conformance cuda:: and sharded_cuda2:: +
# `--devices cuda:0,cuda:0` == cuda:0 bit for bit (scripts/shard-h200.sh), fresh_conformance,
# serve_fresh and serve_crash with cuda required, cuda_golden. Figures: e2e 5M (device
# breakdown per stage), build at 20M (scripts/build-scale-h200.sh STEPS=20m). One tarball.
set -uo pipefail
B=$PWD/.bin/h1; OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
chmod +x $B/*
# Tests that start `silica` find it at the path baked in at build time.
mkdir -p /work/main/target/release && cp $B/silica /work/main/target/release/silica 2>/dev/null
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
el "== shard-h200 (conformance cuda + sharded_cuda2, cuda:0,cuda:0 == cuda:0)"
BIN=$B OUT=$R/shard timeout 200 bash scripts/shard-h200.sh 2>&1 | grep -E "PASS|FAIL|SHARD" | tail -20
for t in cuda_golden fresh_conformance serve_fresh serve_crash; do
  el "== $t"; SILICA_REQUIRE_BACKENDS=cuda timeout 120 $B/$t 2>&1 | grep -E "test result|FAILED|panicked" | head -5
done
summ() { python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print('build_s',round(d.get('build_s',0),1),'truth_s',round(d.get('truth_s',0),1))
for r in d['classes']:
    dv=' '.join(f"{k}={v:.3f}" for k,v in r.get('device_breakdown_ms',{}).items() if v>=0.001)
    hb=r['host_breakdown_ms']
    print(f"{r['class']:>6} B={r['batch']:<4} qps={r['qps']:>9.0f} x{r['qps_ratio']:.2f} recall={r['recall']:.4f} host={r['host_ms_p50']:.3f}/{r['host_ms_p99']:.3f} dev={r['device_ms_p50']:.3f} cand={r['candidate_share']:.2f} | dev: {dv} | prep={hb['prepare']:.3f} resp={hb['respond']:.3f} other={hb['other']:.3f}")
PY
}
el "== e2e 5M nlist 4096 nprobe 32"
timeout 150 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 --time-budget 1.5 --json > $R/e2e5m.json 2> $R/e2e5m.err
summ $R/e2e5m.json
el "== build at 20M"
left=$(( 560 - ($(date +%s) - T0) ))
BIN=$B/silica STEPS=20m OUT=$R/build DEADLINE=$left timeout $left bash scripts/build-scale-h200.sh > $R/build.out 2>&1
tail -5 $R/build.out; head -c 2500 $R/build/build-scale.json; echo
el "== done"
rm -rf /tmp/silica-scale
tar czf $OUTER/call2.tgz -C $R . && ls -la $OUTER/call2.tgz
