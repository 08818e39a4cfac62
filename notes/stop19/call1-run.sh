#!/usr/bin/env bash
# Device call 1 (stop 19): GPU correctness of the merged branches, 5M build cpu vs cuda
# (wall, peak RSS, calibration curves), serve-ready time, serving curve at 5M.
set -uo pipefail
B=$PWD/.bin/h1; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
chmod +x $B/*
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] == $*"; }
el "cuda_build tests"; timeout 90 $B/cuda_build --test-threads=1 > $OUT/cuda_build.log 2>&1; echo "exit $?"; grep -E "test result|panicked|FAILED|SKIP|quality" $OUT/cuda_build.log | head -20
el "cuda_build timing"; timeout 90 $B/cuda_build timing_ --ignored --nocapture --test-threads=1 > $OUT/cuda_build_timing.log 2>&1; echo "exit $?"; grep -E '^\{|panicked' $OUT/cuda_build_timing.log | tail -2
el "conformance cuda"; SILICA_REQUIRE_BACKENDS=cuda timeout 120 $B/conformance cuda > $OUT/conformance.log 2>&1; echo "exit $?"; grep -E "test result|panicked|FAILED" $OUT/conformance.log | head
el "conformance cuda mapped, 4 KiB staging"; SILICA_CUDA_STAGE_BYTES=4096 timeout 60 $B/conformance cuda::mapped 2>&1 | grep -E "test result|panicked|FAILED" | head -4
mkdir -p /work/main/target/release && cp $B/silica /work/main/target/release/silica
el "serve_pipeline"; timeout 60 $B/serve_pipeline > $OUT/serve_pipeline.log 2>&1; echo "exit $?"; grep -E "test result|panicked|FAILED" $OUT/serve_pipeline.log | head -4
S=/tmp/s; mkdir -p $S
el "synth 5M"; $B/silica synth --n 5000000 --queries 1024 --out $S/cat 2>&1 | tail -1
python3 notes/stop19/mkfilters.py $S/cat/attributes.jsonl 1024 $S/cat/filters.jsonl
for be in cuda cpu; do
  el "build $be 5M"; ( time $B/silica build --backend $be --vectors $S/cat/vectors.npy --attributes $S/cat/attributes.jsonl --nlist 4096 --out $S/$be.silica ) > $OUT/build-$be.log 2>&1; echo "exit $?"; grep -v "^$" $OUT/build-$be.log | tail -5
  $B/silica inspect $S/$be.silica | grep -A1 "calibration" | tee $OUT/calib-$be.txt
done
rm -f $S/cpu.silica
el "load times"; OUT=$OUT/load BACKENDS=cuda RUNS=1 timeout 90 bash scripts/load-h200.sh $S/cuda.silica $B/silica > $OUT/load.log 2>&1; echo "exit $?"; cat $OUT/load/load.json 2>/dev/null | head -c 1500; echo
el "serve curve 5M"; SILICA=$B/silica OUT=$OUT/serve CONNS="64 256 1024" WORKERS="1 3" OPEN_RATE=0 timeout 200 bash scripts/serve-h200.sh $S/cuda.silica $S/cat/queries.npy $S/cat/filters.jsonl 5 2>&1 | grep -v "^$" | tail -20
el "done"
