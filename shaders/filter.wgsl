// silica stage 2 (filter): Bloom bit-plane masks over the probed lists only.
//
// Device layouts (32-bit words; u32 word 2w is the low half of the CPU's u64 word w):
// * planes (per row chunk): plane b, chunk-local word w at `planes[b * cw_n + w]`;
// * live (per row chunk): `live[w]`, bit set = row live;
// * mask: per query a region of `mstride` words; pair p = q*nprobe + j starts at
//   `pairs[2p]` and covers u32 words 2*floor(s/64) .. 2*ceil(e/64) of list rows [s, e),
//   bits outside the list cleared (the host `Mask` layout, split into halves).
// * plan blob (crates/wgpu/src/plan.rs; the one encoding of silica_core::filter::encode):
//   blob[q] = word offset of query q's plan record, bit 31 (TRIVIAL_BIT) set when the plan
//   passes everything. Record: [n_ops][ops..]; op = kind << 30 | arg, kind 0 term (arg =
//   term record offset from the plan start), 1 AND, 2 OR, 3 NOT. Bloom term record =
//   [nb][k][nb*k plane rows][nid][nid sorted value ids], value v's k rows at 2 + v*k; a
//   typed term is [MASK_TERM][m], its exact row mask m words after the plan start (u64
//   word w as blob[plan + m + 2w], blob[plan + m + 2w + 1]).

