#!/usr/bin/env bash
# Device call 3 (stop 22): scripts/python-h200.sh with the wheel beside the host's own
# python3 (/opt/torch/.venv: a nested venv saw neither torch nor numpy in call 2), and
# typed_bench after the mask cache stopped evicting (graph::MaskCache::repeated). One tarball.
set -uo pipefail
B=/tmp/b; mkdir -p $B; tar xJf .bin/h3/bins.tar.xz -C $B; chmod +x $B/*
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
el "== python ($(command -v python3))"
SILICA=$B/silica SILICA_WHEEL=$(ls $B/silica_retrieval-*.whl | head -1) OUT=$R/py timeout 300 bash scripts/python-h200.sh > $R/python.out 2>&1
grep -E "RESULT|FAIL|python:|wheel:" $R/python.out | head -40; tail -2 $R/python.out
el "== typed bench (device terms, then host masks)"
left=$(( 560 - ($(date +%s) - T0) ))
TYPED_BENCH=$B/typed_bench SILICA_BIN=$B/silica PARTS=bench OUT=$R/tb timeout $left bash scripts/typed-device-h200.sh 2>&1 | tail -46
el "== done"
tar czf $OUTER/call3.tgz -C $R . && ls -la $OUTER/call3.tgz
