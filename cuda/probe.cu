// Stage 1, probe: int8 centroid scores -> order keys [B, L]. The per-query top-nprobe
// is taken by select.cu's topk_select over these keys.
#include "common.cuh"

#define PROBE_QB 8  // queries per block (their codes are staged in shared memory)

// keys[b*L + l] = make_key((i32 dot(q_b, c_l)) as f32 * cscale[l], l); for l2 (cbias not
// null) the metric_score of common.cuh with the centroid biases and query scales.
// Grid: (ceil(L/128), ceil(B/PROBE_QB)); block 128; one thread per centroid.
// cent: [L, nc*16] int8 rows; q: [B, nc*16] int8 rows. Shared memory: PROBE_QB*nc*16 bytes.
extern "C" __global__ void probe_scores(const uint4* __restrict__ cent, const float* __restrict__ cscale,
                                        const uint4* __restrict__ q, u32 nc, u32 L, u32 B,
                                        u64* __restrict__ keys, const float* __restrict__ cbias,
                                        const float* __restrict__ qscale) {
    extern __shared__ uint4 sq[];  // [PROBE_QB][nc]
    u32 b0 = blockIdx.y * PROBE_QB;
    u32 nb = min((u32)PROBE_QB, B - b0);
    for (u32 i = threadIdx.x; i < nb * nc; i += blockDim.x) sq[i] = q[(u64)b0 * nc + i];
    __syncthreads();
    u32 l = blockIdx.x * blockDim.x + threadIdx.x;
    if (l >= L) return;
    int acc[PROBE_QB];
#pragma unroll
    for (int j = 0; j < PROBE_QB; j++) acc[j] = 0;
    for (u32 c = 0; c < nc; c++) {
        uint4 v = __ldg(cent + (u64)l * nc + c);
#pragma unroll
        for (int j = 0; j < PROBE_QB; j++)
            if ((u32)j < nb) acc[j] = dot16(v, sq[j * nc + c], acc[j]);
    }
    float s = cscale[l];
#pragma unroll
    for (int j = 0; j < PROBE_QB; j++)
        if ((u32)j < nb) keys[(u64)(b0 + j) * L + l] = make_key(metric_score(acc[j], s, cbias, l, qscale, b0 + j), l);
}
