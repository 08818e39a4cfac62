//! Item attributes: JSON Lines input, the attribute schema (one dictionary per field)
//! and the exact per-row value lists stored as CSR (`attrs.offsets`, `attrs.values`).
//!
//! Input: one JSON object per line. `id` (string) is the external id and is also a
//! filterable field. Every other field is typed (by value, or by an explicit schema, see
//! [`FieldType`]): strings and arrays of strings become dictionary-encoded attributes
//! (Bloom + CSR); integers, floats, booleans and (declared) RFC 3339 timestamps become
//! typed columns ([`super::columns`]); numeric fields named in `features` become dense
//! rerank features (null or absent -> 0.0). A field whose values mix types (a string on
//! one line, a number on another) is an error naming the line. Objects are not indexed;
//! their field names are listed in one warning. Nulls mean "no value".

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::BufRead;
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

/// The attribute schema: all dictionary-encoded fields, sorted by name, and the typed
/// columns (names and types; their values live in [`crate::model::Columns`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    pub fields: Vec<FieldSchema>,
    pub columns: Vec<super::columns::ColumnSchema>,
}

impl Schema {
    /// Field index by name.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
    /// Global value id of `value` in field `field`, if any row has it.
    pub fn value_id(&self, field: usize, value: &str) -> Option<u32> {
        let f = &self.fields[field];
        f.values.binary_search_by(|v| v.as_str().cmp(value)).ok().map(|i| f.base + i as u32)
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

/// A field's type in `--schema field:TYPE,...`: `string` (a string or list of strings),
/// or a typed column (`int`, `float`, `bool`, `timestamp`). Undeclared fields are typed by
/// value: JSON strings and string lists are `string`, integers `int` (a field with any
/// non-integer number is `float`), `true`/`false` `bool`. Timestamps must be declared
/// (a string field stays a string unless the schema says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Typed(super::ColumnType),
}

/// Parse `--schema`: `field:type` entries separated by commas (types `string`, `int`,
/// `float`, `bool`, `timestamp`). Errors: [`Error::Param`] naming `schema` and the entry.
pub fn parse_schema(text: &str) -> Result<Vec<(String, FieldType)>> {
    use super::ColumnType as C;
    let mut out: Vec<(String, FieldType)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: &str| {
            Error::param(
                "schema",
                format!("entry {entry:?}: {why} (expected FIELD:TYPE with TYPE one of string, int, float, bool, timestamp)"),
            )
        };
        let (name, ty) = entry.rsplit_once(':').ok_or_else(|| bad("no `:`"))?;
        let ty = match ty.trim() {
            "string" | "str" => FieldType::String,
            "int" | "integer" | "i64" => FieldType::Typed(C::Int),
            "float" | "double" | "f64" => FieldType::Typed(C::Float),
            "bool" | "boolean" => FieldType::Typed(C::Bool),
            "timestamp" | "time" => FieldType::Typed(C::Timestamp),
            _ => return Err(bad("unknown type")),
        };
        let name = name.trim();
        if name.is_empty() || name == "id" {
            return Err(bad(if name.is_empty() { "empty field name" } else { "`id` is always a string" }));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad("field declared twice"));
        }
        out.push((name.to_string(), ty));
    }
    Ok(out)
}

/// A typed column as read, in source-line order: order-preserving keys
/// ([`super::columns::key_i64`] / [`super::columns::key_f64`]), `None` where a line has
/// no value.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedColumn {
    pub name: String,
    pub ty: super::ColumnType,
    pub keys: Vec<Option<u64>>,
}

/// What [`read_jsonl`] returns, in source-line order.
#[derive(Clone, Debug, Default)]
pub struct AttributeTable {
    /// Typed columns (sorted by name).
    pub columns: Vec<TypedColumn>,
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
    read_jsonl_with(path, features, &[])
}

/// [`read_jsonl`] with declared field types (`--schema`): a value that does not fit its
/// declared type is an error naming the line.
pub fn read_jsonl_with(path: &Path, features: &[String], schema: &[(String, FieldType)]) -> Result<AttributeTable> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map_err(|e| Error::io(path, e))?.len() == 0 {
        return parse_bytes(&[], path, features, schema);
    }
    // SAFETY: read-only map; a concurrent writer of the input is out of contract.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    parse_bytes(&map, path, features, schema)
}

