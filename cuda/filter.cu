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

// The candidate route's first look (crates/core/src/backend/mod.rs sampled_bloom_count): sample[j] +=
// Bloom "maybe" rows of plan j (live, < n) in the words w = i * every. Grid: (nplans,
// chunks); block 256; sample zeroed by the caller.
extern "C" __global__ void cand_sample(const u64* __restrict__ planes, u64 words, u64 n, const u64* __restrict__ live,
                                       const u32* __restrict__ plan_words, const u32* __restrict__ plan_off, u32 every,
                                       u32* __restrict__ sample) {
    const u32 j = blockIdx.x;
    const u32 off = plan_off[j];
    const u32* plan = plan_at(plan_words, off);
    const u64 ns = (words + every - 1) / every;
    u32 total = 0;
    for (u64 i = (u64)blockIdx.y * blockDim.x + threadIdx.x; i < ns; i += (u64)gridDim.y * blockDim.x) {
        const u64 w = i * every;
        u64 m = range_bits(w, 0, n);
        if (live) m &= live[w];
        if (m && !off_trivial(off)) m &= plan_bloom_word(plan, planes, words, w);
        total += __popcll(m);
    }
    for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(FULL_MASK, total, o);
    if (lane_id() == 0 && total) atomicAdd(sample + j, total);
}

// The candidate route's stage 2 (Backend::scan_candidates, for selective filters): a plan
// whose sampled estimate sample[j] * every exceeds 2 * cap (admit_candidates; `all`: the
// budget covers every row, so all are admitted) is marked bloom[j] = cap + 1 and skipped.
// Otherwise, per plan j, the Bloom "maybe" rows of the whole index (live, < n) are counted into bloom[j];
// while bloom[j] <= cap each maybe row is verified exactly (plan_match) and the passing
// rows are appended, in any order, to rows[j*cap ..] (count in exact[j]). A plan past
// cap stops early: its query takes the probe path and its rows are never read.
// Early-exit decisions are made per warp (lane 0's view, broadcast) so the warp stays
// convergent for the shuffles. Grid: (nplans, chunks); block 256 (x fastest, so the
// blocks of one word chunk for all plans run together and share plane words in L2).
extern "C" __global__ void cand_compact(const u64* __restrict__ planes, u64 words, u64 n, const u64* __restrict__ live,
                                        const u32* __restrict__ plan_words, const u32* __restrict__ plan_off,
                                        const u64* __restrict__ attr_off, const u32* __restrict__ attr_vals, u32 cap,
                                        const u32* __restrict__ sample, u32 every, u32 all,
                                        u32* __restrict__ bloom, u32* __restrict__ exact, u32* __restrict__ rows) {
    const u32 j = blockIdx.x, lane = lane_id();
    if (!all && (u64)sample[j] * every > 2ull * cap) {
        if (blockIdx.y == 0 && threadIdx.x == 0) atomicMax(bloom + j, cap + 1);
        return;
    }
    const u32 off = plan_off[j];
    const u32* plan = plan_at(plan_words, off);
    const bool trivial = off_trivial(off);
    u32* out = rows + (u64)j * cap;
    for (u64 base = (u64)blockIdx.y * blockDim.x; base < words; base += (u64)gridDim.y * blockDim.x) {
        u32 stop = lane == 0 ? (*(volatile u32*)(bloom + j) > cap) : 0;
        if (__shfl_sync(FULL_MASK, stop, 0)) return;
        const u64 w = base + threadIdx.x;
        u64 m = 0;
        if (w < words) {
            m = range_bits(w, 0, n);
            if (live) m &= live[w];
            if (m && !trivial) m &= plan_bloom_word_sparse(plan, planes, words, w);
        }
        u32 tot = __popcll(m);
        for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(FULL_MASK, tot, o);
        if (tot == 0) continue;
        u32 before = lane == 0 ? atomicAdd(bloom + j, tot) : 0;
        before = __shfl_sync(FULL_MASK, before, 0);
        if ((u64)before + tot > cap) continue;  // past the budget: unanswered, skip verification
        u64 pass = m;
        if (!trivial) {
            pass = 0;
            for (u64 bits = m; bits; bits &= bits - 1) {
                const u32 b = __ffsll((long long)bits) - 1;
                const u64 r = w * 64 + b;
                if (plan_match(plan, attr_vals, attr_off, r)) pass |= 1ull << b;
            }
        }
        const u32 pc = __popcll(pass);
        u32 incl = pc;
        for (int o = 1; o < 32; o <<= 1) {
            const u32 t = __shfl_up_sync(FULL_MASK, incl, o);
            if (lane >= (u32)o) incl += t;
        }
        const u32 wtot = __shfl_sync(FULL_MASK, incl, 31);
        u32 wbase = lane == 31 && wtot ? atomicAdd(exact + j, wtot) : 0;
        wbase = __shfl_sync(FULL_MASK, wbase, 31);
        u32 pos = wbase + incl - pc;
        for (; pass; pass &= pass - 1, pos++)
            if (pos < cap) out[pos] = (u32)(w * 64 + (__ffsll((long long)pass) - 1));
    }
}

