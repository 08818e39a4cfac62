// Top-k selection shared by stage 1 (top-nprobe lists), stage 3 (large K0) and stage 5
// (final top-K1): radix select of the k-th key per segment, then a sort of the k
// survivors, in shared memory (k <= SORT_CAP) or by global bitonic passes.
#include "common.cuh"
#include "select.cuh"

// One block (1024 threads) per segment s. Source: keys[s*stride + i] (kind 0) or
// make_key(scores[s*stride+i], rows[s*stride+i]) (kind 1), for i < n where n =
// counts ? counts[s] : n_fixed. Selects the min(k, n) best keys; P = next pow2 >= k.
// P <= SORT_CAP: writes out_rows/out_scores [S, k] best first (padding row MAX, -inf;
// out_scores may be null). Else: writes the unsorted survivors to sortbuf[s*P ..]
// (0-padded) for the global sort. out_counts[s] = min(k, n) when non-null.
extern "C" __global__ void __launch_bounds__(1024) topk_select(
    u32 kind, const u64* __restrict__ keys, const float* __restrict__ scores, const u32* __restrict__ rows,
    u64 stride, const u32* __restrict__ counts, u32 n_fixed, u32 k, u32 P, u32* __restrict__ out_rows,
    float* __restrict__ out_scores, u32* __restrict__ out_counts, u64* __restrict__ sortbuf) {
    __shared__ SegmentSmem ss;
    u32 s = blockIdx.x;
    u32 n = counts ? min(counts[s], (u32)stride) : n_fixed;
    if (kind == 0) {
        ArraySrc<u64> src{keys + (u64)s * stride, n};
        select_segment(src, n, k, P, s, out_rows, out_scores, out_counts, sortbuf, ss);
    } else {
        ScoreRowSrc src{scores + (u64)s * stride, rows + (u64)s * stride, n};
        select_segment(src, n, k, P, s, out_rows, out_scores, out_counts, sortbuf, ss);
    }
}

// Global bitonic step (descending network) over segments of P keys: compare-exchange
// at distance `stride` within merge size `size`. Grid: (ceil(P/2/256), S); block 256.
extern "C" __global__ void bitonic_global(u64* __restrict__ buf, u32 P, u32 size, u32 stride) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P / 2) return;
    u64* s = buf + (u64)blockIdx.y * P;
    u32 lo = ((i & ~(stride - 1)) << 1) | (i & (stride - 1));
    u32 hi = lo + stride;
    bool desc = (lo & size) == 0;
    u64 a = s[lo], b = s[hi];
    if ((a < b) == desc) { s[lo] = b; s[hi] = a; }
}

// The steps of the same network whose distance is below the chunk size `ch` (a power of
// two <= P), done in dynamic shared memory (ch keys) on chunks of ch keys: merge sizes
// size_lo..size_hi (powers of two); the first size starts at distance stride0, the next
// ones at size/2. Grid: (P/ch, S).
extern "C" __global__ void __launch_bounds__(1024) bitonic_local(u64* __restrict__ buf, u32 P, u32 ch, u32 size_lo,
                                                                 u32 size_hi, u32 stride0) {
    extern __shared__ u64 s[];
    u64* g = buf + (u64)blockIdx.y * P + (u64)blockIdx.x * ch;
    u32 base = blockIdx.x * ch;
    for (u32 i = threadIdx.x; i < ch; i += blockDim.x) s[i] = g[i];
    __syncthreads();
    for (u32 size = size_lo; size <= size_hi; size <<= 1) {
        for (u32 stride = size == size_lo ? stride0 : size >> 1; stride > 0; stride >>= 1) {
            for (u32 i = threadIdx.x; i < ch / 2; i += blockDim.x) {
                u32 lo = ((i & ~(stride - 1)) << 1) | (i & (stride - 1));
                u32 hi = lo + stride;
                bool desc = ((base + lo) & size) == 0;
                u64 a = s[lo], b = s[hi];
                if ((a < b) == desc) { s[lo] = b; s[hi] = a; }
            }
            __syncthreads();
        }
    }
    for (u32 i = threadIdx.x; i < ch; i += blockDim.x) g[i] = s[i];
}

// Sorted keys [S, P] -> rows/scores [S, k] (first counts[s] valid, then padding).
extern "C" __global__ void decode_sorted(const u64* __restrict__ buf, u32 P, u32 k, const u32* __restrict__ counts,
                                         u32* __restrict__ out_rows, float* __restrict__ out_scores) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    u32 s = blockIdx.y;
    if (i >= k) return;
    bool ok = i < counts[s];
    u64 key = buf[(u64)s * P + i];
    out_rows[(u64)s * k + i] = ok ? key_row(key) : 0xffffffffu;
    if (out_scores) out_scores[(u64)s * k + i] = ok ? key_score(key) : __int_as_float(0xff800000);
}