/// [`read_jsonl`] over any reader; `path` is only used in error messages.
pub fn parse_jsonl(reader: impl BufRead, path: &Path, features: &[String]) -> Result<AttributeTable> {
    parse_jsonl_with(reader, path, features, &[])
}

/// [`read_jsonl_with`] over any reader.
pub fn parse_jsonl_with(
    mut reader: impl BufRead,
    path: &Path,
    features: &[String],
    schema: &[(String, FieldType)],
) -> Result<AttributeTable> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    parse_bytes(&bytes, path, features, schema)
}

/// A typed value of one line.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

/// Value classes that may not mix within a field: string, number, bool, timestamp.
const CLASSES: [&str; 4] = ["string", "number", "boolean", "timestamp"];

impl Scalar {
    fn class(self) -> usize {
        match self {
            Scalar::Int(_) | Scalar::Float(_) => 1,
            Scalar::Bool(_) => 2,
            Scalar::Time(_) => 3,
        }
    }
}

/// One JSON value of field `k` under its declared type (`None`: by value).
fn typed_value(k: &str, v: &serde_json::Value, declared: Option<FieldType>) -> std::result::Result<Option<Scalar>, String> {
    use super::ColumnType as C;
    use serde_json::Value as J;
    let want = |t: &str, got: &str| format!("field `{k}` is declared {t}, got {got}");
    Ok(Some(match (v, declared) {
        (J::Number(n), None | Some(FieldType::Typed(C::Int | C::Float))) => {
            let float = declared == Some(FieldType::Typed(C::Float));
            match (n.as_i64(), n.as_f64()) {
                (Some(i), _) if !float => Scalar::Int(i),
                (_, Some(f)) if declared != Some(FieldType::Typed(C::Int)) && f.is_finite() => Scalar::Float(f),
                _ if declared == Some(FieldType::Typed(C::Int)) => {
                    return Err(format!("field `{k}` is declared int, got {n} (not an integer in i64 range)"));
                }
                _ => return Err(format!("field `{k}`: {n} is not a finite number")),
            }
        }
        (J::Bool(b), None | Some(FieldType::Typed(C::Bool))) => Scalar::Bool(*b),
        (J::String(s), Some(FieldType::Typed(C::Timestamp))) => {
            Scalar::Time(super::columns::parse_timestamp(s).map_err(|e| format!("field `{k}`: {e}"))?)
        }
        (J::String(_) | J::Array(_), None | Some(FieldType::String)) => return Ok(None),
        (_, Some(FieldType::Typed(t))) => return Err(want(t.name(), &short(v))),
        (_, Some(FieldType::String)) => return Err(want("string", &short(v))),
        _ => return Ok(None),
    }))
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 40 { format!("{}...", &s[..s.char_indices().nth(37).map_or(s.len(), |c| c.0)]) } else { s }
}

/// Bytes of JSONL per batch at most (about 65,536 lines of a catalog's 120-byte lines);
/// batches are parsed in parallel and merged in line order.
const BATCH_BYTES: usize = 8 << 20;

/// One parsed line: id, (field name, value, from a list) pairs, typed values, features,
/// ignored names.
struct Line {
    id: String,
    pairs: Vec<(String, Option<String>, bool)>,
    typed: Vec<(String, Scalar)>,
    feats: Vec<f32>,
    feature_seen: Vec<bool>,
    ignored: Vec<String>,
}

