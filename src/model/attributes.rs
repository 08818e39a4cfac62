//! Item attributes: JSON Lines input, the attribute schema (one dictionary per field)
//! and the exact per-row value lists stored as CSR (`attrs.offsets`, `attrs.values`).
//!
//! Input: one JSON object per line. `id` (string) is the external id and is also a
//! filterable field. Every other string or array-of-string field becomes a filterable
//! attribute; numeric fields named in `features` become dense rerank features (null or
//! absent -> 0.0). Other values (booleans, numbers not named, objects) are not indexed;
//! their field names are listed in one warning. Nulls are ignored.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// One filterable field: its values are dictionary-encoded as global value ids
/// `base .. base + values.len()`, in sorted order of the value strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// Field name as it appears in filters.
    pub name: String,
    /// True when some row carries a list of values for this field.
    pub multi: bool,
    /// First global value id of this field.
    pub base: u32,
    /// Sorted distinct values.
    #[serde(skip)]
    pub values: Vec<String>,
}

/// The attribute schema: all filterable fields, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    pub fields: Vec<FieldSchema>,
}

impl Schema {
    /// Field index by name.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
    /// Global value id of `value` in field `field`, if any row has it.
    pub fn value_id(&self, field: usize, value: &str) -> Option<u32> {
        let f = &self.fields[field];
        f.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .ok()
            .map(|i| f.base + i as u32)
    }
    /// Total number of distinct (field, value) pairs.
    pub fn num_values(&self) -> usize {
        self.fields.iter().map(|f| f.values.len()).sum()
    }
    /// (field, value) strings of global value id `id`.
    pub fn describe(&self, id: u32) -> Option<(&str, &str)> {
        let f = self.fields.iter().rev().find(|f| f.base <= id)?;
        f.values.get((id - f.base) as usize).map(|v| (f.name.as_str(), v.as_str()))
    }
}

/// Exact attribute values of every row: row `r` has the sorted global value ids
/// `values[offsets[r]..offsets[r+1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub schema: Schema,
    /// `[N+1]` CSR offsets.
    pub offsets: crate::model::Tensor<u64>,
    /// `[nnz]` global value ids, sorted within each row.
    pub values: crate::model::Tensor<u32>,
}

