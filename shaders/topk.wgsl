// silica: exact top-K selection per query, shared by stage 1 (probe), 3 (scan) and 5 (select).
//
// Input: per query q a region `entries[q*stride .. q*stride + len(q)]` of (key, id) pairs,
// key = score_key(score) (0 = no entry). Order: key desc, then id asc, i.e. descending
// by the 64-bit composite `key << 32 | ~id` (unique per entry, so the K best are exact).
//
// 1. topk_clear                 state, histograms, output slots.
// 2. 8 x (topk_hist, topk_pick) MSB radix select on the composite, 8 bits per pass, until
//                               the K-th entry is known (a query stops early once the
//                               entries left to take fill its current bucket exactly).
// 3. topk_emit                  entries >= the threshold prefix -> unsorted output slots.
// 4. sort_local / sort_global   bitonic sort of each query's kp = next_pow2(K) slots.
// 5. topk_pack                  -> rows [B, K], scores [B, K], counts [B] (pads: MAX, -inf).
//
// Needs no subgroup operations: workgroup atomics and barriers only.

struct Params {
    nq: u32,           // queries in this group
    stride: u32,       // entries per query region
    k: u32,            // entries to keep per query
    kp: u32,           // next power of two >= k
    fixed_len: u32,    // entries per region when use_lens == 0
    lens_q0: u32,
    out_q0: u32,       // first output query written by topk_pack
    write_scores: u32, // topk_pack writes scores too
    sk: u32,           // bitonic: first merge size k
    ske: u32,          // bitonic: last merge size k
    sj: u32,           // bitonic: distance j (global) or largest j (local)
    block_n: u32,      // bitonic local block (min(kp, 2048))
    use_lens: u32,     // nonzero: region q holds lens[lens_q0 + q] entries
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> entries: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> lens: array<u32>;
// Per query: 0 need, 1 bits decided, 2 prefix hi, 3 prefix lo, 4 done, 5 select none.
@group(0) @binding(3) var<storage, read_write> state: array<u32>;
@group(0) @binding(4) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> counter: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> slots: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read_write> out_rows: array<u32>;
@group(0) @binding(8) var<storage, read_write> out_scores: array<f32>;
@group(0) @binding(9) var<storage, read_write> out_counts: array<u32>;

const BLOCK: u32 = 2048u;
var<workgroup> wh: array<atomic<u32>, 256>;
var<workgroup> sv: array<vec2<u32>, BLOCK>;

fn region_len(q: u32) -> u32 {
    if (P.use_lens == 0u) {
        return P.fixed_len;
    }
    return lens[P.lens_q0 + q];
}

@compute @workgroup_size(256)
fn topk_clear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_slots = P.nq * P.kp;
    let n_hist = P.nq * 256u;
    let total = max(max(n_slots, n_hist), P.nq);
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        if (t < n_slots) {
            slots[t] = vec2<u32>(NO_KEY, NO_ROW);
        }
        if (t < n_hist) {
            atomicStore(&hist[t], 0u);
        }
        if (t < P.nq) {
            state[t * 8u] = P.k;
            for (var f = 1u; f < 8u; f++) {
                state[t * 8u + f] = 0u;
            }
            atomicStore(&counter[t], 0u);
        }
    }
}

