//! Compaction: fold the fresh segment, tombstones and attribute changes into a new index.
//!
//! * Live main rows keep their inverted list, int8 codes, embeddings and features.
//! * Live fresh rows are assigned by the build's integer rule (`compute::assign_cpu`: their
//!   int8 codes against `ivf.centroid_codes`), so a fresh item lands in the list a rebuild
//!   with the same centroids would put it in; centroids are not retrained.
//! * Rows are sorted by (list, global row); `source_rows` are renumbered densely in global
//!   row order (main rows first, then fresh rows in arrival order), so `rows` in results
//!   change at compaction while ids do not.
//! * The dictionary is rebuilt from the values live rows use, sorted per field (appended
//!   values folded in, unused ones dropped), and the Bloom planes are rebuilt from it.

use super::dict::Dict;
use super::segment::is_live;
use silica_core::error::{Error, Result};
use silica_core::model::compute;
use silica_core::model::{Attributes, BloomPlanes, FieldSchema, I8Matrix, Index, Schema};
use std::collections::BTreeSet;

enum Src {
    Main(usize),
    /// Fresh part, row.
    Fresh(usize, usize),
}

/// The compacted index of `main` + the parts of the fresh segment (its lists part and
/// tail, `serve::fresh`). Errors: a fresh part of another dimension.
pub fn fold(main: &Index, fresh: &[&Index], dict: &Dict) -> Result<Index> {
    let d = main.dim;
    if let Some(f) = fresh.iter().find(|f| f.dim != d) {
        return Err(Error::Dimension { what: "fresh segment".into(), expected: d, got: f.dim });
    }
    // (list, global row, source) of every live row.
    let mut rows: Vec<(u32, u64, Src)> = Vec::new();
    for l in 0..main.nlist() {
        rows.extend(main.list_range(l).filter(|&r| is_live(main, r)).map(|r| (l as u32, main.source_rows[r], Src::Main(r))));
    }
    let live_fresh: Vec<(usize, usize)> =
        fresh.iter().enumerate().flat_map(|(p, f)| (0..f.len()).filter(|&r| is_live(f, r)).map(move |r| (p, r))).collect();
    // The fresh segment's codes are the build's quantization of the (normalized) vectors.
    let codes: Vec<i8> = live_fresh.iter().flat_map(|&(p, r)| fresh[p].items.row(r).iter().copied()).collect();
    let lists = match main.metric {
        silica_core::Metric::L2 => {
            let scales: Vec<f32> = live_fresh.iter().map(|&(p, r)| fresh[p].items.scale[r]).collect();
            compute::assign_l2(&codes, &scales, &main.centroid_codes, true)
        }
        _ => compute::assign_cpu(&codes, &main.centroid_codes),
    };
    rows.extend(live_fresh.iter().zip(&lists).map(|(&(p, r), &l)| (l, fresh[p].source_rows[r], Src::Fresh(p, r))));
    rows.sort_by_key(|&(l, g, _)| (l, g));
    let n = rows.len();

    // Dense source rows in global row order.
    let mut order: Vec<u64> = rows.iter().map(|r| r.1).collect();
    order.sort_unstable();
    let source_rows: Vec<u64> = rows.iter().map(|r| order.binary_search(&r.1).expect("present") as u64).collect();

    let mut list_offsets = vec![0u64; main.nlist() + 1];
    for &(l, _, _) in &rows {
        list_offsets[l as usize + 1] += 1;
    }
    for l in 0..main.nlist() {
        list_offsets[l + 1] += list_offsets[l];
    }

    let seg = |s: &Src| match *s {
        Src::Main(r) => (main, r),
        Src::Fresh(p, r) => (fresh[p], r),
    };
    let mut items = I8Matrix { rows: n, dim: d, codes: Vec::with_capacity(n * d).into(), scale: Vec::with_capacity(n).into() };
    let mut embeddings = main.embeddings.as_ref().map(|_| Vec::with_capacity(n * d));
    let f = main.feature_names.len();
    let mut features = main.features.as_ref().map(|_| Vec::with_capacity(n * f));
    let mut ids = silica_core::model::Ids::default();
    for (_, _, s) in &rows {
        let (ix, r) = seg(s);
        items.codes.extend_from_slice(ix.items.row(r));
        items.scale.push(ix.items.scale[r]);
        if let (Some(out), Some(e)) = (embeddings.as_mut(), ix.embeddings.as_ref()) {
            out.extend_from_slice(&e[r * d..(r + 1) * d]);
        }
        if let (Some(out), Some(x)) = (features.as_mut(), ix.features.as_ref()) {
            out.extend_from_slice(&x[r * f..(r + 1) * f]);
        }
        ids.push(ix.ids.get(r));
    }

    // Dictionary: the values live rows use, sorted per field.
    let total = dict.total() as usize;
    let mut used = vec![false; total];
    for (_, _, s) in &rows {
        let (ix, r) = seg(s);
        for &v in ix.attrs.row(r) {
            used[v as usize] = true;
        }
    }
    let nf = dict.schema().fields.len();
    let mut per_field: Vec<BTreeSet<String>> = vec![BTreeSet::new(); nf];
    let described: Vec<Option<(usize, String)>> =
        (0..total as u32).map(|v| if used[v as usize] { dict.describe(v) } else { None }).collect();
    for (f, v) in described.iter().flatten() {
        per_field[*f].insert(v.clone());
    }
    let mut fields = Vec::with_capacity(nf);
    let mut base = 0u32;
    for (fs, values) in dict.schema().fields.iter().zip(per_field) {
        let values: Vec<String> = values.into_iter().collect();
        fields.push(FieldSchema { name: fs.name.clone(), multi: fs.multi, base, values });
        base += fields.last().map_or(0, |x: &FieldSchema| x.values.len() as u32);
    }
    let schema = Schema { fields, columns: main.attrs.schema.columns.clone() };
    let remap: Vec<u32> = described.iter().map(|dv| dv.as_ref().and_then(|(f, v)| schema.value_id(*f, v)).unwrap_or(u32::MAX)).collect();
    let mut offsets = Vec::with_capacity(n + 1);
    let mut values = Vec::new();
    offsets.push(0u64);
    for (_, _, s) in &rows {
        let (ix, r) = seg(s);
        let start = values.len();
        values.extend(ix.attrs.row(r).iter().map(|&v| remap[v as usize]));
        values[start..].sort_unstable();
        offsets.push(values.len() as u64);
    }
    // A field is multi-valued when some live row holds several of its values.
    let mut schema = schema;
    for w in offsets.windows(2) {
        for pair in values[w[0] as usize..w[1] as usize].windows(2) {
            let (a, b) = (field_of(&schema, pair[0]), field_of(&schema, pair[1]));
            if a == b {
                schema.fields[a].multi = true;
            }
        }
    }
    let attrs = Attributes { schema, offsets: offsets.into(), values: values.into() };
    let params = main.bloom.params;
    let value_bits: Vec<Vec<u32>> =
        attrs.schema.fields.iter().flat_map(|f| f.values.iter().map(|v| params.positions(&f.name, v))).collect();
    let bloom = BloomPlanes::build(params, n, |r| attrs.row(r).iter().flat_map(|&v| value_bits[v as usize].iter().copied()).collect());
    // Typed columns follow their rows (a fresh segment without the column: no value).
    let columns = silica_core::model::Columns {
        cols: main
            .columns
            .cols
            .iter()
            .map(|c| {
                let keys: Vec<Option<u64>> = rows
                    .iter()
                    .map(|(_, _, s)| {
                        let (ix, r) = seg(s);
                        let col = if std::ptr::eq(ix, main) { Some(c) } else { ix.columns.get(&c.name) };
                        col.filter(|col| r < col.len() && col.has(r)).map(|col| col.values.key(r))
                    })
                    .collect();
                silica_core::model::Column::from_keys(&c.name, c.ty, &keys, &list_offsets)
            })
            .collect(),
    };
    let sqnorms = silica_core::model::metric::sqnorms_for(main.metric, &items);
    Ok(Index {
        columns,
        sqnorms,
        dim: d,
        metric: main.metric,
        centroids: main.centroids.clone(),
        centroid_codes: main.centroid_codes.clone(),
        list_offsets,
        items,
        embeddings: embeddings.map(Into::into),
        features: features.map(Into::into),
        feature_names: main.feature_names.clone(),
        ids,
        source_rows: source_rows.into(),
        bloom,
        attrs,
        rerank: main.rerank.clone(),
        live: None,
        // Same centroids and lists: the calibration still describes the index.
        calibration: main.calibration.clone(),
    })
}

fn field_of(s: &Schema, id: u32) -> usize {
    s.fields.iter().rposition(|f| f.base <= id && id < f.base + f.values.len() as u32).unwrap_or(0)
}
