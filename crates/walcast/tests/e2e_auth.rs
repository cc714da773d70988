//! Authentication and permissions end to end (API sections 5 and 6): the three auth modes on
//! every socket protocol and on HTTP, refused tokens (malformed, expired, foreign key, `alg:
//! none`, algorithm confusion), roles and their tables, columns and rows, claims in row
//! filters, SIGHUP reloads and tokens that expire on an open socket.
//!
//! Every check also asserts that nothing is delivered that should not be. Each test starts its
//! own cluster and server; tokens are signed here with `jsonwebtoken`, RSA keys made with
//! `openssl` at run time.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
/// The HS256 secret of every server here except the RS256 one.
const SECRET: &str = "e2e-auth-hs256-secret-that-is-long-enough";
const ADMIN: &str = "e2e-admin-token";
/// Role `reader`: published articles, without `author_id` (see [`PERMISSIONS`]).
const READER: &str = "e2e-reader-token";
/// Role `drafter`: draft articles, without `status`.
const DRAFTER: &str = "e2e-drafter-token";
/// Role `author`, `sub = "1"`: the articles of user 1.
const AUTHOR_1: &str = "e2e-author-1-token";
/// Role `mixed`: every user, and the published articles.
const MIXED: &str = "e2e-mixed-token";
/// Role `sly`: messages whose text equals its `name` claim ([`SLY_NAME`] in [`TOKENS`]), a
/// value crafted as SQL.
const SLY: &str = "e2e-sly-token";
const SLY_NAME: &str = "x' OR '1'='1";

/// The static tokens of every server (`WALCAST_TOKENS_FILE`).
const TOKENS: &str = r#"
["e2e-admin-token"]
role = "admin"

["e2e-reader-token"]
role = "reader"

["e2e-drafter-token"]
role = "drafter"

["e2e-author-1-token"]
role = "author"
sub = "1"

["e2e-mixed-token"]
role = "mixed"

["e2e-sly-token"]
role = "sly"
name = "x' OR '1'='1"
"#;

/// The permissions file of the tests that use one (`WALCAST_PERMISSIONS_FILE`).
const PERMISSIONS: &str = r#"
[public.messages]
select = true

[reader.articles]
select = true
columns = ["id", "title", "status"]
filter = { status = "published" }

[drafter.articles]
select = true
columns = ["id", "title", "author_id"]
filter = { status = "draft" }

[author.articles]
select = true
filter = { author_id = "$claims.sub" }

[sly.messages]
select = true
filter = { text = "$claims.name" }

[mixed.users]
select = true

[mixed.articles]
select = true
filter = { status = "published" }
"#;

/// Each socket protocol: the name `tests/js/client.mjs` knows it by, and its sub-protocol.
const PROTOCOLS: [(&str, &str); 3] = [
    ("transport", "graphql-transport-ws"),
    ("legacy", "graphql-ws"),
    ("graphcool", "graphql-subscriptions"),
];

const MESSAGES_SUB: &str = "subscription { messages_mutated { event data { text } } }";

/// How long a check waits to be sure nothing more arrives.
const QUIET: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// Servers

/// A cluster with `sql/demo.sql`, and a walcast in front of it. Field order matters for drop:
/// the server goes before the database it reads.
struct Setup {
    walcast: Walcast,
    pg: PgCluster,
    dir: TempDir,
}

/// A server in auth `mode` with [`TOKENS`], the HS256 [`SECRET`] and, when given, a
/// permissions file.
fn setup(mode: &str, permissions: Option<&str>, extra_env: &[(&str, &str)]) -> Setup {
    let dir = TempDir::new("auth");
    setup_in(
        dir,
        mode,
        permissions,
        ("WALCAST_JWT_SECRET", SECRET),
        extra_env,
    )
}

/// Like [`setup`] in a given directory (which may hold keys already), with another JWT key
/// setting (`WALCAST_JWT_PUBLIC_KEY` say) instead of the secret.
fn setup_in(
    dir: TempDir,
    mode: &str,
    permissions: Option<&str>,
    key: (&str, &str),
    extra_env: &[(&str, &str)],
) -> Setup {
    let pg = pg();
    pg.create_database(DB).expect("create database");
    let demo = std::fs::read_to_string(repo_root().join("sql/demo.sql")).expect("sql/demo.sql");
    sql(&pg, DB, &demo);
    let tokens = dir.write("tokens.toml", TOKENS);
    let tokens = tokens.to_str().expect("temp path is UTF-8").to_owned();
    let perms_path = permissions.map(|text| {
        let path = dir.write("permissions.toml", text);
        path.to_str().expect("temp path is UTF-8").to_owned()
    });
    let mut env = vec![
        ("WEBSOCKETS_GRAPHQL_AUTH", mode),
        ("WALCAST_TOKENS_FILE", tokens.as_str()),
        key,
    ];
    if let Some(path) = &perms_path {
        env.push(("WALCAST_PERMISSIONS_FILE", path.as_str()));
    }
    env.extend_from_slice(extra_env);
    let walcast = Walcast::start(&pg.url(DB), &env);
    Setup { walcast, pg, dir }
}

impl Setup {
    fn sql(&self, statements: &str) -> String {
        sql(&self.pg, DB, statements)
    }

    /// A real client of `protocol` (client.mjs name) with `token` in its init payload,
    /// subscribed to `query` when given; not waited on.
    fn spawn(&self, protocol: &str, token: Option<&str>, query: Option<&str>) -> JsClient {
        self.spawn_at(&self.walcast.ws_url(), protocol, token, query, &[])
    }

    fn spawn_at(
        &self,
        url: &str,
        protocol: &str,
        token: Option<&str>,
        query: Option<&str>,
        extra: &[&str],
    ) -> JsClient {
        let mut args = vec!["--protocol", protocol, "--url", url];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        if let Some(query) = query {
            args.extend(["--query", query]);
        }
        args.extend_from_slice(extra);
        JsClient::spawn(&args)
    }

    /// [`Setup::spawn`], waiting for the connection to be acknowledged.
    fn client(&self, protocol: &str, token: Option<&str>, query: &str) -> JsClient {
        let mut c = self.spawn(protocol, token, Some(query));
        expect_connected(&mut c);
        c
    }

    /// A raw socket of sub-protocol `sub` whose init (with `token`) was acknowledged.
    fn raw(&self, sub: &str, token: Option<&str>) -> RawWs {
        let mut ws = RawWs::connect(&self.walcast.ws_url(), sub);
        ws.send_json(&init_frame(sub, token));
        expect_ack(&mut ws, sub);
        ws
    }

    /// Rewrites the permissions file and sends SIGHUP; returns once the server logged the
    /// reload.
    fn reload_permissions(&self, text: &str) {
        let before = self.reloads();
        self.dir.write("permissions.toml", text);
        let pid = self.walcast.pid().expect("walcast runs");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -HUP {pid}"))
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP {pid}: {status}");
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while self.reloads() == before {
            assert!(
                Instant::now() < deadline,
                "no reload logged after SIGHUP\n{}",
                self.walcast.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The log line comes just before sessions are told to recompute their views.
        std::thread::sleep(Duration::from_millis(200));
    }

    fn reloads(&self) -> usize {
        self.walcast
            .log()
            .matches("tokens and permissions reloaded")
            .count()
    }

    /// A GraphQL request over HTTP that must succeed without errors; returns `data`.
    fn query_ok(&self, query: &str, variables: Value, bearer: Option<&str>) -> Value {
        let (status, body) = self.walcast.graphql(query, variables, bearer);
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body["errors"].is_null(), "{query}: {body}");
        body["data"].clone()
    }

    /// A GraphQL request over HTTP that must fail naming `needle`, without any data.
    fn query_refused(&self, query: &str, variables: Value, bearer: Option<&str>, needle: &str) {
        let (status, body) = self.walcast.graphql(query, variables, bearer);
        assert!(status == 400 || status == 200, "{query}: {status} {body}");
        let errors = body["errors"].to_string();
        assert!(body["errors"].is_array(), "{query}: no errors in {body}");
        assert!(
            errors.contains(needle),
            "{query}: errors do not name {needle:?}: {body}"
        );
        assert_no_rows(&body["data"], query);
    }

    /// The rows a table has, as the database sees them.
    fn count(&self, table: &str) -> i64 {
        self.sql(&format!("SELECT count(*) FROM {table}"))
            .trim()
            .parse()
            .expect("a count")
    }
}

/// `data` of a refused request holds no row: null, or only nulls.
fn assert_no_rows(data: &Value, what: &str) {
    let empty = match data {
        Value::Null => true,
        Value::Object(fields) => fields.values().all(Value::is_null),
        _ => false,
    };
    assert!(empty, "{what}: a refused request returned data {data}");
}

// ---------------------------------------------------------------------------------------------
// Tokens

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("signing a test token")
}

