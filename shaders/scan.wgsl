// silica stage 3 (scan): int8 dot products over the masked rows of each probed list,
// exact filter verification, and the exact top-K0 per query.
//
// List-major: probed (query, list) pairs are grouped by list (scan_invert_*), and one
// workgroup of scan_score takes 256 rows of one list, holds their codes in registers, and
// scores them against every query of the batch that probes the list, so each list's
// codes are read once per batch however many queries probe it. Key `score_key(score)`
// of row r of pair p (rows [s, e) of its list) goes to `keys[q region + ent_off(p) +
// (r - s)]`, 0 when r is masked out or fails the exact filter.
// score = f32(i32 dot) * item_scale[r]: one IEEE multiply, as on the CPU; with l2
// (crates/core/src/model/metric.rs) score = (f32(dot) * qscale[q] - bias[r]) * item_scale[r], the
// first product exact (qscale is a power of two), so any contraction gives these bits.
//
// The top-K0 is topk.wgsl's radix select, with the histogram and emit passes here
// (scan_hist, scan_emit): entries are u32 keys and a row id is the entry's position
// in its pair plus the list's first row, so the passes read 4 bytes per entry.
//
// Item codes are re-laid on upload in blocks of 32 rows: vec4 t (codes 16t..16t+15) of
// chunk row rr sits at ((rr / 32) * D16 + t) * 32 + rr % 32, so a warp's loads coalesce.
// D16 (vec4<u32> per row) is a compile-time constant: kernels.rs substitutes it per index.

const D16: u32 = D16_VALUE;
// Rows' codes stay in registers up to this width (D <= 512); wider rows re-read memory.
const REG_D16: u32 = 32u;

struct Params {
    nq: u32,      // queries in this group
    nprobe: u32,
    q0: u32,      // first query of the group (absolute)
    stride: u32,  // key entries per query region
    mstride: u32, // mask words per query region
    row_lo: u32,  // this row chunk
    row_hi: u32,
    npairs: u32,  // B * nprobe (whole batch)
    nlist: u32,
    k: u32,       // K0
    kp: u32,      // next power of two >= K0
    l2: u32,      // metric l2: bias and qscale are read
    row_blocks: u32, // 256-row blocks of the largest list: scan_score's x size
    _p0: u32,
    _p1: u32,
    _p2: u32,
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
@group(0) @binding(11) var<storage, read_write> keys: array<u32>;
@group(0) @binding(12) var<storage, read_write> lcount: array<atomic<u32>>;
@group(0) @binding(13) var<storage, read_write> lstart: array<u32>;
@group(0) @binding(14) var<storage, read_write> plist: array<u32>;
@group(0) @binding(15) var<storage, read> ent_len: array<u32>;
@group(0) @binding(16) var<storage, read_write> state: array<u32>;
@group(0) @binding(17) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(18) var<storage, read_write> counter: array<atomic<u32>>;
@group(0) @binding(19) var<storage, read_write> slots: array<vec2<u32>>;
// The probed lists with rows in this chunk, and scan_score's indirect dispatch size.
@group(0) @binding(20) var<storage, read_write> live_lists: array<u32>;
@group(0) @binding(21) var<storage, read_write> args: array<atomic<u32>>;
// l2 only (a stand-in buffer otherwise): per chunk row bias, per query (absolute) scale.
@group(0) @binding(22) var<storage, read> bias: array<f32>;
@group(0) @binding(23) var<storage, read> qscale: array<f32>;

// ---- grouping the probed pairs by list

// lcount[l] = pairs probing l (lcount zeroed by the host).
@compute @workgroup_size(256)
fn scan_invert_count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var p = gid.x; p < P.npairs; p += nwg.x * 256u) {
        atomicAdd(&lcount[lists[p]], 1u);
    }
}

var<workgroup> part: array<u32, 256>;

// One workgroup: lstart = exclusive prefix sum of lcount; lcount is reset to 0 so that
// scan_invert_fill can use it as a cursor.
@compute @workgroup_size(256)
fn scan_invert_scan(@builtin(local_invocation_index) li: u32) {
    let per = (P.nlist + 255u) / 256u;
    let a = min(li * per, P.nlist);
    let b = min(a + per, P.nlist);
    var sum = 0u;
    for (var l = a; l < b; l++) {
        sum += atomicLoad(&lcount[l]);
    }
    part[li] = sum;
    workgroupBarrier();
    if (li == 0u) {
        var run = 0u;
        for (var i = 0u; i < 256u; i++) {
            let x = part[i];
            part[i] = run;
            run += x;
        }
    }
    workgroupBarrier();
    var run = part[li];
    for (var l = a; l < b; l++) {
        lstart[l] = run;
        run += atomicLoad(&lcount[l]);
    }
    workgroupBarrier();
    for (var l = a; l < b; l++) {
        atomicStore(&lcount[l], 0u);
    }
}

