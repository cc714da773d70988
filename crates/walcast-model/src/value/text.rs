//! The entry point of decoding: a value in text output form, scalar or array.

use super::array::ArrayParser;
use super::decode::decode_scalar;
use super::ValueError;
use crate::datum::{Datum, Kind, PgType};

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
