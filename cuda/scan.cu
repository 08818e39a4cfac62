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
// The host's ScanPlan (crates/cuda/src/scan_plan.rs) picks the path (2-4: the instantiation
// of scan_kernel<Pipe, SAMPLE> below), grids, shared memory and buffer sizes.
#include "common.cuh"
#include "select.cuh"

// Grouping of the batch's (query, list) pairs by list, one block of 1024 threads (one
// launch, no memset). Zeroes `zero` [nzero] (the per-query counters of the later
// kernels); counts pairs per list (in shared memory when `smem_counts`, else in cnt/fill
// [L] global scratch); scans pair_start (pairs), tile_start (ceil(words / tw) tiles of
// lists probed at least once) and stile_start (ceil(words / se) sampled words); scatters
// list_pairs[pair_start[l] + i] = pairs of list l; and fills the tile lookup tables
// tbucket / sbucket: bucket b holds the list of tile 64b.
__device__ void fill_buckets(const u32* starts, u32 L, u32* bucket) {
    for (u32 l = threadIdx.x; l < L; l += blockDim.x) {
        u32 ts = starts[l], te = starts[l + 1];
        if (te <= ts) continue;
        for (u32 bk = (ts + 63) >> 6; bk <= (te - 1) >> 6; bk++) bucket[bk] = l;
    }
}

__device__ void group_body(const u32* __restrict__ lists, u32 npairs, const u32* __restrict__ list_nw, u32 L, u32 tw,
                           u32 se, u32* __restrict__ cnt_g, u32* __restrict__ fill_g, u32 smem_counts,
                           u32* __restrict__ pair_start, u32* __restrict__ tile_start, u32* __restrict__ stile_start,
                           u32* __restrict__ list_pairs, u32* __restrict__ tbucket, u32* __restrict__ sbucket,
                           u32* __restrict__ zero, u32 nzero, u32* gsm) {
    // Shared layout when smem_counts: [cnt L][fill L][nw L][pair_start L+1][tile_start L+1][stile_start L+1].
    u32* cnt = smem_counts ? gsm : cnt_g;
    u32* fill = smem_counts ? gsm + L : fill_g;
    const u32* nw = smem_counts ? gsm + 2 * L : list_nw;
    u32* ps = smem_counts ? gsm + 3 * L : pair_start;
    u32* ts = smem_counts ? ps + L + 1 : tile_start;
    u32* ss = smem_counts ? ts + L + 1 : stile_start;
    for (u32 i = threadIdx.x; i < L; i += blockDim.x) {
        cnt[i] = 0;
        fill[i] = 0;
        if (smem_counts) gsm[2 * L + i] = list_nw[i];
    }
    for (u32 i = threadIdx.x; i < nzero; i += blockDim.x) zero[i] = 0;
    __syncthreads();
    for (u32 p = threadIdx.x; p < npairs; p += blockDim.x) atomicAdd(cnt + lists[p], 1u);
    __syncthreads();
    // Global counts were updated by atomics in L2: read them past L1.
    block_scan3(L, [&](u32 l, u32& a, u32& b, u32& c) {
        a = smem_counts ? cnt[l] : __ldcg(cnt + l);
        const u32 w = a ? nw[l] : 0u;
        b = (w + tw - 1) / tw;
        c = (w + se - 1) / se;
    }, ps, ts, ss);
    if (smem_counts) {
        for (u32 i = threadIdx.x; i <= L; i += blockDim.x) {
            pair_start[i] = ps[i];
            tile_start[i] = ts[i];
            stile_start[i] = ss[i];
        }
    }
    fill_buckets(ts, L, tbucket);
    fill_buckets(ss, L, sbucket);
    for (u32 p = threadIdx.x; p < npairs; p += blockDim.x) {
        u32 l = lists[p];
        list_pairs[ps[l] + atomicAdd(fill + l, 1u)] = p;
    }
}

extern "C" __global__ void __launch_bounds__(1024) group_all(const u32* __restrict__ lists, u32 npairs,
                                                             const u32* __restrict__ list_nw, u32 L, u32 tw, u32 se,
                                                             u32* __restrict__ cnt_g, u32* __restrict__ fill_g, u32 smem_counts,
                                                             u32* __restrict__ pair_start, u32* __restrict__ tile_start,
                                                             u32* __restrict__ stile_start, u32* __restrict__ list_pairs,
                                                             u32* __restrict__ tbucket, u32* __restrict__ sbucket,
                                                             u32* __restrict__ zero, u32 nzero) {
    pdl_trigger();  // one block: the sample kernel may start launching now
    extern __shared__ u32 gsm[];
    group_body(lists, npairs, list_nw, L, tw, se, cnt_g, fill_g, smem_counts, pair_start, tile_start, stile_start,
               list_pairs, tbucket, sbucket, zero, nzero, gsm);
}

// ---------------------------------------------------------------------------------
// Small batches (fewer probed pairs than lists, so lists are rarely shared): grouping and
// sampling in one launch. Block 0 groups the pairs (group_body); the other blocks sample
// every se-th word of every (query, list) pair directly, without grouping, so they need
// not wait for it. samp_count / samp_masked must be zero on entry (scan_threshold resets
// them after use).
// ---------------------------------------------------------------------------------
// PrepArgs, ScanArgs and SelectArgs are passed by value; their Rust mirrors (crates/cuda/src/
// args.rs, padding as explicit fields) are checked against these layouts under NVRTC.
struct PrepArgs {
    const u32* lists;
    const u32* list_nw;
    u32* cnt;
    u32* fill;
    u32* pair_start;
    u32* tile_start;
    u32* stile_start;
    u32* list_pairs;
    u32* tbucket;
    u32* sbucket;
    u32* zero;
    const u32* list_start;
    const u64* mask;
    const u32* moff;
    const uint4* codes;
    const float* scale;
    const uint4* qcodes;
    const u32* plan_words;
    const u32* plan_off;
    const u64* attr_off;
    const u32* attr_vals;
    u32* samp_count;
    u32* samp;
    u32* samp_masked;
    u32 npairs, L, tw, se, smem_counts, nzero, nprobe, spp, nc, cs;
    const u32* list_end;  // mask == null: every row of a probed list is wanted (no filter)
    const float* bias;    // l2: [N] row biases, else null (metric_score)
    const float* qscale;  // l2: [B] query scales
};

