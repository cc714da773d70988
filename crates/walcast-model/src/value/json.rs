//! The JSON form of values sent to subscribers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::temporal::{format_date, format_time, format_timestamp};
use crate::datum::{Datum, Kind};

fn float_json(value: f64) -> Value {
    match serde_json::Number::from_f64(value) {
        Some(n) => Value::Number(n),
        None if value.is_nan() => Value::String("NaN".to_owned()),
        None if value > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

impl Datum {
    /// The JSON form of this value in a column of `kind` (the element kind for arrays), per the
    /// API contract's type table:
    ///
    /// - int2/int4 numbers; int8, numeric and money strings, so no precision is lost;
    /// - float4/float8 numbers, with `"NaN"`, `"Infinity"`, `"-Infinity"` as strings;
    /// - timestamptz `"2024-01-02T03:04:05.123456Z"`, timestamp `"2024-01-02T03:04:05"`,
    ///   date `"2024-01-02"`, time `"03:04:05"` (see the module docs for fractions and years);
    /// - bytea standard base64 with padding; json/jsonb the value itself; arrays JSON arrays;
    /// - NULL and unavailable (unchanged TOAST) values `null`.
    pub fn to_json(&self, kind: Kind) -> Value {
        match self {
            Datum::Null | Datum::Unavailable => Value::Null,
            Datum::Bool(b) => Value::Bool(*b),
            Datum::Int(i) => match kind {
                Kind::Int8 | Kind::Numeric | Kind::Money => Value::String(i.to_string()),
                _ => Value::from(*i),
            },
            Datum::Float(f) => float_json(*f),
            Datum::Numeric(s) | Datum::Text(s) | Datum::TemporalText(s) => Value::String(s.clone()),
            Datum::Json(v) => (**v).clone(),
            Datum::TimestampTz(us) => Value::String(format!("{}Z", format_timestamp(*us))),
            Datum::Timestamp(us) => Value::String(format_timestamp(*us)),
            Datum::Date(days) => Value::String(format_date(*days)),
            Datum::Time(us) => Value::String(format_time(*us)),
            Datum::Bytes(bytes) => Value::String(STANDARD.encode(bytes)),
            Datum::Array(items) => Value::Array(items.iter().map(|d| d.to_json(kind)).collect()),
        }
    }
}
