//! Update batches: what `POST /v1/items`, `DELETE` and `PATCH /v1/items/{id}` turn into,
//! what the write-ahead log stores (one [`Batch`] per record, as JSON) and the static
//! checks every item passes before the state is touched.

use super::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use silica_core::filter::Dictionary;
use silica_core::model::Metric;
use std::collections::BTreeMap;

/// Longest accepted external id, in bytes.
pub const MAX_ID_BYTES: usize = 4096;

/// One item to insert or replace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// External id (unique; an existing id is replaced).
    pub id: String,
    /// `[D]` vector (normalized by the server when the metric is cosine).
    pub vector: Vec<f32>,
    /// Filterable attributes: field -> string or list of strings. Fields must exist in
    /// the index's schema; `id` is implied by the item id.
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    /// Rerank features by name (missing ones are 0).
    #[serde(default)]
    pub features: BTreeMap<String, f64>,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Op {
    Upsert {
        item: Item,
    },
    Delete {
        id: String,
    },
    /// Replace the values of the named fields only (`[]` clears a field).
    Patch {
        id: String,
        attributes: BTreeMap<String, Value>,
    },
}

/// An update batch: applied and made visible atomically, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub ops: Vec<Op>,
}

/// What the static checks need to know about the index.
pub struct Context<'a, D: Dictionary + ?Sized> {
    pub dim: usize,
    pub metric: Metric,
    pub feature_names: &'a [String],
    pub dict: &'a D,
}

/// An item that passed the checks: normalized vector, resolved fields, features in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub id: String,
    pub vector: Vec<f32>,
    /// (field index, values) per given field.
    pub attrs: Vec<(usize, Vec<String>)>,
    /// (typed column name, key; `None`: no value) per given typed field.
    pub typed: Vec<(String, Option<u64>)>,
    pub features: Vec<f32>,
}

/// Check an item id (`field` names it in errors).
pub fn check_id(id: &str, field: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad(field, "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad(field, format!("is {} bytes; ids are at most {MAX_ID_BYTES}", id.len())));
    }
    Ok(())
}

/// Resolve attribute fields: each must be in the schema (and not `id`), each value a string
/// or a list of strings. `path` prefixes field names in errors (`items[3].attributes`).
pub fn check_attrs<D: Dictionary + ?Sized>(
    attrs: &BTreeMap<String, Value>,
    dict: &D,
    path: &str,
) -> Result<Vec<(usize, Vec<String>)>, ApiError> {
    let mut out = Vec::with_capacity(attrs.len());
    for (name, v) in attrs {
        let field = format!("{path}.{name}");
        if name == "id" {
            return Err(ApiError::bad(field, "`id` is the item id and cannot be set as an attribute"));
        }
        if dict.column(name).is_some() {
            continue; // a typed column: check_typed
        }
        let f = dict.field(name).ok_or_else(|| {
            ApiError::bad(&field, format!("unknown attribute field `{name}` (known fields: {})", dict.field_names().join(", ")))
        })?;
        let values = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_str().map(str::to_string).ok_or_else(|| ApiError::bad(format!("{field}[{i}]"), "list values must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ApiError::bad(field, "must be a string or a list of strings")),
        };
        out.push((f, values));
    }
    Ok(out)
}

/// Resolve the typed fields of `attrs` (int, float, bool, timestamp columns of the index),
/// with the build's typing rules ([`silica_core::model::columns::key_of_json`]); `null` clears
/// a value. String fields are [`check_attrs`]' part. `path` prefixes names in errors.
pub fn check_typed<D: Dictionary + ?Sized>(
    attrs: &BTreeMap<String, Value>,
    dict: &D,
    path: &str,
) -> Result<Vec<(String, Option<u64>)>, ApiError> {
    let mut out = Vec::new();
    for (name, v) in attrs {
        if let Some(ty) = dict.column(name) {
            let key = silica_core::model::columns::key_of_json(ty, v).map_err(|e| ApiError::bad(format!("{path}.{name}"), e))?;
            out.push((name.clone(), key));
        }
    }
    Ok(out)
}

/// The vector an item stores: `x` as given, unit-normalized for cosine (`None`: a cosine
/// vector without a finite, non-zero norm).
pub fn stored_vector(x: &[f32], metric: Metric) -> Option<Vec<f32>> {
    let mut vector = x.to_vec();
    if metric == Metric::Cosine {
        let n = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n == 0.0 || !n.is_finite() {
            return None;
        }
        vector.iter_mut().for_each(|x| *x /= n);
    }
    Some(vector)
}

/// All static checks of one item: id, dimension, values in range ([`silica_core::model::finite`];
/// cosine: non-zero norm),
/// attributes, features. `path` names the item (`items[3]`).
pub fn check_item<D: Dictionary + ?Sized>(item: &Item, ctx: &Context<'_, D>, path: &str) -> Result<Checked, ApiError> {
    check_id(&item.id, &format!("{path}.id"))?;
    if item.vector.len() != ctx.dim {
        return Err(ApiError::bad(
            format!("{path}.vector"),
            format!("has {} values; the index dimension is {}", item.vector.len(), ctx.dim),
        ));
    }
    if let Err(f) = silica_core::model::finite::check_vector(&item.vector, ctx.metric != Metric::Cosine) {
        return Err(ApiError::bad(f.col.map(|j| format!("{path}.vector[{j}]")).unwrap_or_else(|| format!("{path}.vector")), f.reason));
    }
    let Some(vector) = stored_vector(&item.vector, ctx.metric) else {
        return Err(ApiError::bad(format!("{path}.vector"), "cosine index: the vector must have a finite, non-zero norm"));
    };
    let attrs = check_attrs(&item.attributes, ctx.dict, &format!("{path}.attributes"))?;
    let typed = check_typed(&item.attributes, ctx.dict, &format!("{path}.attributes"))?;
    let mut features = vec![0f32; ctx.feature_names.len()];
    for (name, &v) in &item.features {
        let field = format!("{path}.features.{name}");
        let i = ctx
            .feature_names
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| ApiError::bad(&field, format!("unknown feature (index features: {})", ctx.feature_names.join(", "))))?;
        let x = v as f32;
        if !x.is_finite() {
            return Err(ApiError::bad(field, "is not finite in f32"));
        }
        features[i] = x;
    }
    Ok(Checked { id: item.id.clone(), vector, attrs, typed, features })
}

