//! walcast behind real reverse proxies: Debian's nginx (default `proxy_read_timeout`, 60 s) and
//! HAProxy (`timeout tunnel 60s`), each run with the configuration of docs/deploy.md.
//!
//! The three socket protocols' clients get the sub-protocol they asked for, stay idle longer
//! than the proxies' idle timeouts and still receive the next event, kept alive by walcast's
//! ping frames alone (graphql-ws with its own keep-alive off); with the pings off the same idle
//! client is closed by the proxy. Strict mode with the token in the query string, and a token
//! set by the proxy in handshake mode, work through both.

mod support;

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::proxy::{Proxy, ProxyKind};
use support::*;

const DB: &str = "app";
const TOKEN: &str = "proxy-admin-token";
const MESSAGES_SUB: &str = "subscription { messages_mutated { event data { text } } }";

/// Longer than the proxies' 60 s idle timeouts, with room for a busy machine's late timers and
/// two of walcast's pings (every 25 s by default) inside: paid once, by the one test that needs it.
const IDLE: Duration = Duration::from_secs(80);
/// How long after the idle period a proxy may still take to close a socket without pings (it
/// should have done so during it).
const PROXY_CLOSE_TIMEOUT: Duration = Duration::from_secs(90);

/// Each socket protocol: the name `tests/js/client.mjs` knows it by, the sub-protocol it asks
/// for, and its extra arguments. graphql-ws' own keep-alive is off (its default): only the
/// server's pings keep it busy.
const CLIENTS: [(&str, &str, &[&str]); 3] = [
    ("transport", "graphql-transport-ws", &["--no-keepalive"]),
    ("legacy", "graphql-ws", &[]),
    ("graphcool", "graphql-subscriptions", &[]),
];

/// A client of `protocol` at `url`, subscribed to the messages; returns once it is connected,
/// having checked the sub-protocol the server selected.
fn subscriber(
    protocol: &str,
    subprotocol: &str,
    extra: &[&str],
    url: &str,
    token: Option<&str>,
) -> JsClient {
    let mut args = vec![
        "--protocol",
        protocol,
        "--url",
        url,
        "--query",
        MESSAGES_SUB,
    ];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    args.extend_from_slice(extra);
    let mut c = JsClient::spawn(&args);
    let (line, skipped) = c.wait_kind("connected", CONNECT_TIMEOUT);
    assert!(
        skipped.iter().all(|l| l["kind"] == "init_success"),
        "{protocol} at {url}: {}",
        show(&skipped)
    );
    assert_eq!(line["protocol"], subprotocol, "{protocol} at {url}: {line}");
    c
}

/// The next event's text; protocol chatter such as `subscription_success` is skipped, anything
/// else fails.
fn next_text(c: &mut JsClient, who: &str) -> Value {
    let (line, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
    assert!(
        skipped
            .iter()
            .all(|l| l["kind"] == "subscription_success" || l["kind"] == "init_success"),
        "{who}: unexpected lines before the event: {}",
        show(&skipped)
    );
    line["payload"]["data"]["messages_mutated"].clone()
}

/// Every line a client printed so far, without waiting.
fn printed_so_far(c: &mut JsClient) -> Vec<Value> {
    let mut lines = Vec::new();
    while let Some(line) = c.try_next_line(Duration::ZERO) {
        lines.push(line);
    }
    lines
}

#[test]
fn idle_sockets_outlive_the_proxies_timeouts_through_server_pings_alone() {
    // One cluster, two servers on the same database: pings at their default interval, and
    // pings off (a slot of its own, as every instance needs).
    let s = serve(DB, DEMO_SCHEMA, TOKEN, &[]);
    let tokens = s.dir.path().join("tokens.toml");
    let tokens = tokens.to_str().expect("temp path is UTF-8");
    let mut quiet = Walcast::start(
        &s.pg.url(DB),
        &[
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens),
            ("WALCAST_SLOT", "walcast_no_pings"),
            ("WALCAST_WS_PING_INTERVAL", "0s"),
        ],
    );

    let mut proxies = Vec::new();
    let mut subscribers = Vec::new();
    let mut unpinged = Vec::new();
    for kind in ProxyKind::ALL {
        let pinged = Proxy::start(kind, s.walcast.port(), None);
        let url = pinged.ws_url(s.walcast.graphql_path());
        for (protocol, subprotocol, extra) in CLIENTS {
            let c = subscriber(protocol, subprotocol, extra, &url, Some(TOKEN));
            subscribers.push((format!("{protocol} through {}", kind.name()), c));
        }
        let silent = Proxy::start(kind, quiet.port(), None);
        let url = silent.ws_url(quiet.graphql_path());
        let c = subscriber(
            "transport",
            "graphql-transport-ws",
            &["--no-keepalive"],
            &url,
            Some(TOKEN),
        );
        unpinged.push((kind, c));
        proxies.push((pinged, silent));
    }
    s.walcast.wait_subscriptions(6, CONNECT_TIMEOUT);
    quiet.wait_subscriptions(2, CONNECT_TIMEOUT);

    // Nobody writes: the sockets carry only what keeps them alive.
    thread::sleep(IDLE);

    // Without pings, each proxy closed its idle socket: no close frame, so the client library
    // reports 1006 (abnormal closure).
    for (kind, c) in &mut unpinged {
        let who = format!("transport through {} without pings", kind.name());
        let (line, skipped) = c.wait_kind("closed", PROXY_CLOSE_TIMEOUT);
        assert_eq!(line["code"], json!(1006), "{who}: {line}");
        assert!(
            skipped.iter().all(|l| l["kind"] != "next"),
            "{who}: {}",
            show(&skipped)
        );
    }
    let (_, silent_nginx) = &proxies[0];
    assert_eq!(silent_nginx.kind(), ProxyKind::Nginx);
    assert!(
        silent_nginx.log().contains(
            "upstream timed out (110: Connection timed out) while proxying upgraded connection"
        ),
        "nginx closed the socket for its proxy_read_timeout\n{}",
        silent_nginx.log_tail(20)
    );
    quiet.wait_subscriptions(0, CONNECT_TIMEOUT);

    // With them, every protocol's socket is still open through both proxies...
    for (who, c) in &mut subscribers {
        let lines = printed_so_far(c);
        assert!(
            lines
                .iter()
                .all(|l| l["kind"] == "subscription_success" || l["kind"] == "init_success"),
            "{who} while idle: {}",
            show(&lines)
        );
    }
    s.walcast.wait_subscriptions(6, CONNECT_TIMEOUT);
    let (_, body) = s.walcast.get("/metrics");
    assert_eq!(
        metric_sum(&body, "walcast_ping_timeouts_total"),
        Some(0),
        "every client answered the pings"
    );

    // ...and receives the next event.
    insert_message(&s.pg, DB, "after a long silence");
    for (who, c) in &mut subscribers {
        assert_eq!(
            next_text(c, who),
            json!({"event": "create", "data": {"text": "after a long silence"}}),
            "{who}"
        );
    }
    quiet.stop();
}

