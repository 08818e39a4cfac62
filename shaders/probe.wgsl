// silica stage 1 (probe): int8 centroid scores, one (score key, list id) entry per
// (query, list); topk.wgsl then keeps the nprobe best per query (score desc, list asc).
// score = f32(i32 dot) * centroid_scale[l]: one IEEE multiply, as on the CPU; with l2
// (crates/core/src/model/metric.rs) score = (f32(dot) * qscale[q] - cbias[l]) * centroid_scale[l],
// the first product exact (qscale is a power of two), so any contraction gives these bits.

struct Params {
    nq: u32,    // queries in this group
    nlist: u32, // L (entries per query region)
    d16: u32,   // vec4<u32> (16 int8 codes) per row
    q0: u32,    // first query of the group in `qcodes`
    l2: u32,    // metric l2: cbias and qscale are read
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> qcodes: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ccodes: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> cscale: array<f32>;
@group(0) @binding(4) var<storage, read_write> entries: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> cbias: array<f32>;
@group(0) @binding(6) var<storage, read> qscale: array<f32>;

const MAX_D16: u32 = 128u;
var<workgroup> qv: array<vec4<u32>, MAX_D16>;

@compute @workgroup_size(256)
fn probe_scores(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = wid.y;
    for (var t = li; t < P.d16; t += 256u) {
        qv[t] = qcodes[(P.q0 + q) * P.d16 + t];
    }
    workgroupBarrier();
    for (var l = wid.x * 256u + li; l < P.nlist; l += nwg.x * 256u) {
        var acc = 0i;
        for (var t = 0u; t < P.d16; t++) {
            acc += dot16(ccodes[l * P.d16 + t], qv[t]);
        }
        var s = f32(acc) * cscale[l];
        if (P.l2 != 0u) {
            s = (f32(acc) * qscale[P.q0 + q] - cbias[l]) * cscale[l];
        }
        entries[q * P.nlist + l] = vec2<u32>(score_key(s), l);
    }
}