// plist[lstart[l] ..] = the pairs probing list l (any order: each pair owns its entries).
@compute @workgroup_size(256)
fn scan_invert_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var p = gid.x; p < P.npairs; p += nwg.x * 256u) {
        let l = lists[p];
        plist[lstart[l] + atomicAdd(&lcount[l], 1u)] = p;
    }
}

// One thread: indirect dispatch size (row blocks, active lists = 0, 1) for this chunk.
@compute @workgroup_size(1)
fn scan_active_init() {
    atomicStore(&args[0], P.row_blocks);
    atomicStore(&args[1], 0u);
    atomicStore(&args[2], 1u);
}

// Grid over lists: append each list that some query probes and that has rows in this
// chunk to `live_lists`, so scan_score launches no workgroup for the others.
@compute @workgroup_size(256)
fn scan_active(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var l = gid.x; l < P.nlist; l += nwg.x * 256u) {
        let s = loff[l];
        let e = loff[l + 1u];
        if (atomicLoad(&lcount[l]) != 0u && s < e && s < P.row_hi && e > P.row_lo) {
            live_lists[atomicAdd(&args[1], 1u)] = l;
        }
    }
}

// ---- scoring

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

const MASK_TERM: u32 = 0xffffffffu;
const TRIVIAL_BIT: u32 = 0x80000000u;
const ARG_MASK: u32 = 0x3fffffffu;

