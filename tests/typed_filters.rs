//! Typed attributes end to end: random JSONL with string, string-list, int, float, bool and
//! timestamp fields, built by the real builder (inference, `--schema`, the artifact written
//! and decoded), then random filters over every operator, searched exhaustively on every
//! backend present: the passing rows must be exactly those a brute-force evaluator
//! (written here from SQL semantics, not from the library's code) accepts, and every
//! backend must answer exactly like the CPU (rows and score bits), exhaustive or not.
//!
//! Backends: cpu always; wgpu when an adapter exists (CI: lavapipe, required through
//! `SILICA_REQUIRE_BACKENDS=wgpu`); cuda when a device exists (required with `cuda`).

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica::graph::{RerankMode, Search, SearchParams, SearchRequest, open};
use silica::model::attributes::{FieldType, parse_jsonl_with, parse_schema};
use silica::model::columns::format_timestamp;
use silica::model::npy::Matrix;
use silica::model::{ColumnType, format};
use silica::{BuildParams, Filter, Index, IndexBuilder};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const COLORS: [&str; 4] = ["red", "green", "blue", "cyan"];
const TAGS: [&str; 5] = ["a", "b", "c", "d", "e"];
/// 2024-01-01T00:00:00Z in microseconds.
const T0: i64 = 1_704_067_200_000_000;
const HOUR: i64 = 3_600_000_000;

#[derive(Clone, Debug)]
struct Row {
    color: Option<&'static str>,
    tags: Vec<&'static str>,
    price: Option<f64>,
    year: Option<i64>,
    in_stock: Option<bool>,
    published: Option<i64>,
}

fn random_rows(rng: &mut ChaCha8Rng, n: usize) -> Vec<Row> {
    // Row 0 has every field, so that every column is inferred even for n = 1.
    (0..n)
        .map(|i| Row {
            color: (i == 0 || rng.random_bool(0.8)).then(|| COLORS[rng.random_range(0..COLORS.len())]),
            tags: TAGS.iter().copied().filter(|_| rng.random_bool(0.25)).collect(),
            // Halves: equality on floats is exact; some written as integers (`3`, not `3.0`).
            price: (i == 0 || rng.random_bool(0.85)).then(|| rng.random_range(-20..60) as f64 / 2.0),
            year: (i == 0 || rng.random_bool(0.9)).then(|| rng.random_range(1995..2015)),
            in_stock: (i == 0 || rng.random_bool(0.75)).then(|| rng.random_bool(0.5)),
            published: (i == 0 || rng.random_bool(0.8)).then(|| T0 + rng.random_range(0..500) * HOUR),
        })
        .collect()
}

