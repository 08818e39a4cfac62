//! Typed attribute columns: integer (i64), float (f64), boolean and timestamp (i64
//! microseconds since the Unix epoch, from RFC 3339 strings) fields, stored exactly, one
//! value per row, in sorted-row order.
//!
//! Tensors per column `NAME` (README "artifact table"):
//! * `cols.NAME.values`: I64 / F64 / U8 `[N]` (absent rows hold 0);
//! * `cols.NAME.present`: U64 `[ceil(N/64)]` bitset, bit `r % 64` of word `r / 64` set when
//!   row `r` has a value;
//! * `cols.NAME.word_range`: same dtype as values, `[ceil(N/64), 2]`: min and max of the
//!   present values of each 64-row word (0, 0 where none);
//! * `cols.NAME.list_range`: `[L, 2]`: min and max of the present values of each list.
//!
//! The ranges let a filter skip whole lists and words before comparing values
//! ([`Column::eval`]). Comparisons run on order-preserving u64 keys ([`key_i64`],
//! [`key_f64`]), so every type shares one interval test.

use super::Tensor;
use serde::{Deserialize, Serialize};

/// The type of a typed column (`--schema field:TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// i64 integers.
    Int,
    /// Finite f64 numbers.
    Float,
    /// `true` / `false`, stored as u8 0 / 1.
    Bool,
    /// i64 microseconds since 1970-01-01T00:00:00Z (RFC 3339 in JSON).
    Timestamp,
}

impl ColumnType {
    /// The name used in `--schema` and error messages.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

/// A column's metadata entry (`__metadata__["columns"]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    /// Field name.
    pub name: String,
    /// Column type (`"type"` in JSON).
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// Values of a column, in its storage dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Int and timestamp columns.
    I64(Tensor<i64>),
    /// Float columns.
    F64(Tensor<f64>),
    /// Bool columns (0 or 1).
    U8(Tensor<u8>),
}

impl Values {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Values::I64(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::U8(v) => v.len(),
        }
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Order-preserving key of entry `i`.
    #[inline]
    pub fn key(&self, i: usize) -> u64 {
        match self {
            Values::I64(v) => key_i64(v[i]),
            Values::F64(v) => key_f64(v[i]),
            Values::U8(v) => v[i] as u64,
        }
    }
    /// Entry `i` as JSON (timestamps as RFC 3339 when `ty` is Timestamp).
    pub fn json(&self, i: usize, ty: ColumnType) -> serde_json::Value {
        match self {
            Values::I64(v) if ty == ColumnType::Timestamp => serde_json::Value::String(format_timestamp(v[i])),
            Values::I64(v) => v[i].into(),
            Values::F64(v) => serde_json::Number::from_f64(v[i]).map_or(serde_json::Value::Null, serde_json::Value::Number),
            Values::U8(v) => serde_json::Value::Bool(v[i] != 0),
        }
    }
    /// The safetensors dtype.
    pub fn dtype(&self) -> safetensors::Dtype {
        match self {
            Values::I64(_) => safetensors::Dtype::I64,
            Values::F64(_) => safetensors::Dtype::F64,
            Values::U8(_) => safetensors::Dtype::U8,
        }
    }
    /// The raw bytes (little-endian, as stored).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Values::I64(v) => bytemuck::cast_slice(v),
            Values::F64(v) => bytemuck::cast_slice(v),
            Values::U8(v) => v,
        }
    }
    /// Set entry `i` from its order-preserving key.
    fn set_key(&mut self, i: usize, k: u64) {
        match self {
            Values::I64(v) => v[i] = unkey_i64(k),
            Values::F64(v) => v[i] = unkey_f64(k),
            Values::U8(v) => v[i] = k as u8,
        }
    }
    fn from_keys(ty: ColumnType, keys: impl Iterator<Item = u64>) -> Values {
        match ty {
            ColumnType::Int | ColumnType::Timestamp => Values::I64(keys.map(unkey_i64).collect()),
            ColumnType::Float => Values::F64(keys.map(unkey_f64).collect()),
            ColumnType::Bool => Values::U8(keys.map(|k| k as u8).collect()),
        }
    }
}

