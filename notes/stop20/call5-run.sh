#!/usr/bin/env bash
# Device call 5 (stop 20): issue 11 freshness at 5M (scripts/fresh-h200.sh: 0 / 2,000 /
# 10,000 items/s upsert streams, 40 s each, nprobe 32) and issue 15's Python package on the
# synthetic 1M catalog (scripts/python-h200.sh, which skips the Debian part when data/debian is absent). Packed into one tarball.
set -uo pipefail
OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R/fresh $R/python
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x .bin/silica
S=/tmp/s5; mkdir -p $S
.bin/silica synth --n 5000000 --queries 1024 --out $S/cat 2>&1 | tail -1
python3 notes/stop19/mkfilters.py $S/cat/attributes.jsonl 1024 $S/cat/filters.jsonl
.bin/silica build --backend cuda --vectors $S/cat/vectors.npy --attributes $S/cat/attributes.jsonl --nlist 4096 --no-calibrate --out $S/i.silica 2>&1 | grep -v ETA | tail -1
echo "== fresh"
SILICA=.bin/silica OUT=$R/fresh SECS=40 LOAD_FLAGS="--nprobe 32" timeout 300 bash scripts/fresh-h200.sh $S/i.silica $S/cat/queries.npy $S/cat/filters.jsonl 2>&1 | tail -25
cat $R/fresh/summary.json 2>/dev/null | head -c 3000; echo
rm -rf $S $R/fresh/work.silica*
echo "== python"
OUT=$R/python N=1000000 timeout 200 bash scripts/python-h200.sh 2>&1 | tail -40
tar czf $OUTER/call5.tgz -C $R . && ls -la $OUTER/call5.tgz
