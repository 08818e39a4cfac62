//! The golden-output suite: written once, instantiated per backend with
//! [`conformance_suite!`]. Every backend is checked against brute-force references
//! written here from the definitions in `crates/core/src/backend/mod.rs` (not against its own code):
//!
//! * stages 1-3 (probe, filter + count, scan) and stage 5 after `rerank none` must be
//!   **bit-identical**: list ids, mask words, rows, score bits, counts and padding;
//! * `refine` and `model` rerank (float math) must agree within
//!   `|got - want| <= 1e-4 * max(1, |want|)` (approx), and the executor's answers with them
//!   too, rows compared wherever the scores are not near-ties;
//! * concurrent searches from several threads (one lane each) equal the serial answers;
//! * the whole executor (planner, widening) must equal the CPU backend exactly with
//!   `rerank none`, and an exhaustive probe must equal the exact filtered top-k.
//!
//! Randomized cases: N not a multiple of 32 or 64 (and N = 0, 1), D from 4 to 1024 in
//! steps of 4 (and one odd D), lists of size 0 and 1, duplicate rows and centroids (ties),
//! an all-zero query (every score ties), k from 1 to 100000 with k above the candidates,
//! filters with AND / OR / NOT / IN, typed ranges, `!=`, `NOT IN`, `IS [NOT] NULL` over
//! int, float, bool and timestamp columns mixed with Bloom terms, selective,
//! matching-nothing and empty filters,
//! tombstoned rows, batches of 1 to 512. GPU instances run with poisoned scratch and
//! output buffers (every element read must have been written), and one wgpu instance
//! splits the index into 128-row chunks, groups queries by 3 and uses the portable dot.
//!
//! A backend whose constructor returns `None` is skipped with a message, unless its name
//! is listed in `SILICA_REQUIRE_BACKENDS` (CI sets `wgpu`), where that is a failure.

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica_core::backend::{Backend, Candidates, Changed, Mask, Probes, QueryBatch, Rerank, cpu::Cpu};
use silica_core::filter::{Filter, Op, Plan};
use silica_core::graph::{Executor, RerankMode, Search, SearchParams, SearchRequest, prepare_queries};
use silica_core::model::columns::{ColumnSchema, format_timestamp, key_f64, key_i64};
use silica_core::model::{Attributes, BloomParams, BloomPlanes, Column, ColumnType, Columns, FieldSchema, I8Matrix, Index, Metric, Schema};
use silica_core::rerank::{Dense, RerankModel};
use std::sync::Arc;

// ---------------------------------------------------------------- fixtures

/// One randomized index: codes, lists, attributes, Bloom planes, tombstones, embeddings.
pub struct Fixture {
    /// The randomized index.
    pub index: Arc<Index>,
    /// The seed it was made from.
    pub seed: u64,
}

pub struct Spec {
    /// Items N.
    pub n: usize,
    /// Dimension D.
    pub d: usize,
    /// Lists (nlist).
    pub l: usize,
    /// Queries per batch B.
    pub b: usize,
    /// Clear some live bits.
    pub tombstones: bool,
}

pub const COLORS: usize = 5;
pub const SIZES: usize = 3;
pub const TAGS: usize = 20;

pub fn schema() -> Schema {
    let field = |name: &str, multi, base, values: Vec<String>| FieldSchema { name: name.into(), multi, base, values };
    Schema {
        fields: vec![
            field("color", false, 0, (0..COLORS).map(|i| format!("c{i}")).collect()),
            field("size", false, COLORS as u32, (0..SIZES).map(|i| format!("s{i}")).collect()),
            field("tags", true, (COLORS + SIZES) as u32, (0..TAGS).map(|i| format!("t{i:02}")).collect()),
        ],
        columns: [
            ("in_stock", ColumnType::Bool),
            ("price", ColumnType::Float),
            ("published", ColumnType::Timestamp),
            ("year", ColumnType::Int),
        ]
        .into_iter()
        .map(|(name, ty)| ColumnSchema { name: name.into(), ty })
        .collect(),
    }
}

/// 2020-01-01T00:00:00Z in microseconds; `published` is this plus whole days.
pub const T2020: i64 = 1_577_836_800_000_000;
pub const DAY: i64 = 86_400_000_000;

/// Typed columns over sorted rows: price (quarters in [-12.5, 12.5), 10% absent), year
/// (1990..2010, 15% absent), in_stock (30% absent), published (days of 2020, 20% absent).
pub fn typed_columns(rng: &mut ChaCha8Rng, n: usize, list_offsets: &[u64]) -> Columns {
    let mut col = |name: &str, ty: ColumnType, p: f64, key: &mut dyn FnMut(&mut ChaCha8Rng) -> u64| {
        let keys: Vec<Option<u64>> = (0..n).map(|_| if rng.random_bool(p) { Some(key(rng)) } else { None }).collect();
        Column::from_keys(name, ty, &keys, list_offsets)
    };
    Columns {
        cols: vec![
            col("in_stock", ColumnType::Bool, 0.7, &mut |r| r.random_range(0..2)),
            col("price", ColumnType::Float, 0.9, &mut |r| key_f64(r.random_range(-50..50) as f64 / 4.0)),
            col("published", ColumnType::Timestamp, 0.8, &mut |r| key_i64(T2020 + r.random_range(0..100) * DAY)),
            col("year", ColumnType::Int, 0.85, &mut |r| key_i64(r.random_range(1990..2010))),
        ],
    }
}

/// Random list sizes summing to n, with empty and one-row lists mixed in.
pub fn list_offsets(rng: &mut ChaCha8Rng, n: usize, l: usize) -> Vec<u64> {
    let mut sizes = vec![0usize; l];
    let mut left = n;
    for (i, s) in sizes.iter_mut().enumerate() {
        if left == 0 {
            break;
        }
        *s = match i % 5 {
            0 => 0,
            1 => 1.min(left),
            _ => rng.random_range(0..=(2 * n / l.max(1)).max(1)).min(left),
        };
        left -= *s;
    }
    if left > 0 {
        let i = rng.random_range(0..l);
        sizes[i] += left;
    }
    let mut off = vec![0u64];
    for s in sizes {
        off.push(off.last().copied().unwrap_or(0) + s as u64);
    }
    off
}

pub fn fixture(seed: u64, spec: &Spec) -> Fixture {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, d, l) = (spec.n, spec.d, spec.l);
    let mut codes: Vec<i8> = (0..n * d).map(|_| rng.random_range(-127..=127)).collect();
    let mut scale: Vec<f32> = (0..n).map(|_| rng.random_range(0.001f32..0.02)).collect();
    // Ties: duplicate rows (same codes and scale), and one all-zero row (scale 0).
    for r in (7..n).step_by(11) {
        let src = r / 3;
        let (a, b) = codes.split_at_mut(r * d);
        b[..d].copy_from_slice(&a[src * d..src * d + d]);
        scale[r] = scale[src];
    }
    if n > 2 {
        codes[2 * d..3 * d].iter_mut().for_each(|c| *c = 0);
        scale[2] = 0.0;
    }
    let mut ccodes: Vec<i8> = (0..l * d).map(|_| rng.random_range(-127..=127)).collect();
    let mut cscale: Vec<f32> = (0..l).map(|_| rng.random_range(0.001f32..0.02)).collect();
    if l > 3 {
        let (a, b) = ccodes.split_at_mut(3 * d);
        b[..d].copy_from_slice(&a[..d]);
        cscale[3] = cscale[0];
    }
    let centroids = ccodes.iter().enumerate().map(|(i, &c)| c as f32 * cscale[i / d]).collect();
    let list_offsets = list_offsets(&mut rng, n, l);

    // Attributes: one color, one size (absent on some rows), 0-4 tags with t19 rare.
    let schema = schema();
    let mut offsets = vec![0u64];
    let mut values = Vec::new();
    let mut pairs_per_row: Vec<Vec<(String, String)>> = Vec::new();
    for _ in 0..n {
        let mut ids = Vec::new();
        let mut pairs = Vec::new();
        let c = rng.random_range(0..COLORS);
        ids.push(c as u32);
        pairs.push(("color".to_string(), format!("c{c}")));
        if rng.random_bool(0.8) {
            let s = rng.random_range(0..SIZES);
            ids.push((COLORS + s) as u32);
            pairs.push(("size".to_string(), format!("s{s}")));
        }
        for _ in 0..rng.random_range(0..=4) {
            let t = if rng.random_bool(0.01) { TAGS - 1 } else { rng.random_range(0..TAGS - 1) };
            ids.push((COLORS + SIZES + t) as u32);
            pairs.push(("tags".to_string(), format!("t{t:02}")));
        }
        ids.sort_unstable();
        ids.dedup();
        values.extend_from_slice(&ids);
        offsets.push(values.len() as u64);
        pairs_per_row.push(pairs);
    }
    // A small Bloom filter, so false positives happen and exact verification matters.
    let params = BloomParams { bits: 64, hashes: 3, seed: seed ^ 0x5eed };
    let bloom = BloomPlanes::build(params, n, |r| pairs_per_row[r].iter().flat_map(|(f, v)| params.positions(f, v)).collect());
    let live = spec.tombstones.then(|| {
        let mut w = vec![!0u64; n.div_ceil(64)];
        for r in (0..n).filter(|r| r % 13 == 5) {
            w[r / 64] &= !(1u64 << (r % 64));
        }
        w
    });
    let embeddings: Vec<f16> = (0..n * d).map(|_| f16::from_f32(rng.random_range(-0.2f32..0.2))).collect();
    let features: Vec<f32> = (0..n * 2).map(|_| rng.random_range(0f32..1.0)).collect();
    let columns = typed_columns(&mut rng, n, &list_offsets);
    let index = Index {
        dim: d,
        metric: Metric::Ip,
        centroids,
        centroid_codes: I8Matrix { rows: l, dim: d, codes: ccodes.into(), scale: cscale.into() },
        list_offsets,
        items: I8Matrix { rows: n, dim: d, codes: codes.into(), scale: scale.into() },
        embeddings: Some(embeddings.into()),
        features: Some(features.into()),
        feature_names: vec!["f0".into(), "f1".into()],
        ids: (0..n).map(|r| format!("id{r}")).collect(),
        source_rows: (0..n as u64).rev().collect(),
        bloom,
        attrs: Attributes { schema, offsets: offsets.into(), values: values.into() },
        rerank: None,
        live,
        calibration: None,
        sqnorms: Default::default(),
        columns,
    };
    Fixture { index: Arc::new(index), seed }
}