// Plan.matches_in for chunk row rr (global row r) under the plan record at blob[plan]
// (layout in filter.wgsl): the postfix program over a stack of booleans held as bits of
// one u32 (plans are at most 32 deep). A typed term ([MASK_TERM][m]) reads bit r of its
// exact row mask at blob[plan + m ..].
fn matches(plan: u32, rr: u32, r: u32) -> bool {
    let a0 = aoff[rr];
    let a1 = aoff[rr + 1u];
    var st = 0u;
    var sp = 0u;
    let nops = blob[plan];
    for (var i = 0u; i < nops; i++) {
        let op = blob[plan + 1u + i];
        let kind = op >> 30u;
        if (kind == 0u) {
            let t = plan + (op & ARG_MASK);
            let nb = blob[t];
            var hit = 0u;
            if (nb == MASK_TERM) {
                hit = (blob[plan + blob[t + 1u] + r / 32u] >> (r % 32u)) & 1u;
            } else {
                let ids = t + 2u + nb * blob[t + 1u];
                hit = select(0u, 1u, has_any(ids + 1u, blob[ids], a0, a1));
            }
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

// Grid (row blocks, active list) from `args`; one dispatch per row chunk and query group.
@compute @workgroup_size(256)
fn scan_score(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let l = live_lists[wid.y];
    let np_l = atomicLoad(&lcount[l]);
    let s = loff[l];
    let e = loff[l + 1u];
    let r = max(s, P.row_lo) + wid.x * 256u + li;
    if (r >= min(e, P.row_hi)) {
        return;
    }
    let rr = r - P.row_lo;
    let cb = (rr / 32u) * D16 * 32u + rr % 32u;
    var rc: array<vec4<u32>, min(D16, REG_D16)>;
    if (D16 <= REG_D16) {
        for (var t = 0u; t < D16; t++) {
            rc[t] = codes[cb + t * 32u];
        }
    }
    let sc = scale[rr];
    let first = lstart[l];
    for (var i = 0u; i < np_l; i++) {
        let p = plist[first + i];
        let q = p / P.nprobe;
        if (q < P.q0 || q >= P.q0 + P.nq) {
            continue;
        }
        let m = mask[q * P.mstride + pairs[2u * p] + r / 32u - (s / 64u) * 2u];
        var key = NO_KEY;
        if (((m >> (r % 32u)) & 1u) != 0u) {
            let po = blob[q];
            if ((po & TRIVIAL_BIT) != 0u || matches(po, rr, r)) {
                var acc = 0i;
                let qb = q * D16;
                if (D16 <= REG_D16) {
                    for (var t = 0u; t < D16; t++) {
                        acc += dot16(rc[t], qcodes[qb + t]);
                    }
                } else {
                    for (var t = 0u; t < D16; t++) {
                        acc += dot16(codes[cb + t * 32u], qcodes[qb + t]);
                    }
                }
                var score = f32(acc) * sc;
                if (P.l2 != 0u) {
                    score = (f32(acc) * qscale[q] - bias[rr]) * sc;
                }
                key = score_key(score);
            }
        }
        keys[(q - P.q0) * P.stride + pairs[2u * p + 1u] + (r - s)] = key;
    }
}

// ---- top-K0 passes over the keys (state layout and pick: topk.wgsl; key prefix helpers: common.wgsl)

var<workgroup> wh: array<atomic<u32>, 256>;

// The pair (q * nprobe + j) whose entries hold position i of query q's region: the last
// probe whose entry offset is <= i (offsets ascend with j; empty lists share offsets).
fn pair_of(q: u32, i: u32) -> u32 {
    var lo = 0u;
    var hi = P.nprobe;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (pairs[2u * (q * P.nprobe + mid) + 1u] <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return q * P.nprobe + lo;
}

// Row of position i of query q's region.
fn row_of(q: u32, i: u32) -> u32 {
    let p = pair_of(q, i);
    return loff[lists[p]] + i - pairs[2u * p + 1u];
}

// Grid (entry blocks, 1, query in group): histogram of the next digit of the entries that
// still match the query's prefix. Each thread walks many entries and adds runs of equal
// digits at once (the first digits are nearly constant: per-entry workgroup atomics on
// one bin would serialize). Rows are looked up only past the key's 32 bits (ties).
@compute @workgroup_size(256)
fn scan_hist(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let qg = wid.z;
    atomicStore(&wh[li], 0u);
    workgroupBarrier();
    let st = qg * 8u;
    if (state[st + 4u] == 0u) {
        let nb = state[st + 1u];
        let ph = state[st + 2u];
        let pl = state[st + 3u];
        let q = P.q0 + qg;
        let base = qg * P.stride;
        let n = ent_len[q];
        var cur = 0u;
        var cnt = 0u;
        for (var i = wid.x * 256u + li; i < n; i += nwg.x * 256u) {
            let key = keys[base + i];
            if (key == NO_KEY || (nb >= 32u && key != ph)) {
                continue;
            }
            var lo = 0u;
            if (nb >= 32u) {
                lo = ~row_of(q, i);
            }
            if (prefix_eq(key, lo, ph, pl, nb)) {
                let d = digit(key, lo, nb);
                if (d != cur) {
                    if (cnt != 0u) {
                        atomicAdd(&wh[cur], cnt);
                    }
                    cur = d;
                    cnt = 0u;
                }
                cnt += 1u;
            }
        }
        if (cnt != 0u) {
            atomicAdd(&wh[cur], cnt);
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&wh[li]);
    if (c != 0u) {
        atomicAdd(&hist[qg * 256u + li], c);
    }
}

// Grid (entry blocks, 1, query in group): entries at or above the threshold prefix go to
// the query's unsorted output slots, with their rows.
@compute @workgroup_size(256)
fn scan_emit(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let qg = wid.z;
    let st = qg * 8u;
    if (state[st + 5u] != 0u) {
        return;
    }
    let nb = state[st + 1u];
    let ph = state[st + 2u];
    let pl = state[st + 3u];
    let q = P.q0 + qg;
    let base = qg * P.stride;
    let n = ent_len[q];
    for (var i = wid.x * 256u + li; i < n; i += nwg.x * 256u) {
        let key = keys[base + i];
        if (key == NO_KEY) {
            continue;
        }
        var take = false;
        var row = NO_ROW;
        if (nb <= 32u || key != ph) {
            take = prefix_ge(key, 0u, ph, pl, min(nb, 32u));
        } else {
            row = row_of(q, i);
            take = prefix_ge(key, ~row, ph, pl, nb);
        }
        if (take) {
            if (row == NO_ROW) {
                row = row_of(q, i);
            }
            let slot = atomicAdd(&counter[qg], 1u);
            if (slot < P.kp) {
                slots[qg * P.kp + slot] = vec2<u32>(key, row);
            }
        }
    }
}
