//! Attacks on the listener and the auth files, with real sockets: silent and byte-at-a-time
//! connections (header timeout, the connection limit before the upgrade), request bodies over the
//! limit or chunked, a malformed `Authorization` header, `/metrics` behind a token or on its own
//! listener, a static token revoked while its socket is open, and a reload that fails.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "hardening-token";

fn setup(extra_env: &[(&str, &str)]) -> Server {
    serve(DB, DEMO_SCHEMA, TOKEN, extra_env)
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    stream
}

/// Reads until the server closes the connection (or a minute passes); returns what it sent.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&seen).into_owned()
            }
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

#[test]
fn silent_and_slow_connections_are_closed_and_cannot_exhaust_the_listener() {
    let s = setup(&[
        ("WALCAST_HTTP_HEADER_TIMEOUT", "1s"),
        ("WALCAST_MAX_CONNECTIONS", "20"),
    ]);
    let port = s.walcast.port();
    // Twenty connections that say nothing fill every slot.
    let mut silent: Vec<TcpStream> = (0..20).map(|_| connect(port)).collect();
    // The next one is told so at once, not left hanging.
    let refused = http_request(port, "GET", "/healthz", &[], None).expect("answered");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("too many connections"));

    // Each silent connection is closed by the server once the header timeout passes.
    for stream in &mut silent {
        read_until_closed(stream);
    }
    // A client that sends its request head one byte at a time is closed too, although it keeps
    // sending.
    let mut slow = connect(port);
    slow.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let head = b"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let started = Instant::now();
    let mut closed = false;
    for byte in head.iter().cycle().take(10_000) {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
        // Bounded: the head would take over 8 minutes to send.
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    assert!(closed, "a byte-at-a-time request head was never cut off");

    // The listener is still there and the slots are free again.
    let (status, body) = s.walcast.get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// `POST /graphql` with a body sent chunked (no content-length).
fn post_chunked(port: u16, body: &[u8]) -> (u16, String) {
    let mut stream = connect(port);
    let head = "POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncontent-type: application/json\r\n\
                authorization: Bearer hardening-token\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).expect("head");
    for part in body.chunks(7) {
        stream
            .write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .expect("chunk size");
        stream.write_all(part).expect("chunk");
        stream.write_all(b"\r\n").expect("chunk end");
    }
    stream.write_all(b"0\r\n\r\n").expect("last chunk");
    let text = read_until_closed(&mut stream);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn request_bodies_chunked_or_too_large_and_malformed_authorization() {
    let s = setup(&[]);
    let port = s.walcast.port();
    let (status, text) = post_chunked(port, br#"{"query": "{ __typename }"}"#);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""__typename":"Query""#), "{text}");

    let big = format!(
        r#"{{"query": "{{ __typename }}", "pad": "{}"}}"#,
        "x".repeat(1 << 20)
    );
    let r = http_request(
        port,
        "POST",
        "/graphql",
        &[("content-type", "application/json")],
        Some(big.as_bytes()),
    )
    .expect("answered");
    assert_eq!(r.status, 413, "{}", r.text());
    let (status, text) = post_chunked(port, big.as_bytes());
    assert_eq!(status, 413, "{text}");

    // A header that is not `Bearer <token>` is refused, not taken for an anonymous request.
    let r = http_request(
        port,
        "POST",
        "/graphql",
        &[
            ("content-type", "application/json"),
            ("authorization", TOKEN),
        ],
        Some(br#"{"query": "{ __typename }"}"#),
    )
    .expect("answered");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("Bearer"), "{}", r.text());
}

#[test]
fn metrics_need_their_token_when_one_is_set() {
    let s = setup(&[("WALCAST_METRICS_TOKEN", "metrics-secret")]);
    let port = s.walcast.port();
    let r = http_request(port, "GET", "/metrics", &[], None).expect("answered");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!r.text().contains("walcast_"), "{}", r.text());
    let r = http_request(
        port,
        "GET",
        "/metrics",
        &[("authorization", "Bearer wrong")],
        None,
    )
    .expect("answered");
    assert_eq!(r.status, 401);
    let r = http_request(
        port,
        "GET",
        "/metrics",
        &[("authorization", "Bearer metrics-secret")],
        None,
    )
    .expect("answered");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("walcast_connections"), "{}", r.text());
    // The status page has the same guard; a browser can carry the token in the URL there
    // (and only there).
    for path in [
        "/status",
        "/status?access_token=wrong",
        "/metrics?access_token=metrics-secret",
    ] {
        let r = http_request(port, "GET", path, &[], None).expect("answered");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }
    for (path, auth) in [
        ("/status?access_token=metrics-secret", None),
        ("/status", Some("Bearer metrics-secret")),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let r = http_request(port, "GET", path, &headers, None).expect("answered");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.text().contains("walcast status"), "{}", r.text());
    }
}

#[test]
fn metrics_on_their_own_listener_leave_the_public_one() {
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let s = setup(&[("WALCAST_METRICS_LISTEN", &addr)]);
    let r = http_request(s.walcast.port(), "GET", "/metrics", &[], None).expect("answered");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http_request(metrics_port, "GET", "/metrics", &[], None).expect("answered");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("walcast_connections"), "{}", r.text());
    let r = http_request(s.walcast.port(), "GET", "/status", &[], None).expect("answered");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http_request(metrics_port, "GET", "/status", &[], None).expect("answered");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("walcast status"), "{}", r.text());
}

