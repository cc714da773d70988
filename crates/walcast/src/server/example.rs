//! The live example page (`/examples/live`): the rows of a table, kept up to date through a
//! subscription. Static HTML and the graphql-ws browser bundle, both vendored into the binary
//! (`assets/example`), so it works without internet access.

const PAGE: &str = include_str!("../../assets/example/index.html");
/// Where the page expects the GraphQL path, inside a JavaScript string literal.
const PATH_SLOT: &str = "\"/*WALCAST_GRAPHQL_PATH*/\"";

/// `(file name, content type, bytes)` of the assets served under `/examples/`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[(
    "graphql-ws.min.js",
    "application/javascript",
    include_bytes!("../../assets/example/graphql-ws.min.js"),
)];

/// The page, told the configured GraphQL path.
pub fn page(path: &str) -> String {
    // A JSON string is a JavaScript string; `<` escaped so it cannot end the script element.
    let literal = serde_json::to_string(path)
        .unwrap_or_else(|_| "\"/graphql\"".into())
        .replace('<', "\\u003c");
    PAGE.replacen(PATH_SLOT, &literal, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_gets_the_graphql_path() {
        assert!(PAGE.contains(PATH_SLOT));
        let html = page("/api/</script>");
        assert!(html.contains("const GRAPHQL_PATH = \"/api/\\u003c/script>\";"));
        assert!(!html.contains(PATH_SLOT));
    }
}
