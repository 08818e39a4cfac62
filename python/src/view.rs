//! What a search runs against: a static index (built or loaded, no updates yet) or the
//! current snapshot of a serving [`Store`](silica::serve::state::Store) (after updates),
//! and the maps from result rows back to ids and attribute values.

use silica::filter::{Filter, FilterError};
use silica::graph::{Search, SearchRequest, SearchResponse};
use silica::model::Index;
use silica::serve::dict::Dict;
use silica::serve::segment::is_live;
use silica::serve::state::Snapshot;
use std::collections::HashMap;
use std::sync::Arc;

/// One immutable view; a search holds it for its whole call (snapshot isolation).
pub enum View {
    Static { exec: Arc<dyn Search>, dict: Dict },
    Served(Arc<Snapshot>),
}

impl View {
    pub fn new_static(exec: Arc<dyn Search>) -> View {
        let dict = Dict::new(exec.index().attrs.schema.clone());
        View::Static { exec, dict }
    }

    pub fn main(&self) -> &Arc<Index> {
        match self {
            View::Static { exec, .. } => exec.index(),
            View::Served(s) => s.index(),
        }
    }

    pub fn main_search(&self) -> &dyn Search {
        match self {
            View::Static { exec, .. } => exec.as_ref(),
            View::Served(s) => s.main.as_ref(),
        }
    }

    /// The fresh segments (items added since the artifact was written): the fresh lists
    /// and the fresh tail, in that order, where they exist.
    pub fn fresh(&self) -> Vec<&Arc<Index>> {
        match self {
            View::Static { .. } => Vec::new(),
            View::Served(s) => s.fresh.iter().chain(&s.tail).map(|f| f.index()).collect(),
        }
    }

    pub fn dict(&self) -> &Dict {
        match self {
            View::Static { dict, .. } => dict,
            View::Served(s) => &s.dict,
        }
    }

    /// Update batches this view contains (0 before any update).
    pub fn version(&self) -> u64 {
        match self {
            View::Static { .. } => 0,
            View::Served(s) => s.version,
        }
    }

    pub fn compile(&self, text: &str) -> Result<Filter, FilterError> {
        Filter::compile(text, self.dict(), &self.main().bloom.params)
    }

    pub fn search(&self, req: &SearchRequest) -> silica::Result<Vec<SearchResponse>> {
        match self {
            View::Static { exec, .. } => exec.search(req),
            View::Served(s) => s.search(req),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.main_search().backend_name()
    }

    /// Live items (main + fresh).
    pub fn live_items(&self) -> usize {
        let count = |ix: &Index| if ix.live.is_none() { ix.len() } else { (0..ix.len()).filter(|&r| is_live(ix, r)).count() };
        count(self.main()) + self.fresh().into_iter().map(|f| count(f)).sum::<usize>()
    }
}

/// Where a result row (`rows` of a search: a source row of the main index, or the global
/// row number of a fresh item) lives in a view.
pub struct RowMap {
    /// Main index: source row -> sorted row (`u32::MAX`: none).
    main: Vec<u32>,
    /// Fresh segments: global row -> (segment, row in it).
    fresh: HashMap<u64, (usize, u32)>,
}

#[derive(Clone, Copy)]
pub enum At {
    Main(usize),
    /// Fresh segment ([`View::fresh`] order) and row in it.
    Fresh(usize, usize),
}

impl RowMap {
    pub fn new(v: &View) -> RowMap {
        let m = v.main();
        let top = m.source_rows.iter().max().map_or(0, |&x| x as usize + 1);
        let mut main = vec![u32::MAX; top];
        for (r, &s) in m.source_rows.iter().enumerate() {
            main[s as usize] = r as u32;
        }
        let fresh = v
            .fresh()
            .into_iter()
            .enumerate()
            .flat_map(|(g, f)| f.source_rows.iter().enumerate().map(move |(r, &s)| (s, (g, r as u32))))
            .collect();
        RowMap { main, fresh }
    }

    /// The live row `row` names, or `None` (negative padding, unknown, deleted or replaced).
    pub fn locate(&self, v: &View, row: i64) -> Option<At> {
        if row < 0 {
            return None;
        }
        if let Some(&r) = self.main.get(row as usize)
            && r != u32::MAX
        {
            return is_live(v.main(), r as usize).then_some(At::Main(r as usize));
        }
        let &(g, r) = self.fresh.get(&(row as u64))?;
        is_live(v.fresh().get(g)?, r as usize).then_some(At::Fresh(g, r as usize))
    }
}

/// External id at `at`.
pub fn id_at(v: &View, at: At) -> String {
    match at {
        At::Main(r) => v.main().ids.get(r).to_string(),
        At::Fresh(g, r) => v.fresh().get(g).map(|f| f.ids.get(r).to_string()).unwrap_or_default(),
    }
}

/// Values of field `f` at `at` (dictionary ids resolved through the view's dictionary,
/// which knows values appended by updates).
pub fn values_at(v: &View, at: At, f: usize) -> Vec<String> {
    let Some((ix, r)) = index_at(v, at) else { return Vec::new() };
    let dict = v.dict();
    ix.attrs.row(r).iter().filter_map(|&id| dict.describe(id).filter(|(field, _)| *field == f).map(|(_, s)| s)).collect()
}

/// Typed column `name`'s value at `at` as JSON (timestamps as RFC 3339 strings); `Null`
/// where the row has none (or its segment lacks the column).
pub fn column_at(v: &View, at: At, name: &str) -> serde_json::Value {
    let Some((ix, r)) = index_at(v, at) else { return serde_json::Value::Null };
    match ix.columns.get(name) {
        Some(c) if r < c.len() && c.has(r) => c.values.json(r, c.ty),
        _ => serde_json::Value::Null,
    }
}

/// The segment index `at` points into and its row there (`None`: a fresh segment the view
/// no longer has).
fn index_at(v: &View, at: At) -> Option<(&Index, usize)> {
    match at {
        At::Main(r) => Some((v.main().as_ref(), r)),
        At::Fresh(g, r) => v.fresh().into_iter().nth(g).map(|fr| (fr.as_ref(), r)),
    }
}