/// An HS256 JWT signed with the server's [`SECRET`].
fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims,
    )
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned JWT: header `{"alg": "none"}` and an empty signature.
fn alg_none(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"}).to_string();
    format!(
        "{}.{}.",
        b64url(header.as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// `token` with its claims replaced and the original signature kept.
fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {token}");
    format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// An RSA key pair made by `openssl` in `dir`: the private key's PEM text and the public
/// key's path.
fn rsa_key_pair(dir: &TempDir, name: &str) -> (String, PathBuf) {
    let private = dir.path().join(format!("{name}.key.pem"));
    let public = dir.path().join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running openssl (needed to make test keys): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let private_s = private.to_str().expect("UTF-8 path");
    let public_s = public.to_str().expect("UTF-8 path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_s,
    ]);
    run(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
    let pem = std::fs::read_to_string(&private).expect("reading the private key");
    (pem, public)
}

// ---------------------------------------------------------------------------------------------
// Protocol frames and client lines

/// The init message of sub-protocol `sub`, with `token` as `access_token`.
fn init_frame(sub: &str, token: Option<&str>) -> Value {
    let payload = match token {
        Some(t) => json!({ "access_token": t }),
        None => json!({}),
    };
    let ty = if sub == "graphql-subscriptions" {
        "init"
    } else {
        "connection_init"
    };
    json!({ "type": ty, "payload": payload })
}

/// The message that starts operation `id` on sub-protocol `sub`.
fn start_frame(sub: &str, id: &str, query: &str, variables: Value) -> Value {
    match sub {
        "graphql-transport-ws" => {
            json!({"type": "subscribe", "id": id, "payload": {"query": query, "variables": variables}})
        }
        "graphql-ws" => {
            json!({"type": "start", "id": id, "payload": {"query": query, "variables": variables}})
        }
        _ => {
            json!({"type": "subscription_start", "id": id, "query": query, "variables": variables})
        }
    }
}

fn ack_type(sub: &str) -> &'static str {
    if sub == "graphql-subscriptions" {
        "init_success"
    } else {
        "connection_ack"
    }
}

/// Reads the acknowledgement of the init message (legacy's `ka` may follow it).
fn expect_ack(ws: &mut RawWs, sub: &str) {
    let frame = recv_json(ws, CONNECT_TIMEOUT);
    assert_eq!(frame["type"], ack_type(sub), "{sub}: {frame}");
}

/// The next frame that is not a keep-alive. A read that a signal interrupted consumed
/// nothing, so it is simply retried.
fn recv_frame(ws: &mut RawWs, timeout: Duration) -> Frame {
    let deadline = Instant::now() + timeout;
    loop {
        match ws.recv(deadline.saturating_duration_since(Instant::now())) {
            Frame::Json(v) if v["type"] == "ka" => continue,
            Frame::Gone(e) if e.contains("(os error 4)") => continue,
            other => return other,
        }
    }
}

/// Reads until the close frame: its code and reason, and the JSON frames before it (keep-alives
/// left out). Panics if the socket stays open past `timeout` or ends without a close frame.
fn expect_close(ws: &mut RawWs, timeout: Duration) -> (u16, String, Vec<Value>) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match recv_frame(ws, deadline.saturating_duration_since(Instant::now())) {
            Frame::Close(code, reason) => return (code, reason, seen),
            Frame::Json(v) => seen.push(v),
            Frame::Text(t) => seen.push(Value::String(t)),
            Frame::Binary(_) => {}
            other => panic!(
                "expected a close frame within {timeout:?}, got {other:?} after {}",
                show(&seen)
            ),
        }
    }
}

/// The next JSON frame that is not a keep-alive.
fn recv_json(ws: &mut RawWs, timeout: Duration) -> Value {
    match recv_frame(ws, timeout) {
        Frame::Json(v) => v,
        other => panic!("expected a JSON frame within {timeout:?}, got {other:?}"),
    }
}

/// Asserts that nothing but keep-alives arrives within `quiet`.
fn expect_raw_silence(ws: &mut RawWs, quiet: Duration) {
    match recv_frame(ws, quiet) {
        Frame::Timeout => {}
        other => panic!("expected silence for {quiet:?}, got {other:?}"),
    }
}

/// Sends `n` copies of `frame` in one burst on a fresh socket of sub-protocol `sub`, then reads
/// until the close: its code and the JSON frames before it. One burst, so the server has read
/// every frame when it closes: closing with unread data would reset the connection, and the
/// close frame could be lost.
fn flood(url: &str, sub: &str, frame: &Value, n: usize) -> (u16, Vec<Value>) {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

    let mut request = url.into_client_request().expect("a ws:// URL");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        sub.parse().expect("a header value"),
    );
    let addr = request.uri().authority().expect("host:port").to_string();
    let stream = std::net::TcpStream::connect(&addr).expect("connecting");
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .expect("setting a read timeout");
    let (mut ws, _) = tungstenite::client::client(request, stream)
        .unwrap_or_else(|e| panic!("upgrade to {url}: {e}"));
    let text = frame.to_string();
    for _ in 0..n {
        ws.write(Message::text(text.clone()))
            .expect("buffering a frame");
    }
    ws.flush().expect("sending the burst");
    let mut seen = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => seen
                .push(serde_json::from_str(t.as_str()).unwrap_or_else(|_| Value::from(t.as_str()))),
            Ok(Message::Close(f)) => {
                return (f.map_or(1005, |f| u16::from(f.code)), seen);
            }
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            Err(e) => panic!(
                "{sub}: no close frame after the burst ({e}); saw {}",
                show(&seen)
            ),
        }
    }
}

/// Waits for `connected`; panics (with the lines) on a refusal or close first.
fn expect_connected(c: &mut JsClient) {
    let (_, skipped) = c.wait_kind("connected", CONNECT_TIMEOUT);
    assert!(
        skipped.is_empty() || skipped.iter().all(|l| l["kind"] == "init_success"),
        "lines before `connected`: {}",
        show(&skipped)
    );
}

/// The kind of line `protocol` reports an operation's GraphQL errors with.
fn error_kind(protocol: &str) -> &'static str {
    if protocol == "graphcool" {
        "subscription_fail"
    } else {
        "error"
    }
}

/// The operation's error line, which must name `needle`; no event may come before it.
fn expect_op_error(c: &mut JsClient, protocol: &str, needle: &str) -> Value {
    let (line, skipped) = c.wait_kind(error_kind(protocol), EVENT_TIMEOUT);
    assert!(
        skipped.iter().all(|l| l["kind"] != "next"),
        "events before the error: {}",
        show(&skipped)
    );
    let text = line.to_string();
    assert!(
        text.contains(needle),
        "the error does not name {needle:?}: {text}"
    );
    line
}

