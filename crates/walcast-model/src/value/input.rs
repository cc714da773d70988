//! Client-supplied filter literals, turned into [`Datum`]s comparable with column values.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use super::decode::{
    check_int_range, decode_bytea, money_to_decimal, overflows_f32, parse_float, parse_int,
};
use super::numeric::{canonical_numeric, NumericError};
use super::temporal::{normalise_timetz, parse_temporal};
use super::{kind_label, out_of_range, snippet, syntax, ValueError};
use crate::datum::{Datum, Kind};

fn json_kind(value: &Value) -> String {
    let name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{name} {}", snippet(&value.to_string()))
}

fn wrong_input(kind: Kind, expected: &'static str, value: &Value) -> ValueError {
    ValueError::InputType {
        type_name: kind_label(kind),
        expected,
        got: json_kind(value),
    }
}

/// Turns a client-supplied filter literal into a [`Datum`] comparable with column values of
/// `kind` (see [`Datum::compare`]).
///
/// JSON `null` is SQL NULL for every kind, and a JSON array is an array of literals except for
/// json/jsonb. Integers accept numbers and integer strings (range-checked for int2/int4);
/// floats numbers and strings including `NaN`/`Infinity`; numeric and money numbers or decimal
/// strings (exponents allowed), stored canonically (`"01.50"` → `1.5`); timestamptz RFC 3339
/// text with any offset, or Postgres' `2024-01-02 03:04:05+00` form (no offset means UTC);
/// timestamp the same without an offset; bytea base64 (or `\x` hex); uuid is validated and
/// lowercased.
pub fn parse_input(ty_kind: Kind, value: &Value) -> Result<Datum, ValueError> {
    let kind = ty_kind;
    match value {
        Value::Null => return Ok(Datum::Null),
        Value::Array(items) if !matches!(kind, Kind::Json | Kind::Jsonb) => {
            return items
                .iter()
                .map(|item| parse_input(kind, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Datum::Array);
        }
        _ => {}
    }
    match kind {
        Kind::Json | Kind::Jsonb => Ok(Datum::json(value.clone())),
        Kind::Bool => match value {
            Value::Bool(b) => Ok(Datum::Bool(*b)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" => Ok(Datum::Bool(true)),
                "false" | "f" => Ok(Datum::Bool(false)),
                _ => Err(syntax(kind, s, "expected true or false")),
            },
            _ => Err(wrong_input(kind, "a boolean", value)),
        },
        Kind::Int2 | Kind::Int4 | Kind::Int8 => match value {
            Value::Number(n) => {
                let text = n.to_string();
                if let Some(i) = n.as_i64() {
                    check_int_range(kind, i, &text)
                } else if n.is_u64() {
                    Err(out_of_range(kind, &text))
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    // 2^63 is exactly representable, so this bound is exact.
                    if f.fract() != 0.0 || !f.is_finite() {
                        Err(syntax(kind, &text, "not an integer"))
                    } else if f.abs() >= 9_223_372_036_854_775_808.0 {
                        Err(out_of_range(kind, &text))
                    } else {
                        check_int_range(kind, f as i64, &text)
                    }
                }
            }
            Value::String(s) => parse_int(kind, s),
            _ => Err(wrong_input(kind, "an integer or integer string", value)),
        },
        Kind::Float4 | Kind::Float8 => match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if kind == Kind::Float4 && overflows_f32(f) => {
                    Err(out_of_range(kind, &n.to_string()))
                }
                Some(f) => Ok(Datum::Float(f)),
                None => Err(out_of_range(kind, &n.to_string())),
            },
            Value::String(s) => parse_float(kind, s),
            _ => Err(wrong_input(kind, "a number or numeric string", value)),
        },
        Kind::Numeric | Kind::Money => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) if kind == Kind::Money => {
                    money_to_decimal(s).unwrap_or_else(|| s.clone())
                }
                Value::String(s) => s.clone(),
                _ => return Err(wrong_input(kind, "a number or decimal string", value)),
            };
            canonical_numeric(&text)
                .map(Datum::Numeric)
                .map_err(|e| match e {
                    NumericError::Syntax => syntax(kind, &text, "not a decimal number"),
                    NumericError::Range => out_of_range(kind, &text),
                })
        }
        Kind::Uuid => match value {
            Value::String(s) => canonical_uuid(s)
                .map(Datum::Text)
                .ok_or_else(|| syntax(kind, s, "expected 32 hex digits, optionally hyphenated")),
            _ => Err(wrong_input(kind, "a UUID string", value)),
        },
        Kind::Timestamp | Kind::TimestampTz | Kind::Date | Kind::Time => match value {
            Value::String(s) => parse_temporal(kind, s, false),
            _ => Err(wrong_input(kind, "an ISO 8601 string", value)),
        },
        Kind::TimeTz => match value {
            Value::String(s) => normalise_timetz(s).map(Datum::TemporalText),
            _ => Err(wrong_input(kind, "an ISO 8601 time with offset", value)),
        },
        Kind::Interval => match value {
            Value::String(s) => Ok(Datum::TemporalText(s.trim().to_owned())),
            _ => Err(wrong_input(kind, "an ISO 8601 duration string", value)),
        },
        Kind::Bytea => match value {
            Value::String(s) if s.starts_with("\\x") => decode_bytea(s),
            Value::String(s) => BASE64_LENIENT
                .decode(s.trim())
                .map(Datum::Bytes)
                .map_err(|e| syntax(kind, s, format!("not base64: {e}"))),
            _ => Err(wrong_input(kind, "a base64 string", value)),
        },
        Kind::Text | Kind::Enum | Kind::Other => match value {
            Value::String(s) => Ok(Datum::Text(s.clone())),
            _ => Err(wrong_input(kind, "a string", value)),
        },
    }
}