pub fn typed_leaf(rng: &mut ChaCha8Rng) -> String {
    let price = |r: &mut ChaCha8Rng| format!("{}", r.random_range(-55..55) as f64 / 4.0);
    let year = |r: &mut ChaCha8Rng| r.random_range(1988..2012);
    let day = |r: &mut ChaCha8Rng| {
        format!("\"{}\"", format_timestamp(T2020 + r.random_range(-2..102) * DAY + if r.random_bool(0.3) { 1 } else { 0 }))
    };
    match rng.random_range(0..16) {
        0 => format!("price < {}", price(rng)),
        1 => format!("price >= {}", price(rng)),
        2 => format!("price BETWEEN {} AND {}", price(rng), price(rng)),
        3 => format!("price = {}", price(rng)),
        4 => format!("year != {}", year(rng)),
        5 => format!("year in ({}, {}, {})", year(rng), year(rng), year(rng)),
        6 => format!("year NOT IN ({}, {})", year(rng), year(rng)),
        7 => format!("year <= {} AND year > {}", year(rng), year(rng)),
        8 => format!("in_stock = {}", rng.random_bool(0.5)),
        9 => "in_stock IS NULL".into(),
        10 => format!("published > {}", day(rng)),
        11 => format!("published BETWEEN {} AND {}", day(rng), day(rng)),
        12 => format!("size != \"s{}\"", rng.random_range(0..SIZES)),
        13 => "size is null".into(),
        14 => "price IS NOT NULL AND tags IS NOT NULL".into(),
        _ => "size NOT IN (\"s0\", \"s2\")".into(),
    }
}

pub fn random_leaf(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.4) {
        return typed_leaf(rng);
    }
    match rng.random_range(0..7) {
        0 => format!("color = \"c{}\"", rng.random_range(0..COLORS)),
        1 => format!("size = \"s{}\"", rng.random_range(0..SIZES)),
        2 => format!("tags = \"t{:02}\"", rng.random_range(0..TAGS)),
        3 => format!(
            "tags IN (\"t{:02}\", \"t{:02}\", \"t{:02}\")",
            rng.random_range(0..TAGS),
            rng.random_range(0..TAGS),
            rng.random_range(0..TAGS)
        ),
        4 => "tags = \"t19\"".into(),
        5 => "color IN (\"c1\", \"nope\")".into(),
        _ => "size = \"missing\"".into(),
    }
}

pub fn random_expr(rng: &mut ChaCha8Rng, depth: u32) -> String {
    if depth == 0 || rng.random_bool(0.3) {
        return random_leaf(rng);
    }
    match rng.random_range(0..4) {
        0 => format!("{} AND {}", random_expr(rng, depth - 1), random_expr(rng, depth - 1)),
        1 => format!("({} OR {})", random_expr(rng, depth - 1), random_expr(rng, depth - 1)),
        2 => format!("NOT {}", random_expr(rng, depth - 1)),
        _ => format!("({})", random_expr(rng, depth - 1)),
    }
}

/// One filter per query: empty, selective, matching nothing, and random compositions.
pub fn random_filters(rng: &mut ChaCha8Rng, ix: &Index, b: usize) -> Vec<Filter> {
    (0..b)
        .map(|i| {
            let text = match i % 6 {
                0 => String::new(),
                1 => "tags = \"t19\"".into(),
                2 => "color = \"nope\"".into(),
                3 => "NOT color = \"c0\" AND tags IN (\"t01\", \"t02\")".into(),
                _ => random_expr(rng, 3),
            };
            let f = Filter::compile(&text, &ix.attrs.schema, &ix.bloom.params).unwrap_or_else(|e| panic!("filter {text:?}: {e}"));
            // Backends take plans bound to the index (the executor binds them itself).
            Filter { plan: f.plan.bind(ix), text: f.text }
        })
        .collect()
}

/// `plan` with its typed terms' masks dropped: references then test the columns row by
/// row instead of reading the masks the library computed.
pub fn unbound(plan: &Plan) -> Plan {
    let mut p = plan.clone();
    p.terms.iter_mut().for_each(|t| t.mask = None);
    p
}

/// The exact reference: the row-by-row test of every term.
pub fn exact(plan: &Plan, ix: &Index, r: usize) -> bool {
    unbound(plan).matches_row(ix, r)
}

pub fn random_queries(rng: &mut ChaCha8Rng, ix: &Index, b: usize) -> QueryBatch {
    let mut q: Vec<f32> = (0..b * ix.dim).map(|_| rng.random_range(-1f32..1.0)).collect();
    if b > 1 {
        // An all-zero query: every score is 0, the order is decided by rows alone.
        q[ix.dim..2 * ix.dim].iter_mut().for_each(|x| *x = 0.0);
    }
    prepare_queries(ix, &q).expect("valid queries")
}

pub fn specs() -> Vec<(u64, Spec)> {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut d4 = || 4 * rng.random_range(1..=256usize);
    vec![
        (1, Spec { n: 1, d: 4, l: 1, b: 1, tombstones: false }),
        (2, Spec { n: 65, d: 8, l: 3, b: 5, tombstones: true }),
        (3, Spec { n: 333, d: 20, l: 17, b: 33, tombstones: false }),
        (4, Spec { n: 1000, d: 64, l: 40, b: 64, tombstones: true }),
        (5, Spec { n: 2500, d: 132, l: 64, b: 16, tombstones: false }),
        (6, Spec { n: 700, d: 1024, l: 30, b: 6, tombstones: false }),
        (7, Spec { n: 400, d: 16, l: 12, b: 512, tombstones: true }),
        (8, Spec { n: 0, d: 12, l: 2, b: 3, tombstones: false }),
        (9, Spec { n: 517, d: 37, l: 9, b: 7, tombstones: false }),
        (10, Spec { n: 1201, d: d4(), l: 25, b: 9, tombstones: true }),
        (11, Spec { n: 777, d: d4(), l: 50, b: 20, tombstones: false }),
        // Lists of several hundred rows at D = 128: more than one 512-row scan block per list.
        (12, Spec { n: 1700, d: 128, l: 3, b: 8, tombstones: true }),
    ]
}

// ---------------------------------------------------------------- references