/// The payload of the next event; protocol chatter (`subscription_success`) is skipped, an
/// error or completion first fails.
fn next_payload(c: &mut JsClient) -> Value {
    let (line, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
    assert!(
        skipped
            .iter()
            .all(|l| l["kind"] == "subscription_success" || l["kind"] == "connected"),
        "unexpected lines before the event: {}",
        show(&skipped)
    );
    let payload = line["payload"].clone();
    assert!(
        payload["errors"].is_null() || payload["errors"].as_array().is_some_and(Vec::is_empty),
        "event with errors: {payload}"
    );
    payload
}

/// The next `n` event payloads.
fn next_payloads(c: &mut JsClient, n: usize) -> Vec<Value> {
    (0..n).map(|_| next_payload(c)).collect()
}

/// Asserts that no event (nor error) arrives within `quiet`; protocol chatter is allowed.
fn expect_no_event(c: &mut JsClient, quiet: Duration) {
    let lines = c.drain(quiet);
    assert!(
        lines
            .iter()
            .all(|l| ["subscription_success", "connected", "closed"]
                .contains(&l["kind"].as_str().unwrap_or(""))),
        "expected no event, got {}",
        show(&lines)
    );
}

/// Lines until the socket closes; returns the close code and the lines before it.
fn until_closed(c: &mut JsClient, timeout: Duration) -> (i64, Vec<Value>) {
    let (closed, lines) = c.wait_kind("closed", timeout);
    (closed["code"].as_i64().unwrap_or(-1), lines)
}

// ---------------------------------------------------------------------------------------------
// Auth modes

#[test]
fn public_mode_on_every_protocol_and_http() {
    let s = setup("public", Some(PERMISSIONS), &[]);
    let mut subs: Vec<(&str, JsClient)> = PROTOCOLS
        .iter()
        .map(|(js, _)| (*js, s.client(js, None, MESSAGES_SUB)))
        .collect();
    // A token changes nothing in public mode: an admin token is still role public.
    let mut admin_tried = s.client(
        "transport",
        Some(ADMIN),
        "subscription { articles_mutated { key } }",
    );
    expect_op_error(&mut admin_tried, "transport", "articles_mutated");
    for (js, _) in PROTOCOLS {
        let mut c = s.client(js, None, "subscription { articles { mutation } }");
        expect_op_error(&mut c, js, "articles");
        expect_no_event(&mut c, Duration::ZERO);
    }
    s.walcast.wait_subscriptions_at_least(3, CONNECT_TIMEOUT);

    s.sql("INSERT INTO articles (title, status) VALUES ('not for public', 'published')");
    insert_message(&s.pg, DB, "hello public");
    for (js, c) in &mut subs {
        let p = next_payload(c);
        assert_eq!(
            p["data"]["messages_mutated"],
            json!({"event": "create", "data": {"text": "hello public"}}),
            "{js}: {p}"
        );
    }
    for (_, c) in &mut subs {
        expect_no_event(c, QUIET);
    }
    expect_no_event(&mut admin_tried, Duration::ZERO);

    // HTTP: role public with or without a bearer token.
    for bearer in [None, Some(ADMIN)] {
        let data = s.query_ok(
            "{ messages(orderBy: [\"id\"]) { text } }",
            json!({}),
            bearer,
        );
        assert_eq!(
            data["messages"],
            json!([{"text": "Hello from walcast"}, {"text": "hello public"}]),
            "{bearer:?}"
        );
        s.query_refused("{ articles { title } }", json!({}), bearer, "articles");
    }
}

#[test]
fn public_role_sees_nothing_without_a_permissions_file() {
    let s = setup("public", None, &[]);
    for (js, _) in PROTOCOLS {
        let mut c = s.client(js, None, MESSAGES_SUB);
        expect_op_error(&mut c, js, "messages_mutated");
    }
    s.query_refused("{ messages { text } }", json!({}), None, "messages");
    let data = s.query_ok(
        "{ __schema { queryType { fields { name } } } }",
        json!({}),
        None,
    );
    assert_eq!(
        data["__schema"]["queryType"]["fields"],
        json!([{"name": "_cursor"}]),
        "{data}"
    );
}

#[test]
fn handshake_mode_on_every_protocol_and_http() {
    let s = setup(
        "handshake",
        None,
        &[("WEBSOCKETS_GRAPHQL_AUTH_TIMEOUT", "1000")],
    );
    let mut subs: Vec<(&str, JsClient)> = PROTOCOLS
        .iter()
        .map(|(js, _)| (*js, s.client(js, Some(ADMIN), MESSAGES_SUB)))
        .collect();
    // The token may also come as an Authorization header value in the init payload.
    let mut raw = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
    raw.send_json(&json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {ADMIN}")}}));
    expect_ack(&mut raw, "graphql-transport-ws");
    raw.send_json(&start_frame(
        "graphql-transport-ws",
        "h",
        MESSAGES_SUB,
        json!({}),
    ));
    s.walcast.wait_subscriptions_at_least(4, CONNECT_TIMEOUT);

    insert_message(&s.pg, DB, "hello handshake");
    for (js, c) in &mut subs {
        let p = next_payload(c);
        assert_eq!(
            p["data"]["messages_mutated"]["data"]["text"], "hello handshake",
            "{js}: {p}"
        );
    }
    let frame = recv_json(&mut raw, EVENT_TIMEOUT);
    assert_eq!(frame["type"], "next", "{frame}");
    assert_eq!(
        frame["payload"]["data"]["messages_mutated"]["data"]["text"],
        "hello handshake"
    );

    // No init within WEBSOCKETS_GRAPHQL_AUTH_TIMEOUT: 4408, and nothing else.
    for (_, sub) in PROTOCOLS {
        let started = Instant::now();
        let mut idle = RawWs::connect(&s.walcast.ws_url(), sub);
        let (code, reason, seen) = expect_close(&mut idle, Duration::from_secs(10));
        let took = started.elapsed();
        assert_eq!(code, 4408, "{sub}: {reason}");
        assert!(
            seen.is_empty(),
            "{sub}: frames before the close: {}",
            show(&seen)
        );
        // Not before the timeout; how long after depends on the machine's load.
        assert!(
            took >= Duration::from_millis(800),
            "{sub}: closed after {took:?}, the timeout is 1000 ms"
        );
    }
    // A socket that starts operations without init gets no data either.
    let mut eager = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
    eager.send_json(&start_frame(
        "graphql-transport-ws",
        "e",
        MESSAGES_SUB,
        json!({}),
    ));
    let (code, _, seen) = expect_close(&mut eager, Duration::from_secs(5));
    assert_eq!(code, 4401, "subscribe before init: {}", show(&seen));
    assert!(seen.is_empty(), "{}", show(&seen));

    // HTTP: Authorization: Bearer; a bad one is 401; none is role public, which sees nothing.
    let data = s.query_ok(
        "{ articles(orderBy: [\"id\"]) { id } }",
        json!({}),
        Some(ADMIN),
    );
    assert_eq!(data["articles"], json!([{"id": "1"}, {"id": "2"}]));
    let (status, body) = s
        .walcast
        .graphql("{ articles { id } }", json!({}), Some("wrong"));
    assert_eq!(status, 401, "{body}");
    assert_no_rows(&body["data"], "bad bearer");
    s.query_refused("{ articles { id } }", json!({}), None, "articles");
}

#[test]
fn handshake_refusals_per_protocol() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    // Real clients with a token the server does not know.
    let mut transport = s.spawn("transport", Some("not-a-known-token"), Some(MESSAGES_SUB));
    let (code, lines) = until_closed(&mut transport, CONNECT_TIMEOUT);
    assert_eq!(code, 4403, "{}", show(&lines));
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] != "connected" && l["kind"] != "next"),
        "{}",
        show(&lines)
    );

    let mut legacy = s.spawn("legacy", Some("not-a-known-token"), Some(MESSAGES_SUB));
    let (_, lines) = until_closed(&mut legacy, CONNECT_TIMEOUT);
    assert!(
        lines.iter().any(|l| l["kind"] == "error"),
        "connection_error reported: {}",
        show(&lines)
    );
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] != "connected" && l["kind"] != "next"),
        "{}",
        show(&lines)
    );

    let mut graphcool = s.spawn("graphcool", Some("not-a-known-token"), Some(MESSAGES_SUB));
    let (fail, skipped) = graphcool.wait_kind("init_fail", CONNECT_TIMEOUT);
    assert!(skipped.is_empty(), "{}", show(&skipped));
    assert!(fail.to_string().contains("Forbidden"), "{fail}");

    // The same on raw sockets, with no token at all.
    let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
    ws.send_json(&init_frame("graphql-transport-ws", None));
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!((code, seen.len()), (4403, 0), "{}", show(&seen));

    let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-ws");
    ws.send_json(&init_frame("graphql-ws", None));
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!(code, 4403);
    assert_eq!(seen.len(), 1, "{}", show(&seen));
    assert_eq!(seen[0]["type"], "connection_error", "{}", show(&seen));
    assert!(seen[0]["payload"]["message"].is_string(), "{}", show(&seen));

    let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-subscriptions");
    ws.send_json(&init_frame("graphql-subscriptions", None));
    let fail = recv_json(&mut ws, CONNECT_TIMEOUT);
    assert_eq!(fail["type"], "init_fail", "{fail}");
    // Refused, the socket closes: one connection cannot try token after token.
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!((code, seen.len()), (4403, 0), "{}", show(&seen));

    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "for nobody");
    expect_no_event(&mut graphcool, QUIET);
}

