//! Hashable forms of values, for the subscription index's equality buckets.
//!
//! The one rule: two values [`Datum::compare`] calls equal get the same key. Different keys for
//! unequal values are not required (every candidate is evaluated in full), so keys may collide.
//! Integers, numerics and floats share one number space because `compare` relates them:
//! integral numbers below 2^53 in magnitude key as integers, other finite floats (and integers
//! beyond 2^53, which compare with floats after rounding) by their f64 bits, with -0 = 0 and
//! a single NaN (Postgres orders NaN equal to NaN).

use walcast_model::Datum;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DatumKey {
    Bool(bool),
    Int(i64),
    FloatBits(u64),
    NaN,
    /// A canonical decimal that is not an integer within i64, or a numeric infinity.
    Decimal(String),
    Text(String),
    TimestampTz(i64),
    Timestamp(i64),
    Date(i32),
    Time(i64),
    TemporalText(String),
    Bytes(Vec<u8>),
}

/// How a row value meets the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Key(DatumKey),
    /// Equal to no keyed value: NULL, unavailable, json, arrays.
    Never,
    /// Not keyable but possibly equal to a keyed value: every bucket must be considered.
    Any,
}

const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

fn int_key(i: i64) -> DatumKey {
    if i.unsigned_abs() < 1 << 53 {
        DatumKey::Int(i)
    } else {
        float_key(i as f64)
    }
}

fn float_key(f: f64) -> DatumKey {
    if f.is_nan() {
        DatumKey::NaN
    } else if f.fract() == 0.0 && f.abs() < EXACT {
        // Also maps -0 to 0.
        DatumKey::Int(f as i64)
    } else {
        DatumKey::FloatBits(f.to_bits())
    }
}

fn decimal_key(text: &str) -> Option<DatumKey> {
    let canonical = walcast_model::value::canonical_plain_numeric(text)?;
    if canonical == "NaN" {
        // Numeric NaN never compares with a float, so sharing the float NaN key is harmless.
        return Some(DatumKey::NaN);
    }
    Some(match canonical.parse::<i64>() {
        Ok(i) if !canonical.contains('.') => int_key(i),
        _ => DatumKey::Decimal(canonical),
    })
}

/// The key of a value; `None` when it has none (see [`lookup`] for row values).
pub fn key(d: &Datum) -> Option<DatumKey> {
    Some(match d {
        Datum::Bool(b) => DatumKey::Bool(*b),
        Datum::Int(i) => int_key(*i),
        Datum::Float(f) => float_key(*f),
        Datum::Numeric(s) => return decimal_key(s),
        Datum::Text(s) => DatumKey::Text(s.clone()),
        Datum::TimestampTz(v) => DatumKey::TimestampTz(*v),
        Datum::Timestamp(v) => DatumKey::Timestamp(*v),
        Datum::Date(v) => DatumKey::Date(*v),
        Datum::Time(v) => DatumKey::Time(*v),
        Datum::TemporalText(s) => DatumKey::TemporalText(s.clone()),
        Datum::Bytes(b) => DatumKey::Bytes(b.clone()),
        Datum::Null | Datum::Unavailable | Datum::Json(_) | Datum::Array(_) => return None,
    })
}

/// How a row's value is looked up. Only a numeric without a canonical form can equal a keyed
/// value without having a key; json and arrays only ever equal json and arrays, which are never
/// keyed.
pub fn lookup(d: &Datum) -> Lookup {
    match key(d) {
        Some(k) => Lookup::Key(k),
        None if matches!(d, Datum::Numeric(_)) => Lookup::Any,
        None => Lookup::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num() -> impl Strategy<Value = Datum> {
        prop_oneof![
            (-5i64..5).prop_map(Datum::Int),
            prop_oneof![
                Just(i64::MAX),
                Just(i64::MIN),
                Just((1 << 53) + 1),
                Just(1 << 53),
                Just(-(1 << 53) - 1)
            ]
            .prop_map(Datum::Int),
            prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(1.0),
                Just(-2.0),
                Just(0.5),
                Just(f64::NAN),
                Just(-f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(9_007_199_254_740_992.0),
                Just(9.3e18),
            ]
            .prop_map(Datum::Float),
            prop_oneof![
                Just("0"),
                Just("-0.00"),
                Just("1.50"),
                Just("1.5"),
                Just("001"),
                Just("-2.0"),
                Just("NaN"),
                Just("Infinity"),
                Just("-Infinity"),
                Just("9007199254740993"),
                Just("99999999999999999999"),
                Just("0.5"),
            ]
            .prop_map(|s| Datum::Numeric(s.into())),
        ]
    }

    proptest! {
        #[test]
        fn equal_values_share_a_key(a in num(), b in num()) {
            if a.sql_eq(&b) {
                prop_assert_eq!(lookup(&a), lookup(&b), "{:?} = {:?}", a, b);
            }
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            key(&Datum::Numeric("1.50".into())),
            key(&Datum::Numeric("1.5".into()))
        );
        assert_eq!(key(&Datum::Numeric("-0.0".into())), key(&Datum::Int(0)));
        assert_eq!(key(&Datum::Float(-0.0)), key(&Datum::Float(0.0)));
        assert_eq!(key(&Datum::Float(f64::NAN)), key(&Datum::Float(-f64::NAN)));
        assert_eq!(lookup(&Datum::Numeric("1e3".into())), Lookup::Any);
        assert_eq!(lookup(&Datum::Null), Lookup::Never);
    }
}