struct Params {
    nq: u32,      // queries (filter) or plans (count)
    nprobe: u32,
    mstride: u32, // mask words per query region
    hashes: u32,  // Bloom hashes k
    cw_lo: u32,   // first u32 word of this row chunk
    cw_n: u32,    // u32 words in this row chunk
    n: u32,       // rows N
    _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> lists: array<u32>;
@group(0) @binding(2) var<storage, read> loff: array<u32>;
@group(0) @binding(3) var<storage, read> blob: array<u32>;
@group(0) @binding(4) var<storage, read_write> pairs: array<u32>;
@group(0) @binding(5) var<storage, read_write> ent_len: array<u32>;
// Planes, live bits and masks are read and written one u64 word (two u32 halves) at a
// time: chunk word counts, plane strides and mask offsets are all even.
@group(0) @binding(6) var<storage, read> planes: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> live: array<vec2<u32>>;
@group(0) @binding(8) var<storage, read_write> mask: array<vec2<u32>>;
@group(0) @binding(9) var<storage, read_write> counts: array<atomic<u32>>;

const MAX_DEPTH: u32 = 32u;
const MASK_TERM: u32 = 0xffffffffu;
const TRIVIAL_BIT: u32 = 0x80000000u;
const ARG_MASK: u32 = 0x3fffffffu;

// Bits of u32 word `gw` (rows 32gw .. 32gw+31) inside rows [s, e).
fn range_bits32(gw: u32, s: u32, e: u32) -> u32 {
    let lo = max(gw * 32u, s);
    let hi = min(gw * 32u + 32u, e);
    if (hi <= lo) {
        return 0u;
    }
    let n = hi - lo;
    var m = 0xffffffffu;
    if (n < 32u) {
        m = (1u << n) - 1u;
    }
    return m << (lo - gw * 32u);
}

// Bits of u64 word `w64` (rows 64w .. 64w+63, as two u32 halves) inside rows [s, e).
fn range_bits64(w64: u32, s: u32, e: u32) -> vec2<u32> {
    return vec2<u32>(range_bits32(2u * w64, s, e), range_bits32(2u * w64 + 1u, s, e));
}

// Plan.bloom_word over 64 rows (chunk-local u64 word w): a term is the OR over its values
// of the AND of the value's k planes; NOT gives all ones (a Bloom hit never proves
// presence).
fn bloom_word(plan: u32, w: u32) -> vec2<u32> {
    var st: array<vec2<u32>, MAX_DEPTH>;
    var sp = 0u;
    let stride = P.cw_n / 2u;
    let nops = blob[plan];
    for (var i = 0u; i < nops; i++) {
        let op = blob[plan + 1u + i];
        let kind = op >> 30u;
        if (kind == 0u) {
            let t = plan + (op & ARG_MASK);
            let nb = blob[t];
            if (nb == MASK_TERM) {
                let g = plan + blob[t + 1u] + P.cw_lo + 2u * w;
                st[sp] = vec2<u32>(blob[g], blob[g + 1u]);
                sp += 1u;
                continue;
            }
            let k = blob[t + 1u];
            var hit = vec2<u32>(0u);
            for (var v = 0u; v < nb; v++) {
                var both = vec2<u32>(0xffffffffu);
                for (var h = 0u; h < k; h++) {
                    both &= planes[blob[t + 2u + v * k + h] * stride + w];
                }
                hit |= both;
            }
            st[sp] = hit;
            sp += 1u;
        } else if (kind == 1u) {
            sp -= 1u;
            st[sp - 1u] &= st[sp];
        } else if (kind == 2u) {
            sp -= 1u;
            st[sp - 1u] |= st[sp];
        } else {
            st[sp - 1u] = vec2<u32>(0xffffffffu);
        }
    }
    return st[0];
}

var<workgroup> part_m: array<u32, 256>;
var<workgroup> part_e: array<u32, 256>;

fn span_words(s: u32, e: u32) -> u32 {
    return 2u * ((e + 63u) / 64u - s / 64u);
}

// One workgroup per query: where each probed list's mask words and scan entries start
// inside the query's regions (prefix sums over its nprobe lists), and the query's entry
// count (rows of the lists it probes).
@compute @workgroup_size(256)
fn filter_pairs(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q = wid.x;
    let per = (P.nprobe + 255u) / 256u;
    let a = min(li * per, P.nprobe);
    let b = min(a + per, P.nprobe);
    var m = 0u;
    var n = 0u;
    for (var j = a; j < b; j++) {
        let l = lists[q * P.nprobe + j];
        m += span_words(loff[l], loff[l + 1u]);
        n += loff[l + 1u] - loff[l];
    }
    part_m[li] = m;
    part_e[li] = n;
    workgroupBarrier();
    if (li == 0u) {
        var rm = 0u;
        var re = 0u;
        for (var i = 0u; i < 256u; i++) {
            let xm = part_m[i];
            let xe = part_e[i];
            part_m[i] = rm;
            part_e[i] = re;
            rm += xm;
            re += xe;
        }
    }
    workgroupBarrier();
    var mo = part_m[li];
    var eo = part_e[li];
    for (var j = a; j < b; j++) {
        let p = q * P.nprobe + j;
        let l = lists[p];
        pairs[2u * p] = mo;
        pairs[2u * p + 1u] = eo;
        mo += span_words(loff[l], loff[l + 1u]);
        eo += loff[l + 1u] - loff[l];
    }
    if (li == 255u) {
        ent_len[q] = eo;
    }
}

// Grid (u64 word blocks, probe j, query q); writes the pair's words inside this row chunk.
@compute @workgroup_size(64)
fn filter_words(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = wid.z;
    let p = q * P.nprobe + wid.y;
    let l = lists[p];
    let s = loff[l];
    let e = loff[l + 1u];
    let w0 = s / 64u;
    let nw = (e + 63u) / 64u - w0;
    let mbase = (q * P.mstride + pairs[2u * p]) / 2u;
    let po = blob[q];
    let c0 = P.cw_lo / 2u;
    let cn = P.cw_n / 2u;
    for (var w = wid.x * 64u + li; w < nw; w += nwg.x * 64u) {
        let gw = w0 + w;
        if (gw < c0 || gw >= c0 + cn) {
            continue;
        }
        let lw = gw - c0;
        var m = range_bits64(gw, s, e) & live[lw];
        if (any(m != vec2<u32>(0u)) && (po & TRIVIAL_BIT) == 0u) {
            m &= bloom_word(po, lw);
        }
        mask[mbase + w] = m;
    }
}

var<workgroup> wsum: atomic<u32>;

// Grid (u64 word blocks, plan): live rows whose Bloom mask is set, over this row chunk.
@compute @workgroup_size(256)
fn filter_count(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (li == 0u) {
        atomicStore(&wsum, 0u);
    }
    workgroupBarrier();
    let pi = wid.y;
    let po = blob[pi];
    let c0 = P.cw_lo / 2u;
    var c = 0u;
    for (var lw = wid.x * 256u + li; lw < P.cw_n / 2u; lw += nwg.x * 256u) {
        var m = range_bits64(c0 + lw, 0u, P.n) & live[lw];
        if (any(m != vec2<u32>(0u)) && (po & TRIVIAL_BIT) == 0u) {
            m &= bloom_word(po, lw);
        }
        c += countOneBits(m.x) + countOneBits(m.y);
    }
    atomicAdd(&wsum, c);
    workgroupBarrier();
    if (li == 0u) {
        atomicAdd(&counts[pi], atomicLoad(&wsum));
    }
}
