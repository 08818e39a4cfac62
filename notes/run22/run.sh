#!/usr/bin/env bash
# Device call 7: tests/serve_backends.rs with cuda and wgpu required (serve over HTTP, cpu vs GPUs through writes).
set -uo pipefail
B=$PWD/.bin/p5
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/silica $B/serve_backends
# The test binary runs the server binary from its build path (CARGO_BIN_EXE_silica).
mkdir -p /work/main/target/release && ln -sf $B/silica /work/main/target/release/silica
SILICA_REQUIRE_BACKENDS=cuda,wgpu timeout 300 $B/serve_backends --nocapture 2>&1 | grep -v XDG | tail -15