#[test]
fn a_revoked_static_token_ends_its_sockets_and_spares_the_others() {
    let s = setup(&[]);
    tokens_file(&s.dir, &[(TOKEN, "admin"), ("revoked-soon", "admin")]);
    sighup_and_wait(&s, "tokens and permissions reloaded", 1);
    let url = s.walcast.ws_url();
    let query = "subscription { messages_mutated { event data { text } } }";
    let mut keeps = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--query",
        query,
    ]);
    let mut loses = JsClient::spawn(&[
        "--protocol",
        "legacy",
        "--url",
        &url,
        "--token",
        "revoked-soon",
        "--query",
        query,
    ]);
    keeps.expect_kind("connected", CONNECT_TIMEOUT);
    loses.expect_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);

    tokens_file(&s.dir, &[(TOKEN, "admin")]);
    sighup_and_wait(&s, "tokens and permissions reloaded", 2);
    let (closed, _) = loses.wait_kind("closed", EVENT_TIMEOUT);
    assert_eq!(closed["code"], json!(4403), "{closed}");
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "after the revocation");
    assert_eq!(
        keeps.expect_data(EVENT_TIMEOUT)["messages_mutated"]["data"]["text"],
        "after the revocation"
    );
    // HTTP refuses the revoked token as well.
    let (status, _) = s
        .walcast
        .graphql("{ __typename }", json!({}), Some("revoked-soon"));
    assert_eq!(status, 401);
}

#[test]
fn a_failed_reload_says_so_and_keeps_the_previous_tokens() {
    let s = setup(&[]);
    s.dir.write("tokens.toml", "this is [not toml");
    sighup_and_wait(&s, "tokens not reloaded", 1);
    assert!(
        !s.walcast.log().contains("tokens and permissions reloaded"),
        "{}",
        s.walcast.log_tail(20)
    );
    let (status, body) = s.walcast.graphql("{ __typename }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
}

/// SIGHUP, then waits until `line` is in the log `count` times.
fn sighup_and_wait(s: &Server, line: &str, count: usize) {
    signal(s.walcast.pid().expect("walcast runs"), "HUP");
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while s.walcast.log().matches(line).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {line:?} logged after SIGHUP\n{}",
            s.walcast.log_tail(30)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cursors_this_server_never_issued_are_refused() {
    let s = setup(&[]);
    insert_message(&s.pg, DB, "retained");
    let url = s.walcast.ws_url();
    let query = "subscription($after: String) { messages_mutated(after: $after) { key } }";
    for forged in [
        // An event cursor far ahead of the server's WAL position.
        "7FFFFFFFFFFFFFFF00000000",
        // A snapshot cursor from the future that sees no transaction: it would replay the
        // whole retention window.
        "S7FFFFFFFFFFFFFFF-0-0-",
        // A snapshot whose xmin is above its xmax.
        "S0000000000000001-9-3-",
    ] {
        let vars = json!({ "after": forged }).to_string();
        let mut c = JsClient::spawn(&[
            "--protocol",
            "transport",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--query",
            query,
            "--variables",
            &vars,
        ]);
        let (error, skipped) = c.wait_kind("error", CONNECT_TIMEOUT);
        assert!(
            error.to_string().contains("not one this server issued"),
            "{forged}: {error}"
        );
        assert!(
            skipped.iter().all(|l| l["kind"] != "next"),
            "{forged}: events replayed: {}",
            show(&skipped)
        );
    }
    // A cursor the server did issue still works.
    let (status, body) = s.walcast.graphql("{ _cursor }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let vars = json!({ "after": body["data"]["_cursor"] }).to_string();
    let mut c = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--query",
        query,
        "--variables",
        &vars,
    ]);
    c.expect_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "after the cursor");
    c.expect_data(EVENT_TIMEOUT);
}

#[test]
fn http_queries_give_their_connection_back_to_the_pool() {
    let s = setup(&[]);
    // Sessions Postgres has started for the database (Postgres 14+): a connection that goes back
    // to the pool is reused, one closed after every request is not.
    let sessions = || -> u64 {
        sql(
            &s.pg,
            DB,
            "SELECT sessions FROM pg_stat_database WHERE datname = 'app'",
        )
        .trim()
        .parse()
        .expect("a session count")
    };
    let (status, body) = s
        .walcast
        .graphql("{ messages(first: 1) { id } }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let before = sessions();
    for i in 0..20 {
        let (status, body) =
            s.walcast
                .graphql("{ messages(first: 1) { id } }", json!({}), Some(TOKEN));
        assert_eq!(status, 200, "request {i}: {body}");
    }
    // Our own psql calls are sessions too: one per count.
    let opened = sessions() - before - 1;
    assert!(
        opened <= 2,
        "{opened} new database sessions for 20 sequential queries: connections are not reused"
    );
    let open = sql(
        &s.pg,
        DB,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND state LIKE 'idle in transaction%'",
    );
    assert_eq!(open.trim(), "0", "connections left inside a transaction");
}
