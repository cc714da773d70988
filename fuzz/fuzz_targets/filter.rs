//! The filter parser on arbitrary client JSON: a filter or an error, never a panic; a parsed
//! filter compiles to SQL that carries client values only as parameters.
//! `scripts/fuzz.sh filter`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walcast_filter::sql::SqlBuilder;
use walcast_filter::{parse_subscription_where, parse_where};
use walcast_model::{Column, Kind, PgType, ReplicaIdentity, Table};

fn column(name: &str, attnum: i16, kind: Kind, type_name: &str) -> Column {
    Column {
        name: name.into(),
        gql_name: name.into(),
        attnum,
        ty: PgType {
            oid: 0,
            name: type_name.into(),
            kind,
            array: false,
            enum_values: vec![],
        },
        sql_type: type_name.into(),
        not_null: false,
    }
}

fn table() -> Table {
    let cols = [
        ("id", Kind::Int4, "int4"),
        ("name", Kind::Text, "text"),
        ("num", Kind::Numeric, "numeric"),
        ("at", Kind::TimestampTz, "timestamptz"),
        ("flag", Kind::Bool, "bool"),
        ("doc", Kind::Jsonb, "jsonb"),
        ("day", Kind::Date, "date"),
        ("u", Kind::Uuid, "uuid"),
    ];
    Table {
        oid: 1,
        schema: "public".into(),
        name: "t".into(),
        gql_name: "t".into(),
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, (n, k, tn))| column(n, i as i16 + 1, *k, tn))
            .collect(),
        primary_key: vec![0],
        replica_identity: ReplicaIdentity::Full,
        foreign_keys: vec![],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let table = table();
    if let Ok(filter) = parse_where(&table, &input) {
        let mut b = SqlBuilder::new(&table, "t");
        let sql = b.filter(&filter);
        // The builder writes no string literal and one statement: a quote or a semicolon in
        // the text could only have come from the client.
        assert!(
            !sql.contains('\'') && !sql.contains(';'),
            "client text reached the SQL: {sql}"
        );
    }
    let _ = parse_subscription_where(&table, &input);
});
