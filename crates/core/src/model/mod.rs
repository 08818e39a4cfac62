//! The index artifact: tensors and metadata of DESIGN.md "The index artifact".
//!
//! * [`mod@format`] reads and writes the safetensors file (`*.silica`).
//! * [`build`] turns vectors + attributes into an [`Index`] (k-means, int8, Bloom, CSR).
//! * [`npy`], [`attributes`] read the inputs; [`bloom`] is the Bloom hashing spec;
//!   [`quantize`] is the int8 rule shared by items, centroids and queries; [`finite`]
//!   the value ranges every stored or queried vector must respect.

pub mod attributes;
pub mod bloom;
pub mod build;
pub mod calibration;
pub mod columns;
pub mod compute;
pub mod finite;
pub mod format;
pub mod kmeans;
pub mod load;
pub mod metric;
pub mod npy;
pub mod postings;
pub mod quantize;
pub mod source;
pub mod tensor;
pub mod writer;

pub use attributes::{Attributes, FieldSchema, Schema};
pub use bloom::{BloomParams, BloomPlanes};
pub use build::IndexBuilder;
pub use columns::{Column, ColumnType, Columns};
use half::f16;
use serde::{Deserialize, Serialize};
pub use tensor::{Ids, Tensor};

/// Similarity metric. `cosine` normalizes items and queries to unit L2 norm, then uses
/// the inner product; `ip` uses the raw inner product; `l2` ranks by squared Euclidean
/// distance (results best first, `scores` = the negated squared distance; stages 1-3 rank
/// by the exact integer form of [`metric`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Raw inner product.
    Ip,
    /// Inner product of unit-normalized vectors.
    Cosine,
    /// Squared Euclidean distance (scores negated).
    L2,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
        })
    }
}

/// An int8 matrix with one f32 scale per row: `x[r][c] ≈ codes[r*dim + c] as f32 * scale[r]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct I8Matrix {
    /// Row count.
    pub rows: usize,
    /// Row length (D).
    pub dim: usize,
    /// `[rows, dim]` int8 codes, row-major.
    pub codes: Tensor<i8>,
    /// `[rows]` per-row scale (absmax / 127; 0 for an all-zero row).
    pub scale: Tensor<f32>,
}

impl I8Matrix {
    /// Codes of row `r` (`dim` elements).
    #[inline]
    pub fn row(&self, r: usize) -> &[i8] {
        &self.codes[r * self.dim..(r + 1) * self.dim]
    }
}

/// Optional multi-task rerank model stored in the artifact under `rerank.*`.
pub use crate::rerank::RerankModel;

/// A whole silica index in host memory; the big tensors ([`Tensor`], [`Ids`]) are owned
/// or views into the memory-mapped artifact (zero-copy load, see [`mod@format`]). Rows are sorted by inverted list: list `l` holds
/// rows `list_offsets[l]..list_offsets[l+1]`. `source_rows[r]` maps a sorted row back to
/// its 0-based line in the attributes file the index was built from.
#[derive(Clone, Debug)]
pub struct Index {
    /// Vector dimension D.
    pub dim: usize,
    /// Similarity metric.
    pub metric: Metric,
    /// `ivf.centroids`: f32 `[L, D]` k-means centroids.
    pub centroids: Vec<f32>,
    /// `ivf.centroid_codes` + `ivf.centroid_scale`: int8 centroids used by the probe.
    pub centroid_codes: I8Matrix,
    /// `ivf.list_offsets`: `[L+1]` CSR offsets into the sorted rows.
    pub list_offsets: Vec<u64>,
    /// `items.codes` + `items.scale`: int8 item codes `[N, D]`, sorted by list.
    pub items: I8Matrix,
    /// `items.embeddings`: f16 `[N, D]` rerank cache (optional).
    pub embeddings: Option<Tensor<f16>>,
    /// `items.sqnorms`: i32 `[N]` squared L2 norm of each row's int8 codes (`Σ c²`), for
    /// the `l2` metric (empty otherwise; [`metric::sqnorms`] computes it).
    pub sqnorms: Tensor<i32>,
    /// `items.features`: f32 `[N, F]` dense rerank features (optional; F = feature_names.len()).
    pub features: Option<Tensor<f32>>,
    /// Names of the F feature columns.
    pub feature_names: Vec<String>,
    /// `items.row_ids` + `items.row_id_offsets`: external id of each sorted row.
    pub ids: Ids,
    /// `items.source_rows`: source line of each sorted row.
    pub source_rows: Tensor<u64>,
    /// `bloom.planes`: transposed Bloom bit-planes.
    pub bloom: BloomPlanes,
    /// `attrs.offsets` + `attrs.values` and the attribute schema (dictionaries).
    pub attrs: Attributes,
    /// `cols.*`: typed columns (int, float, bool, timestamp), one value per row.
    pub columns: Columns,
    /// `rerank.*`: optional multi-task rerank model.
    pub rerank: Option<RerankModel>,
    /// Live-row bitset `[ceil(N/64)]` (bit set = row is live). `None`: every row is live.
    /// Deleted or replaced rows (tombstones, see `silica serve`) have their bit cleared;
    /// stage 2 ANDs it into every mask, so a dead row is never scanned. Not stored in the
    /// artifact: compaction removes dead rows physically.
    pub live: Option<Vec<u64>>,
    /// `__metadata__["calibration"]`: the default nprobe measured at build time (`None`:
    /// not calibrated; search falls back to [`crate::graph::default_nprobe`]).
    pub calibration: Option<calibration::Calibration>,
}

