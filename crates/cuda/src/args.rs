//! Kernel argument structs, field for field the C++ structs of `cuda/scan.cu`
//! (pointers as u64; `#[repr(C)]` gives the same padding as the C++ layout).

/// `ScanArgs` of scan.cu (scan_sample / scan_main).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanArgs {
    pub codes: u64,
    pub nc: u32,
    pub scale: u64,
    pub list_start: u64,
    pub list_nw: u64,
    pub l: u32,
    pub tiles: u64,
    pub pair_start: u64,
    pub list_pairs: u64,
    pub nprobe: u32,
    pub mask: u64,
    pub moff: u64,
    pub qcodes: u64,
    pub plan_words: u64,
    pub plan_off: u64,
    pub attr_off: u64,
    pub attr_vals: u64,
    pub tkey: u64,
    pub count: u64,
    pub buf: u64,
    pub cap: u32,
    pub masked: u64,
    pub se: u32,
    pub tw: u32,
    pub bucket: u64,
    pub list_end: u64,
    /// l2: row biases (0 = null: ip / cosine) and query scales.
    pub bias: u64,
    pub qscale: u64,
}

/// `SelectArgs` of scan.cu (scan_select).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SelectArgs {
    pub nprobe: u32,
    pub lists: u64,
    pub moff: u64,
    pub mask: u64,
    pub list_start: u64,
    pub codes: u64,
    pub nc: u32,
    pub scale: u64,
    pub qcodes: u64,
    pub plan_words: u64,
    pub plan_off: u64,
    pub attr_off: u64,
    pub attr_vals: u64,
    pub count: u64,
    pub tkey: u64,
    pub cand: u64,
    pub cap: u32,
    pub k0: u32,
    pub p: u32,
    pub force_fallback: u32,
    pub out_rows: u64,
    pub out_scores: u64,
    pub out_counts: u64,
    pub sortbuf: u64,
    pub smem_keys: u32,
    pub list_end: u64,
    pub list_nw: u64,
    pub bias: u64,
    pub qscale: u64,
}

/// `PrepArgs` of scan.cu (scan_prepare).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PrepArgs {
    pub lists: u64,
    pub list_nw: u64,
    pub cnt: u64,
    pub fill: u64,
    pub pair_start: u64,
    pub tile_start: u64,
    pub stile_start: u64,
    pub list_pairs: u64,
    pub tbucket: u64,
    pub sbucket: u64,
    pub zero: u64,
    pub list_start: u64,
    pub mask: u64,
    pub moff: u64,
    pub codes: u64,
    pub scale: u64,
    pub qcodes: u64,
    pub plan_words: u64,
    pub plan_off: u64,
    pub attr_off: u64,
    pub attr_vals: u64,
    pub samp_count: u64,
    pub samp: u64,
    pub samp_masked: u64,
    pub npairs: u32,
    pub l: u32,
    pub tw: u32,
    pub se: u32,
    pub smem_counts: u32,
    pub nzero: u32,
    pub nprobe: u32,
    pub spp: u32,
    pub nc: u32,
    pub cs: u32,
    pub list_end: u64,
    pub bias: u64,
    pub qscale: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // Offsets as the C++ compiler lays the structs out (8-byte pointers, 4-byte u32).
    #[test]
    fn layouts_match_the_kernels() {
        assert_eq!(offset_of!(ScanArgs, scale), 16);
        assert_eq!(offset_of!(ScanArgs, list_nw), 32);
        assert_eq!(offset_of!(ScanArgs, tiles), 48);
        assert_eq!(offset_of!(ScanArgs, mask), 80);
        assert_eq!(offset_of!(ScanArgs, cap), 160);
        assert_eq!(offset_of!(ScanArgs, masked), 168);
        assert_eq!(offset_of!(ScanArgs, tw), 180);
        assert_eq!(offset_of!(ScanArgs, bucket), 184);
        assert_eq!(offset_of!(ScanArgs, list_end), 192);
        assert_eq!(offset_of!(ScanArgs, qscale), 208);
        assert_eq!(size_of::<ScanArgs>(), 216);
        assert_eq!(offset_of!(SelectArgs, lists), 8);
        assert_eq!(offset_of!(SelectArgs, scale), 56);
        assert_eq!(offset_of!(SelectArgs, cap), 128);
        assert_eq!(offset_of!(SelectArgs, out_rows), 144);
        assert_eq!(offset_of!(SelectArgs, smem_keys), 176);
        assert_eq!(offset_of!(PrepArgs, npairs), 192);
        assert_eq!(offset_of!(PrepArgs, list_end), 232);
        assert_eq!(offset_of!(PrepArgs, qscale), 248);
        assert_eq!(size_of::<PrepArgs>(), 256);
        assert_eq!(offset_of!(SelectArgs, list_end), 184);
        assert_eq!(offset_of!(SelectArgs, qscale), 208);
        assert_eq!(size_of::<SelectArgs>(), 216);
    }
}