/// The key of a JSON value for a `ty` column, with the build's typing rules: `null` is no
/// value; `int` takes integers in i64 range, `float` any finite number (-0.0 as 0.0),
/// `bool` `true`/`false`, `timestamp` an RFC 3339 string or integer microseconds.
///
/// # Errors
/// A message naming the type (the caller names the field) for a value the type does not
/// take.
pub fn key_of_json(ty: ColumnType, v: &serde_json::Value) -> std::result::Result<Option<u64>, String> {
    use serde_json::Value as J;
    let want = || {
        format!("is a {} field; got {}", ty.name(), {
            let s = v.to_string();
            if s.len() > 40 { format!("{}...", &s[..s.char_indices().nth(37).map_or(s.len(), |c| c.0)]) } else { s }
        })
    };
    Ok(Some(match (ty, v) {
        (_, J::Null) => return Ok(None),
        (ColumnType::Int, J::Number(n)) => {
            key_i64(n.as_i64().ok_or_else(|| format!("is an int field; {n} is not an integer in i64 range"))?)
        }
        (ColumnType::Float, J::Number(n)) => {
            key_f64(n.as_f64().filter(|f| f.is_finite()).ok_or_else(|| format!("{n} is not a finite number"))?)
        }
        (ColumnType::Bool, J::Bool(b)) => *b as u64,
        (ColumnType::Timestamp, J::String(s)) => key_i64(parse_timestamp(s)?),
        (ColumnType::Timestamp, J::Number(n)) => {
            key_i64(n.as_i64().ok_or_else(|| format!("is a timestamp field; {n} is not integer microseconds"))?)
        }
        _ => return Err(want()),
    }))
}

/// Order-preserving key of an i64 (sign bit flipped).
#[inline]
pub fn key_i64(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}
fn unkey_i64(k: u64) -> i64 {
    (k ^ (1 << 63)) as i64
}

/// Order-preserving key of a finite f64 (-0.0 is 0.0): IEEE total order as unsigned.
#[inline]
pub fn key_f64(v: f64) -> u64 {
    let b = if v == 0.0 { 0 } else { v.to_bits() };
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}
fn unkey_f64(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// One typed column (see the module docs for its tensors).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Field name.
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
    /// `[N]` values (0 where absent).
    pub values: Values,
    /// `[ceil(N/64)]` presence bitset.
    pub present: Tensor<u64>,
    /// `[ceil(N/64), 2]` min, max per 64-row word (storage dtype).
    pub word_range: Values,
    /// `[L, 2]` min, max per inverted list.
    pub list_range: Values,
}

/// A compiled column predicate over keys: a row matches when it has a value and
/// (the key lies in one of `ranges`) != `negate`; with `null`, when it has no value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyTest {
    /// Inclusive key intervals, sorted and disjoint.
    pub ranges: Vec<(u64, u64)>,
    /// Match keys outside `ranges` instead (rows without a value still never match).
    pub negate: bool,
    /// `IS NULL`: matches rows without a value (ranges ignored).
    pub null: bool,
}

impl KeyTest {
    #[inline]
    fn hit(&self, k: u64) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= k && k <= b) != self.negate
    }
    /// For a block of present keys within [lo, hi]: Some(true) when all match, Some(false)
    /// when none does, None when it depends on the values.
    pub fn block(&self, lo: u64, hi: u64) -> Option<bool> {
        let inside = self.ranges.iter().any(|&(a, b)| a <= lo && hi <= b);
        let apart = self.ranges.iter().all(|&(a, b)| b < lo || hi < a);
        match (inside, apart) {
            (true, _) => Some(!self.negate),
            (_, true) => Some(self.negate),
            _ => None,
        }
    }
}

