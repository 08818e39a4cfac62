# shellcheck shell=bash
# Sourced by the GPU scripts (`. scripts/device-env.sh`) before they start silica: makes NVRTC
# and, when asked, a Vulkan loader loadable on a host that has the GPU driver but not the
# exact library names the binaries dlopen. Changes nothing outside its own folder.
#
# NVRTC: cudarc (cuda-12080 bindings) dlopens `libnvrtc.so` / `libnvrtc.so.12`; a CUDA 13
# toolkit or the nvidia-cuda-nvrtc pip wheel may only ship a versioned file. The first
# libnvrtc.so* found is linked as `libnvrtc.so` in $SILICA_ENV_DIR, which goes first on
# LD_LIBRARY_PATH with the library's own folder. Looked for, in order:
#   $NVRTC_LIB                      a file or a folder holding libnvrtc.so*, when set
#   $CUDA_HOME/lib64, $CUDA_HOME/targets/x86_64-linux/lib   (CUDA_HOME default /usr/local/cuda)
#   the nvidia-cuda-nvrtc wheel of $PYTHON (default python3), e.g. the one beside torch
#   the dynamic linker's cache (ldconfig -p)
# NVRTC_FOUND is set to the file ("" when none: kernels then compile only from PTX in
# SILICA_CUDA_PTX_DIR). NVRTC_FIND=1 also searches /usr and /opt (up to 30 s).
#
# Vulkan (wgpu), only where the host lacks libvulkan.so.1: VULKAN_DEBS [.gl when that folder
# holds .deb files] names a folder of loader packages (libvulkan1, libglvnd0, ...); they are
# unpacked with `dpkg -x` into $SILICA_ENV_DIR/vulkan (never into /) and put on
# LD_LIBRARY_PATH. VK_DRIVER_FILES is set to the NVIDIA ICD at $VK_ICD [default
# /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json, the NVIDIA container toolkit's path]
# when that file exists and VK_DRIVER_FILES is unset.
#
# Also: NCCL_NVLS_ENABLE=0 unless set (NVLink multicast off: it needs a fabric manager).
# SILICA_ENV_DIR [${TMPDIR:-/tmp}/silica-env-$UID]: the links and unpacked packages.

SILICA_ENV_DIR=${SILICA_ENV_DIR:-${TMPDIR:-/tmp}/silica-env-$(id -u)}
mkdir -p "$SILICA_ENV_DIR"

_silica_nvrtc() {
  local cuda=${CUDA_HOME:-/usr/local/cuda} py=${PYTHON:-python3}
  {
    if [ -d "${NVRTC_LIB:-}" ]; then ls "$NVRTC_LIB"/libnvrtc.so* 2>/dev/null; elif [ -n "${NVRTC_LIB:-}" ]; then echo "$NVRTC_LIB"; fi
    ls "$cuda"/lib64/libnvrtc.so* "$cuda"/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null
    "$py" -c 'import nvidia.cuda_nvrtc as m, os, glob
for p in m.__path__: print("\n".join(sorted(glob.glob(os.path.join(p, "lib", "libnvrtc.so*")))))' 2>/dev/null
    ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/ {print $NF}'
    [ "${NVRTC_FIND:-0}" = 1 ] && timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null
  } | grep -v builtins | while read -r f; do [ -f "$f" ] && { echo "$f"; break; }; done
}
NVRTC_FOUND=$(_silica_nvrtc || true)   # no match is not an error (callers may run under set -e)
if [ -n "$NVRTC_FOUND" ]; then
  ln -sf "$NVRTC_FOUND" "$SILICA_ENV_DIR/libnvrtc.so"
  LD_LIBRARY_PATH="$SILICA_ENV_DIR:$(dirname "$NVRTC_FOUND")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
export NVRTC_FOUND
unset -f _silica_nvrtc

_debs=${VULKAN_DEBS:-}
[ -z "$_debs" ] && ls .gl/*.deb >/dev/null 2>&1 && _debs=.gl
if [ -n "$_debs" ]; then
  if command -v dpkg >/dev/null; then
    for f in "$_debs"/*.deb; do
      [ -f "$f" ] || continue
      dpkg -x "$f" "$SILICA_ENV_DIR/vulkan" || echo "device-env: could not unpack $f" >&2
    done
    for d in "$SILICA_ENV_DIR"/vulkan/usr/lib/x86_64-linux-gnu "$SILICA_ENV_DIR"/vulkan/usr/lib; do
      [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
  else
    echo "device-env: dpkg not found, Vulkan packages in $_debs not unpacked" >&2
  fi
fi
unset _debs
_icd=${VK_ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
[ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$_icd" ] && export VK_DRIVER_FILES="$_icd"
unset _icd

export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
echo "device-env: nvrtc ${NVRTC_FOUND:-not found}${VK_DRIVER_FILES:+, vulkan ICD $VK_DRIVER_FILES}" >&2
