//! Property tests for value decoding, literals and comparison.

use std::cmp::Ordering;

use proptest::prelude::*;
use serde_json::{json, Value};
use walcast_model::value::{decode_text, parse_input};
use walcast_model::{Datum, Kind, PgType};

const KINDS: [Kind; 21] = [
    Kind::Bool,
    Kind::Int2,
    Kind::Int4,
    Kind::Int8,
    Kind::Float4,
    Kind::Float8,
    Kind::Numeric,
    Kind::Money,
    Kind::Text,
    Kind::Uuid,
    Kind::Json,
    Kind::Jsonb,
    Kind::Timestamp,
    Kind::TimestampTz,
    Kind::Date,
    Kind::Time,
    Kind::TimeTz,
    Kind::Interval,
    Kind::Bytea,
    Kind::Enum,
    Kind::Other,
];

fn ty(kind: Kind, array: bool) -> PgType {
    PgType {
        oid: 0,
        name: if array { "_x".into() } else { "x".into() },
        kind,
        array,
        enum_values: Vec::new(),
    }
}

/// Arbitrary text, and text built from the characters the parsers care about.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-+0-9:.,TZtz {}\\[\\]\"\\\\=NULBCinfyaA$x;eE()]{0,40}",
        "[0-9]{4,7}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([+-][0-9]{2}(:[0-9]{2}){0,2})?( BC)?",
    ]
}

/// A decimal string with `scale` fractional digits for `mantissa`, sometimes padded with
/// redundant zeros.
fn decimal(mantissa: i64, scale: u32, pad_left: usize, pad_right: usize) -> String {
    let negative = mantissa < 0;
    let digits = format!(
        "{:0width$}",
        mantissa.unsigned_abs(),
        width = scale as usize + 1
    );
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let mut s = String::new();
    if negative {
        s.push('-');
    }
    s.push_str(&"0".repeat(pad_left));
    s.push_str(int);
    if scale > 0 || pad_right > 0 {
        s.push('.');
        s.push_str(frac);
        s.push_str(&"0".repeat(pad_right));
    }
    s
}

/// Microseconds covering Postgres' timestamp range that fits the datum (4713 BC to 294246 AD).
const MIN_US: i64 = -210_866_803_200_000_000;
const MAX_US: i64 = 9_223_371_331_200_000_000 - 31_000_000_000_000_000;

proptest! {
    #[test]
    fn decode_text_never_panics(text in hostile_text()) {
        for kind in KINDS {
            for array in [false, true] {
                if let Ok(datum) = decode_text(&ty(kind, array), &text) {
                    let _ = datum.to_json(kind);
                    let _ = datum.compare(&datum);
                }
            }
        }
    }

    #[test]
    fn parse_input_never_panics(text in hostile_text(), number in any::<f64>()) {
        for kind in KINDS {
            let _ = parse_input(kind, &Value::String(text.clone()));
            let _ = parse_input(kind, &json!(number));
        }
    }

    #[test]
    fn numeric_compare_agrees_with_f64(
        a in -1_000_000_000i64..1_000_000_000,
        b in -1_000_000_000i64..1_000_000_000,
        sa in 0u32..7,
        sb in 0u32..7,
        pads in (0usize..3, 0usize..3, 0usize..3, 0usize..3),
    ) {
        let x = decimal(a, sa, pads.0, pads.1);
        let y = decimal(b, sb, pads.2, pads.3);
        // Decimals with at most 15 significant digits map to distinct, ordered f64 values.
        let fx: f64 = x.parse().map_err(|e| TestCaseError::fail(format!("{x}: {e}")))?;
        let fy: f64 = y.parse().map_err(|e| TestCaseError::fail(format!("{y}: {e}")))?;
        let expected = fx.partial_cmp(&fy);
        let dx = Datum::Numeric(x.clone());
        let dy = Datum::Numeric(y.clone());
        prop_assert_eq!(dx.compare(&dy), expected, "{} vs {}", x, y);
        prop_assert_eq!(dx.sql_eq(&dy), expected == Some(Ordering::Equal));
        // Canonicalised literals compare the same way.
        let cx = parse_input(Kind::Numeric, &json!(x)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(cx.sql_eq(&dx), "{:?} vs {}", cx, x);
    }

    #[test]
    fn timestamps_round_trip_through_json(us in MIN_US..MAX_US) {
        for (kind, datum) in [
            (Kind::TimestampTz, Datum::TimestampTz(us)),
            (Kind::Timestamp, Datum::Timestamp(us)),
            (Kind::Date, Datum::Date(i32::try_from(us.div_euclid(86_400_000_000)).unwrap_or(0))),
            (Kind::Time, Datum::Time(us.rem_euclid(86_400_000_000))),
        ] {
            let json = datum.to_json(kind);
            let back = parse_input(kind, &json).map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
            prop_assert_eq!(&back, &datum, "{}", json);
        }
    }

    #[test]
    fn values_round_trip_through_json(
        i in any::<i64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..40),
        f in any::<f64>(),
    ) {
        let cases = [
            (Kind::Int8, Datum::Int(i)),
            (Kind::Numeric, Datum::Numeric(i.to_string())),
            (Kind::Bytea, Datum::Bytes(bytes)),
            (Kind::Float8, Datum::Float(f)),
        ];
        for (kind, datum) in cases {
            let json = datum.to_json(kind);
            let back = parse_input(kind, &json).map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
            prop_assert!(back.sql_eq(&datum), "{:?} -> {} -> {:?}", datum, json, back);
        }
    }

    #[test]
    fn decoded_timestamptz_matches_its_rendering(us in MIN_US..MAX_US, offset_min in -900i64..900) {
        // Render as Postgres would in a non-UTC zone, then decode back to the same instant.
        let datum = Datum::TimestampTz(us);
        let utc = datum.to_json(Kind::TimestampTz);
        let utc = utc.as_str().unwrap_or_default();
        let local = Datum::Timestamp(us + offset_min * 60_000_000).to_json(Kind::Timestamp);
        let local = local.as_str().unwrap_or_default();
        let sign = if offset_min < 0 { '-' } else { '+' };
        let text = format!("{local}{sign}{:02}:{:02}", offset_min.abs() / 60, offset_min.abs() % 60);
        let decoded = decode_text(&ty(Kind::TimestampTz, false), &text.replacen('T', " ", 1));
        prop_assert!(matches!(&decoded, Ok(d) if d.sql_eq(&datum)), "{} ({}) -> {:?}", text, utc, decoded);
    }
}
