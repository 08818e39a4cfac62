//! The attribute dictionary of a serving index: the artifact's [`Schema`] plus values first
//! seen in updates (a new id, a new tag). Appended values get global ids after the schema's
//! last id, in arrival order, so existing ids never move and per-field sorted order (what
//! [`Schema::value_id`] binary-searches) stays valid. `silica compact` folds them back into
//! sorted per-field dictionaries.
//!
//! The appended table is shared by every snapshot and only grows; each snapshot sees the
//! prefix that existed when it was published (`upto`), so filters compile against exactly
//! the snapshot's dictionary.

use silica_core::filter::Dictionary;
use silica_core::model::Schema;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Default, Debug)]
struct Table {
    /// (field, value) -> appended index (global id = base_total + index).
    map: HashMap<(u32, String), u32>,
    /// Appended index -> (field, value).
    values: Vec<(u32, String)>,
}

/// A snapshot's view of the dictionary (cheap to clone: two `Arc`s and two integers).
#[derive(Clone, Debug)]
pub struct Dict {
    base: Arc<Schema>,
    base_total: u32,
    table: Arc<RwLock<Table>>,
    upto: u32,
}

impl Dict {
    /// A dictionary over `schema` with nothing appended.
    pub fn new(schema: Schema) -> Dict {
        let base_total = schema.num_values() as u32;
        Dict { base: Arc::new(schema), base_total, table: Default::default(), upto: 0 }
    }

    /// The artifact's schema.
    pub fn schema(&self) -> &Schema {
        &self.base
    }

    /// Number of value ids this view knows (schema + visible appended values).
    pub fn total(&self) -> u32 {
        self.base_total + self.upto
    }

    /// Number of values appended since the artifact was written (visible to this view).
    pub fn appended(&self) -> u32 {
        self.upto
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Global id of `value` in `field`, appending it when new (writer only). Views cloned
    /// before this call do not see the new value.
    pub fn intern(&mut self, field: usize, value: &str) -> u32 {
        if let Some(id) = Dictionary::value_id(self, field, value) {
            return id;
        }
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        // Another view of the same table may have appended past `upto`; only one writer
        // exists, so the table's length is this view's `upto`.
        debug_assert_eq!(t.values.len() as u32, self.upto);
        let ix = t.values.len() as u32;
        t.values.push((field as u32, value.to_string()));
        t.map.insert((field as u32, value.to_string()), ix);
        self.upto = ix + 1;
        self.base_total + ix
    }

    /// `(field index, value)` of a global id, or `None` when out of range.
    pub fn describe(&self, id: u32) -> Option<(usize, String)> {
        if id < self.base_total {
            let f = self.base.fields.iter().rposition(|f| f.base <= id)?;
            let v = self.base.fields[f].values.get((id - self.base.fields[f].base) as usize)?;
            return Some((f, v.clone()));
        }
        let ix = id - self.base_total;
        if ix >= self.upto {
            return None;
        }
        self.read().values.get(ix as usize).map(|(f, v)| (*f as usize, v.clone()))
    }

    /// Field index of a global id.
    pub fn field_of(&self, id: u32) -> Option<usize> {
        if id < self.base_total {
            return self.base.fields.iter().rposition(|f| f.base <= id);
        }
        self.describe(id).map(|(f, _)| f)
    }
}

impl Dictionary for Dict {
    fn field(&self, name: &str) -> Option<usize> {
        self.base.field(name)
    }
    fn value_id(&self, field: usize, value: &str) -> Option<u32> {
        if let Some(id) = self.base.value_id(field, value) {
            return Some(id);
        }
        let ix = *self.read().map.get(&(field as u32, value.to_string()))?;
        (ix < self.upto).then_some(self.base_total + ix)
    }
    fn field_names(&self) -> Vec<String> {
        Dictionary::field_names(&*self.base)
    }
    fn column(&self, name: &str) -> Option<silica_core::model::ColumnType> {
        Dictionary::column(&*self.base, name)
    }
    fn field_ids(&self, field: usize) -> Vec<(u32, u32)> {
        // The artifact's range plus this view's appended values of the field.
        let mut ids = Dictionary::field_ids(&*self.base, field);
        let t = self.read();
        ids.extend(
            t.values
                .iter()
                .take(self.upto as usize)
                .enumerate()
                .filter(|(_, (f, _))| *f as usize == field)
                .map(|(i, _)| (self.base_total + i as u32, self.base_total + i as u32)),
        );
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silica_core::model::FieldSchema;

    fn schema() -> Schema {
        let f = |name: &str, base, vals: &[&str]| FieldSchema {
            name: name.into(),
            multi: false,
            base,
            values: vals.iter().map(|s| s.to_string()).collect(),
        };
        Schema { fields: vec![f("color", 0, &["blue", "red"]), f("id", 2, &["a", "b", "c"])], columns: Vec::new() }
    }

    #[test]
    fn appended_values_get_new_ids_and_old_views_do_not_see_them() {
        let mut d = Dict::new(schema());
        let old = d.clone();
        assert_eq!(d.intern(0, "red"), 1);
        assert_eq!(d.intern(1, "zz"), 5);
        assert_eq!(d.intern(0, "green"), 6);
        assert_eq!(d.intern(1, "zz"), 5, "interning twice gives the same id");
        assert_eq!(Dictionary::value_id(&d, 1, "zz"), Some(5));
        assert_eq!(Dictionary::value_id(&old, 1, "zz"), None, "an older view must not see later values");
        assert_eq!(old.describe(5), None);
        assert_eq!(d.describe(6), Some((0, "green".to_string())));
        assert_eq!(d.describe(3), Some((1, "b".to_string())));
        assert_eq!(d.field_of(1), Some(0));
        assert_eq!(d.field_of(2), Some(1));
        assert_eq!(d.field_of(6), Some(0));
        assert_eq!(d.describe(7), None);
        assert_eq!((d.total(), d.appended()), (7, 2));
        // Filters compile against the view: a new value is found only in the new view.
        let bloom = silica_core::model::BloomParams::default();
        let f = silica_core::Filter::compile(r#"color = "green""#, &d, &bloom).unwrap();
        assert_eq!(f.plan.terms[0].value_ids, vec![6]);
        let f = silica_core::Filter::compile(r#"color = "green""#, &old, &bloom).unwrap();
        assert!(f.plan.terms[0].value_ids.is_empty());
    }
}