impl Column {
    /// Build a column from per-row keys (`None`: absent), rows already in sorted order,
    /// with `list_offsets` (`[L+1]`) for the per-list ranges.
    pub fn from_keys(name: &str, ty: ColumnType, keys: &[Option<u64>], list_offsets: &[u64]) -> Column {
        let n = keys.len();
        let words = n.div_ceil(64);
        let mut present = vec![0u64; words];
        for (r, k) in keys.iter().enumerate() {
            if k.is_some() {
                present[r / 64] |= 1 << (r % 64);
            }
        }
        let range = |rows: std::ops::Range<usize>| {
            let mut it = keys[rows].iter().flatten();
            let first = it.next().copied();
            first.map_or((None, None), |f| {
                let (lo, hi) = it.fold((f, f), |(lo, hi), &k| (lo.min(k), hi.max(k)));
                (Some(lo), Some(hi))
            })
        };
        let zero = match ty {
            ColumnType::Float => key_f64(0.0),
            ColumnType::Bool => 0,
            _ => key_i64(0),
        };
        let pairs = |spans: Vec<std::ops::Range<usize>>| {
            let mut out = Vec::with_capacity(spans.len() * 2);
            for s in spans {
                let (lo, hi) = range(s);
                out.push(lo.unwrap_or(zero));
                out.push(hi.unwrap_or(zero));
            }
            out
        };
        let word_spans = (0..words).map(|w| w * 64..((w + 1) * 64).min(n)).collect();
        let list_spans = list_offsets.windows(2).map(|o| o[0] as usize..o[1] as usize).collect();
        Column {
            name: name.to_string(),
            ty,
            values: Values::from_keys(ty, keys.iter().map(|k| k.unwrap_or(zero))),
            present: present.into(),
            word_range: Values::from_keys(ty, pairs(word_spans).into_iter()),
            list_range: Values::from_keys(ty, pairs(list_spans).into_iter()),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }
    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether row `r` has a value.
    #[inline]
    pub fn has(&self, r: usize) -> bool {
        self.present[r / 64] >> (r % 64) & 1 == 1
    }

    /// Exact test of row `r`.
    #[inline]
    pub fn test(&self, t: &KeyTest, r: usize) -> bool {
        if t.null {
            return !self.has(r);
        }
        self.has(r) && t.hit(self.values.key(r))
    }

    /// The rows passing `t` as a bitset `[ceil(N/64)]` (bits past N clear). Lists whose
    /// range decides the test are filled or skipped whole, then words whose range decides
    /// it; only the remaining words compare values.
    pub fn eval(&self, t: &KeyTest, list_offsets: &[u64]) -> Vec<u64> {
        let n = self.len();
        let words = n.div_ceil(64);
        if t.null {
            let mut m: Vec<u64> = self.present.iter().map(|&p| !p).collect();
            if let Some(last) = m.last_mut().filter(|_| !n.is_multiple_of(64)) {
                *last &= (1u64 << (n % 64)) - 1;
            }
            return m;
        }
        let mut m = vec![0u64; words];
        let nl = list_offsets.len().saturating_sub(1);
        let lists_ok = self.list_range.len() == 2 * nl && list_offsets.last().copied() == Some(n as u64);
        let spans: Vec<(usize, usize, Option<bool>)> = if lists_ok {
            (0..nl)
                .map(|l| {
                    let (s, e) = (list_offsets[l] as usize, list_offsets[l + 1] as usize);
                    (s, e, t.block(self.list_range.key(2 * l), self.list_range.key(2 * l + 1)))
                })
                .collect()
        } else {
            vec![(0, n, None)]
        };
        for (s, e, decided) in spans {
            if s >= e || decided == Some(false) {
                continue;
            }
            for (w, out) in m.iter_mut().enumerate().take(e.div_ceil(64)).skip(s / 64) {
                let p = self.present[w] & crate::backend::cpu::range_bits(w, &(s..e));
                if p == 0 {
                    continue;
                }
                let bits = match decided {
                    Some(true) => p,
                    Some(false) => 0,
                    None => p & self.word(t, w),
                };
                *out |= bits;
            }
        }
        m
    }

    /// Word `w` of the exact mask of `t` (what [`Column::eval`] gives for that word, and
    /// what the device kernels compute: `cuda/common.cuh` `col_word`): `IS NULL` is the
    /// absent rows below N; otherwise present rows whose key passes, with the word's
    /// min/max deciding whole words before any key is compared.
    pub fn word(&self, t: &KeyTest, w: usize) -> u64 {
        let p = self.present[w];
        if t.null {
            return !p & crate::backend::cpu::range_bits(w, &(0..self.len()));
        }
        if p == 0 {
            return 0;
        }
        match t.block(self.word_range.key(2 * w), self.word_range.key(2 * w + 1)) {
            Some(true) => p,
            Some(false) => 0,
            None => p & self.word_hits(t, w),
        }
    }

    /// Bits of word `w` whose keys pass `t` (ignoring presence): a branch-free loop over
    /// the word's rows per interval, which the compiler vectorizes.
    fn word_hits(&self, t: &KeyTest, w: usize) -> u64 {
        let (a, b) = (w * 64, ((w + 1) * 64).min(self.len()));
        let mut keys = [0u64; 64];
        match &self.values {
            Values::I64(v) => keys.iter_mut().zip(&v[a..b]).for_each(|(k, &x)| *k = key_i64(x)),
            Values::F64(v) => keys.iter_mut().zip(&v[a..b]).for_each(|(k, &x)| *k = key_f64(x)),
            Values::U8(v) => keys.iter_mut().zip(&v[a..b]).for_each(|(k, &x)| *k = x as u64),
        }
        let mut m = 0u64;
        for &(lo, hi) in &t.ranges {
            let mut bits = 0u64;
            for (i, &k) in keys.iter().enumerate() {
                bits |= (((lo <= k) & (k <= hi)) as u64) << i;
            }
            m |= bits;
        }
        if t.negate { !m } else { m }
    }

    /// The column over `rows` of this one (`None`: a row without a value), with per-list
    /// ranges for `list_offsets` of the new row order.
    pub fn gather(&self, rows: &[Option<usize>], list_offsets: &[u64]) -> Column {
        let keys: Vec<Option<u64>> = rows.iter().map(|r| r.filter(|&r| self.has(r)).map(|r| self.values.key(r))).collect();
        Column::from_keys(&self.name, self.ty, &keys, list_offsets)
    }

    /// Set row `r`'s value (`None`: no value), keeping `word_range` / `list_range` bounds of
    /// the present values: a word or list that had none takes the new value as its range,
    /// others widen to include it (a removed value leaves a wider, still valid bound: ranges
    /// only decide whole words and lists when every present value is inside or outside).
    /// `list_offsets` (`[L+1]`) locates the row's list.
    pub fn set(&mut self, r: usize, key: Option<u64>, list_offsets: &[u64]) {
        let (w, bit) = (r / 64, 1u64 << (r % 64));
        let Some(k) = key else {
            self.present[w] &= !bit;
            return;
        };
        let word_had = self.present[w] != 0;
        let l = list_offsets.partition_point(|&o| o <= r as u64).saturating_sub(1);
        let (ls, le) = (list_offsets[l] as usize, list_offsets.get(l + 1).map_or(r + 1, |&e| e as usize));
        let list_had = (ls..le).any(|x| self.has(x));
        self.values.set_key(r, k);
        self.present[w] |= bit;
        let widen = |range: &mut Values, at: usize, had: bool| {
            let (lo, hi) = (range.key(2 * at), range.key(2 * at + 1));
            let (lo, hi) = if had { (lo.min(k), hi.max(k)) } else { (k, k) };
            range.set_key(2 * at, lo);
            range.set_key(2 * at + 1, hi);
        };
        widen(&mut self.word_range, w, word_had);
        if l + 1 < list_offsets.len() {
            widen(&mut self.list_range, l, list_had);
        }
    }

    /// Row `r`'s value as JSON (`null` when absent).
    pub fn json(&self, r: usize) -> serde_json::Value {
        if self.has(r) { self.values.json(r, self.ty) } else { serde_json::Value::Null }
    }
}

/// All typed columns of an index, sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns {
    /// The columns, sorted by name.
    pub cols: Vec<Column>,
}

