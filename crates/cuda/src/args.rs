//! Typed kernel arguments: one struct per kernel (or per family of kernels with one
//! signature), from which each launch takes its parameters, and the check that they match
//! the kernels as NVRTC compiles them.
//!
//! Two kinds:
//! - Kernels with scalar and pointer parameters ([`params!`]): the struct's fields are the
//!   parameters in order (pointers as `u64` device addresses). A launch points the driver
//!   at each field (`kernelParams`), so padding between fields is never read.
//! - Kernels taking one C++ struct by value ([`ScanArgs`], [`SelectArgs`], [`PrepArgs`]):
//!   `#[repr(C)]` mirrors with their padding as explicit fields, so they are
//!   `bytemuck::Pod` and the launch passes `bytemuck::bytes_of` (no uninitialised byte).
//!
//! [`layout_checks`] writes, for the kernels of a stage file, C++ `static_assert`s on the
//! parameter count and sizes (from the kernel's type), the sizes of the by-value structs
//! and their members, and one probe kernel per member whose PTX shows the member's offset;
//! the tests compile them with NVRTC against `core::mem::offset_of!`.

use super::kernels::KernelId;
use std::ffi::c_void;
use std::mem::{offset_of, size_of};

/// Arguments of one or more kernels (see the module docs).
pub(crate) trait KernelArgs {
    /// The kernels that take these arguments.
    const KERNELS: &'static [KernelId];
    /// `(name, bytes)` of each kernel parameter in order, named as in the C++ signature.
    #[allow(dead_code)] // read by the layout checks (tests)
    const PARAMS: &'static [(&'static str, usize)];
    /// A struct passed by value: its C++ name and `(member, offset, bytes)` of each member
    /// (explicit padding excluded); `None` for scalar parameters.
    #[allow(dead_code)] // read by the layout checks (tests)
    const BY_VALUE: Option<(&'static str, &'static [(&'static str, usize, usize)])> = None;
    /// Pointers to each parameter's bytes (the driver's `kernelParams`), valid while `self` is.
    fn param_ptrs(&self) -> Vec<*mut c_void>;
}

/// Kernels with scalar parameters: `Name: Kernel, ... { param: type, ... }` in the order
/// of the C++ signature, with its names.
macro_rules! params {
    ($($(#[$doc:meta])* $name:ident: $($k:ident),+ { $($f:ident: $t:ty,)* })*) => {
        $(
            $(#[$doc])*
            #[allow(non_snake_case)]
            #[derive(Clone, Copy, Debug, Default)]
            pub(crate) struct $name { $(pub $f: $t,)* }

            impl KernelArgs for $name {
                const KERNELS: &'static [KernelId] = &[$(KernelId::$k),+];
                const PARAMS: &'static [(&'static str, usize)] = &[$((stringify!($f), size_of::<$t>()),)*];
                fn param_ptrs(&self) -> Vec<*mut c_void> {
                    vec![$(&self.$f as *const $t as *mut c_void,)*]
                }
            }
        )*
        /// Layouts of every scalar-parameter struct (the layout checks).
        #[cfg(test)]
        pub(crate) const SCALAR: &[Layout] = &[$(Layout::of::<$name>(stringify!($name)),)*];
    };
}

/// Structs passed by value: `#[repr(C)]`, padding as `_pad*` fields (zero), `Pod`; the
/// kernels take the C++ struct of the same name as their one parameter `a`.
macro_rules! by_value {
    ($($(#[$doc:meta])* $name:ident: $($k:ident),+ { $($(#[$fdoc:meta])* $f:ident: $t:ty,)* })*) => {
        $(
            $(#[$doc])*
            #[allow(non_snake_case)]
            #[repr(C)]
            #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
            pub(crate) struct $name { $($(#[$fdoc])* pub $f: $t,)* }

            impl KernelArgs for $name {
                const KERNELS: &'static [KernelId] = &[$(KernelId::$k),+];
                const PARAMS: &'static [(&'static str, usize)] = &[("a", size_of::<$name>())];
                const BY_VALUE: Option<(&'static str, &'static [(&'static str, usize, usize)])> =
                    Some((stringify!($name), &[$((stringify!($f), offset_of!($name, $f), size_of::<$t>()),)*]));
                fn param_ptrs(&self) -> Vec<*mut c_void> {
                    vec![bytemuck::bytes_of(self).as_ptr() as *mut c_void]
                }
            }
        )*
        /// Layouts of every by-value struct (the layout checks).
        #[cfg(test)]
        pub(crate) const BY_VALUE: &[Layout] = &[$(Layout::of::<$name>(stringify!($name)),)*];
    };
}

params! {
    /// `read_bw` (cuda/bench.cu).
    ReadBw: ReadBw {
        p: u64,
        n: u64,
        out: u64,
    }
    /// `mask_offsets` (cuda/filter.cu).
    MaskOffsets: MaskOffsets {
        lists: u64,
        npairs: u32,
        list_nw: u64,
        off: u64,
    }
    /// `filter_mask` (cuda/filter.cu).
    FilterMask: FilterMask {
        lists: u64,
        nprobe: u32,
        off: u64,
        list_start: u64,
        list_end: u64,
        planes: u64,
        words: u64,
        live: u64,
        plan_words: u64,
        plan_off: u64,
        mask: u64,
    }
    /// `bloom_full` (cuda/filter.cu).
    BloomFull: BloomFull {
        planes: u64,
        words: u64,
        n: u64,
        live: u64,
        plan_words: u64,
        plan_off: u64,
        out: u64,
        counts: u64,
    }
    /// `mask_gather` (cuda/filter.cu).
    MaskGather: MaskGather {
        lists: u64,
        nprobe: u32,
        off: u64,
        list_start: u64,
        list_end: u64,
        full: u64,
        words: u64,
        mask: u64,
    }
    /// `cand_sample` (cuda/filter.cu).
    CandSample: CandSample {
        planes: u64,
        words: u64,
        n: u64,
        live: u64,
        plan_words: u64,
        plan_off: u64,
        every: u32,
        sample: u64,
    }
    /// `cand_compact` (cuda/filter.cu).
    CandCompact: CandCompact {
        planes: u64,
        words: u64,
        n: u64,
        live: u64,
        plan_words: u64,
        plan_off: u64,
        attr_off: u64,
        attr_vals: u64,
        cap: u32,
        sample: u64,
        every: u32,
        all: u32,
        bloom: u64,
        exact: u64,
        rows: u64,
    }
    /// `post_compact` (cuda/filter.cu).
    PostCompact: PostCompact {
        post_rows: u64,
        seg_off: u64,
        seg_start: u64,
        seg_val: u64,
        seg_end: u64,
        stale: u64,
        nstale: u32,
        live: u64,
        plan_words: u64,
        plan_off: u64,
        attr_off: u64,
        attr_vals: u64,
        cap: u32,
        exact: u64,
        rows: u64,
    }
    /// `assign_i8` (cuda/kmeans.cu).
    AssignI8: AssignI8 {
        rows: u64,
        nr: u32,
        cent: u64,
        cscale: u64,
        L: u32,
        nw: u32,
        out: u64,
    }
    /// `km_assign` (cuda/kmeans.cu).
    KmAssign: KmAssign {
        x: u64,
        m: u32,
        c: u64,
        k: u32,
        nw: u32,
        out: u64,
    }
    /// `km_accum` (cuda/kmeans.cu).
    KmAccum: KmAccum {
        x: u64,
        a: u64,
        m: u32,
        d: u32,
        dp: u32,
        fx: f32,
        sums: u64,
        counts: u64,
    }
    /// `km_to_f32` (cuda/kmeans.cu).
    KmToF32: KmToF32 {
        sums: u64,
        n: u64,
        inv: f64,
        fs: u64,
    }
    /// `km_split` (cuda/kmeans.cu).
    KmSplit: KmSplit {
        fs: u64,
        d: u32,
        dp: u32,
        pairs: u64,
        np: u32,
    }
    /// `km_normalize` (cuda/kmeans.cu).
    KmNormalize: KmNormalize {
        fs: u64,
        counts: u64,
        k: u32,
        d: u32,
        dp: u32,
        c: u64,
    }
    /// `gather_rows` (cuda/kmeans.cu).
    GatherRows: GatherRows {
        src: u64,
        idx: u64,
        count: u32,
        dp: u32,
        out: u64,
    }
    /// `probe_scores` (cuda/probe.cu).
    ProbeScores: ProbeScores {
        cent: u64,
        cscale: u64,
        q: u64,
        nc: u32,
        L: u32,
        B: u32,
        keys: u64,
        cbias: u64,
        qscale: u64,
    }
    /// `query_prepare` (cuda/query.cu).
    QueryPrepare: QueryPrepare {
        src: u64,
        dtype: u32,
        rows: u64,
        B: u32,
        D: u32,
        nc: u32,
        metric: u32,
        codes: u64,
        scale: u64,
        qf: u64,
        sqnorm: u64,
        fault: u64,
    }
    /// `query_results` (cuda/query.cu).
    QueryResults: QueryResults {
        rows: u64,
        scores: u64,
        counts: u64,
        k: u32,
        b: u32,
        which: u64,
        source_rows: u64,
        out_scores: u64,
        out_rows: u64,
    }
    /// `rerank_scale` (cuda/rerank.cu).
    RerankScale: RerankScale {
        scores: u64,
        counts: u64,
        qscale: u64,
        k: u32,
        B: u32,
        l2: u32,
    }
    /// `rerank_refine` (cuda/rerank.cu).
    RerankRefine: RerankRefine {
        scores: u64,
        rows: u64,
        counts: u64,
        q: u64,
        emb: u64,
        D: u32,
        k: u32,
        B: u32,
        l2: u32,
    }
    /// `rerank_model` (cuda/rerank.cu).
    RerankModel: RerankModel {
        scores: u64,
        rows: u64,
        counts: u64,
        q: u64,
        emb: u64,
        feats: u64,
        D: u32,
        F: u32,
        desc: u64,
        nl: u32,
        w: u64,
        tw: u64,
        width: u32,
        k: u32,
        B: u32,
    }
    /// `group_all` (cuda/scan.cu).
    GroupAll: GroupAll {
        lists: u64,
        npairs: u32,
        list_nw: u64,
        L: u32,
        tw: u32,
        se: u32,
        cnt_g: u64,
        fill_g: u64,
        smem_counts: u32,
        pair_start: u64,
        tile_start: u64,
        stile_start: u64,
        list_pairs: u64,
        tbucket: u64,
        sbucket: u64,
        zero: u64,
        nzero: u32,
    }
    /// `warp_smem_size`, `stream_smem_size` (cuda/scan.cu).
    SmemSize: WarpSmemSize, StreamSmemSize {
        out: u64,
    }
    /// `scan_threshold` (cuda/scan.cu).
    ScanThreshold: ScanThreshold {
        nprobe: u32,
        lists: u64,
        list_start: u64,
        list_end: u64,
        moff: u64,
        mask: u64,
        samp_count: u64,
        samp_masked: u64,
        samp: u64,
        cs: u32,
        k0: u32,
        cap: u32,
        tkey: u64,
        smem_cap: u32,
    }
    /// `cand_score` (cuda/scan.cu).
    CandScore: CandScore {
        rowcodes: u64,
        nc: u32,
        scale: u64,
        qcodes: u64,
        rows: u64,
        bloom: u64,
        exact: u64,
        cap: u32,
        keys: u64,
        seg: u64,
        bias: u64,
        qscale: u64,
    }
    /// `codes_rows` (cuda/scan.cu).
    CodesRows: CodesRows {
        codes: u64,
        nc: u32,
        n: u64,
        out: u64,
    }
    /// `topk_select` (cuda/select.cu).
    TopkSelect: TopkSelect {
        kind: u32,
        keys: u64,
        scores: u64,
        rows: u64,
        stride: u64,
        counts: u64,
        n_fixed: u32,
        k: u32,
        P: u32,
        out_rows: u64,
        out_scores: u64,
        out_counts: u64,
        sortbuf: u64,
    }
    /// `bitonic_global` (cuda/select.cu).
    BitonicGlobal: BitonicGlobal {
        buf: u64,
        P: u32,
        size: u32,
        stride: u32,
    }
    /// `bitonic_local` (cuda/select.cu).
    BitonicLocal: BitonicLocal {
        buf: u64,
        P: u32,
        ch: u32,
        size_lo: u32,
        size_hi: u32,
        stride0: u32,
    }
    /// `decode_sorted` (cuda/select.cu).
    DecodeSorted: DecodeSorted {
        buf: u64,
        P: u32,
        k: u32,
        counts: u64,
        out_rows: u64,
        out_scores: u64,
    }
    /// `copy_u64`, `copy_u32` (cuda/update.cu).
    CopyWords: CopyU64, CopyU32 {
        dst: u64,
        src: u64,
        n: u64,
    }
    /// `scatter_u32`, `scatter_u64` (cuda/update.cu).
    ScatterWords: ScatterU32, ScatterU64 {
        dst: u64,
        idx: u64,
        val: u64,
        n: u32,
    }
}

by_value! {
    /// `ScanArgs` of scan.cu: every scan kernel (`scan_sample`, `scan_main` and their
    /// fast / stream instantiations of `scan_kernel<Pipe, SAMPLE>`).
    ScanArgs: ScanSample, ScanMain, ScanSampleFast, ScanMainFast, ScanSampleStream, ScanMainStream {
        codes: u64,
        nc: u32,
        _pad0: u32,
        scale: u64,
        list_start: u64,
        list_nw: u64,
        L: u32,
        _pad1: u32,
        tiles: u64,
        pair_start: u64,
        list_pairs: u64,
        nprobe: u32,
        _pad2: u32,
        mask: u64,
        moff: u64,
        qcodes: u64,
        plan_words: u64,
        plan_off: u64,
        attr_off: u64,
        attr_vals: u64,
        tkey: u64,
        count: u64,
        buf: u64,
        cap: u32,
        _pad3: u32,
        masked: u64,
        se: u32,
        tw: u32,
        bucket: u64,
        list_end: u64,
        /// l2: row biases (0 = null: ip / cosine) and query scales.
        bias: u64,
        qscale: u64,
    }

    /// `SelectArgs` of scan.cu (`scan_select`).
    SelectArgs: ScanSelect {
        nprobe: u32,
        _pad0: u32,
        lists: u64,
        moff: u64,
        mask: u64,
        list_start: u64,
        codes: u64,
        nc: u32,
        _pad1: u32,
        scale: u64,
        qcodes: u64,
        plan_words: u64,
        plan_off: u64,
        attr_off: u64,
        attr_vals: u64,
        count: u64,
        tkey: u64,
        cand: u64,
        cap: u32,
        k0: u32,
        P: u32,
        force_fallback: u32,
        out_rows: u64,
        out_scores: u64,
        out_counts: u64,
        sortbuf: u64,
        smem_keys: u32,
        _pad2: u32,
        list_end: u64,
        list_nw: u64,
        bias: u64,
        qscale: u64,
    }

    /// `PrepArgs` of scan.cu (`scan_prepare`).
    PrepArgs: ScanPrepare {
        lists: u64,
        list_nw: u64,
        cnt: u64,
        fill: u64,
        pair_start: u64,
        tile_start: u64,
        stile_start: u64,
        list_pairs: u64,
        tbucket: u64,
        sbucket: u64,
        zero: u64,
        list_start: u64,
        mask: u64,
        moff: u64,
        codes: u64,
        scale: u64,
        qcodes: u64,
        plan_words: u64,
        plan_off: u64,
        attr_off: u64,
        attr_vals: u64,
        samp_count: u64,
        samp: u64,
        samp_masked: u64,
        npairs: u32,
        L: u32,
        tw: u32,
        se: u32,
        smem_counts: u32,
        nzero: u32,
        nprobe: u32,
        spp: u32,
        nc: u32,
        cs: u32,
        list_end: u64,
        bias: u64,
        qscale: u64,
    }
}

/// What the layout checks need of one [`KernelArgs`] type.
#[cfg(test)]
pub(crate) struct Layout {
    pub name: &'static str,
    pub kernels: &'static [KernelId],
    pub params: &'static [(&'static str, usize)],
    pub by_value: Option<(&'static str, &'static [(&'static str, usize, usize)])>,
}

#[cfg(test)]
impl Layout {
    const fn of<T: KernelArgs>(name: &'static str) -> Layout {
        Layout { name, kernels: T::KERNELS, params: T::PARAMS, by_value: T::BY_VALUE }
    }
}

/// Name of the probe kernel whose PTX loads member `m` of by-value struct `s`.
#[cfg(test)]
fn probe_name(s: &str, m: &str) -> String {
    format!("silica_offset_{s}_{m}")
}

/// C++ checks of every argument layout whose kernels live in stage file `file`, to be
/// compiled after the file's (expanded) source: parameter counts and sizes as
/// `static_assert`s on the kernels' types, by-value struct and member sizes, and one probe
/// kernel per member (its offset is read from the PTX: NVRTC has no constant `offsetof`).
#[cfg(test)]
pub(crate) fn layout_checks(file: &str) -> String {
    let mut s = String::from(
        "\n// --- silica-cuda args.rs layout checks (generated) ---\n\
         template <class... P> struct SilicaParams {\n\
         \x20   static constexpr unsigned n = sizeof...(P);\n\
         \x20   static constexpr unsigned long long size[sizeof...(P) + 1] = {sizeof(P)..., 0ull};\n\
         };\n\
         template <class... P> __device__ SilicaParams<P...> silica_params(void (*)(P...));\n",
    );
    let mut probed = Vec::new();
    for l in SCALAR.iter().chain(BY_VALUE) {
        for k in l.kernels.iter().filter(|k| k.file() == file) {
            let (kn, n) = (k.name(), l.params.len());
            s += &format!("static_assert(decltype(silica_params(&{kn}))::n == {n}, \"{kn}: {n} parameters ({})\");\n", l.name);
            for (i, (p, bytes)) in l.params.iter().enumerate() {
                s += &format!(
                    "static_assert(decltype(silica_params(&{kn}))::size[{i}] == {bytes}, \"{kn}: parameter {i} ({p}) is {bytes} bytes ({})\");\n",
                    l.name
                );
            }
            if let Some((cxx, members)) = l.by_value {
                if probed.contains(&cxx) {
                    continue;
                }
                probed.push(cxx);
                let size = l.params[0].1;
                s += &format!("static_assert(sizeof({cxx}) == {size}, \"sizeof({cxx}) == {size} ({})\");\n", l.name);
                for (m, _, bytes) in members.iter().filter(|(m, _, _)| !m.starts_with("_pad")) {
                    s += &format!("static_assert(sizeof((({cxx}*)0)->{m}) == {bytes}, \"{cxx}::{m} is {bytes} bytes\");\n");
                    s += &format!(
                        "extern \"C\" __global__ void {}({cxx} a, void* o) {{ *(decltype(a.{m})*)o = a.{m}; }}\n",
                        probe_name(cxx, m)
                    );
                }
            }
        }
    }
    s
}

/// Offset of member `m` of by-value struct `s` in the PTX of [`layout_checks`] (the
/// `ld.param` of parameter 0 in the member's probe kernel).
#[cfg(test)]
pub(crate) fn probed_offset(ptx: &str, s: &str, m: &str) -> Option<usize> {
    let tag = format!("[{}_param_0", probe_name(s, m));
    let line = ptx.lines().find(|l| l.contains("ld.param") && l.contains(&tag))?;
    let rest = &line[line.find(&tag)? + tag.len()..];
    let rest = rest.split(']').next()?;
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix('+')?.trim().parse().ok()
}

/// Parameter names of kernel `name` in source `src` (the last identifier of each
/// parameter of its `extern "C"` signature).
#[cfg(test)]
pub(crate) fn source_params(src: &str, name: &str) -> Option<Vec<String>> {
    let code: String = src.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let at = code.match_indices(&format!(" {name}(")).map(|(i, _)| i).find(|&i| {
        code[..i].rsplit("extern \"C\"").next().is_some_and(|h| h.contains("__global__") && !h.contains(';') && !h.contains('}'))
    })?;
    let open = at + name.len() + 2;
    let close = open + code[open..].find(')')?;
    Some(
        code[open..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::nvrtc;
    use super::*;

    fn expanded(file: &str) -> String {
        nvrtc::expand(nvrtc::source(file).expect("embedded source"), &|h| nvrtc::source(h).map(str::to_string)).expect("expands")
    }

    fn all() -> impl Iterator<Item = &'static Layout> {
        SCALAR.iter().chain(BY_VALUE)
    }

    /// Every kernel has exactly one argument struct.
    #[test]
    fn every_kernel_has_one_args_struct() {
        for k in KernelId::ALL {
            let n = all().filter(|l| l.kernels.contains(k)).count();
            assert_eq!(n, 1, "{k:?}: {n} argument structs");
        }
    }

    /// Parameter names, in order, are the C++ signature's (the sizes and offsets are
    /// checked by the compiler, below).
    #[test]
    fn names_match_the_signatures() {
        for l in all() {
            for k in l.kernels {
                let src = nvrtc::source(k.file()).unwrap();
                let want = source_params(src, k.name()).unwrap_or_else(|| panic!("{k:?}: signature not found"));
                let have: Vec<&str> = l.params.iter().map(|p| p.0).collect();
                assert_eq!(have, want, "{k:?} ({})", l.name);
            }
        }
    }

    /// Padding is explicit: the by-value structs have no implicit padding (Pod derives
    /// enforce it at compile time; this spells out the sums).
    #[test]
    fn by_value_structs_have_no_implicit_padding() {
        for l in BY_VALUE {
            let (_, members) = l.by_value.unwrap();
            let mut at = 0;
            for (m, off, bytes) in members {
                assert_eq!(*off, at, "{}::{m}", l.name);
                at += bytes;
            }
            assert_eq!(at, l.params[0].1, "{}", l.name);
        }
    }

    /// NVRTC compiles every stage file with its layout checks: parameter counts and sizes
    /// as the kernels declare them, by-value struct sizes, and member offsets (from the
    /// probe kernels' PTX) equal to `offset_of!` here. Skips when libnvrtc is absent.
    #[test]
    fn layouts_match_the_kernels_under_nvrtc() {
        if !nvrtc::nvrtc_present() {
            eprintln!("SKIP: libnvrtc cannot be loaded (LD_LIBRARY_PATH=<site-packages>/nvidia/cuda_nvrtc/lib)");
            return;
        }
        let mut probes = 0;
        for file in nvrtc::MODULES {
            let src = expanded(file) + &layout_checks(file);
            let c = nvrtc::compile(file, &src, "compute_90").unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(c.log.is_empty(), "{file}: {}", c.log);
            for l in BY_VALUE.iter().filter(|l| l.kernels[0].file() == *file) {
                let (cxx, members) = l.by_value.unwrap();
                for (m, off, _) in members.iter().filter(|(m, _, _)| !m.starts_with("_pad")) {
                    assert_eq!(probed_offset(&c.ptx, cxx, m), Some(*off), "{cxx}::{m}: offset in the kernel vs offset_of!");
                    probes += 1;
                }
            }
        }
        assert!(probes > 60, "{probes} members probed");
    }

    /// The checks can fail: a wrong size, a wrong parameter count and a moved member are
    /// each caught.
    #[test]
    fn layout_checks_catch_a_mismatch() {
        if !nvrtc::nvrtc_present() {
            eprintln!("SKIP: libnvrtc cannot be loaded");
            return;
        }
        let src = expanded("scan.cu");
        let checks = layout_checks("scan.cu");
        let size = format!("sizeof(ScanArgs) == {}", size_of::<ScanArgs>());
        assert!(checks.contains(&size));
        let bad = checks.replace(&size, &format!("sizeof(ScanArgs) == {}", size_of::<ScanArgs>() - 8));
        assert!(nvrtc::compile("scan.cu", &(src.clone() + &bad), "compute_90").is_err(), "a wrong struct size compiles");
        let n = format!("decltype(silica_params(&group_all))::n == {}", GroupAll::PARAMS.len());
        let bad = checks.replace(&n, &format!("decltype(silica_params(&group_all))::n == {}", GroupAll::PARAMS.len() + 1));
        assert!(nvrtc::compile("scan.cu", &(src.clone() + &bad), "compute_90").is_err(), "a wrong parameter count compiles");
        // A member moved in the C++ struct: its probe reports the new offset.
        let moved = src.replacen("    u32 nc;                  // 16-byte chunks per row\n", "", 1).replacen(
            "    u32 cap;\n    u32* masked;",
            "    u32 cap;\n    u32 nc;\n    u32* masked;",
            1,
        );
        assert_ne!(moved, src, "the edit applies");
        let c = nvrtc::compile("scan.cu", &(moved + &checks), "compute_90");
        // (An error is also a catch: the struct's size changed too.)
        if let Ok(c) = c {
            assert_ne!(probed_offset(&c.ptx, "ScanArgs", "nc"), Some(offset_of!(ScanArgs, nc)));
        }
    }

    /// The launch's parameter pointers are the fields, in the signature's order, each
    /// pointing at the field's own bytes (what the driver copies).
    #[test]
    fn param_ptrs_point_at_each_field_in_order() {
        let g = GroupAll {
            lists: 0x1111_0000_0000_0001,
            npairs: 2,
            list_nw: 0x3333_0000_0000_0003,
            L: 4,
            tw: 5,
            se: 6,
            cnt_g: 7,
            fill_g: 8,
            smem_counts: 9,
            pair_start: 10,
            tile_start: 11,
            stile_start: 12,
            list_pairs: 13,
            tbucket: 14,
            sbucket: 15,
            zero: 16,
            nzero: 17,
        };
        let ptrs = g.param_ptrs();
        assert_eq!(ptrs.len(), GroupAll::PARAMS.len());
        let read = |i: usize| -> u64 {
            let n = GroupAll::PARAMS[i].1;
            // SAFETY: each pointer addresses a live field of `g` of PARAMS[i].1 bytes.
            let b = unsafe { std::slice::from_raw_parts(ptrs[i] as *const u8, n) };
            b.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64)
        };
        let want = [0x1111_0000_0000_0001, 2, 0x3333_0000_0000_0003, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(read(i), *w, "parameter {i} ({})", GroupAll::PARAMS[i].0);
        }
        // A by-value struct is one parameter: its bytes, padding zero.
        let s = ScanArgs { codes: 1, nc: 2, qscale: 3, ..Default::default() };
        let p = s.param_ptrs();
        assert_eq!(p.len(), 1);
        // SAFETY: the pointer addresses `s`, size_of::<ScanArgs>() bytes.
        let b = unsafe { std::slice::from_raw_parts(p[0] as *const u8, size_of::<ScanArgs>()) };
        assert_eq!(b, bytemuck::bytes_of(&s));
        assert_eq!(&b[8..16], &[2, 0, 0, 0, 0, 0, 0, 0], "nc then explicit zero padding");
    }

    #[test]
    fn probed_offset_reads_ld_param() {
        let ptx = "\tld.param.u64 \t%rd2, [silica_offset_S_a_param_0];\n\tld.param.u32 \t%r1, [silica_offset_S_b_param_0+8];\n";
        assert_eq!(probed_offset(ptx, "S", "a"), Some(0));
        assert_eq!(probed_offset(ptx, "S", "b"), Some(8));
        assert_eq!(probed_offset(ptx, "S", "c"), None);
    }

    #[test]
    fn source_params_reads_signatures() {
        let src = "// extern \"C\" __global__ void k(int z)\nextern \"C\" __global__ void __launch_bounds__(256, 2) k(const u32* __restrict__ lists, u32 n) {}\n__device__ void k(int q);\n";
        assert_eq!(source_params(src, "k"), Some(vec!["lists".to_string(), "n".to_string()]));
        assert_eq!(source_params(src, "zz"), None);
    }
}
