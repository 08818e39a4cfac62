//! Storage of the big tensors of an [`Index`](super::Index): either owned (built in memory,
//! or changed by `silica serve`) or a view into the memory-mapped artifact (zero-copy load).
//!
//! * [`Tensor<T>`]: `Deref<Target = [T]>`; clone is an `Arc` bump either way. Mutation
//!   (`DerefMut`, [`Tensor::make_mut`], `push`, ...) copies a mapped or shared tensor into
//!   a uniquely owned `Vec` first (copy on write), so updates never touch the file.
//! * [`Ids`]: the external ids as one UTF-8 blob plus `[N+1]` byte offsets (the artifact's
//!   `items.row_ids` + `items.row_id_offsets`), so loading 80M ids allocates nothing.

use memmap2::Mmap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A read-only memory map of an artifact, shared by every tensor viewing it.
pub type Map = Arc<Mmap>;

/// A `[T]` tensor, owned or mapped. See the module docs.
pub struct Tensor<T> {
    repr: Repr<T>,
}

enum Repr<T> {
    Owned(Arc<Vec<T>>),
    /// `len` elements of `map` from byte `offset` (aligned for `T`, checked by [`Tensor::mapped`]).
    Mapped {
        map: Map,
        offset: usize,
        len: usize,
    },
}

impl<T: bytemuck::Pod> Tensor<T> {
    /// A view of `bytes` bytes of `map` from byte `offset`, or `None` when the range is not
    /// inside the map, is not a whole number of `T`, or is not aligned for `T` (the caller
    /// copies then: [`Tensor::copied`]).
    pub fn mapped(map: &Map, offset: usize, bytes: usize) -> Option<Tensor<T>> {
        let size = std::mem::size_of::<T>();
        let end = offset.checked_add(bytes)?;
        if end > map.len() || !bytes.is_multiple_of(size) || !(map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        Some(Tensor { repr: Repr::Mapped { map: map.clone(), offset, len: bytes / size } })
    }

    /// An owned copy of little-endian `bytes` (any alignment).
    pub fn copied(bytes: &[u8]) -> Tensor<T> {
        Tensor::from(bytemuck::pod_collect_to_vec::<u8, T>(bytes))
    }

    /// True when this tensor is a view into a memory map.
    pub fn is_mapped(&self) -> bool {
        matches!(self.repr, Repr::Mapped { .. })
    }

    /// Elements `range` as a tensor of their own: a view of the same map when mapped
    /// (zero-copy; the sharded backend slices a loaded index into shards this way), an
    /// owned copy otherwise. Panics when `range` is out of bounds, as slicing does.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Tensor<T> {
        match &self.repr {
            Repr::Mapped { map, offset, len } => {
                assert!(range.start <= range.end && range.end <= *len, "tensor slice {range:?} out of {len}");
                let size = std::mem::size_of::<T>();
                Tensor { repr: Repr::Mapped { map: map.clone(), offset: offset + range.start * size, len: range.end - range.start } }
            }
            Repr::Owned(v) => Tensor::from(v[range].to_vec()),
        }
    }
}

impl<T: Clone> Tensor<T> {
    /// The tensor as a uniquely owned `Vec`, copying it first when it is mapped or shared.
    pub fn make_mut(&mut self) -> &mut Vec<T>
    where
        T: bytemuck::Pod,
    {
        if let Repr::Mapped { .. } = self.repr {
            self.repr = Repr::Owned(Arc::new(self.deref().to_vec()));
        }
        match &mut self.repr {
            Repr::Owned(v) => Arc::make_mut(v),
            Repr::Mapped { .. } => unreachable!("replaced above"),
        }
    }

    /// Append one element (copy on write, see [`Tensor::make_mut`]).
    pub fn push(&mut self, x: T)
    where
        T: bytemuck::Pod,
    {
        self.make_mut().push(x)
    }

    /// Append a slice (copy on write).
    pub fn extend_from_slice(&mut self, xs: &[T])
    where
        T: bytemuck::Pod,
    {
        self.make_mut().extend_from_slice(xs)
    }

    /// Resize to `n` elements, filling with `x` (copy on write).
    pub fn resize(&mut self, n: usize, x: T)
    where
        T: bytemuck::Pod,
    {
        self.make_mut().resize(n, x)
    }