fn parse_line(line: &[u8], features: &[String], schema: &[(String, FieldType)]) -> std::result::Result<Line, String> {
    let line = std::str::from_utf8(line).map_err(|e| format!("cannot read line: {e}"))?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    // One pass: the object's entries, refusing a repeated key (serde_json's own map would
    // keep the last one silently).
    let obj = match serde_json::from_str::<UniqueObject>(line) {
        Ok(UniqueObject(map)) => map,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or_default();
            return Err(if msg.starts_with("duplicate key") { msg.to_string() } else { "expected a JSON object".to_string() });
        }
        Err(e) => return Err(format!("malformed JSON: {e}")),
    };
    let obj = &obj;
    let id = match obj.get("id") {
        Some(serde_json::Value::String(s)) if s.is_empty() => return Err("field `id` is empty".into()),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err("field `id` must be a string".into()),
        None => return Err("missing field `id`".into()),
    };
    let mut pairs = Vec::new();
    let mut typed = Vec::new();
    let mut ignored = Vec::new();
    for (k, v) in obj {
        if features.iter().any(|f| f == k) {
            continue;
        }
        if k == "id" {
            // Interned apart, by one parallel sort over all lines ([`intern_ids`]).
            continue;
        }
        let declared = schema.iter().find(|(n, _)| n == k).map(|(_, t)| *t);
        if !v.is_null()
            && !v.is_object()
            && let Some(x) = typed_value(k, v, declared)?
        {
            typed.push((k.clone(), x));
            continue;
        }
        match v {
            serde_json::Value::String(s) => pairs.push((k.clone(), Some(s.clone()), false)),
            serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => {
                if a.is_empty() {
                    pairs.push((k.clone(), None, true));
                }
                pairs.extend(a.iter().map(|x| (k.clone(), Some(x.as_str().unwrap_or_default().to_string()), true)));
            }
            serde_json::Value::Array(_) => {
                return Err(format!("field `{k}`: arrays must hold only strings (lists of numbers or booleans are not supported)"));
            }
            serde_json::Value::Null => {}
            _ => ignored.push(k.clone()),
        }
    }
    let mut feats = Vec::with_capacity(features.len());
    let mut feature_seen = vec![false; features.len()];
    for (fi, f) in features.iter().enumerate() {
        let x = match obj.get(f) {
            None | Some(serde_json::Value::Null) => 0.0,
            Some(serde_json::Value::Number(n)) => {
                feature_seen[fi] = true;
                n.as_f64().unwrap_or(0.0) as f32
            }
            Some(other) => return Err(format!("feature `{f}` must be a number, got {other}")),
        };
        if !x.is_finite() {
            return Err(format!("feature `{f}` is not finite"));
        }
        feats.push(x);
    }
    Ok(Line { id, pairs, typed, feats, feature_seen, ignored })
}

/// One batch of lines parsed and interned on its own (in parallel with the others): local
/// field and value ids, merged into the global dictionaries afterwards in batch order, so the
/// sequential part costs one lookup per distinct value per batch, not one per value.
struct Batch {
    /// 1-based line number of the batch's first line.
    first_line: usize,
    /// Local fields: name, multi-valued, values by local id.
    fields: Vec<(String, bool, Vec<String>)>,
    /// Per row (local field, local value), rows delimited by `offs`.
    pairs: Vec<(u32, u32)>,
    /// Typed values: (field name, row within the batch, value).
    typed: Vec<(String, u32, Scalar)>,
    /// Per field name, the first line of each value class ([`CLASSES`]).
    classes: HashMap<String, [usize; 4]>,
    offs: Vec<u32>,
    ids: Vec<String>,
    feats: Vec<f32>,
    feature_seen: Vec<bool>,
    ignored: std::collections::BTreeSet<String>,
    /// The first bad line (line number, reason); the rows before it are kept.
    error: Option<(usize, String)>,
}

fn parse_batch(lines: &[&[u8]], first_line: usize, features: &[String], schema: &[(String, FieldType)]) -> Batch {
    let mut b = Batch {
        first_line,
        fields: Vec::new(),
        pairs: Vec::with_capacity(lines.len() * 8),
        typed: Vec::new(),
        classes: HashMap::new(),
        offs: Vec::with_capacity(lines.len() + 1),
        ids: Vec::with_capacity(lines.len()),
        feats: Vec::with_capacity(lines.len() * features.len()),
        feature_seen: vec![false; features.len()],
        ignored: Default::default(),
        error: None,
    };
    b.offs.push(0);
    let mut field_ix: HashMap<String, usize> = HashMap::new();
    let mut value_ix: Vec<HashMap<String, u32>> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let line = match parse_line(l, features, schema) {
            Ok(line) => line,
            Err(reason) => {
                b.error = Some((first_line + i, reason));
                break;
            }
        };
        let lineno = first_line + i;
        let seen = |k: &str, class: usize, classes: &mut HashMap<String, [usize; 4]>| {
            if let Some(c) = classes.get_mut(k) {
                c[class] = c[class].min(lineno);
            } else {
                let mut c = [usize::MAX; 4];
                c[class] = lineno;
                classes.insert(k.to_string(), c);
            }
        };
        for (k, x) in line.typed {
            seen(&k, x.class(), &mut b.classes);
            b.typed.push((k, b.ids.len() as u32, x));
        }
        for (k, v, multi) in line.pairs {
            if v.is_some() {
                seen(&k, 0, &mut b.classes);
            }
            let f = match field_ix.get(&k) {
                Some(&f) => f,
                None => {
                    field_ix.insert(k.clone(), b.fields.len());
                    b.fields.push((k, false, Vec::new()));
                    value_ix.push(HashMap::new());
                    b.fields.len() - 1
                }
            };
            b.fields[f].1 |= multi;
            if let Some(v) = v {
                let values = &mut b.fields[f].2;
                let t = *value_ix[f].entry(v).or_insert_with_key(|v| {
                    values.push(v.clone());
                    values.len() as u32 - 1
                });
                b.pairs.push((f as u32, t));
            }
        }
        b.offs.push(b.pairs.len() as u32);
        b.feats.extend_from_slice(&line.feats);
        b.feature_seen.iter_mut().zip(&line.feature_seen).for_each(|(s, &n)| *s |= n);
        b.ignored.extend(line.ignored);
        b.ids.push(line.id);
    }
    b
}

