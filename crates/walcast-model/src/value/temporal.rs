//! Dates and times: parsing Postgres' ISO output and client literals, and the JSON text forms.

use super::{out_of_range, syntax, ValueError};
use crate::datum::{Datum, Kind};

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;

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
pub(super) fn parse_temporal(
    kind: Kind,
    text: &str,
    overflow_as_text: bool,
) -> Result<Datum, ValueError> {
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
pub(super) fn normalise_timetz(text: &str) -> Result<String, ValueError> {
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

pub(super) fn format_date(days: impl Into<i128>) -> String {
    // Any i128 day count from a datum or parser is far inside i64.
    let days = i64::try_from(days.into()).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(days);
    format!("{}-{month:02}-{day:02}", format_year(year))
}

/// `HH:MM:SS`, plus `.ffffff` (always six digits) when the fraction is non-zero.
pub(super) fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(US_PER_SEC);
    let frac = micros.rem_euclid(US_PER_SEC);
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

pub(super) fn format_timestamp(micros: impl Into<i128>) -> String {
    let micros = micros.into();
    let per_day = i128::from(US_PER_DAY);
    let time = i64::try_from(micros.rem_euclid(per_day)).unwrap_or_default();
    format!(
        "{}T{}",
        format_date(micros.div_euclid(per_day)),
        format_time(time)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::parse_input;
    use crate::value::test_support::*;
    use serde_json::json;

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
}
