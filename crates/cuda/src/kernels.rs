//! Kernel ids: every `extern "C" __global__` entry of `cuda/*.cu`, in one table (entry
//! name, stage file). [`Dev`](super::Dev) loads kernels by id and launches take an id,
//! so a misspelt or unloaded kernel is a compile error, not a panic at its first launch.

/// Defines [`KernelId`] and its table from `"file" => { Variant = "entry", ... }` groups.
macro_rules! kernels {
    ($($file:literal => { $($id:ident = $name:literal,)* })*) => {
        /// One kernel of `cuda/*.cu` (see [`KernelId::name`], [`KernelId::file`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum KernelId {
            $($(
                #[doc = concat!("`", $name, "` (cuda/", $file, ")")]
                $id,
            )*)*
        }

        impl KernelId {
            /// Every kernel, in table order (`ALL[k as usize] == k`).
            pub const ALL: &'static [KernelId] = &[$($(KernelId::$id,)*)*];
            const TABLE: &'static [(&'static str, &'static str)] = &[$($(($name, $file),)*)*];
        }
    };
}

kernels! {
    "probe.cu" => {
        ProbeScores = "probe_scores",
    }
    "filter.cu" => {
        MaskOffsets = "mask_offsets",
        FilterMask = "filter_mask",
        BloomFull = "bloom_full",
        MaskGather = "mask_gather",
        CandSample = "cand_sample",
        CandCompact = "cand_compact",
        PostCompact = "post_compact",
    }
    "scan.cu" => {
        GroupAll = "group_all",
        ScanPrepare = "scan_prepare",
        ScanSample = "scan_sample",
        ScanMain = "scan_main",
        ScanSampleFast = "scan_sample_fast",
        ScanMainFast = "scan_main_fast",
        ScanSampleStream = "scan_sample_stream",
        ScanMainStream = "scan_main_stream",
        WarpSmemSize = "warp_smem_size",
        StreamSmemSize = "stream_smem_size",
        ScanThreshold = "scan_threshold",
        ScanSelect = "scan_select",
        CandScore = "cand_score",
        CodesRows = "codes_rows",
    }
    "select.cu" => {
        TopkSelect = "topk_select",
        BitonicGlobal = "bitonic_global",
        BitonicLocal = "bitonic_local",
        DecodeSorted = "decode_sorted",
    }
    "rerank.cu" => {
        RerankScale = "rerank_scale",
        RerankRefine = "rerank_refine",
        RerankModel = "rerank_model",
    }
    "bench.cu" => {
        ReadBw = "read_bw",
    }
    "update.cu" => {
        CopyU64 = "copy_u64",
        ScatterU64 = "scatter_u64",
        CopyU32 = "copy_u32",
        ScatterU32 = "scatter_u32",
    }
    "kmeans.cu" => {
        AssignI8 = "assign_i8",
        KmAssign = "km_assign",
        KmAccum = "km_accum",
        KmToF32 = "km_to_f32",
        KmSplit = "km_split",
        KmNormalize = "km_normalize",
        GatherRows = "gather_rows",
    }
    "query.cu" => {
        QueryPrepare = "query_prepare",
        QueryResults = "query_results",
    }
}

impl KernelId {
    /// The `extern "C"` entry name (what the driver looks up in the module).
    pub fn name(self) -> &'static str {
        Self::TABLE[self as usize].0
    }

    /// The stage file that defines it (one module per file).
    pub fn file(self) -> &'static str {
        Self::TABLE[self as usize].1
    }

    /// The kernels of stage file `file`, in table order.
    pub fn in_file(file: &str) -> impl Iterator<Item = KernelId> + '_ {
        Self::ALL.iter().copied().filter(move |k| k.file() == file)
    }
}

#[cfg(test)]
mod tests {
    use super::KernelId;

    /// `extern "C" __global__` entry names of a source (comments skipped).
    fn entries(src: &str) -> Vec<String> {
        src.lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .filter_map(|l| l.split_once("extern \"C\" __global__ void"))
            .filter_map(|(_, rest)| {
                let rest = rest.trim_start();
                // `__launch_bounds__(1024) name(`: skip the bounds' parentheses.
                let rest = match rest.strip_prefix("__launch_bounds__") {
                    Some(b) => b.split_once(')')?.1,
                    None => rest,
                };
                Some(rest.split('(').next()?.trim().to_string())
            })
            .collect()
    }

    /// Every entry of every stage file has an id and every id names an entry of its file
    /// (a missing entry would fail at module load, an extra one would never be loaded).
    #[test]
    fn table_matches_the_sources() {
        for (i, k) in KernelId::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in declaration order");
        }
        for file in super::super::nvrtc::MODULES {
            let src = super::super::nvrtc::source(file).expect("embedded source");
            let mut found = entries(src);
            found.sort_unstable();
            let mut want: Vec<String> = KernelId::in_file(file).map(|k| k.name().to_string()).collect();
            want.sort_unstable();
            assert_eq!(found, want, "{file}: kernels in the source vs KernelId");
        }
        for k in KernelId::ALL {
            assert!(super::super::nvrtc::MODULES.contains(&k.file()), "{k:?}: {} is not a module", k.file());
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = KernelId::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