/// Parse JSON Lines `bytes`: batches of lines are parsed and interned in parallel, then
/// merged in line order (so the first bad line, or the first repeat of an id, is the one
/// named); values are held as u32 ids, one string per distinct value.
fn parse_bytes(bytes: &[u8], path: &Path, features: &[String], schema: &[(String, FieldType)]) -> Result<AttributeTable> {
    use rayon::prelude::*;
    let bad = |line: usize, reason: String| Error::Jsonl { path: path.to_path_buf(), line, reason };
    let t0 = std::time::Instant::now();
    // Batches are byte blocks cut after a newline (no sequential pass over all lines): their
    // lines are counted in parallel, and a prefix sum numbers each block's first line.
    let target = bytes.len().div_ceil(4 * rayon::current_num_threads().max(1)).clamp(1, BATCH_BYTES);
    let mut blocks: Vec<&[u8]> = Vec::with_capacity(bytes.len() / target + 1);
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + target).min(bytes.len());
        end = bytes[end - 1..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| end + i);
        blocks.push(&bytes[start..end]);
        start = end;
    }
    // A block's lines: its pieces between newlines, less the empty piece after a final one.
    let lines_in = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() + usize::from(!b.ends_with(b"\n"));
    let firsts: Vec<usize> =
        blocks.par_iter().map(|b| lines_in(b)).collect::<Vec<_>>().iter().scan(1, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
    let mut batches: Vec<Batch> = blocks
        .par_iter()
        .zip(firsts)
        .map(|(b, first)| {
            let mut lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
            if b.ends_with(b"\n") {
                lines.pop();
            }
            parse_batch(&lines, first, features, schema)
        })
        .collect();
    drop(blocks);
    log::info!("attributes: lines split, parsed and interned per batch in {:.2}s", t0.elapsed().as_secs_f64());
    let t0 = std::time::Instant::now();

    // Merge in batch order. Global fields (first-seen order): name, multi, value -> temp id,
    // values by temp id; per batch, local (field, value) -> (global field, temp id).
    let mut field_ix: HashMap<String, usize> = HashMap::new();
    // (name, multi, value -> temp id, values by temp id).
    type Field = (String, bool, HashMap<String, u32>, Vec<String>);
    let mut fields_tmp: Vec<Field> = Vec::new();
    let mut local: Vec<Vec<(u32, Vec<u32>)>> = Vec::with_capacity(batches.len());
    let mut feature_seen = vec![false; features.len()];
    let mut ignored: std::collections::BTreeSet<String> = Default::default();
    // The first bad line; ids are checked below, over the lines parsed (all lines before it).
    let first_error = batches.iter().find_map(|b| b.error.clone());
    let ids: Vec<&str> = batches.iter().flat_map(|b| b.ids.iter().map(String::as_str)).collect();
    let id_sorted = intern_ids(&ids);
    // Rows of the batches before each one (batches after a bad one still hold rows, so the
    // line of row `r` is not `r + 1` past an error: map through the batches).
    let line_of = |row: usize| {
        let mut row = row;
        for b in &batches {
            if row < b.ids.len() {
                return b.first_line + row;
            }
            row -= b.ids.len();
        }
        usize::MAX
    };
    if let Some((again, first)) = id_sorted.first_repeat {
        let (again, first) = (line_of(again as usize), line_of(first as usize));
        if first_error.as_ref().is_none_or(|e| again < e.0) {
            return Err(bad(
                again,
                format!("duplicate id {:?} (first on line {first})", ids[id_sorted.first_repeat.map_or(0, |r| r.0 as usize)]),
            ));
        }
    }
    if let Some((line, reason)) = first_error {
        return Err(bad(line, reason));
    }
    drop(ids);
    for b in &batches {
        let maps = b
            .fields
            .iter()
            .map(|(name, multi, values)| {
                let f = *field_ix.entry(name.clone()).or_insert_with(|| {
                    fields_tmp.push((name.clone(), false, HashMap::new(), Vec::new()));
                    fields_tmp.len() - 1
                });
                let field = &mut fields_tmp[f];
                field.1 |= multi;
                let temp = values
                    .iter()
                    .map(|v| {
                        *field.2.entry(v.clone()).or_insert_with(|| {
                            field.3.push(v.clone());
                            field.3.len() as u32 - 1
                        })
                    })
                    .collect();
                (f as u32, temp)
            })
            .collect();
        local.push(maps);
        feature_seen.iter_mut().zip(&b.feature_seen).for_each(|(s, &n)| *s |= n);
        ignored.extend(b.ignored.iter().cloned());
    }
    let columns = merge_typed(&batches, schema, path)?;
    if let Some(i) = feature_seen.iter().position(|s| !s) {
        return Err(Error::param("features", format!("feature `{}` is not a number on any line of {}", features[i], path.display())));
    }
    if !ignored.is_empty() {
        let names: Vec<&str> = ignored.iter().map(String::as_str).collect();
        log::warn!(
            "{}: fields not indexed (JSON objects are not filterable; strings, string lists, numbers and booleans are): {}",
            path.display(),
            names.join(", ")
        );
    }
    log::info!("attributes: batches merged (ids checked) in {:.2}s", t0.elapsed().as_secs_f64());
    // Dictionaries: fields sorted by name, values sorted within each field; temp id -> global id.
    // `usize::MAX` stands for `id` (interned by its sort, not a map).
    let n_rows: usize = batches.iter().map(|b| b.ids.len()).sum();
    const ID: usize = usize::MAX;
    let mut order: Vec<usize> = (0..fields_tmp.len()).chain((n_rows > 0).then_some(ID)).collect();
    let name_of = |f: usize| if f == ID { "id" } else { fields_tmp[f].0.as_str() };
    order.sort_by(|&a, &b| name_of(a).cmp(name_of(b)));
    let mut remap: Vec<Vec<u32>> = vec![Vec::new(); fields_tmp.len()];
    let mut fields = Vec::with_capacity(order.len());
    let mut base = 0u32;
    let mut id_base = 0u32;
    for &f in &order {
        if f == ID {
            let all: Vec<&String> = batches.iter().flat_map(|b| b.ids.iter()).collect();
            let values: Vec<String> = id_sorted.order.par_iter().map(|&r| all[r as usize].clone()).collect();
            id_base = base;
            base += values.len() as u32;
            fields.push(FieldSchema { name: "id".into(), multi: false, base: id_base, values });
            continue;
        }
        let (name, multi, map, values) = std::mem::take(&mut fields_tmp[f]);
        drop(map);
        let mut by_value: Vec<u32> = (0..values.len() as u32).collect();
        by_value.par_sort_unstable_by(|&a, &b| values[a as usize].cmp(&values[b as usize]));
        let mut to_global = vec![0u32; values.len()];
        for (rank, &t) in by_value.iter().enumerate() {
            to_global[t as usize] = base + rank as u32;
        }
        remap[f] = to_global;
        let mut values = values;
        let mut slots: Vec<Option<String>> = values.drain(..).map(Some).collect();
        let sorted: Vec<String> = by_value.iter().map(|&t| slots[t as usize].take().unwrap_or_default()).collect();
        let count = sorted.len() as u32;
        fields.push(FieldSchema { name, multi, base, values: sorted });
        base += count;
    }
    let schema =
        Schema { fields, columns: columns.iter().map(|c| super::columns::ColumnSchema { name: c.name.clone(), ty: c.ty }).collect() };
    // Rows: global value ids, sorted and deduplicated per row, batches in parallel.
    let row0: Vec<usize> = batches.iter().scan(0, |r, b| Some(std::mem::replace(r, *r + b.ids.len()))).collect();
    let rows: Vec<(Vec<u32>, Vec<u32>)> = batches
        .par_iter()
        .zip(&local)
        .zip(&row0)
        .map(|((b, maps), &row0)| {
            let mut values = Vec::with_capacity(b.pairs.len() + b.ids.len());
            let mut counts = Vec::with_capacity(b.ids.len());
            for (i, w) in b.offs.windows(2).enumerate() {
                let start = values.len();
                values.push(id_base + id_sorted.rank[row0 + i]);
                values.extend(b.pairs[w[0] as usize..w[1] as usize].iter().map(|&(lf, lv)| {
                    let (f, temp) = &maps[lf as usize];
                    remap[*f as usize][temp[lv as usize] as usize]
                }));
                values[start..].sort_unstable();
                let mut keep = start;
                for r in start..values.len() {
                    if keep == start || values[keep - 1] != values[r] {
                        values[keep] = values[r];
                        keep += 1;
                    }
                }
                values.truncate(keep);
                counts.push((keep - start) as u32);
            }
            (values, counts)
        })
        .collect();
    let total: usize = rows.iter().map(|r| r.0.len()).sum();
    let mut offsets = Vec::with_capacity(batches.iter().map(|b| b.ids.len()).sum::<usize>() + 1);
    let mut values = Vec::with_capacity(total);
    offsets.push(0u64);
    for (v, counts) in &rows {
        let mut end = values.len() as u64;
        offsets.extend(counts.iter().map(|&c| {
            end += c as u64;
            end
        }));
        values.extend_from_slice(v);
    }
    drop(rows);
    let mut ids = Vec::with_capacity(offsets.len() - 1);
    let mut feats = Vec::new();
    for b in &mut batches {
        ids.append(&mut b.ids);
        feats.append(&mut b.feats);
    }
    let attrs = Attributes { schema, offsets: offsets.into(), values: values.into() };
    Ok(AttributeTable { columns, ids, attrs, features: feats, feature_names: features.to_vec() })
}

