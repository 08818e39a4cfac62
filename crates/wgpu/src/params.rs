//! The uniform `Params` block (binding 0) of each stage shader, as Rust structs.
//!
//! One `#[repr(C)]` struct per WGSL `struct Params`, field for field: same names, same
//! order, the shader's padding spelled out, so `bytemuck::bytes_of` is exactly the
//! uniform's bytes. Every field is a `u32` (WGSL `u32`, offset 4 x its index) and every
//! size is a multiple of 16 bytes, as the uniform address space requires. A unit test
//! (params/tests.rs) parses each composed shader with naga and checks names, offsets and
//! the struct span against these definitions.

use bytemuck::Pod;

/// A shader's uniform block: `STAGE` is the stage file (`shaders/{STAGE}.wgsl`) whose
/// `Params` struct this type mirrors; [`crate::kernels::Rec`] checks it against the
/// kernel it dispatches.
pub trait Params: Pod {
    /// The stage file name, as in `kernels::STAGES`.
    const STAGE: &'static str;
    /// `(field name, byte offset)` in declaration order (for the layout test).
    #[cfg(test)]
    const FIELDS: &'static [(&'static str, usize)];
}

/// Declares a `Params` struct of u32 fields and its [`Params`] impl.
macro_rules! params {
    ($(#[$m:meta])* $name:ident = $stage:literal { $($(#[$fm:meta])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fm])* pub $f: u32,)*
        }
        impl Params for $name {
            const STAGE: &'static str = $stage;
            #[cfg(test)]
            const FIELDS: &'static [(&'static str, usize)] = &[$((stringify!($f), std::mem::offset_of!($name, $f))),*];
        }
        const _: () = assert!(size_of::<$name>() % 16 == 0, "uniform structs are a multiple of 16 bytes");
    };
}

params! {
    /// probe.wgsl (`probe_scores`): int8 query x centroid scores of one query group.
    /// 32 bytes.
    Probe = "probe" {
        /// Queries in this group.
        nq,
        /// Lists L (entries per query region).
        nlist,
        /// vec4<u32> (16 int8 codes) per row.
        d16,
        /// First query of the group in `qcodes`.
        q0,
        /// Nonzero: metric l2 (centroid biases and query scales are read).
        l2,
        /// Padding.
        _p0,
        /// Padding.
        _p1,
        /// Padding.
        _p2,
    }
}

params! {
    /// filter.wgsl (`filter_pairs`, `filter_words`, `filter_count`; one layout for all
    /// three): candidate masks and filter counts over one row chunk. 32 bytes.
    Filter = "filter" {
        /// Queries (filter) or plans (count).
        nq,
        /// Probed lists per query (0 for count).
        nprobe,
        /// Mask u32 words per query region (0 for count).
        mstride,
        /// Bloom hashes k.
        hashes,
        /// First u32 word of this row chunk.
        cw_lo,
        /// u32 words in this row chunk.
        cw_n,
        /// Rows N of the index.
        n,
        /// Padding.
        _pad,
    }
}

params! {
    /// scan.wgsl (every `scan_*` entry point; one layout for all): list-major int8 scan
    /// and the per-query top-K0 of one query group and row chunk. 64 bytes.
    Scan = "scan" {
        /// Queries in this group.
        nq,
        /// Probed lists per query.
        nprobe,
        /// First query of the group (absolute).
        q0,
        /// Key entries per query region.
        stride,
        /// Mask u32 words per query region.
        mstride,
        /// First row of this chunk.
        row_lo,
        /// One past the last row of this chunk.
        row_hi,
        /// Probed (query, list) pairs of the whole batch: B x nprobe.
        npairs,
        /// Lists L.
        nlist,
        /// K0, candidates kept per query.
        k,
        /// Next power of two >= K0.
        kp,
        /// Nonzero: metric l2 (row biases and query scales are read).
        l2,
        /// Row blocks of 256 per list (the largest list's): `scan_active_init` writes it
        /// as the x size of `scan_score`'s indirect dispatch.
        row_blocks,
        /// Padding.
        _p0,
        /// Padding.
        _p1,
        /// Padding.
        _p2,
    }
}

params! {
    /// rerank.wgsl (`rerank_scale`, `rerank_refine`, `rerank_model`; one layout for all):
    /// rescoring `[nq, k]` candidates, one row chunk at a time. 64 bytes.
    Rerank = "rerank" {
        /// Queries.
        nq,
        /// Candidates stride per query.
        k,
        /// Embedding dimension D.
        d,
        /// u32 words (f16 pairs) per embedding row: ceil(D / 2).
        d2,
        /// Features per row (0: none stored).
        f,
        /// First row of this chunk.
        row_lo,
        /// One past the last row of this chunk.
        row_hi,
        /// Hidden layers of the model (the task heads follow them in `layers`).
        nlayers,
        /// Task heads of the model.
        tasks,
        /// Model input width: 2D + F.
        in_dim,
        /// Widest hidden layer.
        wmax,
        /// Scratch f32s per candidate.
        sstride,
        /// Offset (f32s) of the task weights in `weights`.
        tw_off,
        /// Nonzero: this chunk stores features.
        has_feats,
        /// Nonzero: metric l2 (model::metric).
        l2,
        /// Padding.
        _pad1,
    }
}

params! {
    /// select.wgsl (`select_gather`): gathers `[nq, k]` candidates into (key, row) entries
    /// for the final top-K. 16 bytes.
    Select = "select" {
        /// Queries in this group.
        nq,
        /// Candidates stride per query (K0).
        k,
        /// First query of this group.
        q0,
        /// Padding.
        _pad1,
    }
}

params! {
    /// topk.wgsl (every entry point; one layout for all): radix select of the best `k`
    /// entries per query and the bitonic sort of the survivors. 64 bytes.
    Topk = "topk" {
        /// Queries in this group.
        nq,
        /// Entries per query region.
        stride,
        /// Entries to keep per query.
        k,
        /// Next power of two >= k.
        kp,
        /// Entries per region when `use_lens` is 0.
        fixed_len,
        /// Region q holds `lens[lens_q0 + q]` entries when `use_lens` is set.
        lens_q0,
        /// First output query written by `topk_pack`.
        out_q0,
        /// Nonzero: `topk_pack` writes scores too.
        write_scores,
        /// Bitonic: first merge size k.
        sk,
        /// Bitonic: last merge size k.
        ske,
        /// Bitonic: distance j (global) or largest j (local).
        sj,
        /// Bitonic local block: min(kp, 2048).
        block_n,
        /// Nonzero: per-query lengths come from `lens`.
        use_lens,
        /// Padding.
        _pad1,
        /// Padding.
        _pad2,
        /// Padding.
        _pad3,
    }
}

params! {
    /// update.wgsl (`scatter_u32`): `dst[idx[i]] = val[i]` for `n` words. 16 bytes.
    Update = "update" {
        /// Words to write.
        n,
        /// Padding.
        _pad0,
        /// Padding.
        _pad1,
        /// Padding.
        _pad2,
    }
}

#[cfg(test)]
mod tests;