#[test]
fn strict_mode_authenticates_the_upgrade() {
    let s = setup("strict", Some(PERMISSIONS), &[]);
    let url = s.walcast.ws_url();
    let expired = hs256(json!({"role": "admin", "exp": now() - 3600}));
    let unsigned = alg_none(&json!({"role": "admin", "exp": now() + 600}));
    for (_, sub) in PROTOCOLS {
        let refused: Vec<(String, Vec<(&str, String)>)> = vec![
            (url.clone(), vec![]),
            (format!("{url}?access_token=wrong"), vec![]),
            (format!("{url}?access_token={expired}"), vec![]),
            (format!("{url}?access_token={unsigned}"), vec![]),
            (
                url.clone(),
                vec![("Authorization", "Bearer wrong".to_owned())],
            ),
            (
                url.clone(),
                vec![("Authorization", format!("Bearer {expired}"))],
            ),
            // Only a bearer token counts.
            (
                url.clone(),
                vec![("Authorization", format!("Basic {ADMIN}"))],
            ),
        ];
        for (target, headers) in refused {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match RawWs::try_connect(&target, &[sub], &headers) {
                Ok(_) => panic!("{sub}: upgrade of {target} with {headers:?} accepted"),
                Err(e) => assert_eq!(
                    upgrade_status(&e),
                    Some(401),
                    "{sub}: {target} with {headers:?}: {e}"
                ),
            }
        }
    }

    // Accepted through the URL, with real clients whose init payload carries no token.
    let with_token = format!("{url}?access_token={ADMIN}");
    let mut subs: Vec<(&str, JsClient)> = PROTOCOLS
        .iter()
        .map(|(js, _)| {
            let mut c = s.spawn_at(&with_token, js, None, Some(MESSAGES_SUB), &[]);
            expect_connected(&mut c);
            (*js, c)
        })
        .collect();
    // Accepted through the header; the role is the upgrade's, whatever the init payload says.
    let header = format!("Bearer {READER}");
    let mut ws = RawWs::try_connect(
        &url,
        &["graphql-transport-ws"],
        &[("Authorization", header.as_str())],
    )
    .unwrap_or_else(|e| panic!("upgrade with a reader token: {e}"));
    ws.send_json(&init_frame("graphql-transport-ws", Some(ADMIN)));
    expect_ack(&mut ws, "graphql-transport-ws");
    ws.send_json(&start_frame(
        "graphql-transport-ws",
        "m",
        MESSAGES_SUB,
        json!({}),
    ));
    let refused = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(
        (&refused["type"], &refused["id"]),
        (&json!("error"), &json!("m")),
        "{refused}"
    );
    ws.send_json(&start_frame(
        "graphql-transport-ws",
        "a",
        "subscription { articles_mutated { data { title status } } }",
        json!({}),
    ));
    s.walcast.wait_subscriptions_at_least(4, CONNECT_TIMEOUT);

    insert_message(&s.pg, DB, "hello strict");
    s.sql("INSERT INTO articles (title, status) VALUES ('strictly published', 'published')");
    for (js, c) in &mut subs {
        let p = next_payload(c);
        assert_eq!(
            p["data"]["messages_mutated"]["data"]["text"], "hello strict",
            "{js}: {p}"
        );
    }
    let frame = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(
        frame["payload"]["data"]["articles_mutated"]["data"],
        json!({"title": "strictly published", "status": "published"}),
        "{frame}"
    );
    expect_raw_silence(&mut ws, QUIET);

    // HTTP: a good bearer works, a bad one is 401.
    let data = s.query_ok(
        "{ articles(orderBy: [\"id\"]) { title } }",
        json!({}),
        Some(READER),
    );
    assert_eq!(
        data["articles"],
        json!([{"title": "Streaming the WAL"}, {"title": "strictly published"}])
    );
    let (status, body) = s
        .walcast
        .graphql("{ messages { text } }", json!({}), Some(&expired));
    assert_eq!(status, 401, "{body}");
    assert_no_rows(&body["data"], "expired bearer");
}

/// In strict mode a request without a token is refused over HTTP as at the upgrade.
#[test]
fn strict_mode_http_needs_a_token() {
    let s = setup("strict", Some(PERMISSIONS), &[]);
    let (status, body) = s.walcast.graphql("{ messages { text } }", json!({}), None);
    assert_eq!(
        status, 401,
        "strict mode answered a request without a token: {body}"
    );
    assert_no_rows(&body["data"], "no bearer");
}

// ---------------------------------------------------------------------------------------------
// Refused tokens

#[test]
fn malformed_expired_foreign_and_unsigned_tokens_are_refused() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let admin_claims = json!({"role": "admin", "exp": now() + 600});
    let other_key = EncodingKey::from_secret(b"another-secret-another-secret-another");
    let reader_jwt = hs256(json!({"role": "reader", "exp": now() + 600}));
    let bad: Vec<(&str, String)> = vec![
        ("garbage", "garbage".to_owned()),
        ("three dots", "a.b.c".to_owned()),
        ("two parts", "eyJhbGciOiJIUzI1NiJ9.e30".to_owned()),
        ("base64 junk", "eyJhbGciOiJIUzI1NiJ9.!!!.???".to_owned()),
        (
            "expired",
            hs256(json!({"role": "admin", "exp": now() - 3600})),
        ),
        ("no exp", hs256(json!({"role": "admin"}))),
        (
            "not yet valid",
            hs256(json!({"role": "admin", "exp": now() + 7200, "nbf": now() + 3600})),
        ),
        (
            "another key",
            sign(Algorithm::HS256, &other_key, &admin_claims),
        ),
        ("alg none", alg_none(&admin_claims)),
        ("tampered claims", tampered(&reader_jwt, &admin_claims)),
        (
            "HS512",
            sign(
                Algorithm::HS512,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                &admin_claims,
            ),
        ),
    ];
    for (what, token) in &bad {
        let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
        ws.send_json(&init_frame("graphql-transport-ws", Some(token)));
        let (code, reason, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
        assert_eq!(code, 4403, "{what}: {reason}");
        assert!(seen.is_empty(), "{what}: {}", show(&seen));
        assert!(
            !reason.contains(SECRET),
            "{what}: the reason shows the secret: {reason}"
        );

        let (status, body) = s
            .walcast
            .graphql("{ articles { title } }", json!({}), Some(token));
        assert_eq!(status, 401, "{what}: {body}");
        assert_no_rows(&body["data"], what);
    }
    // The control: a well-signed token is accepted.
    let mut ok = s.raw("graphql-transport-ws", Some(&hs256(admin_claims)));
    ok.send_json(&json!({"type": "ping"}));
    assert_eq!(recv_json(&mut ok, EVENT_TIMEOUT)["type"], "pong");
    let data = s.query_ok("{ articles { id } }", json!({}), Some(&reader_jwt));
    assert_eq!(data["articles"], json!([{"id": "1"}]));
}

#[test]
fn an_rs256_key_accepts_only_rs256_tokens_it_signed() {
    let dir = TempDir::new("auth-rsa");
    let (private, public) = rsa_key_pair(&dir, "server");
    let (stranger, _) = rsa_key_pair(&dir, "stranger");
    let public_pem = std::fs::read_to_string(&public).expect("public key");
    let public = public.to_str().expect("UTF-8 path").to_owned();
    let s = setup_in(
        dir,
        "handshake",
        None,
        ("WALCAST_JWT_PUBLIC_KEY", &public),
        &[],
    );
    let claims = json!({"role": "admin", "exp": now() + 600});
    let rs256 = |pem: &str| {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA private key");
        sign(Algorithm::RS256, &key, &claims)
    };
    let good = rs256(&private);
    let bad: Vec<(&str, String)> = vec![
        // Algorithm confusion: HS256 keyed with the server's public key.
        (
            "HS256 keyed with the public key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(public_pem.as_bytes()),
                &claims,
            ),
        ),
        ("HS256 with a secret", hs256(claims.clone())),
        ("RS256 from another key", rs256(&stranger)),
        ("alg none", alg_none(&claims)),
        ("RS256 expired", {
            let key = EncodingKey::from_rsa_pem(private.as_bytes()).expect("RSA private key");
            sign(
                Algorithm::RS256,
                &key,
                &json!({"role": "admin", "exp": now() - 3600}),
            )
        }),
    ];
    for (what, token) in &bad {
        let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
        ws.send_json(&init_frame("graphql-transport-ws", Some(token)));
        let (code, reason, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
        assert_eq!(code, 4403, "{what}: {reason}");
        assert!(seen.is_empty(), "{what}: {}", show(&seen));
        let (status, body) = s
            .walcast
            .graphql("{ messages { text } }", json!({}), Some(token));
        assert_eq!(status, 401, "{what}: {body}");
        assert_no_rows(&body["data"], what);
    }
    let mut c = s.client("transport", Some(&good), MESSAGES_SUB);
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "signed with RS256");
    let p = next_payload(&mut c);
    assert_eq!(
        p["data"]["messages_mutated"]["data"]["text"],
        "signed with RS256"
    );
    let data = s.query_ok(
        "{ messages(orderBy: [\"id\"]) { text } }",
        json!({}),
        Some(&good),
    );
    assert_eq!(data["messages"][1]["text"], "signed with RS256");
}

#[test]
fn a_role_without_entries_sees_nothing() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let intruder = hs256(json!({"role": "intruder", "exp": now() + 600}));
    // No role claim: `authenticated`, which has no entry either.
    let nameless = hs256(json!({"sub": "1", "exp": now() + 600}));
    for token in [&intruder, &nameless] {
        for (js, _) in PROTOCOLS {
            let mut c = s.client(js, Some(token), MESSAGES_SUB);
            expect_op_error(&mut c, js, "messages_mutated");
        }
        let mut c = s.client(
            "transport",
            Some(token),
            "subscription { articles(where: {mutation_in: [CREATED]}) { node { id } } }",
        );
        expect_op_error(&mut c, "transport", "articles");
        s.query_refused("{ messages { text } }", json!({}), Some(token), "messages");
        s.query_refused(
            "{ articles_by_id(id: \"1\") { title } }",
            json!({}),
            Some(token),
            "articles_by_id",
        );
        let data = s.query_ok("{ __schema { types { name } } }", json!({}), Some(token));
        let names = data["__schema"]["types"].to_string();
        for table in ["messages", "articles", "users", "comments"] {
            assert!(
                !names.contains(&format!("\"{table}")),
                "introspection shows {table}: {names}"
            );
        }
    }
    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
}

