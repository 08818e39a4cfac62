//! Fuzzing (proptest) of the request parsers and the filter language: arbitrary bytes,
//! arbitrary JSON shaped like real requests, and token soup from the filter grammar must
//! give `Ok` or a 4xx error naming something, never a panic.

use proptest::prelude::*;
use serde_json::{Value, json};
use silica::filter::{Filter, parse};
use silica::model::{BloomParams, FieldSchema, Metric, Schema};
use silica::serve::api::{SearchContext, parse_patch, parse_search, parse_upsert};
use silica::serve::dict::Dict;
use silica::serve::update::{Context, Op, check_item};

fn schema() -> Schema {
    let f = |name: &str, base, vals: &[&str]| FieldSchema {
        name: name.into(),
        multi: false,
        base,
        values: vals.iter().map(|s| s.to_string()).collect(),
    };
    Schema { fields: vec![f("color", 0, &["blue", "red"]), f("id", 2, &["a", "b"]), f("tags", 4, &["x", "y", "z"])], columns: Vec::new() }
}

fn ctx(dict: &Dict) -> SearchContext<'_> {
    SearchContext { dim: 3, nlist: 8, has_embeddings: true, model_tasks: Some(2), dict, bloom: BloomParams::default() }
}

/// JSON values biased towards what requests contain.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|x| json!(x)),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| json!(x)),
        prop_oneof![Just(1e39f64), Just(-1e300), Just(0.0), Just(1.0), Just(-1.0)].prop_map(|x| json!(x)),
        "[a-z =\"()!\\\\]{0,24}".prop_map(Value::String),
        Just(json!("color = \"red\" AND NOT tags IN (\"x\", \"q\")")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("vector".to_string()),
                        Just("vectors".to_string()),
                        Just("filter".to_string()),
                        Just("filters".to_string()),
                        Just("k".to_string()),
                        Just("nprobe".to_string()),
                        Just("k0".to_string()),
                        Just("rerank".to_string()),
                        Just("task_weights".to_string()),
                        Just("items".to_string()),
                        Just("id".to_string()),
                        Just("attributes".to_string()),
                        Just("features".to_string()),
                        Just("color".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn check_err(e: &silica::serve::error::ApiError) {
    assert!(e.status.is_client_error(), "{e}");
    assert!(!e.message.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn search_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let dict = Dict::new(schema());
        if let Err(e) = parse_search(&body, &ctx(&dict)) { check_err(&e) }
    }

    #[test]
    fn binary_search_parser_never_panics(body in prop::collection::vec(any::<u8>(), 0..128), query in "[a-z0-9_=&%+,\\[\\]\"]{0,40}") {
        let dict = Dict::new(schema());
        let parsed = silica::serve::binary::parse_request(&body, Some(&query), 3).and_then(|b| silica::serve::api::validate_search(b, &ctx(&dict)));
        match parsed {
            Ok(p) => {
                prop_assert_eq!(p.queries.len(), body.len() / 4);
                prop_assert!(p.queries.iter().all(|x| x.is_finite()));
            }
            Err(e) => check_err(&e),
        }
    }

    #[test]
    fn search_parser_never_panics_on_json(v in json_value(), k in 0usize..20, np in 0usize..12) {
        let dict = Dict::new(schema());
        let mut v = v;
        if let Value::Object(o) = &mut v {
            // Often give a well-formed vector so that the later checks are reached.
            o.entry("vector").or_insert(json!([0.5, -1.0, 2.0]));
            if k % 3 == 0 { o.insert("k".into(), json!(k)); }
            if np % 4 == 0 { o.insert("nprobe".into(), json!(np)); }
        }
        let body = serde_json::to_vec(&v).unwrap();
        match parse_search(&body, &ctx(&dict)) {
            Ok(p) => {
                prop_assert!(p.params.k >= 1 && p.params.k <= silica::serve::api::MAX_K);
                prop_assert_eq!(p.queries.len(), 3 * p.filters.len());
                prop_assert!(p.queries.iter().all(|x| x.is_finite()));
                prop_assert!(p.params.nprobe.is_none_or(|n| (1..=8).contains(&n)));
            }
            Err(e) => check_err(&e),
        }
    }

    #[test]
    fn update_parsers_never_panic(v in json_value(), raw in prop::collection::vec(any::<u8>(), 0..128)) {
        let dict = Dict::new(schema());
        let feats = vec!["size".to_string()];
        let c = Context { dim: 3, metric: Metric::Cosine, feature_names: &feats, dict: &dict };
        for body in [serde_json::to_vec(&json!({"items": [v.clone()]})).unwrap(), serde_json::to_vec(&v).unwrap(), raw.clone()] {
            match parse_upsert(&body) {
                Ok(batch) => {
                    for (i, op) in batch.ops.iter().enumerate() {
                        if let Op::Upsert { item } = op
                            && let Err(e) = check_item(item, &c, &format!("items[{i}]"))
                        {
                            check_err(&e)
                        }
                    }
                }
                Err(e) => check_err(&e),
            }
            if let Err(e) = parse_patch("a".into(), &body) { check_err(&e) }
        }
    }

    #[test]
    fn filter_compiler_never_panics_on_text(text in "\\PC{0,64}") {
        let s = schema();
        let _ = Filter::compile(&text, &s, &BloomParams::default());
    }

    #[test]
    fn filter_compiler_never_panics_on_token_soup(tokens in prop::collection::vec(prop_oneof![
        Just("color"), Just("tags"), Just("id"), Just("nope"), Just("="), Just("IN"), Just("AND"), Just("OR"),
        Just("NOT"), Just("("), Just(")"), Just(","), Just("\"red\""), Just("\"x\""), Just("\"\\\"\""), Just("\""), Just("\\"),
        Just("and"), Just(" "), Just("é"), Just("\u{0}"),
    ], 0..40)) {
        let text: String = tokens.join(" ");
        let s = schema();
        let params = BloomParams { bits: 64, hashes: 2, seed: 0 };
        match Filter::compile(&text, &s, &params) {
            // Whatever compiles also evaluates without panicking, exactly and over Bloom words
            // (of planes with the parameters it was compiled for).
            Ok(f) => {
                let _ = f.plan.matches(&[0, 3, 5]);
                let planes = silica::model::BloomPlanes::build(params, 130, |r| vec![r as u32 % 64]);
                for w in 0..planes.words {
                    let _ = f.plan.bloom_word(&planes, w);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = parse(&text);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let s = schema();
    let deep = format!("{}color = \"red\"{}", "(".repeat(100_000), ")".repeat(100_000));
    let r = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || Filter::compile(&deep, &s, &BloomParams::default()).is_err())
        .unwrap()
        .join();
    assert!(r.expect("must not overflow the stack"), "100k nested parentheses must be refused");
    let s = schema();
    let nots = format!("{}color = \"red\"", "NOT ".repeat(100_000));
    let r = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || Filter::compile(&nots, &s, &BloomParams::default()).map(|_| ()))
        .unwrap()
        .join();
    assert!(r.is_ok(), "100k NOTs must not overflow the stack");
}