pub fn dot(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// (score desc in the total order, id asc): the order every stage sorts by.
pub fn rank(v: &mut [(f32, u32)]) {
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
}

pub fn ref_probe(ix: &Index, q: &QueryBatch, nprobe: usize) -> Vec<u32> {
    let d = ix.dim;
    (0..q.len)
        .flat_map(|b| {
            let mut s: Vec<(f32, u32)> = (0..ix.nlist())
                .map(|l| (dot(&q.codes[b * d..(b + 1) * d], ix.centroid_codes.row(l)) as f32 * ix.centroid_codes.scale[l], l as u32))
                .collect();
            rank(&mut s);
            s.into_iter().take(nprobe).map(|x| x.1)
        })
        .collect()
}

pub fn live(ix: &Index, r: usize) -> bool {
    ix.live_word(r / 64) >> (r % 64) & 1 == 1
}

/// The plan over Bloom bits of one row: a term holds when all k planes of any of its
/// values are set; NOT is always true (a Bloom hit proves nothing).
pub fn bloom_row(plan: &Plan, ix: &Index, r: usize) -> bool {
    if plan.is_all() {
        return true;
    }
    let bit = |b: u32| ix.bloom.word(b, r / 64) >> (r % 64) & 1 == 1;
    let mut st = Vec::new();
    for op in &plan.ops {
        match *op {
            // A typed term is exact, so its "maybe" is its exact value.
            Op::Term(t) if plan.terms[t as usize].typed.is_some() => {
                let one = Plan { ops: vec![Op::Term(0)], terms: vec![plan.terms[t as usize].clone()] };
                st.push(exact(&one, ix, r))
            }
            Op::Term(t) => st.push(plan.terms[t as usize].bloom_rows.iter().any(|rows| rows.iter().all(|&b| bit(b)))),
            Op::Not => {
                st.pop();
                st.push(true);
            }
            Op::And | Op::Or => {
                let (y, x) = (st.pop().unwrap(), st.pop().unwrap());
                st.push(if *op == Op::And { x && y } else { x || y });
            }
        }
    }
    st[0]
}

pub fn ref_mask(ix: &Index, plans: &[&Plan], lists: &[u32], nprobe: usize) -> Mask {
    let mut offsets = vec![0];
    let mut words = Vec::new();
    for (p, &l) in lists.iter().enumerate() {
        let plan = plans[p / nprobe.max(1)];
        let (s, e) = (ix.list_offsets[l as usize] as usize, ix.list_offsets[l as usize + 1] as usize);
        for w in s / 64..e.div_ceil(64) {
            let mut word = 0u64;
            for i in 0..64 {
                let r = w * 64 + i;
                if r >= s && r < e && live(ix, r) && bloom_row(plan, ix, r) {
                    word |= 1 << i;
                }
            }
            words.push(word);
        }
        offsets.push(words.len());
    }
    Mask { offsets, words }
}

pub fn ref_count(ix: &Index, plan: &Plan) -> u64 {
    (0..ix.len()).filter(|&r| live(ix, r) && bloom_row(plan, ix, r)).count() as u64
}

pub fn pack(per_query: Vec<Vec<(f32, u32)>>, k: usize) -> Candidates {
    let b = per_query.len();
    let mut c = Candidates { k, rows: vec![u32::MAX; b * k], scores: vec![f32::NEG_INFINITY; b * k], counts: vec![0; b] };
    for (q, list) in per_query.into_iter().enumerate() {
        c.counts[q] = list.len() as u32;
        for (i, (s, r)) in list.into_iter().enumerate() {
            c.rows[q * k + i] = r;
            c.scores[q * k + i] = s;
        }
    }
    c
}

/// Exact top-k0 of the rows of the probed lists that are live, pass the Bloom mask and
/// the exact filter, scored `(i32 dot) as f32 * item_scale`.
pub fn ref_scan(ix: &Index, q: &QueryBatch, lists: &[u32], nprobe: usize, plans: &[&Plan], k0: usize) -> Candidates {
    let d = ix.dim;
    let per_query = (0..q.len)
        .map(|b| {
            let plan = plans[b];
            let mut v = Vec::new();
            for &l in &lists[b * nprobe..(b + 1) * nprobe] {
                for r in ix.list_range(l as usize) {
                    if live(ix, r) && bloom_row(plan, ix, r) && exact(plan, ix, r) {
                        v.push((dot(&q.codes[b * d..(b + 1) * d], ix.items.row(r)) as f32 * ix.items.scale[r], r as u32));
                    }
                }
            }
            rank(&mut v);
            v.truncate(k0);
            v
        })
        .collect();
    pack(per_query, k0)
}

pub fn ref_select(c: &Candidates, k: usize) -> Candidates {
    pack(
        (0..c.len())
            .map(|q| {
                let mut v: Vec<(f32, u32)> = c.query(q).map(|(r, s)| (s, r)).collect();
                rank(&mut v);
                v.truncate(k);
                v
            })
            .collect(),
        k,
    )
}

// ---------------------------------------------------------------- comparisons

pub fn assert_cands_exact(what: &str, got: &Candidates, want: &Candidates) {
    assert_eq!(got.k, want.k, "{what}: k");
    assert_eq!(got.counts, want.counts, "{what}: counts");
    for i in 0..want.rows.len() {
        let (gr, wr, gs, ws) = (got.rows[i], want.rows[i], got.scores[i], want.scores[i]);
        assert!(
            gr == wr && gs.to_bits() == ws.to_bits(),
            "{what}: query {} slot {}: got (row {gr}, score {gs:e} = {:#x}), want (row {wr}, score {ws:e} = {:#x})",
            i / want.k.max(1),
            i % want.k.max(1),
            gs.to_bits(),
            ws.to_bits()
        );
    }
    assert_eq!(got.rows.len(), want.rows.len(), "{what}: rows length");
    assert_eq!(got.scores.len(), want.scores.len(), "{what}: scores length");
}

pub const TOL: f32 = 1e-4;

pub fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= TOL * b.abs().max(1.0)
}

// ---------------------------------------------------------------- cases

pub fn plans_of(filters: &[Filter]) -> Vec<&Plan> {
    filters.iter().map(|f| &f.plan).collect()
}

/// A filter with per-query random bounds (every query its own range), typed ranges alone,
/// with NULL tests, under NOT and mixed with Bloom terms: the eligibility rules whose
/// bound changes per request.
pub fn per_query_filter(rng: &mut ChaCha8Rng, i: usize) -> String {
    let q = |r: &mut ChaCha8Rng| r.random_range(-60..60) as f64 / 4.0;
    let (lo, w) = (q(rng), rng.random_range(0..60) as f64 / 4.0);
    let y = rng.random_range(1986..2014);
    let day = format_timestamp(T2020 + rng.random_range(-3..104) * DAY);
    match i % 9 {
        0 => format!("price BETWEEN {lo} AND {}", lo + w),
        1 => format!("price < {lo} AND tags = \"t{:02}\"", rng.random_range(0..TAGS)),
        2 => format!("year >= {y} AND color IN (\"c{}\", \"c{}\")", rng.random_range(0..COLORS), rng.random_range(0..COLORS)),
        3 => format!("(published < \"{day}\" OR size = \"s1\")"),
        4 => format!("NOT price > {lo} AND in_stock = {}", rng.random_bool(0.5)),
        5 => format!("(price IS NULL OR year BETWEEN {y} AND {})", y + rng.random_range(0..6)),
        6 => format!("year != {y} AND published IS NOT NULL AND NOT tags = \"t{:02}\"", rng.random_range(0..TAGS)),
        7 => format!("price >= {lo} AND price <= {} AND year < {y} AND published >= \"{day}\"", lo + w),
        _ => format!("{} AND {}", typed_leaf(rng), random_expr(rng, 2)),
    }
}

/// `plan` as the executor hands it to `be` (`silica_core::graph::bind_plans`): every typed term
/// bound to a host mask, or, for a backend that evaluates typed column terms itself
/// (`Backend::typed_terms`), only those that need one.
pub fn as_executor_binds<B: Backend>(be: &B, ix: &Index, plan: &Plan) -> Plan {
    plan.bind_some(|t| !be.typed_terms() || t.needs_host_mask(ix), |t| Plan::typed_mask(t, ix).into())
}

