//! # silica — the index as a model
//!
//! A GPU-native retrieval engine after Meta's SilverTorch (arXiv 2511.14881): the whole
//! retrieval stage is one artifact of tensors ([`model::Index`], a safetensors file) and
//! one executor ([`graph::Executor`]) that runs it as a single forward pass:
//!
//! ```text
//! Bloom filter -> probe -> int8 score + top-K -> rerank -> final top-K
//! ```
//!
//! Backends ([`backend::Backend`]) implement the stages; the executor owns their order.
//! Stages 1-3 are integer math and give bit-identical results on every backend.
//!
//! This crate is the facade of the workspace: the core's API ([`silica_core`]) at the paths
//! users know, the backends the build has ([`backend::cuda`], [`backend::wgpu`], behind the
//! cargo features `cuda` and `wgpu`), the registry that opens them by name
//! ([`graph::open`], [`registry`]), the server ([`serve`]) and the benchmarks ([`mod@bench`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use silica::graph::{SearchParams, SearchRequest};
//! # fn main() -> silica::Result<()> {
//! let index = Arc::new(silica::model::format::load("debian.silica".as_ref())?);
//! let searcher = silica::graph::open("auto", index.clone())?; // cpu | wgpu | cuda | cuda:1 | cpu,cpu
//! let queries = vec![0.0f32; index.dim]; // [B, D] f32, row-major
//! let res = searcher.search(&SearchRequest { queries: &queries, filters: &[], params: SearchParams { k: 10, ..Default::default() } })?;
//! println!("{:?}", res[0].rows); // one response per query
//! # Ok(()) }
//! ```

pub use silica_core::{
    BuildParams, Error, Executor, Filter, FilterError, Index, IndexBuilder, Metric, RerankMode, Result, SearchParams, SearchRequest,
    SearchResponse,
};
pub use silica_core::{error, eval, filter, model, progress, rerank, topk};

/// The graph executor ([`silica_core::graph`]) and [`open`](silica_registry::open), which opens one by backend name
/// through the [`registry`].
pub mod graph {
    pub use silica_core::graph::*;
    pub use silica_registry::{open, open_planned};
}

/// The `Backend` trait, the CPU reference and the sharded backend ([`silica_core::backend`]),
/// and the GPU backends this build has.
pub mod backend {
    pub use silica_core::backend::*;
    #[cfg(feature = "cuda")]
    pub use silica_cuda as cuda;
    #[cfg(feature = "wgpu")]
    pub use silica_wgpu as wgpu;
}

/// Device selection and `silica devices` ([`silica_registry::device`]).
pub mod device {
    pub use silica_registry::device::*;
}

pub use silica_bench as bench;
pub use silica_registry as registry;
pub use silica_registry::Device;
pub use silica_serve as serve;