/// The `id` field's dictionary order: `order[rank]` is the row of the rank-th smallest id,
/// `rank[row]` its inverse, and `first_repeat` the (row, earlier row) of the first row in
/// line order whose id an earlier row already has.
struct IdOrder {
    order: Vec<u32>,
    rank: Vec<u32>,
    first_repeat: Option<(u32, u32)>,
}

/// Sort the ids (in parallel, on 16-byte big-endian prefixes first; a tie compares the
/// whole strings, then the row): every id is distinct, so `id` needs no hash map, and a
/// repeat is found between sort neighbours. The first repeat in line order is the second
/// row of some group of equal ids, whose sort predecessor is that group's first row.
fn intern_ids(ids: &[&str]) -> IdOrder {
    use rayon::prelude::*;
    let prefix = |s: &str| {
        let mut b = [0u8; 16];
        let n = s.len().min(16);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        u128::from_be_bytes(b)
    };
    let mut keys: Vec<(u128, u32)> = ids.par_iter().enumerate().map(|(r, s)| (prefix(s), r as u32)).collect();
    keys.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| ids[a.1 as usize].cmp(ids[b.1 as usize])).then(a.1.cmp(&b.1)));
    let order: Vec<u32> = keys.into_par_iter().map(|k| k.1).collect();
    let first_repeat = order.par_windows(2).filter(|w| ids[w[0] as usize] == ids[w[1] as usize]).map(|w| (w[1], w[0])).min();
    let mut rank = vec![0u32; order.len()];
    {
        // Scatter rank -> row in parallel: each row is written once.
        let ptr = rank.as_mut_ptr() as usize;
        order.par_iter().enumerate().for_each(|(i, &r)| {
            // SAFETY: `order` is a permutation of 0..len, so the writes are disjoint and in bounds.
            unsafe { *(ptr as *mut u32).add(r as usize) = i as u32 };
        });
    }
    IdOrder { order, rank, first_repeat }
}

