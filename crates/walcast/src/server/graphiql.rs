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
];

pub fn page(path: &str) -> String {
    let path_json = serde_json::to_string(path).unwrap_or_else(|_| "\"/graphql\"".into());
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
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphiql/react.production.min.js"></script>
<script src="/graphiql/react-dom.production.min.js"></script>
<script src="/graphiql/graphiql.min.js"></script>
<script>
const path = {path_json};
const token = new URLSearchParams(location.search).get('access_token');
// Browsers cannot set headers on a WebSocket: strict mode reads the token from the URL.
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path
  + (token ? '?access_token=' + encodeURIComponent(token) : '');
const fetcher = GraphiQL.createFetcher({{
  url: location.origin + path,
  subscriptionUrl: wsUrl,
  headers: token ? {{ Authorization: 'Bearer ' + token }} : {{}},
  wsConnectionParams: token ? {{ access_token: token }} : {{}},
}});
ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, {{ fetcher }}));
</script>
</body>
</html>
"#
    )
}
