//! Ordering and equality of values, the way Postgres compares them.

use std::cmp::Ordering;

use serde_json::Value;

use super::numeric::compare_numeric;
use crate::datum::{Datum, Kind, PgType};

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
    use crate::value::test_support::*;
    use serde_json::json;

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
