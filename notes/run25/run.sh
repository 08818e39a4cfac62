#!/usr/bin/env bash
# Device call 10: after the review refactor (CUDA mask launch args, wgpu buffer helpers): conformance + cuda_golden.
set -uo pipefail
B=$PWD/.bin/p9
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/*
SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 200 $B/conformance 2>&1 | grep -E "test result|panicked|FAILED"
timeout 200 $B/cuda_golden --test-threads=2 2>&1 | grep -E "test result|panicked|FAILED|SKIP"