@compute @workgroup_size(256)
fn topk_hist(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = wid.y;
    atomicStore(&wh[li], 0u);
    workgroupBarrier();
    let s = q * 8u;
    if (state[s + 4u] == 0u) {
        let nb = state[s + 1u];
        let ph = state[s + 2u];
        let pl = state[s + 3u];
        let n = region_len(q);
        let base = q * P.stride;
        // Runs of equal digits are added at once (see scan_hist in scan.wgsl).
        var cur = 0u;
        var cnt = 0u;
        for (var i = wid.x * 256u + li; i < n; i += nwg.x * 256u) {
            let e = entries[base + i];
            if (e.x != NO_KEY && prefix_eq(e.x, ~e.y, ph, pl, nb)) {
                let d = digit(e.x, ~e.y, nb);
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
        atomicAdd(&hist[q * 256u + li], c);
    }
}

var<workgroup> hb_local: array<u32, 256>;

// One workgroup per query: load (and clear) the histogram, then find the bucket holding
// the K-th entry and extend the prefix by its digit.
@compute @workgroup_size(256)
fn topk_pick(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q = min(wid.x, P.nq - 1u);
    let s = q * 8u;
    hb_local[li] = atomicLoad(&hist[q * 256u + li]);
    atomicStore(&hist[q * 256u + li], 0u);
    workgroupBarrier();
    if (li != 0u || state[s + 4u] != 0u) {
        return;
    }
    var need = state[s];
    let nb = state[s + 1u];
    var finished = false;
    if (nb == 0u) {
        var total = 0u;
        for (var d = 0u; d < 256u; d++) {
            total += hb_local[d];
        }
        need = min(need, total);
        if (need == 0u) {
            state[s + 5u] = 1u;
            finished = true;
        } else if (need == total) {
            finished = true;
        }
    }
    if (!finished) {
        var cum = 0u;
        var d = 255u;
        var c = 0u;
        loop {
            c = hb_local[d];
            if (cum + c >= need || d == 0u) {
                break;
            }
            cum += c;
            d -= 1u;
        }
        need -= cum;
        if (nb < 32u) {
            state[s + 2u] |= d << (24u - nb);
        } else {
            state[s + 3u] |= d << (56u - nb);
        }
        state[s + 1u] = nb + 8u;
        if (c == need) {
            finished = true;
        }
    }
    state[s] = need;
    if (finished) {
        state[s + 4u] = 1u;
    }
}

@compute @workgroup_size(256)
fn topk_emit(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = wid.y;
    let s = q * 8u;
    if (state[s + 5u] != 0u) {
        return;
    }
    let nb = state[s + 1u];
    let ph = state[s + 2u];
    let pl = state[s + 3u];
    let n = region_len(q);
    let base = q * P.stride;
    for (var i = wid.x * 256u + li; i < n; i += nwg.x * 256u) {
        let e = entries[base + i];
        if (e.x != NO_KEY && prefix_ge(e.x, ~e.y, ph, pl, nb)) {
            let slot = atomicAdd(&counter[q], 1u);
            if (slot < P.kp) {
                slots[q * P.kp + slot] = e;
            }
        }
    }
}

fn better(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x > b.x || (a.x == b.x && a.y < b.y);
}

// Compare-exchange so that slot i holds the better entry when (i & k) == 0.
fn ordered(a: vec2<u32>, b: vec2<u32>, i: u32, k: u32) -> bool {
    if ((i & k) == 0u) {
        return !better(b, a);
    }
    return !better(a, b);
}

// Bitonic stages with j < block_n inside one block of block_n slots in workgroup memory.
@compute @workgroup_size(256)
fn sort_local(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q = wid.y;
    let n = P.block_n;
    let first = wid.x * n;
    let base = q * P.kp + first;
    for (var t = li; t < n; t += 256u) {
        sv[t] = slots[base + t];
    }
    workgroupBarrier();
    for (var k = P.sk; k <= P.ske; k <<= 1u) {
        for (var j = min(k >> 1u, P.sj); j > 0u; j >>= 1u) {
            for (var t = li; t < n / 2u; t += 256u) {
                let i = (t / j) * 2u * j + (t % j);
                let a = sv[i];
                let b = sv[i + j];
                if (!ordered(a, b, first + i, k)) {
                    sv[i] = b;
                    sv[i + j] = a;
                }
            }
            workgroupBarrier();
        }
    }
    for (var t = li; t < n; t += 256u) {
        slots[base + t] = sv[t];
    }
}

// One bitonic stage (k, j) with j >= block_n, over all queries' slots.
@compute @workgroup_size(256)
fn sort_global(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let hn = P.kp / 2u;
    let total = P.nq * hn;
    let j = P.sj;
    let k = P.sk;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let q = t / hn;
        let u = t % hn;
        let i = (u / j) * 2u * j + (u % j);
        let a = slots[q * P.kp + i];
        let b = slots[q * P.kp + i + j];
        if (!ordered(a, b, i, k)) {
            slots[q * P.kp + i] = b;
            slots[q * P.kp + i + j] = a;
        }
    }
}

@compute @workgroup_size(256)
fn topk_pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = P.nq * P.k;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let q = t / P.k;
        let i = t % P.k;
        let cnt = min(atomicLoad(&counter[q]), P.k);
        let o = (P.out_q0 + q) * P.k + i;
        if (i < cnt) {
            let e = slots[q * P.kp + i];
            out_rows[o] = e.y;
            if (P.write_scores != 0u) {
                out_scores[o] = key_score(e.x);
            }
        } else {
            out_rows[o] = NO_ROW;
            if (P.write_scores != 0u) {
                out_scores[o] = bitcast<f32>(0xff800000u);
            }
        }
        if (i == 0u) {
            out_counts[P.out_q0 + q] = cnt;
        }
    }
}
