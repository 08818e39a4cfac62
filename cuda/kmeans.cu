// Build stage: k-means training (f32) and the int8 list assignment of every row
// (crates/cuda/src/build.rs drives it; crates/core/src/model/compute.rs states the rules).
//
// Both the Lloyd step and the assignment are "GEMM + row argmax": a block owns 128 rows
// and sweeps every 128-centroid tile, 8 words (32 bytes) of each row per k-step through
// double-buffered shared memory; each thread holds an 8x8 accumulator tile in registers
// and a running best per row. Words are 4 int8 codes (dp4a, exact i32) or one f32 (FMA).
//
// Floors (H200, 132 SMs at ~1.98 GHz; Hopper issues dp4a at the IMAD rate, 64 lanes per
// SM per clock, 4 MACs each -> ~67 TMAC/s): assigning 20M rows x 4096 lists x 128 dims is
// 1.05e13 int8 MACs = ~0.16 s; its 2.56 GB of codes over PCIe Gen5 x16 (~50 GB/s pinned)
// take ~0.05 s and overlap the compute (two streams, double buffer).
#include "common.cuh"

#define TB 128   // rows and centroids per block tile
#define TK 8     // 32-bit words per k-step
#define TS 132   // shared row stride in words (TB + 4: conflict-free transposed stores)

// The running best of a row: higher score, ties (IEEE ==, so -0 == +0) to the lower list,
// which is the sequential rule `if s > best { best = s }` over lists in increasing order.
__device__ __forceinline__ void better(float& bs, u32& bl, float s, u32 l) {
    if (s > bs || (s == bs && l < bl)) { bs = s; bl = l; }
}

struct MacI8 {
    typedef int Acc;
    static __device__ __forceinline__ int mac(u32 a, u32 b, int acc) { return __dp4a((int)a, (int)b, acc); }
    static __device__ __forceinline__ float score(int acc, const float* scale, u32 l) { return int_score(acc, __ldg(scale + l)); }
};
struct MacF32 {
    typedef float Acc;
    static __device__ __forceinline__ float mac(u32 a, u32 b, float acc) { return fmaf(__uint_as_float(a), __uint_as_float(b), acc); }
    static __device__ __forceinline__ float score(float acc, const float*, u32) { return acc; }
};