/// Standard alphabet, padding optional: clients differ on whether they pad.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Postgres' uuid input rules (optional braces, a hyphen allowed after any group of four hex
/// digits), rendered in its canonical lowercase 8-4-4-4-12 output form.
fn canonical_uuid(text: &str) -> Option<String> {
    let t = text.trim();
    let t = match t.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}')?,
        None => t,
    };
    let mut hex = Vec::with_capacity(32);
    let mut after_hyphen = true; // no leading hyphen
    for b in t.bytes() {
        if b == b'-' {
            if after_hyphen || hex.len() % 4 != 0 {
                return None;
            }
            after_hyphen = true;
        } else if b.is_ascii_hexdigit() {
            hex.push(b.to_ascii_lowercase());
            after_hyphen = false;
        } else {
            return None;
        }
    }
    if after_hyphen || hex.len() != 32 {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (i, b) in hex.into_iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(b));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::test_support::*;
    use serde_json::json;

    #[test]
    fn input_scalars() {
        assert_eq!(input(Kind::Int4, json!(5)), Datum::Int(5));
        assert_eq!(input(Kind::Int4, json!("-5")), Datum::Int(-5));
        assert_eq!(input(Kind::Int8, json!(3.0)), Datum::Int(3));
        assert_eq!(
            input(Kind::Int8, json!("9223372036854775807")),
            Datum::Int(i64::MAX)
        );
        assert_eq!(
            input(Kind::Float8, json!("NaN")).to_json(Kind::Float8),
            json!("NaN")
        );
        assert_eq!(input(Kind::Float8, json!(2)), Datum::Float(2.0));
        assert_eq!(input(Kind::Bool, json!(true)), Datum::Bool(true));
        assert_eq!(input(Kind::Text, json!("x")), Datum::Text("x".to_owned()));
        assert_eq!(
            input(Kind::Jsonb, json!({"a": [1]})),
            Datum::json(json!({"a": [1]}))
        );
        assert_eq!(
            input(Kind::Jsonb, json!([1, 2])),
            Datum::json(json!([1, 2]))
        );
        assert_eq!(input(Kind::Int4, json!(null)), Datum::Null);
        assert_eq!(
            input(Kind::Int4, json!([1, null])),
            Datum::Array(vec![Datum::Int(1), Datum::Null])
        );
        assert_eq!(
            input(Kind::Uuid, json!("{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}")),
            Datum::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned())
        );
        assert_eq!(
            input(Kind::Uuid, json!("a0eebc999c0b4ef8bb6d6bb9bd380a11")),
            Datum::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned())
        );
        assert_eq!(input(Kind::Bytea, json!("AQI=")), Datum::Bytes(vec![1, 2]));
        assert_eq!(input(Kind::Bytea, json!("AQI")), Datum::Bytes(vec![1, 2]));
        assert_eq!(
            input(Kind::Bytea, json!("\\x0102")),
            Datum::Bytes(vec![1, 2])
        );
        assert_eq!(
            input(Kind::TimeTz, json!("03:04:05+00")),
            Datum::TemporalText("03:04:05+00:00".to_owned())
        );

        let rejected: &[(Kind, Value)] = &[
            (Kind::Int2, json!(32768)),
            (Kind::Int4, json!("2147483648")),
            (Kind::Int4, json!(1.5)),
            (Kind::Int8, json!(18446744073709551615_u64)),
            (Kind::Int8, json!(1e19)),
            (Kind::Int4, json!(true)),
            (Kind::Float4, json!(1e39)),
            (Kind::Float8, json!("x")),
            (Kind::Numeric, json!("1.2.3")),
            (Kind::Numeric, json!("1e100000")),
            (Kind::Numeric, json!("1e-9223372036854775808")),
            (Kind::Numeric, json!("1e9223372036854775808")),
            (Kind::Numeric, json!({})),
            (Kind::Bool, json!(1)),
            (Kind::Uuid, json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1")),
            (Kind::Uuid, json!("-a0eebc999c0b4ef8bb6d6bb9bd380a11")),
            (Kind::Uuid, json!("a0eebc9-99c0b4ef8bb6d6bb9bd380a11")),
            (Kind::Text, json!(5)),
            (Kind::Bytea, json!("!!")),
            (Kind::Date, json!("2024-02-30")),
            (Kind::Timestamp, json!("2024-01-02T03:04:05Z")),
            (Kind::Time, json!("25:00")),
        ];
        for (kind, value) in rejected {
            assert!(
                parse_input(*kind, value).is_err(),
                "{kind:?} accepted {value}"
            );
        }
    }

    #[test]
    fn input_numeric_is_canonical() {
        let cases: &[(Value, &str)] = &[
            (json!("1.50"), "1.5"),
            (json!("001.500"), "1.5"),
            (json!("-0.0"), "0"),
            (json!("+7"), "7"),
            (json!(".5"), "0.5"),
            (json!("5."), "5"),
            (json!("1.5e3"), "1500"),
            (json!("1.5E-3"), "0.0015"),
            (json!("0.05e2"), "5"),
            (json!("-12.5e-1"), "-1.25"),
            (json!(1e20), "100000000000000000000"),
            (json!(0.1), "0.1"),
            (json!(-3), "-3"),
            (json!("nan"), "NaN"),
            (json!("-Infinity"), "-Infinity"),
            (json!("0e99999"), "0"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                input(Kind::Numeric, value.clone()),
                Datum::Numeric((*expected).to_owned()),
                "{value}"
            );
        }
        assert_eq!(
            input(Kind::Money, json!("$1,234.50")),
            Datum::Numeric("1234.5".to_owned())
        );
    }

    #[test]
    fn input_temporal() {
        let tz = |s: &str| input(Kind::TimestampTz, json!(s));
        let expected = Datum::TimestampTz(1_704_164_645_123_456);
        for text in [
            "2024-01-02T03:04:05.123456Z",
            "2024-01-02T03:04:05.123456+00:00",
            "2024-01-02 03:04:05.123456+00",
            "2024-01-02T05:04:05.123456+02:00",
            "2024-01-02T05:04:05.123456+0200",
            "2024-01-01T22:04:05.123456-05",
            "2024-01-02t03:04:05.1234564z",
            "2024-01-02T03:04:05.123456",
        ] {
            assert_eq!(tz(text), expected, "{text}");
        }
        assert_eq!(
            tz("2024-01-02T03:04:05.9999995Z"),
            Datum::TimestampTz(1_704_164_646_000_000)
        );
        assert_eq!(tz("2024-01-02"), Datum::TimestampTz(1_704_153_600_000_000));
        assert_eq!(tz("Infinity"), Datum::TemporalText("infinity".to_owned()));
        assert_eq!(
            input(Kind::Timestamp, json!("1970-01-01T00:00:01")),
            Datum::Timestamp(1_000_000)
        );
        assert_eq!(input(Kind::Date, json!("1969-12-31")), Datum::Date(-1));
        assert_eq!(
            input(Kind::Date, json!("-000043-03-15")),
            input(Kind::Date, json!("0044-03-15 BC"))
        );
        assert_eq!(
            input(Kind::Time, json!("03:04")),
            Datum::Time(11_040_000_000)
        );
        assert!(parse_input(Kind::TimestampTz, &json!("99999999-01-01T00:00:00Z")).is_err());
    }
}