/// Typed terms with per-query bounds, as the executor hands them to the backend (on cpu
/// and cuda: unbound column terms evaluated per query in the kernels): masks, counts,
/// scans and the candidate route equal the row-by-row references, and equal the same
/// backend's answers with host-bound masks bit for bit.
pub fn typed_per_query_case<B: Backend>(be: &B) {
    for (seed, spec) in specs() {
        let fx = fixture(seed, &spec);
        let ix = &fx.index;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 53);
        let q = random_queries(&mut rng, ix, spec.b);
        let texts: Vec<String> = (0..spec.b).map(|i| per_query_filter(&mut rng, i)).collect();
        let compiled: Vec<Plan> = texts
            .iter()
            .map(|t| Filter::compile(t, &ix.attrs.schema, &ix.bloom.params).unwrap_or_else(|e| panic!("filter {t:?}: {e}")).plan)
            .collect();
        let dev: Vec<Plan> = compiled.iter().map(|p| as_executor_binds(be, ix, p)).collect();
        let host: Vec<Plan> = compiled.iter().map(|p| p.bind(ix)).collect();
        let (dev, host): (Vec<&Plan>, Vec<&Plan>) = (dev.iter().collect(), host.iter().collect());
        let what = |x: &str| format!("{x}: seed {seed} n {} l {} b {}", spec.n, spec.l, spec.b);
        for nprobe in [1, rng.random_range(1..=spec.l), spec.l] {
            let probes = be.probe(&res, &q, nprobe).expect("probe");
            let lists = be.read_probes(&probes).expect("read probes").lists;
            let mask = be.filter(&res, &dev, &probes).expect("filter");
            let got = be.read_mask(&mask).expect("read mask");
            assert_eq!(got, ref_mask(ix, &dev, &lists, nprobe), "{}", what(&format!("per-query typed mask nprobe {nprobe}")));
            assert_eq!(
                got,
                be.read_mask(&be.filter(&res, &host, &probes).expect("filter")).expect("read"),
                "{}",
                what("device vs host-mask filter")
            );
            for k0 in [1, 10, rng.random_range(1..=300)] {
                let c = be.read_cands(&be.scan(&res, &q, &probes, &mask, &dev, k0).expect("scan")).expect("read");
                assert_cands_exact(
                    &what(&format!("per-query typed scan nprobe {nprobe} k0 {k0}")),
                    &c,
                    &ref_scan(ix, &q, &lists, nprobe, &dev, k0),
                );
            }
        }
        let counts = be.count(&res, &dev).expect("count");
        let want: Vec<u64> = dev.iter().map(|p| ref_count(ix, p)).collect();
        assert_eq!(counts, want, "{}", what("per-query typed count"));
        assert_eq!(counts, be.count(&res, &host).expect("count"), "{}", what("device vs host-mask count"));
        let all_lists: Vec<u32> = (0..spec.b).flat_map(|_| 0..spec.l as u32).collect();
        for (cap, k0) in [(spec.n as u64, 10usize), (u64::MAX, 300)] {
            let (c, answers) = be.scan_candidates(&res, &q, &dev, k0, cap).expect("scan_candidates");
            assert_eq!(answers, want.iter().map(|&n| Some(n)).collect::<Vec<_>>(), "{}", what("candidate answers"));
            assert_cands_exact(
                &what(&format!("per-query typed candidates k0 {k0}")),
                &be.read_cands(&c).expect("read"),
                &ref_scan(ix, &q, &all_lists, spec.l, &dev, k0),
            );
        }
    }
}

/// Stage 1: list ids equal the reference for nprobe 1, some, all.
pub fn probe_case<B: Backend>(be: &B) {
    for (seed, spec) in specs() {
        let fx = fixture(seed, &spec);
        let ix = &fx.index;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 31);
        let q = random_queries(&mut rng, ix, spec.b);
        for nprobe in [1, rng.random_range(1..=spec.l), spec.l] {
            let p = be.read_probes(&be.probe(&res, &q, nprobe).expect("probe")).expect("read probes");
            assert_eq!(p.nprobe, nprobe);
            assert_eq!(
                p.lists,
                ref_probe(ix, &q, nprobe),
                "probe: seed {} n {} d {} l {} b {} nprobe {nprobe}",
                fx.seed,
                spec.n,
                spec.d,
                spec.l,
                spec.b
            );
        }
        let err = be.probe(&res, &q, spec.l + 1).err().expect("nprobe > nlist must fail");
        assert!(err.to_string().contains("nprobe"), "{err}");

        // Given probes (benchmarks): uploaded as they are, scanned like computed ones.
        let nprobe = rng.random_range(1..=spec.l);
        let given = Probes { nprobe, lists: (0..spec.b).flat_map(|b| (0..nprobe).map(move |j| ((b * 7 + j) % spec.l) as u32)).collect() };
        let up = be.upload_probes(&res, &given).expect("upload probes");
        assert_eq!(be.read_probes(&up).expect("read"), given, "upload_probes round trip: seed {seed}");
        let filters = random_filters(&mut rng, ix, spec.b);
        let plans = plans_of(&filters);
        let mask = be.filter(&res, &plans, &up).expect("filter");
        let got = be.read_cands(&be.scan(&res, &q, &up, &mask, &plans, 50).expect("scan")).expect("read");
        assert_cands_exact(&format!("scan of given probes seed {seed}"), &got, &ref_scan(ix, &q, &given.lists, nprobe, &plans, 50));
        let bad = Probes { nprobe: 1, lists: vec![spec.l as u32; spec.b] };
        assert!(be.upload_probes(&res, &bad).is_err(), "a list id >= nlist must be refused");
    }
}

/// Stage 2: masks over the probed lists and global counts equal the reference.
pub fn filter_case<B: Backend>(be: &B) {
    for (seed, spec) in specs() {
        let fx = fixture(seed, &spec);
        let ix = &fx.index;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 37);
        let q = random_queries(&mut rng, ix, spec.b);
        let filters = random_filters(&mut rng, ix, spec.b);
        let plans = plans_of(&filters);
        for nprobe in [1, rng.random_range(1..=spec.l), spec.l] {
            let probes = be.probe(&res, &q, nprobe).expect("probe");
            let lists = be.read_probes(&probes).expect("read probes").lists;
            let mask = be.read_mask(&be.filter(&res, &plans, &probes).expect("filter")).expect("read mask");
            let want = ref_mask(ix, &plans, &lists, nprobe);
            assert_eq!(mask.offsets, want.offsets, "mask offsets: seed {seed} nprobe {nprobe}");
            for (i, (g, w)) in mask.words.iter().zip(&want.words).enumerate() {
                assert_eq!(g, w, "mask word {i}: seed {seed} nprobe {nprobe}: got {g:#x} want {w:#x}");
            }
            assert_eq!(mask.words.len(), want.words.len());
        }
        let counts = be.count(&res, &plans).expect("count");
        let want: Vec<u64> = plans.iter().map(|p| ref_count(ix, p)).collect();
        assert_eq!(counts, want, "count: seed {seed}");
    }
}

/// Stage 3: rows, score bits, counts and padding equal the exact top-k0, for k0 from 1
/// to 100000 (far above the candidates).
pub fn scan_case<B: Backend>(be: &B) {
    for (seed, spec) in specs() {
        let fx = fixture(seed, &spec);
        let ix = &fx.index;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 41);
        let q = random_queries(&mut rng, ix, spec.b);
        let filters = random_filters(&mut rng, ix, spec.b);
        let plans = plans_of(&filters);
        let big = if spec.b * 100_000 * 4 <= 64 << 20 { 100_000 } else { 5000 };
        for (nprobe, k0) in [
            (1, 1),
            (rng.random_range(1..=spec.l), 10),
            (spec.l, rng.random_range(1..=300)),
            (spec.l, big),
            (rng.random_range(1..=spec.l), 2049),
        ] {
            let probes = be.probe(&res, &q, nprobe).expect("probe");
            let lists = be.read_probes(&probes).expect("read probes").lists;
            let mask = be.filter(&res, &plans, &probes).expect("filter");
            let c = be.scan(&res, &q, &probes, &mask, &plans, k0).expect("scan");
            let got = be.read_cands(&c).expect("read cands");
            let want = ref_scan(ix, &q, &lists, nprobe, &plans, k0);
            assert_cands_exact(&format!("scan seed {seed} n {} d {} nprobe {nprobe} k0 {k0}", spec.n, spec.d), &got, &want);
            assert_eq!(be.read_counts(&c).expect("counts"), want.counts);
        }
        let probes = be.probe(&res, &q, 1).expect("probe");
        let mask = be.filter(&res, &plans, &probes).expect("filter");
        let c = be.read_cands(&be.scan(&res, &q, &probes, &mask, &plans, 0).expect("k0 = 0")).expect("read");
        assert_eq!(c.counts, vec![0; spec.b], "k0 = 0 keeps nothing");
    }
}

