//! Decimal numbers as text: recognising, canonicalising and ordering them exactly.

use std::cmp::Ordering;

/// Bound on exponents in numeric literals, so `1e999999999` cannot allocate a huge string.
/// f64 needs at most ~330.
const MAX_DECIMAL_EXPONENT: i64 = 1000;

/// A finite decimal with `int` stripped of leading zeros and `frac` of trailing zeros; zero is
/// two empty strings and never negative.
#[derive(Clone, Copy)]
pub(super) struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

#[derive(Clone, Copy)]
pub(super) enum NumericValue<'a> {
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
pub(super) fn parse_plain_numeric(text: &str) -> Option<NumericValue<'_>> {
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

pub(super) enum NumericError {
    Syntax,
    Range,
}

/// Canonical text of a numeric literal: optional exponent expanded, leading zeros and trailing
/// fractional zeros removed, no `-0`, specials spelt `NaN`, `Infinity`, `-Infinity`.
pub(super) fn canonical_numeric(text: &str) -> Result<String, NumericError> {
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
    Ok(Decimal {
        negative: dec.negative,
        int: int.trim_start_matches('0'),
        frac: frac.trim_end_matches('0'),
    }
    .spell())
}

/// The canonical spelling of a plain decimal (`-01.50` → `-1.5`, `-0.0` → `0`) or a special
/// value; `None` for anything else, exponents included (Postgres' numeric output has none).
pub fn canonical_plain_numeric(text: &str) -> Option<String> {
    Some(match parse_plain_numeric(text)? {
        NumericValue::NaN => "NaN".to_owned(),
        NumericValue::Infinity => "Infinity".to_owned(),
        NumericValue::NegInfinity => "-Infinity".to_owned(),
        NumericValue::Finite(dec) => dec.spell(),
    })
}

impl Decimal<'_> {
    fn spell(&self) -> String {
        let mut out = String::with_capacity(self.int.len() + self.frac.len() + 3);
        if self.negative {
            out.push('-');
        }
        out.push_str(if self.int.is_empty() { "0" } else { self.int });
        if !self.frac.is_empty() {
            out.push('.');
            out.push_str(self.frac);
        }
        out
    }
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
pub(super) fn compare_numeric(a: &str, b: &str) -> Option<Ordering> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;
    use crate::value::test_support::*;

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
}
