// Queries read from, and results written to, device memory the caller owns (the zero-copy
// path of the Python package: torch CUDA tensors in and out through DLPack).
//
// `query_prepare` does on the device what graph::prepare_queries does on the host, in the
// host's element order with IEEE round-to-nearest intrinsics (no contraction), so a query
// gets the same codes, scale and f32 row (bit for bit) wherever it was prepared:
// validate (first non-finite column, else an f64 sum of squares beyond f32::MAX),
// normalize (cosine), quantize (absmax/127, round half to even; l2: a power-of-two scale).
// One thread per query: B threads of D steps each (microseconds at B = 256, D = 128).
#include "common.cuh"

// dtype: 0 f32, 1 f16, 2 bf16 (the source's element type; every one converts exactly).
__device__ __forceinline__ float query_elem(const void* src, u32 dtype, u64 i) {
    if (dtype == 1) return half_bits_to_float(((const u16*)src)[i]);
    if (dtype == 2) return __uint_as_float(((u32)((const u16*)src)[i]) << 16);
    return ((const float*)src)[i];
}

// model::metric::pow2_at_least: the least power of two >= t (1 for t <= 0).
__device__ __forceinline__ float query_pow2_at_least(float t) {
    if (t <= 0.0f) return 1.0f;
    const u32 b = __float_as_uint(t), e = b >> 23, m = b & 0x7fffffu;
    if (e == 0) return 1.17549435e-38f;  // f32::MIN_POSITIVE
    if (m == 0) return t;
    return __uint_as_float((e + 1) << 23);
}

// model::quantize::round_half_even_127 (the 1.5 * 2^23 trick, same bits).
__device__ __forceinline__ float query_round127(float y) {
    y = fminf(fmaxf(y, -127.0f), 127.0f);
    return __fsub_rn(__fadd_rn(y, 12582912.0f), 12582912.0f);
}

// src: [*, D] rows of `dtype`; rows: [B] source row of each query (null: query i is row i).
// metric: 0 ip, 1 cosine, 2 l2. Writes codes [B, nc*16] (zero padded), scale [B],
// f32 [B, D] (normalized for cosine), sqnorm [B] (‖q‖², summed in order), and into
// *fault the least (row << 32 | col) of a refused row (col 0xffffffff: its norm), which
// the caller sets to all ones first.
extern "C" __global__ void query_prepare(const void* __restrict__ src, u32 dtype, const u32* __restrict__ rows,
                                         u32 B, u32 D, u32 nc, u32 metric, unsigned char* __restrict__ codes,
                                         float* __restrict__ scale, float* __restrict__ qf, float* __restrict__ sqnorm,
                                         u64* __restrict__ fault) {
    const u32 b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const u64 row = rows ? rows[b] : b;
    const u64 base = row * D;
    float* out = qf + (u64)b * D;
    // Validation (model::finite::check_vector for a query).
    double sq = 0.0;
    for (u32 j = 0; j < D; j++) {
        const float x = query_elem(src, dtype, base + j);
        if ((__float_as_uint(x) & 0x7f800000u) == 0x7f800000u) {  // NaN or Inf
            atomicMin(fault, (row << 32) | j);
            return;
        }
        sq = __dadd_rn(sq, __dmul_rn((double)x, (double)x));
    }
    if (sq > 3.4028234663852886e38) {
        atomicMin(fault, (row << 32) | 0xffffffffull);
        return;
    }
    float n = 1.0f;
    if (metric == 1) {
        float s = 0.0f;
        for (u32 j = 0; j < D; j++) {
            const float x = query_elem(src, dtype, base + j);
            s = __fadd_rn(s, __fmul_rn(x, x));
        }
        n = __fsqrt_rn(s);
    }
    float absmax = 0.0f, s2 = 0.0f;
    for (u32 j = 0; j < D; j++) {
        float x = query_elem(src, dtype, base + j);
        if (metric == 1 && n > 0.0f) x = __fdiv_rn(x, n);
        out[j] = x;
        absmax = fmaxf(absmax, fabsf(x));
        s2 = __fadd_rn(s2, __fmul_rn(x, x));
    }
    sqnorm[b] = s2;
    float sc;
    if (metric == 2) {
        sc = query_pow2_at_least(__fdiv_rn(absmax, 127.0f));
    } else {
        sc = absmax == 0.0f ? 0.0f : __fdiv_rn(absmax, 127.0f);
    }
    scale[b] = sc;
    unsigned char* c = codes + (u64)b * nc * 16;
    for (u32 j = 0; j < nc * 16; j++) {
        signed char v = 0;
        if (j < D && sc != 0.0f) v = (signed char)(int)query_round127(__fdiv_rn(out[j], sc));
        c[j] = (unsigned char)v;
    }
}

// Final candidates [b, k] (sorted rows, scores, counts) of queries `which` of a batch into
// the caller's outputs [B, k]: scores f32 and rows i64 as source rows (items.source_rows),
// -inf / -1 past each count.
extern "C" __global__ void query_results(const u32* __restrict__ rows, const float* __restrict__ scores,
                                         const u32* __restrict__ counts, u32 k, u32 b, const u32* __restrict__ which,
                                         const u64* __restrict__ source_rows, float* __restrict__ out_scores,
                                         long long* __restrict__ out_rows) {
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (u64)b * k) return;
    const u32 j = (u32)(i / k), t = (u32)(i % k);
    const u64 dst = (u64)which[j] * k + t;
    if (t < counts[j]) {
        out_rows[dst] = (long long)source_rows[rows[i]];
        out_scores[dst] = scores[i];
    } else {
        out_rows[dst] = -1;
        out_scores[dst] = __uint_as_float(0xff800000u);
    }
}
