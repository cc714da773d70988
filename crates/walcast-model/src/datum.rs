//! Typed column values.

/// The Postgres type families walcast distinguishes. Everything else is `Other` and travels as
/// its Postgres text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Money,
    Text,
    Uuid,
    Json,
    Jsonb,
    Timestamp,
    TimestampTz,
    Date,
    Time,
    TimeTz,
    Interval,
    Bytea,
    Enum,
    Other,
}

/// A column type: a scalar kind, or an array of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    /// The Postgres type name, e.g. `int4`, `_text`, `mood`.
    pub name: String,
    pub kind: Kind,
    /// True for array types; `kind` is then the element kind.
    pub array: bool,
    /// The labels of an enum type, in order.
    pub enum_values: Vec<String>,
}

/// A column value, typed by its column's [`PgType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    /// An unchanged TOASTed value Postgres did not send and walcast could not fill in.
    Unavailable,
    Bool(bool),
    /// int2, int4, int8.
    Int(i64),
    /// float4, float8 (NaN and infinities included).
    Float(f64),
    /// numeric and money, in canonical text form (no precision lost).
    Numeric(String),
    /// text-like values: text, varchar, char, name, citext, uuid, enums, unknown types.
    Text(String),
    /// Boxed: a JSON value is large, and rows are mostly other types.
    Json(Box<serde_json::Value>),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    TimestampTz(i64),
    /// Microseconds since 1970-01-01 00:00:00, no time zone.
    Timestamp(i64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Values kept in ISO 8601 text: timetz, interval, and infinite dates/timestamps.
    TemporalText(String),
    Bytes(Vec<u8>),
    Array(Vec<Datum>),
}

impl Datum {
    pub fn json(v: serde_json::Value) -> Datum {
        Datum::Json(Box::new(v))
    }
}