/// Stages 2+3 over compacted candidates (`scan_candidates`): a query whose Bloom count fits
/// `cap` gets the exact top-k0 of every live row passing its filter (bit for bit) and
/// `Some(bloom count)`; one past `cap` gets nothing and `None`. Budgets from 1 to all rows,
/// k0 from 1 to far above the candidates, trivial plans, matching-nothing plans, tombstones.
pub fn candidates_case<B: Backend>(be: &B) {
    for (seed, spec) in specs() {
        let fx = fixture(seed, &spec);
        let ix = &fx.index;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 43);
        let q = random_queries(&mut rng, ix, spec.b);
        let filters = random_filters(&mut rng, ix, spec.b);
        let plans = plans_of(&filters);
        let counts: Vec<u64> = plans.iter().map(|p| ref_count(ix, p)).collect();
        let all_lists: Vec<u32> = (0..spec.b).flat_map(|_| 0..spec.l as u32).collect();
        let median = {
            let mut c = counts.clone();
            c.sort_unstable();
            c.get(c.len() / 2).copied().unwrap_or(0)
        };
        for (cap, k0) in [
            (1u64, 1usize),
            (median / 3, 7),
            (median, 10),
            (median.max(1), rng.random_range(1..=300)),
            (spec.n as u64, 2049),
            (u64::MAX, 5000),
        ] {
            let (c, answers) = be.scan_candidates(&res, &q, &plans, k0, cap).expect("scan_candidates");
            let got = be.read_cands(&c).expect("read cands");
            // The sampled pre-check, from its definition: every 16th word's Bloom rows.
            let sampled: Vec<u64> = plans
                .iter()
                .map(|p| (0..ix.len()).filter(|&r| (r / 64) % 16 == 0 && live(ix, r) && bloom_row(p, ix, r)).count() as u64)
                .collect();
            let admit = |i: usize| cap >= spec.n as u64 || sampled[i] * 16 <= cap.saturating_mul(2);
            let want_answers: Vec<Option<u64>> = counts.iter().enumerate().map(|(i, &n)| (admit(i) && n <= cap).then_some(n)).collect();
            assert_eq!(answers, want_answers, "answers: seed {seed} cap {cap}");
            // Answered queries: the exhaustive reference; the others keep nothing.
            let mut want = ref_scan(ix, &q, &all_lists, spec.l, &plans, k0);
            for (i, a) in answers.iter().enumerate() {
                if a.is_none() {
                    want.counts[i] = 0;
                    want.rows[i * k0..(i + 1) * k0].fill(u32::MAX);
                    want.scores[i * k0..(i + 1) * k0].fill(f32::NEG_INFINITY);
                }
            }
            assert_cands_exact(&format!("scan_candidates seed {seed} n {} cap {cap} k0 {k0}", spec.n), &got, &want);
            assert_eq!(be.read_counts(&c).expect("counts"), want.counts);
        }
        // One plan short of the batch is a typed error naming the filters, not a panic.
        if spec.b > 1 {
            match be.scan_candidates(&res, &q, &plans[..spec.b - 1], 10, 100) {
                Err(silica_core::Error::Param { name, .. }) => assert_eq!(name, "filters"),
                Err(e) => panic!("wrong error for short plans: {e}"),
                Ok(_) => panic!("short plans must be refused"),
            }
        }
    }
}

/// The posting route (`Backend::scan_postings`): for every plan with a driver, the top-k0
/// over its driver's rows equals the exhaustive reference, on the index the postings were
/// built from and on a patched and tombstoned version of it whose patched rows are stale
/// (the postings then describe the old values: a stale row the backend skipped or took
/// from the old lists fails). Also the drivers' definition: every passing row lies in them.
pub fn postings_case<B: Backend>(be: &B) {
    use silica_core::model::postings::{PostingState, driver};
    let many = |r: usize| r % 5 == 1 || r.is_multiple_of(17) || r % 19 == 2;
    for (seed, spec) in specs() {
        let fx = fixture(seed, &spec);
        let base = PostingState::build(&fx.index);
        let (patched, _) = changed(&fx.index, true, many);
        let rows: Vec<u32> = (0..spec.n).filter(|&r| many(r)).map(|r| r as u32).collect();
        for (ix, post) in [(fx.index.clone(), base.clone()), (Arc::new(patched), base.with_stale(&rows))] {
            let ix = &ix;
            let res = be.upload(ix).expect("upload");
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 61);
            let q = random_queries(&mut rng, ix, spec.b);
            let mut filters = random_filters(&mut rng, ix, spec.b);
            filters.push(
                Filter::compile("(tags = \"t01\" OR tags = \"t02\") AND NOT color = \"c0\"", &ix.attrs.schema, &ix.bloom.params).unwrap(),
            );
            let plans = plans_of(&filters);
            let with: Vec<usize> = (0..plans.len().min(q.len)).filter(|&i| driver(plans[i], &post.lists).is_some()).collect();
            let drivers: Vec<Vec<u32>> = with.iter().map(|&i| driver(plans[i], &post.lists).unwrap().0).collect();
            for (&i, d) in with.iter().zip(&drivers) {
                for r in (0..ix.len()).filter(|&r| live(ix, r) && exact(plans[i], ix, r)) {
                    assert!(
                        post.stale.binary_search(&(r as u32)).is_ok()
                            || d.iter().any(|&v| post.lists.rows_of(v).binary_search(&(r as u32)).is_ok()),
                        "seed {seed}: row {r} passes plan {i} outside its driver {d:?}"
                    );
                }
            }
            let sub = q.gather(&with);
            let sub_plans: Vec<&Plan> = with.iter().map(|&i| plans[i]).collect();
            let refs: Vec<&[u32]> = drivers.iter().map(|d| &d[..]).collect();
            let all_lists: Vec<u32> = (0..with.len()).flat_map(|_| 0..spec.l as u32).collect();
            if !with.is_empty() {
                // One driver short, or one plan short: a typed error naming the filters.
                for (p, d) in [(&sub_plans[..], &refs[..refs.len() - 1]), (&sub_plans[..sub_plans.len() - 1], &refs[..])] {
                    match be.scan_postings(&res, &sub, p, d, &post, 10) {
                        Err(silica_core::Error::Param { name, .. }) => assert_eq!(name, "filters", "seed {seed}"),
                        other => {
                            panic!("seed {seed}: {} plans / {} drivers for {} queries gave {:?}", p.len(), d.len(), sub.len, other.err())
                        }
                    }
                }
            }
            for k0 in [1usize, 10, 2049] {
                let c = be.scan_postings(&res, &sub, &sub_plans, &refs, &post, k0).expect("scan_postings");
                let want = ref_scan(ix, &sub, &all_lists, spec.l, &sub_plans, k0);
                assert_cands_exact(
                    &format!("scan_postings seed {seed} n {} stale {} k0 {k0}", spec.n, post.stale.len()),
                    &be.read_cands(&c).expect("read"),
                    &want,
                );
            }
        }
    }
}

/// Stages 4-5: `none` is exact (scores times the query scale, then top-k); `refine` and
/// `model` agree with the float reference within the stated tolerance.
pub fn rerank_select_case<B: Backend>(be: &B) {
    for (seed, spec) in specs().into_iter().filter(|(_, s)| s.n > 0 && s.d <= 256) {
        let fx = fixture(seed, &spec);
        let ix = &fx.index;
        let d = ix.dim;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 43);
        let q = random_queries(&mut rng, ix, spec.b);
        let filters = random_filters(&mut rng, ix, spec.b);
        let plans = plans_of(&filters);
        let nprobe = spec.l;
        let k0 = 64;
        let probes = be.probe(&res, &q, nprobe).expect("probe");
        let mask = be.filter(&res, &plans, &probes).expect("filter");
        let scan = |be: &B| be.scan(&res, &q, &probes, &mask, &plans, k0).expect("scan");
        let base = be.read_cands(&scan(be)).expect("read");

        // none: exact.
        let mut want = base.clone();
        for b in 0..want.len() {
            for i in 0..want.counts[b] as usize {
                want.scores[b * k0 + i] *= q.scale[b];
            }
        }
        let c = be.rerank(&res, &q, scan(be), &Rerank::None).expect("rerank none");
        assert_cands_exact(&format!("rerank none seed {seed}"), &be.read_cands(&c).expect("read"), &want);
        for k in [1, 10, 64, 100] {
            let c = be.rerank(&res, &q, scan(be), &Rerank::None).expect("rerank none");
            let got = be.read_cands(&be.select(c, k).expect("select")).expect("read");
            assert_cands_exact(&format!("select seed {seed} k {k}"), &got, &ref_select(&want, k));
        }

        // refine: f32 inner products of the f32 query and the f16 embeddings.
        let emb = ix.embeddings.as_ref().unwrap();
        let got = be.read_cands(&be.rerank(&res, &q, scan(be), &Rerank::Refine).expect("refine")).expect("read");
        assert_eq!(got.rows, base.rows, "refine keeps rows in place");
        for b in 0..got.len() {
            for i in 0..got.counts[b] as usize {
                let r = got.rows[b * k0 + i] as usize;
                let want: f64 = (0..d).map(|t| q.f32[b * d + t] as f64 * emb[r * d + t].to_f32() as f64).sum();
                let g = got.scores[b * k0 + i];
                assert!(close(g, want as f32), "refine seed {seed} query {b} row {r}: got {g}, want {want}");
            }
        }

        // model: a random two-layer MLP, composite of two sigmoid tasks.
        let f = ix.feature_names.len();
        let mut w = |n: usize| (0..n).map(|_| rng.random_range(-0.3f32..0.3)).collect::<Vec<f32>>();
        let model = Arc::new(RerankModel {
            layers: vec![Dense { inputs: 2 * d + f, outputs: 8, weight: w(8 * (2 * d + f)), bias: w(8) }],
            heads: Dense { inputs: 8, outputs: 2, weight: w(16), bias: w(2) },
            task_weights: vec![0.7, 0.3],
        });
        let mode = Rerank::Model { model: model.clone(), weights: vec![0.25, 0.75] };
        let got = be.read_cands(&be.rerank(&res, &q, scan(be), &mode).expect("model")).expect("read");
        let feats = ix.features.as_ref().unwrap();
        for b in 0..got.len() {
            for i in 0..got.counts[b] as usize {
                let r = got.rows[b * k0 + i] as usize;
                let mut x = q.f32[b * d..(b + 1) * d].to_vec();
                x.extend(emb[r * d..(r + 1) * d].iter().map(|h| h.to_f32()));
                x.extend_from_slice(&feats[r * f..(r + 1) * f]);
                let want = model.score(&x, &[0.25, 0.75], None);
                let g = got.scores[b * k0 + i];
                assert!(close(g, want), "model seed {seed} query {b} row {r}: got {g}, want {want}");
            }
        }
    }
}

