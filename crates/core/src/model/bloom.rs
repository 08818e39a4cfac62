//! Bloom signatures stored as transposed bit-planes (SilverTorch, arXiv 2511.14881 §3).
//!
//! **Hashing (part of the format; every implementation must agree):** for an attribute
//! value, `h = xxh3_64_with_seed(field ‖ 0x00 ‖ value, seed)` over the UTF-8 bytes;
//! `h1 = h & 0xffff_ffff`, `h2 = (h >> 32) | 1`; the k bit positions are
//! `(h1 + i·h2) mod M` for `i = 0..k` (double hashing, computed in u64).
//!
//! **Layout:** `planes[b * words + w]` is bit-plane `b` (one row per bit position), word `w`
//! covers items `64w .. 64w+63`, item `r` at bit `r % 64`. An item sets bit `b` when any of
//! its values hashes to `b`. A term `field = v` is the AND of its k planes.

use serde::{Deserialize, Serialize};

/// Bloom parameters recorded in the artifact metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BloomParams {
    /// Number of bits (bit-planes) M.
    pub bits: u32,
    /// Hashes per value k.
    pub hashes: u32,
    /// xxh3 seed.
    pub seed: u64,
}

impl Default for BloomParams {
    /// 1024 bits and 5 hashes, as in the SilverTorch paper.
    fn default() -> Self {
        BloomParams { bits: 1024, hashes: 5, seed: 0 }
    }
}

impl BloomParams {
    /// The hash function name stored in metadata.
    pub const HASH: &'static str = "xxh3_64(field 0x00 value, seed); pos_i = (lo32 + i*(hi32|1)) mod M";

    /// Bit positions (plane rows) of `field = value`; `hashes` entries, may repeat.
    pub fn positions(&self, field: &str, value: &str) -> Vec<u32> {
        let mut key = Vec::with_capacity(field.len() + value.len() + 1);
        key.extend_from_slice(field.as_bytes());
        key.push(0);
        key.extend_from_slice(value.as_bytes());
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&key, self.seed);
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..self.hashes as u64).map(|i| (h1.wrapping_add(i.wrapping_mul(h2)) % self.bits as u64) as u32).collect()
    }
}

/// Transposed Bloom bit-planes `[M, words]`, `words = ceil(N / 64)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BloomPlanes {
    pub params: BloomParams,
    /// Words per plane: ceil(N / 64).
    pub words: usize,
    /// `[M * words]` plane-major bits.
    pub planes: crate::model::Tensor<u64>,
}

impl BloomPlanes {
    /// Word `w` of plane `b`.
    #[inline]
    pub fn word(&self, b: u32, w: usize) -> u64 {
        self.planes[b as usize * self.words + w]
    }

    /// Build planes for `n` rows; `row_positions(r)` yields the bit positions of row r.
    pub fn build(params: BloomParams, n: usize, row_positions: impl Fn(usize) -> Vec<u32> + Sync) -> Self {
        use rayon::prelude::*;
        let words = n.div_ceil(64);
        // One task per 64-row word: each writes its own column of every plane.
        let columns: Vec<Vec<(u32, u64)>> = (0..words)
            .into_par_iter()
            .map(|w| {
                let mut bits: std::collections::BTreeMap<u32, u64> = Default::default();
                for r in w * 64..((w + 1) * 64).min(n) {
                    for b in row_positions(r) {
                        *bits.entry(b).or_default() |= 1u64 << (r % 64);
                    }
                }
                bits.into_iter().collect()
            })
            .collect();
        let mut planes = vec![0u64; params.bits as usize * words];
        for (w, col) in columns.into_iter().enumerate() {
            for (b, m) in col {
                planes[b as usize * words + w] = m;
            }
        }
        BloomPlanes { params, words, planes: planes.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_stable_and_in_range() {
        let p = BloomParams { bits: 1000, hashes: 7, seed: 42 };
        let a = p.positions("section", "libs");
        assert_eq!(a.len(), 7);
        assert!(a.iter().all(|&b| b < 1000));
        assert_eq!(a, p.positions("section", "libs"));
        assert_ne!(a, p.positions("sectio", "nlibs"), "field/value boundary must matter");
        // Pin the spec: xxh3 of "f\0v" with seed 0.
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(b"f\0v", 0);
        let q = BloomParams { bits: 1024, hashes: 2, seed: 0 };
        let want0 = ((h & 0xffff_ffff) % 1024) as u32;
        let want1 = (((h & 0xffff_ffff) + ((h >> 32) | 1)) % 1024) as u32;
        assert_eq!(q.positions("f", "v"), vec![want0, want1]);
    }

    #[test]
    fn planes_have_every_rows_bits() {
        let p = BloomParams { bits: 64, hashes: 3, seed: 1 };
        let n = 130;
        let pos = |r: usize| p.positions("k", &format!("v{}", r % 5));
        let planes = BloomPlanes::build(p, n, pos);
        assert_eq!(planes.words, 3);
        for r in 0..n {
            for b in pos(r) {
                assert_ne!(planes.word(b, r / 64) & (1 << (r % 64)), 0);
            }
        }
        // Padding bits past N stay clear.
        for b in 0..64 {
            assert_eq!(planes.word(b, 2) >> 2, 0);
        }
    }
}
