//! Column values: decoding pgoutput text, the JSON form sent to subscribers, client filter
//! literals, and comparison.
//!
//! Text decoding assumes the session settings walcast uses for replication: `DateStyle=ISO`,
//! `TimeZone=UTC`, `IntervalStyle=iso_8601` and `extra_float_digits=3`.
//!
//! JSON forms of temporal values (see [`Datum::to_json`]):
//! - timestamptz `2024-01-02T03:04:05.123456Z`, timestamp `2024-01-02T03:04:05`,
//!   date `2024-01-02`, time `03:04:05`. The fraction is printed with exactly six digits when it
//!   is non-zero and omitted when it is zero, so equal instants always render identically.
//! - Years 0000..=9999 use four digits; other years use the ISO 8601 expanded form with a sign
//!   and six digits (as JavaScript does): `+010000-01-01`, and astronomical numbering for BC
//!   (`0044-03-15 BC` in Postgres is `-000043-03-15`).
//! - `infinity` / `-infinity`, timetz and interval travel as text ([`Datum::TemporalText`]).
//!   timetz is normalised to `HH:MM:SS[.ffffff]±HH:MM[:SS]`; intervals are kept as Postgres
//!   prints them (ISO 8601 durations under `IntervalStyle=iso_8601`).

use std::cmp::Ordering;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use crate::datum::{Datum, Kind, PgType};

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;
/// Postgres' MAXDIM; also bounds recursion on hostile input.
const MAX_ARRAY_DIMS: usize = 6;
/// Bound on exponents in numeric literals, so `1e999999999` cannot allocate a huge string.
/// f64 needs at most ~330.
const MAX_DECIMAL_EXPONENT: i64 = 1000;
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

// ---------------------------------------------------------------------------------------------
// Decoding pgoutput text
// ---------------------------------------------------------------------------------------------

/// Decodes a value in Postgres text output form, as pgoutput sends it.
///
/// Array types are parsed from array literal syntax (`{1,NULL,"a b"}`, nested braces for more
/// dimensions, an optional `[lo:hi]=` prefix) into [`Datum::Array`]. The element delimiter is
/// `,` except for `box` (`;`); arrays of [`Kind::Other`] types that do not parse are kept whole
/// as [`Datum::Text`].
pub fn decode_text(ty: &PgType, text: &str) -> Result<Datum, ValueError> {
    if !ty.array {
        return decode_scalar(ty.kind, text);
    }
    let delimiter = if ty.name == "_box" || ty.name == "box" {
        b';'
    } else {
        b','
    };
    match ArrayParser::new(text, delimiter, ty.kind).parse() {
        Ok(datum) => Ok(datum),
        Err(_) if ty.kind == Kind::Other => Ok(Datum::Text(text.to_owned())),
        Err(e) => Err(e),
    }
}

fn decode_scalar(kind: Kind, text: &str) -> Result<Datum, ValueError> {
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

fn parse_int(kind: Kind, text: &str) -> Result<Datum, ValueError> {
    let value: i64 = text.trim().parse().map_err(|e: std::num::ParseIntError| {
        use std::num::IntErrorKind;
        match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => out_of_range(kind, text),
            _ => syntax(kind, text, "not an integer"),
        }
    })?;
    check_int_range(kind, value, text)
}