#[test]
fn filter_values_crafted_as_sql_have_no_effect() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let drop = "x'); DROP TABLE messages; --";
    let mut by_variable = s.spawn_at(
        &s.walcast.ws_url(),
        "transport",
        Some(ADMIN),
        Some("subscription ($t: String) { messages_mutated(where: {text: $t}) { data { text } } }"),
        &["--variables", &json!({"t": drop}).to_string()],
    );
    expect_connected(&mut by_variable);
    let mut inline = s.client(
        "legacy",
        Some(ADMIN),
        r#"subscription { messages_mutated(where: {text_contains: "'; DELETE FROM messages; --"}) { data { text } } }"#,
    );
    let mut prisma = s.client(
        "graphcool",
        Some(ADMIN),
        r#"subscription { messages(where: {node: {text_in: ["') OR 1=1 --", "\" OR \"\"=\""]}}) { node { text } } }"#,
    );
    // The sly role's filter takes its claim, `x' OR '1'='1`, as a plain value.
    let mut sly = s.client("transport", Some(SLY), MESSAGES_SUB);
    s.walcast.wait_subscriptions_at_least(4, CONNECT_TIMEOUT);

    for q in [
        r#"{ messages(where: {text: "x' OR '1'='1"}) { id } }"#,
        r#"{ messages(where: {text_in: ["') OR 1=1 --"], OR: [{text_starts_with: "%"}]}) { id } }"#,
        r#"{ messages(where: {text_ends_with: "'; DROP TABLE messages; --"}) { id } }"#,
    ] {
        let data = s.query_ok(q, json!({}), Some(ADMIN));
        assert_eq!(data["messages"], json!([]), "{q}: {data}");
    }
    let data = s.query_ok("{ messages { text } }", json!({}), Some(SLY));
    assert_eq!(data["messages"], json!([]), "sly sees rows: {data}");
    let (_, body) = s.walcast.graphql(
        r#"{ messages(orderBy: ["id; DROP TABLE messages"]) { id } }"#,
        json!({}),
        Some(ADMIN),
    );
    assert!(body["errors"].to_string().contains("orderBy"), "{body}");
    let (_, body) = s.walcast.graphql(
        r#"{ messages_by_id(id: "1; DROP TABLE messages") { id } }"#,
        json!({}),
        Some(ADMIN),
    );
    assert!(body["data"]["messages_by_id"].is_null(), "{body}");

    // Still there, and the crafted values match only themselves.
    assert_eq!(s.count("messages"), 1);
    for text in [
        "harmless",
        drop,
        SLY_NAME,
        "'; DELETE FROM messages; --",
        "') OR 1=1 --",
    ] {
        insert_message(&s.pg, DB, text);
    }
    let p = next_payload(&mut by_variable);
    assert_eq!(p["data"]["messages_mutated"]["data"]["text"], drop);
    let p = next_payload(&mut inline);
    assert_eq!(
        p["data"]["messages_mutated"]["data"]["text"],
        "'; DELETE FROM messages; --"
    );
    let p = next_payload(&mut prisma);
    assert_eq!(p["data"]["messages"]["node"]["text"], "') OR 1=1 --");
    let p = next_payload(&mut sly);
    assert_eq!(p["data"]["messages_mutated"]["data"]["text"], SLY_NAME);
    for c in [&mut by_variable, &mut inline, &mut prisma, &mut sly] {
        expect_no_event(c, QUIET);
    }
    assert_eq!(s.count("messages"), 6);
    let data = s.query_ok("{ messages { text } }", json!({}), Some(SLY));
    assert_eq!(data["messages"], json!([{"text": SLY_NAME}]));
}

// ---------------------------------------------------------------------------------------------
// Tables and columns

#[test]
fn tables_and_columns_outside_the_role_are_absent() {
    let s = setup(
        "handshake",
        Some(PERMISSIONS),
        &[("WALCAST_MUTATIONS", "true")],
    );
    // A hidden column, per protocol.
    for (js, _) in PROTOCOLS {
        let mut c = s.client(
            js,
            Some(READER),
            "subscription { articles_mutated { data { id author_id } } }",
        );
        expect_op_error(&mut c, js, "author_id");
        let mut c = s.client(js, Some(READER), MESSAGES_SUB);
        expect_op_error(&mut c, js, "messages_mutated");
    }
    // Through fragments, aliases and filters.
    for query in [
        "subscription { articles_mutated { data { ...F } } } fragment F on articles { title author_id }",
        "subscription { articles_mutated { data { ... on articles { author_id } } } }",
        "subscription { articles_mutated { data { id owner: author_id } } }",
        "subscription { articles { previousValues { author_id } } }",
        "subscription { articles_mutated(where: {author_id: 1}) { key } }",
        "subscription { articles(where: {node: {author_id_in: [1, 2]}}) { mutation } }",
        "subscription { users_mutated { key } }",
    ] {
        let mut c = s.client("transport", Some(READER), query);
        let needle = if query.contains("users") { "users" } else { "author_id" };
        expect_op_error(&mut c, "transport", needle);
    }
    // A filter on a hidden column passed as a variable.
    let mut c = s.spawn_at(
        &s.walcast.ws_url(),
        "transport",
        Some(READER),
        Some("subscription ($w: articlesWhereInput) { articles_mutated(where: $w) { key } }"),
        &["--variables", r#"{"w": {"author_id": 1}}"#],
    );
    expect_connected(&mut c);
    expect_op_error(&mut c, "transport", "author_id");

    // HTTP: fields, filters, ordering, other tables, mutations.
    for (query, variables, needle) in [
        ("{ articles { id author_id } }", json!({}), "author_id"),
        (
            "{ articles { ...F } } fragment F on articles { author_id }",
            json!({}),
            "author_id",
        ),
        ("{ a: articles { who: author_id } }", json!({}), "author_id"),
        (
            "{ articles(where: {author_id: 1}) { id } }",
            json!({}),
            "author_id",
        ),
        (
            "query ($w: articlesWhereInput) { articles(where: $w) { id } }",
            json!({"w": {"author_id": 1}}),
            "author_id",
        ),
        (
            "{ articles(orderBy: [\"author_id\"]) { id } }",
            json!({}),
            "author_id",
        ),
        ("{ users { name } }", json!({}), "users"),
        (
            "{ messages_by_id(id: \"1\") { text } }",
            json!({}),
            "messages_by_id",
        ),
        // No mutation at all for this role.
        (
            "mutation { create_articles_item(data: {title: \"sneaky\"}) { id } }",
            json!({}),
            "mutations",
        ),
    ] {
        s.query_refused(query, variables, Some(READER), needle);
    }
    assert_eq!(s.count("articles"), 2, "a refused mutation wrote");

    // Introspection shows only the role's columns and tables.
    let data = s.query_ok(
        r#"{ row: __type(name: "articles") { fields { name } }
             prev: __type(name: "articlesPreviousValues") { fields { name } }
             where: __type(name: "articlesWhereInput") { inputFields { name } }
             messages: __type(name: "messages") { name } }"#,
        json!({}),
        Some(READER),
    );
    assert_eq!(
        data["row"]["fields"],
        json!([{"name": "id"}, {"name": "title"}, {"name": "status"}]),
        "{data}"
    );
    assert_eq!(data["prev"]["fields"], data["row"]["fields"], "{data}");
    assert!(!data["where"].to_string().contains("author_id"), "{data}");
    assert!(data["messages"].is_null(), "{data}");
    // The same type for a role that sees author_id and not status.
    let data = s.query_ok(
        r#"{ __type(name: "articles") { fields { name } } }"#,
        json!({}),
        Some(DRAFTER),
    );
    assert_eq!(
        data["__type"]["fields"],
        json!([{"name": "id"}, {"name": "title"}, {"name": "author_id"}]),
        "{data}"
    );
    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
}