__device__ void sample_pairs(const PrepArgs& a) {
    const u32 lane = lane_id();
    const u32 wpb = blockDim.x >> 5;
    const u32 gw = (blockIdx.x - 1) * wpb + (threadIdx.x >> 5);
    const u32 nwarps = (gridDim.x - 1) * wpb;
    const u32 total = a.npairs * a.spp;
    for (u32 t = gw; t < total; t += nwarps) {
        const u32 p = t / a.spp, s = t - p * a.spp;
        const u32 l = __ldg(a.lists + p);
        const u32 wi = s * a.se;
        if (wi >= __ldg(a.list_nw + l)) continue;  // warp-uniform
        const u32 q = p / a.nprobe;
        const u64 mw = a.mask ? __ldg(a.mask + __ldg(a.moff + p) + wi)
                              : range_bits((u64)(__ldg(a.list_start + l) >> 6) + wi, __ldg(a.list_start + l), __ldg(a.list_end + l));
        if (mw == 0) continue;
        if (lane == 0) atomicAdd(a.samp_masked + q, (u32)__popcll(mw));
        const u32 off = __ldg(a.plan_off + q);
        const u64 w = (u64)(__ldg(a.list_start + l) >> 6) + wi;
        const u32 r0 = (u32)(w * 64 + lane), r1 = r0 + 32;
        const bool b0 = (mw >> lane) & 1ull, b1 = (mw >> (32 + lane)) & 1ull;
        int acc0 = 0, acc1 = 0;
        const uint4* qp = a.qcodes + (u64)q * a.nc;
#pragma unroll 8
        for (u32 c = 0; c < a.nc; c++) {
            const uint4 qv = __ldg(qp + c);
            if (b0) acc0 = dot16(__ldg(il_chunk(a.codes, a.nc, r0, c)), qv, acc0);
            if (b1) acc1 = dot16(__ldg(il_chunk(a.codes, a.nc, r1, c)), qv, acc1);
        }
        const float s0 = b0 ? metric_score(acc0, __ldg(a.scale + r0), a.bias, r0, a.qscale, q) : 0.0f;
        const float s1 = b1 ? metric_score(acc1, __ldg(a.scale + r1), a.bias, r1, a.qscale, q) : 0.0f;
        bool p0 = b0, p1 = b1;
        if (!off_trivial(off)) {
            const u32* plan = plan_at(a.plan_words, off);
            if (p0) p0 = plan_match(plan, a.attr_vals, a.attr_off, r0);
            if (p1) p1 = plan_match(plan, a.attr_vals, a.attr_off, r1);
        }
        warp_append<u32>(p0, fkey(s0), a.samp_count + q, a.samp + (u64)q * a.cs, a.cs);
        warp_append<u32>(p1, fkey(s1), a.samp_count + q, a.samp + (u64)q * a.cs, a.cs);
    }
}

// Persistent grid of 1024-thread blocks; dynamic shared memory for block 0's grouping.
extern "C" __global__ void __launch_bounds__(1024) scan_prepare(PrepArgs a) {
    pdl_trigger();  // fully resident grid
    extern __shared__ u32 gsm[];
    if (blockIdx.x == 0)
        group_body(a.lists, a.npairs, a.list_nw, a.L, a.tw, a.se, a.cnt, a.fill, a.smem_counts, a.pair_start,
                   a.tile_start, a.stile_start, a.list_pairs, a.tbucket, a.sbucket, a.zero, a.nzero, gsm);
    else
        sample_pairs(a);
}

struct ScanArgs {
    const uint4* codes;      // interleaved item codes
    u32 nc;                  // 16-byte chunks per row
    const float* scale;      // [N] item scales
    const u32* list_start;   // [L]
    const u32* list_nw;      // [L] words per list
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
    u32 tw;                  // words per tile (scan_main)
    const u32* bucket;       // tile lookup: list of tile 64b (tbucket or sbucket)
    const u32* list_end;     // [L]; with mask == null the mask is implicit: the list's rows
    const float* bias;       // l2: [N] row biases, else null (metric_score)
    const float* qscale;     // l2: [B] query scales
};

#define QC 8  // queries of one list processed together (their dots share the row loads)

// The list whose tile range holds tile t (tiles[l] <= t < tiles[l+1]): start at the
// bucket's list and step over the (few) lists that end before t.
__device__ __forceinline__ u32 tile_list(const u32* tiles, const u32* bucket, u32 t) {
    u32 l = __ldg(bucket + (t >> 6));
    while (__ldg(tiles + l + 1) <= t) l++;
    return l;
}

// Threshold test, exact verification and append of one row for one query (all lanes).
template <bool SAMPLE>
__device__ __forceinline__ void offer(const ScanArgs& a, bool bit, int dot, float sc, u32 row, u32 q) {
    const float s = metric_score(dot, sc, a.bias, row, a.qscale, q);
    const u32 poff = __ldg(a.plan_off + q);
    const u32* plan = plan_at(a.plan_words, poff);
    bool pass = bit;
    if (!SAMPLE) pass = pass && fkey(s) >= __ldg(a.tkey + q);
    if (pass && !off_trivial(poff)) pass = plan_match(plan, a.attr_vals, a.attr_off, row);
    if (SAMPLE)
        warp_append<u32>(pass, fkey(s), a.count + q, (u32*)a.buf + (u64)q * a.cap, a.cap);
    else
        warp_append<u64>(pass, make_key(s, row), a.count + q, (u64*)a.buf + (u64)q * a.cap, a.cap);
}

// Tile geometry: list l, first word wi0 within the list, words nwt, first global word.
struct Tile {
    u32 l, wi0, nwt;
    u64 wbase;
    u32 pb, G;
    u32 rs, re;  // the list's rows [rs, re) (implicit masks)
};