impl Index {
    /// Number of items N.
    pub fn len(&self) -> usize {
        self.items.rows
    }
    /// True when the index holds no items.
    pub fn is_empty(&self) -> bool {
        self.items.rows == 0
    }
    /// Number of inverted lists L (nlist).
    pub fn nlist(&self) -> usize {
        self.list_offsets.len() - 1
    }
    /// True when `other` can be a changed version of `self` in the sense of
    /// `Backend::update`: same rows, dimension, lists, Bloom parameters, and the same
    /// optional tensors (embeddings, features), so that only live bits, Bloom planes and
    /// attributes may differ. Item codes are not compared (O(N x D)); callers vouch for them.
    pub fn same_vectors_and_lists(&self, other: &Index) -> bool {
        self.len() == other.len()
            && self.dim == other.dim
            && self.list_offsets == other.list_offsets
            && self.bloom.params == other.bloom.params
            && self.embeddings.is_some() == other.embeddings.is_some()
            && self.features.is_some() == other.features.is_some()
            && self.feature_names.len() == other.feature_names.len()
    }

    /// Word `w` of the live bitset (all ones when every row is live).
    #[inline]
    pub fn live_word(&self, w: usize) -> u64 {
        self.live.as_ref().map_or(!0, |l| l[w])
    }

    /// nprobe a request without one gets: the calibrated value when the index has one,
    /// else [`crate::graph::default_nprobe`]; at most nlist.
    pub fn default_nprobe(&self) -> usize {
        let nlist = self.nlist();
        self.calibration.as_ref().map_or_else(|| crate::graph::default_nprobe(nlist), |c| c.nprobe.clamp(1, nlist.max(1)))
    }

    /// The attributes `names` of sorted row `r` as a JSON object: a string field as a
    /// string (a multi-valued field as a list, `[]` when empty), a typed column as its
    /// number, bool or RFC 3339 timestamp, `null` when the row has no value.
    ///
    /// # Errors
    /// [`crate::Error::Param`] naming `fields` for a name the index does not have.
    pub fn fields_json(&self, r: usize, names: &[String]) -> crate::Result<serde_json::Map<String, serde_json::Value>> {
        use serde_json::Value;
        let schema = &self.attrs.schema;
        let mut out = serde_json::Map::new();
        for name in names {
            let v = if let Some(c) = self.columns.get(name) {
                c.json(r)
            } else if let Some(f) = schema.field(name) {
                let fs = &schema.fields[f];
                let end = fs.base + fs.values.len() as u32;
                let vals: Vec<Value> = self
                    .attrs
                    .row(r)
                    .iter()
                    .filter(|&&v| v >= fs.base && v < end)
                    .map(|&v| Value::String(fs.values[(v - fs.base) as usize].clone()))
                    .collect();
                if fs.multi { Value::Array(vals) } else { vals.into_iter().next().unwrap_or(Value::Null) }
            } else {
                let known: Vec<String> = crate::filter::Dictionary::field_names(schema);
                return Err(crate::Error::param("fields", format!("unknown field `{name}` (known fields: {})", known.join(", "))));
            };
            out.insert(name.clone(), v);
        }
        Ok(out)
    }

    /// Row range of list `l`.
    #[inline]
    pub fn list_range(&self, l: usize) -> std::ops::Range<usize> {
        self.list_offsets[l] as usize..self.list_offsets[l + 1] as usize
    }
}