/// `updatedFields` conditions are strings, outside what the schema validates: naming a hidden
/// column there must be refused too, or a role learns when that column changes.
#[test]
fn updated_fields_conditions_cannot_name_hidden_columns() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    for condition in [
        r#"updatedFields_contains: "author_id""#,
        r#"updatedFields_contains_some: ["author_id"]"#,
        r#"updatedFields_contains_every: ["author_id"]"#,
    ] {
        let query = format!(
            "subscription {{ articles(where: {{mutation_in: [UPDATED], {condition}}}) {{ mutation node {{ id }} }} }}"
        );
        let mut c = s.client("transport", Some(READER), &query);
        // Refused at once, or registered: then the write below would reach it.
        let mut lines = Vec::new();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        while s.walcast.active_subscriptions() == 0 && Instant::now() < deadline {
            lines.extend(c.drain(Duration::from_millis(100)));
            if lines.iter().any(|l| l["kind"] == "error") {
                break;
            }
        }
        // The article the reader sees changes only in the column it does not see.
        s.sql("UPDATE articles SET author_id = 3 - author_id WHERE id = 1");
        lines.extend(c.drain(QUIET));
        assert!(
            lines.iter().all(|l| l["kind"] != "next"),
            "{condition}: the reader learnt that author_id changed: {}",
            show(&lines)
        );
        let error = lines.iter().find(|l| l["kind"] == "error");
        assert!(
            error.is_some_and(|e| e.to_string().contains("author_id")),
            "{condition}: accepted: {}",
            show(&lines)
        );
        drop(c);
        s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

const READER_PRISMA: &str = "subscription { articles { mutation node { id title status } previousValues { id title status } } }";

#[test]
fn row_filters_judge_inserts_updates_and_deletes_and_apply_to_queries() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    // Queries first: the same filter in SQL, by list, by id, over HTTP and the socket.
    let before = s.query_ok(
        "{ _cursor articles { title status } }",
        json!({}),
        Some(READER),
    );
    assert_eq!(
        before["articles"],
        json!([{"title": "Streaming the WAL", "status": "published"}])
    );
    let cursor = before["_cursor"].as_str().expect("a cursor").to_owned();
    for q in [
        r#"{ articles(where: {status: "draft"}) { id } }"#,
        r#"{ articles(where: {OR: [{status: "draft"}, {title: "Subscriptions without triggers"}]}) { id } }"#,
        r#"{ articles(where: {NOT: [{status: "published"}]}) { id } }"#,
    ] {
        assert_eq!(
            s.query_ok(q, json!({}), Some(READER))["articles"],
            json!([]),
            "{q}"
        );
    }
    let data = s.query_ok(
        r#"{ articles_by_id(id: "2") { id } }"#,
        json!({}),
        Some(READER),
    );
    assert!(data["articles_by_id"].is_null(), "{data}");
    let mut q = s.client("transport", Some(READER), "{ articles { id } }");
    assert_eq!(
        next_payload(&mut q)["data"]["articles"],
        json!([{"id": "1"}])
    );
    q.expect_kind("complete", EVENT_TIMEOUT);

    let mut prisma = s.client("transport", Some(READER), READER_PRISMA);
    let mut directus = s.client(
        "legacy",
        Some(READER),
        "subscription { articles_mutated { event data { title status } } }",
    );
    let mut admin = s.client(
        "graphcool",
        Some(ADMIN),
        "subscription { articles { mutation } }",
    );
    s.walcast.wait_subscriptions_at_least(3, CONNECT_TIMEOUT);

    // One transaction per statement.
    s.sql(
        "INSERT INTO articles (id, title, status) VALUES (101, 'd1', 'draft');
         INSERT INTO articles (id, title, status) VALUES (102, 'p1', 'published');
         UPDATE articles SET title = 'p1b' WHERE id = 102;
         UPDATE articles SET status = 'draft' WHERE id = 102;
         UPDATE articles SET title = 'p1c' WHERE id = 102;
         DELETE FROM articles WHERE id = 102;
         INSERT INTO articles (id, title, status) VALUES (103, 'p2', 'published');
         DELETE FROM articles WHERE id = 103;
         DELETE FROM articles WHERE id = 101;",
    );
    // The control sees all nine changes.
    next_payloads(&mut admin, 9);

    // An update is judged on both versions: 102 leaving the published rows is a delete of what
    // the reader saw; its later changes, as a draft, are nothing.
    let expected = json!([
        {"mutation": "CREATED", "node": {"id": "102", "title": "p1", "status": "published"}, "previousValues": null},
        {"mutation": "UPDATED", "node": {"id": "102", "title": "p1b", "status": "published"},
         "previousValues": {"id": "102", "title": "p1", "status": "published"}},
        {"mutation": "DELETED", "node": null, "previousValues": {"id": "102", "title": "p1b", "status": "published"}},
        {"mutation": "CREATED", "node": {"id": "103", "title": "p2", "status": "published"}, "previousValues": null},
        {"mutation": "DELETED", "node": null, "previousValues": {"id": "103", "title": "p2", "status": "published"}},
    ]);
    let got: Vec<Value> = next_payloads(&mut prisma, 5)
        .into_iter()
        .map(|p| p["data"]["articles"].clone())
        .collect();
    assert_eq!(Value::Array(got), expected);
    let got: Vec<Value> = next_payloads(&mut directus, 5)
        .into_iter()
        .map(|p| p["data"]["articles_mutated"].clone())
        .collect();
    assert_eq!(
        Value::Array(got),
        json!([
            {"event": "create", "data": {"title": "p1", "status": "published"}},
            {"event": "update", "data": {"title": "p1b", "status": "published"}},
            {"event": "delete", "data": null},
            {"event": "create", "data": {"title": "p2", "status": "published"}},
            {"event": "delete", "data": null},
        ])
    );
    expect_no_event(&mut prisma, QUIET);
    expect_no_event(&mut directus, Duration::from_millis(200));

    // Replaying from the cursor taken before the writes applies the same filter.
    let mut replay = s.spawn_at(
        &s.walcast.ws_url(),
        "transport",
        Some(READER),
        Some("subscription ($c: String) { articles(after: $c) { mutation node { id title status } previousValues { id title status } } }"),
        &["--variables", &json!({"c": cursor}).to_string()],
    );
    expect_connected(&mut replay);
    let got: Vec<Value> = next_payloads(&mut replay, 5)
        .into_iter()
        .map(|p| p["data"]["articles"].clone())
        .collect();
    assert_eq!(Value::Array(got), expected);
    expect_no_event(&mut replay, QUIET);
}

