//! Quoting for SQL (shared with the rest of the workspace) and for replication commands.

pub use walcast_pgcluster::{quote_ident, quote_literal};

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

    proptest::proptest! {
        /// The same literal libpq's escaping (as postgres-protocol implements it) produces.
        #[test]
        fn literal_matches_libpq_escaping(s in ".*") {
            let libpq = postgres_protocol::escape::escape_literal(&s);
            proptest::prop_assert_eq!(quote_literal(&s), libpq.trim_start());
        }
    }
}
