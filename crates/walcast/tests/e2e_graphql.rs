//! The GraphQL surface end to end: the type table of API.md section 4 (events and queries
//! against what Postgres itself prints), introspection and the tooling built on it (graphql-js,
//! GraphiQL in a headless Chromium), Apollo Client and graphql-ws' `iterate()`, live schema
//! changes, composite keys and odd identifiers, and the Directus-named mutations.
//!
//! Needs Postgres server binaries, `npm ci` in tests/js, and for the GraphiQL tests Debian's
//! `chromium` package (`/usr/bin/chromium`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const TOKEN: &str = "graphql-admin-token";

/// A cluster with `schema_sql` loaded and a handshake-auth walcast that knows `TOKEN` as admin.
/// Field order matters for drop: the server goes before the database it reads.
type Setup = Server;

fn setup(schema_sql: &str, extra_env: &[(&str, &str)]) -> Setup {
    serve(DB, schema_sql, TOKEN, extra_env)
}

impl Setup {
    fn sql(&self, statement: &str) -> String {
        sql(&self.pg, DB, statement)
    }

    /// A `client.mjs` subscriber that has connected.
    fn client(&self, protocol: &str, query: &str, extra: &[&str]) -> JsClient {
        let url = self.walcast.ws_url();
        let mut args = vec![
            "--protocol",
            protocol,
            "--url",
            &url,
            "--token",
            TOKEN,
            "--query",
            query,
        ];
        args.extend_from_slice(extra);
        let mut c = JsClient::spawn(&args);
        c.wait_kind("connected", CONNECT_TIMEOUT);
        c
    }

    /// A GraphQL request over HTTP as admin; panics unless it answers 200 without errors.
    fn query(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.walcast.graphql(query, variables, Some(TOKEN));
        assert_eq!(status, 200, "{query}\n{body}");
        assert!(body["errors"].is_null(), "{query}\n{body}");
        body["data"].clone()
    }

