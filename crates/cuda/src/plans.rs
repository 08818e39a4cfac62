//! Filter plans as the CUDA kernels read them (`cuda/common.cuh`, "Filter plans"): the
//! one encoding of every GPU backend, [`silica_core::filter::encode`] (layout, validator
//! and host evaluators there). Unbound typed column terms become `COL_TERM` records over
//! the device columns ([`DevColumn`]): a bound that changes per query costs its few words
//! there, not a mask over every row.

use silica_core::error::Result;
use silica_core::filter::Plan;
use silica_core::filter::encode as enc;

pub use enc::{DevColumn, Encoded, Limits};

/// Encode `plans` (one per query; typed terms bound). Queries sharing a `&Plan` share its record.
pub fn encode(plans: &[&Plan]) -> Result<Encoded> {
    Ok(enc::encode(plans)?)
}

/// [`encode`] with unbound typed column terms as [`COL_TERM`](enc::COL_TERM) records over the device
/// columns `cols` gives by name. Errors: an unbound typed term whose column `cols` lacks
/// (or a presence test: those are always bound).
pub fn encode_with(plans: &[&Plan], cols: &dyn Fn(&str) -> Option<DevColumn>) -> Result<Encoded> {
    Ok(enc::encode_with(plans, cols)?)
}