/// The executor end to end: equal to the CPU backend with `rerank none` (planner,
/// adaptive widening and all), and to the exact filtered top-k when every list is probed.
pub fn executor_case<B: Backend + Clone + 'static>(be: &B) {
    let specs = specs();
    for (seed, spec) in specs.into_iter().filter(|(_, s)| s.n > 0) {
        let fx = fixture(seed, &spec);
        let ix = fx.index.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 47);
        let b = spec.b.min(40);
        let queries: Vec<f32> = (0..b * spec.d).map(|_| rng.random_range(-1f32..1.0)).collect();
        let filters = random_filters(&mut rng, &ix, b);
        let ours = Executor::new(be.clone(), ix.clone()).expect("executor");
        let cpu = Executor::new(Cpu, ix.clone()).expect("cpu executor");
        for (k, nprobe) in [(1, Some(1)), (10, None), (50, Some(spec.l)), (3000, Some((spec.l / 3).max(1)))] {
            let params = SearchParams { k, nprobe, rerank: RerankMode::None, ..Default::default() };
            let req = SearchRequest { queries: &queries, filters: &filters, params: params.clone() };
            let got = ours.search(&req).expect("search");
            let want = cpu.search(&req).expect("cpu search");
            assert_eq!(got, want, "executor vs cpu: seed {seed} k {k} nprobe {nprobe:?}");
            if nprobe == Some(spec.l) {
                // Exhaustive: the exact filtered top-k of all live rows.
                let q = prepare_queries(&ix, &queries).unwrap();
                for (i, r) in got.iter().enumerate() {
                    let plan = &filters[i].plan;
                    let mut v: Vec<(f32, u32)> = (0..ix.len())
                        .filter(|&row| live(&ix, row) && exact(plan, &ix, row))
                        .map(|row| {
                            (
                                dot(&q.codes[i * spec.d..(i + 1) * spec.d], ix.items.row(row)) as f32 * ix.items.scale[row] * q.scale[i],
                                row as u32,
                            )
                        })
                        .collect();
                    rank(&mut v);
                    v.truncate(k);
                    let rows: Vec<u64> = v.iter().map(|x| ix.source_rows[x.1 as usize]).collect();
                    let scores: Vec<f32> = v.iter().map(|x| x.0).collect();
                    assert_eq!(r.rows, rows, "exhaustive rows: seed {seed} query {i}");
                    assert_eq!(r.scores, scores, "exhaustive scores: seed {seed} query {i}");
                }
            }
        }
        // refine end to end: same answers within tolerance.
        let params = SearchParams { k: 10, nprobe: None, rerank: RerankMode::Refine, ..Default::default() };
        let req = SearchRequest { queries: &queries, filters: &filters, params };
        let (got, want) = (ours.search(&req).expect("refine"), cpu.search(&req).expect("cpu refine"));
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.scores.len(), w.scores.len(), "refine result count: seed {seed}");
            for (i, (gs, ws)) in g.scores.iter().zip(&w.scores).enumerate() {
                assert!(close(*gs, *ws), "refine score {i}: got {gs} want {ws}");
                let tie = w.scores.iter().enumerate().any(|(j, s)| j != i && (s - ws).abs() <= 2.0 * TOL * ws.abs().max(1.0));
                assert!(tie || g.rows[i] == w.rows[i], "refine row {i}: got {} want {}", g.rows[i], w.rows[i]);
            }
        }
        // Bad input is a typed error, not a panic.
        let bad = SearchRequest { queries: &queries[..spec.d - 1], filters: &[], params: SearchParams::default() };
        assert!(ours.search(&bad).is_err(), "a ragged query batch must fail");
    }
}

/// Zero-copy load: the index written to a file and loaded through the memory map (tensors
/// are views into it) gives the same answers, bit for bit, as the in-memory index on the
/// same backend, for every rerank mode; the mapped index also updates like the owned one.
pub fn mapped_case<B: Backend + Clone + 'static>(be: &B) {
    for (seed, spec) in specs().into_iter().filter(|(_, s)| s.n > 0) {
        let fx = fixture(seed, &spec);
        let ix = fx.index.clone();
        let file = tempfile::NamedTempFile::new().unwrap();
        silica_core::model::format::save(&ix, file.path()).unwrap();
        let mut mapped = silica_core::model::format::load(file.path()).expect("mapped load");
        // The live bitset is serving state, not stored in the artifact.
        mapped.live = ix.live.clone();
        let mapped = Arc::new(mapped);
        assert!(mapped.items.codes.is_mapped() && mapped.bloom.planes.is_mapped(), "seed {seed}: tensors are views");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 53);
        let b = spec.b.min(24);
        let queries: Vec<f32> = (0..b * spec.d).map(|_| rng.random_range(-1f32..1.0)).collect();
        let filters = random_filters(&mut rng, &ix, b);
        let owned = Executor::new(be.clone(), ix.clone()).expect("executor");
        let ours = Executor::new(be.clone(), mapped.clone()).expect("mapped executor");
        for rerank in [RerankMode::None, RerankMode::Refine] {
            for (k, nprobe) in [(1, Some(1)), (10, None), (77, Some(spec.l))] {
                let params = SearchParams { k, nprobe, rerank, ..Default::default() };
                let req = SearchRequest { queries: &queries, filters: &filters, params };
                assert_eq!(
                    ours.search(&req).expect("mapped search"),
                    owned.search(&req).expect("search"),
                    "mapped vs owned: seed {seed} k {k} {rerank:?}"
                );
            }
        }
        // An update of the mapped index (deletes + patches copy the tensors they change).
        let (after, words) = changed(&mapped, true, |r| r % 5 == 1);
        assert!(
            after.items.codes.is_mapped() && (spec.n < 2 || !after.attrs.values.is_mapped()),
            "seed {seed}: only changed tensors are copied"
        );
        let (owned_after, _) = changed(&ix, true, |r| r % 5 == 1);
        let changes = Changed { live: true, planes: true, attrs: true, plane_words: Some(words.into()), ..Changed::NONE };
        let up = ours.with_index(Arc::new(after), &changes).expect("update mapped");
        let up_owned = owned.with_index(Arc::new(owned_after), &changes).expect("update owned");
        let params = SearchParams { k: 10, nprobe: Some(spec.l), rerank: RerankMode::Refine, ..Default::default() };
        let req = SearchRequest { queries: &queries, filters: &filters, params };
        assert_eq!(
            up.search(&req).expect("updated mapped"),
            up_owned.search(&req).expect("updated owned"),
            "updated mapped vs owned: seed {seed}"
        );
        drop(file);
    }
}

/// `ix` after a stream of `silica serve` writes to its main rows: with `deletes`, deletes
/// (live bits); attribute patches of the rows `patch` selects, of the same length (color
/// changes) and of another length (tags added or dropped, shifting the CSR), with Bloom
/// planes rebuilt to match. Also returns the 64-row words holding patched rows.
pub fn changed(ix: &Index, deletes: bool, patch: impl Fn(usize) -> bool) -> (Index, Vec<u32>) {
    let mut out = ix.clone();
    let n = ix.len();
    if deletes {
        let mut live = ix.live.clone().unwrap_or_else(|| vec![!0u64; n.div_ceil(64)]);
        for r in (0..n).filter(|r| r % 7 == 3) {
            live[r / 64] &= !(1u64 << (r % 64));
        }
        out.live = Some(live);
    }
    let patched: Vec<usize> = (0..n).filter(|&r| patch(r)).collect();
    let mut words: Vec<u32> = patched.iter().map(|&r| (r / 64) as u32).collect();
    words.dedup();
    if patched.is_empty() {
        return (out, words);
    }
    let (mut offsets, mut values) = (vec![0u64], Vec::new());
    for r in 0..n {
        let mut row: Vec<u32> = ix.attrs.row(r).to_vec();
        if !patch(r) {
            values.extend_from_slice(&row);
            offsets.push(values.len() as u64);
            continue;
        }
        if r % 5 == 1 || (r % 17 != 0 && r % 19 != 2) {
            row.iter_mut().filter(|v| (**v as usize) < COLORS).for_each(|v| *v = (*v + 1) % COLORS as u32);
        }
        if r % 17 == 0 {
            row.push((COLORS + SIZES + TAGS - 1) as u32);
        }
        if r % 19 == 2 {
            row.retain(|&v| (v as usize) < COLORS + SIZES);
        }
        row.sort_unstable();
        row.dedup();
        values.extend_from_slice(&row);
        offsets.push(values.len() as u64);
    }
    out.attrs.offsets = offsets.into();
    out.attrs.values = values.into();
    let schema = &out.attrs.schema;
    let describe = |v: u32| {
        let f = schema.fields.iter().rev().find(|f| f.base <= v).expect("value id in a field");
        (f.name.clone(), f.values[(v - f.base) as usize].clone())
    };
    let params = ix.bloom.params;
    out.bloom = BloomPlanes::build(params, n, |r| {
        out.attrs
            .row(r)
            .iter()
            .flat_map(|&v| {
                let (f, x) = describe(v);
                params.positions(&f, &x)
            })
            .collect()
    });
    (out, words)
}

