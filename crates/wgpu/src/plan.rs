//! Filter plans as one u32 blob for the shaders (layout in shaders/filter.wgsl):
//! `blob[2i], blob[2i+1]` = ops offset and length of plan i (length 0: passes all);
//! op = kind | (term record offset << 2), kind 0 term, 1 AND, 2 OR, 3 NOT; a term record
//! is (value ids offset, count, Bloom rows offset, values), value v's k plane rows at
//! `blob[rows + v*k ..]`. A typed term (bound, `Plan::bind`) is the record (0, 0, mask
//! offset, [`MASK_TERM`]) with its exact row mask at `blob[mask ..]`, u64 word w as two
//! u32 (low first). Plans shared by several queries are stored once.

use silica_core::error::{Error, Result};
use silica_core::filter::{Op, Plan};
use std::collections::HashMap;

/// `values` of a typed term's record (`MASK_TERM` in filter.wgsl and scan.wgsl).
pub const MASK_TERM: u32 = u32::MAX;

/// Evaluation stack of the shaders (`MAX_DEPTH` in filter.wgsl; one u32 of bits in scan.wgsl).
const KERNEL_STACK: usize = 32;

/// Encode `plans` (one per query or per counted plan). `hashes` is the index's Bloom k:
/// every term value must carry exactly that many plane rows.
pub fn encode(plans: &[&Plan], hashes: u32) -> Result<Vec<u32>> {
    let mut blob = vec![0u32; 2 * plans.len()];
    let mut seen: HashMap<*const Plan, (u32, u32)> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        let key = *plan as *const Plan;
        let (off, len) = match seen.get(&key) {
            Some(&v) => v,
            None => {
                let v = encode_one(plan, hashes, &mut blob)?;
                seen.insert(key, v);
                v
            }
        };
        blob[2 * i] = off;
        blob[2 * i + 1] = len;
    }
    if blob.len() >= 1 << 30 {
        return Err(Error::param("filters", "filter programs too large for the wgpu backend"));
    }
    Ok(blob)
}

fn encode_one(plan: &Plan, hashes: u32, blob: &mut Vec<u32>) -> Result<(u32, u32)> {
    if plan.is_all() {
        return Ok((0, 0));
    }
    if plan.stack_depth() > KERNEL_STACK {
        return Err(Error::param("filter", "filter nests deeper than the kernels' evaluation stack"));
    }
    // A well-formed postfix program ends with exactly one value and never pops an empty stack.
    let mut depth = 0i64;
    for op in &plan.ops {
        depth += match op {
            Op::Term(_) => 1,
            Op::And | Op::Or => -1,
            Op::Not => 0,
        };
        if depth < 1 {
            return Err(Error::param("filter", "malformed filter program (stack underflow)"));
        }
    }
    if depth != 1 {
        return Err(Error::param("filter", "malformed filter program (leaves more than one value)"));
    }
    // Term records first, then the ops that point at them.
    let mut records = Vec::with_capacity(plan.terms.len());
    for term in &plan.terms {
        if term.typed.is_some() {
            let mask = term.mask.as_ref().ok_or_else(|| Error::param("filter", "typed filter term not bound to the index (Plan::bind)"))?;
            let m = blob.len() as u32;
            blob.extend(mask.iter().flat_map(|&x| [x as u32, (x >> 32) as u32]));
            records.push(blob.len() as u32);
            blob.extend_from_slice(&[0, 0, m, MASK_TERM]);
            continue;
        }
        let ids = blob.len() as u32;
        blob.extend_from_slice(&term.value_ids);
        let rows = blob.len() as u32;
        for r in &term.bloom_rows {
            if r.len() != hashes as usize {
                return Err(Error::param("filter", format!("filter compiled for {} Bloom hashes, index uses {hashes}", r.len())));
            }
            blob.extend_from_slice(r);
        }
        let rec = blob.len() as u32;
        blob.extend_from_slice(&[ids, term.value_ids.len() as u32, rows, term.bloom_rows.len() as u32]);
        records.push(rec);
    }
    let off = blob.len() as u32;
    for op in &plan.ops {
        blob.push(match *op {
            Op::Term(t) => {
                let rec = *records.get(t as usize).ok_or_else(|| Error::param("filter", format!("plan references missing term {t}")))?;
                rec << 2
            }
            Op::And => 1,
            Op::Or => 2,
            Op::Not => 3,
        });
    }
    Ok((off, plan.ops.len() as u32))
}