impl Columns {
    /// Column by name.
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.cols.iter().find(|c| c.name == name)
    }
    /// Metadata entries.
    pub fn schema(&self) -> Vec<ColumnSchema> {
        self.cols.iter().map(|c| ColumnSchema { name: c.name.clone(), ty: c.ty }).collect()
    }
    /// The tensors of every column: (name, dtype, shape, bytes), for the writers.
    pub fn tensors(&self) -> Vec<(String, safetensors::Dtype, Vec<usize>, &[u8])> {
        let mut t = Vec::new();
        for c in &self.cols {
            let (n, words, nl) = (c.len(), c.present.len(), c.list_range.len() / 2);
            t.push((format!("cols.{}.values", c.name), c.values.dtype(), vec![n], c.values.bytes()));
            t.push((format!("cols.{}.present", c.name), safetensors::Dtype::U64, vec![words], bytemuck::cast_slice(&c.present[..])));
            t.push((format!("cols.{}.word_range", c.name), c.word_range.dtype(), vec![words, 2], c.word_range.bytes()));
            t.push((format!("cols.{}.list_range", c.name), c.list_range.dtype(), vec![nl, 2], c.list_range.bytes()));
        }
        t
    }

    /// Every column gathered over `rows` (see [`Column::gather`]).
    pub fn gather(&self, rows: &[Option<usize>], list_offsets: &[u64]) -> Columns {
        Columns { cols: self.cols.iter().map(|c| c.gather(rows, list_offsets)).collect() }
    }
}