// out[r] = argmax_l score(A_r, B_l), l < L. A: [nr, nw] words; B: [ceil(L/128)*128, nw]
// words (rows >= L zero); nw a multiple of TK. Grid: ceil(nr/128); block 256.
template <typename M>
__device__ __forceinline__ void tile_argmax(const uint4* __restrict__ A, u32 nr, const uint4* __restrict__ B,
                                            const float* __restrict__ scale, u32 L, u32 nw, u32* __restrict__ out) {
    typedef typename M::Acc Acc;
    __shared__ __align__(16) u32 As[2][TK][TS];
    __shared__ __align__(16) u32 Bs[2][TK][TS];
    const u32 t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const u32 tx = lane & 15, ty = warp * 2 + (lane >> 4);
    const u32 r0 = blockIdx.x * TB;
    const u32 nq = nw / 4;         // uint4 per row
    const u32 nk = nw / TK;        // k-steps per tile
    const u32 nct = (L + TB - 1) / TB;
    const u32 steps = nct * nk;
    // This thread's loads: row/centroid (t >> 1) of the tile, quad (t & 1) of the k-step.
    const u32 lr = t >> 1, lq = t & 1;
    const bool arow = r0 + lr < nr;
    const uint4* ap = A + (u64)(r0 + lr) * nq + lq;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    uint4 ra, rb;
    auto load = [&](u32 s) {
        u32 ct = s / nk, kt = s - ct * nk;
        ra = arow ? __ldg(ap + kt * 2) : zero;
        rb = __ldg(B + (u64)(ct * TB + lr) * nq + kt * 2 + lq);
    };
    auto store = [&](u32 buf) {
        u32 k0 = lq * 4;
        As[buf][k0 + 0][lr] = ra.x; As[buf][k0 + 1][lr] = ra.y; As[buf][k0 + 2][lr] = ra.z; As[buf][k0 + 3][lr] = ra.w;
        Bs[buf][k0 + 0][lr] = rb.x; Bs[buf][k0 + 1][lr] = rb.y; Bs[buf][k0 + 2][lr] = rb.z; Bs[buf][k0 + 3][lr] = rb.w;
    };
    Acc acc[8][8];
    float bs[8];
    u32 bl[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        bs[i] = -__int_as_float(0x7f800000);
        bl[i] = 0;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0;
    }
    if (steps == 0) return;
    load(0);
    store(0);
    __syncthreads();
    for (u32 s = 0; s < steps; s++) {
        const u32 buf = s & 1;
        if (s + 1 < steps) load(s + 1);
#pragma unroll
        for (int k = 0; k < TK; k++) {
            uint4 a0 = *(const uint4*)&As[buf][k][ty * 4], a1 = *(const uint4*)&As[buf][k][64 + ty * 4];
            uint4 b0 = *(const uint4*)&Bs[buf][k][tx * 4], b1 = *(const uint4*)&Bs[buf][k][64 + tx * 4];
            u32 a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            u32 b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = M::mac(a[i], b[j], acc[i][j]);
        }
        const u32 ct = s / nk;
        if (s - ct * nk == nk - 1) {
            // Epilogue of centroid tile ct: columns in increasing order per thread.
#pragma unroll
            for (int j = 0; j < 8; j++) {
                u32 l = ct * TB + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
                if (l < L) {
#pragma unroll
                    for (int i = 0; i < 8; i++) {
                        float v = M::score(acc[i][j], scale, l);
                        if (v > bs[i]) { bs[i] = v; bl[i] = l; }
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = 0;
        }
        if (s + 1 < steps) store(buf ^ 1);
        __syncthreads();
    }
    // Merge the 16 column groups of each row (lanes tx = 0..15 of one half-warp).
#pragma unroll
    for (int i = 0; i < 8; i++) {
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) {
            float s2 = __shfl_xor_sync(FULL_MASK, bs[i], o);
            u32 l2 = __shfl_xor_sync(FULL_MASK, bl[i], o);
            better(bs[i], bl[i], s2, l2);
        }
        u32 r = r0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (tx == 0 && r < nr) out[r] = bl[i];
    }
}

// Assignment rule of crates/core/src/model/compute.rs: score = (i32 dot) as f32 * scale, argmax,
// ties to the lower list. rows: [nr, nw] int8x4 words; cent: [ceil(L/128)*128, nw].
extern "C" __global__ void __launch_bounds__(256, 2) assign_i8(const uint4* __restrict__ rows, u32 nr, const uint4* __restrict__ cent,
                                                             const float* __restrict__ cscale, u32 L, u32 nw, u32* __restrict__ out) {
    tile_argmax<MacI8>(rows, nr, cent, cscale, L, nw, out);
}

// Lloyd assignment: out[i] = argmax_j x_i . c_j (f32, ties to the lower j). x: [m, nw]
// f32; c: [ceil(k/128)*128, nw] (rows >= k zero).
extern "C" __global__ void __launch_bounds__(256, 2) km_assign(const uint4* __restrict__ x, u32 m, const uint4* __restrict__ c,
                                                             u32 k, u32 nw, u32* __restrict__ out) {
    tile_argmax<MacF32>(x, m, c, nullptr, k, nw, out);
}

// Cluster sums in fixed point: sums[a_i, t] += round(x_i[t] * fx) (i64, two's complement)
// and counts[a_i] += 1. Integer atomics make the sums exact and independent of order, so
// training is deterministic. |x_i[t]| <= 1 (unit rows) and fx <= 2^62 / m keep them in range.
// Grid: ceil(m/16); block 128.
extern "C" __global__ void km_accum(const float* __restrict__ x, const u32* __restrict__ a, u32 m, u32 d, u32 dp, float fx,
                                    u64* __restrict__ sums, u32* __restrict__ counts) {
    for (u32 r = 0; r < 16; r++) {
        u32 i = blockIdx.x * 16 + r;
        if (i >= m) return;
        u32 j = a[i];
        if (threadIdx.x == 0) atomicAdd(counts + j, 1u);
        for (u32 t = threadIdx.x; t < d; t += blockDim.x) {
            long long v = __float2ll_rn(x[(u64)i * dp + t] * fx);
            if (v != 0) atomicAdd(sums + (u64)j * dp + t, (u64)v);
        }
    }
}

// fs[e] = sums[e] / fx (f32). Grid-stride over n elements.
extern "C" __global__ void km_to_f32(const u64* __restrict__ sums, u64 n, double inv, float* __restrict__ fs) {
    for (u64 e = blockIdx.x * (u64)blockDim.x + threadIdx.x; e < n; e += (u64)gridDim.x * blockDim.x)
        fs[e] = (float)((double)(long long)sums[e] * inv);
}

// Empty-cluster repair, the CPU's rule: for each (empty j, largest b) in order, the sum
// of b is split into s*(1+e) for j and s*(1-e) for b, e = +-1/1024 alternating by dim.
// The host chose the pairs from the counts. One thread per dim, pairs in order.
extern "C" __global__ void km_split(float* __restrict__ fs, u32 d, u32 dp, const u32* __restrict__ pairs, u32 np) {
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= d) return;
    float eps = (t % 2 == 0) ? 1.0f / 1024.0f : -1.0f / 1024.0f;
    for (u32 p = 0; p < np; p++) {
        u32 j = pairs[2 * p], b = pairs[2 * p + 1];
        float src = fs[(u64)b * dp + t];
        fs[(u64)j * dp + t] = __fmul_rn(src, 1.0f + eps);
        fs[(u64)b * dp + t] = __fmul_rn(src, 1.0f - eps);
    }
}

// c_j = fs_j / |fs_j| for clusters with counts[j] > 0 (kept as is when the norm is 0,
// like the CPU); other centroids stay. One warp per cluster; block 256.
extern "C" __global__ void km_normalize(const float* __restrict__ fs, const u32* __restrict__ counts, u32 k, u32 d, u32 dp,
                                        float* __restrict__ c) {
    u32 j = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (j >= k || counts[j] == 0) return;
    const float* s = fs + (u64)j * dp;
    float ss = 0.0f;
    for (u32 t = lane; t < d; t += 32) ss = fmaf(s[t], s[t], ss);
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(FULL_MASK, ss, o);
    float n = sqrtf(ss);
    for (u32 t = lane; t < d; t += 32) c[(u64)j * dp + t] = n > 0.0f ? s[t] / n : s[t];
}

// out[j] = src[idx[j]] (rows of dp f32), j < count. Grid: count; block 128.
extern "C" __global__ void gather_rows(const float* __restrict__ src, const u32* __restrict__ idx, u32 count, u32 dp,
                                       float* __restrict__ out) {
    u32 j = blockIdx.x;
    if (j >= count) return;
    const float* s = src + (u64)idx[j] * dp;
    for (u32 t = threadIdx.x; t < dp; t += blockDim.x) out[(u64)j * dp + t] = s[t];
}

