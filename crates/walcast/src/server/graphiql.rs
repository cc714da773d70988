//! The GraphiQL page, with subscriptions wired to the WebSocket endpoint. Its assets are
//! vendored into the binary (`assets/graphiql`), so it works without internet access.

/// `(file name, content type, bytes)` of the assets served under `/graphiql/`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "application/javascript",
        include_bytes!("../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css",
        include_bytes!("../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "application/javascript",
        include_bytes!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "application/javascript",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
    (
        "walcast-graphiql.js",
        "application/javascript",
        include_bytes!("../../assets/graphiql/walcast-graphiql.js"),
    ),
];

/// The page; `path` (the GraphQL endpoint) goes in as an HTML attribute for the start-up script.
pub fn page(path: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>walcast GraphiQL</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="/graphiql/graphiql.min.css">
</head>
<body>
<div id="graphiql" data-path="{}">Loading GraphiQL…</div>
<script src="/graphiql/react.production.min.js"></script>
<script src="/graphiql/react-dom.production.min.js"></script>
<script src="/graphiql/graphiql.min.js"></script>
<script src="/graphiql/walcast-graphiql.js"></script>
</body>
</html>
"#,
        html_attribute(path)
    )
}

fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