/// Parse an RFC 3339 timestamp (`2024-05-01T12:00:00Z`, `...T12:00:00.25+02:00`; `t` and
/// `z` accepted, a space for `T` too) into microseconds since 1970-01-01T00:00:00Z.
/// Digits past microseconds are truncated.
///
/// # Errors
/// A reason for the message when `s` is not such a timestamp (or a field is out of range).
pub fn parse_timestamp(s: &str) -> std::result::Result<i64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 timestamp (e.g. 2024-05-01T12:00:00Z)");
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> std::result::Result<i64, String> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > mdays[mo as usize - 1] || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = oh * 3600 + om * 60;
            if c == b'+' { o } else { -o }
        }
        _ => return Err(bad()),
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (yy, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset;
    Ok(secs * 1_000_000 + micros)
}

/// RFC 3339 in UTC with microseconds (`2024-05-01T12:00:00.000000Z`), the inverse of
/// [`parse_timestamp`] for its outputs.
pub fn format_timestamp(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn set_keeps_ranges_bounding_the_present_values() {
        let offsets = [0u64, 70, 130];
        let keys: Vec<Option<u64>> = (0..130).map(|r| (r % 3 != 0).then(|| key_i64(r as i64))).collect();
        let mut c = Column::from_keys("x", ColumnType::Int, &keys, &offsets);
        c.set(3, Some(key_i64(-500)), &offsets);
        c.set(100, Some(key_i64(9000)), &offsets);
        c.set(4, None, &offsets);
        assert!(c.has(3) && !c.has(4) && c.has(100));
        assert_eq!(c.json(3), serde_json::json!(-500));
        let (wr, lr) = (&c.word_range, &c.list_range);
        assert!(wr.key(0) <= key_i64(-500) && lr.key(0) <= key_i64(-500));
        assert!(wr.key(3) >= key_i64(9000) && lr.key(3) >= key_i64(9000));
        // Every present value stays inside its word's and list's range.
        for r in (0..130).filter(|&r| c.has(r)) {
            let k = c.values.key(r);
            let l = if r < 70 { 0 } else { 1 };
            assert!(wr.key(2 * (r / 64)) <= k && k <= wr.key(2 * (r / 64) + 1), "row {r}");
            assert!(lr.key(2 * l) <= k && k <= lr.key(2 * l + 1), "row {r}");
        }
        assert!(key_of_json(ColumnType::Int, &serde_json::json!(2.5)).unwrap_err().contains("int"));
        assert_eq!(
            key_of_json(ColumnType::Timestamp, &serde_json::json!("2024-01-01T00:00:00Z")).unwrap(),
            Some(key_i64(1_704_067_200_000_000))
        );
        assert_eq!(key_of_json(ColumnType::Bool, &serde_json::Value::Null).unwrap(), None);
        assert!(key_of_json(ColumnType::Bool, &serde_json::json!("yes")).is_err());
        assert_eq!(key_of_json(ColumnType::Float, &serde_json::json!(-0.0)).unwrap(), Some(key_f64(0.0)));
    }

    #[test]
    fn keys_preserve_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut f: Vec<f64> = (0..500).map(|_| rng.random_range(-1e6..1e6) * if rng.random_bool(0.1) { 1e-300 } else { 1.0 }).collect();
        f.extend([0.0, -0.0, f64::MAX, f64::MIN, 1e-310, -1e-310]);
        for a in &f {
            for b in f.iter().take(50) {
                assert_eq!(a.partial_cmp(b).unwrap(), key_f64(*a).cmp(&key_f64(*b)), "{a} {b}");
            }
            assert_eq!(unkey_f64(key_f64(*a)), if *a == 0.0 { 0.0 } else { *a });
        }
        let i: Vec<i64> = (0..500).map(|_| rng.random()).chain([i64::MIN, i64::MAX, 0, -1]).collect();
        for a in &i {
            for b in i.iter().take(50) {
                assert_eq!(a.cmp(b), key_i64(*a).cmp(&key_i64(*b)));
            }
            assert_eq!(unkey_i64(key_i64(*a)), *a);
        }
    }

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Ok(1_500_000));
        assert_eq!(parse_timestamp("1970-01-01T02:00:00+02:00"), Ok(0));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999999Z"), Ok(-1));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00z"), Ok(951_868_800_000_000));
        for bad in [
            "2024-02-30T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+2:00",
            "x024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.Z",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for _ in 0..1000 {
            let us = rng.random_range(-60_000_000_000_000_000i64..200_000_000_000_000_000);
            assert_eq!(parse_timestamp(&format_timestamp(us)), Ok(us), "{us}");
        }
    }

    /// eval (with list and word skipping) equals the row-by-row test for random columns.
    #[test]
    fn eval_equals_row_tests() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for n in [0usize, 1, 63, 64, 65, 300, 1000] {
            let nl = rng.random_range(1..6);
            let mut cuts: Vec<u64> = (0..nl - 1).map(|_| rng.random_range(0..=n as u64)).collect();
            cuts.sort_unstable();
            let offs: Vec<u64> = std::iter::once(0).chain(cuts).chain(std::iter::once(n as u64)).collect();
            let keys: Vec<Option<u64>> =
                (0..n).map(|r| rng.random_bool(0.8).then(|| key_i64(rng.random_range(-20..20) + (r as i64 / 100)))).collect();
            let c = Column::from_keys("x", ColumnType::Int, &keys, &offs);
            for _ in 0..50 {
                let a = key_i64(rng.random_range(-25..25));
                let b = a + rng.random_range(0..10);
                let t = KeyTest { ranges: vec![(a, b)], negate: rng.random_bool(0.3), null: rng.random_bool(0.1) };
                let m = c.eval(&t, &offs);
                for r in 0..n {
                    assert_eq!(m[r / 64] >> (r % 64) & 1 == 1, c.test(&t, r), "n {n} row {r} {t:?}");
                }
                if n % 64 != 0 {
                    assert_eq!(m[n / 64] >> (n % 64), 0);
                }
            }
        }
    }
}
