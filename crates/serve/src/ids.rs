//! The id map of `silica serve`: where each external id lives ([`Loc`]).
//!
//! The main index's ids are found through an open-addressing table of row numbers keyed by
//! the xxh3 of the id (built in parallel, 4 bytes per slot, load <= 2/3, no allocation per
//! id: the ids stay in the mapped artifact); what changed since the artifact was loaded is
//! kept beside it: main rows whose id was removed (deleted or replaced), and the fresh rows.
//! A map of `String`s would allocate 80M strings and take most of a large index's startup.

use super::state::Loc;
use rayon::prelude::*;
use silica_core::model::Ids;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};

const EMPTY: u32 = u32::MAX;

pub struct IdMap {
    ids: Ids,
    /// Slot -> main row (`EMPTY`: free); `mask + 1` slots.
    table: Vec<u32>,
    mask: usize,
    removed: HashSet<u32>,
    fresh: HashMap<String, u32>,
}

fn hash(id: &str) -> usize {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes()) as usize
}

impl IdMap {
    /// Index the main rows' ids (`ids.len() < u32::MAX`, checked by the caller). A repeated
    /// id maps to its last row.
    pub fn new(ids: Ids) -> IdMap {
        let n = ids.len();
        assert!(n < EMPTY as usize, "rows are u32");
        let slots = (n + n / 2).max(16).next_power_of_two();
        let mask = slots - 1;
        let table: Vec<AtomicU32> = (0..slots).into_par_iter().map(|_| AtomicU32::new(EMPTY)).collect();
        (0..n).into_par_iter().for_each(|r| {
            let id = ids.get(r);
            let mut s = hash(id) & mask;
            loop {
                match table[s].compare_exchange(EMPTY, r as u32, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(cur) if ids.get(cur as usize) == id => {
                        table[s].fetch_max(r as u32, Ordering::AcqRel);
                        break;
                    }
                    Err(_) => s = (s + 1) & mask,
                }
            }
        });
        let table = table.into_iter().map(AtomicU32::into_inner).collect();
        IdMap { ids, table, mask, removed: HashSet::new(), fresh: HashMap::new() }
    }

    /// The main row holding `id`, removed or not.
    fn main_row(&self, id: &str) -> Option<u32> {
        let mut s = hash(id) & self.mask;
        loop {
            match self.table[s] {
                EMPTY => return None,
                r if self.ids.get(r as usize) == id => return Some(r),
                _ => s = (s + 1) & self.mask,
            }
        }
    }

    /// Where `id` lives now.
    pub fn get(&self, id: &str) -> Option<Loc> {
        if let Some(&r) = self.fresh.get(id) {
            return Some(Loc::Fresh(r));
        }
        self.main_row(id).filter(|r| !self.removed.contains(r)).map(Loc::Main)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Forget `id`, returning where it lived.
    pub fn remove(&mut self, id: &str) -> Option<Loc> {
        if let Some(r) = self.fresh.remove(id) {
            return Some(Loc::Fresh(r));
        }
        let r = self.main_row(id).filter(|r| !self.removed.contains(r))?;
        self.removed.insert(r);
        Some(Loc::Main(r))
    }

    /// Record that `id` now lives in fresh row `r` (after [`IdMap::remove`] of any older place).
    pub fn insert_fresh(&mut self, id: String, r: u32) {
        self.fresh.insert(id, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn behaves_like_a_hash_map_of_strings() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [0usize, 1, 2, 63, 1000] {
            // Ids with repeats (the last row wins, as a collected HashMap keeps it).
            let names: Vec<String> = (0..n).map(|_| format!("id{}", rng.random_range(0..(n.max(1) * 3 / 2)))).collect();
            let mut want: HashMap<String, Loc> = names.iter().enumerate().map(|(r, s)| (s.clone(), Loc::Main(r as u32))).collect();
            let mut got = IdMap::new(names.iter().collect());
            for step in 0..3 * n + 10 {
                let id = format!("id{}", rng.random_range(0..(n.max(1) * 2)));
                assert_eq!(got.get(&id), want.get(&id).copied(), "n {n} step {step} {id}");
                match rng.random_range(0..3) {
                    0 => assert_eq!(got.remove(&id), want.remove(&id), "n {n} remove {id}"),
                    1 => {
                        let r = step as u32;
                        got.remove(&id);
                        want.remove(&id);
                        got.insert_fresh(id.clone(), r);
                        want.insert(id, Loc::Fresh(r));
                    }
                    _ => assert_eq!(got.contains_key(&id), want.contains_key(&id)),
                }
            }
        }
    }
}