#[cfg(test)]
mod tests {
    use super::*;
    use silica_core::model::{FieldSchema, Schema};

    fn schema() -> Schema {
        let f = |name: &str, base, vals: &[&str]| FieldSchema {
            name: name.into(),
            multi: false,
            base,
            values: vals.iter().map(|s| s.to_string()).collect(),
        };
        Schema { fields: vec![f("color", 0, &["blue", "red"]), f("id", 2, &["a"])], columns: Vec::new() }
    }

    #[test]
    fn checks_name_the_offending_field() {
        let s = schema();
        let feats = vec!["size".to_string()];
        let ctx = Context { dim: 2, metric: Metric::Cosine, feature_names: &feats, dict: &s };
        let item = |v: Vec<f32>, attrs: Value, f: Value| Item {
            id: "x".into(),
            vector: v,
            attributes: serde_json::from_value(attrs).unwrap(),
            features: serde_json::from_value(f).unwrap(),
        };
        let ok = check_item(
            &item(vec![3.0, 4.0], serde_json::json!({"color": ["red", "green"]}), serde_json::json!({"size": 2.0})),
            &ctx,
            "items[0]",
        )
        .unwrap();
        assert_eq!(ok.vector, vec![0.6, 0.8]);
        assert_eq!(ok.attrs, vec![(0, vec!["red".to_string(), "green".to_string()])]);
        assert_eq!(ok.features, vec![2.0]);
        let field = |v, a, f| check_item(&item(v, a, f), &ctx, "items[1]").unwrap_err().field.unwrap();
        let none = serde_json::json!({});
        assert_eq!(field(vec![1.0], none.clone(), none.clone()), "items[1].vector");
        assert_eq!(field(vec![1.0, f32::NAN], none.clone(), none.clone()), "items[1].vector[1]");
        assert_eq!(field(vec![0.0, 0.0], none.clone(), none.clone()), "items[1].vector");
        assert_eq!(field(vec![1.0, 0.0], serde_json::json!({"colour": "red"}), none.clone()), "items[1].attributes.colour");
        assert_eq!(field(vec![1.0, 0.0], serde_json::json!({"id": "y"}), none.clone()), "items[1].attributes.id");
        assert_eq!(field(vec![1.0, 0.0], serde_json::json!({"color": 3}), none.clone()), "items[1].attributes.color");
        assert_eq!(field(vec![1.0, 0.0], serde_json::json!({"color": ["a", 1]}), none.clone()), "items[1].attributes.color[1]");
        assert_eq!(field(vec![1.0, 0.0], none.clone(), serde_json::json!({"weight": 1.0})), "items[1].features.weight");
        assert_eq!(field(vec![1.0, 0.0], none.clone(), serde_json::json!({"size": 1e300})), "items[1].features.size");
        let mut long = item(vec![1.0, 0.0], none.clone(), none);
        long.id = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(check_item(&long, &ctx, "items[0]").unwrap_err().field.unwrap(), "items[0].id");
    }

    #[test]
    fn batches_round_trip_through_json_exactly() {
        let b = Batch {
            ops: vec![
                Op::Upsert {
                    item: Item {
                        id: "a".into(),
                        vector: vec![0.1, -3.4028235e38, 1e-45],
                        attributes: Default::default(),
                        features: [("s".to_string(), 0.25)].into(),
                    },
                },
                Op::Delete { id: "b".into() },
                Op::Patch { id: "c".into(), attributes: [("color".to_string(), serde_json::json!([]))].into() },
            ],
        };
        let js = serde_json::to_vec(&b).unwrap();
        assert_eq!(serde_json::from_slice::<Batch>(&js).unwrap(), b);
    }
}