fn check_int_range(kind: Kind, value: i64, text: &str) -> Result<Datum, ValueError> {
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

fn parse_float(kind: Kind, text: &str) -> Result<Datum, ValueError> {
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
fn overflows_f32(value: f64) -> bool {
    value.is_finite() && (value as f32).is_infinite()
}

fn decode_bytea(text: &str) -> Result<Datum, ValueError> {
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
fn money_to_decimal(text: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// Array literals
// ---------------------------------------------------------------------------------------------

struct ArrayParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    delimiter: u8,
    kind: Kind,
    elements: usize,
}

impl<'a> ArrayParser<'a> {
    fn new(text: &'a str, delimiter: u8, kind: Kind) -> Self {
        ArrayParser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            delimiter,
            kind,
            elements: 0,
        }
    }

    fn parse(mut self) -> Result<Datum, ValueError> {
        self.skip_ws();
        if self.peek() == Some(b'[') {
            self.dimensions()?;
        }
        let datum = self.level(1)?;
        self.skip_ws();
        if self.pos != self.bytes.len() {
            return Err(self.error("unexpected text after the closing brace"));
        }
        Ok(datum)
    }

    fn error(&self, reason: &'static str) -> ValueError {
        ValueError::ArraySyntax {
            type_name: kind_label(self.kind),
            text: snippet(self.text),
            pos: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), ValueError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    fn bound(&mut self) -> Result<(), ValueError> {
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a dimension bound"));
        }
        Ok(())
    }

    /// Skips the `[lo:hi][lo:hi]=` decoration Postgres adds when a lower bound is not 1; the
    /// bounds themselves carry nothing walcast keeps.
    fn dimensions(&mut self) -> Result<(), ValueError> {
        let mut count = 0;
        while self.peek() == Some(b'[') {
            count += 1;
            if count > MAX_ARRAY_DIMS {
                return Err(self.error("too many dimensions"));
            }
            self.pos += 1;
            self.bound()?;
            if self.peek() == Some(b':') {
                self.pos += 1;
                self.bound()?;
            }
            self.expect(b']', "expected ']' after a dimension")?;
        }
        self.skip_ws();
        self.expect(b'=', "expected '=' after the dimensions")?;
        self.skip_ws();
        Ok(())
    }

    fn level(&mut self, depth: usize) -> Result<Datum, ValueError> {
        if depth > MAX_ARRAY_DIMS {
            return Err(self.error("too many dimensions"));
        }
        self.expect(b'{', "expected '{'")?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Datum::Array(items));
        }
        loop {
            self.skip_ws();
            let item = match self.peek() {
                Some(b'{') => self.level(depth + 1)?,
                Some(b'"') => {
                    let text = self.quoted()?;
                    self.element(Some(&text))?
                }
                _ => {
                    let (text, is_null) = self.unquoted()?;
                    self.element((!is_null).then_some(text.as_str()))?
                }
            };
            items.push(item);
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Datum::Array(items));
                }
                Some(b) if b == self.delimiter => self.pos += 1,
                _ => return Err(self.error("expected a delimiter or '}'")),
            }
        }
    }

    fn element(&mut self, text: Option<&str>) -> Result<Datum, ValueError> {
        let index = self.elements;
        self.elements += 1;
        match text {
            None => Ok(Datum::Null),
            Some(text) => decode_scalar(self.kind, text).map_err(|e| ValueError::ArrayElement {
                type_name: kind_label(self.kind),
                index,
                error: Box::new(e),
            }),
        }
    }

    fn quoted(&mut self) -> Result<String, ValueError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted element")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated quoted element"))?;
                    out.push(escaped);
                    self.pos += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        self.utf8(out)
    }

    /// Returns the element text and whether it was the bare word NULL.
    fn unquoted(&mut self) -> Result<(String, bool), ValueError> {
        let mut out = Vec::new();
        // Unescaped trailing whitespace is not part of the element.
        let mut significant = 0;
        let mut escaped_any = false;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated array")),
                Some(b) if b == self.delimiter || b == b'}' => break,
                Some(b'{' | b'"') => return Err(self.error("unexpected character in element")),
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated array"))?;
                    out.push(escaped);
                    self.pos += 1;
                    significant = out.len();
                    escaped_any = true;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                    if !b.is_ascii_whitespace() {
                        significant = out.len();
                    }
                }
            }
        }
        out.truncate(significant);
        if out.is_empty() {
            return Err(self.error("empty element"));
        }
        let is_null = !escaped_any && out.eq_ignore_ascii_case(b"NULL");
        Ok((self.utf8(out)?, is_null))
    }

    fn utf8(&self, bytes: Vec<u8>) -> Result<String, ValueError> {
        // Only ASCII bytes are ever dropped from valid UTF-8 input, so this holds; checked anyway.
        String::from_utf8(bytes).map_err(|_| self.error("element is not valid UTF-8"))
    }
}

// ---------------------------------------------------------------------------------------------
// Dates and times
// ---------------------------------------------------------------------------------------------

/// A temporal value that parsed to a point (days for dates, microseconds otherwise; wide so
/// Postgres' whole timestamp range fits), or an infinity (kept as text).
enum Temporal {
    Finite(i128),
    Infinite(&'static str),
}

enum TemporalError {
    Syntax(&'static str),
    Range,
}

fn infinity(text: &str) -> Option<&'static str> {
    if text.eq_ignore_ascii_case("infinity") || text.eq_ignore_ascii_case("+infinity") {
        Some("infinity")
    } else if text.eq_ignore_ascii_case("-infinity") {
        Some("-infinity")
    } else {
        None
    }
}

/// Parses timestamp, timestamptz, date or time text into its [`Datum`]. Values beyond what the
/// datum holds (timestamps after year 294246, which Postgres allows until 294276) are an error,
/// or with `overflow_as_text` kept in their JSON text form as [`Datum::TemporalText`].
fn parse_temporal(kind: Kind, text: &str, overflow_as_text: bool) -> Result<Datum, ValueError> {
    let t = text.trim();
    let parsed = match kind {
        Kind::Timestamp => parse_timestamp(t, false),
        Kind::TimestampTz => parse_timestamp(t, true),
        Kind::Date => parse_date(t),
        _ => parse_time_of_day(t),
    };
    match parsed {
        Ok(Temporal::Infinite(word)) => Ok(Datum::TemporalText(word.to_owned())),
        Ok(Temporal::Finite(v)) => {
            let datum = match kind {
                Kind::Timestamp => i64::try_from(v).ok().map(Datum::Timestamp),
                Kind::TimestampTz => i64::try_from(v).ok().map(Datum::TimestampTz),
                Kind::Date => i32::try_from(v).ok().map(Datum::Date),
                _ => i64::try_from(v).ok().map(Datum::Time),
            };
            match datum {
                Some(datum) => Ok(datum),
                None if overflow_as_text => Ok(Datum::TemporalText(match kind {
                    Kind::TimestampTz => format!("{}Z", format_timestamp(v)),
                    Kind::Timestamp => format_timestamp(v),
                    _ => format_date(v),
                })),
                None => Err(out_of_range(kind, text)),
            }
        }
        Err(TemporalError::Syntax(reason)) => Err(syntax(kind, text, reason)),
        Err(TemporalError::Range) => Err(out_of_range(kind, text)),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn starts_with(&self, s: &str) -> bool {
        self.bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(s.as_bytes()))
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let hit = self.starts_with(s);
        if hit {
            self.pos += s.len();
        }
        hit
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Reads `min..=max` decimal digits; `max` stays below 19 so the value cannot overflow.
    fn number(&mut self, min: usize, max: usize, what: &'static str) -> Result<i64, TemporalError> {
        let start = self.pos;
        let mut value: i64 = 0;
        while self.pos - start < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + i64::from(b - b'0');
                    self.pos += 1;
                }
                _ => break,
            }
        }
        if self.pos - start < min {
            Err(TemporalError::Syntax(what))
        } else {
            Ok(value)
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), TemporalError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(TemporalError::Syntax(what))
        }
    }
}