// The posting route's stage 2 (Backend::scan_postings, model/postings.rs): per plan j,
// the rows of its driver's postings (segments seg_off[j] .. seg_off[j+1]; segment s is
// post_rows[seg_start[s] ..] of value seg_val[s], its rows numbered up to the plan's
// running total seg_end[s]) and then the nstale stale rows. A posting row is taken once,
// from the smallest driver value it holds (postings::first_hit), and not at all when it
// is stale; every taken row that is live and passes the plan exactly is appended, in any
// order, to rows[j*cap ..] (count in exact[j]; the host checked the total fits in cap).
// Grid: (nplans, chunks); block 256.
extern "C" __global__ void post_compact(const u32* __restrict__ post_rows, const u32* __restrict__ seg_off,
                                        const u64* __restrict__ seg_start, const u32* __restrict__ seg_val,
                                        const u32* __restrict__ seg_end, const u32* __restrict__ stale, u32 nstale,
                                        const u64* __restrict__ live, const u32* __restrict__ plan_words,
                                        const u32* __restrict__ plan_off, const u64* __restrict__ attr_off,
                                        const u32* __restrict__ attr_vals, u32 cap, u32* __restrict__ exact,
                                        u32* __restrict__ rows) {
    const u32 j = blockIdx.x, lane = lane_id();
    const u32 sb = seg_off[j], se = seg_off[j + 1];
    const u32 len = se > sb ? seg_end[se - 1] : 0;
    const u32 total = len + nstale;
    const u32 off = plan_off[j];
    const u32* plan = plan_at(plan_words, off);
    const bool trivial = off_trivial(off);
    u32* out = rows + (u64)j * cap;
    for (u32 base = blockIdx.y * blockDim.x; base < total; base += gridDim.y * blockDim.x) {
        const u32 t = base + threadIdx.x;
        bool ok = false;
        u32 r = 0;
        if (t < len) {
            u32 lo = sb, hi = se - 1;  // first segment with seg_end > t
            while (lo < hi) {
                const u32 mid = (lo + hi) / 2;
                if (seg_end[mid] > t) hi = mid; else lo = mid + 1;
            }
            const u32 before = lo > sb ? seg_end[lo - 1] : 0;
            r = __ldg(post_rows + seg_start[lo] + (t - before));
            ok = true;
            if (nstale) {  // stale rows come from their own list below
                u32 a = 0, b = nstale;
                while (a < b) {
                    const u32 m = (a + b) / 2;
                    if (stale[m] < r) a = m + 1; else b = m;
                }
                ok = !(a < nstale && stale[a] == r);
            }
            if (ok && se - sb > 1) {  // first_hit: the smallest driver value the row holds
                u64 x = attr_off[r];
                const u64 x1 = attr_off[r + 1];
                u32 y = sb;
                while (x < x1 && y < se) {
                    const u32 a = __ldg(attr_vals + x), b = seg_val[y];
                    if (a == b) break;
                    if (a < b) x++; else y++;
                }
                ok = !(x < x1 && y < se) || seg_val[y] == seg_val[lo];
            }
        } else if (t < total) {
            r = stale[t - len];
            ok = true;
        }
        if (ok && live) ok = (live[r >> 6] >> (r & 63)) & 1ull;
        if (ok && !trivial) ok = plan_match(plan, attr_vals, attr_off, r);
        const unsigned bal = __ballot_sync(FULL_MASK, ok);
        if (!bal) continue;
        u32 at = 0;
        if (lane == 0) at = atomicAdd(exact + j, (u32)__popc(bal));
        at = __shfl_sync(FULL_MASK, at, 0);
        if (ok) {
            const u32 pos = at + __popc(bal & lanemask_lt());
            if (pos < cap) out[pos] = r;
        }
    }
}
