//! Round trip against a real Postgres: for a column of every supported type, the text form
//! Postgres sends (under walcast's session settings) must decode to the JSON the API contract
//! documents, checked against Postgres' own `to_jsonb` and, for dates and times, its epoch.

use serde_json::Value;
use walcast_model::value::{decode_text, parse_input};
use walcast_model::{Datum, Kind, PgType};
use walcast_pgcluster::PgCluster;

const DB: &str = "postgres";

/// Same settings as the replication session, plus a fixed money locale.
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; \
    SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET lc_monetary = 'C';";

struct Col {
    name: &'static str,
    sql_type: &'static str,
    /// `pg_type.typname` of the element type.
    type_name: &'static str,
    kind: Kind,
    array: bool,
    /// SQL expressions for rows 1..=3; row 4 is all NULL.
    values: [&'static str; 3],
}

const fn col(
    name: &'static str,
    sql_type: &'static str,
    type_name: &'static str,
    kind: Kind,
    array: bool,
    values: [&'static str; 3],
) -> Col {
    Col {
        name,
        sql_type,
        type_name,
        kind,
        array,
        values,
    }
}

const COLUMNS: &[Col] = &[
    col(
        "c_bool",
        "bool",
        "bool",
        Kind::Bool,
        false,
        ["true", "false", "true"],
    ),
    col(
        "c_int2",
        "int2",
        "int2",
        Kind::Int2,
        false,
        ["-32768", "32767", "0"],
    ),
    col(
        "c_int4",
        "int4",
        "int4",
        Kind::Int4,
        false,
        ["2147483647", "-2147483648", "-1"],
    ),
    col(
        "c_int8",
        "int8",
        "int8",
        Kind::Int8,
        false,
        ["9223372036854775807", "-9223372036854775808", "0"],
    ),
    col(
        "c_float4",
        "float4",
        "float4",
        Kind::Float4,
        false,
        ["'1.1'", "'NaN'", "'3.4028235e38'"],
    ),
    col(
        "c_float8",
        "float8",
        "float8",
        Kind::Float8,
        false,
        ["'0.30000000000000004'", "'-Infinity'", "'1e-300'"],
    ),
    col(
        "c_numeric",
        "numeric",
        "numeric",
        Kind::Numeric,
        false,
        [
            "'123456789012345678901234567890.123450'",
            "'NaN'",
            "'-0.000000001'",
        ],
    ),
    col(
        "c_money",
        "money",
        "money",
        Kind::Money,
        false,
        ["'1234.56'", "'-92233720368547758.08'", "'0'"],
    ),
    col(
        "c_text",
        "text",
        "text",
        Kind::Text,
        false,
        [r#"E'h\u00e9llo "w" \\ {a,b}\nline\ttab'"#, "''", "'NULL'"],
    ),
    col(
        "c_varchar",
        "varchar(20)",
        "varchar",
        Kind::Text,
        false,
        ["'v'", "' lead'", "'x'"],
    ),
    col(
        "c_bpchar",
        "char(4)",
        "bpchar",
        Kind::Text,
        false,
        ["'ab'", "''", "'abcd'"],
    ),
    col(
        "c_name",
        "name",
        "name",
        Kind::Text,
        false,
        ["'nm'", "'pg_catalog'", "'x'"],
    ),
    col(
        "c_char",
        "\"char\"",
        "char",
        Kind::Text,
        false,
        ["'c'", "'z'", "'0'"],
    ),
    col(
        "c_uuid",
        "uuid",
        "uuid",
        Kind::Uuid,
        false,
        [
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            "'00000000-0000-0000-0000-000000000000'",
            "'{ffffffff-ffff-ffff-ffff-ffffffffffff}'",
        ],
    ),
    col(
        "c_json",
        "json",
        "json",
        Kind::Json,
        false,
        [
            r#"'{"b": 1, "a": [1.50, "x"], "a": 2}'"#,
            "'null'",
            r#"'"s"'"#,
        ],
    ),
    col(
        "c_jsonb",
        "jsonb",
        "jsonb",
        Kind::Jsonb,
        false,
        [
            r#"'{"k": [1, 2.5, null, true, "s\n"], "n": 1e3}'"#,
            "'[]'",
            "'12345678901234567890'",
        ],
    ),
    col(
        "c_ts",
        "timestamp",
        "timestamp",
        Kind::Timestamp,
        false,
        [
            "'2024-01-02 03:04:05.123456'",
            "'infinity'",
            "'0044-03-15 12:00:00 BC'",
        ],
    ),
    col(
        "c_tstz",
        "timestamptz",
        "timestamptz",
        Kind::TimestampTz,
        false,
        [
            "'2024-01-02 03:04:05.123456+05:30'",
            "'0044-03-15 12:00:00+00 BC'",
            "'294276-12-31 23:59:59.999999+00'",
        ],
    ),
    col(
        "c_date",
        "date",
        "date",
        Kind::Date,
        false,
        ["'2024-02-29'", "'0001-01-01 BC'", "'-infinity'"],
    ),
    col(
        "c_time",
        "time",
        "time",
        Kind::Time,
        false,
        ["'23:59:59.999999'", "'24:00:00'", "'00:00:00'"],
    ),
    col(
        "c_timetz",
        "timetz",
        "timetz",
        Kind::TimeTz,
        false,
        ["'03:04:05.5-05:30'", "'00:00:00+14:59'", "'12:00:00+00'"],
    ),
    col(
        "c_interval",
        "interval",
        "interval",
        Kind::Interval,
        false,
        [
            "'1 year 2 months 3 days 04:05:06.5'",
            "'-1 days -00:00:01'",
            "'0'",
        ],
    ),
    col(
        "c_bytea",
        "bytea",
        "bytea",
        Kind::Bytea,
        false,
        [r"'\x00ff10'", r"'\x'", "'hello'::bytea"],
    ),
    col(
        "c_enum",
        "mood",
        "mood",
        Kind::Enum,
        false,
        ["'happy'", "'sad'", "'ok'"],
    ),
    col(
        "c_domain",
        "posint",
        "int4",
        Kind::Int4,
        false,
        ["1", "2147483647", "7"],
    ),
    col(
        "c_inet",
        "inet",
        "inet",
        Kind::Other,
        false,
        ["'192.168.0.1/24'", "'::1'", "'10.0.0.1'"],
    ),
    col(
        "c_range",
        "int4range",
        "int4range",
        Kind::Other,
        false,
        ["'[1,5)'", "'empty'", "'(,3]'"],
    ),
    col(
        "a_int4",
        "int4[]",
        "int4",
        Kind::Int4,
        true,
        ["'{{1,2},{3,NULL}}'", "'{}'", "'[0:1]={5,6}'"],
    ),
    col(
        "a_int8",
        "int8[]",
        "int8",
        Kind::Int8,
        true,
        ["'{9223372036854775807,NULL}'", "'{-1}'", "'{}'"],
    ),
    col(
        "a_text",
        "text[]",
        "text",
        Kind::Text,
        true,
        [
            r#"'{"a b","with \"quote\"","back\\slash","NULL",NULL,"",plain,"x,y","{}"}'"#,
            "'{}'",
            r"ARRAY['é', ' sp ', E'new\nline', 'null']",
        ],
    ),
    col(
        "a_numeric",
        "numeric[]",
        "numeric",
        Kind::Numeric,
        true,
        [
            "'{1.50,NaN,-0.001,Infinity}'",
            "'{{1,2},{3,4}}'",
            "'{-Infinity}'",
        ],
    ),
    col(
        "a_float8",
        "float8[]",
        "float8",
        Kind::Float8,
        true,
        ["'{NaN,Infinity,-Infinity,1.5,0.1}'", "'{}'", "'{1e300}'"],
    ),
    col(
        "a_bool",
        "bool[]",
        "bool",
        Kind::Bool,
        true,
        ["'{t,f,NULL}'", "'{}'", "'{t}'"],
    ),
    col(
        "a_tstz",
        "timestamptz[]",
        "timestamptz",
        Kind::TimestampTz,
        true,
        [
            r#"'{"2024-01-02 03:04:05+00",infinity,"0044-03-15 12:00:00+00 BC"}'"#,
            "'{}'",
            r#"'{"1999-12-31 23:59:59.5-08"}'"#,
        ],
    ),
    col(
        "a_ts",
        "timestamp[]",
        "timestamp",
        Kind::Timestamp,
        true,
        [
            r#"'{"2024-01-02 03:04:05.000001",-infinity}'"#,
            "'{}'",
            "NULL",
        ],
    ),
    col(
        "a_date",
        "date[]",
        "date",
        Kind::Date,
        true,
        ["'{2024-01-02,-infinity}'", "'{0044-03-15 BC}'", "'{}'"],
    ),
    col(
        "a_time",
        "time[]",
        "time",
        Kind::Time,
        true,
        ["'{03:04:05.25,24:00:00}'", "'{}'", "NULL"],
    ),
    col(
        "a_timetz",
        "timetz[]",
        "timetz",
        Kind::TimeTz,
        true,
        ["'{03:04:05+00,23:00:00-01:30}'", "'{}'", "NULL"],
    ),
    col(
        "a_interval",
        "interval[]",
        "interval",
        Kind::Interval,
        true,
        [r#"'{P1D,"1 hour"}'"#, "'{}'", "NULL"],
    ),
    col(
        "a_bytea",
        "bytea[]",
        "bytea",
        Kind::Bytea,
        true,
        [r#"'{"\\x0102",NULL}'"#, "'{}'", r#"'{"\\x"}'"#],
    ),
    col(
        "a_jsonb",
        "jsonb[]",
        "jsonb",
        Kind::Jsonb,
        true,
        [
            r#"ARRAY['{"a": 1}'::jsonb, '[1, 2]', 'null', '"q\"uote"']"#,
            "'{}'",
            "NULL",
        ],
    ),
    col(
        "a_uuid",
        "uuid[]",
        "uuid",
        Kind::Uuid,
        true,
        [
            "'{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,NULL}'",
            "'{}'",
            "NULL",
        ],
    ),
    col(
        "a_enum",
        "mood[]",
        "mood",
        Kind::Enum,
        true,
        ["'{sad,happy}'", "'{}'", "'{ok}'"],
    ),
    col(
        "a_box",
        "box[]",
        "box",
        Kind::Other,
        true,
        ["'{(1,1),(0,0);(3,3),(2,2)}'", "'{}'", "NULL"],
    ),
    col(
        "a_money",
        "money[]",
        "money",
        Kind::Money,
        true,
        ["'{1.00,-2.50}'", "'{\"$1,000,000.00\"}'", "'{}'"],
    ),
];

fn pg_type(c: &Col) -> PgType {
    PgType {
        oid: 0,
        name: if c.array {
            format!("_{}", c.type_name)
        } else {
            c.type_name.to_owned()
        },
        kind: c.kind,
        array: c.array,
        enum_values: if c.kind == Kind::Enum {
            vec!["sad".into(), "ok".into(), "happy".into()]
        } else {
            Vec::new()
        },
    }
}

fn scalar_type(kind: Kind) -> PgType {
    PgType {
        oid: 0,
        name: String::new(),
        kind,
        array: false,
        enum_values: Vec::new(),
    }
}

/// Postgres' JSON of a column: money goes through numeric, since its JSON is the locale text
/// and the contract's form is the decimal.
fn pg_json_expr(c: &Col) -> String {
    match (c.kind, c.array) {
        (Kind::Money, false) => format!("{}::numeric", c.name),
        (Kind::Money, true) => format!("{}::numeric[]", c.name),
        _ => c.name.to_owned(),
    }
}

/// An independent view of temporal scalars: Postgres' epoch seconds.
fn extra_expr(c: &Col) -> String {
    match (c.kind, c.array) {
        (Kind::Timestamp | Kind::TimestampTz | Kind::Date | Kind::Time, false) => {
            format!("extract(epoch from {})::text", c.name)
        }
        _ => "NULL::text".to_owned(),
    }
}

fn setup(cluster: &PgCluster) {
    let mut sql = String::from(SESSION);
    sql.push_str("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');");
    sql.push_str("CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);");
    let defs: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, c.sql_type))
        .collect();
    sql.push_str(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, {});",
        defs.join(", ")
    ));
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    for row in 0..3 {
        let values: Vec<&str> = COLUMNS.iter().map(|c| c.values[row]).collect();
        sql.push_str(&format!(
            "INSERT INTO t (id, {}) VALUES ({}, {});",
            names.join(", "),
            row + 1,
            values.join(", ")
        ));
    }
    sql.push_str("INSERT INTO t (id) VALUES (4);");
    cluster.psql(DB, &sql).expect("create and fill the table");
}

/// One line per (column, row): `[name, id, text form, to_jsonb text, extra]`. The text form
/// comes from the type's output function, as pgoutput sends it (`format('%s')` calls it, while
/// `::text` is a different cast for some types: bool gives `true`, bpchar drops padding).
fn fetch(cluster: &PgCluster) -> Vec<Vec<Value>> {
    let selects: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            format!(
                "SELECT json_build_array('{name}', id, \
                 CASE WHEN {name} IS NULL THEN NULL ELSE format('%s', {name}) END, \
                 to_jsonb({json})::text, {extra}) FROM t",
                name = c.name,
                json = pg_json_expr(c),
                extra = extra_expr(c),
            )
        })
        .collect();
    let sql = format!("{SESSION} {};", selects.join(" UNION ALL "));
    let out = cluster.psql(DB, &sql).expect("select text and JSON forms");
    out.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Array(items)) => items,
            other => panic!("unexpected psql line {line:?}: {other:?}"),
        })
        .collect()
}

