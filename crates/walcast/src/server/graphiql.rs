//! The GraphiQL page, with subscriptions wired to the WebSocket endpoint.

pub fn page(path: &str) -> String {
    let path_json = serde_json::to_string(path).unwrap_or_else(|_| "\"/graphql\"".into());
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>walcast GraphiQL</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
<script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
<script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
<script>
const path = {path_json};
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
const token = new URLSearchParams(location.search).get('access_token');
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
