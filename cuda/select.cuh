// Block-level top-k of one segment (used by select.cu and scan.cu): radix select of the
// k-th key, compaction of the survivors, sort in shared memory or hand-off to the
// global bitonic sort.
#pragma once
#include "common.cuh"

// Keys built from (scores, rows) arrays (stage 5 input).
struct ScoreRowSrc {
    const float* scores;
    const u32* rows;
    u32 n;
    template <typename F>
    __device__ void each(F f) const {
        for (u32 i = threadIdx.x; i < n; i += blockDim.x) f(make_key(scores[i], rows[i]));
    }
};

// Shared memory of select_segment (declared once per kernel, so that instantiations
// for several sources share it).
struct SegmentSmem {
    SelectSmem<u64> sel;
    u64 sbuf[SORT_CAP];
    u32 fill;
};

// buf[0..n) holds all keys of segment seg (n <= 8*blockDim): pad to a power of two, sort
// in place and write the best k (m = min(k, n) valid, then padding) and the count.
__device__ void direct_sort_out(u64* buf, u32 n, u32 k, u32 seg, u32* out_rows, float* out_scores, u32* out_counts) {
    const u32 pn = next_pow2(max(n, 1u));
    for (u32 i = n + threadIdx.x; i < pn; i += blockDim.x) buf[i] = 0;
    __syncthreads();
    block_bitonic_desc(buf, pn);
    const u32 m = min(k, n);
    for (u32 i = threadIdx.x; i < k; i += blockDim.x) {
        const bool ok = i < m;
        const u64 key = ok ? buf[i] : 0;
        out_rows[(u64)seg * k + i] = ok ? key_row(key) : 0xffffffffu;
        if (out_scores) out_scores[(u64)seg * k + i] = ok ? key_score(key) : __int_as_float(0xff800000);
    }
    if (out_counts && threadIdx.x == 0) out_counts[seg] = m;
}

template <typename Src>
__device__ void select_segment(const Src& src, u32 n, u32 k, u32 P, u32 seg, u32* out_rows, float* out_scores,
                               u32* out_counts, u64* sortbuf, SegmentSmem& ss) {
    SelectSmem<u64>& sm = ss.sel;
    u64* sbuf = ss.sbuf;
    u32& fill = ss.fill;
    if (P <= SORT_CAP && next_pow2(max(n, 1u)) <= P) {
        // No more keys than the output sort holds: sort them all (no radix select).
        if (threadIdx.x == 0) fill = 0;
        __syncthreads();
        src.each([&](u64 key) { active_append<u64>(true, key, &fill, sbuf, SORT_CAP); });
        __syncthreads();
        direct_sort_out(sbuf, n, k, seg, out_rows, out_scores, out_counts);
        return;
    }
    u32 m = min(k, n);
    u64 T = 0;
    if (m > 0 && m < n) T = block_kth<u64>(src, m, sm);
    if (threadIdx.x == 0) fill = 0;
    bool in_smem = P <= SORT_CAP;
    u64* dst = in_smem ? sbuf : sortbuf + (u64)seg * P;
    for (u32 i = threadIdx.x; i < P; i += blockDim.x) dst[i] = 0;
    __syncthreads();
    if (m > 0) {
        src.each([&](u64 key) { active_append<u64>(key >= T, key, &fill, dst, P); });
    }
    __syncthreads();
    if (out_counts && threadIdx.x == 0) out_counts[seg] = m;
    if (!in_smem) return;  // sorted later by bitonic_global / bitonic_local, then decoded
    block_bitonic_desc(sbuf, P);
    for (u32 i = threadIdx.x; i < k; i += blockDim.x) {
        u64 key = sbuf[i];
        bool ok = i < m;
        out_rows[(u64)seg * k + i] = ok ? key_row(key) : 0xffffffffu;
        if (out_scores) out_scores[(u64)seg * k + i] = ok ? key_score(key) : __int_as_float(0xff800000);
    }
}