/// Conditions on related rows see the related table as the caller does: a hidden row never
/// satisfies them, or filtering users by their articles would reveal draft articles.
#[test]
fn relation_conditions_apply_the_related_tables_row_filter() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    // Grace (user 2) wrote only the draft article of the seed.
    let names = |query: &str| s.query_ok(query, json!({}), Some(MIXED))["users"].clone();
    assert_eq!(
        names(r#"{ users(orderBy: ["id"]) { name articles { title status } } }"#),
        json!([
            {"name": "Ada", "articles": [{"title": "Streaming the WAL", "status": "published"}]},
            {"name": "Grace", "articles": []},
        ]),
        "nested rows"
    );
    assert_eq!(
        names(r#"{ users(where: {articles_some: {status: "draft"}}) { name } }"#),
        json!([]),
        "articles_some matched a draft the role cannot see"
    );
    assert_eq!(
        names(
            r#"{ users(where: {articles_some: {title_starts_with: "Subscriptions"}}) { name } }"#
        ),
        json!([]),
        "articles_some matched a hidden title"
    );
    assert_eq!(
        names(r#"{ users(where: {articles_none: {status: "draft"}}, orderBy: ["id"]) { name } }"#),
        json!([{"name": "Ada"}, {"name": "Grace"}]),
        "articles_none saw a hidden draft"
    );
    assert_eq!(
        names(
            r#"{ users(where: {articles_every: {status: "published"}}, orderBy: ["id"]) { name } }"#
        ),
        json!([{"name": "Ada"}, {"name": "Grace"}]),
        "articles_every saw a hidden draft"
    );

    // The same condition on a subscription: Grace changes, her draft must not make it match.
    let mut c = s.client(
        "transport",
        Some(MIXED),
        r#"subscription { users_mutated(where: {articles_some: {title_starts_with: "Subscriptions"}}) { data { name } } }"#,
    );
    let mut control = s.client(
        "graphcool",
        Some(MIXED),
        r#"subscription { users(where: {node: {articles_some: {status: "published"}}}) { node { name } } }"#,
    );
    s.walcast.wait_subscriptions_at_least(2, CONNECT_TIMEOUT);
    s.sql(
        "UPDATE users SET email = 'grace@example.org' WHERE id = 2;
         UPDATE users SET email = 'ada@example.org' WHERE id = 1;",
    );
    let p = next_payload(&mut control);
    assert_eq!(p["data"]["users"]["node"]["name"], "Ada", "{p}");
    expect_no_event(&mut control, Duration::from_millis(500));
    expect_no_event(&mut c, QUIET);
}

#[test]
fn claims_sub_placeholders_select_the_callers_rows() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let author_2 = hs256(json!({"role": "author", "sub": "2", "exp": now() + 600}));
    let no_sub = hs256(json!({"role": "author", "exp": now() + 600}));
    let crafted_sub = hs256(json!({"role": "author", "sub": "1 OR 1=1", "exp": now() + 600}));

    let titles = |token: &str| {
        s.query_ok(
            "{ articles(orderBy: [\"id\"]) { title author_id } }",
            json!({}),
            Some(token),
        )["articles"]
            .clone()
    };
    assert_eq!(
        titles(AUTHOR_1),
        json!([{"title": "Streaming the WAL", "author_id": 1}])
    );
    assert_eq!(
        titles(&author_2),
        json!([{"title": "Subscriptions without triggers", "author_id": 2}])
    );
    // Without the claim, or with one that is no valid value, the table is hidden.
    for token in [&no_sub, &crafted_sub] {
        s.query_refused("{ articles { title } }", json!({}), Some(token), "articles");
        let mut c = s.client(
            "transport",
            Some(token),
            "subscription { articles_mutated { key } }",
        );
        expect_op_error(&mut c, "transport", "articles_mutated");
    }

    let query = "subscription { articles_mutated { event data { title author_id } } }";
    let mut one = s.client("transport", Some(AUTHOR_1), query);
    let mut two = s.client("graphcool", Some(&author_2), query);
    s.walcast.wait_subscriptions_at_least(2, CONNECT_TIMEOUT);
    s.sql(
        "INSERT INTO articles (id, title, author_id) VALUES (201, 'by one', 1);
         INSERT INTO articles (id, title, author_id) VALUES (202, 'by two', 2);
         INSERT INTO articles (id, title) VALUES (203, 'by nobody');
         UPDATE articles SET author_id = 2, title = 'handed over' WHERE id = 201;
         DELETE FROM articles WHERE id = 202;
         DELETE FROM articles WHERE id = 203;",
    );
    // Handing 201 over is a delete for its previous author and a create for the new one.
    let got: Vec<Value> = next_payloads(&mut one, 2)
        .into_iter()
        .map(|p| p["data"]["articles_mutated"].clone())
        .collect();
    assert_eq!(
        Value::Array(got),
        json!([
            {"event": "create", "data": {"title": "by one", "author_id": 1}},
            {"event": "delete", "data": null},
        ])
    );
    let got: Vec<Value> = next_payloads(&mut two, 3)
        .into_iter()
        .map(|p| p["data"]["articles_mutated"].clone())
        .collect();
    assert_eq!(
        Value::Array(got),
        json!([
            {"event": "create", "data": {"title": "by two", "author_id": 2}},
            {"event": "create", "data": {"title": "handed over", "author_id": 2}},
            {"event": "delete", "data": null},
        ])
    );
    expect_no_event(&mut one, QUIET);
    expect_no_event(&mut two, Duration::from_millis(200));
}

#[test]
fn two_roles_receive_exactly_their_rows_and_columns_during_1000_writes() {
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let mut reader = s.client(
        "transport",
        Some(READER),
        r#"subscription { articles_mutated(event: "create") { data { id title status } } }"#,
    );
    let mut drafter = s.client(
        "graphcool",
        Some(DRAFTER),
        "subscription { articles(where: {mutation_in: [CREATED]}) { node { id title author_id } } }",
    );
    let mut admin = s.client(
        "legacy",
        Some(ADMIN),
        r#"subscription { articles_mutated(event: "create") { key } }"#,
    );
    // Each role's columns: the other's is a validation error.
    let mut c = s.client(
        "transport",
        Some(READER),
        "subscription { articles_mutated { data { author_id } } }",
    );
    expect_op_error(&mut c, "transport", "author_id");
    let mut c = s.client(
        "graphcool",
        Some(DRAFTER),
        "subscription { articles { node { status } } }",
    );
    expect_op_error(&mut c, "graphcool", "status");
    s.walcast.wait_subscriptions_at_least(3, CONNECT_TIMEOUT);

    // Even numbers published (author 1), odd ones drafts (author 2); four transactions.
    for batch in 0..4 {
        s.sql(&format!(
            "INSERT INTO articles (title, status, author_id)
             SELECT 'bulk ' || i, CASE WHEN i % 2 = 0 THEN 'published' ELSE 'draft' END, 1 + i % 2
             FROM generate_series({}, {}) AS i",
            batch * 250 + 1,
            batch * 250 + 250
        ));
    }
    let number = |title: &Value| -> u32 {
        title
            .as_str()
            .and_then(|t| t.strip_prefix("bulk "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a bulk title: {title}"))
    };
    let mut seen = Vec::new();
    for p in next_payloads(&mut reader, 500) {
        let row = &p["data"]["articles_mutated"]["data"];
        assert_eq!(row["status"], "published", "{p}");
        assert_eq!(row.as_object().map(|o| o.len()), Some(3), "{p}");
        let n = number(&row["title"]);
        assert_eq!(n % 2, 0, "{p}");
        seen.push(n);
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 500, "the reader got duplicates");

    let mut seen = Vec::new();
    for p in next_payloads(&mut drafter, 500) {
        let row = &p["data"]["articles"]["node"];
        assert_eq!(row["author_id"], 2, "{p}");
        assert_eq!(row.as_object().map(|o| o.len()), Some(3), "{p}");
        let n = number(&row["title"]);
        assert_eq!(n % 2, 1, "{p}");
        seen.push(n);
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 500, "the drafter got duplicates");

    assert_eq!(next_payloads(&mut admin, 1000).len(), 1000);
    expect_no_event(&mut reader, QUIET);
    expect_no_event(&mut drafter, Duration::from_millis(200));
    expect_no_event(&mut admin, Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------------
// Changes while connected

const RELOAD_BEFORE: &str = r#"
[reader.articles]
select = true
columns = ["id", "title", "status"]
filter = { status = "published" }

[reader.messages]
select = true
"#;

/// `reader` loses `messages`.
const RELOAD_WITHOUT_MESSAGES: &str = r#"
[reader.articles]
select = true
columns = ["id", "title", "status"]
filter = { status = "published" }
"#;

/// `reader` loses the `status` column of `articles`.
const RELOAD_FEWER_COLUMNS: &str = r#"
[reader.articles]
select = true
columns = ["id", "title"]
filter = { status = "published" }
"#;

#[test]
fn sighup_reload_revokes_access_without_dropping_connections() {
    let s = setup("handshake", Some(RELOAD_BEFORE), &[]);
    const SUB: &str = "graphql-transport-ws";
    let mut ws = s.raw(SUB, Some(READER));
    ws.send_json(&start_frame(
        SUB,
        "m",
        "subscription { messages_mutated { data { text } } }",
        json!({}),
    ));
    ws.send_json(&start_frame(
        SUB,
        "a",
        "subscription { articles_mutated { data { title } } }",
        json!({}),
    ));
    let mut legacy = s.client("legacy", Some(READER), MESSAGES_SUB);
    let mut graphcool = s.client(
        "graphcool",
        Some(READER),
        "subscription { messages { node { text } } }",
    );
    s.walcast.wait_subscriptions_at_least(4, CONNECT_TIMEOUT);

    insert_message(&s.pg, DB, "before");
    let frame = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(
        (&frame["type"], &frame["id"]),
        (&json!("next"), &json!("m")),
        "{frame}"
    );
    next_payload(&mut legacy);
    next_payload(&mut graphcool);

    s.reload_permissions(RELOAD_WITHOUT_MESSAGES);
    insert_message(&s.pg, DB, "after");
    s.sql("INSERT INTO articles (title, status) VALUES ('still visible', 'published')");

    // The messages subscriptions end; the articles one goes on, on the same socket.
    let mut frames = Vec::new();
    while frames.len() < 2 {
        frames.push(recv_json(&mut ws, EVENT_TIMEOUT));
    }
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "complete" && f["id"] == "m"),
        "no complete for the messages subscription: {}",
        show(&frames)
    );
    let article = frames
        .iter()
        .find(|f| f["id"] == "a")
        .unwrap_or_else(|| panic!("no article event: {}", show(&frames)));
    assert_eq!(
        article["payload"]["data"]["articles_mutated"]["data"]["title"],
        "still visible"
    );
    let (line, skipped) = legacy.wait_kind("complete", EVENT_TIMEOUT);
    assert!(
        skipped.is_empty(),
        "legacy got {} before {line}",
        show(&skipped)
    );
    let (line, skipped) = graphcool.wait_kind("complete", EVENT_TIMEOUT);
    assert!(
        skipped.is_empty(),
        "graphcool got {} before {line}",
        show(&skipped)
    );

    // The sockets stay open; the table is gone from the role's schema.
    ws.send_json(&json!({"type": "ping"}));
    assert_eq!(recv_json(&mut ws, EVENT_TIMEOUT)["type"], "pong");
    ws.send_json(&start_frame(
        SUB,
        "m2",
        "subscription { messages_mutated { key } }",
        json!({}),
    ));
    let refused = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(
        (&refused["type"], &refused["id"]),
        (&json!("error"), &json!("m2")),
        "{refused}"
    );
    insert_message(&s.pg, DB, "later");
    expect_raw_silence(&mut ws, QUIET);
    // Neither an event nor a close on the other sockets.
    expect_no_event(&mut legacy, Duration::ZERO);
    expect_no_event(&mut graphcool, Duration::ZERO);

    // Fewer columns revoke the subscriptions made under the old ones.
    s.reload_permissions(RELOAD_FEWER_COLUMNS);
    s.sql("INSERT INTO articles (title, status) VALUES ('after the columns changed', 'published')");
    let done = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(
        (&done["type"], &done["id"]),
        (&json!("complete"), &json!("a")),
        "{done}"
    );
    ws.send_json(&start_frame(
        SUB,
        "a2",
        "subscription { articles_mutated { data { title status } } }",
        json!({}),
    ));
    let refused = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(
        (&refused["type"], &refused["id"]),
        (&json!("error"), &json!("a2")),
        "{refused}"
    );
    assert!(refused.to_string().contains("status"), "{refused}");
    ws.send_json(&start_frame(
        SUB,
        "a3",
        "subscription { articles_mutated { data { title } } }",
        json!({}),
    ));
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    s.sql("INSERT INTO articles (title, status) VALUES ('with two columns', 'published')");
    let frame = recv_json(&mut ws, EVENT_TIMEOUT);
    assert_eq!(frame["id"], "a3", "{frame}");
    assert_eq!(
        frame["payload"]["data"]["articles_mutated"]["data"],
        json!({"title": "with two columns"})
    );
}

#[test]
fn a_jwt_that_expires_on_an_open_socket_ends_its_subscriptions() {
    let s = setup("handshake", None, &[]);
    let exp = now() + 3;
    let token = hs256(json!({"role": "admin", "exp": exp}));
    let mut clients: Vec<(&str, JsClient)> = PROTOCOLS
        .iter()
        .map(|(js, _)| (*js, s.client(js, Some(&token), MESSAGES_SUB)))
        .collect();
    s.walcast.wait_subscriptions_at_least(3, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "while valid");
    for (js, c) in &mut clients {
        let p = next_payload(c);
        assert_eq!(
            p["data"]["messages_mutated"]["data"]["text"], "while valid",
            "{js}"
        );
    }
    // The server allows its clock leeway (30 s) past `exp`.
    let limit = Duration::from_secs(3 + 30 + 15);
    for (js, c) in &mut clients {
        let (line, skipped) = c.wait_kind(error_kind(js), limit);
        assert!(skipped.is_empty(), "{js}: {}", show(&skipped));
        assert!(line.to_string().contains("expired"), "{js}: {line}");
        let (code, lines) = until_closed(c, EVENT_TIMEOUT);
        assert_eq!(code, 4403, "{js}: {}", show(&lines));
        assert!(
            lines.iter().all(|l| l["kind"] != "next"),
            "{js}: {}",
            show(&lines)
        );
    }
    assert!(now() >= exp, "ended before the token expired");
    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "after expiry");
    for (_, c) in &mut clients {
        expect_no_event(c, Duration::from_millis(500));
    }
    // The expired token opens no new socket.
    let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
    ws.send_json(&init_frame("graphql-transport-ws", Some(&token)));
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!((code, seen.len()), (4403, 0), "{}", show(&seen));
}

#[test]
fn a_flood_of_init_messages() {
    let s = setup("handshake", None, &[]);
    const SUB: &str = "graphql-transport-ws";
    // Many inits at once: one ack, then 4429.
    let (code, seen) = flood(&s.walcast.ws_url(), SUB, &init_frame(SUB, Some(ADMIN)), 50);
    assert_eq!(code, 4429);
    assert_eq!(Value::Array(seen), json!([{"type": "connection_ack"}]));
    // An init after the ack: 4429, the subscription ends without events.
    let mut ws = s.raw(SUB, Some(ADMIN));
    ws.send_json(&start_frame(SUB, "1", MESSAGES_SUB, json!({})));
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    ws.send_json(&init_frame(SUB, Some(ADMIN)));
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!(code, 4429);
    assert!(seen.is_empty(), "{}", show(&seen));
    // Bad tokens: refused at the first.
    let (code, seen) = flood(
        &s.walcast.ws_url(),
        SUB,
        &init_frame(SUB, Some("wrong")),
        50,
    );
    assert_eq!((code, seen.len()), (4403, 0), "{}", show(&seen));

    // The other protocols acknowledge once and stay usable.
    let mut others = Vec::new();
    for sub in ["graphql-ws", "graphql-subscriptions"] {
        let mut ws = RawWs::connect(&s.walcast.ws_url(), sub);
        for _ in 0..50 {
            ws.send_json(&init_frame(sub, Some(ADMIN)));
        }
        expect_ack(&mut ws, sub);
        ws.send_json(&start_frame(sub, "1", MESSAGES_SUB, json!({})));
        others.push((sub, ws));
    }
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "after the flood");
    for (sub, ws) in &mut others {
        let mut frame = recv_json(ws, EVENT_TIMEOUT);
        if frame["type"] == "subscription_success" {
            frame = recv_json(ws, EVENT_TIMEOUT);
        }
        assert_eq!(
            frame["payload"]["data"]["messages_mutated"]["data"]["text"], "after the flood",
            "{sub}: {frame}"
        );
        expect_raw_silence(ws, Duration::from_millis(500));
    }
}

/// The next frame carrying an execution result (graphql-subscriptions' `subscription_success`
/// skipped).
fn next_result(ws: &mut RawWs, sub: &str) -> Value {
    loop {
        let frame = recv_json(ws, EVENT_TIMEOUT);
        if frame["type"] == "subscription_success" {
            continue;
        }
        let want = match sub {
            "graphql-transport-ws" => "next",
            "graphql-ws" => "data",
            _ => "subscription_data",
        };
        assert_eq!(frame["type"], want, "{sub}: {frame}");
        return frame["payload"].clone();
    }
}

#[test]
fn handshake_mode_takes_the_upgrades_bearer_header_when_the_init_carries_no_token() {
    // What a reverse proxy that authenticates its clients does: `Authorization: Bearer` on the
    // upgrade it forwards, and an init message without a token.
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let url = s.walcast.ws_url();
    let connect = |sub: &str, header: &str| {
        RawWs::try_connect(&url, &[sub], &[("Authorization", header)])
            .unwrap_or_else(|e| panic!("{sub} upgrade with an Authorization header: {e}"))
    };
    // Articles are not the public role's: a draft reaches only admin.
    let query = "subscription { articles_mutated { event data { title status } } }";
    let admin = format!("Bearer {ADMIN}");
    let mut sockets = Vec::new();
    for (_, sub) in PROTOCOLS {
        let mut ws = connect(sub, &admin);
        ws.send_json(&init_frame(sub, None));
        expect_ack(&mut ws, sub);
        ws.send_json(&start_frame(sub, "1", query, json!({})));
        sockets.push((sub, ws));
    }
    // A token in the init payload wins over the header: reader's header, admin's payload.
    let reader = format!("Bearer {READER}");
    let mut ws = connect("graphql-transport-ws", &reader);
    ws.send_json(&init_frame("graphql-transport-ws", Some(ADMIN)));
    expect_ack(&mut ws, "graphql-transport-ws");
    ws.send_json(&start_frame("graphql-transport-ws", "1", query, json!({})));
    sockets.push(("graphql-transport-ws", ws));
    s.walcast.wait_subscriptions_at_least(4, CONNECT_TIMEOUT);

    s.sql("INSERT INTO articles (title, author_id) VALUES ('draft via header', 1)");
    for (sub, ws) in &mut sockets {
        let payload = next_result(ws, sub);
        assert_eq!(
            payload["data"]["articles_mutated"],
            json!({"event": "create", "data": {"title": "draft via header", "status": "draft"}}),
            "{sub}: {payload}"
        );
    }

    // An unknown token in the header is refused at init like one in the payload, and a bad
    // token in the payload is not rescued by a good header.
    let mut ws = connect("graphql-transport-ws", "Bearer not-a-known-token");
    ws.send_json(&init_frame("graphql-transport-ws", None));
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!((code, seen.len()), (4403, 0), "{}", show(&seen));
    let mut ws = connect("graphql-transport-ws", &admin);
    ws.send_json(&init_frame(
        "graphql-transport-ws",
        Some("not-a-known-token"),
    ));
    let (code, _, seen) = expect_close(&mut ws, CONNECT_TIMEOUT);
    assert_eq!((code, seen.len()), (4403, 0), "{}", show(&seen));
}

/// GraphiQL opened with a reader's token starts on the reader's view: a subscription to
/// `articles` without the hidden `author_id`, which runs over a socket authenticated by the
/// token in `connectionParams` (handshake mode) and sees a published article.
#[test]
fn graphiql_opens_on_a_subscription_of_the_callers_view() {
    const CHROMIUM: &str = "/usr/bin/chromium";
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium"
    );
    let s = setup("handshake", Some(PERMISSIONS), &[]);
    let url = format!(
        "{}{}?access_token={READER}",
        s.walcast.http_url(),
        s.walcast.graphql_path()
    );
    let mut page = JsClient::spawn_script(
        "graphiql.mjs",
        &[
            "--url",
            &url,
            "--expect",
            "Read in GraphiQL",
            "--timeout",
            "45000",
        ],
    );
    let loaded = page.expect_kind("loaded", Duration::from_secs(60));
    let editor = loaded["editor"].as_str().unwrap_or_default();
    assert!(
        editor.contains("  articles_mutated {\n    key\n    event\n    data { id title status }\n"),
        "{editor}"
    );
    assert!(!editor.contains("author_id"), "{editor}");
    page.expect_kind("ready", Duration::from_secs(30));
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    s.sql("INSERT INTO articles (title, status) VALUES ('Read in GraphiQL', 'published')");
    let result = page.next_line(Duration::from_secs(60));
    assert_eq!(result["kind"], "result", "{result}\n{}", page.stderr());
    let shown: Value = serde_json::from_str(result["text"].as_str().unwrap_or_default())
        .expect("the response pane holds JSON");
    assert_eq!(
        shown["data"]["articles_mutated"]["data"],
        json!({"id": shown["data"]["articles_mutated"]["key"], "title": "Read in GraphiQL", "status": "published"}),
        "{shown}"
    );
}
