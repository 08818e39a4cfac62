// silica stage 4 (rerank): re-score the K0 candidates of each query in place.
// * rerank_scale:  score *= query_scale (mode `none`; exact, as on the CPU); with `l2`
//                  score = score * 2 - qscale[q], qscale then holding ‖q‖² (exact product);
// * rerank_refine: exact f32 inner product of the f32 query and the f16 embedding,
//                  summed in the CPU's order (8 running sums, then the tail); with `l2`
//                  the negated squared distance -Σ (q - e)², in the same order;
// * rerank_model:  the multi-task MLP of crates/core/src/rerank.rs: dense + ReLU layers, sigmoid task
//                  heads, composite = sum_t w_t p_t.
// Refine and model run once per row chunk (rows [row_lo, row_hi)); each candidate is
// re-scored by the chunk that holds its row. Float results match the CPU within
// rounding (the conformance suite states the tolerance), not bit for bit.

struct Params {
    nq: u32,
    k: u32,        // candidates stride per query
    d: u32,
    d2: u32,       // u32 words (f16 pairs) per embedding row
    f: u32,        // features per row (0: none stored)
    row_lo: u32,
    row_hi: u32,
    nlayers: u32,  // hidden layers (the task heads follow them in `layers`)
    tasks: u32,
    in_dim: u32,   // 2D + F
    wmax: u32,     // widest hidden layer
    sstride: u32,  // scratch floats per candidate
    tw_off: u32,   // task weights offset in `weights`
    has_feats: u32,
    l2: u32,       // metric l2 (model::metric)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> qscale: array<f32>;
@group(0) @binding(2) var<storage, read> qf: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read> counts: array<u32>;
@group(0) @binding(6) var<storage, read> emb: array<u32>;
@group(0) @binding(7) var<storage, read> feats: array<f32>;
@group(0) @binding(8) var<storage, read> weights: array<f32>;
// Per layer (hidden layers, then the heads): inputs, outputs, weight offset, bias offset.
@group(0) @binding(9) var<storage, read> layers: array<u32>;
@group(0) @binding(10) var<storage, read_write> scratch: array<f32>;

// IEEE half -> f32, exact, in integer arithmetic (unpack2x16float needs an optional
// capability on some backends).
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        let v = f32(m) * 5.9604644775390625e-8; // m * 2^-24: zero or subnormal
        return select(v, -v, sign != 0u);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// Element i of chunk row rr (f16 pairs, element 2j in the low half of word j).
fn emb_at(rr: u32, i: u32) -> f32 {
    let w = emb[rr * P.d2 + i / 2u];
    return half_to_f32(select(w & 0xffffu, w >> 16u, (i & 1u) == 1u));
}

@compute @workgroup_size(256)
fn rerank_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = P.nq * P.k;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let q = t / P.k;
        if (t % P.k < counts[q]) {
            if (P.l2 != 0u) {
                scores[t] = scores[t] * 2.0 - qscale[q];
            } else {
                scores[t] = scores[t] * qscale[q];
            }
        }
    }
}

// One refine term: q * e, or (q - e)² under l2.
fn term(q: f32, e: f32) -> f32 {
    if (P.l2 != 0u) {
        let t = q - e;
        return t * t;
    }
    return q * e;
}

@compute @workgroup_size(256)
fn rerank_refine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = P.nq * P.k;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let q = t / P.k;
        let r = rows[t];
        if (t % P.k >= counts[q] || r < P.row_lo || r >= P.row_hi) {
            continue;
        }
        let rr = r - P.row_lo;
        var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let chunks = P.d / 8u;
        for (var c = 0u; c < chunks; c++) {
            for (var i = 0u; i < 8u; i++) {
                let x = c * 8u + i;
                acc[i] += term(qf[q * P.d + x], emb_at(rr, x));
            }
        }
        var s = 0.0;
        for (var i = 0u; i < 8u; i++) {
            s += acc[i];
        }
        for (var x = chunks * 8u; x < P.d; x++) {
            s += term(qf[q * P.d + x], emb_at(rr, x));
        }
        scores[t] = select(s, -s, P.l2 != 0u);
    }
}

@compute @workgroup_size(64)
fn rerank_model(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = P.nq * P.k;
    for (var t = gid.x; t < total; t += nwg.x * 64u) {
        let q = t / P.k;
        let r = rows[t];
        if (t % P.k >= counts[q] || r < P.row_lo || r >= P.row_hi) {
            continue;
        }
        let rr = r - P.row_lo;
        // x = [query (D) | embedding (D) | features (F)] at the start of the scratch row.
        let sb = t * P.sstride;
        for (var i = 0u; i < P.d; i++) {
            scratch[sb + i] = qf[q * P.d + i];
            scratch[sb + P.d + i] = emb_at(rr, i);
        }
        for (var i = 0u; i < P.f; i++) {
            var v = 0.0;
            if (P.has_feats != 0u) {
                v = feats[rr * P.f + i];
            }
            scratch[sb + 2u * P.d + i] = v;
        }
        var src = sb;
        var dst = sb + P.in_dim;
        for (var layer = 0u; layer < P.nlayers; layer++) {
            let n_in = layers[4u * layer];
            let n_out = layers[4u * layer + 1u];
            let wo = layers[4u * layer + 2u];
            let bo = layers[4u * layer + 3u];
            for (var o = 0u; o < n_out; o++) {
                var acc = weights[bo + o];
                for (var i = 0u; i < n_in; i++) {
                    acc += weights[wo + o * n_in + i] * scratch[src + i];
                }
                scratch[dst + o] = max(acc, 0.0);
            }
            src = dst;
            dst = select(sb + P.in_dim, sb + P.in_dim + P.wmax, dst == sb + P.in_dim);
        }
        let h = P.nlayers;
        let n_in = layers[4u * h];
        let wo = layers[4u * h + 2u];
        let bo = layers[4u * h + 3u];
        var composite = 0.0;
        for (var o = 0u; o < P.tasks; o++) {
            var acc = weights[bo + o];
            for (var i = 0u; i < n_in; i++) {
                acc += weights[wo + o * n_in + i] * scratch[src + i];
            }
            let p = 1.0 / (1.0 + exp(-acc));
            composite += weights[P.tw_off + o] * p;
        }
        scores[t] = composite;
    }
}
