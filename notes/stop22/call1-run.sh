#!/usr/bin/env bash
# Device call 1 (stop 22, issue 9 + 12): the scan threshold from the sample also when the
# masked rows fit the candidate buffer (cuda/scan.cu scan_threshold), kernel phases in the
# e2e device breakdown. Checks: conformance cuda::, cuda_golden, pipeline (cuda required).
# Figures: e2e 5M (kernels per stage), serve 20M (scripts/serve-h200.sh). One tarball.
set -uo pipefail
B=$PWD/.bin/h1; OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
chmod +x $B/*
mkdir -p /work/main/target/release && cp $B/silica /work/main/target/release/silica 2>/dev/null
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
for t in "conformance cuda::" cuda_golden "pipeline"; do
  set -- $t
  el "== $t"; SILICA_REQUIRE_BACKENDS=cuda timeout 150 $B/$1 ${2:-} 2>&1 | grep -E "test result|FAILED|panicked" | head -8
done
summ() { python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print('build_s',round(d.get('build_s',0),1),'truth_s',round(d.get('truth_s',0),1))
for r in d['classes']:
    db=r.get('device_breakdown_ms',{})
    dv=' '.join(f"{k}={v:.3f}" for k,v in db.items() if isinstance(v,(int,float)) and v>=0.001)
    kv=' '.join(f"{k}={v:.3f}" for k,v in db.get('kernels',[]) if v>=0.002)
    hb=r['host_breakdown_ms']
    print(f"{r['class']:>6} B={r['batch']:<4} qps={r['qps']:>9.0f} x{r['qps_ratio']:.2f} recall={r['recall']:.4f} host={r['host_ms_p50']:.3f}/{r['host_ms_p99']:.3f} dev={r['device_ms_p50']:.3f} cand={r['candidate_share']:.2f} | dev: {dv} | prep={hb['prepare']:.3f} resp={hb['respond']:.3f} other={hb['other']:.3f}\n        kernels: {kv}")
PY
}
el "== e2e 5M nlist 4096 nprobe 32"
timeout 170 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 --time-budget 1.5 --json > $R/e2e5m.json 2> $R/e2e5m.err
summ $R/e2e5m.json; tail -3 $R/e2e5m.err
el "== serve 20M"
mkdir -p /tmp/sbin && cp $B/silica /tmp/sbin/
left=$(( 570 - ($(date +%s) - T0) ))
BIN=/tmp/sbin OUT=$R/serve20m N=20000000 NLIST=4096 NPROBES=32 WORKERS=3 CONNS="16 64 256 1024" SECS=5 timeout $left bash scripts/serve-h200.sh > $R/serve20m.out 2>&1
tail -22 $R/serve20m.out
el "== done"
tar czf $OUTER/call1.tgz -C $R . && ls -la $OUTER/call1.tgz