/// Checks our JSON against Postgres' JSON under the contract's mapping.
fn check_json(kind: Kind, ours: &Value, pg: &Value) -> Result<(), String> {
    let mismatch = || Err(format!("ours {ours} vs Postgres {pg}"));
    match (ours, pg) {
        (Value::Null, Value::Null) => Ok(()),
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return mismatch();
            }
            a.iter()
                .zip(b)
                .try_for_each(|(x, y)| check_json(kind, x, y))
        }
        _ => {
            let ok = match kind {
                // Postgres prints these as numbers; the contract wants strings of the same value.
                Kind::Int8 => pg
                    .as_i64()
                    .is_some_and(|n| ours == &Value::String(n.to_string())),
                Kind::Numeric | Kind::Money => match (ours, pg) {
                    (Value::String(s), Value::Number(n)) => {
                        s.parse::<f64>().ok() == n.as_f64() && !s.contains(['e', 'E'])
                    }
                    _ => ours == pg,
                },
                Kind::Float4 | Kind::Float8 => match (ours, pg) {
                    (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                    _ => ours == pg,
                },
                Kind::Json | Kind::Jsonb => {
                    Datum::json(ours.clone()).sql_eq(&Datum::json(pg.clone()))
                }
                Kind::Timestamp | Kind::TimestampTz | Kind::Date | Kind::Time | Kind::TimeTz => {
                    same_temporal(kind, ours, pg)?
                }
                Kind::Bytea => {
                    let a = parse_input(kind, ours).map_err(|e| e.to_string())?;
                    let b = parse_input(kind, pg).map_err(|e| e.to_string())?;
                    matches!((&a, &b), (Datum::Bytes(_), Datum::Bytes(_))) && a.sql_eq(&b)
                }
                _ => ours == pg,
            };
            if ok {
                Ok(())
            } else {
                mismatch()
            }
        }
    }
}