template <bool SAMPLE>
__device__ __forceinline__ Tile tile_at(const ScanArgs& a, u32 t) {
    Tile T;
    T.l = tile_list(a.tiles, a.bucket, t);
    u32 nw = __ldg(a.list_nw + T.l);
    if (SAMPLE) {
        T.wi0 = (t - __ldg(a.tiles + T.l)) * a.se;
        T.nwt = 1;
    } else {
        T.wi0 = (t - __ldg(a.tiles + T.l)) * a.tw;
        T.nwt = min(a.tw, nw - T.wi0);
    }
    T.rs = __ldg(a.list_start + T.l);
    T.re = a.mask ? 0u : __ldg(a.list_end + T.l);
    T.wbase = (u64)(T.rs >> 6) + T.wi0;
    T.pb = __ldg(a.pair_start + T.l);
    T.G = __ldg(a.pair_start + T.l + 1) - T.pb;
    return T;
}

// ---------------------------------------------------------------------------------
// Generic path (any D): one warp per tile, lane = row, codes straight from global.
// ---------------------------------------------------------------------------------
template <bool SAMPLE>
__device__ void scan_tiles_generic(const ScanArgs& a) {
    const u32 lane = lane_id();
    const u32 warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const u32 nwarps = (gridDim.x * blockDim.x) >> 5;
    const u32 total = a.tiles[a.L];
    for (u32 t = warp; t < total; t += nwarps) {
        const Tile T = tile_at<SAMPLE>(a, t);
        for (u32 qc = 0; qc < T.G; qc += QC) {
            const u32 nq = min((u32)QC, T.G - qc);
            u32 qid[QC];
            u32 mo[QC];
#pragma unroll
            for (int j = 0; j < QC; j++) {
                qid[j] = 0;
                mo[j] = 0;
                if ((u32)j < nq) {
                    u32 p = __ldg(a.list_pairs + T.pb + qc + j);
                    qid[j] = p / a.nprobe;
                    mo[j] = a.mask ? __ldg(a.moff + p) + T.wi0 : 0u;
                }
            }
#pragma unroll 1
            for (u32 wv = 0; wv < T.nwt; wv++) {
                u64 mw[QC];
#pragma unroll
                for (int j = 0; j < QC; j++)
                    mw[j] = (u32)j >= nq ? 0ull : a.mask ? __ldg(a.mask + mo[j] + wv) : range_bits(T.wbase + wv, T.rs, T.re);
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
                    const u32 row = (u32)((T.wbase + wv) * 64 + 32 * h + lane);
                    const bool mine = (uni >> lane) & 1u;
                    int acc[QC];
#pragma unroll
                    for (int j = 0; j < QC; j++) acc[j] = 0;
                    for (u32 cb = 0; cb < a.nc; cb += 8) {
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
                        offer<SAMPLE>(a, (bits[j] >> lane) & 1u, acc[j], sc, row, qid[j]);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Pipelined paths (D <= 128): per warp, a 3-stage cp.async pipeline streams 32-row
// halves (4 KiB each) into shared memory, two halves in flight while one is scored.
// Queries of a list go in chunks of 4 (remainders of 1 or 2 run narrower): the dp4a
// chains of a chunk are independent, with no per-query branch before the arithmetic
// (rows no query wants are neither loaded nor scored, and a half no query wants is
// skipped). Appends of a half are reserved with one atomic round for all queries, and
// written one half later, so the atomic's latency overlaps the next half's work.
// Fast: one pipeline per tile, the tile's masks, thresholds and query codes staged once
// per tile. Stream: one pipeline across a warp's tiles (below). The pieces both share
// (stage_half, dot_half, pass_half, flush_appends, WITH_NQ) are templates on the shared
// memory layout, so each path keeps its own layout and register footprint (the stream
// path's PTX is the hand-written one's, instruction for instruction; a per-chunk metadata
// helper shared by reference reordered it and cost the sample kernel 2 registers).
// ---------------------------------------------------------------------------------
#define FS 3   // pipeline stages
#define FTW 4  // max words per tile on the fast path
#define FQ 4   // queries per chunk on the fast path
#define NO_PLAN 0xffffffffu

struct __align__(16) WarpSmem {
    uint4 stage[FS][8 * 32];
    float sscale[FS][32];
    uint4 q[FQ][8];
    u64 msk[FQ][FTW];
    u64 uni[FTW];
    u32 qid[FQ];
    u32 moff[FQ];
    u32 tk[FQ];
    u32 plan[FQ];  // plan offset when the query's filter is non-trivial, else NO_PLAN
};

// Exact filter check of the lanes in `pass` (rare: only rows that reach the threshold).
__device__ __noinline__ bool verify_row(const ScanArgs& a, u32 plan_off, u32 row) {
    return plan_match(plan_at(a.plan_words, plan_off), a.attr_vals, a.attr_off, row);
}

// cp.async of half x (word x >> 1, rows 32 (x & 1) ..) into stage st of s (a WarpSmem or
// StreamSmem): the rows some query of the chunk wants (uni: union of their mask words).
// The caller commits the group.
template <class S>
__device__ __forceinline__ void stage_half(const ScanArgs& a, u32 nc, u32 lane, S& s, const u64* uni, u64 wbase, u32 x, u32 st) {
    const u32 w = x >> 1, h = x & 1;
    const u32 u = (u32)(uni[w] >> (32 * h));
    if ((u >> lane) & 1u) {
        const u32 row = (u32)((wbase + w) * 64 + 32 * h + lane);
        const uint4* src = il_chunk(a.codes, nc, row, 0);
#pragma unroll
        for (int c = 0; c < 8; c++)
            if ((u32)c < nc) cp_async16(&s.stage[st][c * 32 + lane], src + c * 32);
        cp_async4(&s.sscale[st][lane], a.scale + row);
    }
}

// Dot products of the half staged in stage st of s (WarpSmem or StreamSmem) with the NQ
// query codes of m (WarpSmem or Meta); sc = the lane's row scale.
template <int NQ, class S, class M>
__device__ __forceinline__ void dot_half(u32 nc, u32 lane, const S& s, const M& m, u32 st, int (&acc)[NQ], float& sc) {
#pragma unroll
    for (int j = 0; j < NQ; j++) acc[j] = 0;
#pragma unroll
    for (int c = 0; c < 8; c++) {
        if ((u32)c < nc) {
            const uint4 v = s.stage[st][c * 32 + lane];
#pragma unroll
            for (int j = 0; j < NQ; j++) acc[j] = dot16(v, m.q[j][c], acc[j]);
        }
    }
    sc = s.sscale[st][lane];
}

// The rows of the half (word w, half h, the lane's `row`) that pass for each of the NQ
// queries qj of m (mask bit, threshold on the main pass, exact filter): ballots in pbal,
// the lane's keys in pkey; lane j's mycnt and myq = passing rows of query j, and qj[j].
// Returns the union of the ballots.
template <bool SAMPLE, int NQ, class M>
__device__ __forceinline__ u32 pass_half(const ScanArgs& a, u32 lane, const M& m, const u32* qj, u32 w, u32 h, u32 row,
                                         const int (&acc)[NQ], float sc, u32* pbal, u64* pkey, u32& mycnt, u32& myq) {
    u32 any = 0;
#pragma unroll
    for (int j = 0; j < NQ; j++) {
        const bool bit = (u32)(m.msk[j][w] >> (32 * h)) >> lane & 1u;
        const float s = metric_score(acc[j], sc, a.bias, row, a.qscale, qj[j]);
        const u32 fk = fkey(s);
        bool pass = bit && (SAMPLE || fk >= m.tk[j]);
        const u32 po = m.plan[j];
        if (po != NO_PLAN && __any_sync(FULL_MASK, pass)) pass = pass && verify_row(a, po, row);
        const u32 bal = __ballot_sync(FULL_MASK, pass);
        pbal[j] = bal;
        pkey[j] = SAMPLE ? (u64)fk : make_key(s, row);
        if (lane == (u32)j) { mycnt = __popc(bal); myq = qj[j]; }
        any |= bal;
    }
    return any;
}

// Writes the appends pass_half left pending for N queries qj: lane j's pbase is the base
// its atomic reserved for query j; slots past the buffer are dropped (counted only).
template <bool SAMPLE, int N>
__device__ __forceinline__ void flush_appends(const ScanArgs& a, u32 lane, const u32* qj, const u32* pbal, const u64* pkey,
                                              u32 pbase) {
#pragma unroll
    for (int j = 0; j < N; j++) {
        const u32 base = __shfl_sync(FULL_MASK, pbase, j);
        if ((pbal[j] >> lane) & 1u) {
            const u32 pos = base + __popc(pbal[j] & lanemask_lt());
            if (pos < a.cap) {
                if (SAMPLE) ((u32*)a.buf)[(u64)qj[j] * a.cap + pos] = (u32)pkey[j];
                else ((u64*)a.buf)[(u64)qj[j] * a.cap + pos] = pkey[j];
            }
        }
    }
}

// The statement for a chunk of nq queries with NQ_ = its chain width, 1, 2 or 4 (3 runs
// as 4; more widths thrash the instruction cache, docs/perf/cuda-perf.md run 2).
#define WITH_NQ(nq, ...)                  \
    if ((nq) == 1) {                      \
        constexpr int NQ_ = 1;            \
        __VA_ARGS__;                      \
    } else if ((nq) == 2) {               \
        constexpr int NQ_ = 2;            \
        __VA_ARGS__;                      \
    } else {                              \
        constexpr int NQ_ = 4;            \
        __VA_ARGS__;                      \
    }

template <bool SAMPLE, int NQ>
__device__ __forceinline__ void fast_tile(const ScanArgs& a, WarpSmem& ws, u64 wbase, u32 nwt) {
    const u32 lane = lane_id();
    const u32 H = 2 * nwt;
    const u32 nc = a.nc;
    u32 qj[NQ];
#pragma unroll
    for (int j = 0; j < NQ; j++) qj[j] = ws.qid[j];
    u32 myq = 0;
#pragma unroll
    for (int j = 0; j < NQ; j++) if (lane == (u32)j) myq = qj[j];
    auto issue = [&](u32 x) {
        if (x < H) stage_half(a, nc, lane, ws, ws.uni, wbase, x, x % FS);
        cp_commit();
    };
    // Appends of the previous half, waiting for their reserved bases.
    bool pend = false;
    u32 pbase = 0;
    u32 pbal[NQ];
    u64 pkey[NQ];
    auto flush = [&]() {
        if (!pend) return;
        flush_appends<SAMPLE, NQ>(a, lane, qj, pbal, pkey, pbase);
        pend = false;
    };
    issue(0);
    issue(1);
#pragma unroll 1
    for (u32 x = 0; x < H; x++) {
        issue(x + 2);
        cp_wait<2>();  // half x has landed (groups complete in order)
        flush();
        const u32 w = x >> 1, h = x & 1;
        const u32 uni = (u32)(ws.uni[w] >> (32 * h));
        if (uni == 0) continue;  // warp-uniform
        const u32 st = x % FS;
        const u32 row = (u32)((wbase + w) * 64 + 32 * h + lane);
        int acc[NQ];
        float sc;
        dot_half<NQ>(nc, lane, ws, ws, st, acc, sc);
        u32 mycnt = 0, unused;
        const u32 any = pass_half<SAMPLE, NQ>(a, lane, ws, qj, w, h, row, acc, sc, pbal, pkey, mycnt, unused);
        if (any) {
            // One atomic round reserves the slots of every query of the chunk.
            pbase = mycnt ? atomicAdd(a.count + myq, mycnt) : 0u;
            pend = true;
        }
    }
    flush();
    cp_wait<0>();
}

template <bool SAMPLE>
__device__ void scan_tiles_fast(const ScanArgs& a) {
    extern __shared__ uint4 dsm[];
    WarpSmem& ws = reinterpret_cast<WarpSmem*>(dsm)[threadIdx.x >> 5];
    const u32 lane = lane_id();
    const u32 warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const u32 nwarps = (gridDim.x * blockDim.x) >> 5;
    const u32 total = a.tiles[a.L];
    for (u32 t = warp; t < total; t += nwarps) {
        const Tile T = tile_at<SAMPLE>(a, t);
        for (u32 qc = 0; qc < T.G; qc += FQ) {
            const u32 nq = min((u32)FQ, T.G - qc);
            if (lane < FQ) {
                u32 q = 0, mo = 0, tk = 0, pl = NO_PLAN;
                if (lane < nq) {
                    u32 p = __ldg(a.list_pairs + T.pb + qc + lane);
                    q = p / a.nprobe;
                    mo = a.mask ? __ldg(a.moff + p) + T.wi0 : 0u;
                    if (!SAMPLE) tk = __ldg(a.tkey + q);
                    u32 off = __ldg(a.plan_off + q);
                    if (!off_trivial(off)) pl = off;
                }
                ws.qid[lane] = q;  // query 0 stands in for absent ones (their bits are 0)
                ws.moff[lane] = mo;
                ws.tk[lane] = tk;
                ws.plan[lane] = pl;
            }
            __syncwarp();
            if (lane < FQ * FTW) {
                const u32 j = lane / FTW, w = lane % FTW;
                ws.msk[j][w] = (j >= nq || w >= T.nwt) ? 0ull
                               : a.mask ? __ldg(a.mask + ws.moff[j] + w) : range_bits(T.wbase + w, T.rs, T.re);
            }
            {
                const u32 j = lane >> 3, c = lane & 7;  // 32 lanes = FQ x 8 chunks
                ws.q[j][c] = c < a.nc ? __ldg(a.qcodes + (u64)ws.qid[j] * a.nc + c) : make_uint4(0, 0, 0, 0);
            }
            __syncwarp();
            if (lane < FTW) {
                u64 u = 0;
#pragma unroll
                for (int j = 0; j < FQ; j++) u |= ws.msk[j][lane];
                ws.uni[lane] = u;
            }
            if (SAMPLE && lane < nq && ws.msk[lane][0]) atomicAdd(a.masked + ws.qid[lane], (u32)__popcll(ws.msk[lane][0]));
            __syncwarp();
            WITH_NQ(nq, fast_tile<SAMPLE, NQ_>(a, ws, T.wbase, T.nwt));
            __syncwarp();
        }
    }
}

// ---------------------------------------------------------------------------------
// Streamed fast path: a warp's units (tile x chunk of <= FQ queries) form one stream of
// 32-row halves, and the cp.async pipeline runs two halves ahead across unit
// boundaries. A unit's metadata is fetched into registers one unit ahead (its dependent
// loads wait while halves are in flight) and installed into one of two shared-memory
// slots just before its first half is issued.
// ---------------------------------------------------------------------------------
struct Meta {
    uint4 q[FQ][8];
    u64 msk[FQ][FTW];
    u64 uni[FTW];
    u64 wbase;
    u32 qid[FQ];
    u32 tk[FQ];
    u32 plan[FQ];
    u32 nwt, nq;
};

struct __align__(16) StreamSmem {
    uint4 stage[FS][8 * 32];
    float sscale[FS][32];
    Meta meta[2];
};

struct Unit {
    u32 t, qc, nq, G, nwt;
    u64 wbase;
    u32 q, tk, pl;  // lane j < FQ: query, threshold, plan offset (NO_PLAN when trivial)
    u64 mw;         // lane j*FTW + w: mask word w of query j
    uint4 qv;       // lane 8j + c: chunk c of query j's codes
};

template <bool SAMPLE>
__device__ __forceinline__ void unit_fetch(const ScanArgs& a, Unit& u, u32 t, u32 qc, u32 total) {
    const u32 lane = lane_id();
    u.t = t;
    u.qc = qc;
    if (t >= total) return;  // warp-uniform
    const Tile T = tile_at<SAMPLE>(a, t);
    u.G = T.G;
    u.nwt = T.nwt;
    u.wbase = T.wbase;
    u.nq = min((u32)FQ, T.G - qc);
    u32 q = 0, mo = 0, tk = 0, pl = NO_PLAN;
    if (lane < u.nq) {
        const u32 p = __ldg(a.list_pairs + T.pb + qc + lane);
        q = p / a.nprobe;
        mo = a.mask ? __ldg(a.moff + p) + T.wi0 : 0u;
        if (!SAMPLE) tk = __ldg(a.tkey + q);
        const u32 off = __ldg(a.plan_off + q);
        if (!off_trivial(off)) pl = off;
    }
    u.q = q;  // query 0 stands in for absent ones (their mask bits are 0)
    u.tk = tk;
    u.pl = pl;
    const u32 j = (lane / FTW) & (FQ - 1), w = lane % FTW;
    const u32 moj = __shfl_sync(FULL_MASK, mo, j);
    u.mw = (lane >= FQ * FTW || j >= u.nq || w >= u.nwt) ? 0ull
           : a.mask ? __ldg(a.mask + moj + w) : range_bits(T.wbase + w, T.rs, T.re);
    const u32 qj = __shfl_sync(FULL_MASK, q, lane >> 3), c = lane & 7;
    u.qv = c < a.nc ? __ldg(a.qcodes + (u64)qj * a.nc + c) : make_uint4(0, 0, 0, 0);
}

template <bool SAMPLE>
__device__ __forceinline__ void unit_install(const ScanArgs& a, const Unit& u, Meta& m) {
    const u32 lane = lane_id();
    if (lane < FQ) {
        m.qid[lane] = u.q;
        m.tk[lane] = u.tk;
        m.plan[lane] = u.pl;
    }
    if (lane < FQ * FTW) m.msk[lane / FTW][lane % FTW] = u.mw;
    m.q[lane >> 3][lane & 7] = u.qv;
    u64 un = lane < FQ * FTW ? u.mw : 0ull;
    for (int o = FTW; o < FQ * FTW; o <<= 1) un |= __shfl_xor_sync(FULL_MASK, un, o);
    if (lane < FTW) m.uni[lane] = un;
    if (lane == 0) { m.wbase = u.wbase; m.nwt = u.nwt; m.nq = u.nq; }
    if (SAMPLE) {
        const u32 qm = __shfl_sync(FULL_MASK, u.q, (lane / FTW) & (FQ - 1));
        if (lane < FQ * FTW && u.mw) atomicAdd(a.masked + qm, (u32)__popcll(u.mw));
    }
    __syncwarp();
}

// Scores half x of the unit in m (stage st) for NQ queries; the half's appends are
// reserved (one atomic round) and left pending in pbal/pkey/pq/pbase.
template <bool SAMPLE, int NQ>
__device__ __forceinline__ void stream_half(const ScanArgs& a, const StreamSmem& ss, const Meta& m, u32 x, u32 st,
                                            u32 (&pbal)[FQ], u64 (&pkey)[FQ], u32 (&pq)[FQ], u32& pbase, bool& pend) {
    const u32 lane = lane_id();
    const u32 w = x >> 1, h = x & 1;
    const u32 uni = (u32)(m.uni[w] >> (32 * h));
    if (uni == 0) return;  // warp-uniform
    const u32 row = (u32)((m.wbase + w) * 64 + 32 * h + lane);
    int acc[NQ];
    float sc;
    dot_half<NQ>(a.nc, lane, ss, m, st, acc, sc);
    u32 myq = 0, mycnt = 0;
#pragma unroll
    for (int j = 0; j < FQ; j++) {
        pbal[j] = 0;
        pq[j] = m.qid[j];
    }
    const u32 any = pass_half<SAMPLE, NQ>(a, lane, m, pq, w, h, row, acc, sc, pbal, pkey, mycnt, myq);
    if (any) {
        pbase = mycnt ? atomicAdd(a.count + myq, mycnt) : 0u;
        pend = true;
    }
}

template <bool SAMPLE>
__device__ void scan_tiles_stream(const ScanArgs& a) {
    extern __shared__ uint4 dsm[];
    StreamSmem& ss = reinterpret_cast<StreamSmem*>(dsm)[threadIdx.x >> 5];
    const u32 lane = lane_id();
    const u32 warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const u32 nwarps = (gridDim.x * blockDim.x) >> 5;
    const u32 total = a.tiles[a.L];
    const u32 nc = a.nc;
    Unit pre;
    unit_fetch<SAMPLE>(a, pre, warp, 0, total);
    if (pre.t >= total) return;
    unit_install<SAMPLE>(a, pre, ss.meta[0]);
    auto after = [&](const Unit& u, u32& t, u32& qc) {
        const bool more = u.qc + FQ < u.G;
        t = more ? u.t : u.t + nwarps;
        qc = more ? u.qc + FQ : 0;
    };
    {
        u32 t, qc;
        after(pre, t, qc);
        unit_fetch<SAMPLE>(a, pre, t, qc, total);
    }
    auto issue = [&](const Meta& m, u32 x, u32 st) {
        stage_half(a, nc, lane, ss, m.uni, m.wbase, x, st);
        cp_commit();
    };
    u32 cb = 0, hcur = 2 * ss.meta[0].nwt, hx = 0, sidx = 0;
    bool nxt_in = false, nxt_ok = false;
    issue(ss.meta[0], 0, 0);
    issue(ss.meta[0], 1, 1);
    u32 pbal[FQ], pq[FQ], pbase = 0;
    u64 pkey[FQ];
    bool pend = false;
#pragma unroll
    for (int j = 0; j < FQ; j++) { pbal[j] = 0; pq[j] = 0; pkey[j] = 0; }
    auto flush = [&]() {
        if (!pend) return;
        flush_appends<SAMPLE, FQ>(a, lane, pq, pbal, pkey, pbase);
        pend = false;
    };
#pragma unroll 1
    while (true) {
        // Issue the half two ahead: in this unit, or the first halves of the next one.
        const u32 ih = hx + 2, ist = sidx + 2 >= FS ? sidx + 2 - FS : sidx + 2;
        if (ih < hcur) {
            issue(ss.meta[cb], ih, ist);
        } else {
            if (!nxt_in) {
                nxt_in = true;
                nxt_ok = pre.t < total;
                if (nxt_ok) {
                    unit_install<SAMPLE>(a, pre, ss.meta[cb ^ 1]);
                    u32 t, qc;
                    after(pre, t, qc);
                    unit_fetch<SAMPLE>(a, pre, t, qc, total);  // waits while halves are in flight
                }
            }
            if (nxt_ok) issue(ss.meta[cb ^ 1], ih - hcur, ist);
            else cp_commit();
        }
        cp_wait<2>();  // half hx has landed
        flush();
        const Meta& m = ss.meta[cb];
        WITH_NQ(m.nq, stream_half<SAMPLE, NQ_>(a, ss, m, hx, sidx, pbal, pkey, pq, pbase, pend));
        hx++;
        sidx = sidx + 1 == FS ? 0 : sidx + 1;
        if (hx == hcur) {
            if (!nxt_ok) break;
            cb ^= 1;
            hcur = 2 * ss.meta[cb].nwt;
            hx = 0;
            nxt_in = false;
        }
    }
    flush();
    cp_wait<0>();
}

// ---------------------------------------------------------------------------------
// The scan kernel template. Policies: the pipeline P (how a tile's rows reach the dot
// products: Generic, any D, codes straight from global; Fast, per-tile cp.async
// pipeline, D <= 128; Stream, one pipeline across tiles, D <= 128) and the pass SAMPLE
// (sample: every se-th word, u32 order keys of the rows that pass, masked-row counts;
// main: every tile, threshold test, u64 keys). Each instantiation is one extern "C"
// entry below (the names the host launches); all take ScanArgs by value, 256 threads,
// a persistent grid; Fast / Stream take 8 * warp_smem_size / stream_smem_size bytes of
// dynamic shared memory.
// ---------------------------------------------------------------------------------
enum class Pipe { Generic, Fast, Stream };

template <Pipe P, bool SAMPLE>
__device__ __forceinline__ void scan_kernel(const ScanArgs& a) {
    pdl_wait();
    pdl_trigger();  // persistent, fully resident grid
    if constexpr (P == Pipe::Generic) scan_tiles_generic<SAMPLE>(a);
    else if constexpr (P == Pipe::Fast) scan_tiles_fast<SAMPLE>(a);
    else scan_tiles_stream<SAMPLE>(a);
}

extern "C" __global__ void __launch_bounds__(256) scan_sample(ScanArgs a) { scan_kernel<Pipe::Generic, true>(a); }
extern "C" __global__ void __launch_bounds__(256) scan_main(ScanArgs a) { scan_kernel<Pipe::Generic, false>(a); }
extern "C" __global__ void __launch_bounds__(256, 2) scan_sample_fast(ScanArgs a) { scan_kernel<Pipe::Fast, true>(a); }
extern "C" __global__ void __launch_bounds__(256, 2) scan_main_fast(ScanArgs a) { scan_kernel<Pipe::Fast, false>(a); }
extern "C" __global__ void __launch_bounds__(256, 2) scan_sample_stream(ScanArgs a) { scan_kernel<Pipe::Stream, true>(a); }
extern "C" __global__ void __launch_bounds__(256, 2) scan_main_stream(ScanArgs a) { scan_kernel<Pipe::Stream, false>(a); }
extern "C" __global__ void warp_smem_size(u32* out) { *out = (u32)sizeof(WarpSmem); }
extern "C" __global__ void stream_smem_size(u32* out) { *out = (u32)sizeof(StreamSmem); }

// Per query (one block of 1024): the threshold key for scan_main. M = masked rows of the
// query (popcount of its mask words); the sample saw `ms` masked rows of which `ps`
// passed. The top-K0 rows hold about mu = K0*ms/M sampled ones; the r-th best sampled
// key with r = mu + 5 sqrt(mu) + 10 leaves K0 rows above it but for a ~5-sigma event
// (which scan_select detects and repairs). When the sample is too thin for that
// (r > ps: M is within a few K0, or few masked rows pass exactly) every row is taken
// (threshold 0). This holds also when M fits the candidate buffer: a 20% filter's M is
// ~100x K0 and below the buffer, and a threshold of 0 would verify, append and select
// all of them. Samples are staged in dynamic shared memory (smem_cap u32) when they fit.
extern "C" __global__ void scan_threshold(u32 nprobe, const u32* __restrict__ lists, const u32* __restrict__ list_start,
                                          const u32* __restrict__ list_end, const u32* __restrict__ moff, const u64* __restrict__ mask,
                                          u32* __restrict__ samp_count, u32* __restrict__ samp_masked,
                                          const u32* __restrict__ samp, u32 cs, u32 k0, u32 cap,
                                          u32* __restrict__ tkey, u32 smem_cap) {
    pdl_wait();
    extern __shared__ u32 ssamp[];
    __shared__ SelectSmem<u32> sm;
    __shared__ unsigned long long total;
    u32 q = blockIdx.x;
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    const u32 bd = blockDim.x;
    u64 c = 0;
    if (!mask) {
        // Implicit masks: every row of the probed lists.
        for (u32 j = threadIdx.x; j < nprobe; j += bd) {
            const u32 l = lists[q * nprobe + j];
            c += list_end[l] - list_start[l];
        }
    }
    const u32 w0 = mask ? moff[q * nprobe] : 0u, w1 = mask ? moff[(q + 1) * nprobe] : 0u;
    // Four independent loads in flight per thread.
    for (u32 i = w0 + threadIdx.x; i < w1; i += 4 * bd) {
        u64 m0 = mask[i], m1 = i + bd < w1 ? mask[i + bd] : 0, m2 = i + 2 * bd < w1 ? mask[i + 2 * bd] : 0,
            m3 = i + 3 * bd < w1 ? mask[i + 3 * bd] : 0;
        c += __popcll(m0) + __popcll(m1) + __popcll(m2) + __popcll(m3);
    }
    for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(FULL_MASK, c, o);
    if (lane_id() == 0) atomicAdd(&total, (unsigned long long)c);
    __syncthreads();
    u64 M = total;
    u32 ms = samp_masked[q], ps = min(samp_count[q], cs);
    u32 t = 0;
    if (ms > 0 && ps > 0) {
        double mu = (double)k0 * (double)ms / (double)M;
        double rr = ceil(mu + 5.0 * sqrt(mu) + 10.0);
        if (rr <= (double)ps) {
            const u32* keys = samp + (u64)q * cs;
            if (ps <= smem_cap) {
                for (u32 i = threadIdx.x; i < ps; i += 4 * bd) {
                    u32 k0_ = keys[i], k1 = i + bd < ps ? keys[i + bd] : 0, k2 = i + 2 * bd < ps ? keys[i + 2 * bd] : 0,
                        k3 = i + 3 * bd < ps ? keys[i + 3 * bd] : 0;
                    ssamp[i] = k0_;
                    if (i + bd < ps) ssamp[i + bd] = k1;
                    if (i + 2 * bd < ps) ssamp[i + 2 * bd] = k2;
                    if (i + 3 * bd < ps) ssamp[i + 3 * bd] = k3;
                }
                __syncthreads();
                keys = ssamp;
            }
            ArraySrc<u32> src{keys, ps};
            t = block_kth<u32>(src, (u32)rr, sm);
        }
    }
    __syncthreads();  // every thread has read the sample counters
    if (threadIdx.x == 0) {
        tkey[q] = t;
        // Leave the counters zero for the next scan (the small-batch path relies on it).
        samp_count[q] = 0;
        samp_masked[q] = 0;
    }
}

// All rows of query q that pass its mask and exact filter, keys recomputed from codes
// (the exact fallback of scan_select).
struct RescanSrc {
    u32 q, nprobe;
    const u32* lists;
    const u32* moff;
    const u64* mask;
    const u32* list_start;
    const u32* list_end;
    const u32* list_nw;
    const uint4* codes;
    u32 nc;
    const float* scale;
    const uint4* qc;
    const u32* plan;
    const u64* attr_off;
    const u32* attr_vals;
    const float* bias;
    const float* qscale;
    template <typename F>
    __device__ void each(F f) const {
        for (u32 j = 0; j < nprobe; j++) {
            u32 p = q * nprobe + j;
            const u32 l = lists[p], rs = list_start[l];
            u64 w0 = rs >> 6;
            u32 o = mask ? moff[p] : 0u, nw = mask ? moff[p + 1] - o : list_nw[l];
            for (u32 i = threadIdx.x; i < nw * 64; i += blockDim.x) {
                u32 wi = i >> 6, b = i & 63;
                const u64 mw = mask ? mask[o + wi] : range_bits(w0 + wi, rs, list_end[l]);
                if ((mw >> b) & 1ull) {
                    u32 row = (u32)((w0 + wi) * 64 + b);
                    if (plan_trivial(plan) || plan_match(plan, attr_vals, attr_off, row))
                        f(make_key(metric_score(row_dot(codes, nc, row, qc), scale[row], bias, row, qscale, q), row));
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
    u32 smem_keys;        // candidates staged in dynamic shared memory when they fit
    const u32* list_end;  // [L] (mask == null: implicit masks)
    const u32* list_nw;   // [L]
    const float* bias;    // l2: [N] row biases, else null (metric_score)
    const float* qscale;  // l2: [B] query scales
};

// One block (1024 threads) per query; dynamic shared memory: smem_keys u64.
extern "C" __global__ void __launch_bounds__(1024) scan_select(SelectArgs a) {
    pdl_wait();
    extern __shared__ u64 skeys[];
    __shared__ SegmentSmem ss;
    __shared__ u32 npass;
    SelectSmem<u64>& sm = ss.sel;
    u32& fill = ss.fill;
    const u32 q = blockIdx.x;
    u64* cb = a.cand + (u64)q * a.cap;
    u32 c = a.count[q];
    bool bad = a.force_fallback || c > a.cap || (c < a.k0 && a.tkey[q] != 0);
    if (bad) {
        RescanSrc src{q, a.nprobe, a.lists, a.moff, a.mask, a.list_start, a.list_end, a.list_nw, a.codes, a.nc, a.scale,
                      a.qcodes + (u64)q * a.nc, plan_at(a.plan_words, a.plan_off[q]), a.attr_off, a.attr_vals,
                      a.bias, a.qscale};
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
            src.each([&](u64 key) { active_append<u64>(key >= T, key, &fill, cb, a.cap); });
        }
        __syncthreads();
        c = m;
    }
    // The radix passes re-read the keys: from shared memory when they fit.
    const u64* keys = cb;
    if (c <= a.smem_keys) {
        for (u32 i = threadIdx.x; i < c; i += blockDim.x) skeys[i] = cb[i];
        __syncthreads();
        keys = skeys;
        if (a.P <= SORT_CAP && next_pow2(max(c, 1u)) <= min(a.smem_keys, a.P)) {
            // No more candidates than the output sort holds: sort them all (no radix select).
            direct_sort_out(skeys, c, a.k0, q, a.out_rows, a.out_scores, a.out_counts);
            return;
        }
    }
    ArraySrc<u64> src{keys, c};
    select_segment(src, c, a.k0, a.P, q, a.out_rows, a.out_scores, a.out_counts, a.sortbuf, ss);
}

// The candidate route's stage 3 (Backend::scan_candidates): for query q whose Bloom
// count fit the budget (bloom[q] <= cap), key every compacted row (cand_compact):
// keys[q*cap + i] = make_key(metric_score(dot, scale[row], ...), row) for i < exact[q], and
// seg[q] = exact[q]; else seg[q] = 0 (the top-K0 select keeps nothing).
// Candidates are scattered rows, so this reads the row-major copy of the codes
// (codes_rows): a row's nc*16 bytes are contiguous, one 128-byte line at D = 128, where
// the interleaved layout spreads a row over nc lines 512 bytes apart (measured on the
// H200: 4x the DRAM traffic, 2.4 ms for 12.8M candidates; BENCHMARKS.md, stop 20). 8 lanes
// per row: lane g reads chunks g, g + 8, ...; the group sums its partial dots with
// shuffles (integer addition: the same bits in any order). Each group keys two rows per
// iteration, their row-id, code and scale loads issued together: one dependent chain
// per row left too few bytes in flight to reach DRAM bandwidth (12.8M rows in 0.75 ms,
// ~2.2 TB/s, BENCHMARKS.md, stop 22). Grid: (chunks, B); block 256.
extern "C" __global__ void cand_score(const uint4* __restrict__ rowcodes, u32 nc, const float* __restrict__ scale,
                                      const uint4* __restrict__ qcodes, const u32* __restrict__ rows,
                                      const u32* __restrict__ bloom, const u32* __restrict__ exact, u32 cap,
                                      u64* __restrict__ keys, u32* __restrict__ seg,
                                      const float* __restrict__ bias, const float* __restrict__ qscale) {
    const u32 q = blockIdx.y;
    const u32 cnt = bloom[q] <= cap ? min(exact[q], cap) : 0;
    if (blockIdx.x == 0 && threadIdx.x == 0) seg[q] = cnt;
    const uint4* qc = qcodes + (u64)q * nc;
    const u32 g = threadIdx.x & 7;
    const unsigned gmask = 0xFFu << (lane_id() & 24);
    const u32 step = (gridDim.x * blockDim.x) >> 3;
    const u32* qrows = rows + (u64)q * cap;
    u64* qkeys = keys + (u64)q * cap;
    for (u32 i = (blockIdx.x * blockDim.x + threadIdx.x) >> 3; i < cnt; i += 2 * step) {
        const u32 i1 = i + step;
        const bool two = i1 < cnt;  // uniform in the group of 8
        const u32 r0 = __ldg(qrows + i), r1 = two ? __ldg(qrows + i1) : r0;
        const uint4* row0 = rowcodes + (u64)r0 * nc;
        const uint4* row1 = rowcodes + (u64)r1 * nc;
        const float s0 = __ldg(scale + r0), s1 = __ldg(scale + r1);
        int a0 = 0, a1 = 0;
        for (u32 c = g; c < nc; c += 8) {
            const uint4 x0 = __ldg(row0 + c), x1 = __ldg(row1 + c), y = __ldg(qc + c);
            a0 = dot16(x0, y, a0);
            a1 = dot16(x1, y, a1);
        }
        a0 += __shfl_xor_sync(gmask, a0, 4);
        a1 += __shfl_xor_sync(gmask, a1, 4);
        a0 += __shfl_xor_sync(gmask, a0, 2);
        a1 += __shfl_xor_sync(gmask, a1, 2);
        a0 += __shfl_xor_sync(gmask, a0, 1);
        a1 += __shfl_xor_sync(gmask, a1, 1);
        if (g == 0) {
            qkeys[i] = make_key(metric_score(a0, s0, bias, r0, qscale, q), r0);
            if (two) qkeys[i1] = make_key(metric_score(a1, s1, bias, r1, qscale, q), r1);
        }
    }
}

// The row-major copy of the interleaved item codes that cand_score gathers from:
// out[r * nc + c] = chunk c of row r, for rows < n (made once per upload, on the device).
extern "C" __global__ void codes_rows(const uint4* __restrict__ codes, u32 nc, u64 n, uint4* __restrict__ out) {
    const u64 total = n * nc;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (u64)gridDim.x * blockDim.x) {
        const u64 r = i / nc;
        const u32 c = (u32)(i - r * nc);
        out[i] = *il_chunk(codes, nc, (u32)r, c);
    }
}
