#!/usr/bin/env bash
# Device call 1 (stop 21, issue 9): the posting route (model/postings.rs, cuda post_compact)
# on cuda: conformance (incl. postings_match_reference_bit_for_bit), golden, pipeline; e2e
# 5M (nlist 4096) and 20M (nlist 16384) at nprobe 32, B 256 and 16, with the per-stage
# breakdown of every class. Everything packed into one tarball.
set -uo pipefail
B=$PWD/.bin/h1; OUTER=${OUT:-/tmp/out}; OUT=$OUTER/r; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > $OUT/gpu.txt 2>&1
echo "== conformance cuda (required)"
SILICA_REQUIRE_BACKENDS=cuda timeout 200 $B/conformance --test-threads 4 cuda 2>&1 | grep -E "^test |test result|panicked" | grep -v "\.\.\. ok" | head -20
SILICA_REQUIRE_BACKENDS=cuda timeout 60 $B/cuda_golden 2>&1 | grep -E "test result|FAILED|panicked" | head -5
SILICA_REQUIRE_BACKENDS=cuda timeout 120 $B/fresh_conformance 2>&1 | grep -E "test result|FAILED|panicked" | head -5
SILICA_REQUIRE_BACKENDS=cuda timeout 60 $B/pipeline 2>&1 | grep -E "test result|FAILED|panicked" | head -5
summ() { python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print('build_s',round(d.get('build_s',0),1),'truth_s',round(d.get('truth_s',0),1))
for r in d['classes']:
    b=r['host_breakdown_ms']
    bd=' '.join(f"{k}={v:.3f}" for k,v in b.items() if isinstance(v,(int,float)) and v>=0.005)
    print(f"{r['class']:>6} B={r['batch']:<4} qps={r['qps']:>9.0f} x{r['qps_ratio']:.2f} recall={r['recall']:.4f} host={r['host_ms_p50']:.3f}/{r['host_ms_p99']:.3f} dev={r['device_ms_p50']:.3f} cand={r['candidate_share']:.2f} | {bd}")
PY
}
echo "== e2e 5M nlist 4096 nprobe 32"
( time timeout 200 $B/silica bench --backend cuda --suite e2e --n 5000000 --nlist 4096 --batch 256,16 --nprobe 32 --time-budget 1.5 --json > $OUT/e2e5m.json ) 2> $OUT/e2e5m.err
tail -3 $OUT/e2e5m.err; summ $OUT/e2e5m.json
echo "== e2e 20M nlist 16384 nprobe 32"
( time timeout 330 $B/silica bench --backend cuda --suite e2e --n 20000000 --nlist 16384 --batch 256,16 --nprobe 32 --time-budget 1.5 --json > $OUT/e2e20m.json ) 2> $OUT/e2e20m.err
tail -3 $OUT/e2e20m.err; summ $OUT/e2e20m.json
tar czf $OUTER/call1.tgz -C $OUT . && ls -la $OUTER/call1.tgz