/// Postgres renders timestamps as `2024-01-02T03:04:05.123456+00:00` (with ` BC` for early
/// years); ours use `Z` and signed years. Both must denote the same value, and ours must be in
/// the documented shape.
fn same_temporal(kind: Kind, ours: &Value, pg: &Value) -> Result<bool, String> {
    let (Some(a), Some(b)) = (ours.as_str(), pg.as_str()) else {
        return Ok(false);
    };
    let finite = !a.ends_with("infinity");
    let shape_ok = match kind {
        Kind::TimestampTz => !finite || (a.ends_with('Z') && a.contains('T')),
        Kind::Timestamp => !finite || (a.contains('T') && !a.contains(['Z', '+'])),
        Kind::Date => !a.contains(['T', ' ']),
        _ => !a.contains(' '),
    };
    let ty = scalar_type(kind);
    let x = decode_text(&ty, a).map_err(|e| format!("ours {a:?}: {e}"))?;
    let y = decode_text(&ty, b).map_err(|e| format!("Postgres {b:?}: {e}"))?;
    Ok(shape_ok && x.sql_eq(&y))
}

/// Our temporal datum as epoch seconds, compared with `extract(epoch from ...)`.
fn check_epoch(datum: &Datum, pg_epoch: &str) -> Result<(), String> {
    let micros = match datum {
        Datum::TimestampTz(us) | Datum::Timestamp(us) | Datum::Time(us) => *us,
        Datum::Date(days) => i64::from(*days) * 86_400_000_000,
        Datum::TemporalText(t) if t == "infinity" || t == "-infinity" => {
            let expected = if t == "infinity" {
                "Infinity"
            } else {
                "-Infinity"
            };
            return if pg_epoch == expected {
                Ok(())
            } else {
                Err(format!("{t} vs epoch {pg_epoch}"))
            };
        }
        // Beyond the datum's range; checked through JSON only.
        Datum::TemporalText(_) => return Ok(()),
        other => return Err(format!("unexpected datum {other:?}")),
    };
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let ours = Datum::Numeric(format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000));
    if ours.sql_eq(&Datum::Numeric(pg_epoch.to_owned())) {
        Ok(())
    } else {
        Err(format!("{ours:?} vs epoch {pg_epoch}"))
    }
}

