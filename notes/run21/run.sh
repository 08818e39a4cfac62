#!/usr/bin/env bash
# Device call 6: conformance (update case incl. device-side plane patches), memcheck, serve write latency.
set -uo pipefail
B=.bin/p5; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/silica $B/conformance
echo "== conformance (cuda, wgpu required)"
SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 200 $B/conformance 2>&1 | tee $OUT/conformance.txt | grep -E "update|test result|panicked|FAILED"
echo "== memcheck (cuda update case)"
timeout 200 /usr/local/cuda/bin/compute-sanitizer --tool memcheck $B/conformance cuda::updated 2>&1 | tail -2
python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('$B/debian-ne.silica.xz'), open('/tmp/deb.silica','wb'))"
echo "== serve write latency"
for be in cuda wgpu cpu; do timeout 120 python3 $B/wlat.py $B/silica /tmp/deb.silica $be $((18000 + RANDOM % 1000)); done
