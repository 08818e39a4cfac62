#!/usr/bin/env bash
# Device call 2 of this stop (5c5d9c1+): conformance incl. the update case, memcheck of it,
# serve write latency before/after device reuse, Debian answers on every backend.
set -uo pipefail
B=.bin/p2; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/silica $B/silica-before $B/conformance
echo "== conformance (cuda, wgpu required)"
SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 200 $B/conformance 2>&1 | tee $OUT/conformance.txt | grep -E "^test |test result|panicked" | grep -E "update|result|panicked|FAILED"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
echo "== memcheck (cuda update case) with ${CS:-none}"
[ -n "$CS" ] && timeout 200 $CS --tool memcheck $B/conformance cuda::updated 2>&1 | tail -3
python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('$B/debian-ne.silica.xz'), open('/tmp/deb.silica','wb'))"
echo "== serve write latency"
for be in cuda wgpu cpu; do
  for bin in silica-before silica; do timeout 120 python3 $B/wlat.py $B/$bin /tmp/deb.silica $be $((18000 + RANDOM % 1000)); done
done
echo "== Debian: every backend, search --k 100 --rerank none, and eval"
for be in cpu cuda wgpu; do
  $B/silica search --index /tmp/deb.silica --queries $B/queries.npy --filters $B/queries.jsonl --k 100 --rerank none --backend $be --out $OUT/search-$be.jsonl 2>&1 | tail -1
  $B/silica eval --index /tmp/deb.silica --queries $B/queries.npy --filters $B/queries.jsonl --ground-truth $B/ground_truth.jsonl --k 10 --backend $be --json
done
cmp $OUT/search-cpu.jsonl $OUT/search-cuda.jsonl && echo "cuda == cpu (byte-identical)"
cmp $OUT/search-cpu.jsonl $OUT/search-wgpu.jsonl && echo "wgpu == cpu (byte-identical)"
rm -f $OUT/search-*.jsonl