/// `Search::with_index` (the serve path: `Backend::update`) answers exactly as a fresh CPU
/// executor over the changed index, and the executor it came from still answers for the
/// old index (the device tensors it shares are not written).
pub fn update_case<B: Backend>(be: &B) {
    let many = |r: usize| r % 5 == 1 || r.is_multiple_of(17) || r % 19 == 2;
    for (i, (seed, spec)) in specs().into_iter().filter(|(_, s)| s.n > 0).enumerate() {
        let fx = fixture(seed, &spec);
        let old = fx.index.clone();
        let n = old.len();
        // Deletes only; many patches; one patched row (a device-side copy plus the changed
        // plane words, when the index has at least 8 words); everything.
        let (new, what) = match i % 4 {
            0 => (changed(&old, true, |_| false).0, Changed { live: true, ..Changed::NONE }),
            1 | 2 => {
                // The one row: a color change (neither a tag add nor a tag drop).
                let one = (n / 2..n).find(|r| r % 17 != 0 && r % 19 != 2).unwrap_or(0);
                let rows: Vec<u32> = (0..n).filter(|&r| if i % 4 == 1 { many(r) } else { r == one }).map(|r| r as u32).collect();
                let (ix, words) = if i % 4 == 1 { changed(&old, false, many) } else { changed(&old, false, |r| r == one) };
                (ix, Changed { planes: true, attrs: true, plane_words: Some(words.into()), attr_rows: Some(rows.into()), ..Changed::NONE })
            }
            _ => (changed(&old, true, many).0, Changed::ALL),
        };
        let new = Arc::new(new);
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 53);
        let b = spec.b.min(24);
        let mut queries: Vec<f32> = (0..b * spec.d).map(|_| rng.random_range(-1f32..1.0)).collect();
        let mut filters = random_filters(&mut rng, &new, b);
        // Aimed queries: a patched row's own codes with a filter on its new color, so that
        // stale Bloom bits on the device would hide it.
        let color_of = |ix: &Index, r: usize| ix.attrs.row(r).iter().find(|&&v| (v as usize) < COLORS).copied();
        for r in (0..n).filter(|&r| color_of(&old, r) != color_of(&new, r)).take(4) {
            queries.extend(old.items.row(r).iter().map(|&c| c as f32));
            let text = color_of(&new, r).map_or(String::new(), |c| format!("color = \"c{c}\""));
            filters.push(Filter::compile(&text, &new.attrs.schema, &new.bloom.params).unwrap());
        }
        let ours = Executor::new(be.clone(), old.clone()).expect("executor");
        let updated = ours.with_index(new.clone(), &what).expect("update");
        let (cpu_old, cpu_new) = (Executor::new(Cpu, old.clone()).unwrap(), Executor::new(Cpu, new.clone()).unwrap());
        for (k, nprobe) in [(10, None), (100, Some(spec.l))] {
            for rerank in [RerankMode::None, RerankMode::Refine] {
                let params = SearchParams { k, nprobe, rerank, ..Default::default() };
                let req = SearchRequest { queries: &queries, filters: &filters, params };
                let (got, want) = (updated.search(&req).expect("search"), cpu_new.search(&req).expect("cpu search"));
                assert_eq!(
                    got.iter().map(|r| &r.rows).collect::<Vec<_>>(),
                    want.iter().map(|r| &r.rows).collect::<Vec<_>>(),
                    "updated index ({what:?}): seed {seed} k {k} {rerank:?}"
                );
                if rerank == RerankMode::None {
                    assert_eq!(got, want, "updated index scores: seed {seed} k {k}");
                }
                let (got, want) = (ours.search(&req).expect("old search"), cpu_old.search(&req).expect("cpu old search"));
                assert_eq!(
                    got.iter().map(|r| &r.rows).collect::<Vec<_>>(),
                    want.iter().map(|r| &r.rows).collect::<Vec<_>>(),
                    "old snapshot after the update: seed {seed} k {k}"
                );
            }
        }
    }
}

/// Concurrent searches (several threads on one executor, as `silica serve --workers N` runs
/// them; CUDA gives each its own stream and workspace) give the same bits as the same
/// searches run one at a time: mixed batch sizes, k, nprobe, filters and rerank modes,
/// every thread repeating its list several times against the serial answers.
pub fn concurrent_case<B: Backend + Clone + 'static>(be: &B) {
    /// One request: queries `[b, D]`, filters (empty: none), parameters.
    type Work = (Vec<f32>, Vec<Filter>, SearchParams);
    const THREADS: usize = 4;
    const ROUNDS: usize = 2;
    for (seed, spec) in specs().into_iter().filter(|(_, s)| s.n > 0).filter(|(seed, _)| [3, 4, 7, 12].contains(seed)) {
        let fx = fixture(seed, &spec);
        let ix = fx.index.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 131 + 7);
        let ours = Executor::new(be.clone(), ix.clone()).expect("executor");
        // Per thread: several requests of different shapes (batch 1..=b, some unfiltered).
        let work: Vec<Vec<Work>> = (0..THREADS)
            .map(|_| {
                (0..5)
                    .map(|_| {
                        let b = rng.random_range(1..=spec.b.clamp(1, 64));
                        let queries: Vec<f32> = (0..b * spec.d).map(|_| rng.random_range(-1f32..1.0)).collect();
                        let filters = if rng.random_bool(0.25) { Vec::new() } else { random_filters(&mut rng, &ix, b) };
                        let k = [1, 10, 37, 200][rng.random_range(0..4)];
                        let nprobe = [None, Some(1), Some(spec.l), Some((spec.l / 2).max(1))][rng.random_range(0..4)];
                        let rerank = if rng.random_bool(0.5) { RerankMode::None } else { RerankMode::Refine };
                        (queries, filters, SearchParams { k, nprobe, rerank, ..Default::default() })
                    })
                    .collect()
            })
            .collect();
        fn req(w: &Work) -> SearchRequest<'_> {
            SearchRequest { queries: &w.0, filters: &w.1, params: w.2.clone() }
        }
        let serial: Vec<Vec<_>> = work.iter().map(|t| t.iter().map(|w| ours.search(&req(w)).expect("serial search")).collect()).collect();
        let start = std::sync::Barrier::new(THREADS);
        std::thread::scope(|s| {
            for (t, (mine, want)) in work.iter().zip(&serial).enumerate() {
                let (ours, start) = (&ours, &start);
                s.spawn(move || {
                    start.wait();
                    for round in 0..ROUNDS {
                        for (i, (w, want)) in mine.iter().zip(want).enumerate() {
                            let got = ours.search(&req(w)).expect("concurrent search");
                            assert_eq!(&got, want, "concurrent vs serial: seed {seed} thread {t} round {round} request {i} ({:?})", w.2);
                        }
                    }
                });
            }
        });
        assert!(ours.idle_lanes() >= 1, "lanes are returned to the pool");
    }
}

/// The fixture with metric `l2` (and the squared code norms it needs).
pub fn l2_fixture(seed: u64, spec: &Spec) -> Fixture {
    let fx = fixture(seed, spec);
    let mut ix = (*fx.index).clone();
    ix.metric = Metric::L2;
    ix.sqnorms = (0..ix.len()).map(|r| ix.items.row(r).iter().map(|&c| c as i32 * c as i32).sum::<i32>()).collect::<Vec<i32>>().into();
    Fixture { index: Arc::new(ix), seed }
}

/// The l2 integer score written out (crates/core/src/model/metric.rs): `((dot as f32) * qs - bias) *
/// scale` with `bias = (Σ c² as f32 * scale) * 0.5`, each operation rounded.
pub fn l2_ref_score(qc: &[i8], qs: f32, codes: &[i8], scale: f32) -> f32 {
    let norm: i32 = codes.iter().map(|&c| c as i32 * c as i32).sum();
    let bias = (norm as f32 * scale) * 0.5;
    ((dot(qc, codes) as f32) * qs - bias) * scale
}