#[test]
fn decoded_text_matches_postgres_json() {
    let cluster = PgCluster::start().expect("start Postgres");
    setup(&cluster);
    let rows = fetch(&cluster);
    assert_eq!(rows.len(), COLUMNS.len() * 4, "one line per column and row");
    // The text forms are the ones pgoutput sends under walcast's session settings.
    let text_of = |name: &str, id: i64| {
        rows.iter()
            .find(|r| {
                r.first().and_then(Value::as_str) == Some(name)
                    && r.get(1).and_then(Value::as_i64) == Some(id)
            })
            .and_then(|r| r.get(2).cloned())
    };
    assert_eq!(text_of("c_bool", 1), Some(Value::from("t")));
    assert_eq!(
        text_of("c_tstz", 1),
        Some(Value::from("2024-01-01 21:34:05.123456+00"))
    );
    assert_eq!(text_of("c_interval", 2), Some(Value::from("P-1DT-1S")));
    assert_eq!(text_of("c_money", 1), Some(Value::from("$1,234.56")));
    assert_eq!(text_of("c_bpchar", 1), Some(Value::from("ab  ")));

    let mut failures = Vec::new();
    for row in &rows {
        let [name, id, text, pg_json, extra] = row.as_slice() else {
            panic!("unexpected row {row:?}");
        };
        let name = name.as_str().unwrap_or_default();
        let col = COLUMNS
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("unknown column {name}"));
        let context = format!("{name} row {id} text {text}");
        let datum = match text.as_str() {
            None => Datum::Null,
            Some(text) => match decode_text(&pg_type(col), text) {
                Ok(datum) => datum,
                Err(e) => {
                    failures.push(format!("{context}: {e}"));
                    continue;
                }
            },
        };
        let ours = datum.to_json(col.kind);
        let pg: Value = match pg_json.as_str() {
            None => Value::Null,
            Some(raw) => serde_json::from_str(raw).expect("Postgres JSON parses"),
        };
        if let Err(e) = check_json(col.kind, &ours, &pg) {
            failures.push(format!("{context}: {e}"));
        }
        // Exact digits for scalar numerics, which serde_json would round to f64 above.
        if matches!(col.kind, Kind::Numeric | Kind::Money) && !col.array {
            if let (Some(raw), Value::String(s)) = (pg_json.as_str(), &ours) {
                if raw.trim_matches('"') != s {
                    failures.push(format!("{context}: ours {s} vs Postgres {raw}"));
                }
            }
        }
        if let Some(epoch) = extra.as_str() {
            if let Err(e) = check_epoch(&datum, epoch) {
                failures.push(format!("{context}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}
