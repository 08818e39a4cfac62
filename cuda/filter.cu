// Stage 2, filter: Bloom bit-plane evaluation of each query's plan over the 64-item
// words of its probed lists only (probe-then-filter), ANDed with the list's row range
// and the live-row bitset; plus the whole-index form (count, Bloom masks).
#include "common.cuh"

// Exclusive prefix sum of the probed lists' word counts: off[p] = sum_{p'<p}
// nw[lists[p']], off[np_total] = total. One block of 1024 threads.
extern "C" __global__ void __launch_bounds__(1024) mask_offsets(const u32* __restrict__ lists, u32 npairs,
                                                                const u32* __restrict__ list_nw,
                                                                u32* __restrict__ off) {
    block_scan_excl(npairs, [&](u32 p) { return list_nw[lists[p]]; }, off);
}

// mask[off[p] + i] for word i of pair p = (query p / nprobe, list lists[p]).
// Grid: (npairs, ceil(max_nw / 128)); block 128.
extern "C" __global__ void filter_mask(const u32* __restrict__ lists, u32 nprobe, const u32* __restrict__ off,
                                       const u32* __restrict__ list_start, const u32* __restrict__ list_end,
                                       const u64* __restrict__ planes, u64 words, const u64* __restrict__ live,
                                       const u32* __restrict__ plan_words, const u32* __restrict__ plan_off,
                                       u64* __restrict__ mask) {
    u32 p = blockIdx.x;
    u32 l = lists[p];
    u64 s = list_start[l], e = list_end[l];
    u64 w0 = s / 64;
    u32 nw = off[p + 1] - off[p];
    for (u32 i = blockIdx.y * blockDim.x + threadIdx.x; i < nw; i += gridDim.y * blockDim.x) {
        u64 w = w0 + i;
        u64 m = range_bits(w, s, e);
        if (live) m &= live[w];
        const u32* plan = plan_at(plan_words, plan_off[p / nprobe]);
        if (m && !plan_trivial(plan)) m &= plan_bloom_word(plan, planes, words, w);
        mask[off[p] + i] = m;
    }
}

// Whole-index Bloom masks: for plan j and every word w, m = bloom & live & rows < n.
// counts[j] += popcount(m) (u64, zeroed by the caller); out[j*words + w] = m when out
// is non-null. Grid: (nplans, chunks); block 256; blocks of one word chunk for all
// plans run together, so plane words shared by plans are read from DRAM once.
extern "C" __global__ void bloom_full(const u64* __restrict__ planes, u64 words, u64 n, const u64* __restrict__ live,
                                      const u32* __restrict__ plan_words, const u32* __restrict__ plan_off,
                                      u64* __restrict__ out, unsigned long long* __restrict__ counts) {
    u32 j = blockIdx.x;
    const u32* plan = plan_at(plan_words, plan_off[j]);
    u64 total = 0;
    for (u64 w = (u64)blockIdx.y * blockDim.x + threadIdx.x; w < words; w += (u64)gridDim.y * blockDim.x) {
        u64 m = range_bits(w, 0, n);
        if (live) m &= live[w];
        if (m && !plan_trivial(plan)) m &= plan_bloom_word(plan, planes, words, w);
        if (out) out[(u64)j * words + w] = m;
        total += __popcll(m);
    }
    for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(FULL_MASK, total, o);
    if (counts && lane_id() == 0 && total) atomicAdd(counts + j, (unsigned long long)total);
}

// Dense probing (most lists probed): stage 2 evaluates each plan once over the whole
// index with bloom_full (word-major, plans of one word chunk together, so shared planes
// come from L2), then this kernel cuts the pairs' words out of it:
// mask[off[p] + i] = full[q * words + w0 + i] & the list's rows. Grid: (npairs, chunks).
extern "C" __global__ void mask_gather(const u32* __restrict__ lists, u32 nprobe, const u32* __restrict__ off,
                                       const u32* __restrict__ list_start, const u32* __restrict__ list_end,
                                       const u64* __restrict__ full, u64 words, u64* __restrict__ mask) {
    u32 p = blockIdx.x;
    u32 l = lists[p];
    u64 s = list_start[l], e = list_end[l];
    u64 w0 = s / 64;
    u32 nw = off[p + 1] - off[p];
    const u64* f = full + (u64)(p / nprobe) * words;
    for (u32 i = blockIdx.y * blockDim.x + threadIdx.x; i < nw; i += gridDim.y * blockDim.x)
        mask[off[p] + i] = f[w0 + i] & range_bits(w0 + i, s, e);
}
