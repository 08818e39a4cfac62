// Stage 3, scan: int8 dot products over the masked rows of the probed lists, exact
// filter verification of rows that would enter the top-K0, top-K0 per query.
//
// 1. group_*: the batch's (query, list) pairs are grouped by list, so a list probed by
//    several queries is read from memory once (a "tile" = one 64-row mask word of a
//    list, processed by one warp for every query that probed the list).
// 2. scan_sample: the same tiles, every `se`-th one only: counts masked rows and keeps
//    the order keys of the sampled rows that pass the filter exactly.
// 3. scan_threshold: per query, a threshold key from the sample such that the rows at
//    or above it number ~K0 + 5 sigma (all rows when few are masked).
// 4. scan_main: every tile; rows whose key reaches the threshold are verified exactly
//    and appended (warp-aggregated) to the query's candidate buffer.
// 5. scan_select: per query, exact top-K0 of the candidates. If the threshold proved
//    too high (fewer than K0 candidates) or the buffer overflowed, the block recomputes
//    the query's rows itself and selects exactly (radix select over recomputed keys),
//    so the result never depends on the sample.
#include "common.cuh"
#include "select.cuh"

// Pairs per list: cnt[lists[p]]++ (cnt zeroed by the caller). Grid over pairs.
extern "C" __global__ void group_count(const u32* __restrict__ lists, u32 npairs, u32* __restrict__ cnt) {
    u32 p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < npairs) atomicAdd(cnt + lists[p], 1u);
}

// Exclusive scans over lists (one block of 1024): pair_start (pairs per list), tile_start
// (words of lists probed at least once), stile_start (sampled words: ceil(nw / se)).
extern "C" __global__ void __launch_bounds__(1024) group_scan(const u32* __restrict__ cnt, const u32* __restrict__ list_nw,
                                                              u32 L, u32 se, u32* __restrict__ pair_start,
                                                              u32* __restrict__ tile_start, u32* __restrict__ stile_start) {
    block_scan_excl(L, [&](u32 l) { return cnt[l]; }, pair_start);
    block_scan_excl(L, [&](u32 l) { return cnt[l] ? list_nw[l] : 0u; }, tile_start);
    block_scan_excl(L, [&](u32 l) { return cnt[l] ? (list_nw[l] + se - 1) / se : 0u; }, stile_start);
}

// list_pairs[pair_start[l] + i] = the pairs probing list l (fill zeroed by the caller).
extern "C" __global__ void group_scatter(const u32* __restrict__ lists, u32 npairs, const u32* __restrict__ pair_start,
                                         u32* __restrict__ fill, u32* __restrict__ list_pairs) {
    u32 p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= npairs) return;
    u32 l = lists[p];
    list_pairs[pair_start[l] + atomicAdd(fill + l, 1u)] = p;
}

struct ScanArgs {
    const uint4* codes;      // interleaved item codes
    u32 nc;                  // 16-byte chunks per row
    const float* scale;      // [N] item scales
    const u32* list_start;   // [L]
    u32 L;
    const u32* tiles;        // tile_start or stile_start [L+1]
    const u32* pair_start;   // [L+1]
    const u32* list_pairs;   // pairs grouped by list
    u32 nprobe;
    const u64* mask;         // stage 2 words
    const u32* moff;         // [pairs+1]
    const uint4* qcodes;     // [B, nc] query codes
    const u32* plan_words;
    const u32* plan_off;     // [B]
    const u64* attr_off;     // [N+1]
    const u32* attr_vals;
    const u32* tkey;         // [B] thresholds (main)
    u32* count;              // [B] appended (or attempted) per query
    void* buf;               // [B, cap] u64 keys (main) or u32 fkeys (sample)
    u32 cap;
    u32* masked;             // [B] masked rows in sampled tiles (sample)
    u32 se;                  // sample every se-th word of a list
};

#define QC 8  // queries of one list processed together (their dots share the row loads)