    /// Waits until the schema served to admin has a type named `name`.
    fn wait_type(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body) = self.walcast.graphql(
                "query($n: String!) { __type(name: $n) { name } }",
                json!({ "n": name }),
                Some(TOKEN),
            );
            if body["data"]["__type"]["name"] == name {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "type {name} not in the schema after {timeout:?}: {body}\n{}",
                self.walcast.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The next event's payload; protocol chatter such as `subscription_success` is skipped, but
/// an `error` line fails the test.
fn next_payload(c: &mut JsClient) -> Value {
    let (line, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
    assert!(
        skipped
            .iter()
            .all(|l| l["kind"] != "next" && l["kind"] != "error"),
        "unexpected lines before the event: {}",
        show(&skipped)
    );
    line["payload"].clone()
}

/// `next_payload`, which must have no GraphQL errors; its `data`.
fn next_data(c: &mut JsClient) -> Value {
    let p = next_payload(c);
    assert!(
        p["errors"].is_null() || p["errors"] == json!([]),
        "event with errors: {p}"
    );
    p["data"].clone()
}

// ---------------------------------------------------------------------------------------------
// A graphql-transport-ws socket spoken from Rust: the event JSON exactly as walcast wrote it,
// without a JavaScript parse in between (which would, say, turn -0 into 0).

fn raw_subscribe(w: &Walcast, query: &str) -> RawWs {
    let mut ws = RawWs::connect(&w.ws_url(), "graphql-transport-ws");
    ws.send_json(&json!({"type": "connection_init", "payload": {"access_token": TOKEN}}));
    let ack = ws.recv_json(CONNECT_TIMEOUT);
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.send_json(&json!({"id": "1", "type": "subscribe", "payload": {"query": query}}));
    ws
}

/// The payload of the next `next` message (pings answered on the way).
fn raw_next(ws: &mut RawWs) -> Value {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let msg = ws.recv_json(deadline.saturating_duration_since(Instant::now()));
        match msg["type"].as_str() {
            Some("next") => return msg["payload"].clone(),
            Some("ping") => ws.send_json(&json!({"type": "pong"})),
            Some("pong") => {}
            _ => panic!("expected a next message, got {msg}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Types: every row of API.md section 4, event and query against `row_to_json`

/// How an event value relates to what `row_to_json` prints for the same column (API.md
/// section 4); applied element by element inside arrays.
#[derive(Clone, Copy, Debug)]
enum Cmp {
    /// The same JSON value.
    Same,
    /// A single-column primary key: the ID string of the number.
    Id,
    /// int8 / numeric: a string holding exactly the digits Postgres printed.
    NumText,
    /// money: a string with the plain decimal (`$1,234.50` is `"1234.50"`).
    Money,
    /// float: the same number, or the same string for NaN / Infinity / -Infinity.
    Float,
    /// timestamptz: RFC 3339 text naming the same instant (the offsets may differ).
    Instant,
    /// timestamp / date: the same local date and time (six-digit fractions, expanded years).
    Local,
    /// time / timetz: the same time of day and the same offset.
    TimeOfDay,
    /// bytea: base64 of the bytes Postgres printed as `\x..`.
    Bytes,
}

/// One column per type of API.md section 4: name, SQL type, the literal written, comparison.
/// citext is left out: the extension may be missing.
const COLUMNS: &[(&str, &str, &str, Cmp)] = &[
    ("c_int2", "int2", "-32768", Cmp::Same),
    ("c_int4", "int4", "2147483647", Cmp::Same),
    ("c_int8", "int8", "9223372036854775807", Cmp::NumText),
    ("c_int8_neg", "int8", "-9007199254740993", Cmp::NumText),
    (
        "c_numeric",
        "numeric",
        "12345678901234567890.123456789012",
        Cmp::NumText,
    ),
    ("c_numeric_scale", "numeric(10,3)", "1.5", Cmp::NumText),
    ("c_numeric_nan", "numeric", "'NaN'", Cmp::Same),
    ("c_money", "money", "'1234567.89'", Cmp::Money),
    ("c_money_neg", "money", "'-5'", Cmp::Money),
    ("c_float4", "float4", "1.1", Cmp::Float),
    ("c_float4_max", "float4", "'3.4028235e38'", Cmp::Float),
    ("c_float8", "float8", "0.1", Cmp::Float),
    (
        "c_float8_max",
        "float8",
        "'1.7976931348623157e308'",
        Cmp::Float,
    ),
    ("c_float8_negzero", "float8", "'-0'", Cmp::Float),
    ("c_nan", "float8", "'NaN'", Cmp::Float),
    ("c_inf", "float4", "'Infinity'", Cmp::Float),
    ("c_ninf", "float8", "'-Infinity'", Cmp::Float),
    ("c_bool", "boolean", "true", Cmp::Same),
    ("c_bool_f", "boolean", "false", Cmp::Same),
    (
        "c_text",
        "text",
        r#"E'tab\t"quote" \\ é 😀\nsecond line'"#,
        Cmp::Same,
    ),
    ("c_text_empty", "text", "''", Cmp::Same),
    ("c_varchar", "varchar(20)", "'varchar'", Cmp::Same),
    ("c_char", "char(5)", "'ab'", Cmp::Same),
    ("c_name", "name", "'pg_name'", Cmp::Same),
    (
        "c_uuid",
        "uuid",
        "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
        Cmp::Same,
    ),
    (
        "c_json",
        "json",
        r#"'{"a": [1, 2.5, null, "x"], "b": {"c": "d"}, "e": true}'"#,
        Cmp::Same,
    ),
    (
        "c_jsonb",
        "jsonb",
        r#"'{"z": 1, "a": [true, false], "u": "\u00e9"}'"#,
        Cmp::Same,
    ),
    ("c_jsonb_scalar", "jsonb", r#"'"just a string"'"#, Cmp::Same),
    (
        "c_tstz",
        "timestamptz",
        "'2024-02-29 23:59:58.123456-08'",
        Cmp::Instant,
    ),
    (
        "c_tstz_bc",
        "timestamptz",
        "'0044-03-15 12:00:00+00 BC'",
        Cmp::Instant,
    ),
    ("c_tstz_inf", "timestamptz", "'infinity'", Cmp::Same),
    ("c_ts", "timestamp", "'2024-01-02 03:04:05.5'", Cmp::Local),
    ("c_ts_ninf", "timestamp", "'-infinity'", Cmp::Same),
    ("c_date", "date", "'2024-12-31'", Cmp::Local),
    ("c_date_far", "date", "'10000-01-01'", Cmp::Local),
    ("c_time", "time", "'12:34:56.789'", Cmp::TimeOfDay),
    ("c_timetz", "timetz", "'12:34:56+05:30'", Cmp::TimeOfDay),
    (
        "c_interval",
        "interval",
        "'1 year 2 months 3 days 04:05:06.5'",
        Cmp::Same,
    ),
    (
        "c_interval_neg",
        "interval",
        "'-1 day -00:00:01'",
        Cmp::Same,
    ),
    ("c_bytea", "bytea", r"'\x0001ff7f'", Cmp::Bytes),
    ("c_bytea_empty", "bytea", "''", Cmp::Bytes),
    ("c_int4_arr", "int4[]", "ARRAY[1, NULL, 3]", Cmp::Same),
    (
        "c_text_arr",
        "text[]",
        r#"ARRAY['a', NULL, 'with,comma', 'quo"te', 'NULL', '{}', '']"#,
        Cmp::Same,
    ),
    ("c_int4_2d", "int4[][]", "'{{1,2},{3,NULL}}'", Cmp::Same),
    (
        "c_int8_arr",
        "int8[]",
        "'{1,NULL,9007199254740993}'",
        Cmp::NumText,
    ),
    (
        "c_tstz_arr",
        "timestamptz[]",
        "ARRAY['2024-01-01 00:00:00+00'::timestamptz, NULL]",
        Cmp::Instant,
    ),
    (
        "c_bytea_arr",
        "bytea[]",
        r"ARRAY['\x00ff'::bytea]",
        Cmp::Bytes,
    ),
    ("c_mood", "mood", "'so-so'", Cmp::Same),
    ("c_color", "color", "'green'", Cmp::Same),
    ("c_mood_arr", "mood[]", "'{happy,NULL,sad}'", Cmp::Same),
    ("c_posint", "posint", "42", Cmp::Same),
    ("c_inet", "inet", "'192.168.0.1/24'", Cmp::Same),
    ("c_point", "point", "'(1.5,-2)'", Cmp::Same),
    ("c_bits", "varbit", "B'1010'", Cmp::Same),
    ("c_null_int8", "int8", "NULL", Cmp::NumText),
    ("c_null_text", "text", "NULL", Cmp::Same),
    ("c_null_tstz", "timestamptz", "NULL", Cmp::Instant),
];

fn types_schema() -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(name, ty, _, _)| format!("{name} {ty}"))
        .collect();
    format!(
        "CREATE TYPE mood AS ENUM ('happy', 'so-so', 'sad');
         CREATE TYPE color AS ENUM ('red', 'green');
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
         CREATE TABLE alltypes (id serial PRIMARY KEY, {});
         ALTER TABLE alltypes REPLICA IDENTITY FULL;",
        cols.join(", ")
    )
}

fn types_insert() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let values: Vec<&str> = COLUMNS.iter().map(|c| c.2).collect();
    format!(
        "INSERT INTO alltypes ({}) VALUES ({}) RETURNING id",
        names.join(", "),
        values.join(", ")
    )
}

fn types_selection() -> String {
    let mut names = vec!["id"];
    names.extend(COLUMNS.iter().map(|c| c.0));
    names.join(" ")
}

/// `row_to_json` of row `id`, per column: (json_typeof, the value's JSON text as Postgres
/// printed it). Read in a session whose zone is not UTC, so instants are compared, not texts;
/// intervals in ISO 8601 as the contract has them.
fn row_to_json_texts(s: &Setup, id: &str) -> Vec<(String, String, String)> {
    let out = s.sql(&format!(
        "SET TimeZone = 'Asia/Kolkata'; SET IntervalStyle = iso_8601;
         SELECT json_agg(json_build_array(key, json_typeof(value), value::text))
         FROM json_each((SELECT row_to_json(t) FROM alltypes t WHERE id = {id}));"
    ));
    let rows: Vec<(String, String, String)> =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    rows
}

/// Microseconds of a `[+-]YYYY[YY]-MM-DD[( |T)HH:MM:SS[.f]][Z|±HH[:MM[:SS]]][ BC]` text: the
/// local value and the offset in seconds, if any.
fn parse_datetime(text: &str) -> Option<(i64, Option<i64>)> {
    let (t, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let (sign, t) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => (1, t),
    };
    let year_len = t.find('-')?;
    let mut year: i64 = t[..year_len].parse().ok()?;
    year *= sign;
    if bc {
        year = 1 - year;
    }
    let rest = &t[year_len + 1..];
    let month: i64 = rest.get(..2)?.parse().ok()?;
    let day: i64 = rest.get(3..5)?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    let rest = &rest[5..];
    let (time, offset) = if rest.is_empty() {
        (0, None)
    } else {
        parse_time(rest.get(1..)?)?
    };
    Some((days * 86_400_000_000 + time, offset))
}

/// `HH:MM:SS[.f][Z|±HH[:MM[:SS]]]`: microseconds since midnight and the offset in seconds.
fn parse_time(text: &str) -> Option<(i64, Option<i64>)> {
    let zone_at = text[8..]
        .find(['Z', '+', '-'])
        .map(|i| i + 8)
        .unwrap_or(text.len());
    let (clock, zone) = text.split_at(zone_at);
    let h: i64 = clock.get(..2)?.parse().ok()?;
    let m: i64 = clock.get(3..5)?.parse().ok()?;
    let s: i64 = clock.get(6..8)?.parse().ok()?;
    let mut micros = ((h * 60 + m) * 60 + s) * 1_000_000;
    if let Some(frac) = clock.get(8..).filter(|f| !f.is_empty()) {
        let digits = frac.strip_prefix('.')?;
        let padded = format!("{digits:0<6}");
        micros += padded.get(..6)?.parse::<i64>().ok()?;
    }
    let offset = match zone {
        "" => None,
        "Z" => Some(0),
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let mut secs = 0;
            for (i, part) in z[1..].split(':').enumerate() {
                let n: i64 = part.parse().ok()?;
                secs += n * [3600, 60, 1].get(i)?;
            }
            Some(sign * secs)
        }
    };
    Some((micros, offset))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year numbering).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares one event value with `row_to_json`'s for the same column; `None` when they agree.
/// `raw` is the JSON text Postgres printed (numbers kept as their digits).
fn compare(cmp: Cmp, event: &Value, raw: &str) -> Option<String> {
    let Ok(expected) = serde_json::from_str::<Value>(raw) else {
        return Some(format!("row_to_json printed {raw:?}, which is not JSON"));
    };
    let differ = || Some(format!("event {event} vs row_to_json {raw}"));
    if expected.is_null() {
        return (!event.is_null()).then(|| format!("event {event} for SQL NULL"));
    }
    if let (Value::Array(items), Value::Array(raws)) = (event, &expected) {
        if items.len() != raws.len() {
            return differ();
        }
        // Numbers inside arrays keep their digits only in `raw`: split a flat array's text.
        let texts: Vec<String> = if matches!(cmp, Cmp::NumText) {
            raw.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|t| t.trim().to_owned())
                .collect()
        } else {
            raws.iter().map(Value::to_string).collect()
        };
        return items
            .iter()
            .zip(&texts)
            .find_map(|(e, t)| compare(cmp, e, t))
            .map(|why| format!("{why} (in {event} vs {raw})"));
    }
    let ok = match cmp {
        Cmp::Same => *event == expected,
        Cmp::Id => event.as_str() == Some(raw),
        Cmp::NumText => match &expected {
            Value::Number(_) => event.as_str() == Some(raw.trim()),
            _ => *event == expected,
        },
        Cmp::Money => {
            let plain: String = expected
                .as_str()
                .unwrap_or_default()
                .chars()
                .filter(|c| *c != '$' && *c != ',')
                .collect();
            event.as_str() == Some(plain.as_str())
        }
        Cmp::Float => match (&expected, event) {
            (Value::String(_), _) => *event == expected,
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64()?, y.as_f64()?);
                x == y && x.is_sign_negative() == y.is_sign_negative()
            }
            _ => false,
        },
        Cmp::Instant => {
            let (Some(e), Some(x)) = (event.as_str(), expected.as_str()) else {
                return differ();
            };
            match (parse_datetime(e), parse_datetime(x)) {
                (Some((el, Some(eo))), Some((xl, Some(xo)))) => {
                    // The contract's form: UTC with a Z.
                    el - eo * 1_000_000 == xl - xo * 1_000_000 && e.ends_with('Z')
                }
                _ => false,
            }
        }
        Cmp::Local => {
            let (Some(e), Some(x)) = (event.as_str(), expected.as_str()) else {
                return differ();
            };
            matches!((parse_datetime(e), parse_datetime(x)), (Some((el, None)), Some((xl, None))) if el == xl)
        }
        Cmp::TimeOfDay => {
            let (Some(e), Some(x)) = (event.as_str(), expected.as_str()) else {
                return differ();
            };
            let parsed = parse_time(e);
            parsed.is_some() && parsed == parse_time(x)
        }
        Cmp::Bytes => {
            let (Some(e), Some(x)) = (event.as_str(), expected.as_str()) else {
                return differ();
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(e).ok();
            decoded.is_some() && decoded == hex_bytes(x)
        }
    };
    if ok {
        None
    } else {
        differ()
    }
}

/// The comparison above, on values that must and must not agree (no database needed).
#[test]
fn the_type_comparison_tells_agreement_from_difference() {
    let agree = [
        (
            Cmp::NumText,
            json!("9223372036854775807"),
            "9223372036854775807",
        ),
        (Cmp::NumText, json!("1.500"), "1.500"),
        (Cmp::Money, json!("-1234.50"), r#""-$1,234.50""#),
        (Cmp::Float, json!("NaN"), r#""NaN""#),
        (Cmp::Float, json!(-0.0), "-0"),
        (
            Cmp::Instant,
            json!("2024-03-01T07:59:58.123456Z"),
            r#""2024-03-01T13:29:58.123456+05:30""#,
        ),
        (
            Cmp::Instant,
            json!("-000043-03-15T12:00:00Z"),
            r#""0044-03-15T12:00:00+00:00 BC""#,
        ),
        (Cmp::Local, json!("+010000-01-01"), r#""10000-01-01""#),
        (
            Cmp::Local,
            json!("2024-01-02T03:04:05.500000"),
            r#""2024-01-02T03:04:05.5""#,
        ),
        (
            Cmp::TimeOfDay,
            json!("12:34:56.789000"),
            r#""12:34:56.789""#,
        ),
        (
            Cmp::TimeOfDay,
            json!("12:34:56+05:30"),
            r#""12:34:56+05:30""#,
        ),
        (Cmp::Bytes, json!("AAH/fw=="), r#""\\x0001ff7f""#),
        (
            Cmp::NumText,
            json!(["1", null, "9007199254740993"]),
            "[1,null,9007199254740993]",
        ),
        (Cmp::Same, Value::Null, "null"),
    ];
    for (cmp, event, raw) in &agree {
        assert_eq!(compare(*cmp, event, raw), None, "{cmp:?} {event} {raw}");
    }
    let differ = [
        (
            Cmp::NumText,
            json!("9223372036854775806"),
            "9223372036854775807",
        ),
        (
            Cmp::NumText,
            json!(9223372036854775807_i64),
            "9223372036854775807",
        ),
        (Cmp::Money, json!("$1,234.50"), r#""$1,234.50""#),
        (Cmp::Float, json!(0.0), "-0"),
        (Cmp::Float, json!(null), r#""NaN""#),
        (
            Cmp::Instant,
            json!("2024-03-01T07:59:58.123457Z"),
            r#""2024-03-01T13:29:58.123456+05:30""#,
        ),
        (
            Cmp::Instant,
            json!("2024-03-01T13:29:58.123456+05:30"),
            r#""2024-03-01T13:29:58.123456+05:30""#,
        ),
        (
            Cmp::Local,
            json!("2024-01-02T03:04:05Z"),
            r#""2024-01-02T03:04:05""#,
        ),
        (Cmp::TimeOfDay, json!("12:34:56"), r#""12:34:56+05:30""#),
        (Cmp::Bytes, json!("AAH/fg=="), r#""\\x0001ff7f""#),
        (
            Cmp::NumText,
            json!(["1", null, "9007199254740992"]),
            "[1,null,9007199254740993]",
        ),
        (Cmp::Same, json!("x"), "null"),
        (Cmp::Same, json!("ab"), r#""ab   ""#),
    ];
    for (cmp, event, raw) in &differ {
        assert!(compare(*cmp, event, raw).is_some(), "{cmp:?} {event} {raw}");
    }
}

#[test]
fn every_type_round_trips_through_events_and_queries() {
    let s = setup(&types_schema(), &[]);
    let selection = types_selection();
    let mut ws = raw_subscribe(
        &s.walcast,
        &format!("subscription {{ alltypes_mutated {{ key event data {{ {selection} }} }} }}"),
    );
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    let id = s.sql(&types_insert());

    let payload = raw_next(&mut ws);
    assert!(payload["errors"].is_null(), "{payload}");
    let event = &payload["data"]["alltypes_mutated"];
    assert_eq!(event["key"], id.as_str(), "{event}");
    assert_eq!(event["event"], "create", "{event}");
    let data = &event["data"];

    let printed = row_to_json_texts(&s, &id);
    assert_eq!(printed.len(), COLUMNS.len() + 1, "{printed:?}");
    let mut mismatches = Vec::new();
    for (name, typeof_, raw) in &printed {
        let (cmp, ty) = if name == "id" {
            (Cmp::Id, "serial")
        } else {
            let c = COLUMNS
                .iter()
                .find(|c| c.0 == name)
                .unwrap_or_else(|| panic!("row_to_json printed an unknown column {name}"));
            (c.3, c.1)
        };
        if let Some(why) = compare(cmp, &data[name.as_str()], raw) {
            mismatches.push(format!("{name} ({ty}, json {typeof_}): {why}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "event values that disagree with row_to_json:\n  {}\nevent: {event}",
        mismatches.join("\n  ")
    );

    // The same row read with a query: the same JSON as the event, value for value. char(n) is
    // left to `query_keeps_char_padding_like_events`.
    let read = s.query(
        &format!("query($id: ID) {{ alltypes(where: {{id: $id}}) {{ {selection} }} }}"),
        json!({ "id": id }),
    );
    let row = &read["alltypes"][0];
    let mut differ = Vec::new();
    for name in std::iter::once("id").chain(COLUMNS.iter().map(|c| c.0)) {
        if name == "c_char" {
            continue;
        }
        if row[name] != data[name] {
            differ.push(format!(
                "{name}: query {} vs event {}",
                row[name], data[name]
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "query values that differ from the event's:\n  {}",
        differ.join("\n  ")
    );
    assert_eq!(read["alltypes"].as_array().map(Vec::len), Some(1), "{read}");
}

#[test]
fn query_keeps_char_padding_like_events() {
    let s = setup(
        "CREATE TABLE codes (id int PRIMARY KEY, code char(5), codes char(3)[]);",
        &[],
    );
    let mut ws = raw_subscribe(
        &s.walcast,
        "subscription { codes_mutated { data { code codes } } }",
    );
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    s.sql("INSERT INTO codes VALUES (1, 'ab', '{a,NULL,bcd}')");
    let event = raw_next(&mut ws)["data"]["codes_mutated"]["data"].clone();
    // What Postgres itself prints for the row.
    let printed: Value = serde_json::from_str(
        &s.sql("SELECT json_build_object('code', code, 'codes', codes) FROM codes WHERE id = 1"),
    )
    .expect("JSON");
    assert_eq!(event, printed, "event");
    let read = s.query("{ codes(where: {id: 1}) { code codes } }", json!({}));
    assert_eq!(read["codes"][0], printed, "query");
}

// ---------------------------------------------------------------------------------------------
// 2. Introspection and tooling

/// graphql-js' `getIntrospectionQuery()`, as GraphiQL sends it.
const INTROSPECTION_QUERY: &str = "
    query IntrospectionQuery {
      __schema {
        queryType { name kind }
        mutationType { name kind }
        subscriptionType { name kind }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) {
        name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
      }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { name kind ofType { name kind ofType { name kind ofType { name kind
        ofType { name kind ofType { name kind ofType { name kind ofType { name kind
          ofType { name kind } } } } } } } } }
    }";

/// The demo schema plus a table with a bigint and a jsonb column, so every scalar the checks
/// name is in use.
fn tooling_schema() -> String {
    format!(
        "{}\nCREATE TABLE counters (id serial PRIMARY KEY, hits bigint, meta jsonb);",
        demo_sql()
    )
}

#[test]
fn introspection_typename_fragments_aliases_operation_names_and_variables() {
    let s = setup(&tooling_schema(), &[("WALCAST_MUTATIONS", "true")]);

    // The standard introspection query over HTTP, with its operation name.
    let (status, body) = s.walcast.post_json(
        s.walcast.graphql_path(),
        &json!({"query": INTROSPECTION_QUERY, "operationName": "IntrospectionQuery"}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{}", body["errors"]);
    let schema = &body["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["subscriptionType"]["name"], "Subscription");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    let types = schema["types"].as_array().expect("types");
    let kind_of = |name: &str| {
        types
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["kind"].as_str().unwrap_or_default().to_owned())
    };
    for (name, kind) in [
        ("messages_mutated", "OBJECT"),
        ("messages", "OBJECT"),
        ("messagesWhereInput", "INPUT_OBJECT"),
        ("BigInt", "SCALAR"),
        ("DateTime", "SCALAR"),
        ("JSON", "SCALAR"),
        ("MutationType", "ENUM"),
    ] {
        assert_eq!(kind_of(name).as_deref(), Some(kind), "type {name}");
    }
    let subscription = types
        .iter()
        .find(|t| t["name"] == "Subscription")
        .expect("Subscription type");
    let field = subscription["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "messages_mutated"))
        .unwrap_or_else(|| panic!("no Subscription.messages_mutated: {subscription}"));
    let args: Vec<&str> = field["args"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["name"].as_str()).collect())
        .unwrap_or_default();
    for arg in ["event", "where", "after"] {
        assert!(args.contains(&arg), "messages_mutated args {args:?}");
    }

    // What tooling does with it: graphql-js builds a client schema and validates against it.
    let http = format!("{}{}", s.walcast.http_url(), s.walcast.graphql_path());
    let mut tool = JsClient::spawn_script(
        "introspect.mjs",
        &[
            "--url",
            &http,
            "--token",
            TOKEN,
            "--validate",
            "subscription { messages_mutated(event: \"create\") { key event data { text user_id date_created user { name } } } }",
            "--validate",
            "subscription { messages_mutated { key nope } }",
            "--validate",
            "query Q($w: articlesWhereInput) { articles(where: $w, first: 1) { title author_id author { name } comments { body } } _cursor }",
        ],
    );
    let out = tool.next_line(CONNECT_TIMEOUT);
    assert_eq!(out["kind"], "schema", "{out}");
    let sdl = out["sdl"].as_str().unwrap_or_default();
    for needle in [
        "type messages_mutated",
        "input messagesWhereInput",
        "scalar BigInt",
        "scalar DateTime",
        "scalar JSON",
        "hits: BigInt",
        "meta: JSON",
    ] {
        assert!(
            sdl.contains(needle),
            "{needle:?} not in the client schema:\n{sdl}"
        );
    }
    assert_eq!(out["validation"][0], json!([]), "{out}");
    assert!(
        out["validation"][1].to_string().contains("nope"),
        "{}",
        out["validation"]
    );
    assert_eq!(out["validation"][2], json!([]), "{out}");

    // __typename, aliases and operation names in a query over HTTP.
    let (status, body) = s.walcast.post_json(
        s.walcast.graphql_path(),
        &json!({
            "query": "query A { a: __typename } query B { __typename first: users(where: {id: 1}) { __typename n: name } }",
            "operationName": "B",
        }),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"__typename": "Query", "first": [{"__typename": "users", "n": "Ada"}]}),
        "{body}"
    );

    let mut typename = s.client(
        "transport",
        "subscription { messages_mutated { __typename key data { __typename text } } }",
        &[],
    );
    let mut fragments = s.client(
        "transport",
        "subscription { m: messages_mutated { ...F ... on messages_mutated { kind: event } data { ...Msg } } }
         fragment F on messages_mutated { key event }
         fragment Msg on messages { t: text }",
        &[],
    );
    let mut named = s.client(
        "transport",
        "subscription First { messages_mutated { key } }
         subscription Second { second: messages_mutated { data { text } } }",
        &["--op-name", "Second"],
    );
    let mut vars = s.client(
        "transport",
        "subscription Filtered($ev: String, $w: messagesWhereInput) {
           messages_mutated(event: $ev, where: $w) { event data { text } } }",
        &[
            "--op-name",
            "Filtered",
            "--variables",
            r#"{"ev": "create", "w": {"text_starts_with": "var"}}"#,
        ],
    );
    let mut legacy_vars = s.client(
        "legacy",
        "subscription Filtered($w: messagesWhereInput) { messages_mutated(where: $w) { data { text } } }",
        &["--op-name", "Filtered", "--variables", r#"{"w": {"text": "plain"}}"#],
    );
    s.walcast.wait_subscriptions_at_least(5, CONNECT_TIMEOUT);

    let plain = s.sql("INSERT INTO messages (text) VALUES ('plain') RETURNING id");
    let var = s.sql("INSERT INTO messages (text) VALUES ('var-1') RETURNING id");

    assert_eq!(
        next_data(&mut typename),
        json!({"messages_mutated": {"__typename": "messages_mutated", "key": plain, "data": {"__typename": "messages", "text": "plain"}}})
    );
    assert_eq!(
        next_data(&mut typename)["messages_mutated"]["key"],
        var.as_str()
    );
    assert_eq!(
        next_data(&mut fragments),
        json!({"m": {"key": plain, "event": "create", "kind": "create", "data": {"t": "plain"}}})
    );
    assert_eq!(
        next_data(&mut named),
        json!({"second": {"data": {"text": "plain"}}})
    );
    assert_eq!(
        next_data(&mut vars),
        json!({"messages_mutated": {"event": "create", "data": {"text": "var-1"}}})
    );
    assert_eq!(
        next_data(&mut legacy_vars),
        json!({"messages_mutated": {"data": {"text": "plain"}}})
    );
    vars.expect_no_message(Duration::from_secs(1));
    legacy_vars.expect_no_message(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. Apollo Client and graphql-ws' iterate()

#[test]
fn apollo_clients_receive_events_with_typenames() {
    let s = setup(&demo_sql(), &[]);
    let query = r#"subscription OnMessage { messages_mutated(event: "create") { key event data { id text } } }"#;
    let mut apollo = s.client("apollo", query, &[]);
    let mut legacy = s.client("apollo-legacy", query, &[]);
    s.walcast.wait_subscriptions_at_least(2, CONNECT_TIMEOUT);
    let id = s.sql("INSERT INTO messages (text) VALUES ('hello apollo') RETURNING id");
    let expected = json!({"messages_mutated": {
        "__typename": "messages_mutated", "key": id, "event": "create",
        "data": {"__typename": "messages", "id": id, "text": "hello apollo"}}});
    assert_eq!(next_data(&mut apollo), expected, "apollo (GraphQLWsLink)");
    assert_eq!(next_data(&mut legacy), expected, "apollo (WebSocketLink)");
}

#[test]
fn graphql_ws_iterate_yields_events_and_completes_on_break() {
    let s = setup(&demo_sql(), &[]);
    let url = s.walcast.ws_url();
    let mut it = JsClient::spawn_script(
        "iterate.mjs",
        &[
            "--url",
            &url,
            "--token",
            TOKEN,
            "--query",
            "subscription ArticleUpdates($event: String) { articles_mutated(event: $event) { key event data { id title status } } }",
            "--variables",
            r#"{"event": "update"}"#,
            "--count",
            "2",
        ],
    );
    it.wait_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    s.sql("INSERT INTO articles (title) VALUES ('not an update')");
    s.sql("UPDATE articles SET status = 'published' WHERE id = 2");
    s.sql("UPDATE articles SET title = 'Renamed' WHERE id = 1");
    let first = next_data(&mut it);
    assert_eq!(
        first,
        json!({"articles_mutated": {"key": "2", "event": "update", "data": {"id": "2", "title": "Subscriptions without triggers", "status": "published"}}})
    );
    let second = next_data(&mut it);
    assert_eq!(
        second["articles_mutated"]["data"],
        json!({"id": "1", "title": "Renamed", "status": "published"})
    );
    // Leaving the loop completes the subscription; the script then exits by itself.
    let status = it.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "iterate.mjs: {status:?}\n{}",
        it.stderr()
    );
    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// 5. GraphiQL in a headless Chromium

const CHROMIUM: &str = "/usr/bin/chromium";

fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the GraphiQL tests drive Debian's Chromium. \
         Install it with `apt-get install chromium` (CI: .ci/run must install it)"
    );
}

/// Opens GraphiQL with the token (and `url_extra`) in the URL, runs `query` from the editor
/// (the page's own document when `None`), inserts a message once the subscription is live and
/// waits for it in the response pane. Returns the page's `loaded` line and the pane's text.
fn graphiql_flow(s: &Setup, query: Option<&str>, url_extra: &str, text: &str) -> (Value, String) {
    let url = format!(
        "{}{}?access_token={TOKEN}{url_extra}",
        s.walcast.http_url(),
        s.walcast.graphql_path()
    );
    let shot = s.dir.path().join("graphiql.png");
    let shot = shot.to_str().expect("temp path is UTF-8");
    let mut args = vec!["--url", &url];
    if let Some(query) = query {
        args.extend(["--query", query]);
    }
    let mut page = JsClient::spawn_script(
        "graphiql.mjs",
        &[
            &args[..],
            &[
                "--expect",
                text,
                "--expect",
                "\"create\"",
                "--timeout",
                "45000",
                "--screenshot",
                shot,
            ],
        ]
        .concat(),
    );
    let loaded = page.expect_kind("loaded", Duration::from_secs(60));
    assert_eq!(
        loaded["introspection"],
        json!({"status": 200, "errors": null, "hasSchema": true}),
        "GraphiQL's schema request: {loaded}"
    );
    page.expect_kind("ready", Duration::from_secs(30));
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while s.walcast.active_subscriptions() < 1 {
        if Instant::now() >= deadline {
            let lines = page.drain(Duration::from_secs(1));
            panic!(
                "GraphiQL's subscription never became active within {CONNECT_TIMEOUT:?}\n\
                 page said: {}\n--- browser log ---\n{}\n(screenshot: {shot})",
                show(&lines),
                page.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    s.sql(&format!(
        "INSERT INTO messages (text) VALUES ({})",
        quote_literal(text)
    ));
    let result = page.next_line(Duration::from_secs(60));
    assert_eq!(
        result["kind"],
        "result",
        "{result}\n{}\n(screenshot: {shot})",
        page.stderr()
    );
    let status = page.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "graphiql.mjs: {status:?}"
    );
    let text = result["text"].as_str().unwrap_or_default().to_owned();
    (loaded, text)
}

#[test]
fn graphiql_runs_a_subscription_in_headless_chromium() {
    require_chromium();
    let s = setup(&demo_sql(), &[]);
    let (status, html) = s.walcast.get(s.walcast.graphql_path());
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("/graphiql/graphiql.min.js"), "{html}");
    let (_, text) = graphiql_flow(
        &s,
        Some("subscription { messages_mutated { key event data { text } } }"),
        "",
        "typed in GraphiQL",
    );
    let shown: Value = serde_json::from_str(&text).expect("the response pane holds JSON");
    assert_eq!(
        shown["data"]["messages_mutated"]["data"]["text"],
        "typed in GraphiQL"
    );
    assert_eq!(shown["data"]["messages_mutated"]["event"], "create");
}

#[test]
fn graphiql_subscriptions_work_in_strict_mode() {
    require_chromium();
    let s = setup(&demo_sql(), &[("WEBSOCKETS_GRAPHQL_AUTH", "strict")]);
    graphiql_flow(
        &s,
        Some("subscription { messages_mutated { key event data { text } } }"),
        "",
        "strict GraphiQL",
    );
}

/// GraphiQL opens on a subscription for the table named by `&table=`, with every scalar column
/// in `data` and the Prisma form commented below it, shows the schema in its docs pane, and
/// that document runs as it is.
#[test]
fn graphiql_opens_on_a_runnable_subscription_and_the_docs() {
    require_chromium();
    let s = setup(&demo_sql(), &[]);
    let (loaded, text) = graphiql_flow(&s, None, "&table=messages", "run as opened");
    let editor = loaded["editor"].as_str().unwrap_or_default();
    assert!(
        editor.contains(
            "subscription {\n  messages_mutated {\n    key\n    event\n    \
             data { id text user_id date_created }\n  }\n}\n"
        ),
        "{editor}"
    );
    assert!(
        editor.contains(
            "# subscription {\n#   messages(where: { mutation_in: [CREATED, UPDATED, DELETED] }) {\n\
             #     mutation\n#     node { id text user_id date_created }\n"
        ),
        "{editor}"
    );
    assert!(
        editor.contains("#   users, articles, comments\n"),
        "{editor}"
    );
    let docs = loaded["docs"].as_str().unwrap_or_default();
    for name in [
        "Subscription",
        "messages_mutated",
        "messagesSubscriptionPayload",
    ] {
        assert!(docs.contains(name), "docs pane without {name}: {docs}");
    }
    let shown: Value = serde_json::from_str(&text).expect("the response pane holds JSON");
    let event = &shown["data"]["messages_mutated"];
    assert_eq!(event["event"], "create", "{shown}");
    assert_eq!(event["data"]["text"], "run as opened", "{shown}");
    assert_eq!(event["data"]["user_id"], Value::Null, "{shown}");
    assert!(event["data"]["date_created"].is_string(), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// 6. Live schema changes

#[test]
fn schema_changes_apply_live_without_breaking_subscriptions() {
    let s = setup(DEMO_SCHEMA, &[]);
    let mut old = s.client(
        "transport",
        "subscription { messages_mutated { key data { text } } }",
        &[],
    );
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    // A new column: the existing subscription keeps working, new ones can ask for it.
    s.sql("ALTER TABLE messages ADD COLUMN mood text; ALTER TABLE messages ADD COLUMN score int;");
    let id =
        s.sql("INSERT INTO messages (text, mood, score) VALUES ('m1', 'happy', 1) RETURNING id");
    assert_eq!(
        next_data(&mut old),
        json!({"messages_mutated": {"key": id, "data": {"text": "m1"}}})
    );
    let mut moody = s.client(
        "transport",
        "subscription { messages_mutated { key data { id text mood score } } }",
        &[],
    );
    let mut scored = s.client(
        "legacy",
        "subscription { messages_mutated { data { date_created score } } }",
        &[],
    );
    s.walcast.wait_subscriptions(3, CONNECT_TIMEOUT);
    let id = s.sql("INSERT INTO messages (text, mood, score) VALUES ('m2', 'sad', 2) RETURNING id");
    assert_eq!(
        next_data(&mut moody),
        json!({"messages_mutated": {"key": id, "data": {"id": id, "text": "m2", "mood": "sad", "score": 2}}})
    );
    assert_eq!(
        next_data(&mut old)["messages_mutated"]["data"]["text"],
        "m2"
    );
    let m2 = next_data(&mut scored);
    assert_eq!(m2["messages_mutated"]["data"]["score"], 2, "{m2}");
    let read = s.query(
        "{ messages(where: {mood: \"sad\"}) { text mood } }",
        json!({}),
    );
    assert_eq!(read["messages"], json!([{"text": "m2", "mood": "sad"}]));
    // The subscription that asks for the column to be dropped below ends here; what it gets
    // after the drop is `a_dropped_column_resolves_to_null_with_an_error_and_the_other_fields_stay`.
    drop(moody);
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);

    // A new table added to the publication: known after SIGHUP, before any write to it ...
    s.sql("CREATE TABLE tags (id serial PRIMARY KEY, name text); ALTER PUBLICATION walcast ADD TABLE tags;");
    let pid = s.walcast.pid().expect("walcast runs");
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    s.wait_type("tags_mutated", Duration::from_secs(10));
    let mut tags = s.client(
        "transport",
        "subscription { tags_mutated { event data { name } } }",
        &[],
    );
    // ... and one whose first write brings it in.
    s.sql("CREATE TABLE labels (id serial PRIMARY KEY, name text); ALTER PUBLICATION walcast ADD TABLE labels;");
    s.walcast.wait_subscriptions(3, CONNECT_TIMEOUT);
    s.sql("INSERT INTO tags (name) VALUES ('first tag')");
    assert_eq!(
        next_data(&mut tags),
        json!({"tags_mutated": {"event": "create", "data": {"name": "first tag"}}})
    );
    s.sql("INSERT INTO labels (name) VALUES ('unseen')");
    s.wait_type("labels_mutated", Duration::from_secs(10));
    // The table may be in the schema already (the reload for `tags` saw it): subscribe only once
    // the row above went by, so the subscription is made after it was handled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !s
        .walcast
        .get("/metrics")
        .1
        .lines()
        .any(|l| l.starts_with("walcast_events_decoded_total{") && l.contains("table=\"labels\""))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the labels row was not decoded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut labels = s.client(
        "transport",
        "subscription { labels_mutated { event data { name } } }",
        &[],
    );
    s.walcast.wait_subscriptions(4, CONNECT_TIMEOUT);
    s.sql("INSERT INTO labels (name) VALUES ('second label')");
    assert_eq!(
        next_data(&mut labels),
        json!({"labels_mutated": {"event": "create", "data": {"name": "second label"}}})
    );

    // A dropped column: what the old subscriptions still ask for keeps its right value.
    s.sql("ALTER TABLE messages DROP COLUMN mood");
    let id = s.sql("INSERT INTO messages (text, score) VALUES ('m3', 3) RETURNING id");
    assert_eq!(
        next_data(&mut old),
        json!({"messages_mutated": {"key": id, "data": {"text": "m3"}}})
    );
    let m3 = next_data(&mut scored);
    let data = &m3["messages_mutated"]["data"];
    assert_eq!(
        data["score"], 3,
        "score after its neighbour was dropped: {m3}"
    );
    let created = data["date_created"].as_str().unwrap_or_default();
    assert!(
        parse_datetime(created).is_some_and(|(_, offset)| offset.is_some()),
        "date_created after a drop: {m3}"
    );
    // New clients can no longer ask for it.
    let (_, body) = s
        .walcast
        .graphql("{ messages { mood } }", json!({}), Some(TOKEN));
    assert!(body["errors"].to_string().contains("mood"), "{body}");
}

#[test]
fn a_dropped_column_resolves_to_null_with_an_error_and_the_other_fields_stay() {
    let s = setup(DEMO_SCHEMA, &[]);
    s.sql("ALTER TABLE messages ADD COLUMN mood text; ALTER TABLE messages ADD COLUMN score int;");
    // The first write makes walcast reload the shape.
    s.sql("INSERT INTO messages (text, mood, score) VALUES ('m1', 'happy', 1)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s
        .walcast
        .graphql("{ messages { mood } }", json!({}), Some(TOKEN))
        .1["errors"]
        .is_array()
    {
        assert!(Instant::now() < deadline, "mood never became a field");
        std::thread::sleep(Duration::from_millis(100));
    }
    let moody_query = "subscription { messages_mutated { key data { id text mood score } } }";
    let mut moody = s.client("transport", moody_query, &[]);
    // An identical subscription shares the payload, field error included.
    let mut twin = s.client("legacy", moody_query, &[]);
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);
    s.sql("ALTER TABLE messages DROP COLUMN mood");
    let id = s.sql("INSERT INTO messages (text, score) VALUES ('m3', 3) RETURNING id");
    // API.md sections 3 and 6: the field that cannot be resolved is null with an error on that
    // field, beside the data; never another column's value, and the other fields stay.
    let p = next_payload(&mut moody);
    assert_eq!(
        p["data"],
        json!({"messages_mutated": {"key": id, "data": {"id": id, "text": "m3", "mood": null, "score": 3}}}),
        "{p}"
    );
    let errors = p["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors
            .iter()
            .all(|e| e["path"] == json!(["messages_mutated", "data", "mood"])),
        "errors about other fields: {p}"
    );
    assert!(!errors.is_empty(), "no error for the dropped column: {p}");
    assert_eq!(next_payload(&mut twin), p);
}

/// Identical subscriptions — on any protocol — get one payload built once per event; each frame
/// keeps its own id and envelope, and a subscription that differs (an alias) gets its own.
#[test]
fn identical_subscriptions_share_one_payload_and_keep_their_own_frames() {
    let s = setup(DEMO_SCHEMA, &[]);
    let query = "subscription { messages_mutated { key event data { id text } } }";
    let init = |protocol: &str, init_type: &str| {
        let mut ws = RawWs::connect(&s.walcast.ws_url(), protocol);
        ws.send_json(&json!({"type": init_type, "payload": {"access_token": TOKEN}}));
        let ack = ws.recv_json(CONNECT_TIMEOUT);
        assert!(
            ack["type"] == "connection_ack" || ack["type"] == "init_success",
            "{ack}"
        );
        ws
    };
    let mut transport = init("graphql-transport-ws", "connection_init");
    transport.send_json(&json!({"id": "t1", "type": "subscribe", "payload": {"query": query}}));
    transport.send_json(&json!({"id": "t2", "type": "subscribe", "payload": {"query": query}}));
    let mut legacy = init("graphql-ws", "connection_init");
    legacy.send_json(&json!({"id": "l1", "type": "start", "payload": {"query": query}}));
    let mut graphcool = init("graphql-subscriptions", "init");
    graphcool.send_json(&json!({"id": "g1", "type": "subscription_start", "query": query}));
    let aliased = query.replace("messages_mutated", "m: messages_mutated");
    let mut other = init("graphql-transport-ws", "connection_init");
    other.send_json(&json!({"id": "o1", "type": "subscribe", "payload": {"query": aliased}}));
    s.walcast.wait_subscriptions(5, CONNECT_TIMEOUT);
    // Each socket's `next`-like frames, in order, with their type and id.
    let frames = |ws: &mut RawWs, want: usize| -> Vec<Value> {
        let mut got = Vec::new();
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while got.len() < want {
            let msg = ws.recv_json(deadline.saturating_duration_since(Instant::now()));
            match msg["type"].as_str() {
                Some("next" | "data" | "subscription_data") => got.push(msg),
                Some("ka" | "subscription_success" | "ping" | "pong") => {}
                _ => panic!("unexpected frame {msg}"),
            }
        }
        got
    };
    // A first write can reload the table's shape (a new access key): groups form after it.
    s.sql("INSERT INTO messages (text) VALUES ('warm-up')");
    for (ws, n) in [
        (&mut transport, 2),
        (&mut legacy, 1),
        (&mut graphcool, 1),
        (&mut other, 1),
    ] {
        frames(ws, n);
    }
    let shared_before = shared_payloads(&s);
    let rows = 3;
    for i in 0..rows {
        s.sql(&format!(
            "INSERT INTO messages (text) VALUES ('shared {i}')"
        ));
    }
    let t = frames(&mut transport, 2 * rows);
    let l = frames(&mut legacy, rows);
    let g = frames(&mut graphcool, rows);
    let o = frames(&mut other, rows);
    for i in 0..rows {
        let (t1, t2): (Vec<&Value>, Vec<&Value>) = t
            .iter()
            .filter(|m| {
                m["payload"]["data"]["messages_mutated"]["data"]["text"] == format!("shared {i}")
            })
            .partition(|m| m["id"] == "t1");
        assert_eq!((t1.len(), t2.len()), (1, 1), "{t:?}");
        let payload = &t1[0]["payload"];
        assert_eq!(
            payload["data"]["messages_mutated"]["event"], "create",
            "{payload}"
        );
        assert_eq!(
            (t1[0]["type"].as_str(), t2[0]["id"].as_str()),
            (Some("next"), Some("t2"))
        );
        assert_eq!(&t2[0]["payload"], payload);
        assert_eq!(
            (l[i]["type"].as_str(), l[i]["id"].as_str()),
            (Some("data"), Some("l1"))
        );
        assert_eq!(&l[i]["payload"], payload);
        assert_eq!(
            (g[i]["type"].as_str(), g[i]["id"].as_str()),
            (Some("subscription_data"), Some("g1"))
        );
        assert_eq!(&g[i]["payload"], payload);
        assert_eq!(
            o[i]["payload"]["data"]["m"],
            payload["data"]["messages_mutated"]
        );
    }
    // Four identical subscriptions: one builds each event, three take it (fewer on an event
    // during which the group forms).
    let shared = shared_payloads(&s) - shared_before;
    assert!(shared >= 2 * rows as u64, "{shared} payloads shared");
}

fn shared_payloads(s: &Setup) -> u64 {
    let (status, body) = s.walcast.get("/metrics");
    assert_eq!(status, 200, "{body}");
    metric_sum(&body, "walcast_payloads_shared_total").unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 7. Composite keys, other schemas, odd identifiers

const NAMES_SCHEMA: &str = r#"
CREATE TABLE memberships (org_id int, user_id int, role text, PRIMARY KEY (org_id, user_id));
ALTER TABLE memberships REPLICA IDENTITY FULL;
CREATE SCHEMA app;
CREATE TABLE app.accounts (id serial PRIMARY KEY, name text);
CREATE TABLE "order-items" (id serial PRIMARY KEY, "2fa" boolean, "Qty" int);
"#;

#[test]
fn composite_keys_other_schemas_and_odd_identifiers() {
    let s = setup(NAMES_SCHEMA, &[("WALCAST_SCHEMAS", "public,app")]);
    let mut members = s.client(
        "transport",
        "subscription { memberships_mutated { key event data { org_id user_id role } } }",
        &[],
    );
    let mut accounts = s.client(
        "transport",
        "subscription { app_accounts_mutated { key event data { id name } } }",
        &[],
    );
    let mut items = s.client(
        "graphcool",
        "subscription { order_items_mutated(where: {_2fa: true}) { key data { id _2fa Qty } } }",
        &[],
    );
    s.walcast.wait_subscriptions(3, CONNECT_TIMEOUT);

    s.sql("INSERT INTO memberships VALUES (1, 2, 'owner')");
    s.sql("UPDATE memberships SET role = 'member' WHERE org_id = 1 AND user_id = 2");
    s.sql("DELETE FROM memberships WHERE org_id = 1 AND user_id = 2");
    let account = s.sql("INSERT INTO app.accounts (name) VALUES ('acme') RETURNING id");
    s.sql(r#"INSERT INTO "order-items" ("2fa", "Qty") VALUES (false, 1)"#);
    let item = s.sql(r#"INSERT INTO "order-items" ("2fa", "Qty") VALUES (true, 5) RETURNING id"#);

    for (event, role) in [("create", json!("owner")), ("update", json!("member"))] {
        let m = next_data(&mut members);
        let m = &m["memberships_mutated"];
        assert_eq!(m["event"], event, "{m}");
        let key: Value = serde_json::from_str(m["key"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the composite key is not JSON text ({e}): {m}"));
        assert_eq!(key, json!({"org_id": 1, "user_id": 2}), "{m}");
        assert_eq!(
            m["data"],
            json!({"org_id": 1, "user_id": 2, "role": role}),
            "{m}"
        );
    }
    let d = next_data(&mut members);
    let d = &d["memberships_mutated"];
    assert_eq!(
        (&d["event"], &d["data"]),
        (&json!("delete"), &Value::Null),
        "{d}"
    );
    let key: Value = serde_json::from_str(d["key"].as_str().unwrap_or_default()).expect("JSON key");
    assert_eq!(key, json!({"org_id": 1, "user_id": 2}), "{d}");

    assert_eq!(
        next_data(&mut accounts),
        json!({"app_accounts_mutated": {"key": account, "event": "create", "data": {"id": account, "name": "acme"}}})
    );
    assert_eq!(
        next_data(&mut items),
        json!({"order_items_mutated": {"key": item, "data": {"id": item, "_2fa": true, "Qty": 5}}})
    );
    items.expect_no_message(Duration::from_millis(500));

    let read = s.query(
        "{ app_accounts { name } order_items(orderBy: [\"id\"]) { _2fa Qty } memberships { org_id } }",
        json!({}),
    );
    assert_eq!(
        read,
        json!({"app_accounts": [{"name": "acme"}], "order_items": [{"_2fa": false, "Qty": 1}, {"_2fa": true, "Qty": 5}], "memberships": []})
    );

    // `walcast schema` lists the same names.
    let mut cmd = Command::new(walcast_bin());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("WALCAST_") || key.starts_with("WEBSOCKETS_") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .arg("schema")
        .env("DATABASE_URL", s.pg.url(DB))
        .env("WALCAST_SCHEMAS", "public,app")
        .output()
        .expect("running walcast schema");
    let sdl = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walcast schema: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "type memberships ",
        "memberships_mutated(",
        "type app_accounts ",
        "app_accounts_mutated(",
        "type order_items ",
        "order_items_mutated(",
        "_2fa: Boolean",
        "Qty: Int",
    ] {
        assert!(
            sdl.contains(needle),
            "{needle:?} not in `walcast schema`:\n{sdl}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Mutations

#[test]
fn directus_mutations_write_through_the_wal_and_are_off_by_default() {
    let s = setup(&demo_sql(), &[("WALCAST_MUTATIONS", "true")]);
    let mut sub = s.client(
        "transport",
        "subscription { articles_mutated { key event data { id title status author_id } } }",
        &[],
    );
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    let created = s.query(
        "mutation Create($d: articles_input!) { create_articles_item(data: $d) { id title status author_id } }",
        json!({"d": {"title": "Via mutation", "author_id": 1}}),
    );
    let item = &created["create_articles_item"];
    let id = item["id"].as_str().expect("an ID string").to_owned();
    assert_eq!(
        *item,
        json!({"id": id, "title": "Via mutation", "status": "draft", "author_id": 1})
    );
    assert_eq!(
        next_data(&mut sub),
        json!({"articles_mutated": {"key": id, "event": "create", "data": item}})
    );

    let updated = s.query(
        "mutation($id: ID!) { update_articles_item(id: $id, data: {status: \"published\"}) { id title status } }",
        json!({ "id": id }),
    );
    assert_eq!(
        updated["update_articles_item"],
        json!({"id": id, "title": "Via mutation", "status": "published"})
    );
    assert_eq!(
        next_data(&mut sub),
        json!({"articles_mutated": {"key": id, "event": "update", "data": {"id": id, "title": "Via mutation", "status": "published", "author_id": 1}}})
    );

    // The database refuses (a foreign key to no user): the client learns why, not "db error".
    let (_, body) = s.walcast.graphql(
        "mutation { create_articles_item(data: {title: \"orphan\", author_id: 999}) { id } }",
        json!({}),
        Some(TOKEN),
    );
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("23503") && message.contains("foreign key"),
        "{body}"
    );

    let deleted = s.query(
        "mutation($id: ID!) { delete_articles_item(id: $id) { id } }",
        json!({ "id": id }),
    );
    assert_eq!(deleted["delete_articles_item"], json!({"id": id}));
    assert_eq!(
        next_data(&mut sub),
        json!({"articles_mutated": {"key": id, "event": "delete", "data": null}})
    );
    assert_eq!(
        s.sql(&format!("SELECT count(*) FROM articles WHERE id = {id}")),
        "0"
    );

    // A second walcast on the same database without WALCAST_MUTATIONS: no Mutation root.
    let tokens = s.dir.path().join("tokens.toml");
    let off = Walcast::start(
        &s.pg.url(DB),
        &[
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens.to_str().expect("UTF-8")),
            ("WALCAST_SLOT", "walcast_readonly"),
            ("WALCAST_PUBLICATION", "walcast_readonly"),
        ],
    );
    let (status, body) = off.graphql(
        "{ __schema { mutationType { name } } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["__schema"]["mutationType"],
        Value::Null,
        "{body}"
    );
    let (status, body) = off.graphql(
        "mutation { create_articles_item(data: {title: \"nope\"}) { id } }",
        json!({}),
        Some(TOKEN),
    );
    assert!(status == 400 || body["data"].is_null(), "{status} {body}");
    assert!(
        !body["errors"].as_array().is_none_or(Vec::is_empty),
        "a mutation without WALCAST_MUTATIONS must be an error: {body}"
    );
    assert_eq!(
        s.sql("SELECT count(*) FROM articles WHERE title = 'nope'"),
        "0"
    );
}
