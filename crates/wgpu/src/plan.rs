//! Filter plans as one u32 blob for the shaders: the one encoding of every GPU backend
//! ([`silica_core::filter::encode`], layout, validator and host evaluators there) in its
//! single-buffer form ([`Encoded::with_table`]): `blob[q]` = the word offset of query
//! q's plan record (bit 31: the plan passes everything), the records after the table.
//! Plans shared by several queries are stored once. Typed terms must be bound
//! (`Plan::bind`): wgpu does not evaluate column terms itself.
//!
//! [`Encoded::with_table`]: silica_core::filter::encode::Encoded::with_table

use silica_core::error::Result;
use silica_core::filter::Plan;
use silica_core::filter::encode::{self, Limits};

/// Largest blob (u32 words) the shaders index.
const MAX_WORDS: usize = 1 << 30;

/// Encode `plans` (one per query or per counted plan) for an index with Bloom `bloom`
/// and `rows` rows: every term value must carry exactly `bloom.hashes` plane rows below
/// `bloom.bits`, every bound mask must cover the rows. Errors: a malformed or unbound
/// plan, a plan compiled for another Bloom k, a blob past 2^30 words.
pub fn encode(plans: &[&Plan], bloom: &silica_core::model::BloomParams, rows: usize) -> Result<Vec<u32>> {
    let enc = encode::encode(plans)?;
    enc.validate(&Limits { planes: Some(bloom.bits), hashes: Some(bloom.hashes), mask_words: Some(rows.div_ceil(64)), col_terms: false })?;
    Ok(enc.with_table(MAX_WORDS)?)
}