template <bool SAMPLE>
__device__ void scan_tiles(const ScanArgs& a) {
    const u32 lane = lane_id();
    const u32 warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const u32 nwarps = (gridDim.x * blockDim.x) >> 5;
    const u32 total = a.tiles[a.L];
    for (u32 t = warp; t < total; t += nwarps) {
        // The list whose tile range holds t: largest l with tiles[l] <= t.
        u32 lo = 0, hi = a.L;
        while (hi - lo > 1) {
            u32 mid = (lo + hi) >> 1;
            if (__ldg(a.tiles + mid) <= t) lo = mid; else hi = mid;
        }
        const u32 l = lo;
        const u32 wi = (t - __ldg(a.tiles + l)) * (SAMPLE ? a.se : 1u);
        const u64 w = (u64)(__ldg(a.list_start + l) >> 6) + wi;
        const u32 pb = __ldg(a.pair_start + l), G = __ldg(a.pair_start + l + 1) - pb;
        for (u32 qc = 0; qc < G; qc += QC) {
            const u32 nq = min((u32)QC, G - qc);
            u32 qid[QC];
            u64 mw[QC];
#pragma unroll
            for (int j = 0; j < QC; j++) {
                qid[j] = 0;
                mw[j] = 0;
                if ((u32)j < nq) {
                    u32 p = __ldg(a.list_pairs + pb + qc + j);
                    qid[j] = p / a.nprobe;
                    mw[j] = __ldg(a.mask + __ldg(a.moff + p) + wi);
                }
            }
            if (SAMPLE && lane == 0) {
#pragma unroll
                for (int j = 0; j < QC; j++)
                    if (mw[j]) atomicAdd(a.masked + qid[j], (u32)__popcll(mw[j]));
            }
#pragma unroll 1
            for (u32 h = 0; h < 2; h++) {
                u32 bits[QC];
                u32 uni = 0;
#pragma unroll
                for (int j = 0; j < QC; j++) {
                    bits[j] = (u32)(mw[j] >> (32 * h));
                    uni |= bits[j];
                }
                if (uni == 0) continue;  // warp-uniform: no row of this half is wanted
                const u32 row = (u32)(w * 64 + 32 * h + lane);
                const bool mine = (uni >> lane) & 1u;
                int acc[QC];
#pragma unroll
                for (int j = 0; j < QC; j++) acc[j] = 0;
                for (u32 cb = 0; cb < a.nc; cb += 8) {
                    // Up to 8 coalesced 16-byte loads in flight per lane, only for wanted rows
                    // (the filter mask gates the memory traffic and the arithmetic).
                    uint4 v[8];
#pragma unroll
                    for (int c = 0; c < 8; c++) {
                        v[c] = make_uint4(0, 0, 0, 0);
                        if (mine && cb + c < a.nc) v[c] = __ldg(il_chunk(a.codes, a.nc, row, cb + c));
                    }
#pragma unroll
                    for (int j = 0; j < QC; j++) {
                        if ((bits[j] >> lane) & 1u) {
                            const uint4* qp = a.qcodes + (u64)qid[j] * a.nc + cb;
#pragma unroll
                            for (int c = 0; c < 8; c++)
                                if (cb + c < a.nc) acc[j] = dot16(v[c], __ldg(qp + c), acc[j]);
                        }
                    }
                }
                const float sc = mine ? __ldg(a.scale + row) : 0.0f;
#pragma unroll
                for (int j = 0; j < QC; j++) {
                    if ((u32)j >= nq) break;  // warp-uniform
                    const bool b = (bits[j] >> lane) & 1u;
                    const float s = int_score(acc[j], sc);
                    const u32* plan = a.plan_words + __ldg(a.plan_off + qid[j]);
                    bool pass = b;
                    if (!SAMPLE) pass = pass && fkey(s) >= __ldg(a.tkey + qid[j]);
                    if (pass && !plan_trivial(plan)) pass = plan_match(plan, a.attr_vals, a.attr_off[row], a.attr_off[row + 1]);
                    if (SAMPLE)
                        warp_append<u32>(pass, fkey(s), a.count + qid[j], (u32*)a.buf + (u64)qid[j] * a.cap, a.cap);
                    else
                        warp_append<u64>(pass, make_key(s, row), a.count + qid[j], (u64*)a.buf + (u64)qid[j] * a.cap, a.cap);
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) scan_sample(ScanArgs a) { scan_tiles<true>(a); }
extern "C" __global__ void __launch_bounds__(256) scan_main(ScanArgs a) { scan_tiles<false>(a); }

// Per query (one block of 256): the threshold key for scan_main. M = masked rows of the
// query (popcount of its mask words); the sample saw `ms` masked rows of which `ps`
// passed. If M fits the candidate buffer, take every row (threshold 0). Otherwise the
// top-K0 rows hold about mu = K0*ms/M sampled ones; the r-th best sampled key with
// r = mu + 5 sqrt(mu) + 10 leaves K0 rows above it but for a ~5-sigma event (which
// scan_select detects and repairs).
extern "C" __global__ void scan_threshold(u32 nprobe, const u32* __restrict__ moff, const u64* __restrict__ mask,
                                          const u32* __restrict__ samp_count, const u32* __restrict__ samp_masked,
                                          const u32* __restrict__ samp, u32 cs, u32 k0, u32 cap,
                                          u32* __restrict__ tkey) {
    __shared__ SelectSmem<u32> sm;
    __shared__ unsigned long long total;
    u32 q = blockIdx.x;
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    u32 w0 = moff[q * nprobe], w1 = moff[(q + 1) * nprobe];
    u64 c = 0;
    for (u32 i = w0 + threadIdx.x; i < w1; i += blockDim.x) c += __popcll(mask[i]);
    for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(FULL_MASK, c, o);
    if (lane_id() == 0) atomicAdd(&total, (unsigned long long)c);
    __syncthreads();
    u64 M = total;
    u32 ms = samp_masked[q], ps = min(samp_count[q], cs);
    u32 t = 0;
    if (M > cap && ms > 0 && ps > 0) {
        double mu = (double)k0 * (double)ms / (double)M;
        double rr = ceil(mu + 5.0 * sqrt(mu) + 10.0);
        if (rr <= (double)ps) {
            ArraySrc<u32> src{samp + (u64)q * cs, ps};
            t = block_kth<u32>(src, (u32)rr, sm);
        }
    }
    if (threadIdx.x == 0) tkey[q] = t;
}

// All rows of query q that pass its mask and exact filter, keys recomputed from codes
// (the exact fallback of scan_select).
struct RescanSrc {
    u32 q, nprobe;
    const u32* lists;
    const u32* moff;
    const u64* mask;
    const u32* list_start;
    const uint4* codes;
    u32 nc;
    const float* scale;
    const uint4* qc;
    const u32* plan;
    const u64* attr_off;
    const u32* attr_vals;
    template <typename F>
    __device__ void each(F f) const {
        for (u32 j = 0; j < nprobe; j++) {
            u32 p = q * nprobe + j;
            u64 w0 = list_start[lists[p]] >> 6;
            u32 o = moff[p], nw = moff[p + 1] - o;
            for (u32 i = threadIdx.x; i < nw * 64; i += blockDim.x) {
                u32 wi = i >> 6, b = i & 63;
                if ((mask[o + wi] >> b) & 1ull) {
                    u32 row = (u32)((w0 + wi) * 64 + b);
                    if (plan_trivial(plan) || plan_match(plan, attr_vals, attr_off[row], attr_off[row + 1]))
                        f(make_key(int_score(row_dot(codes, nc, row, qc), scale[row]), row));
                }
            }
        }
    }
};

struct SelectArgs {
    u32 nprobe;
    const u32* lists;
    const u32* moff;
    const u64* mask;
    const u32* list_start;
    const uint4* codes;
    u32 nc;
    const float* scale;
    const uint4* qcodes;
    const u32* plan_words;
    const u32* plan_off;
    const u64* attr_off;
    const u32* attr_vals;
    const u32* count;     // [B] from scan_main
    const u32* tkey;      // [B]
    u64* cand;            // [B, cap]
    u32 cap;
    u32 k0, P;
    u32 force_fallback;   // testing: take the exact fallback for every query
    u32* out_rows;        // [B, k0] (P <= SORT_CAP)
    float* out_scores;
    u32* out_counts;      // [B]
    u64* sortbuf;         // [B, P] (P > SORT_CAP)
};

// One block (1024 threads) per query.
extern "C" __global__ void __launch_bounds__(1024) scan_select(SelectArgs a) {
    __shared__ SegmentSmem ss;
    __shared__ u32 npass;
    SelectSmem<u64>& sm = ss.sel;
    u32& fill = ss.fill;
    const u32 q = blockIdx.x;
    u64* cb = a.cand + (u64)q * a.cap;
    u32 c = a.count[q];
    bool bad = a.force_fallback || c > a.cap || (c < a.k0 && a.tkey[q] != 0);
    if (bad) {
        RescanSrc src{q, a.nprobe, a.lists, a.moff, a.mask, a.list_start, a.codes, a.nc, a.scale,
                      a.qcodes + (u64)q * a.nc, a.plan_words + a.plan_off[q], a.attr_off, a.attr_vals};
        if (threadIdx.x == 0) { npass = 0; fill = 0; }
        __syncthreads();
        u32 mine = 0;
        src.each([&](u64) { mine++; });
        atomicAdd(&npass, mine);
        __syncthreads();
        u32 n = npass;
        u32 m = min(a.k0, n);
        u64 T = (m > 0 && m < n) ? block_kth<u64>(src, m, sm) : 0;
        if (m > 0) {
            src.each([&](u64 key) {
                if (key >= T) {
                    u32 pos = atomicAdd(&fill, 1u);
                    if (pos < a.cap) cb[pos] = key;
                }
            });
        }
        __syncthreads();
        c = m;
    }
    ArraySrc<u64> src{cb, c};
    select_segment(src, c, a.k0, a.P, q, a.out_rows, a.out_scores, a.out_counts, a.sortbuf, ss);
}
