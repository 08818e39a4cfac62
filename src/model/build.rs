//! Index building: vectors + attributes -> [`Index`].
//!
//! Steps: validate -> (cosine: normalize) -> k-means (sample) -> assign every row to its
//! nearest centroid -> sort rows by list -> int8 quantization (per-row scale) -> f16
//! rerank cache -> exact attribute CSR -> Bloom bit-planes.

use super::attributes::AttributeTable;
use super::kmeans::{self, KMeansParams};
use super::npy::Matrix;
use super::quantize::quantize;
use super::{BloomParams, BloomPlanes, Index, Metric};
use crate::error::{Error, Result};
use half::f16;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::path::Path;

/// Build settings. `Default` gives the CLI defaults.
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Number of inverted lists; `None` picks [`default_nlist`].
    pub nlist: Option<usize>,
    pub bloom: BloomParams,
    pub metric: Metric,
    /// Lloyd iterations.
    pub kmeans_iters: usize,
    /// At most this many training rows per list.
    pub sample_per_list: usize,
    pub seed: u64,
    /// Store `items.embeddings` (f16) for `refine` rerank.
    pub store_embeddings: bool,
    /// Numeric attribute fields to store as rerank features.
    pub features: Vec<String>,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            nlist: None,
            bloom: BloomParams::default(),
            metric: Metric::Ip,
            kmeans_iters: 10,
            sample_per_list: 64,
            seed: 1,
            store_embeddings: true,
            features: Vec::new(),
            progress: false,
        }
    }
}

/// Default nlist for N items: the power of two nearest 4·√N (Faiss's rule of thumb,
/// 1024 for the 63,666-item Debian corpus), at least 1 and at most N.
pub fn default_nlist(n: usize) -> usize {
    if n <= 1 {
        return 1;
    }
    let target = 4.0 * (n as f64).sqrt();
    let p = 2f64.powf(target.log2().round()) as usize;
    p.clamp(1, n)
}

/// Builds an [`Index`] from vectors and attributes.
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    pub params: BuildParams,
}

fn spinner(show: bool, msg: &str, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg:<22} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

impl IndexBuilder {
    pub fn new(params: BuildParams) -> Self {
        IndexBuilder { params }
    }

    /// Read `vectors` (.npy) and `attributes` (.jsonl), then [`IndexBuilder::build`].
    pub fn build_files(&self, vectors: &Path, attributes: &Path) -> Result<Index> {
        let m = super::npy::read(vectors)?;
        let table = super::attributes::read_jsonl(attributes, &self.params.features)?;
        self.build(m, table)
    }

    /// Build an index. Errors: NaN/Inf in vectors, `ip` values beyond the f16 range
    /// (±65504), a sum of squares beyond f32 (row and column named: [`super::finite`]), N = 0, D = 0,
    /// attribute rows != vector rows, nlist = 0, zero vectors with `cosine`.
    pub fn build(&self, mut vectors: Matrix, table: AttributeTable) -> Result<Index> {
        let p = &self.params;
        let (n, d) = (vectors.rows, vectors.dim);
        if d == 0 {
            return Err(Error::param("vectors", "dimension D is 0"));
        }
        if n == 0 {
            return Err(Error::param("vectors", "no vectors to index (N = 0)"));
        }
        if table.ids.len() != n {
            return Err(Error::CountMismatch {
                what: "index build".into(),
                left_name: "attributes".into(),
                left: table.ids.len(),
                right_name: "vectors".into(),
                right: n,
            });
        }
        super::finite::check_rows(&vectors.data, d, p.metric == Metric::Ip, "vectors")?;
        if p.bloom.bits == 0 || p.bloom.hashes == 0 {
            return Err(Error::param("bloom-bits", "Bloom bits and hashes must be at least 1"));
        }
        if p.metric == Metric::Cosine {
            for (r, row) in vectors.data.chunks_mut(d).enumerate() {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm == 0.0 {
                    return Err(Error::param("vectors", format!("row {r} is all zeros; cosine needs non-zero vectors")));
                }
                row.iter_mut().for_each(|x| *x /= norm);
            }
        }
        let nlist = p.nlist.unwrap_or_else(|| default_nlist(n));
        if nlist == 0 {
            return Err(Error::param("nlist", "must be at least 1"));
        }
        if nlist > n {
            return Err(Error::param("nlist", format!("{nlist} lists for {n} vectors; nlist must be <= N")));
        }

        // 1. k-means.
        let pb = spinner(p.progress, "k-means", p.kmeans_iters as u64);
        let kp = KMeansParams { k: nlist, iters: p.kmeans_iters, sample_per_cluster: p.sample_per_list, seed: p.seed };
        let centroids = kmeans::train(&vectors.data, d, &kp, &|| pb.inc(1));
        pb.finish_and_clear();

        // 2. Assign and sort rows by (list, source row).
        let pb = spinner(p.progress, "assign + quantize", 3);
        let assignment = kmeans::assign(&vectors.data, &centroids, d);
        let mut perm: Vec<usize> = (0..n).collect();
        perm.sort_by_key(|&r| (assignment[r].0, r));
        let mut list_offsets = vec![0u64; nlist + 1];
        for &(l, _) in &assignment {
            list_offsets[l as usize + 1] += 1;
        }
        for l in 0..nlist {
            list_offsets[l + 1] += list_offsets[l];
        }
        pb.inc(1);

        // 3. Quantize (sorted order).
        let sorted: Vec<f32> = perm.par_iter().flat_map_iter(|&r| vectors.row(r).iter().copied()).collect();
        let items = quantize(&sorted, d);
        let centroid_codes = quantize(&centroids, d);
        let embeddings = p.store_embeddings.then(|| sorted.par_iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>().into());
        drop(sorted);
        pb.inc(1);
        let features = (!table.feature_names.is_empty()).then(|| {
            let f = table.feature_names.len();
            perm.iter().flat_map(|&r| table.features[r * f..(r + 1) * f].iter().copied()).collect()
        });
        let ids: crate::model::Ids = perm.iter().map(|&r| table.ids[r].as_str()).collect();
        let attrs = table.attrs.permute(&perm);
        pb.finish_and_clear();

        // 4. Bloom bit-planes: hash each dictionary value once.
        let schema = &attrs.schema;
        let value_bits: Vec<Vec<u32>> = schema
            .fields
            .par_iter()
            .flat_map_iter(|f| f.values.iter().map(|v| p.bloom.positions(&f.name, v)))
            .collect();
        let bloom = BloomPlanes::build(p.bloom, n, |r| attrs.row(r).iter().flat_map(|&v| value_bits[v as usize].iter().copied()).collect());

        Ok(Index {
            dim: d,
            metric: p.metric,
            centroids,
            centroid_codes,
            list_offsets,
            items,
            embeddings,
            features,
            feature_names: table.feature_names.clone(),
            ids,
            source_rows: perm.iter().map(|&r| r as u64).collect(),
            bloom,
            attrs,
            rerank: None,
            live: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_nlist_is_sane() {
        assert_eq!(default_nlist(1), 1);
        assert_eq!(default_nlist(63_666), 1024);
        assert!(default_nlist(10) <= 10);
        assert_eq!(default_nlist(1_000_000), 4096);
    }
}