struct DateParts {
    year: i64,
    signed: bool,
    month: i64,
    day: i64,
}

/// `[+-]YYYY-MM-DD`, at least four year digits.
fn date_parts(c: &mut Cursor<'_>) -> Result<DateParts, TemporalError> {
    let sign = if c.eat(b'-') {
        Some(-1)
    } else if c.eat(b'+') {
        Some(1)
    } else {
        None
    };
    let year = c.number(4, 9, "expected a year of at least four digits")?;
    c.expect(b'-', "expected '-' after the year")?;
    let month = c.number(2, 2, "expected a two-digit month")?;
    c.expect(b'-', "expected '-' after the month")?;
    let day = c.number(2, 2, "expected a two-digit day")?;
    Ok(DateParts {
        year: year * sign.unwrap_or(1),
        signed: sign.is_some(),
        month,
        day,
    })
}

/// Days since 1970-01-01 of a validated date; `bc` applies Postgres' `BC` suffix.
fn date_days(parts: &DateParts, bc: bool) -> Result<i64, TemporalError> {
    let year = if bc {
        if parts.signed || parts.year < 1 {
            return Err(TemporalError::Syntax(
                "a BC year must be positive and unsigned",
            ));
        }
        1 - parts.year
    } else {
        parts.year
    };
    if !(1..=12).contains(&parts.month) {
        return Err(TemporalError::Syntax("month out of range"));
    }
    if parts.day < 1 || parts.day > days_in_month(year, parts.month) {
        return Err(TemporalError::Syntax("day out of range for the month"));
    }
    Ok(days_from_civil(year, parts.month, parts.day))
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Proleptic Gregorian calendar, astronomical years (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `HH:MM[:SS[.fraction]]` as microseconds; `24:00:00` is allowed, as in Postgres, and a
/// fraction beyond microseconds is rounded half up.
fn clock(c: &mut Cursor<'_>) -> Result<i64, TemporalError> {
    let hour = c.number(2, 2, "expected a two-digit hour")?;
    c.expect(b':', "expected ':' after the hour")?;
    let minute = c.number(2, 2, "expected two-digit minutes")?;
    let mut second = 0;
    let mut micros = 0;
    if c.eat(b':') {
        second = c.number(2, 2, "expected two-digit seconds")?;
        if c.eat(b'.') || c.eat(b',') {
            micros = fraction(c)?;
        }
    }
    // Second 60 (a leap second) rolls over into the next minute, as Postgres does.
    if hour > 24 || minute > 59 || second > 60 {
        return Err(TemporalError::Syntax("time field out of range"));
    }
    if hour == 24 && (minute, second, micros) != (0, 0, 0) {
        return Err(TemporalError::Syntax("time field out of range"));
    }
    Ok(((hour * 60 + minute) * 60 + second) * US_PER_SEC + micros)
}

fn fraction(c: &mut Cursor<'_>) -> Result<i64, TemporalError> {
    let mut micros: i64 = 0;
    let mut digits = 0usize;
    let mut round_up = false;
    while let Some(b @ b'0'..=b'9') = c.peek() {
        let d = i64::from(b - b'0');
        if digits < 6 {
            micros = micros * 10 + d;
        } else if digits == 6 {
            round_up = d >= 5;
        }
        digits += 1;
        c.pos += 1;
    }
    if digits == 0 {
        return Err(TemporalError::Syntax(
            "expected digits after the decimal point",
        ));
    }
    for _ in digits..6 {
        micros *= 10;
    }
    Ok(micros + i64::from(round_up))
}

/// An optional UTC offset (`Z`, `±HH`, `±HH:MM`, `±HHMM`, `±HH:MM:SS`) in seconds east.
fn zone(c: &mut Cursor<'_>) -> Result<Option<i64>, TemporalError> {
    let sign = match c.peek() {
        Some(b'Z' | b'z') => {
            c.pos += 1;
            return Ok(Some(0));
        }
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Ok(None),
    };
    c.pos += 1;
    let hours = c.number(2, 2, "expected a two-digit offset hour")?;
    let mut minutes = 0;
    let mut seconds = 0;
    if c.eat(b':') {
        minutes = c.number(2, 2, "expected two-digit offset minutes")?;
        if c.eat(b':') {
            seconds = c.number(2, 2, "expected two-digit offset seconds")?;
        }
    } else if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        minutes = c.number(2, 2, "expected two-digit offset minutes")?;
    }
    if hours > 23 || minutes > 59 || seconds > 59 {
        return Err(TemporalError::Syntax("UTC offset out of range"));
    }
    Ok(Some(sign * ((hours * 60 + minutes) * 60 + seconds)))
}

/// `date[( |T)clock[zone]][ BC]`, or a date alone (midnight). Without an offset, timestamptz
/// text is read as UTC, the session time zone walcast uses.
fn parse_timestamp(text: &str, with_zone: bool) -> Result<Temporal, TemporalError> {
    if let Some(word) = infinity(text) {
        return Ok(Temporal::Infinite(word));
    }
    let mut c = Cursor::new(text);
    let parts = date_parts(&mut c)?;
    let mut micros = 0;
    let mut offset = None;
    if !c.starts_with(" BC") && (c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        micros = clock(&mut c)?;
        offset = zone(&mut c)?;
    }
    let bc = c.eat_str(" BC");
    if !c.at_end() {
        return Err(TemporalError::Syntax("unexpected trailing characters"));
    }
    if offset.is_some() && !with_zone {
        return Err(TemporalError::Syntax(
            "timestamp without time zone does not take a UTC offset",
        ));
    }
    let days = date_days(&parts, bc)?;
    // Cannot overflow: days stay below 2^40.
    let micros = i128::from(days) * i128::from(US_PER_DAY) + i128::from(micros)
        - i128::from(offset.unwrap_or(0) * US_PER_SEC);
    Ok(Temporal::Finite(micros))
}

fn parse_date(text: &str) -> Result<Temporal, TemporalError> {
    if let Some(word) = infinity(text) {
        return Ok(Temporal::Infinite(word));
    }
    let mut c = Cursor::new(text);
    let parts = date_parts(&mut c)?;
    let bc = c.eat_str(" BC");
    if !c.at_end() {
        return Err(TemporalError::Syntax("unexpected trailing characters"));
    }
    date_days(&parts, bc).map(|days| Temporal::Finite(days.into()))
}

fn parse_time_of_day(text: &str) -> Result<Temporal, TemporalError> {
    let mut c = Cursor::new(text);
    let micros = clock(&mut c)?;
    if !c.at_end() {
        return Err(TemporalError::Syntax("unexpected trailing characters"));
    }
    if micros > US_PER_DAY {
        return Err(TemporalError::Range);
    }
    Ok(Temporal::Finite(micros.into()))
}

/// Re-renders timetz text as `HH:MM:SS[.ffffff]±HH:MM[:SS]`, so equal values compare equal as
/// text and the offset is in ISO 8601 extended form.
fn normalise_timetz(text: &str) -> Result<String, ValueError> {
    let kind = Kind::TimeTz;
    let t = text.trim();
    let mut c = Cursor::new(t);
    let parsed = clock(&mut c).and_then(|micros| Ok((micros, zone(&mut c)?)));
    let (micros, offset) = match parsed {
        Ok((micros, Some(offset))) if c.at_end() => (micros, offset),
        Ok((_, None)) => return Err(syntax(kind, text, "expected a UTC offset")),
        Ok(_) => return Err(syntax(kind, text, "unexpected trailing characters")),
        Err(TemporalError::Syntax(reason)) => return Err(syntax(kind, text, reason)),
        Err(TemporalError::Range) => return Err(out_of_range(kind, text)),
    };
    if micros > US_PER_DAY {
        return Err(out_of_range(kind, text));
    }
    let mut out = format_time(micros);
    let abs = offset.abs();
    let sign = if offset < 0 { '-' } else { '+' };
    out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60));
    if abs % 60 != 0 {
        out.push_str(&format!(":{:02}", abs % 60));
    }
    Ok(out)
}

