// Benchmark utility: the device's streaming-read ceiling (the bound for the scan).
#include "common.cuh"

// XOR of n 16-byte words read with 4 independent 16-byte loads per thread in flight;
// out[block] keeps the result alive. Grid-stride.
extern "C" __global__ void read_bw(const uint4* __restrict__ p, u64 n, u32* __restrict__ out) {
    uint4 acc = make_uint4(0, 0, 0, 0);
    const u64 stride = (u64)gridDim.x * blockDim.x;
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride), d = __ldcs(p + i + 3 * stride);
        acc.x ^= a.x ^ b.x ^ c.x ^ d.x;
        acc.y ^= a.y ^ b.y ^ c.y ^ d.y;
        acc.z ^= a.z ^ b.z ^ c.z ^ d.z;
        acc.w ^= a.w ^ b.w ^ c.w ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = __ldcs(p + i);
        acc.x ^= a.x; acc.y ^= a.y; acc.z ^= a.z; acc.w ^= a.w;
    }
    u32 v = acc.x ^ acc.y ^ acc.z ^ acc.w;
    for (int o = 16; o > 0; o >>= 1) v ^= __shfl_xor_sync(FULL_MASK, v, o);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}
