//! Postgres array literals (`{1,NULL,"a b"}`, nested braces, an optional `[lo:hi]=` prefix).

use super::decode::decode_scalar;
use super::{kind_label, snippet, ValueError};
use crate::datum::{Datum, Kind};

/// Postgres' MAXDIM; also bounds recursion on hostile input.
const MAX_ARRAY_DIMS: usize = 6;

pub(super) struct ArrayParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    delimiter: u8,
    kind: Kind,
    elements: usize,
}

impl<'a> ArrayParser<'a> {
    pub(super) fn new(text: &'a str, delimiter: u8, kind: Kind) -> Self {
        ArrayParser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            delimiter,
            kind,
            elements: 0,
        }
    }

    pub(super) fn parse(mut self) -> Result<Datum, ValueError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::decode_text;
    use crate::value::test_support::*;
    use serde_json::json;
    use serde_json::Value;

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
}