fn jsonl(rng: &mut ChaCha8Rng, rows: &[Row]) -> String {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), format!("it{i}").into());
        // Absent and explicit null both mean "no value".
        let mut put = |k: &str, v: Option<serde_json::Value>, rng: &mut ChaCha8Rng| match v {
            Some(v) => {
                o.insert(k.into(), v);
            }
            None if rng.random_bool(0.5) => {
                o.insert(k.into(), serde_json::Value::Null);
            }
            None => {}
        };
        put("color", r.color.map(Into::into), rng);
        put("tags", Some(r.tags.clone().into()), rng);
        let price = r.price.map(|p| if p.fract() == 0.0 && rng.random_bool(0.5) { serde_json::Value::from(p as i64) } else { p.into() });
        put("price", price, rng);
        put("year", r.year.map(Into::into), rng);
        put("in_stock", r.in_stock.map(Into::into), rng);
        put("published", r.published.map(|t| format_timestamp(t).into()), rng);
        out.push_str(&serde_json::Value::Object(o).to_string());
        out.push('\n');
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal: a number (as f64, exact for the values used), a bool, a string, a time.
#[derive(Clone, Debug)]
enum Lit {
    Num(f64),
    Bool(bool),
    Str(&'static str),
    Time(i64),
}

#[derive(Clone, Debug)]
enum Leaf {
    Cmp(&'static str, Op, Lit),
    In(&'static str, Vec<Lit>, bool),
    Between(&'static str, Lit, Lit),
    Null(&'static str, bool),
}

#[derive(Clone, Debug)]
enum E {
    Leaf(Leaf),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
    Not(Box<E>),
}

fn kw(rng: &mut ChaCha8Rng, k: &str) -> String {
    if rng.random_bool(0.5) { k.to_lowercase() } else { k.to_string() }
}

fn lit_text(rng: &mut ChaCha8Rng, l: &Lit) -> String {
    match l {
        Lit::Num(x) if x.fract() == 0.0 => format!("{}", *x as i64),
        Lit::Num(x) => format!("{x}"),
        Lit::Bool(b) => kw(rng, if *b { "TRUE" } else { "FALSE" }),
        Lit::Str(s) => format!("\"{s}\""),
        // Timestamps as RFC 3339 (UTC or with an offset) or integer microseconds.
        Lit::Time(t) => match rng.random_range(0..3) {
            0 => format!("\"{}\"", format_timestamp(*t)),
            1 => {
                let s = format_timestamp(*t + 2 * HOUR);
                format!("\"{}+02:00\"", s.trim_end_matches('Z'))
            }
            _ => format!("{t}"),
        },
    }
}

fn render(rng: &mut ChaCha8Rng, e: &E) -> String {
    match e {
        E::Leaf(Leaf::Cmp(f, op, l)) => {
            let o = match op {
                Op::Eq => "=",
                Op::Ne => {
                    if rng.random_bool(0.5) {
                        "!="
                    } else {
                        "<>"
                    }
                }
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
            };
            format!("{f} {o} {}", lit_text(rng, l))
        }
        E::Leaf(Leaf::In(f, ls, neg)) => {
            let items: Vec<String> = ls.iter().map(|l| lit_text(rng, l)).collect();
            let not = if *neg { format!("{} ", kw(rng, "NOT")) } else { String::new() };
            format!("{f} {not}{} ({})", kw(rng, "IN"), items.join(", "))
        }
        E::Leaf(Leaf::Between(f, a, b)) => {
            format!("{f} {} {} {} {}", kw(rng, "BETWEEN"), lit_text(rng, a), kw(rng, "AND"), lit_text(rng, b))
        }
        E::Leaf(Leaf::Null(f, neg)) => {
            format!("{f} {}{} {}", kw(rng, "IS"), if *neg { format!(" {}", kw(rng, "NOT")) } else { String::new() }, kw(rng, "NULL"))
        }
        E::And(a, b) => format!("({} {} {})", render(rng, a), kw(rng, "AND"), render(rng, b)),
        E::Or(a, b) => format!("({} {} {})", render(rng, a), kw(rng, "OR"), render(rng, b)),
        E::Not(a) => format!("{} {}", kw(rng, "NOT"), render(rng, a)),
    }
}

fn random_lit(rng: &mut ChaCha8Rng, f: &str) -> Lit {
    match f {
        "price" => Lit::Num(rng.random_range(-22..62) as f64 / 2.0),
        "year" => Lit::Num(rng.random_range(1993..2017) as f64),
        "in_stock" => Lit::Bool(rng.random_bool(0.5)),
        "published" => Lit::Time(T0 + rng.random_range(-5..505) * HOUR + if rng.random_bool(0.2) { 1 } else { 0 }),
        "color" => Lit::Str(["red", "green", "blue", "cyan", "none"][rng.random_range(0..5)]),
        _ => Lit::Str(["a", "b", "c", "d", "e", "zz"][rng.random_range(0..6)]),
    }
}

fn random_leaf(rng: &mut ChaCha8Rng) -> Leaf {
    let f = ["price", "year", "in_stock", "published", "color", "tags"][rng.random_range(0..6)];
    let string = matches!(f, "color" | "tags");
    let ordered = !string && f != "in_stock";
    match rng.random_range(0..5) {
        0 | 1 => {
            let op = if ordered {
                [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge][rng.random_range(0..6)]
            } else {
                [Op::Eq, Op::Ne][rng.random_range(0..2)]
            };
            Leaf::Cmp(f, op, random_lit(rng, f))
        }
        2 => Leaf::In(f, (0..rng.random_range(1..4)).map(|_| random_lit(rng, f)).collect(), rng.random_bool(0.5)),
        3 if ordered => Leaf::Between(f, random_lit(rng, f), random_lit(rng, f)),
        _ => Leaf::Null(f, rng.random_bool(0.5)),
    }
}

fn random_expr(rng: &mut ChaCha8Rng, depth: u32) -> E {
    if depth == 0 || rng.random_bool(0.35) {
        return E::Leaf(random_leaf(rng));
    }
    match rng.random_range(0..3) {
        0 => E::And(Box::new(random_expr(rng, depth - 1)), Box::new(random_expr(rng, depth - 1))),
        1 => E::Or(Box::new(random_expr(rng, depth - 1)), Box::new(random_expr(rng, depth - 1))),
        _ => E::Not(Box::new(random_expr(rng, depth - 1))),
    }
}

/// A typed value for comparison: numbers as f64 (exact here), times as i64, bools as 0/1.
fn num_of(r: &Row, f: &str) -> Option<f64> {
    match f {
        "price" => r.price,
        "year" => r.year.map(|y| y as f64),
        "in_stock" => r.in_stock.map(|b| b as i64 as f64),
        "published" => r.published.map(|t| t as f64),
        _ => unreachable!(),
    }
}

fn lit_num(l: &Lit) -> f64 {
    match l {
        Lit::Num(x) => *x,
        Lit::Bool(b) => *b as i64 as f64,
        Lit::Time(t) => *t as f64,
        Lit::Str(_) => unreachable!(),
    }
}

fn strings_of(r: &Row, f: &str) -> Vec<&'static str> {
    match f {
        "color" => r.color.into_iter().collect(),
        _ => r.tags.clone(),
    }
}

/// SQL semantics: a missing value matches no comparison (`!=`, `NOT IN` included); a list
/// matches `=`/`IN` when any value does, `!=`/`NOT IN` when it has values and none is listed.
fn eval(e: &E, r: &Row) -> bool {
    match e {
        E::And(a, b) => eval(a, r) && eval(b, r),
        E::Or(a, b) => eval(a, r) || eval(b, r),
        E::Not(a) => !eval(a, r),
        E::Leaf(l) => match l {
            Leaf::Null(f, neg) => {
                let empty = if matches!(*f, "color" | "tags") { strings_of(r, f).is_empty() } else { num_of(r, f).is_none() };
                empty != *neg
            }
            Leaf::Cmp(f, op, Lit::Str(s)) => {
                let v = strings_of(r, f);
                match op {
                    Op::Eq => v.contains(s),
                    Op::Ne => !v.is_empty() && !v.contains(s),
                    _ => unreachable!(),
                }
            }
            Leaf::In(f, ls, neg) if matches!(*f, "color" | "tags") => {
                let v = strings_of(r, f);
                let any = ls.iter().any(|l| matches!(l, Lit::Str(s) if v.contains(s)));
                if *neg { !v.is_empty() && !any } else { any }
            }
            Leaf::Cmp(f, op, l) => num_of(r, f).is_some_and(|x| {
                let y = lit_num(l);
                match op {
                    Op::Eq => x == y,
                    Op::Ne => x != y,
                    Op::Lt => x < y,
                    Op::Le => x <= y,
                    Op::Gt => x > y,
                    Op::Ge => x >= y,
                }
            }),
            Leaf::In(f, ls, neg) => num_of(r, f).is_some_and(|x| ls.iter().any(|l| lit_num(l) == x) != *neg),
            Leaf::Between(f, a, b) => num_of(r, f).is_some_and(|x| lit_num(a) <= x && x <= lit_num(b)),
        },
    }
}

fn backends() -> Vec<&'static str> {
    let mut out = vec!["cpu"];
    out.extend(common::gpu_backends());
    out
}

fn build(rng: &mut ChaCha8Rng, rows: &[Row], d: usize, nlist: usize) -> Index {
    let text = jsonl(rng, rows);
    let schema = parse_schema("published:timestamp").unwrap();
    let table = parse_jsonl_with(text.as_bytes(), Path::new("typed.jsonl"), &[], &schema).unwrap();
    let data: Vec<f32> = (0..rows.len() * d).map(|_| rng.random_range(-1f32..1.0)).collect();
    let params = BuildParams { nlist: Some(nlist), seed: 7, ..Default::default() };
    let ix = IndexBuilder::new(params).build(Matrix { rows: rows.len(), dim: d, data, was_f16: false }, table).unwrap();
    let want =
        [("in_stock", ColumnType::Bool), ("price", ColumnType::Float), ("published", ColumnType::Timestamp), ("year", ColumnType::Int)];
    let got: Vec<(&str, ColumnType)> = ix.columns.cols.iter().map(|c| (c.name.as_str(), c.ty)).collect();
    assert_eq!(got, want, "inferred and declared column types");
    ix
}

/// Every operator, random filters, every backend: exhaustive answers equal the brute-force
/// passing set; every backend equals the CPU exactly, also at the default nprobe.
#[test]
fn random_typed_filters_match_brute_force_on_every_backend() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let backends = backends();
    for (n, nlist) in [(1usize, 1usize), (63, 3), (200, 7), (517, 16), (1100, 24)] {
        let rows = random_rows(&mut rng, n);
        let d = 8;
        let ix = Arc::new(build(&mut rng, &rows, d, nlist));
        let searchers: Vec<(&str, Box<dyn Search>)> = backends.iter().map(|&b| (b, open(b, ix.clone()).expect("backend"))).collect();
        let nq = 24;
        let queries: Vec<f32> = (0..nq * d).map(|_| rng.random_range(-1f32..1.0)).collect();
        let exprs: Vec<E> = (0..nq).map(|_| random_expr(&mut rng, 3)).collect();
        let texts: Vec<String> = exprs.iter().map(|e| render(&mut rng, e)).collect();
        let filters: Vec<Filter> =
            texts.iter().map(|t| Filter::compile(t, &ix.attrs.schema, &ix.bloom.params).unwrap_or_else(|e| panic!("{t}: {e}"))).collect();
        for (k, nprobe) in [(n, Some(nlist)), (10, None)] {
            let params = SearchParams { k: k.max(1), nprobe, rerank: RerankMode::None, ..Default::default() };
            let req = SearchRequest { queries: &queries, filters: &filters, params };
            let want = searchers[0].1.search(&req).expect("cpu");
            if nprobe == Some(nlist) {
                for (i, r) in want.iter().enumerate() {
                    let got: BTreeSet<u64> = r.rows.iter().copied().collect();
                    let truth: BTreeSet<u64> = (0..n as u64).filter(|&s| eval(&exprs[i], &rows[s as usize])).collect();
                    assert_eq!(got, truth, "n {n} filter {}", texts[i]);
                }
            }
            for (name, s) in &searchers[1..] {
                let got = s.search(&req).expect("search");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.rows, w.rows, "{name} vs cpu rows: n {n} k {k} filter {}", texts[i]);
                    let (gb, wb): (Vec<u32>, Vec<u32>) =
                        (g.scores.iter().map(|x| x.to_bits()).collect(), w.scores.iter().map(|x| x.to_bits()).collect());
                    assert_eq!(gb, wb, "{name} vs cpu score bits: n {n} filter {}", texts[i]);
                }
            }
        }
    }
}

