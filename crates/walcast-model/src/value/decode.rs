//! Decoding scalars from the text form pgoutput sends into [`Datum`]s; dates and times in
//! [`super::temporal`]. [`super::text`] chooses between a scalar and an array literal.

use super::numeric::parse_plain_numeric;
use super::temporal::{normalise_timetz, parse_temporal};
use super::{out_of_range, syntax, ValueError};
use crate::datum::{Datum, Kind};

/// Decodes one scalar value (not an array) of `kind` from its text output form.
pub(super) fn decode_scalar(kind: Kind, text: &str) -> Result<Datum, ValueError> {
    match kind {
        Kind::Bool => match text {
            "t" | "true" => Ok(Datum::Bool(true)),
            "f" | "false" => Ok(Datum::Bool(false)),
            _ => Err(syntax(kind, text, "expected t or f")),
        },
        Kind::Int2 | Kind::Int4 | Kind::Int8 => parse_int(kind, text),
        Kind::Float4 | Kind::Float8 => parse_float(kind, text),
        Kind::Numeric => match parse_plain_numeric(text) {
            // Postgres' own spelling is kept, scale included ("1.50").
            Some(_) => Ok(Datum::Numeric(text.to_owned())),
            None => Err(syntax(kind, text, "not a decimal number")),
        },
        // Money output depends on lc_monetary; only a form that is unambiguous becomes a number.
        Kind::Money => Ok(match money_to_decimal(text) {
            Some(decimal) => Datum::Numeric(decimal),
            None => Datum::Text(text.to_owned()),
        }),
        Kind::Text | Kind::Uuid | Kind::Enum | Kind::Other => Ok(Datum::Text(text.to_owned())),
        Kind::Json | Kind::Jsonb => serde_json::from_str(text)
            .map(Datum::json)
            .map_err(|e| syntax(kind, text, e.to_string())),
        Kind::Timestamp | Kind::TimestampTz | Kind::Date | Kind::Time => {
            parse_temporal(kind, text, true)
        }
        Kind::TimeTz => normalise_timetz(text).map(Datum::TemporalText),
        Kind::Interval => Ok(Datum::TemporalText(text.to_owned())),
        Kind::Bytea => decode_bytea(text),
    }
}

pub(super) fn parse_int(kind: Kind, text: &str) -> Result<Datum, ValueError> {
    let value: i64 = text.trim().parse().map_err(|e: std::num::ParseIntError| {
        use std::num::IntErrorKind;
        match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => out_of_range(kind, text),
            _ => syntax(kind, text, "not an integer"),
        }
    })?;
    check_int_range(kind, value, text)
}

pub(super) fn check_int_range(kind: Kind, value: i64, text: &str) -> Result<Datum, ValueError> {
    let fits = match kind {
        Kind::Int2 => i16::try_from(value).is_ok(),
        Kind::Int4 => i32::try_from(value).is_ok(),
        _ => true,
    };
    if fits {
        Ok(Datum::Int(value))
    } else {
        Err(out_of_range(kind, text))
    }
}

pub(super) fn parse_float(kind: Kind, text: &str) -> Result<Datum, ValueError> {
    // Parsed straight to f64 even for float4: its shortest text ("1.1") then renders the same
    // way Postgres renders it, instead of as 1.100000023841858.
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| syntax(kind, text, "not a floating-point number"))?;
    if kind == Kind::Float4 && overflows_f32(value) {
        return Err(out_of_range(kind, text));
    }
    Ok(Datum::Float(value))
}

/// Whether a finite value rounds to infinity as float4 (FLT_MAX prints as 3.4028235e+38, which
/// is slightly above `f32::MAX` as an f64 but still rounds to it).
pub(super) fn overflows_f32(value: f64) -> bool {
    value.is_finite() && (value as f32).is_infinite()
}

pub(super) fn decode_bytea(text: &str) -> Result<Datum, ValueError> {
    let kind = Kind::Bytea;
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits = hex.as_bytes();
        let pairs = digits.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return Err(syntax(kind, text, "odd number of hex digits"));
        }
        return pairs
            .map(|pair| match pair {
                [hi, lo] => Some(hex_value(*hi)? << 4 | hex_value(*lo)?),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .map(Datum::Bytes)
            .ok_or_else(|| syntax(kind, text, "invalid hex digit"));
    }
    // bytea_output = escape: `\\` is a backslash, `\nnn` an octal byte, anything else literal.
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(first @ b'0'..=b'3') => {
                let mut value = first - b'0';
                for _ in 0..2 {
                    match bytes.next() {
                        Some(d @ b'0'..=b'7') => value = value << 3 | (d - b'0'),
                        _ => return Err(syntax(kind, text, "invalid escape sequence")),
                    }
                }
                out.push(value);
            }
            _ => return Err(syntax(kind, text, "invalid escape sequence")),
        }
    }
    Ok(Datum::Bytes(out))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reads money text such as `$1,234.56`, `-$1,234.56` or `($5.00)` as a plain decimal. Returns