/// The typed columns of all batches, in line order: a field whose values mix classes
/// (string, number, boolean) is an error naming the first line of the later class; a
/// number field is `float` when any value is not an integer (unless declared `int`).
fn merge_typed(batches: &[Batch], schema: &[(String, FieldType)], path: &Path) -> Result<Vec<TypedColumn>> {
    use super::ColumnType as C;
    use super::columns::{key_f64, key_i64};
    let mut classes: std::collections::BTreeMap<&str, [usize; 4]> = Default::default();
    for b in batches {
        for (k, c) in &b.classes {
            let e = classes.entry(k.as_str()).or_insert([usize::MAX; 4]);
            e.iter_mut().zip(c).for_each(|(a, &b)| *a = (*a).min(b));
        }
    }
    for (k, c) in &classes {
        let mut seen: Vec<(usize, usize)> = c.iter().enumerate().filter(|x| *x.1 != usize::MAX).map(|(i, &l)| (l, i)).collect();
        seen.sort_unstable();
        if seen.len() > 1 {
            let ((l0, c0), (l1, c1)) = (seen[0], seen[1]);
            return Err(Error::Jsonl {
                path: path.to_path_buf(),
                line: l1,
                reason: format!(
                    "field `{k}` holds a {} here but a {} on line {l0}; a field has one type (declare it with --schema {k}:TYPE)",
                    CLASSES[c1], CLASSES[c0]
                ),
            });
        }
    }
    let n: usize = batches.iter().map(|b| b.ids.len()).sum();
    let mut names: Vec<&str> = classes.iter().filter(|(_, c)| c[0] == usize::MAX).map(|(k, _)| *k).collect();
    for (k, t) in schema {
        if matches!(t, FieldType::Typed(_)) && !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let declared = schema.iter().find(|(n, _)| n == name).and_then(|(_, t)| match t {
            FieldType::Typed(c) => Some(*c),
            FieldType::String => None,
        });
        let vals = || batches.iter().flat_map(|b| b.typed.iter().filter(move |t| t.0 == name).map(|t| t.2));
        let ty = declared.unwrap_or_else(|| match vals().next() {
            Some(Scalar::Bool(_)) => C::Bool,
            Some(Scalar::Time(_)) => C::Timestamp,
            _ if vals().any(|x| matches!(x, Scalar::Float(_))) => C::Float,
            _ => C::Int,
        });
        let mut keys = vec![None; n];
        let mut row0 = 0usize;
        for b in batches {
            for (k, r, x) in &b.typed {
                if k != name {
                    continue;
                }
                keys[row0 + *r as usize] = Some(match (*x, ty) {
                    (Scalar::Int(i), C::Float) => key_f64(i as f64),
                    (Scalar::Float(f), _) => key_f64(f),
                    (Scalar::Int(i) | Scalar::Time(i), _) => key_i64(i),
                    (Scalar::Bool(v), _) => v as u64,
                });
            }
            row0 += b.ids.len();
        }
        out.push(TypedColumn { name: name.to_string(), ty, keys });
    }
    Ok(out)
}