    /// The elements as an owned `Vec` (no copy when uniquely owned).
    pub fn into_vec(self) -> Vec<T>
    where
        T: bytemuck::Pod,
    {
        match self.repr {
            Repr::Owned(v) => Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone()),
            Repr::Mapped { .. } => self.deref().to_vec(),
        }
    }
}

impl<T> Deref for Tensor<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match &self.repr {
            Repr::Owned(v) => v,
            // SAFETY: `mapped` checked that the range lies in the map, is a whole number of
            // `T` and is aligned for `T`; `T: Pod` (every constructor) accepts any bits; the
            // map is read-only and lives as long as `self` holds its `Arc`.
            Repr::Mapped { map, offset, len } => unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset) as *const T, *len) },
        }
    }
}

impl<T: bytemuck::Pod> DerefMut for Tensor<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.make_mut()
    }
}

impl<T> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        let repr = match &self.repr {
            Repr::Owned(v) => Repr::Owned(v.clone()),
            Repr::Mapped { map, offset, len } => Repr::Mapped { map: map.clone(), offset: *offset, len: *len },
        };
        Tensor { repr }
    }
}

impl<T> Default for Tensor<T> {
    fn default() -> Self {
        Tensor { repr: Repr::Owned(Arc::new(Vec::new())) }
    }
}

impl<T> From<Vec<T>> for Tensor<T> {
    fn from(v: Vec<T>) -> Self {
        Tensor { repr: Repr::Owned(Arc::new(v)) }
    }
}

impl<T> FromIterator<T> for Tensor<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Tensor::from(it.into_iter().collect::<Vec<T>>())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.len() > 16 {
            let kind = if matches!(self.repr, Repr::Mapped { .. }) { "mapped" } else { "owned" };
            return write!(f, "Tensor({kind}, {} elements, first {:?}..)", self.len(), &self[..4]);
        }
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Tensor<T> {}

impl<T: PartialEq> PartialEq<Vec<T>> for Tensor<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        **self == **other
    }
}

impl<T: PartialEq> PartialEq<[T]> for Tensor<T> {
    fn eq(&self, other: &[T]) -> bool {
        **self == *other
    }
}

impl<'a, T> IntoIterator for &'a Tensor<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// External ids of the rows: a UTF-8 blob and `[N+1]` byte offsets (`offsets[0] == 0`,
/// monotone, each on a char boundary: checked by [`Ids::new`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Ids {
    bytes: Tensor<u8>,
    offsets: Tensor<u64>,
}

impl Ids {
    /// Ids from a blob and its offsets. Errors (a message naming the first bad row): the
    /// offsets are not a CSR over the blob, or a row is not UTF-8.
    pub fn new(bytes: Tensor<u8>, offsets: Tensor<u64>) -> std::result::Result<Ids, String> {
        use rayon::prelude::*;
        let o = &offsets[..];
        if o.first() != Some(&0) || o.last().copied() != Some(bytes.len() as u64) {
            return Err("offsets do not start at 0 and end at the blob's length".into());
        }
        const CHUNK: usize = 1 << 16;
        let rows = o.len() - 1;
        let bad = (0..rows.div_ceil(CHUNK)).into_par_iter().find_map_first(|c| {
            let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(rows));
            if o[a..=b].windows(2).any(|w| w[0] > w[1]) {
                return Some(format!("offsets decrease within rows {a}..{b}"));
            }
            if o[b] > bytes.len() as u64 {
                return Some(format!("offsets of rows {a}..{b} run past the blob"));
            }
            let text = match std::str::from_utf8(&bytes[o[a] as usize..o[b] as usize]) {
                Ok(t) => t,
                Err(_) => return Some(format!("rows {a}..{b} are not UTF-8")),
            };
            let base = o[a] as usize;
            (a + 1..b)
                .find(|&r| !text.is_char_boundary(o[r] as usize - base))
                .map(|r| format!("row {r} does not start on a UTF-8 character boundary"))
        });
        match bad {
            Some(e) => Err(e),
            None => Ok(Ids { bytes, offsets }),
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there are no ids.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Id of row `r`. Panics when `r >= len()`.
    #[inline]
    pub fn get(&self, r: usize) -> &str {
        let (a, b) = (self.offsets[r] as usize, self.offsets[r + 1] as usize);
        // SAFETY: `new` (or `push` of a `&str`) established that every row is UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[a..b]) }
    }

    /// Every id in row order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    /// Append an id (copy on write).
    pub fn push(&mut self, id: &str) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.bytes.extend_from_slice(id.as_bytes());
        self.offsets.push(self.bytes.len() as u64);
    }

