//! Quoting of SQL identifiers and literals, so names are never concatenated into SQL raw.

/// `"name"` with embedded double quotes doubled; always quoted, so case and keywords are kept.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A string literal valid whatever `standard_conforming_strings` is (an `E'...'` literal when
/// the value holds a backslash).
pub fn quote_literal(s: &str) -> String {
    // escape_literal puts a space before an E'' literal; it is not part of the value.
    postgres_protocol::escape::escape_literal(s)
        .trim_start()
        .to_owned()
}

/// A string constant of the replication command grammar, which knows `''` doubling but no `E''`.
pub(crate) fn replication_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a"), r#""a""#);
        assert_eq!(quote_ident(r#"We"ird"#), r#""We""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
        assert_eq!(replication_literal(r"it's\"), r"'it''s\'");
    }
}
