//! Column values: decoding pgoutput text, the JSON form sent to subscribers, client filter
//! literals, and comparison.
//!
//! Text decoding assumes the session settings walcast uses for replication: `DateStyle=ISO`,
//! `TimeZone=UTC`, `IntervalStyle=iso_8601` and `extra_float_digits=3`.
//!
//! JSON forms of temporal values (see [`Datum::to_json`](crate::Datum::to_json)):
//! - timestamptz `2024-01-02T03:04:05.123456Z`, timestamp `2024-01-02T03:04:05`,
//!   date `2024-01-02`, time `03:04:05`. The fraction is printed with exactly six digits when it
//!   is non-zero and omitted when it is zero, so equal instants always render identically.
//! - Years 0000..=9999 use four digits; other years use the ISO 8601 expanded form with a sign
//!   and six digits (as JavaScript does): `+010000-01-01`, and astronomical numbering for BC
//!   (`0044-03-15 BC` in Postgres is `-000043-03-15`).
//! - `infinity` / `-infinity`, timetz and interval travel as text
//!   ([`Datum::TemporalText`](crate::Datum::TemporalText)). timetz is normalised to
//!   `HH:MM:SS[.ffffff]±HH:MM[:SS]`; intervals are kept as Postgres prints them (ISO 8601
//!   durations under `IntervalStyle=iso_8601`).

mod array;
mod compare;
mod decode;
mod input;
mod json;
mod numeric;
mod temporal;
#[cfg(test)]
mod test_support;
mod text;

pub use input::parse_input;
pub use numeric::canonical_plain_numeric;
pub use temporal::civil_from_days;
pub use text::decode_text;

use crate::datum::Kind;

/// How much of an offending value an error message quotes.
const SNIPPET_CHARS: usize = 80;

/// Why a value could not be decoded or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Text that is not valid syntax for its type.
    #[error("invalid {type_name} value {text:?}: {reason}")]
    Syntax {
        type_name: &'static str,
        text: String,
        reason: String,
    },
    /// Well-formed, but outside what the type (or walcast's representation of it) can hold.
    #[error("{type_name} value {text:?} is out of range")]
    OutOfRange {
        type_name: &'static str,
        text: String,
    },
    /// A malformed array literal.
    #[error("invalid {type_name}[] literal {text:?} at byte {pos}: {reason}")]
    ArraySyntax {
        type_name: &'static str,
        text: String,
        pos: usize,
        reason: &'static str,
    },
    /// An array element that is invalid for the element type. `index` counts elements in
    /// textual order across all dimensions, from 0.
    #[error("element {index} of {type_name}[] value: {error}")]
    ArrayElement {
        type_name: &'static str,
        index: usize,
        error: Box<ValueError>,
    },
    /// A client literal of the wrong JSON type.
    #[error("expected {expected} for a {type_name} value, got {got}")]
    InputType {
        type_name: &'static str,
        expected: &'static str,
        got: String,
    },
}

/// Maps a Postgres base type name (`pg_type.typname`) to its [`Kind`].
///
/// Enums are recognised by the caller (`typtype = 'e'`) and domains resolved to their base type
/// first; any other name is [`Kind::Other`].
pub fn kind_for_type_name(name: &str) -> Kind {
    match name {
        "bool" => Kind::Bool,
        "int2" => Kind::Int2,
        "int4" => Kind::Int4,
        "int8" => Kind::Int8,
        "float4" => Kind::Float4,
        "float8" => Kind::Float8,
        "numeric" => Kind::Numeric,
        "money" => Kind::Money,
        "text" | "varchar" | "bpchar" | "char" | "name" | "citext" => Kind::Text,
        "uuid" => Kind::Uuid,
        "json" => Kind::Json,
        "jsonb" => Kind::Jsonb,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::TimestampTz,
        "date" => Kind::Date,
        "time" => Kind::Time,
        "timetz" => Kind::TimeTz,
        "interval" => Kind::Interval,
        "bytea" => Kind::Bytea,
        _ => Kind::Other,
    }
}

/// The type name used in error messages.
fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "bool",
        Kind::Int2 => "int2",
        Kind::Int4 => "int4",
        Kind::Int8 => "int8",
        Kind::Float4 => "float4",
        Kind::Float8 => "float8",
        Kind::Numeric => "numeric",
        Kind::Money => "money",
        Kind::Text => "text",
        Kind::Uuid => "uuid",
        Kind::Json => "json",
        Kind::Jsonb => "jsonb",
        Kind::Timestamp => "timestamp",
        Kind::TimestampTz => "timestamptz",
        Kind::Date => "date",
        Kind::Time => "time",
        Kind::TimeTz => "timetz",
        Kind::Interval => "interval",
        Kind::Bytea => "bytea",
        Kind::Enum => "enum",
        Kind::Other => "text-form",
    }
}

/// The start of `text`, for quoting in error messages without copying megabytes.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

fn syntax(kind: Kind, text: &str, reason: impl Into<String>) -> ValueError {
    ValueError::Syntax {
        type_name: kind_label(kind),
        text: snippet(text),
        reason: reason.into(),
    }
}

fn out_of_range(kind: Kind, text: &str) -> ValueError {
    ValueError::OutOfRange {
        type_name: kind_label(kind),
        text: snippet(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::test_support::*;
    use serde_json::json;

    #[test]
    fn type_names() {
        let cases = [
            ("bool", Kind::Bool),
            ("int2", Kind::Int2),
            ("int4", Kind::Int4),
            ("int8", Kind::Int8),
            ("float4", Kind::Float4),
            ("float8", Kind::Float8),
            ("numeric", Kind::Numeric),
            ("money", Kind::Money),
            ("text", Kind::Text),
            ("varchar", Kind::Text),
            ("bpchar", Kind::Text),
            ("char", Kind::Text),
            ("name", Kind::Text),
            ("citext", Kind::Text),
            ("uuid", Kind::Uuid),
            ("json", Kind::Json),
            ("jsonb", Kind::Jsonb),
            ("timestamp", Kind::Timestamp),
            ("timestamptz", Kind::TimestampTz),
            ("date", Kind::Date),
            ("time", Kind::Time),
            ("timetz", Kind::TimeTz),
            ("interval", Kind::Interval),
            ("bytea", Kind::Bytea),
            ("inet", Kind::Other),
            ("integer", Kind::Other),
            ("_int4", Kind::Other),
        ];
        for (name, kind) in cases {
            assert_eq!(kind_for_type_name(name), kind, "{name}");
        }
    }

    #[test]
    fn error_messages_name_type_and_value() {
        let e = decode(Kind::Int4, "abc").expect_err("rejected").to_string();
        assert!(e.contains("int4") && e.contains("abc"), "{e}");
        let e = parse_input(Kind::Date, &json!(5))
            .expect_err("rejected")
            .to_string();
        assert!(e.contains("date") && e.contains("number 5"), "{e}");
        let long = "x".repeat(1000);
        let e = decode(Kind::Int4, &long).expect_err("rejected").to_string();
        assert!(e.len() < 300, "{e}");
    }
}
