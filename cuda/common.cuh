// Shared device code of silica's CUDA backend: order keys, int8 dot products, the
// interleaved code layout, filter-plan evaluation (Bloom and exact) and block-level
// radix select / bitonic sort. Included textually by every stage file (the Rust side
// splices it in place of `#include "common.cuh"`, so NVRTC needs no include path).
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short u16;

#define FULL_MASK 0xffffffffu
// Largest top-k sorted in shared memory by one block (keys of 8 bytes: 32 KiB).
#define SORT_CAP 4096

// ---------------------------------------------------------------------------------
// Order keys. fkey maps an f32 to a u32 whose unsigned order is f32::total_cmp's order.
// A candidate key is (fkey(score) << 32) | ~row: larger key = better (higher score,
// then lower row), the order every backend uses. Key 0 never occurs for a real row
// and pads buffers (it sorts last).
// ---------------------------------------------------------------------------------
__device__ __forceinline__ u32 fkey(float f) {
    u32 b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float fkey_inv(u32 k) {
    u32 b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    return __uint_as_float(b);
}
__device__ __forceinline__ u64 make_key(float score, u32 row) {
    return ((u64)fkey(score) << 32) | (u64)(~row);
}
__device__ __forceinline__ u32 key_row(u64 key) { return ~(u32)key; }
__device__ __forceinline__ float key_score(u64 key) { return fkey_inv((u32)(key >> 32)); }

// The scan/probe score: one IEEE multiply of the exact i32 dot, no contraction.
__device__ __forceinline__ float int_score(int dot, float scale) {
    return __fmul_rn(__int2float_rn(dot), scale);
}

// The stage 1-3 score of row `row` for query `q` (crates/core/src/model/metric.rs): int_score for ip /
// cosine (bias == nullptr); for l2 ((dot as f32) * qscale[q] - bias[row]) * scale, each
// operation rounded as written (qscale is a power of two, so the first product is exact).
__device__ __forceinline__ float metric_score(int dot, float scale, const float* bias, u32 row, const float* qscale, u32 q) {
    if (bias == nullptr) return int_score(dot, scale);
    return __fmul_rn(__fsub_rn(__fmul_rn(__int2float_rn(dot), __ldg(qscale + q)), __ldg(bias + row)), scale);
}

// 16 int8 lanes of a and b, accumulated into acc (4 dp4a).
__device__ __forceinline__ int dot16(uint4 a, uint4 b, int acc) {
    acc = __dp4a((int)a.x, (int)b.x, acc);
    acc = __dp4a((int)a.y, (int)b.y, acc);
    acc = __dp4a((int)a.z, (int)b.z, acc);
    acc = __dp4a((int)a.w, (int)b.w, acc);
    return acc;
}

// f16 bits -> f32 without cuda_fp16.h (NVRTC then needs no headers at all).
__device__ __forceinline__ float half_bits_to_float(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// ---------------------------------------------------------------------------------
// Interleaved item codes. Rows are grouped by 32; a row's D (padded to NC*16) int8
// codes are NC chunks of 16 bytes; chunk c of row i of group g sits at 16-byte slot
// (g*NC + c)*32 + i. A warp whose lane i reads row 32g+i loads 512 contiguous bytes
// per instruction.
// ---------------------------------------------------------------------------------
__device__ __forceinline__ const uint4* il_chunk(const uint4* codes, u32 nc, u32 row, u32 c) {
    return codes + ((u64)(row >> 5) * nc + c) * 32 + (row & 31);
}

// Exact int8 dot of one interleaved row with a dense query (nc chunks), one thread.
__device__ __forceinline__ int row_dot(const uint4* codes, u32 nc, u32 row, const uint4* q) {
    int acc = 0;
    for (u32 c = 0; c < nc; c++) acc = dot16(__ldg(il_chunk(codes, nc, row, c)), __ldg(q + c), acc);
    return acc;
}

// Bits of 64-row word w that fall inside rows [s, e).
__device__ __forceinline__ u64 range_bits(u64 w, u64 s, u64 e) {
    u64 lo = max(w * 64, s), hi = min(w * 64 + 64, e);
    if (hi <= lo) return 0;
    u64 n = hi - lo;
    u64 m = n == 64 ? ~0ull : ((1ull << n) - 1);
    return m << (lo - w * 64);
}

// ---------------------------------------------------------------------------------
// Filter plans, encoded by crates/cuda/src/plans.rs (u32 words, one record per plan):
//   [n_ops] [op_0 .. op_{n-1}]   op = kind << 30 | arg; kind 0 = Term (arg = offset of
//   the term record from the plan start), 1 = And, 2 = Or, 3 = Not.
//   term record: [nb] [k] [nb*k Bloom plane rows] [nid] [nid sorted value ids]
// n_ops = 0 passes everything. Depth <= 32 (filter::MAX_DEPTH).
// ---------------------------------------------------------------------------------
#define OP_TERM 0u
#define OP_AND 1u
#define OP_OR 2u
#define OP_NOT 3u

// AND of the k plane words of one value at word w. Dense: the loads are independent and
// issued together (no early exit, which would chain each load on the previous one).
// Sparse (whole-index passes, where most words end up 0 and enough warps are in flight to
// hide a dependent load): the first two planes, then the others only while bits survive.
// Both give the same bits.
template <bool SPARSE>
__device__ __forceinline__ u64 value_and(const u32* r, u32 k, const u64* planes, u64 words, u64 w) {
    u64 all = ~0ull;
    u32 h = 0;
    if constexpr (SPARSE) {
        if (k >= 2) {
            all = __ldg(planes + (u64)r[0] * words + w) & __ldg(planes + (u64)r[1] * words + w);
            h = 2;
        }
        for (; h < k && all; h++) all &= __ldg(planes + (u64)r[h] * words + w);
    } else {
        for (; h + 4 <= k; h += 4) {
            const u64 a0 = __ldg(planes + (u64)r[h] * words + w), a1 = __ldg(planes + (u64)r[h + 1] * words + w),
                      a2 = __ldg(planes + (u64)r[h + 2] * words + w), a3 = __ldg(planes + (u64)r[h + 3] * words + w);
            all &= a0 & a1 & a2 & a3;
        }
        for (; h < k; h++) all &= __ldg(planes + (u64)r[h] * words + w);
    }
    return all;
}

// A term record whose first word is MASK_TERM is a typed term: its second word is the
// offset (from the plan start, even) of its exact row mask, one u64 per 64-row word.
#define MASK_TERM 0xffffffffu

// A term record whose first word is COL_TERM is a typed column term evaluated here, per
// query (crates/cuda/src/plans.rs): its second word is the offset (from the plan start, even)
// of u64 data d: d[0] keys (order-preserving u64 per row, model::columns), d[1] presence
// bits, d[2] per-word (min, max) keys, d[3] N, d[4] = negate | null << 1 | nranges << 8,
// then nranges inclusive (lo, hi) key intervals. Same bits as model::columns::Column::word
// and Column::test: an absent row matches no comparison; IS NULL matches absent rows.
#define COL_TERM 0xfffffffeu

__device__ __forceinline__ bool col_hit(const u64* d, u64 k) {
    const u32 nr = (u32)(d[4] >> 8);
    bool h = false;
    for (u32 i = 0; i < nr; i++) h |= (d[5 + 2 * i] <= k) & (k <= d[6 + 2 * i]);
    return h != (bool)(d[4] & 1ull);
}

// Word w of the term's exact row mask: the word's (min, max) decides whole words before any
// key is read; otherwise only the present rows' keys are compared.
__device__ u64 col_word(const u64* d, u64 w) {
    const u64* keys = (const u64*)d[0];
    const u64* pres = (const u64*)d[1];
    const u64* wr = (const u64*)d[2];
    const u64 n = d[3];
    const u64 p = __ldg(pres + w);
    if (d[4] & 2ull) {  // IS NULL: absent rows below N
        const u64 valid = (w + 1) * 64 <= n ? ~0ull : (w * 64 >= n ? 0ull : ((1ull << (n - w * 64)) - 1));
        return ~p & valid;
    }
    if (p == 0) return 0;
    const u64 lo = __ldg(wr + 2 * w), hi = __ldg(wr + 2 * w + 1);
    const u32 nr = (u32)(d[4] >> 8);
    const bool neg = d[4] & 1ull;
    bool inside = false, apart = true;
    for (u32 i = 0; i < nr; i++) {
        const u64 a = d[5 + 2 * i], b = d[6 + 2 * i];
        inside |= a <= lo && hi <= b;
        apart &= b < lo || hi < a;
    }
    if (inside) return neg ? 0 : p;
    if (apart) return neg ? p : 0;
    u64 m = 0, rem = p;
    while (rem) {
        const int i = __ffsll((long long)rem) - 1;
        rem &= rem - 1;
        if (col_hit(d, __ldg(keys + w * 64 + i))) m |= 1ull << i;
    }
    return m;
}

__device__ __forceinline__ bool col_row(const u64* d, u64 row) {
    const bool has = (__ldg((const u64*)d[1] + (row >> 6)) >> (row & 63)) & 1ull;
    if (d[4] & 2ull) return !has;
    return has && col_hit(d, __ldg((const u64*)d[0] + row));
}

// Bloom "maybe" word w (plan::bloom_word): Term = OR over values of AND of k planes,
// NOT = all ones.
template <bool SPARSE>
__device__ u64 plan_bloom_word_t(const u32* plan, const u64* planes, u64 words, u64 w) {
    u32 nops = plan[0];
    if (nops == 0) return ~0ull;
    u64 st[32];
    int sp = 0;
    for (u32 i = 0; i < nops; i++) {
        u32 op = plan[1 + i];
        u32 kind = op >> 30;
        if (kind == OP_TERM) {
            const u32* t = plan + (op & 0x3fffffffu);
            u32 nb = t[0], k = t[1];
            if (nb == MASK_TERM) {  // a typed term: its exact mask word (8-byte aligned)
                st[sp++] = ((const u64*)(plan + k))[w];
                continue;
            }
            if (nb == COL_TERM) {  // a typed column term, evaluated on the word
                st[sp++] = col_word((const u64*)(plan + k), w);
                continue;
            }
            const u32* rows = t + 2;
            u64 any = 0;
            for (u32 v = 0; v < nb; v++) any |= value_and<SPARSE>(rows + v * k, k, planes, words, w);
            st[sp++] = any;
        } else if (kind == OP_NOT) {
            st[sp - 1] = ~0ull;
        } else {
            sp--;
            st[sp - 1] = kind == OP_AND ? (st[sp - 1] & st[sp]) : (st[sp - 1] | st[sp]);
        }
    }
    return st[0];
}
__device__ u64 plan_bloom_word(const u32* plan, const u64* planes, u64 words, u64 w) {
    return plan_bloom_word_t<false>(plan, planes, words, w);
}
__device__ u64 plan_bloom_word_sparse(const u32* plan, const u64* planes, u64 words, u64 w) {
    return plan_bloom_word_t<true>(plan, planes, words, w);
}

__device__ __forceinline__ bool plan_trivial(const u32* plan) { return plan[0] == 0; }
// Per-query plan offsets carry bit 31 when the plan is trivial (passes everything), so
// kernels can skip filter work without reading the plan.
#define PLAN_TRIVIAL_BIT 0x80000000u
__device__ __forceinline__ const u32* plan_at(const u32* words, u32 off) { return words + (off & 0x7fffffffu); }
__device__ __forceinline__ bool off_trivial(u32 off) { return (off & PLAN_TRIVIAL_BIT) != 0; }

// Exact evaluation of row `row` over its sorted value ids vals[off[row]..off[row+1])
// (plan::matches_in); a typed term reads bit `row` of its mask. The stack of booleans
// lives in the bits of one register.
__device__ __noinline__ bool plan_match(const u32* plan, const u32* vals, const u64* off, u64 row) {
    const u64 a0 = off[row], a1 = off[row + 1];
    u32 nops = plan[0];
    if (nops == 0) return true;
    u32 st = 0;
    int sp = 0;
    for (u32 i = 0; i < nops; i++) {
        u32 op = plan[1 + i];
        u32 kind = op >> 30;
        if (kind == OP_TERM) {
            const u32* t = plan + (op & 0x3fffffffu);
            u32 nb = t[0], k = t[1];
            if (nb == MASK_TERM) {
                st |= (u32)((((const u64*)(plan + k))[row >> 6] >> (row & 63)) & 1ull) << sp;
                sp++;
                continue;
            }
            if (nb == COL_TERM) {
                st |= (u32)col_row((const u64*)(plan + k), row) << sp;
                sp++;
                continue;
            }
            const u32* ids = t + 2 + nb * k;
            u32 nid = ids[0];
            ids++;
            bool hit = false;
            u64 a = a0;
            u32 j = 0;
            while (a < a1 && j < nid) {
                u32 x = __ldg(vals + a), y = ids[j];
                if (x == y) { hit = true; break; }
                if (x < y) a++; else j++;
            }
            st |= (u32)hit << sp;
            sp++;
        } else if (kind == OP_NOT) {
            st ^= 1u << (sp - 1);
        } else {
            sp--;
            u32 top = (st >> sp) & 1u, below = (st >> (sp - 1)) & 1u;
            u32 r = kind == OP_AND ? (top & below) : (top | below);
            st = (st & ~(1u << sp)) & ~(1u << (sp - 1));
            st |= r << (sp - 1);
        }
    }
    return (st & 1u) != 0;
}

// ---------------------------------------------------------------------------------
// Warp helpers.
// ---------------------------------------------------------------------------------
__device__ __forceinline__ u32 lane_id() { return threadIdx.x & 31; }
__device__ __forceinline__ u32 lanemask_lt() { return (1u << lane_id()) - 1u; }

// Warp-aggregated append: lanes with `pass` write `val` to buf[base + rank] where base
// is reserved with one atomicAdd on *count. All 32 lanes must call it (convergent).
// Slots at or past `cap` are counted but not written (overflow is detected by the caller).
template <typename T>
__device__ __forceinline__ void warp_append(bool pass, T val, u32* count, T* buf, u32 cap) {
    u32 bal = __ballot_sync(FULL_MASK, pass);
    if (bal == 0) return;
    u32 leader = __ffs(bal) - 1;
    u32 base = 0;
    if (lane_id() == leader) base = atomicAdd(count, (u32)__popc(bal));
    base = __shfl_sync(FULL_MASK, base, leader);
    if (pass) {
        u32 pos = base + __popc(bal & lanemask_lt());
        if (pos < cap) buf[pos] = val;
    }
}

// Append for lanes of a partial warp (e.g. inside a strided loop): aggregated over the
// currently active lanes, one shared-memory atomic per warp.
template <typename T>
__device__ __forceinline__ void active_append(bool pass, T val, u32* count, T* buf, u32 cap) {
    const u32 am = __activemask();
    const u32 bal = __ballot_sync(am, pass);
    if (bal == 0) return;
    const u32 leader = __ffs(bal) - 1;
    u32 base = 0;
    if (lane_id() == leader) base = atomicAdd(count, (u32)__popc(bal));
    base = __shfl_sync(am, base, leader);
    if (pass) {
        const u32 pos = base + __popc(bal & lanemask_lt());
        if (pos < cap) buf[pos] = val;
    }
}

// ---------------------------------------------------------------------------------
// Block-level radix select. Given a source of keys (src.each(f) calls f(key) for each
// key, spread over the block's threads), returns T such that exactly k keys are >= T
// when keys are distinct (at least k otherwise: T is then the k-th largest value).
// Requires 1 <= k <= number of keys. Digits of up to 8 bits, starting at the highest
// bit on which keys differ; stops as soon as the boundary bucket is taken whole.
// ---------------------------------------------------------------------------------
template <typename K>
struct SelectSmem {
    u32 hist[256];
    K and_all, or_all;
    u32 digit, above, cnt;
};

template <typename K>
__device__ __forceinline__ int top_bit(K x) {
    if (sizeof(K) == 8) return 63 - __clzll((long long)x);
    return 31 - __clz((int)x);
}

template <typename K, typename Src>
__device__ K block_kth(const Src& src, u32 k, SelectSmem<K>& sm) {
    const u32 tid = threadIdx.x;
    if (tid == 0) { sm.and_all = (K)~(K)0; sm.or_all = 0; }
    __syncthreads();
    {
        K a = (K)~(K)0, o = 0;
        src.each([&](K key) { a &= key; o |= key; });
        for (int off = 16; off > 0; off >>= 1) {
            a &= __shfl_xor_sync(FULL_MASK, a, off);
            o |= __shfl_xor_sync(FULL_MASK, o, off);
        }
        if (lane_id() == 0) { atomicAnd(&sm.and_all, a); atomicOr(&sm.or_all, o); }
    }
    __syncthreads();
    K and_all = sm.and_all, vary = sm.and_all ^ sm.or_all;
    if (vary == 0) return and_all;  // all keys equal
    int h = top_bit(vary);
    K pmask = h == (int)(sizeof(K) * 8 - 1) ? (K)0 : (K)(~(K)0) << (h + 1);
    K prefix = and_all & pmask;
    u32 need = k;
    while (h >= 0) {
        int shift = h >= 7 ? h - 7 : 0;
        u32 width = (u32)(h - shift + 1);
        u32 dmask = (1u << width) - 1u;
        for (u32 i = tid; i < 256; i += blockDim.x) sm.hist[i] = 0;
        __syncthreads();
        src.each([&](K key) {
            if ((key & pmask) == prefix) atomicAdd(&sm.hist[(u32)(key >> shift) & dmask], 1u);
        });
        __syncthreads();
        if (tid < 32) {
            // Lane i owns bins [8i, 8i+8); find the bin where the count from the top reaches need.
            u32 lane = tid, s = 0;
            for (int b = 0; b < 8; b++) s += sm.hist[lane * 8 + b];
            u32 own = s;
            for (int off = 1; off < 32; off <<= 1) {
                u32 t = __shfl_down_sync(FULL_MASK, s, off);
                if (lane + off < 32) s += t;
            }
            u32 excl = s - own;  // keys in bins of higher lanes
            if (excl < need && s >= need) {
                u32 cum = excl;
                for (int b = 7; b >= 0; b--) {
                    u32 c = sm.hist[lane * 8 + b];
                    if (cum + c >= need) { sm.digit = lane * 8 + b; sm.above = cum; sm.cnt = c; break; }
                    cum += c;
                }
            }
        }
        __syncthreads();
        u32 d = sm.digit, above = sm.above, cnt = sm.cnt;
        __syncthreads();
        need -= above;
        prefix |= (K)d << shift;
        pmask |= (K)dmask << shift;
        if (cnt == need) break;
        h = shift - 1;
    }
    return prefix;
}

// Keys from a plain array, threads strided.
template <typename K>
struct ArraySrc {
    const K* keys;
    u32 n;
    template <typename F>
    __device__ void each(F f) const {
        for (u32 i = threadIdx.x; i < n; i += blockDim.x) f(keys[i]);
    }
};

// Compare-exchange phases of the descending bitonic network in shared memory, for merge
// size `size` and distances stride0, stride0/2, .. > stop.
__device__ __forceinline__ void bitonic_smem_phases(u64* s, u32 p, u32 size, u32 stride0, u32 stop) {
    for (u32 stride = stride0; stride > stop; stride >>= 1) {
        for (u32 i = threadIdx.x; i < p / 2; i += blockDim.x) {
            u32 lo = ((i & ~(stride - 1)) << 1) | (i & (stride - 1));
            u32 hi = lo + stride;
            bool desc = (lo & size) == 0;
            u64 a = s[lo], b = s[hi];
            if ((a < b) == desc) { s[lo] = b; s[hi] = a; }
        }
        __syncthreads();
    }
}

// Bitonic sort of s[0..p) descending with E keys per thread in registers (threads
// below p/E take part, whole warps since p >= 32E): distances below E run inside a
// thread, E..16E through warp shuffles, larger ones through shared memory.
template <int E>
__device__ void bitonic_reg(u64* s, u32 p) {
    const u32 tid = threadIdx.x;
    const bool act = tid < p / E;
    const u32 e0 = tid * E;
    u64 v[E];
#pragma unroll
    for (int r = 0; r < E; r++) v[r] = act ? s[e0 + r] : 0;
    for (u32 size = 2; size <= p; size <<= 1) {
        u32 stride = size >> 1;
        if (stride >= 32 * E) {
            if (act) {
#pragma unroll
                for (int r = 0; r < E; r++) s[e0 + r] = v[r];
            }
            __syncthreads();
            bitonic_smem_phases(s, p, size, stride, 16 * E);
            if (act) {
#pragma unroll
                for (int r = 0; r < E; r++) v[r] = s[e0 + r];
            }
            __syncthreads();
            stride = 16 * E;
        }
        for (; stride >= E; stride >>= 1) {
            const u32 ld = stride / E;
#pragma unroll
            for (int r = 0; r < E; r++) {
                const u64 pv = __shfl_xor_sync(FULL_MASK, v[r], ld);
                const u32 e = e0 + r;
                const bool keep_max = ((e & stride) == 0) == ((e & size) == 0);
                v[r] = keep_max ? max(v[r], pv) : min(v[r], pv);
            }
        }
#pragma unroll
        for (int st = E / 2; st >= 1; st >>= 1) {
            if ((u32)st < size) {
#pragma unroll
                for (int r = 0; r < E; r++) {
                    if ((r & st) == 0) {
                        const bool desc = ((e0 + r) & size) == 0;
                        const u64 x = v[r], y = v[r | st];
                        if ((x < y) == desc) { v[r] = y; v[r | st] = x; }
                    }
                }
            }
        }
    }
    if (act) {
#pragma unroll
        for (int r = 0; r < E; r++) s[e0 + r] = v[r];
    }
    __syncthreads();
}

// Bitonic sort, two keys per thread (64 <= p <= 2*blockDim): distances 1..32 run in
// registers and warp shuffles, only distances >= 64 go through shared memory.
__device__ void bitonic_reg2(u64* s, u32 p) {
    const u32 tid = threadIdx.x;
    const bool act = tid < p / 2;  // whole warps, since p/2 is a multiple of 32
    const u32 e0 = 2 * tid;
    u64 v0 = act ? s[e0] : 0, v1 = act ? s[e0 + 1] : 0;
    for (u32 size = 2; size <= p; size <<= 1) {
        u32 stride = size >> 1;
        if (stride >= 64) {
            if (act) { s[e0] = v0; s[e0 + 1] = v1; }
            __syncthreads();
            bitonic_smem_phases(s, p, size, stride, 32);
            if (act) { v0 = s[e0]; v1 = s[e0 + 1]; }
            stride = 32;
        }
        const bool desc = (e0 & size) == 0;
        for (; stride >= 2; stride >>= 1) {
            const u64 p0 = __shfl_xor_sync(FULL_MASK, v0, stride >> 1);
            const u64 p1 = __shfl_xor_sync(FULL_MASK, v1, stride >> 1);
            const bool keep_max = ((e0 & stride) == 0) == desc;
            v0 = keep_max ? max(v0, p0) : min(v0, p0);
            v1 = keep_max ? max(v1, p1) : min(v1, p1);
        }
        const u64 hi = max(v0, v1), lo = min(v0, v1);
        v0 = desc ? hi : lo;
        v1 = desc ? lo : hi;
    }
    if (act) { s[e0] = v0; s[e0 + 1] = v1; }
    __syncthreads();
}

// Bitonic sort of s[0..p) descending (p a power of two), whole block: in registers with
// 2, 4 or 8 keys per thread when 64 <= p <= 8*blockDim, else in shared memory.
__device__ void block_bitonic_desc(u64* s, u32 p) {
    const u32 bd = blockDim.x;
    if (p >= 64 && p <= 2 * bd) bitonic_reg2(s, p);
    else if (p >= 128 && p <= 4 * bd) bitonic_reg<4>(s, p);
    else if (p >= 256 && p <= 8 * bd) bitonic_reg<8>(s, p);
    else
        for (u32 size = 2; size <= p; size <<= 1) bitonic_smem_phases(s, p, size, size >> 1, 0);
}

// Exclusive prefix sums of three u32 sequences at once over i < n: value(i, a, b, c);
// oK[i] = sum of the K-th values before i, oK[n] = total. Each thread takes a contiguous
// run of items, so one block-wide scan suffices (two barriers).
template <typename F>
__device__ void block_scan3(u32 n, F value, u32* o0, u32* o1, u32* o2) {
    __shared__ u32 wsum[3][32];
    const u32 per = (n + blockDim.x - 1) / blockDim.x;
    const u32 i0 = min(n, threadIdx.x * per), i1 = min(n, i0 + per);
    u32 s[3] = {0, 0, 0};
    for (u32 i = i0; i < i1; i++) {
        u32 a, b, c;
        value(i, a, b, c);
        s[0] += a; s[1] += b; s[2] += c;
    }
    u32 x[3] = {s[0], s[1], s[2]};
    const u32 lane = lane_id(), warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int k = 0; k < 3; k++)
        for (int o = 1; o < 32; o <<= 1) {
            u32 t = __shfl_up_sync(FULL_MASK, x[k], o);
            if (lane >= (u32)o) x[k] += t;
        }
    if (lane == 31) { wsum[0][warp] = x[0]; wsum[1][warp] = x[1]; wsum[2][warp] = x[2]; }
    __syncthreads();
    if (threadIdx.x < 32) {
#pragma unroll
        for (int k = 0; k < 3; k++) {
            u32 w = lane < nwarps ? wsum[k][lane] : 0;
            for (int o = 1; o < 32; o <<= 1) {
                u32 t = __shfl_up_sync(FULL_MASK, w, o);
                if (lane >= (u32)o) w += t;
            }
            wsum[k][lane] = w;  // inclusive over warps; lanes >= nwarps hold the total
        }
    }
    __syncthreads();
    u32 base[3];
#pragma unroll
    for (int k = 0; k < 3; k++) base[k] = (warp ? wsum[k][warp - 1] : 0) + x[k] - s[k];
    for (u32 i = i0; i < i1; i++) {
        u32 a, b, c;
        value(i, a, b, c);
        o0[i] = base[0]; o1[i] = base[1]; o2[i] = base[2];
        base[0] += a; base[1] += b; base[2] += c;
    }
    if (threadIdx.x == 0) { o0[n] = wsum[0][31]; o1[n] = wsum[1][31]; o2[n] = wsum[2][31]; }
    __syncthreads();
}

__device__ __forceinline__ u32 next_pow2(u32 x) {
    u32 p = 1;
    while (p < x) p <<= 1;
    return p;
}

// Exclusive prefix sum over i < n of value(i) (u32): out[i] = sum of values before i,
// out[n] = total. Whole block; blockDim a multiple of 32 (at most 1024).
template <typename F>
__device__ void block_scan_excl(u32 n, F value, u32* out) {
    __shared__ u32 warp_sums[32];
    __shared__ u32 carry;
    if (threadIdx.x == 0) carry = 0;
    __syncthreads();
    for (u32 base = 0; base < n; base += blockDim.x) {
        u32 i = base + threadIdx.x;
        u32 v = i < n ? value(i) : 0;
        u32 x = v;
        for (int o = 1; o < 32; o <<= 1) {
            u32 t = __shfl_up_sync(FULL_MASK, x, o);
            if (lane_id() >= (u32)o) x += t;
        }
        if (lane_id() == 31) warp_sums[threadIdx.x >> 5] = x;
        __syncthreads();
        if (threadIdx.x < 32) {
            u32 w = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : 0;
            for (int o = 1; o < 32; o <<= 1) {
                u32 t = __shfl_up_sync(FULL_MASK, w, o);
                if (lane_id() >= (u32)o) w += t;
            }
            warp_sums[threadIdx.x] = w;  // inclusive over warps
        }
        __syncthreads();
        u32 before = (threadIdx.x >> 5) ? warp_sums[(threadIdx.x >> 5) - 1] : 0;
        u32 c = carry;
        if (i < n) out[i] = c + before + x - v;
        __syncthreads();
        if (threadIdx.x == blockDim.x - 1) carry = c + before + x;
        __syncthreads();
    }
    if (threadIdx.x == 0) out[n] = carry;
    __syncthreads();
}

// ---------------------------------------------------------------------------------
// Programmatic dependent launch (sm_90): a kernel launched with programmatic stream
// serialization may start while its predecessor runs; pdl_wait() blocks until the
// predecessor has completed and its writes are visible (a no-op for normal launches).
// pdl_trigger() lets the successor start launching early (only in fully resident grids).
// ---------------------------------------------------------------------------------
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// ---------------------------------------------------------------------------------
// Asynchronous global -> shared copies (cp.async, sm_80+): each thread copies and later
// reads back only its own slots, so a wait_group (no barrier) makes them visible.
// ---------------------------------------------------------------------------------
__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 s;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(s) : "l"(p));
    return s;
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
