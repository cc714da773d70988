//! Quoting of SQL identifiers and literals, so names are never concatenated into SQL raw.
//!
//! The workspace's one copy: this crate depends on no other walcast crate, so the replication
//! client, the filters and the cluster harness can all use it without a cycle.

/// `"name"` with embedded double quotes doubled; always quoted, so case and keywords are kept.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A string literal valid whatever `standard_conforming_strings` is: quotes doubled, and an
/// `E'...'` literal with backslashes doubled when the value holds a backslash.
pub fn quote_literal(s: &str) -> String {
    let escaped = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", escaped.replace('\\', "\\\\"))
    } else {
        format!("'{escaped}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn literals_with_quotes_and_backslashes() {
        assert_eq!(quote_literal(r"it's a\b"), r"E'it''s a\\b'");
        assert_eq!(quote_literal(""), "''");
    }
}
