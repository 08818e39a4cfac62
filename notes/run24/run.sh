#!/usr/bin/env bash
# Device call 9: conformance + memcheck of the update case, serve_backends, update_cost at 20M (cuda, wgpu).
set -uo pipefail
B=$PWD/.bin/p8
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/*
mkdir -p /work/main/target/release && ln -sf $B/silica /work/main/target/release/silica
echo "== conformance"; SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 200 $B/conformance 2>&1 | grep -E "update|test result|panicked|FAILED"
echo "== memcheck"; timeout 200 /usr/local/cuda/bin/compute-sanitizer --tool memcheck $B/conformance cuda::updated 2>&1 | tail -1
echo "== serve_backends"; SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 200 $B/serve_backends 2>&1 | grep -E "test result|panicked"
for be in cuda wgpu; do timeout 250 $B/update_cost --backend $be 2>&1 | grep -v XDG; done