/// The typed columns survive the artifact: written, loaded through the memory map and
/// from bytes, equal to the built ones, and covered by the checksums.
#[test]
fn typed_columns_round_trip_and_are_checksummed() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let rows = random_rows(&mut rng, 300);
    let ix = build(&mut rng, &rows, 4, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.silica");
    format::save(&ix, &path).unwrap();
    let back = format::load(&path).unwrap();
    assert_eq!(back.columns, ix.columns);
    assert_eq!(back.attrs.schema, ix.attrs.schema);
    for c in &back.columns.cols {
        for r in 0..back.len() {
            let src = &rows[back.source_rows[r] as usize];
            let want = match c.name.as_str() {
                "price" => src.price.map(|p| serde_json::json!(p)),
                "year" => src.year.map(|y| serde_json::json!(y)),
                "in_stock" => src.in_stock.map(|b| serde_json::json!(b)),
                _ => src.published.map(|t| serde_json::json!(format_timestamp(t))),
            };
            assert_eq!(c.json(r), want.unwrap_or(serde_json::Value::Null), "{} row {r}", c.name);
        }
    }
    // One flipped byte in a column's values is caught by the checksums.
    let mut bytes = std::fs::read(&path).unwrap();
    let (info, table) = format::inspect(&path).unwrap();
    assert!(info.contains_key("columns"));
    assert!(table.iter().any(|t| t.0 == "cols.price.values" && t.1 == safetensors::Dtype::F64));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let data = st.tensor("cols.year.values").unwrap().data().as_ptr() as usize - bytes.as_ptr() as usize;
    drop(st);
    bytes[data] ^= 1;
    let e = format::from_bytes(&bytes, &path).unwrap_err().to_string();
    assert!(e.contains("cols.year.values"), "{e}");
}