/// `None` for other currency layouts, where `.` and `,` could mean either separator.
pub(super) fn money_to_decimal(text: &str) -> Option<String> {
    let t = text.trim();
    let (negative, body) =
        if let Some(inner) = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            (true, inner)
        } else if let Some(rest) = t.strip_prefix('-') {
            (true, rest)
        } else {
            (false, t)
        };
    let body = body.strip_prefix('$').unwrap_or(body);
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (body, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut groups = int.split(',');
    let first = groups.next()?;
    let grouped = int.contains(',');
    if !all_digits(first) || (grouped && first.len() > 3) {
        return None;
    }
    if !groups.all(|g| g.len() == 3 && all_digits(g)) {
        return None;
    }
    if frac.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    let mut out = String::with_capacity(body.len() + 1);
    if negative {
        out.push('-');
    }
    out.extend(int.chars().filter(|c| *c != ','));
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::test_support::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde_json::json;

    #[test]
    fn booleans() {
        check_json(Kind::Bool, &[("t", json!(true)), ("f", json!(false))]);
        check_rejects(Kind::Bool, &["", "yes", "T"]);
    }

    #[test]
    fn integers() {
        check_json(
            Kind::Int2,
            &[
                ("0", json!(0)),
                ("-32768", json!(-32768)),
                ("32767", json!(32767)),
            ],
        );
        check_json(Kind::Int4, &[("-2147483648", json!(-2147483648_i64))]);
        check_json(
            Kind::Int8,
            &[
                ("9223372036854775807", json!("9223372036854775807")),
                ("-9223372036854775808", json!("-9223372036854775808")),
                ("42", json!("42")),
            ],
        );
        check_rejects(Kind::Int2, &["32768", "1.5", "", "abc"]);
        check_rejects(Kind::Int4, &["2147483648"]);
        assert!(matches!(
            decode(Kind::Int8, "9223372036854775808"),
            Err(ValueError::OutOfRange { .. })
        ));
    }

    #[test]
    fn floats() {
        check_json(
            Kind::Float8,
            &[
                ("1.5", json!(1.5)),
                ("-0.1", json!(-0.1)),
                ("1e+20", json!(1e20)),
                ("NaN", json!("NaN")),
                ("Infinity", json!("Infinity")),
                ("-Infinity", json!("-Infinity")),
            ],
        );
        check_json(
            Kind::Float4,
            &[("1.1", json!(1.1)), ("3.4028235e+38", json!(3.4028235e38))],
        );
        check_rejects(Kind::Float8, &["", "1.2.3", "x"]);
        check_rejects(Kind::Float4, &["1e39"]);
    }

    #[test]
    fn numerics() {
        check_json(
            Kind::Numeric,
            &[
                ("1.50", json!("1.50")),
                ("-0.000001", json!("-0.000001")),
                (
                    "123456789012345678901234567890.123",
                    json!("123456789012345678901234567890.123"),
                ),
                ("NaN", json!("NaN")),
                ("Infinity", json!("Infinity")),
                ("-Infinity", json!("-Infinity")),
            ],
        );
        check_rejects(Kind::Numeric, &["", "1e5", "abc", "1.2.3", "-", "."]);
    }

    #[test]
    fn money() {
        check_json(
            Kind::Money,
            &[
                ("$1,234.56", json!("1234.56")),
                ("-$1,234.56", json!("-1234.56")),
                ("($5.00)", json!("-5.00")),
                ("$0.00", json!("0.00")),
                ("$92,233,720,368,547,758.07", json!("92233720368547758.07")),
                // Ambiguous layouts stay as Postgres printed them.
                ("1.234,56 €", json!("1.234,56 €")),
                ("$1,23.00", json!("$1,23.00")),
            ],
        );
    }

    #[test]
    fn text_like() {
        for kind in [Kind::Text, Kind::Uuid, Kind::Enum, Kind::Other] {
            check_json(
                kind,
                &[("", json!("")), ("a \"b\" \\ c", json!("a \"b\" \\ c"))],
            );
        }
    }

    #[test]
    fn json_values() {
        check_json(
            Kind::Jsonb,
            &[
                (
                    r#"{"a": [1, 2.5, null, "x"]}"#,
                    json!({"a": [1, 2.5, null, "x"]}),
                ),
                ("null", json!(null)),
                ("\"s\"", json!("s")),
            ],
        );
        check_rejects(Kind::Json, &["{", ""]);
    }

    #[test]
    fn bytea() {
        check_json(
            Kind::Bytea,
            &[
                ("\\x", json!("")),
                ("\\x00ff10", json!("AP8Q")),
                ("\\xDEADBEEF", json!("3q2+7w==")),
                // bytea_output = escape
                (
                    "ab\\\\c\\000\\377",
                    json!(STANDARD.encode(b"ab\\c\x00\xff")),
                ),
            ],
        );
        check_rejects(Kind::Bytea, &["\\x0", "\\xzz", "a\\9", "a\\"]);
    }
}
