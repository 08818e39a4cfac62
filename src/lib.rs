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

pub mod backend;
pub mod bench;
pub mod device;
pub mod error;
pub mod eval;
pub mod filter;
pub mod graph;
pub mod model;
pub mod progress;
pub mod rerank;
pub mod serve;
pub mod topk;

pub use device::Device;
pub use error::{Error, Result};
pub use filter::{Filter, FilterError};
pub use graph::{Executor, RerankMode, SearchParams, SearchRequest, SearchResponse};
pub use model::{build::BuildParams, Index, IndexBuilder, Metric};
