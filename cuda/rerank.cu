// Stage 4, rerank: re-score the K0 candidates of each query in place (not re-sorted;
// stage 5 sorts). Float math: compared with the CPU within a tolerance.
#include "common.cuh"

// `none`: score *= q_scale[b] (one IEEE multiply, bit-identical to the CPU); with l2,
// qscale holds ‖q‖² and score = score * 2 - ‖q‖² (model::metric::none_score).
extern "C" __global__ void rerank_scale(float* __restrict__ scores, const u32* __restrict__ counts,
                                        const float* __restrict__ qscale, u32 k, u32 B, u32 l2) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (u64)k * B) return;
    u32 b = (u32)(i / k), j = (u32)(i % k);
    if (j < counts[b]) scores[i] = l2 ? __fsub_rn(__fmul_rn(scores[i], 2.0f), qscale[b]) : __fmul_rn(scores[i], qscale[b]);
}

// One refine term: q * e, or (q - e)² under l2 (the score is then negated).
__device__ __forceinline__ float refine_term(float q, float e, u32 l2) {
    if (l2) {
        const float t = q - e;
        return t * t;
    }
    return q * e;
}

// `refine`: score = q_f32 . embedding_f16 (gathered), one warp per candidate; for
// D <= 128 (D % 4 == 0) a warp gathers 4 candidates' rows at once (4 loads in flight
// per lane). q: [B, D] f32; emb: [N, D] f16 bits. Grid-stride over B*k candidates.
extern "C" __global__ void rerank_refine(float* __restrict__ scores, const u32* __restrict__ rows,
                                         const u32* __restrict__ counts, const float* __restrict__ q,
                                         const u16* __restrict__ emb, u32 D, u32 k, u32 B, u32 l2) {
    const u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const u64 nwarps = ((u64)gridDim.x * blockDim.x) >> 5;
    const u64 total = (u64)k * B;
    const u32 lane = lane_id();
    if ((D & 3) == 0 && D <= 128) {
        for (u64 i0 = warp * 4; i0 < total; i0 += nwarps * 4) {
            uint2 h[4];
            float4 x[4];
            bool ok[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const u64 i = i0 + u;
                ok[u] = i < total && (u32)(i % k) < counts[i / k];
                h[u] = make_uint2(0, 0);
                x[u] = make_float4(0, 0, 0, 0);
                const u32 d = lane * 4;
                if (ok[u] && d < D) {
                    h[u] = __ldg((const uint2*)(emb + (u64)rows[i] * D + d));
                    x[u] = __ldg((const float4*)(q + (i / k) * D + d));
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                float acc = refine_term(x[u].x, half_bits_to_float((u16)(h[u].x & 0xffff)), l2) +
                            refine_term(x[u].y, half_bits_to_float((u16)(h[u].x >> 16)), l2) +
                            refine_term(x[u].z, half_bits_to_float((u16)(h[u].y & 0xffff)), l2) +
                            refine_term(x[u].w, half_bits_to_float((u16)(h[u].y >> 16)), l2);
                for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
                if (lane == 0 && ok[u]) scores[i0 + u] = l2 ? -acc : acc;
            }
        }
        return;
    }
    for (u64 i = warp; i < total; i += nwarps) {
        u32 b = (u32)(i / k), j = (u32)(i % k);
        if (j >= counts[b]) continue;  // warp-uniform
        const u16* e = emb + (u64)rows[i] * D;
        const float* qq = q + (u64)b * D;
        float acc = 0.0f;
        for (u32 d = lane; d < D; d += 32) acc += refine_term(qq[d], half_bits_to_float(e[d]), l2);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
        if (lane == 0) scores[i] = l2 ? -acc : acc;
    }
}

// `model`: multi-task MLP (rerank.rs) per candidate, one warp each. Input x = [q (D) |
// embedding (D) | features (F)]; layers: desc[4*i..] = (in, out, weight offset, bias
// offset) into w (f32), ReLU after the nl-1 hidden layers, then the heads (sigmoid),
// composite = sum_t tw[t] * p_t. Dynamic shared memory: 2 * width floats per warp.
extern "C" __global__ void rerank_model(float* __restrict__ scores, const u32* __restrict__ rows,
                                        const u32* __restrict__ counts, const float* __restrict__ q,
                                        const u16* __restrict__ emb, const float* __restrict__ feats, u32 D, u32 F,
                                        const u32* __restrict__ desc, u32 nl, const float* __restrict__ w,
                                        const float* __restrict__ tw, u32 width, u32 k, u32 B) {
    extern __shared__ float act[];
    float* x = act + (threadIdx.x >> 5) * 2 * width;
    float* y = x + width;
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 nwarps = ((u64)gridDim.x * blockDim.x) >> 5;
    for (u64 i = warp; i < (u64)k * B; i += nwarps) {
        u32 b = (u32)(i / k), j = (u32)(i % k);
        if (j >= counts[b]) continue;  // warp-uniform
        u64 r = rows[i];
        for (u32 d = lane_id(); d < D; d += 32) {
            x[d] = q[(u64)b * D + d];
            x[D + d] = half_bits_to_float(emb[r * D + d]);
        }
        for (u32 f = lane_id(); f < F; f += 32) x[2 * D + f] = feats[r * F + f];
        __syncwarp();
        float composite = 0.0f;
        for (u32 li = 0; li < nl; li++) {
            u32 in = desc[4 * li], out = desc[4 * li + 1];
            const float* W = w + desc[4 * li + 2];
            const float* bias = w + desc[4 * li + 3];
            bool head = li + 1 == nl;
            for (u32 o = 0; o < out; o++) {
                float acc = 0.0f;
                for (u32 t = lane_id(); t < in; t += 32) acc += W[(u64)o * in + t] * x[t];
                for (int s = 16; s > 0; s >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, s);
                acc += bias[o];
                if (head) composite += tw[o] * (1.0f / (1.0f + expf(-acc)));
                else if (lane_id() == 0) y[o] = fmaxf(acc, 0.0f);
            }
            __syncwarp();
            float* tmp = x; x = y; y = tmp;
        }
        if (lane_id() == 0) scores[i] = composite;
        // Restore x to the first buffer for the next candidate.
        x = act + (threadIdx.x >> 5) * 2 * width;
        y = x + width;
        __syncwarp();
    }
}
