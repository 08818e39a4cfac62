#!/usr/bin/env bash
# Device call 3 (stop 21): main after merging typed2 (issue 14: l2, fields over HTTP, typed
# updates): scripts/typed2-h200.sh (PASS/FAIL per check); then issue 11's freshness at 5M
# (scripts/fresh-h200-call.sh: 0 / 2,000 / 10,000 items/s, SECS each, every acknowledged
# item checked). One tarball.
set -uo pipefail
# The binaries travel xz-packed (70 MB unpacked; the carry limit is 64 MiB).
mkdir -p .bin/h1 && tar xJf .bin/h3/bins.tar.xz -C .bin/h1
B=$PWD/.bin/h1; OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
chmod +x $B/*
mkdir -p target/release/deps /work/main/target/release
cp $B/silica target/release/silica; cp $B/silica /work/main/target/release/silica 2>/dev/null
for t in conformance l2 serve_typed serve_items cuda_golden typed_filters; do cp $B/$t target/release/deps/$t-0; done
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
el "== typed2-h200"
OUT=$R/typed2 SILICA_BIN=$PWD/target/release/silica timeout 240 bash scripts/typed2-h200.sh 2>&1 | grep -E "PASS|FAIL|recall" | tail -20
el "== fresh 5M"
SILICA=$B/silica N=5000000 SECS=${SECS:-40} OUT=$R/fresh timeout 330 bash scripts/fresh-h200-call.sh > $R/fresh.out 2>&1
tail -8 $R/fresh.out
python3 - $R/fresh/fresh/summary.json <<'PY' 2>&1 | head -30
import json,sys
d=json.load(open(sys.argv[1]))
print(json.dumps(d, indent=0)[:2500])
PY
el "== done"
rm -rf /tmp/s5 /tmp/fresh* 2>/dev/null
tar czf $OUTER/call3.tgz -C $R . && ls -la $OUTER/call3.tgz
