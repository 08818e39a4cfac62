#!/usr/bin/env bash
# CPU emulation check of cuda/kmeans.cu without a GPU (one OS thread per CUDA thread,
# std::barrier for __syncthreads and warp shuffles): every build-stage kernel against a
# scalar reference (assign_i8 bit-exact with ties, km_assign bit-exact,
# fixed-point sums, split, normalize, gather). Not CI; ~1 min on 2 cores.
#   bash scripts/cuda-emu/run.sh
set -euo pipefail
# KMEANS_CU: the kernel source to check [cuda/kmeans.cu of this checkout].
here=$(cd "$(dirname "$0")" && pwd); tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
src=${KMEANS_CU:-$here/../../cuda/kmeans.cu}
sed 's/#include "common.cuh"/#include "emu.h"/; s/extern "C" //' "$src" > "$tmp/kmeans_emu.h"
g++ -std=c++20 -O2 -ffp-contract=off -pthread -I"$here" -I"$tmp" "$here/defs.cpp" "$here/driver.cpp" -o "$tmp/drv"
"$tmp/drv"
