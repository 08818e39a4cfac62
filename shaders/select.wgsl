// silica stage 5 (select): the (re-)scored candidates [B, K0] become top-K entries
// (score key, row) for topk.wgsl, which keeps the K best (score desc, row asc).

struct Params {
    nq: u32,
    k: u32, // candidates stride per query (K0)
    q0: u32, // first query of this group
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> entries: array<vec2<u32>>;

@compute @workgroup_size(256)
fn select_gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = P.nq * P.k;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let q = P.q0 + t / P.k;
        let src = P.q0 * P.k + t;
        if (t % P.k < counts[q]) {
            entries[t] = vec2<u32>(score_key(scores[src]), rows[src]);
        } else {
            entries[t] = vec2<u32>(NO_KEY, NO_ROW);
        }
    }
}
