//! # silica-core — the index as a model
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
//! This crate holds everything but the GPU backends: the model (artifact, builder), the
//! filter language, the graph executor, the [`backend::Backend`] trait with the CPU
//! reference ([`backend::cpu`]) and the sharded backend. GPU backends are crates of their
//! own (`silica-wgpu`, `silica-cuda`); `silica-registry` names them all once.

pub mod backend;
pub mod error;
pub mod eval;
pub mod filter;
pub mod graph;
pub mod model;
pub mod progress;
pub mod rerank;
pub mod topk;

pub use error::{Error, Result};
pub use filter::{Filter, FilterError};
pub use graph::{Executor, RerankMode, SearchParams, SearchRequest, SearchResponse};
pub use model::{Index, IndexBuilder, Metric, build::BuildParams};