fn format_year(year: i64) -> String {
    if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year > 0 {
        format!("+{year:06}")
    } else {
        format!("-{:06}", year.unsigned_abs())
    }
}

fn format_date(days: impl Into<i128>) -> String {
    // Any i128 day count from a datum or parser is far inside i64.
    let days = i64::try_from(days.into()).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(days);
    format!("{}-{month:02}-{day:02}", format_year(year))
}

/// `HH:MM:SS`, plus `.ffffff` (always six digits) when the fraction is non-zero.
fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(US_PER_SEC);
    let frac = micros.rem_euclid(US_PER_SEC);
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

fn format_timestamp(micros: impl Into<i128>) -> String {
    let micros = micros.into();
    let per_day = i128::from(US_PER_DAY);
    let time = i64::try_from(micros.rem_euclid(per_day)).unwrap_or_default();
    format!(
        "{}T{}",
        format_date(micros.div_euclid(per_day)),
        format_time(time)
    )
}

// ---------------------------------------------------------------------------------------------
// Decimal numbers
// ---------------------------------------------------------------------------------------------

/// A finite decimal with `int` stripped of leading zeros and `frac` of trailing zeros; zero is
/// two empty strings and never negative.
#[derive(Clone, Copy)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

#[derive(Clone, Copy)]
enum NumericValue<'a> {
    NegInfinity,
    Finite(Decimal<'a>),
    Infinity,
    NaN,
}

impl NumericValue<'_> {
    /// Postgres' order: -Infinity < finite < Infinity < NaN.
    fn rank(&self) -> u8 {
        match self {
            NumericValue::NegInfinity => 0,
            NumericValue::Finite(_) => 1,
            NumericValue::Infinity => 2,
            NumericValue::NaN => 3,
        }
    }
}

fn numeric_special(text: &str) -> Option<NumericValue<'static>> {
    let is = |word: &str| text.eq_ignore_ascii_case(word);
    if is("NaN") {
        Some(NumericValue::NaN)
    } else if is("Infinity") || is("+Infinity") || is("inf") || is("+inf") {
        Some(NumericValue::Infinity)
    } else if is("-Infinity") || is("-inf") {
        Some(NumericValue::NegInfinity)
    } else {
        None
    }
}

/// Plain decimal syntax (`[+-]digits[.digits]`, no exponent) or a special value.
fn parse_plain_numeric(text: &str) -> Option<NumericValue<'_>> {
    if let Some(special) = numeric_special(text) {
        return Some(special);
    }
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    Some(NumericValue::Finite(Decimal {
        negative: negative && !(int.is_empty() && frac.is_empty()),
        int,
        frac,
    }))
}

enum NumericError {
    Syntax,
    Range,
}

