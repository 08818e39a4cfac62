// silica: helpers prepended to every stage shader (crates/wgpu/src/kernels.rs composes
// `common.wgsl` + one generated `dot4` line + the stage file).
//
// Scores travel as order-preserving u32 keys: a larger key is a larger f32 in the total
// order of `f32::total_cmp` (what the CPU backend sorts by). Key 0 marks "no entry";
// no finite score maps to it.

const NO_KEY: u32 = 0u;
const NO_ROW: u32 = 0xffffffffu;

fn score_key(s: f32) -> u32 {
    let b = bitcast<u32>(s);
    if ((b >> 31u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn key_score(k: u32) -> f32 {
    if ((k >> 31u) != 0u) {
        return bitcast<f32>(k & 0x7fffffffu);
    }
    return bitcast<f32>(~k);
}

// Exact int8 x4 dot product without the packed-dot language extension: sign-extend each
// byte (little-endian: byte 0 = element 0) and use an integer dot; the result is exact.
fn dot4_portable(a: u32, b: u32) -> i32 {
    let ai = bitcast<i32>(a);
    let bi = bitcast<i32>(b);
    let sh = vec4<u32>(24u, 16u, 8u, 0u);
    let av = (vec4<i32>(ai) << sh) >> vec4<u32>(24u);
    let bv = (vec4<i32>(bi) << sh) >> vec4<u32>(24u);
    return dot(av, bv);
}

// Exact i32 dot of two int8 rows packed 16 codes per vec4<u32>.
fn dot16(a: vec4<u32>, b: vec4<u32>) -> i32 {
    return dot4(a.x, b.x) + dot4(a.y, b.y) + dot4(a.z, b.z) + dot4(a.w, b.w);
}

// ---- (score, row) radix-select keys, shared by scan.wgsl and topk.wgsl

// Top `nb` bits of the composite (hi, lo) equal / at least those of the prefix.
fn prefix_eq(hi: u32, lo: u32, ph: u32, pl: u32, nb: u32) -> bool {
    if (nb == 0u) {
        return true;
    }
    if (nb <= 32u) {
        let sh = 32u - nb;
        return (hi >> sh) == (ph >> sh);
    }
    let sh = 64u - nb;
    return hi == ph && (lo >> sh) == (pl >> sh);
}

fn prefix_ge(hi: u32, lo: u32, ph: u32, pl: u32, nb: u32) -> bool {
    if (nb == 0u) {
        return true;
    }
    if (nb <= 32u) {
        let sh = 32u - nb;
        return (hi >> sh) >= (ph >> sh);
    }
    if (hi != ph) {
        return hi > ph;
    }
    let sh = 64u - nb;
    return (lo >> sh) >= (pl >> sh);
}

fn digit(hi: u32, lo: u32, nb: u32) -> u32 {
    if (nb < 32u) {
        return (hi >> (24u - nb)) & 255u;
    }
    return (lo >> (56u - nb)) & 255u;
}
