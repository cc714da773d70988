//! The filter parser on arbitrary client input: an error or a filter, never a panic, and a
//! parsed filter always compiles to SQL whose parameters carry every client value.

mod common;

use proptest::prelude::*;
use serde_json::Value;
use walcast_filter::sql::SqlBuilder;
use walcast_filter::{parse_subscription_where, parse_where};
use walcast_model::Kind;

fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("AND".to_owned()),
        Just("OR".to_owned()),
        Just("NOT".to_owned()),
        Just("id".to_owned()),
        Just("name".to_owned()),
        Just("num".to_owned()),
        Just("at".to_owned()),
        Just("name_contains".to_owned()),
        Just("id_in".to_owned()),
        Just("num_lt".to_owned()),
        Just("at_gte".to_owned()),
        Just("flag_not".to_owned()),
        Just("doc".to_owned()),
        Just("mutation_in".to_owned()),
        Just("node".to_owned()),
        Just("updatedFields_contains".to_owned()),
        "[a-z_]{1,10}",
    ]
}

fn inputs() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("1'; DROP TABLE t; --".into())),
        Just(Value::String("CREATED".into())),
        Just(Value::String("2024-01-02T03:04:05Z".into())),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_never_panics_and_sql_keeps_values_in_parameters(input in inputs()) {
        let table = common::table(
            1,
            "t",
            &[
                ("id", Kind::Int4),
                ("name", Kind::Text),
                ("num", Kind::Numeric),
                ("at", Kind::TimestampTz),
                ("flag", Kind::Bool),
                ("doc", Kind::Jsonb),
            ],
        );
        if let Ok(filter) = parse_where(&table, &input) {
            let mut b = SqlBuilder::new(&table, "t");
            let sql = b.filter(&filter);
            prop_assert!(!sql.contains("DROP TABLE"), "a value reached the SQL text: {sql}");
        }
        let _ = parse_subscription_where(&table, &input);
    }
}

/// The fuzz target's property (`scripts/fuzz.sh filter`) on its seeds and on every input kept
/// from fuzzing: no panic, and no client text in the SQL.
#[test]
fn fuzz_seeds_and_regressions_keep_client_text_out_of_sql() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let table = common::table(
        1,
        "t",
        &[
            ("id", Kind::Int4),
            ("name", Kind::Text),
            ("num", Kind::Numeric),
            ("at", Kind::TimestampTz),
            ("flag", Kind::Bool),
            ("doc", Kind::Jsonb),
            ("day", Kind::Date),
            ("u", Kind::Uuid),
        ],
    );
    let mut parsed = 0;
    for dir in ["seeds/filter", "regressions/filter"] {
        let dir = root.join(dir);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let Ok(input) = serde_json::from_slice::<Value>(&data) else {
                continue;
            };
            if let Ok(filter) = parse_where(&table, &input) {
                parsed += 1;
                let sql = SqlBuilder::new(&table, "t").filter(&filter);
                assert!(
                    !sql.contains('\'') && !sql.contains(';'),
                    "{}: client text reached the SQL: {sql}",
                    path.display()
                );
            }
            let _ = parse_subscription_where(&table, &input);
        }
    }
    assert!(parsed >= 3, "the filter seeds no longer parse ({parsed})");
}