/// Canonical text of a numeric literal: optional exponent expanded, leading zeros and trailing
/// fractional zeros removed, no `-0`, specials spelt `NaN`, `Infinity`, `-Infinity`.
fn canonical_numeric(text: &str) -> Result<String, NumericError> {
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(at) => {
            let exp = t.get(at + 1..).unwrap_or_default();
            let exp: i64 = exp.parse().map_err(|_| NumericError::Syntax)?;
            (t.get(..at).unwrap_or_default(), exp)
        }
        None => (t, 0),
    };
    let value = parse_plain_numeric(mantissa).ok_or(NumericError::Syntax)?;
    let dec = match value {
        NumericValue::Finite(dec) => dec,
        NumericValue::NaN if exponent == 0 => return Ok("NaN".to_owned()),
        NumericValue::Infinity if exponent == 0 => return Ok("Infinity".to_owned()),
        NumericValue::NegInfinity if exponent == 0 => return Ok("-Infinity".to_owned()),
        _ => return Err(NumericError::Syntax),
    };
    if dec.int.is_empty() && dec.frac.is_empty() {
        return Ok("0".to_owned());
    }
    if exponent.unsigned_abs() > MAX_DECIMAL_EXPONENT.unsigned_abs() {
        return Err(NumericError::Range);
    }
    let digits = format!("{}{}", dec.int, dec.frac);
    // Position of the decimal point within `digits` after applying the exponent.
    let point = dec.int.len() as i64 + exponent;
    let (int, frac) = if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        (String::new(), format!("{zeros}{digits}"))
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        (format!("{digits}{zeros}"), String::new())
    } else {
        let at = point as usize;
        let part = |r: Option<&str>| r.unwrap_or_default().to_owned();
        (part(digits.get(..at)), part(digits.get(at..)))
    };
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 3);
    if dec.negative {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Ok(out)
}

fn compare_decimal(a: &Decimal<'_>, b: &Decimal<'_>) -> Ordering {
    let magnitude = |x: &Decimal<'_>, y: &Decimal<'_>| {
        x.int
            .len()
            .cmp(&y.int.len())
            .then_with(|| x.int.cmp(y.int))
            .then_with(|| x.frac.cmp(y.frac))
    };
    match (a.negative, b.negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude(a, b),
        (true, true) => magnitude(b, a),
    }
}

/// Compares numeric texts exactly, without going through floating point.
fn compare_numeric(a: &str, b: &str) -> Option<Ordering> {
    // Numeric datums are plain decimals; anything else (an exponent) is canonicalised first.
    let a_owned: String;
    let b_owned: String;
    let a = match parse_plain_numeric(a) {
        Some(v) => v,
        None => {
            a_owned = canonical_numeric(a).ok()?;
            parse_plain_numeric(&a_owned)?
        }
    };
    let b = match parse_plain_numeric(b) {
        Some(v) => v,
        None => {
            b_owned = canonical_numeric(b).ok()?;
            parse_plain_numeric(&b_owned)?
        }
    };
    Some(match (a, b) {
        (NumericValue::Finite(x), NumericValue::Finite(y)) => compare_decimal(&x, &y),
        _ => a.rank().cmp(&b.rank()),
    })
}

// ---------------------------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Client literals
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/// Postgres float order: NaN equals NaN and sorts above everything; -0 equals 0.
fn compare_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) if a < b => Ordering::Less,
        (false, false) if a > b => Ordering::Greater,
        (false, false) => Ordering::Equal,
    }
}

/// Structural JSON equality with numbers compared by value (`1` equals `1.0`), like jsonb.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || compare_numeric(&x.to_string(), &y.to_string()) == Some(Ordering::Equal)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// `Some(true)` for `infinity`, `Some(false)` for `-infinity`.
fn infinite_sign(text: &str) -> Option<bool> {
    match text {
        "infinity" => Some(true),
        "-infinity" => Some(false),
        _ => None,
    }
}