    /// The blob and offsets (what the artifact stores).
    pub fn parts(&self) -> (&[u8], &[u64]) {
        let empty: &[u64] = &[0];
        (&self.bytes, if self.offsets.is_empty() { empty } else { &self.offsets })
    }

    /// True when both parts are views into a memory map.
    pub fn is_mapped(&self) -> bool {
        self.bytes.is_mapped() && self.offsets.is_mapped()
    }
}

impl Default for Ids {
    fn default() -> Self {
        Ids { bytes: Tensor::default(), offsets: Tensor::from(vec![0]) }
    }
}

impl<S: AsRef<str>> FromIterator<S> for Ids {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Self {
        let mut bytes = Vec::new();
        let mut offsets = vec![0u64];
        for s in it {
            bytes.extend_from_slice(s.as_ref().as_bytes());
            offsets.push(bytes.len() as u64);
        }
        Ids { bytes: bytes.into(), offsets: offsets.into() }
    }
}

impl std::ops::Index<usize> for Ids {
    type Output = str;
    fn index(&self, r: usize) -> &str {
        self.get(r)
    }
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.len() > 8 {
            return write!(f, "Ids({} ids, first {:?}..)", self.len(), self.get(0));
        }
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn map_of(bytes: &[u8]) -> Map {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        Arc::new(unsafe { Mmap::map(&f).unwrap() })
    }

    #[test]
    fn mapped_views_copy_on_write_and_refuse_misalignment() {
        let vals: Vec<u32> = (0..37).map(|i| i * 7 + 1).collect();
        let mut bytes = vec![0u8; 4];
        bytes.extend_from_slice(bytemuck::cast_slice(&vals));
        let map = map_of(&bytes);
        let t = Tensor::<u32>::mapped(&map, 4, vals.len() * 4).unwrap();
        assert!(t.is_mapped());
        assert_eq!(t, vals);
        // Misaligned, ragged or out-of-range views are refused; the copy reads the same bytes.
        assert!(Tensor::<u32>::mapped(&map, 1, 8).is_none());
        assert!(Tensor::<u32>::mapped(&map, 4, 7).is_none());
        assert!(Tensor::<u32>::mapped(&map, 4, bytes.len()).is_none());
        assert_eq!(Tensor::<u32>::copied(&bytes[4..]), vals);
        let mut m = t.clone();
        m[3] = 0;
        m.push(5);
        assert!(!m.is_mapped() && t.is_mapped());
        assert_eq!(t, vals, "the mapped original is untouched");
        assert_eq!(m.len(), 38);
        assert_eq!((m[3], m[37]), (0, 5));
    }

    #[test]
    fn ids_round_trip_and_reject_bad_utf8() {
        let names = ["a", "", "ünï", "x".repeat(70000).as_str().to_owned().leak(), "z"];
        let ids: Ids = names.iter().collect();
        assert_eq!(ids.iter().collect::<Vec<_>>(), names);
        let (b, o) = ids.parts();
        let back = Ids::new(b.to_vec().into(), o.to_vec().into()).unwrap();
        assert_eq!(back, ids);
        // An offset inside the two-byte `ü` is not a character boundary.
        let mut o2 = o.to_vec();
        o2[2] += 1;
        assert!(Ids::new(b.to_vec().into(), o2.into()).unwrap_err().contains("row 2"));
        assert!(Ids::new(vec![0xff].into(), vec![0, 1].into()).unwrap_err().contains("UTF-8"));
        assert!(Ids::new(vec![1].into(), vec![0, 2].into()).is_err());
        let mut e = Ids::default();
        assert!(e.is_empty());
        e.push("q");
        assert_eq!(&e[0], "q");
    }
}
