//! Host top-K with the deterministic order every backend uses: higher score first, ties
//! broken by lower row index. Used by the CPU backend and as the reference in tests.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A scored row; `Ord` puts the *better* entry first-greater (higher score, then lower row).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// True when `(score, row)` ranks before `other`.
#[inline]
pub fn better(score: f32, row: u32, other: Scored) -> bool {
    score > other.score || (score == other.score && row < other.row)
}

/// Bounded top-K accumulator: keeps the K best entries seen.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    // Min-heap on quality: the root is the worst kept entry.
    heap: BinaryHeap<std::cmp::Reverse<Scored>>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(1 << 20) + 1) }
    }
    /// Entries kept so far.
    pub fn len(&self) -> usize {
        self.heap.len()
    }
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
    /// True when `(score, row)` would be kept by [`push`](Self::push).
    #[inline]
    pub fn admits(&self, score: f32, row: u32) -> bool {
        if self.k == 0 {
            return false;
        }
        if self.heap.len() < self.k {
            return true;
        }
        better(score, row, self.heap.peek().expect("k > 0").0)
    }
    /// Offer an entry.
    #[inline]
    pub fn push(&mut self, score: f32, row: u32) {
        if !self.admits(score, row) {
            return;
        }
        if self.heap.len() == self.k {
            self.heap.pop();
        }
        self.heap.push(std::cmp::Reverse(Scored { score, row }));
    }
    /// The kept entries, best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

/// The `k` best of `items`, best first.
pub fn top_k(mut items: Vec<Scored>, k: usize) -> Vec<Scored> {
    if k < items.len() {
        items.select_nth_unstable_by(k, |a, b| b.cmp(a));
        items.truncate(k);
    }
    items.sort_unstable_by(|a, b| b.cmp(a));
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn heap_matches_full_sort_with_ties() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for &(n, k) in &[(0usize, 3usize), (1, 1), (100, 0), (100, 7), (257, 64), (50, 200)] {
            let items: Vec<Scored> = (0..n).map(|r| Scored { score: rng.random_range(0..8) as f32, row: r as u32 }).collect();
            let mut t = TopK::new(k);
            for it in &items {
                t.push(it.score, it.row);
            }
            let mut want = items.clone();
            want.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
            want.truncate(k);
            assert_eq!(t.into_sorted(), want);
            assert_eq!(top_k(items, k), want);
        }
    }
}