/// A JSON object whose top-level keys are all distinct (a repeat is an error naming it).
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<UniqueObject, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v = m.next_value::<serde_json::Value>()?;
                    if map.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    map.insert(k, v);
                }
                Ok(UniqueObject(map))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many batches (20,000 lines): every row keeps exactly its own (field, value) pairs,
    /// the dictionaries are sorted, and errors past the first batch name the right lines.
    #[test]
    fn batches_merge_in_line_order() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 20_000;
        let mut text = String::new();
        let mut want: Vec<std::collections::BTreeSet<(String, String)>> = Vec::new();
        for i in 0..n {
            // `id` is a filterable field too.
            let mut set = std::collections::BTreeSet::from([("id".to_string(), format!("r{i}"))]);
            let mut o = serde_json::Map::new();
            o.insert("id".into(), format!("r{i}").into());
            if rng.random_range(0..3) > 0 {
                let c = format!("c{}", rng.random_range(0..50));
                set.insert(("color".to_string(), c.clone()));
                o.insert("color".into(), c.into());
            }
            let tags: Vec<String> = (0..rng.random_range(0..4)).map(|_| format!("t{}", rng.random_range(0..3000))).collect();
            set.extend(tags.iter().map(|t| ("tags".to_string(), t.clone())));
            o.insert("tags".into(), tags.into());
            if i >= n / 2 {
                let s = format!("s{}", i % 7);
                set.insert(("late".to_string(), s.clone()));
                o.insert("late".into(), s.into());
            }
            text.push_str(&serde_json::Value::Object(o).to_string());
            text.push('\n');
            want.push(set);
        }
        let t = parse_jsonl(text.as_bytes(), Path::new("a.jsonl"), &[]).unwrap();
        assert_eq!(t.ids.len(), n);
        for (r, set) in want.iter().enumerate() {
            assert_eq!(t.ids[r], format!("r{r}"));
            let got: std::collections::BTreeSet<(String, String)> =
                t.attrs.row(r).iter().map(|&v| t.attrs.schema.describe(v).map(|(f, v)| (f.to_string(), v.to_string())).unwrap()).collect();
            assert_eq!(&got, set, "row {r}");
        }
        for f in &t.attrs.schema.fields {
            assert!(f.values.windows(2).all(|w| w[0] < w[1]), "field {} sorted", f.name);
        }
        assert!(t.attrs.schema.fields.iter().find(|f| f.name == "tags").unwrap().multi);
        // A repeated id late in the file, then a bad line after it: the repeat is named.
        let lines: Vec<&str> = text.lines().collect();
        let mut dup = lines.clone();
        dup[17_000] = lines[3];
        dup[17_500] = "{not json";
        let e = parse_jsonl(dup.join("\n").as_bytes(), Path::new("a.jsonl"), &[]).unwrap_err().to_string();
        assert!(e.contains(":17001:") && e.contains("first on line 4"), "{e}");
        let mut broken = lines.clone();
        broken[19_999] = "[1, 2]";
        let e = parse_jsonl(broken.join("\n").as_bytes(), Path::new("a.jsonl"), &[]).unwrap_err().to_string();
        assert!(e.contains(":20000:") && e.contains("object"), "{e}");
    }

    /// `id` is interned by a sort: its dictionary is every id in byte order, each row holds
    /// exactly its own id's value, and of several repeats (and bad lines) the first in line
    /// order is named, with the line of the id's first occurrence.
    #[test]
    fn ids_are_interned_by_sort_and_the_first_repeat_is_named() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n = rng.random_range(3_000..9_000);
        // Ids sharing long prefixes (the 16-byte sort key ties), of varied lengths, with a NUL.
        let ids: Vec<String> = (0..n)
            .map(|i| match i % 3 {
                0 => format!("item-with-a-long-common-prefix-{}", rng.random_range(0..u64::MAX)),
                1 => format!("{}", rng.random_range(0..u64::MAX)),
                _ => format!("x\\u0000{i}"),
            })
            .collect();
        let lines: Vec<String> = ids.iter().map(|id| format!("{{\"id\":\"{id}\",\"c\":\"v{}\"}}", id.len() % 4)).collect();
        let t = parse_jsonl(lines.join("\n").as_bytes(), Path::new("t"), &[]).unwrap();
        let s = &t.attrs.schema;
        let f = s.field("id").unwrap();
        let mut want: Vec<&String> = t.ids.iter().collect();
        want.sort();
        assert_eq!(s.fields[f].values.iter().collect::<Vec<_>>(), want);
        for (r, id) in t.ids.iter().enumerate() {
            let v = s.value_id(f, id).unwrap();
            assert!(t.attrs.row(r).contains(&v), "row {r}");
            assert_eq!(t.attrs.row(r).iter().filter(|&&x| s.describe(x).unwrap().0 == "id").count(), 1);
        }
        // Repeats: line b repeats line a, line d (< b) repeats line c (> a): d is named.
        let (a, c) = (rng.random_range(0..n / 4), rng.random_range(n / 4..n / 2));
        let (d, b) = (rng.random_range(n / 2..3 * n / 4), rng.random_range(3 * n / 4..n));
        let mut dup = lines.clone();
        dup[b] = lines[a].clone();
        dup[d] = lines[c].clone();
        let e = parse_jsonl(dup.join("\n").as_bytes(), Path::new("t"), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!(":{}:", d + 1)) && e.contains(&format!("first on line {}", c + 1)), "{e}");
        // A bad line before the first repeat is named instead; after it, the repeat is.
        let mut bad = dup.clone();
        bad[d - 1] = "{".into();
        let e = parse_jsonl(bad.join("\n").as_bytes(), Path::new("t"), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!(":{}:", d)) && e.contains("malformed"), "{e}");
        let mut late = dup.clone();
        late[d + 1] = "{".into();
        let e = parse_jsonl(late.join("\n").as_bytes(), Path::new("t"), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!(":{}:", d + 1)) && e.contains("duplicate id"), "{e}");
        // No lines: no `id` field.
        assert!(parse_jsonl(&b""[..], Path::new("t"), &[]).unwrap().attrs.schema.fields.is_empty());
    }

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
