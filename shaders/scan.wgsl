// silica stage 3 (scan): int8 dot products over the masked rows of each probed list,
// with exact filter verification; topk.wgsl then keeps the best K0 per query.
//
// Grid (row blocks, probe j, query q), one dispatch per row chunk (rows [row_lo,
// row_hi)); entry `ent_off(p) + (r - s)` of the query's region gets (score key, r) for
// every row r of list rows [s, e) in this chunk, key 0 when r is masked out or fails the
// exact filter. score = f32(i32 dot) * item_scale[r] (one IEEE multiply, as on the CPU).
//
// Item codes are re-laid on upload in blocks of 32 rows: vec4 t (codes 16t..16t+15) of
// chunk row rr sits at ((rr / 32) * d16 + t) * 32 + rr % 32, so a warp's loads coalesce.

struct Params {
    nq: u32,      // queries in this group
    nprobe: u32,
    d16: u32,
    q0: u32,      // first query of the group (absolute)
    stride: u32,  // entries per query region
    mstride: u32, // mask words per query region
    row_lo: u32,
    row_hi: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> qcodes: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> lists: array<u32>;
@group(0) @binding(3) var<storage, read> loff: array<u32>;
@group(0) @binding(4) var<storage, read> pairs: array<u32>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;
@group(0) @binding(6) var<storage, read> blob: array<u32>;
@group(0) @binding(7) var<storage, read> codes: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> scale: array<f32>;
@group(0) @binding(9) var<storage, read> aoff: array<u32>;
@group(0) @binding(10) var<storage, read> avals: array<u32>;
@group(0) @binding(11) var<storage, read_write> entries: array<vec2<u32>>;

const MAX_D16: u32 = 128u;
var<workgroup> qv: array<vec4<u32>, MAX_D16>;

// Does chunk row rr (sorted value ids avals[aoff[rr] .. aoff[rr+1]]) hold any of the
// term's sorted value ids? A merge of two sorted lists.
fn has_any(ids: u32, nids: u32, a0: u32, a1: u32) -> bool {
    var i = 0u;
    var j = a0;
    while (i < nids && j < a1) {
        let x = blob[ids + i];
        let y = avals[j];
        if (x == y) {
            return true;
        }
        if (x < y) {
            i += 1u;
        } else {
            j += 1u;
        }
    }
    return false;
}

// Plan.matches: the postfix program over a stack of booleans held as bits of one u32
// (plans are at most 32 deep).
fn matches(ops_off: u32, ops_len: u32, rr: u32) -> bool {
    let a0 = aoff[rr];
    let a1 = aoff[rr + 1u];
    var st = 0u;
    var sp = 0u;
    for (var i = 0u; i < ops_len; i++) {
        let op = blob[ops_off + i];
        let kind = op & 3u;
        if (kind == 0u) {
            let t = op >> 2u;
            let hit = select(0u, 1u, has_any(blob[t], blob[t + 1u], a0, a1));
            st = (st & ~(1u << sp)) | (hit << sp);
            sp += 1u;
        } else if (kind == 1u) {
            sp -= 1u;
            let b = (st >> sp) & 1u;
            st &= ~((1u - b) << (sp - 1u));
        } else if (kind == 2u) {
            sp -= 1u;
            st |= ((st >> sp) & 1u) << (sp - 1u);
        } else {
            st ^= 1u << (sp - 1u);
        }
    }
    return (st & 1u) != 0u;
}

@compute @workgroup_size(256)
fn scan_score(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let qg = wid.z;
    let q = P.q0 + qg;
    for (var t = li; t < P.d16; t += 256u) {
        qv[t] = qcodes[q * P.d16 + t];
    }
    workgroupBarrier();
    let p = q * P.nprobe + wid.y;
    let l = lists[p];
    let s = loff[l];
    let e = loff[l + 1u];
    let lo = max(s, P.row_lo);
    let hi = min(e, P.row_hi);
    let mbase = q * P.mstride + pairs[2u * p];
    let w0 = (s / 64u) * 2u;
    let ebase = qg * P.stride + pairs[2u * p + 1u];
    let ops_off = blob[2u * q];
    let ops_len = blob[2u * q + 1u];
    for (var r = lo + wid.x * 256u + li; r < hi; r += nwg.x * 256u) {
        let m = mask[mbase + r / 32u - w0];
        var key = NO_KEY;
        if (((m >> (r % 32u)) & 1u) != 0u) {
            let rr = r - P.row_lo;
            if (ops_len == 0u || matches(ops_off, ops_len, rr)) {
                let cb = (rr / 32u) * P.d16 * 32u + rr % 32u;
                var acc = 0i;
                for (var t = 0u; t < P.d16; t++) {
                    acc += dot16(codes[cb + t * 32u], qv[t]);
                }
                key = score_key(f32(acc) * scale[rr]);
            }
        }
        entries[ebase + (r - s)] = vec2<u32>(key, r);
    }
}