#[test]
fn strict_mode_with_the_token_in_the_query_string_through_both_proxies() {
    let s = serve(
        DB,
        DEMO_SCHEMA,
        TOKEN,
        &[("WEBSOCKETS_GRAPHQL_AUTH", "strict")],
    );
    let mut subscribers = Vec::new();
    let mut proxies = Vec::new();
    for kind in ProxyKind::ALL {
        let proxy = Proxy::start(kind, s.walcast.port(), None);
        let base = proxy.ws_url(s.walcast.graphql_path());
        let url = format!("{base}?access_token={TOKEN}");
        for (protocol, subprotocol, extra) in CLIENTS {
            let c = subscriber(protocol, subprotocol, extra, &url, None);
            subscribers.push((format!("{protocol} through {}", kind.name()), c));
        }
        // The proxy passes walcast's refusal on, before any upgrade.
        for url in [
            base.clone(),
            format!("{base}?access_token=not-a-known-token"),
        ] {
            let refused = RawWs::try_connect(&url, &["graphql-transport-ws"], &[])
                .err()
                .unwrap_or_else(|| panic!("{url} through {} was upgraded", kind.name()));
            assert_eq!(upgrade_status(&refused), Some(401), "{url}: {refused}");
        }
        proxies.push(proxy);
    }
    s.walcast.wait_subscriptions(6, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "strict through a proxy");
    for (who, c) in &mut subscribers {
        assert_eq!(
            next_text(c, who),
            json!({"event": "create", "data": {"text": "strict through a proxy"}}),
            "{who}"
        );
    }
}

#[test]
fn a_token_set_by_the_proxy_authenticates_handshake_mode() {
    let s = serve(DB, DEMO_SCHEMA, TOKEN, &[]);
    // Straight to walcast, the same client without a token is refused: the proxy's header is
    // what authenticates below.
    let mut direct = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &s.walcast.ws_url(),
        "--query",
        MESSAGES_SUB,
    ]);
    let (closed, _) = direct.wait_kind("closed", CONNECT_TIMEOUT);
    assert_eq!(closed["code"], json!(4403), "{closed}");

    let mut subscribers = Vec::new();
    let mut proxies = Vec::new();
    for kind in ProxyKind::ALL {
        let proxy = Proxy::start(kind, s.walcast.port(), Some(TOKEN));
        let url = proxy.ws_url(s.walcast.graphql_path());
        for (protocol, subprotocol, extra) in CLIENTS {
            let c = subscriber(protocol, subprotocol, extra, &url, None);
            subscribers.push((format!("{protocol} through {}", kind.name()), c));
        }
        proxies.push(proxy);
    }
    s.walcast.wait_subscriptions(6, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "authenticated by the proxy");
    for (who, c) in &mut subscribers {
        assert_eq!(
            next_text(c, who),
            json!({"event": "create", "data": {"text": "authenticated by the proxy"}}),
            "{who}"
        );
    }
}