pub fn l2_ref_scan(ix: &Index, q: &QueryBatch, lists: &[u32], nprobe: usize, plans: &[&Plan], k0: usize) -> Candidates {
    let d = ix.dim;
    let per_query = (0..q.len)
        .map(|b| {
            let mut v = Vec::new();
            for &l in &lists[b * nprobe..(b + 1) * nprobe] {
                for r in ix.list_range(l as usize) {
                    if live(ix, r) && bloom_row(plans[b], ix, r) && exact(plans[b], ix, r) {
                        v.push((l2_ref_score(&q.codes[b * d..(b + 1) * d], q.scale[b], ix.items.row(r), ix.items.scale[r]), r as u32));
                    }
                }
            }
            rank(&mut v);
            v.truncate(k0);
            v
        })
        .collect();
    pack(per_query, k0)
}

/// The `l2` metric: probe, scan (computed and given probes), the candidate route and
/// rerank `none` bit for bit against the written-out integer rule; `refine` within the
/// tolerance of `-Σ (q - e)²`; query scales are powers of two.
pub fn l2_case<B: Backend>(be: &B) {
    for (seed, spec) in specs().into_iter().filter(|(_, s)| s.d <= 256) {
        let fx = l2_fixture(seed, &spec);
        let ix = &fx.index;
        let d = ix.dim;
        let res = be.upload(ix).expect("upload");
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 53);
        let mut q = random_queries(&mut rng, ix, spec.b);
        assert!(q.scale.iter().all(|s| s.to_bits() & 0x7f_ffff == 0), "l2 query scales are powers of two");
        // Scale some queries up and down (norms far from the items' change the ranking).
        let mut raw = q.f32.clone();
        for (b, row) in raw.chunks_mut(d).enumerate() {
            let f = [1.0f32, 0.01, 40.0][b % 3];
            row.iter_mut().for_each(|x| *x *= f);
        }
        if spec.b > 0 {
            q = prepare_queries(ix, &raw).expect("queries");
        }
        let filters = random_filters(&mut rng, ix, spec.b);
        let plans = plans_of(&filters);
        let what = |s: &str| format!("l2 {s}: seed {seed} n {} d {d} l {} b {}", spec.n, spec.l, spec.b);
        for nprobe in [1, rng.random_range(1..=spec.l), spec.l] {
            let p = be.read_probes(&be.probe(&res, &q, nprobe).expect("probe")).expect("read probes");
            let want: Vec<u32> = (0..q.len)
                .flat_map(|b| {
                    let mut s: Vec<(f32, u32)> = (0..ix.nlist())
                        .map(|l| {
                            (
                                l2_ref_score(
                                    &q.codes[b * d..(b + 1) * d],
                                    q.scale[b],
                                    ix.centroid_codes.row(l),
                                    ix.centroid_codes.scale[l],
                                ),
                                l as u32,
                            )
                        })
                        .collect();
                    rank(&mut s);
                    s.into_iter().take(nprobe).map(|x| x.1)
                })
                .collect();
            assert_eq!(p.lists, want, "{} nprobe {nprobe}", what("probe"));
            let probes = be.probe(&res, &q, nprobe).expect("probe");
            let mask = be.filter(&res, &plans, &probes).expect("filter");
            for k0 in [1, 10, rng.random_range(1..=300), 2049] {
                let got = be.read_cands(&be.scan(&res, &q, &probes, &mask, &plans, k0).expect("scan")).expect("read");
                assert_cands_exact(
                    &format!("{} nprobe {nprobe} k0 {k0}", what("scan")),
                    &got,
                    &l2_ref_scan(ix, &q, &p.lists, nprobe, &plans, k0),
                );
            }
        }
        // The candidate route with every row in budget: the exhaustive reference.
        let all_lists: Vec<u32> = (0..spec.b).flat_map(|_| 0..spec.l as u32).collect();
        for k0 in [7, 300] {
            let (c, _) = be.scan_candidates(&res, &q, &plans, k0, u64::MAX).expect("scan_candidates");
            assert_cands_exact(
                &format!("{} k0 {k0}", what("candidates")),
                &be.read_cands(&c).expect("read"),
                &l2_ref_scan(ix, &q, &all_lists, spec.l, &plans, k0),
            );
        }
        if spec.n == 0 {
            continue;
        }
        // rerank none: -distance² from the score, exactly (2s - ‖q‖², ‖q‖² summed in order).
        let k0 = 64;
        let probes = be.probe(&res, &q, spec.l).expect("probe");
        let mask = be.filter(&res, &plans, &probes).expect("filter");
        let scan = |be: &B| be.scan(&res, &q, &probes, &mask, &plans, k0).expect("scan");
        let base = be.read_cands(&scan(be)).expect("read");
        let mut want = base.clone();
        for b in 0..want.len() {
            let qn = q.f32[b * d..(b + 1) * d].iter().fold(0f32, |a, &v| a + v * v);
            for i in 0..want.counts[b] as usize {
                want.scores[b * k0 + i] = want.scores[b * k0 + i] * 2.0 - qn;
            }
        }
        let got = be.read_cands(&be.rerank(&res, &q, scan(be), &Rerank::None).expect("none")).expect("read");
        assert_cands_exact(&what("rerank none"), &got, &want);
        // refine: the negated squared distance to the f16 embedding.
        let emb = ix.embeddings.as_ref().unwrap();
        let got = be.read_cands(&be.rerank(&res, &q, scan(be), &Rerank::Refine).expect("refine")).expect("read");
        assert_eq!(got.rows, base.rows, "refine keeps rows in place");
        for b in 0..got.len() {
            for i in 0..got.counts[b] as usize {
                let r = got.rows[b * k0 + i] as usize;
                let want: f64 = -(0..d).map(|t| (q.f32[b * d + t] as f64 - emb[r * d + t].to_f32() as f64).powi(2)).sum::<f64>();
                let g = got.scores[b * k0 + i];
                assert!(close(g, want as f32), "{} query {b} row {r}: got {g}, want {want}", what("refine"));
            }
        }
    }
}

/// Defines the whole suite for one backend: `conformance_suite!(name, Type, ctor)` with
/// `ctor: impl Fn() -> Option<Type>` (`None`: not available here -> skipped).
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $ty:ty, $ctor:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            static BACKEND: std::sync::OnceLock<Option<$ty>> = std::sync::OnceLock::new();
            fn backend() -> Option<&'static $ty> {
                let b = BACKEND.get_or_init(|| ($ctor)()).as_ref();
                if b.is_none() {
                    let required = std::env::var("SILICA_REQUIRE_BACKENDS").unwrap_or_default();
                    assert!(
                        !required.split(',').any(|n| n.trim() == stringify!($name)),
                        "backend {} is required (SILICA_REQUIRE_BACKENDS) but unavailable",
                        stringify!($name)
                    );
                    eprintln!("skipping the {} conformance suite: backend unavailable here", stringify!($name));
                }
                b
            }
            #[test]
            fn probe_matches_reference() {
                if let Some(b) = backend() {
                    $crate::probe_case(b);
                }
            }
            #[test]
            fn filter_and_count_match_reference() {
                if let Some(b) = backend() {
                    $crate::filter_case(b);
                }
            }
            #[test]
            fn scan_matches_reference_bit_for_bit() {
                if let Some(b) = backend() {
                    $crate::scan_case(b);
                }
            }
            #[test]
            fn candidates_match_reference_bit_for_bit() {
                if let Some(b) = backend() {
                    $crate::candidates_case(b);
                }
            }
            #[test]
            fn postings_match_reference_bit_for_bit() {
                if let Some(b) = backend() {
                    $crate::postings_case(b);
                }
            }
            #[test]
            fn rerank_and_select_match_reference() {
                if let Some(b) = backend() {
                    $crate::rerank_select_case(b);
                }
            }
            #[test]
            fn executor_matches_cpu_and_exact_search() {
                if let Some(b) = backend() {
                    $crate::executor_case(b);
                }
            }
            #[test]
            fn mapped_load_matches_owned_bit_for_bit() {
                if let Some(b) = backend() {
                    $crate::mapped_case(b);
                }
            }
            #[test]
            fn concurrent_searches_match_serial_bit_for_bit() {
                if let Some(b) = backend() {
                    $crate::concurrent_case(b);
                }
            }
            #[test]
            fn typed_per_query_bounds_match_reference_bit_for_bit() {
                if let Some(b) = backend() {
                    $crate::typed_per_query_case(b);
                }
            }
            #[test]
            fn l2_matches_reference_bit_for_bit() {
                if let Some(be) = backend() {
                    $crate::l2_case(be);
                }
            }

            #[test]
            fn updated_index_matches_cpu_and_old_snapshot_stands() {
                if let Some(b) = backend() {
                    $crate::update_case(b);
                }
            }
        }
    };
}
