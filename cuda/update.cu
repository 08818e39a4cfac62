// silica serve: in-place updates of a resident index (not a pipeline stage). A new snapshot
// of the Bloom planes is the old one copied on the device plus the words that changed, so
// searches still running on the old snapshot never see a half-written update.
#include "common.cuh"

// dst[i] = src[i] for i < n (u64 words).
extern "C" __global__ void copy_u64(u64* __restrict__ dst, const u64* __restrict__ src, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        dst[i] = src[i];
    }
}

// dst[i] = src[i] for i < n (u32 values: the attribute CSR).
extern "C" __global__ void copy_u32(u32* __restrict__ dst, const u32* __restrict__ src, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        dst[i] = src[i];
    }
}

// dst[idx[i]] = val[i] for i < n (u32 values; indices distinct).
extern "C" __global__ void scatter_u32(u32* __restrict__ dst, const u64* __restrict__ idx, const u32* __restrict__ val, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        dst[idx[i]] = val[i];
    }
}

// dst[idx[i]] = val[i] for i < n: the changed words (indices distinct).
extern "C" __global__ void scatter_u64(u64* __restrict__ dst, const u64* __restrict__ idx, const u64* __restrict__ val, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        dst[idx[i]] = val[i];
    }
}
