//! GraphQL names for Postgres identifiers.
//!
//! GraphQL names match `[_A-Za-z][_0-9A-Za-z]*`; Postgres identifiers may hold any character.
//! Every other character becomes `_`, and a leading digit gets a `_` prefix, so the mapping is
//! predictable (`order-items` → `order_items`, `2fa` → `_2fa`). Names starting with `__` are
//! reserved by GraphQL introspection and get a further `x` prefix.

pub fn graphql_name(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 1);
    for (i, c) in ident.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with("__") {
        out.insert(0, 'x');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::graphql_name;

    #[test]
    fn maps_invalid_identifiers_predictably() {
        for (pg, gql) in [
            ("messages", "messages"),
            ("order-items", "order_items"),
            ("2fa", "_2fa"),
            ("with space", "with_space"),
            ("__secret", "x__secret"),
            ("ünïcode", "_n_code"),
            ("", "_"),
        ] {
            assert_eq!(graphql_name(pg), gql, "{pg:?}");
        }
    }
}