impl Attributes {
    /// Value ids of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &[u32] {
        &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reorder rows: new row `i` is old row `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Attributes {
        let mut offsets = Vec::with_capacity(perm.len() + 1);
        let mut values = Vec::with_capacity(self.values.len());
        offsets.push(0u64);
        for &old in perm {
            values.extend_from_slice(self.row(old));
            offsets.push(values.len() as u64);
        }
        Attributes { schema: self.schema.clone(), offsets: offsets.into(), values: values.into() }
    }
}

/// What [`read_jsonl`] returns, in source-line order.
#[derive(Clone, Debug, Default)]
pub struct AttributeTable {
    /// External ids, one per line.
    pub ids: Vec<String>,
    /// Attributes per line.
    pub attrs: Attributes,
    /// Row-major `[N, F]` features (F = `feature_names.len()`), empty when F = 0.
    pub features: Vec<f32>,
    pub feature_names: Vec<String>,
}

/// Read attributes from JSON Lines (one object per line, blank lines not allowed).
///
/// Errors name the 1-based line: malformed JSON, a non-object line, a duplicate key in a
/// line, a missing, non-string or empty `id`, a duplicate `id`, a non-numeric value in a
/// feature column. A feature that no line carries is an [`Error::Param`] naming it.
pub fn read_jsonl(path: &Path, features: &[String]) -> Result<AttributeTable> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parse_jsonl(BufReader::new(file), path, features)
}

/// [`read_jsonl`] over any reader; `path` is only used in error messages.
pub fn parse_jsonl(reader: impl BufRead, path: &Path, features: &[String]) -> Result<AttributeTable> {
    let bad = |line: usize, reason: String| Error::Jsonl { path: path.to_path_buf(), line, reason };
    // Per row: (field name, value) pairs, interned below.
    let mut rows: Vec<Vec<(usize, String)>> = Vec::new();
    let mut field_ix: BTreeMap<String, usize> = BTreeMap::new();
    let mut field_names: Vec<String> = Vec::new();
    let mut multi: Vec<bool> = Vec::new();
    let mut ids = Vec::new();
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    let mut feats: Vec<f32> = Vec::new();
    let mut feature_seen = vec![false; features.len()];
    let mut ignored: std::collections::BTreeSet<String> = Default::default();
    let intern = |name: &str, field_ix: &mut BTreeMap<String, usize>, names: &mut Vec<String>, multi: &mut Vec<bool>| {
        *field_ix.entry(name.to_string()).or_insert_with(|| {
            names.push(name.to_string());
            multi.push(false);
            names.len() - 1
        })
    };
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| bad(lineno, format!("cannot read line: {e}")))?;
        let obj: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(lineno, format!("malformed JSON: {e}")))?;
        let obj = obj
            .as_object()
            .ok_or_else(|| bad(lineno, "expected a JSON object".to_string()))?;
        // serde_json keeps the last of duplicate keys; a second look finds them.
        if let Err(e) = serde_json::from_str::<UniqueKeys>(&line) {
            return Err(bad(lineno, e.to_string().split(" at line ").next().unwrap_or_default().to_string()));
        }
        let id = match obj.get("id") {
            Some(serde_json::Value::String(s)) if s.is_empty() => return Err(bad(lineno, "field `id` is empty".into())),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => return Err(bad(lineno, "field `id` must be a string".into())),
            None => return Err(bad(lineno, "missing field `id`".into())),
        };
        if let Some(prev) = seen_ids.insert(id.clone(), lineno) {
            return Err(bad(lineno, format!("duplicate id {id:?} (first on line {prev})")));
        }
        let mut row = Vec::new();
        for (k, v) in obj {
            if features.iter().any(|f| f == k) {
                continue;
            }
            match v {
                serde_json::Value::String(s) => {
                    let f = intern(k, &mut field_ix, &mut field_names, &mut multi);
                    row.push((f, s.clone()));
                }
                serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => {
                    let f = intern(k, &mut field_ix, &mut field_names, &mut multi);
                    multi[f] = true;
                    for x in a {
                        row.push((f, x.as_str().unwrap_or_default().to_string()));
                    }
                }
                serde_json::Value::Array(_) => {
                    return Err(bad(lineno, format!("field `{k}`: arrays must hold only strings")));
                }
                serde_json::Value::Null => {}
                _ => {
                    ignored.insert(k.clone());
                }
            }
        }
        for (fi, f) in features.iter().enumerate() {
            let x = match obj.get(f) {
                None | Some(serde_json::Value::Null) => 0.0,
                Some(serde_json::Value::Number(n)) => {
                    feature_seen[fi] = true;
                    n.as_f64().unwrap_or(0.0) as f32
                }
                Some(other) => {
                    return Err(bad(lineno, format!("feature `{f}` must be a number, got {other}")));
                }
            };
            if !x.is_finite() {
                return Err(bad(lineno, format!("feature `{f}` is not finite")));
            }
            feats.push(x);
        }
        ids.push(id);
        rows.push(row);
    }
    if let Some(i) = feature_seen.iter().position(|s| !s) {
        return Err(Error::param("features", format!("feature `{}` is not a number on any line of {}", features[i], path.display())));
    }
    if !ignored.is_empty() {
        let names: Vec<&str> = ignored.iter().map(String::as_str).collect();
        log::warn!(
            "{}: fields not indexed (numbers, booleans or objects; only strings and lists of strings are filterable, numbers named in --features are rerank features): {}",
            path.display(),
            names.join(", ")
        );
    }
    // Dictionaries: fields sorted by name, values sorted within each field.
    let mut dicts: Vec<Vec<String>> = vec![Vec::new(); field_names.len()];
    for row in &rows {
        for (f, v) in row {
            dicts[*f].push(v.clone());
        }
    }
    for d in &mut dicts {
        d.sort_unstable();
        d.dedup();
    }
    let mut fields = Vec::new();
    let mut remap = vec![0usize; field_names.len()];
    let mut base = 0u32;
    for (pos, (name, &f)) in field_ix.iter().enumerate() {
        remap[f] = pos;
        let values = std::mem::take(&mut dicts[f]);
        fields.push(FieldSchema { name: name.clone(), multi: multi[f], base, values });
        base += fields.last().map(|x| x.values.len() as u32).unwrap_or(0);
    }
    let schema = Schema { fields };
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    let mut values = Vec::new();
    offsets.push(0u64);
    for row in rows {
        let start = values.len();
        for (f, v) in row {
            let fi = remap[f];
            values.push(schema.value_id(fi, &v).expect("value interned above"));
        }
        values[start..].sort_unstable();
        let mut w = start;
        for r in start..values.len() {
            if w == start || values[w - 1] != values[r] {
                values[w] = values[r];
                w += 1;
            }
        }
        values.truncate(w);
        offsets.push(values.len() as u64);
    }
    let attrs = Attributes { schema, offsets: offsets.into(), values: values.into() };
    Ok(AttributeTable { ids, attrs, features: feats, feature_names: features.to_vec() })
}

/// Deserializes a JSON object only to check that no top-level key repeats.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    m.next_value::<serde::de::IgnoredAny>()?;
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strings_lists_and_features() {
        let src = r#"{"id":"a","section":"libs","tags":["x","y"],"size":3}
{"id":"b","section":"games","tags":[],"size":null,"flag":true}
"#;
        let t = parse_jsonl(src.as_bytes(), Path::new("t.jsonl"), &["size".into()]).unwrap();
        assert_eq!(t.ids, vec!["a", "b"]);
        assert_eq!(t.features, vec![3.0, 0.0]);
        let s = &t.attrs.schema;
        let names: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["id", "section", "tags"]);
        assert!(s.fields[2].multi && !s.fields[1].multi);
        let sec = s.field("section").unwrap();
        let libs = s.value_id(sec, "libs").unwrap();
        assert!(t.attrs.row(0).contains(&libs));
        assert!(!t.attrs.row(1).contains(&libs));
        let tags = s.field("tags").unwrap();
        assert_eq!(t.attrs.row(1).iter().filter(|&&v| s.describe(v).unwrap().0 == "tags").count(), 0);
        assert!(t.attrs.row(0).contains(&s.value_id(tags, "y").unwrap()));
        assert_eq!(s.describe(libs), Some(("section", "libs")));
    }

    #[test]
    fn malformed_line_is_named() {
        let src = "{\"id\":\"a\"}\n{\"id\":\"b\",\n";
        let e = parse_jsonl(src.as_bytes(), Path::new("t.jsonl"), &[]).unwrap_err();
        match e {
            Error::Jsonl { line, .. } => assert_eq!(line, 2),
            other => panic!("unexpected {other}"),
        }
        let e = parse_jsonl("{\"id\":\"a\"}\n{\"id\":\"a\"}\n".as_bytes(), Path::new("t"), &[]).unwrap_err();
        assert!(e.to_string().contains("duplicate id"), "{e}");
        let e = parse_jsonl("{\"x\":1}\n".as_bytes(), Path::new("t"), &[]).unwrap_err();
        assert!(e.to_string().contains("missing field `id`"), "{e}");
    }

    #[test]
    fn duplicate_keys_empty_ids_and_missing_features_are_named() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = rng.random_range(3..40);
        let mut lines: Vec<String> = (0..n).map(|i| format!("{{\"id\":\"r{i}\",\"color\":\"c{}\",\"w\":{i}}}", i % 3)).collect();
        let t = parse_jsonl(lines.join("\n").as_bytes(), Path::new("t"), &["w".into()]).unwrap();
        assert_eq!(t.features.len(), n);
        let err = |lines: &[String], feats: &[String]| parse_jsonl(lines.join("\n").as_bytes(), Path::new("t"), feats).unwrap_err();
        let at = rng.random_range(0..n);
        let mut dup = lines.clone();
        dup[at] = format!("{{\"id\":\"r{at}\",\"color\":\"a\",\"color\":\"b\"}}");
        match err(&dup, &[]) {
            Error::Jsonl { line, reason, .. } => assert_eq!((line, reason.as_str()), (at + 1, "duplicate key `color`")),
            e => panic!("{e}"),
        }
        lines[at] = "{\"id\":\"\",\"color\":\"a\"}".into();
        match err(&lines, &[]) {
            Error::Jsonl { line, reason, .. } => assert_eq!((line, reason.as_str()), (at + 1, "field `id` is empty")),
            e => panic!("{e}"),
        }
        lines[at] = format!("{{\"id\":\"r{at}\"}}");
        let e = err(&lines, &["w".into(), "weight".into()]).to_string();
        assert!(e.contains("`features`") && e.contains("feature `weight`"), "{e}");
    }
}
