#!/usr/bin/env bash
# Device call 2 (stop 22): main after merging num (14), dlpack (15), fresh3 (11), build3 (10)
# and the lead's scan changes (9). Checks (cuda required): conformance cuda:: (typed per-query
# case included, via scripts/typed-device-h200.sh), typed_filters, cuda_golden,
# cuda_device_io, fresh_conformance, pipeline. Figures: scripts/python-h200.sh (DLPack, QPS
# from Python vs the executor), typed_bench per-query vs host masks, e2e 5M. One tarball.
set -uo pipefail
B=/tmp/b; mkdir -p $B; tar xJf .bin/h2/bins.tar.xz -C $B; chmod +x $B/*
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
mkdir -p /work/main/target/release && cp $B/silica /work/main/target/release/silica 2>/dev/null
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
for t in cuda_golden "cuda_device_io --test-threads=1" fresh_conformance pipeline; do
  set -- $t
  el "== $t"; SILICA_REQUIRE_BACKENDS=cuda timeout 120 $B/$1 ${2:-} > $R/test-$1.log 2>&1; grep -E "test result|FAILED|panicked|SKIP" $R/test-$1.log | head -8
done
el "== typed tests (conformance cuda::, typed per query, typed_filters)"
CONFORMANCE=$B/conformance TYPED_FILTERS=$B/typed_filters TYPED_BENCH=$B/typed_bench SILICA_BIN=$B/silica PARTS=tests OUT=$R timeout 200 bash scripts/typed-device-h200.sh 2>&1 | tail -12
el "== python"
SILICA=$B/silica SILICA_WHEEL=$(ls $B/silica_retrieval-*.whl | head -1) OUT=$R/py timeout 240 bash scripts/python-h200.sh > $R/python.out 2>&1
grep -E "RESULT|FAIL|wheel|QPS|ms per" $R/python.out | head -30; tail -3 $R/python.out
el "== typed bench"
left=$(( 470 - ($(date +%s) - T0) ))
CONFORMANCE=$B/conformance TYPED_FILTERS=$B/typed_filters TYPED_BENCH=$B/typed_bench SILICA_BIN=$B/silica PARTS=bench OUT=$R/tb timeout $left bash scripts/typed-device-h200.sh 2>&1 | tail -50
summ() { python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for r in d['classes']:
    db=r.get('device_breakdown_ms',{})
    kv=' '.join(f"{k}={v:.3f}" for k,v in db.get('kernels',[]) if v>=0.02)
    print(f"{r['class']:>6} B={r['batch']:<4} qps={r['qps']:>9.0f} x{r['qps_ratio']:.2f} recall={r['recall']:.4f} host={r['host_ms_p50']:.3f} dev={r['device_ms_p50']:.3f} | {kv}")
PY
}
left=$(( 575 - ($(date +%s) - T0) ))
if [ $left -gt 80 ]; then
  el "== e2e 5M"; timeout $left $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 --time-budget 1 --json > $R/e2e5m.json 2> $R/e2e5m.err; summ $R/e2e5m.json
fi
el "== done"
rm -rf $R/py/*.silica $R/py/cat 2>/dev/null
tar czf $OUTER/call2.tgz -C $R . && ls -la $OUTER/call2.tgz
