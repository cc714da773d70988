//! Shared helpers of the value unit tests.

use serde_json::Value;

use super::*;
use crate::datum::{Datum, Kind, PgType};

pub(super) fn ty(kind: Kind, array: bool) -> PgType {
    PgType {
        oid: 0,
        name: String::new(),
        kind,
        array,
        enum_values: Vec::new(),
    }
}

pub(super) fn decode(kind: Kind, text: &str) -> Result<Datum, ValueError> {
    decode_text(&ty(kind, false), text)
}

/// decode → to_json for a table of (text, expected JSON).
pub(super) fn check_json(kind: Kind, cases: &[(&str, Value)]) {
    for (text, expected) in cases {
        let datum = decode(kind, text).unwrap_or_else(|e| panic!("{kind:?} {text:?}: {e}"));
        assert_eq!(
            &datum.to_json(kind),
            expected,
            "{kind:?} {text:?} -> {datum:?}"
        );
    }
}

pub(super) fn check_rejects(kind: Kind, cases: &[&str]) {
    for text in cases {
        assert!(decode(kind, text).is_err(), "{kind:?} accepted {text:?}");
    }
}

pub(super) fn decode_array(kind: Kind, text: &str) -> Result<Datum, ValueError> {
    decode_text(&ty(kind, true), text)
}

pub(super) fn input(kind: Kind, value: Value) -> Datum {
    parse_input(kind, &value).unwrap_or_else(|e| panic!("{kind:?} {value}: {e}"))
}

pub(super) fn num(s: &str) -> Datum {
    Datum::Numeric(s.to_owned())
}
