// silica serve: in-place updates of a resident index (not a pipeline stage). A new snapshot
// of a chunk's Bloom planes or attribute values is the old buffer copied on the device plus
// the u32 words that changed, so searches still running on the old snapshot never see a
// half-written update.
struct Params {
    n: u32,  // words to write
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> val: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;

// dst[idx[i]] = val[i] (indices distinct). Grid-stride.
@compute @workgroup_size(256)
fn scatter_u32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < P.n; i += nwg.x * 256u) {
        dst[idx[i]] = val[i];
    }
}