/// Build-time typing errors name the line and field; filter type errors name the column.
#[test]
fn typing_errors_are_named() {
    let parse = |text: &str, schema: &[(String, FieldType)]| parse_jsonl_with(text.as_bytes(), Path::new("a.jsonl"), &[], schema);
    let lines = ["{\"id\":\"a\",\"year\":2001}", "{\"id\":\"b\",\"year\":null}", "{\"id\":\"c\",\"year\":\"2003\"}"].join("\n");
    let e = parse(&lines, &[]).unwrap_err().to_string();
    assert!(e.contains(":3:") && e.contains("`year`") && e.contains("line 1"), "{e}");
    let e = parse("{\"id\":\"a\",\"n\":1.5}", &parse_schema("n:int").unwrap()).unwrap_err().to_string();
    assert!(e.contains(":1:") && e.contains("declared int"), "{e}");
    let e = parse("{\"id\":\"a\"}\n{\"id\":\"b\",\"t\":\"yesterday\"}", &parse_schema("t:timestamp").unwrap()).unwrap_err().to_string();
    assert!(e.contains(":2:") && e.contains("RFC 3339"), "{e}");
    let e = parse("{\"id\":\"a\",\"f\":true}\n{\"id\":\"b\",\"f\":1}", &[]).unwrap_err().to_string();
    assert!(e.contains(":2:") && e.contains("number") && e.contains("boolean"), "{e}");
    assert!(parse("{\"id\":\"a\",\"v\":[1,2]}", &[]).unwrap_err().to_string().contains("lists of numbers"));
    assert!(parse_schema("price:money").is_err() && parse_schema("price").is_err() && parse_schema("a:int,a:float").is_err());
    // Int and float mix into float; a declared-but-absent column exists with no values.
    let t = parse("{\"id\":\"a\",\"p\":1}\n{\"id\":\"b\",\"p\":2.5}", &parse_schema("q:bool").unwrap()).unwrap();
    let tys: Vec<(String, ColumnType)> = t.columns.iter().map(|c| (c.name.clone(), c.ty)).collect();
    assert_eq!(tys, vec![("p".to_string(), ColumnType::Float), ("q".to_string(), ColumnType::Bool)]);
    assert!(t.columns[1].keys.iter().all(|k| k.is_none()));

    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let rows = random_rows(&mut rng, 50);
    let ix = build(&mut rng, &rows, 4, 2);
    for (text, col) in [
        ("price < \"cheap\"", 9),
        ("year = 2001.5", 8),
        ("color < \"red\"", 9),
        ("in_stock = 1", 12),
        ("published > \"2024-13-01T00:00:00Z\"", 13),
        ("color = 3", 9),
        ("year BETWEEN 1 AND true", 20),
        ("nope IS NULL", 1),
    ] {
        match Filter::compile(text, &ix.attrs.schema, &ix.bloom.params) {
            Err(silica::filter::FilterError::Type { column, .. } | silica::filter::FilterError::UnknownField { column, .. }) => {
                assert_eq!(column, col, "{text}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

/// The CLI end to end: `build --schema`, `search` with a typed filter and `--fields`, and a
/// bad `--schema` / unknown `--fields` name refused before anything is written.
#[test]
fn cli_builds_typed_columns_and_returns_fields() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let rows = random_rows(&mut rng, 400);
    let dir = tempfile::tempdir().unwrap();
    let (vecs, attrs, ix, qs, fs, out) = ["v.npy", "a.jsonl", "i.silica", "q.npy", "f.jsonl", "r.jsonl"].map(|f| dir.path().join(f)).into();
    let d = 8;
    let data: Vec<f32> = (0..rows.len() * d).map(|_| rng.random_range(-1f32..1.0)).collect();
    silica::model::npy::write(&vecs, rows.len(), d, &data, false).unwrap();
    std::fs::write(&attrs, jsonl(&mut rng, &rows)).unwrap();
    let silica = |args: &[&std::ffi::OsStr]| std::process::Command::new(env!("CARGO_BIN_EXE_silica")).args(args).output().unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);
    let build = |schema: &str| {
        silica(&[
            &os("build"),
            &os("--vectors"),
            vecs.as_os_str(),
            &os("--attributes"),
            attrs.as_os_str(),
            &os("--out"),
            ix.as_os_str(),
            &os("--nlist"),
            &os("4"),
            &os("--no-calibrate"),
            &os("--schema"),
            &os(schema),
        ])
    };
    let bad = build("published:date");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("schema"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!ix.exists(), "a refused build writes nothing");
    let ok = build("published:timestamp");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let q: Vec<f32> = (0..2 * d).map(|_| rng.random_range(-1f32..1.0)).collect();
    silica::model::npy::write(&qs, 2, d, &q, false).unwrap();
    std::fs::write(
        &fs,
        "{\"filter\": \"price >= 10 and in_stock = true\"}\n{\"filter\": \"year IS NULL OR published < \\\"2024-01-05T00:00:00Z\\\"\"}\n",
    )
    .unwrap();
    let search = |fields: &str| {
        silica(&[
            &os("search"),
            &os("--index"),
            ix.as_os_str(),
            &os("--queries"),
            qs.as_os_str(),
            &os("--filters"),
            fs.as_os_str(),
            &os("--k"),
            &os("400"),
            &os("--nprobe"),
            &os("4"),
            &os("--out"),
            out.as_os_str(),
            &os("--fields"),
            &os(fields),
        ])
    };
    let r = search("price,in_stock,year,published,color,tags");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let truth = [
        E::And(
            Box::new(E::Leaf(Leaf::Cmp("price", Op::Ge, Lit::Num(10.0)))),
            Box::new(E::Leaf(Leaf::Cmp("in_stock", Op::Eq, Lit::Bool(true)))),
        ),
        E::Or(Box::new(E::Leaf(Leaf::Null("year", false))), Box::new(E::Leaf(Leaf::Cmp("published", Op::Lt, Lit::Time(T0 + 96 * HOUR))))),
    ];
    for (line, e) in lines.iter().zip(&truth) {
        let got: BTreeSet<u64> = line["rows"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let want: BTreeSet<u64> = (0..rows.len() as u64).filter(|&s| eval(e, &rows[s as usize])).collect();
        assert_eq!(got, want);
        for (row, f) in line["rows"].as_array().unwrap().iter().zip(line["fields"].as_array().unwrap()) {
            let src = &rows[row.as_u64().unwrap() as usize];
            assert_eq!(f["price"].as_f64(), src.price);
            assert_eq!(f["year"].as_i64(), src.year);
            assert_eq!(f["in_stock"].as_bool(), src.in_stock);
            assert_eq!(f["published"].as_str().map(String::from), src.published.map(format_timestamp));
            assert_eq!(f["color"].as_str(), src.color);
            let tags: Vec<&str> = f["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            assert_eq!(tags, src.tags);
        }
    }
    let r = search("price,colour");
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("colour"), "{}", String::from_utf8_lossy(&r.stderr));
}

/// A typed patch after the posting lists were built (`silica serve`'s `PATCH` of a typed
/// field, as `Search::with_index` with `Changed::columns`): the patched row is verified
/// apart from the value buckets, so a range over its new value finds it and one over its
/// old value no longer does, on every backend. Without the row marked stale the buckets
/// would still file it under its old price.
#[test]
fn typed_patches_after_the_postings_were_built_are_found() {
    use silica::backend::Changed;
    use silica::graph::Trace;
    use silica::model::columns::{Values, key_f64};
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let n = 3_000;
    let rows: Vec<Row> = random_rows(&mut rng, n).into_iter().map(|r| Row { price: Some(rng.random_range(0.0..100.0)), ..r }).collect();
    let d = 8;
    let ix = Arc::new(build(&mut rng, &rows, d, 32));
    let col = ix.columns.cols.iter().position(|c| c.name == "price").unwrap();
    let price = |ix: &Index, r: usize| match &ix.columns.cols[col].values {
        Values::F64(v) => v[r],
        other => panic!("price stored as {other:?}"),
    };
    let target = 1234usize;
    let old = price(&ix, target);
    let mut patched = (*ix).clone();
    patched.columns.cols[col].set(target, Some(key_f64(5000.0)), &ix.list_offsets);
    let patched = Arc::new(patched);
    let queries: Vec<f32> = (0..d).map(|_| rng.random_range(-1f32..1.0)).collect();
    let compile = |t: &str| Filter::compile(t, &ix.attrs.schema, &ix.bloom.params).unwrap();
    let search = |s: &dyn Search, text: &str| -> (Vec<u64>, Trace) {
        let filters = vec![compile(text)];
        let params = SearchParams { k: n, rerank: RerankMode::None, ..Default::default() };
        let mut t = Trace::default();
        let r = s.search_traced(&SearchRequest { queries: &queries, filters: &filters, params }, &mut t).expect("search");
        (r[0].rows.clone(), t)
    };
    let near_old = format!("price BETWEEN {} AND {}", old - 0.01, old + 0.01);
    let src = ix.source_rows[target];
    for b in backends() {
        let s = open(b, ix.clone()).expect("backend");
        // Build the postings: a selective range answered over its candidates.
        let (got, t) = search(&*s, &near_old);
        assert!(got.contains(&src), "{b}: the row at its old price");
        assert!(t.candidate_queries == 1, "{b}: a selective range takes a candidate route");
        let changed = Changed { columns: true, column_rows: Some(vec![target as u32].into()), ..Changed::NONE };
        let s2 = s.with_index(patched.clone(), &changed).expect("with_index");
        let (got, _) = search(&*s2, "price > 4999");
        assert_eq!(got, vec![src], "{b}: the patched row at its new price, only it");
        let (got, _) = search(&*s2, &near_old);
        assert!(!got.contains(&src), "{b}: not at its old price any more");
        let want: BTreeSet<u64> =
            (0..n).filter(|&r| r != target && (price(&ix, r) - old).abs() <= 0.01).map(|r| ix.source_rows[r]).collect();
        assert_eq!(got.into_iter().collect::<BTreeSet<u64>>(), want, "{b}: the other rows near the old price");
    }
}