fn compare_temporal_text(a: &str, b: &str) -> Option<Ordering> {
    if a == b {
        return Some(Ordering::Equal);
    }
    match (infinite_sign(a), infinite_sign(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        // timetz and interval text is only known equal or not.
        _ => None,
    }
}

fn compare_datums(a: &Datum, b: &Datum, enum_labels: Option<&[String]>) -> Option<Ordering> {
    use Datum as D;
    match (a, b) {
        (D::Bool(x), D::Bool(y)) => Some(x.cmp(y)),
        (D::Int(x), D::Int(y)) => Some(x.cmp(y)),
        (D::Float(x), D::Float(y)) => Some(compare_f64(*x, *y)),
        (D::Int(x), D::Float(y)) => Some(compare_f64(*x as f64, *y)),
        (D::Float(x), D::Int(y)) => Some(compare_f64(*x, *y as f64)),
        (D::Numeric(x), D::Numeric(y)) => compare_numeric(x, y),
        (D::Int(x), D::Numeric(y)) => compare_numeric(&x.to_string(), y),
        (D::Numeric(x), D::Int(y)) => compare_numeric(x, &y.to_string()),
        (D::Text(x), D::Text(y)) => match enum_labels {
            Some(labels) => {
                let rank = |s: &String| labels.iter().position(|l| l == s);
                Some(rank(x)?.cmp(&rank(y)?))
            }
            None => Some(x.as_bytes().cmp(y.as_bytes())),
        },
        (D::Json(x), D::Json(y)) => json_eq(x, y).then_some(Ordering::Equal),
        (D::TimestampTz(x), D::TimestampTz(y))
        | (D::Timestamp(x), D::Timestamp(y))
        | (D::Time(x), D::Time(y)) => Some(x.cmp(y)),
        (D::Date(x), D::Date(y)) => Some(x.cmp(y)),
        (D::TemporalText(x), D::TemporalText(y)) => compare_temporal_text(x, y),
        (D::TemporalText(x), D::TimestampTz(_) | D::Timestamp(_) | D::Date(_)) => infinite_sign(x)
            .map(|up| {
                if up {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }),
        (D::TimestampTz(_) | D::Timestamp(_) | D::Date(_), D::TemporalText(y)) => infinite_sign(y)
            .map(|up| {
                if up {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }),
        (D::Bytes(x), D::Bytes(y)) => Some(x.cmp(y)),
        (D::Array(x), D::Array(y)) => compare_arrays(x, y, enum_labels),
        _ => None,
    }
}

/// Postgres array order: element by element, NULL elements equal to each other and above any
/// value, then the shorter array first.
fn compare_arrays(a: &[Datum], b: &[Datum], enum_labels: Option<&[String]>) -> Option<Ordering> {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x, y) {
            (Datum::Null, Datum::Null) => Ordering::Equal,
            (Datum::Null, _) => Ordering::Greater,
            (_, Datum::Null) => Ordering::Less,
            _ => compare_datums(x, y, enum_labels)?,
        };
        if ord != Ordering::Equal {
            return Some(ord);
        }
    }
    Some(a.len().cmp(&b.len()))
}

impl Datum {
    /// Orders two values of the same column type the way Postgres would; `None` when they are
    /// not comparable: either is NULL or unavailable, the variants differ, or the type has no
    /// order walcast knows (json only compares equal or not; timetz and interval text only
    /// compares equal when identical, and `'1 day'` vs `'24 hours'` is not recognised).
    ///
    /// Numeric values compare exactly by decimal value (`1.50` = `1.5`), with Postgres' order
    /// -Infinity < numbers < Infinity < NaN. Floats put NaN above everything and equal to itself.
    /// Text compares bytewise, like `COLLATE "C"`; enums too unless compared with
    /// [`Datum::compare_typed`]. `infinity` / `-infinity` order against finite timestamps and
    /// dates. Integers also compare with numeric and float values.
    pub fn compare(&self, other: &Datum) -> Option<Ordering> {
        compare_datums(self, other, None)
    }

    /// Like [`Datum::compare`], but orders enum labels by their declaration order in `ty`.
    pub fn compare_typed(&self, other: &Datum, ty: &PgType) -> Option<Ordering> {
        let labels = (ty.kind == Kind::Enum && !ty.enum_values.is_empty())
            .then_some(ty.enum_values.as_slice());
        compare_datums(self, other, labels)
    }

    /// SQL equality, consistent with [`Datum::compare`]: false whenever either side is NULL.
    pub fn sql_eq(&self, other: &Datum) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty(kind: Kind, array: bool) -> PgType {
        PgType {
            oid: 0,
            name: String::new(),
            kind,
            array,
            enum_values: Vec::new(),
        }
    }

    fn decode(kind: Kind, text: &str) -> Result<Datum, ValueError> {
        decode_text(&ty(kind, false), text)
    }

    /// decode → to_json for a table of (text, expected JSON).
    fn check_json(kind: Kind, cases: &[(&str, Value)]) {
        for (text, expected) in cases {
            let datum = decode(kind, text).unwrap_or_else(|e| panic!("{kind:?} {text:?}: {e}"));
            assert_eq!(
                &datum.to_json(kind),
                expected,
                "{kind:?} {text:?} -> {datum:?}"
            );
        }
    }

    fn check_rejects(kind: Kind, cases: &[&str]) {
        for text in cases {
            assert!(decode(kind, text).is_err(), "{kind:?} accepted {text:?}");
        }
    }

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

    #[test]
    fn timestamptz() {
        check_json(
            Kind::TimestampTz,
            &[
                (
                    "2024-01-02 03:04:05.123456+00",
                    json!("2024-01-02T03:04:05.123456Z"),
                ),
                ("2024-01-02 03:04:05+00", json!("2024-01-02T03:04:05Z")),
                (
                    "2024-01-02 03:04:05.12+00",
                    json!("2024-01-02T03:04:05.120000Z"),
                ),
                ("2024-01-02 03:04:05+05:30", json!("2024-01-01T21:34:05Z")),
                (
                    "2024-01-02 03:04:05-01:02:03",
                    json!("2024-01-02T04:06:08Z"),
                ),
                ("1970-01-01 00:00:00+00", json!("1970-01-01T00:00:00Z")),
                (
                    "1969-12-31 23:59:59.999999+00",
                    json!("1969-12-31T23:59:59.999999Z"),
                ),
                (
                    "0044-03-15 12:00:00+00 BC",
                    json!("-000043-03-15T12:00:00Z"),
                ),
                ("0001-01-01 00:00:00+00 BC", json!("0000-01-01T00:00:00Z")),
                (
                    "4714-11-24 00:00:00+00 BC",
                    json!("-004713-11-24T00:00:00Z"),
                ),
                (
                    "294276-12-31 23:59:59.999999+00",
                    json!("+294276-12-31T23:59:59.999999Z"),
                ),
                ("2000-02-29 00:00:00+00", json!("2000-02-29T00:00:00Z")),
                ("infinity", json!("infinity")),
                ("-infinity", json!("-infinity")),
            ],
        );
        check_rejects(
            Kind::TimestampTz,
            &[
                "",
                "2024-13-01 00:00:00+00",
                "2023-02-29 00:00:00+00",
                "2024-01-02 25:00:00+00",
                "2024-01-02 03:04:05+00 AD",
                "0000-01-01 00:00:00+00 BC",
                "24-01-02 00:00:00+00",
            ],
        );
    }

    #[test]
    fn timestamp_date_time() {
        check_json(
            Kind::Timestamp,
            &[
                ("2024-01-02 03:04:05", json!("2024-01-02T03:04:05")),
                (
                    "2024-01-02 03:04:05.000001",
                    json!("2024-01-02T03:04:05.000001"),
                ),
                ("2024-01-02 24:00:00", json!("2024-01-03T00:00:00")),
                ("10000-01-01 00:00:00", json!("+010000-01-01T00:00:00")),
                ("infinity", json!("infinity")),
            ],
        );
        check_rejects(Kind::Timestamp, &["2024-01-02 03:04:05+00"]);
        check_json(
            Kind::Date,
            &[
                ("2024-01-02", json!("2024-01-02")),
                ("0001-01-01 BC", json!("0000-01-01")),
                ("5874897-12-31", json!("+5874897-12-31")),
                ("-infinity", json!("-infinity")),
            ],
        );
        check_rejects(Kind::Date, &["2024-01-02 00:00:00", "2024-1-2"]);
        check_json(
            Kind::Time,
            &[
                ("00:00:00", json!("00:00:00")),
                ("03:04:05.5", json!("03:04:05.500000")),
                ("23:59:59.999999", json!("23:59:59.999999")),
                ("24:00:00", json!("24:00:00")),
            ],
        );
        check_rejects(
            Kind::Time,
            &["24:00:01", "3:04:05", "03:60:00", "03:04:05+00"],
        );
    }

    #[test]
    fn timetz_and_interval() {
        check_json(
            Kind::TimeTz,
            &[
                ("03:04:05+00", json!("03:04:05+00:00")),
                ("03:04:05.123-05:30", json!("03:04:05.123000-05:30")),
                ("03:04:05+01:02:03", json!("03:04:05+01:02:03")),
            ],
        );
        check_rejects(Kind::TimeTz, &["03:04:05", "x"]);
        check_json(
            Kind::Interval,
            &[("P1Y2M3DT4H5M6.5S", json!("P1Y2M3DT4H5M6.5S"))],
        );
    }

    #[test]
    fn unrepresentable_timestamps_stay_text() {
        let d = decode(Kind::Timestamp, "294276-12-31 23:59:59").expect("decodes");
        assert_eq!(d, Datum::TemporalText("+294276-12-31T23:59:59".to_owned()));
        let d = decode(Kind::TimestampTz, "294276-12-31 23:59:59+00").expect("decodes");
        assert_eq!(
            d.to_json(Kind::TimestampTz),
            json!("+294276-12-31T23:59:59Z")
        );
        let e = parse_input(Kind::Timestamp, &json!("294276-12-31T23:59:59"));
        assert!(matches!(e, Err(ValueError::OutOfRange { .. })), "{e:?}");
    }

    fn decode_array(kind: Kind, text: &str) -> Result<Datum, ValueError> {
        decode_text(&ty(kind, true), text)
    }

    #[test]
    fn arrays() {
        let cases: &[(Kind, &str, Value)] = &[
            (Kind::Int4, "{}", json!([])),
            (Kind::Int4, "{1,2,NULL,-3}", json!([1, 2, null, -3])),
            (Kind::Int4, "{{1,2},{3,4}}", json!([[1, 2], [3, 4]])),
            (Kind::Int4, "[0:1]={5,6}", json!([5, 6])),
            (
                Kind::Int4,
                "[1:2][-1:0]={{1,2},{3,4}}",
                json!([[1, 2], [3, 4]]),
            ),
            (Kind::Int4, " { 1 , 2 } ", json!([1, 2])),
            (Kind::Int8, "{1,NULL}", json!(["1", null])),
            (
                Kind::Text,
                r#"{a,"a b","with \"quote\"","back\\slash","NULL",NULL,null,"",  x y  }"#,
                json!([
                    "a",
                    "a b",
                    "with \"quote\"",
                    "back\\slash",
                    "NULL",
                    null,
                    null,
                    "",
                    "x y"
                ]),
            ),
            (Kind::Text, r#"{a\,b,c\ }"#, json!(["a,b", "c "])),
            (Kind::Text, "{é,\"ü ñ\"}", json!(["é", "ü ñ"])),
            (Kind::Bytea, r#"{"\\x0102",NULL}"#, json!(["AQI=", null])),
            (
                Kind::Jsonb,
                r#"{"{\"a\": 1}","[1, 2]",3}"#,
                json!([{"a": 1}, [1, 2], 3]),
            ),
            (Kind::Bool, "{t,f}", json!([true, false])),
            (
                Kind::Float8,
                "{NaN,1.5,-Infinity}",
                json!(["NaN", 1.5, "-Infinity"]),
            ),
            (Kind::Numeric, "{1.50,NaN}", json!(["1.50", "NaN"])),
            (
                Kind::TimestampTz,
                r#"{"2024-01-02 03:04:05+00",infinity}"#,
                json!(["2024-01-02T03:04:05Z", "infinity"]),
            ),
            (Kind::Date, "{2024-01-02}", json!(["2024-01-02"])),
            (
                Kind::Money,
                r#"{"$1,000.00",$2.50}"#,
                json!(["1000.00", "2.50"]),
            ),
        ];
        for (kind, text, expected) in cases {
            let datum =
                decode_array(*kind, text).unwrap_or_else(|e| panic!("{kind:?} {text:?}: {e}"));
            assert_eq!(&datum.to_json(*kind), expected, "{kind:?} {text:?}");
        }
        let bad = [
            "",
            "{",
            "{1,}",
            "{,1}",
            "{1 2",
            "{1}}",
            "{1}x",
            "[1:2]{1,2}",
            "[1:2=",
            "{{{{{{{1}}}}}}}",
            "{\"a}",
            "{a\"b}",
            "{{1},2",
        ];
        for text in bad {
            assert!(decode_array(Kind::Text, text).is_err(), "accepted {text:?}");
        }
        assert!(
            decode_array(Kind::Int4, "{{{{{{1}}}}}}").is_ok(),
            "six dimensions are allowed"
        );
        match decode_array(Kind::Int4, "{1,x}") {
            Err(ValueError::ArrayElement { index: 1, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn box_arrays_and_other_fallback() {
        let mut boxes = ty(Kind::Other, true);
        boxes.name = "_box".to_owned();
        let datum = decode_text(&boxes, "{(1,1),(0,0);(2,2),(1,1)}").expect("decodes");
        assert_eq!(
            datum.to_json(Kind::Other),
            json!(["(1,1),(0,0)", "(2,2),(1,1)"])
        );
        // An Other array that does not parse is kept whole.
        let odd = decode_text(&ty(Kind::Other, true), "{(1,1),(0,0);").expect("falls back");
        assert_eq!(odd, Datum::Text("{(1,1),(0,0);".to_owned()));
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

    fn input(kind: Kind, value: Value) -> Datum {
        parse_input(kind, &value).unwrap_or_else(|e| panic!("{kind:?} {value}: {e}"))
    }

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

    #[test]
    fn civil_round_trip() {
        for days in (-3_000_000..3_000_000)
            .step_by(997)
            .chain([-1, 0, 1, 59, 60, 11_016])
        {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    fn num(s: &str) -> Datum {
        Datum::Numeric(s.to_owned())
    }

    #[test]
    fn numeric_order() {
        let ordered = [
            "-Infinity",
            "-100",
            "-99.99",
            "-1.5",
            "-1.05",
            "-0.001",
            "0",
            "0.001",
            "0.01",
            "1",
            "1.05",
            "1.5",
            "9.999",
            "10",
            "100.5",
            "1e3",
            "Infinity",
            "NaN",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(num(a).compare(&num(b)), Some(i.cmp(&j)), "{a} vs {b}");
            }
        }
        for (a, b) in [
            ("1.50", "1.5"),
            ("-0", "0.000"),
            ("007", "7"),
            ("1e3", "1000.0"),
        ] {
            assert!(num(a).sql_eq(&num(b)), "{a} = {b}");
        }
        assert!(Datum::Int(7).sql_eq(&num("7.0")));
        assert_eq!(Datum::Int(7).compare(&num("7.01")), Some(Ordering::Less));
        assert_eq!(num("abc").compare(&num("1")), None);
    }

    #[test]
    fn comparisons() {
        use Ordering::*;
        let nan = Datum::Float(f64::NAN);
        assert!(nan.sql_eq(&nan));
        assert_eq!(nan.compare(&Datum::Float(f64::INFINITY)), Some(Greater));
        assert!(Datum::Float(-0.0).sql_eq(&Datum::Float(0.0)));
        assert!(Datum::Int(2).sql_eq(&Datum::Float(2.0)));
        assert_eq!(Datum::Null.compare(&Datum::Null), None);
        assert!(!Datum::Null.sql_eq(&Datum::Null));
        assert_eq!(Datum::Unavailable.compare(&Datum::Int(1)), None);
        assert_eq!(Datum::Int(1).compare(&Datum::Text("1".into())), None);
        assert_eq!(Datum::Bool(false).compare(&Datum::Bool(true)), Some(Less));
        // Bytewise, like COLLATE "C": uppercase before lowercase.
        assert_eq!(
            Datum::Text("Z".into()).compare(&Datum::Text("a".into())),
            Some(Less)
        );
        assert_eq!(
            Datum::Bytes(vec![1]).compare(&Datum::Bytes(vec![1, 0])),
            Some(Less)
        );

        assert!(Datum::json(json!({"a": 1, "b": [1.0]}))
            .sql_eq(&Datum::json(json!({"b": [1], "a": 1.0}))));
        assert!(!Datum::json(json!({"a": 1})).sql_eq(&Datum::json(json!({"a": 1, "b": 2}))));
        assert_eq!(Datum::json(json!(1)).compare(&Datum::json(json!(2))), None);

        let inf = Datum::TemporalText("infinity".into());
        let ninf = Datum::TemporalText("-infinity".into());
        assert_eq!(inf.compare(&Datum::TimestampTz(i64::MAX)), Some(Greater));
        assert_eq!(Datum::Date(0).compare(&ninf), Some(Greater));
        assert_eq!(ninf.compare(&inf), Some(Less));
        assert!(inf.sql_eq(&inf));
        let p1 = Datum::TemporalText("P1D".into());
        assert!(p1.sql_eq(&p1));
        assert_eq!(p1.compare(&Datum::TemporalText("P2D".into())), None);

        let arr = |v: Vec<Datum>| Datum::Array(v);
        assert!(
            arr(vec![Datum::Int(1), Datum::Null]).sql_eq(&arr(vec![Datum::Int(1), Datum::Null]))
        );
        assert_eq!(
            arr(vec![Datum::Int(1), Datum::Null]).compare(&arr(vec![Datum::Int(1), Datum::Int(9)])),
            Some(Greater)
        );
        assert_eq!(
            arr(vec![Datum::Int(1)]).compare(&arr(vec![Datum::Int(1), Datum::Int(0)])),
            Some(Less)
        );
    }

    #[test]
    fn enum_order() {
        let mut mood = ty(Kind::Enum, false);
        mood.enum_values = vec!["sad".into(), "ok".into(), "happy".into()];
        let (sad, happy) = (Datum::Text("sad".into()), Datum::Text("happy".into()));
        assert_eq!(sad.compare_typed(&happy, &mood), Some(Ordering::Less));
        assert_eq!(sad.compare(&happy), Some(Ordering::Greater));
        assert_eq!(sad.compare_typed(&Datum::Text("meh".into()), &mood), None);
    }
}
