//! The WebSocket layer as client libraries see it: close handshakes answered (RFC 6455) on every
//! sub-protocol, 1007 for text that is not UTF-8, 4400 for binary frames where the protocol
//! forbids them, server ping frames that keep sockets alive and close clients that never answer,
//! and the legacy protocol's result repeated in `complete` (as Tyk's gateway documents it).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const TOKEN: &str = "sockets-token";
const SUBPROTOCOLS: [&str; 3] = [
    "graphql-transport-ws",
    "graphql-ws",
    "graphql-subscriptions",
];

fn setup(extra_env: &[(&str, &str)]) -> Server {
    serve(DB, DEMO_SCHEMA, TOKEN, extra_env)
}

/// `close.mjs` in `mode` on sub-protocol `sub`, acknowledged; returns its `closed` line.
fn closed_after(s: &Server, sub: &str, mode: &str) -> Value {
    let url = s.walcast.ws_url();
    let mut c = JsClient::spawn_script(
        "close.mjs",
        &[
            "--url",
            &url,
            "--protocol",
            sub,
            "--mode",
            mode,
            "--token",
            TOKEN,
        ],
    );
    c.expect_kind("acked", CONNECT_TIMEOUT);
    let (line, _) = c.wait_kind("closed", Duration::from_secs(60));
    line
}

#[test]
fn a_client_closing_with_1000_sees_1000_on_every_subprotocol() {
    let s = setup(&[]);
    for sub in SUBPROTOCOLS {
        let line = closed_after(&s, sub, "close");
        // 1006 would mean the server dropped TCP without answering the close frame.
        assert_eq!(line["code"], json!(1000), "{sub}: {line}");
    }
}

#[test]
fn text_that_is_not_utf8_gets_1007_and_binary_frames_4400() {
    let s = setup(&[]);
    for sub in SUBPROTOCOLS {
        let line = closed_after(&s, sub, "invalid-utf8");
        assert_eq!(line["code"], json!(1007), "{sub}: {line}");
    }
    let line = closed_after(&s, "graphql-transport-ws", "binary");
    assert_eq!(line["code"], json!(4400), "{line}");
}

#[test]
fn a_lazy_graphql_ws_client_subscribes_again_after_a_refused_subscription() {
    let s = setup(&[]);
    let url = s.walcast.ws_url();
    let mut c = JsClient::spawn_script(
        "close.mjs",
        &[
            "--url",
            &url,
            "--mode",
            "lazy-retry",
            "--token",
            TOKEN,
            "--bad",
            "subscription { no_such_field { key } }",
            "--good",
            "subscription { messages_mutated { event data { text } } }",
        ],
    );
    let (error, _) = c.wait_kind("error", CONNECT_TIMEOUT);
    assert!(
        error.to_string().contains("no_such_field"),
        "the refusal names the field: {error}"
    );
    c.expect_kind("subscribed", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "after a refusal");
    let (next, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
    assert!(
        skipped.iter().all(|l| l["kind"] != "failed"),
        "{}",
        show(&skipped)
    );
    assert_eq!(
        next["payload"]["data"]["messages_mutated"],
        json!({"event": "create", "data": {"text": "after a refusal"}})
    );
}

#[test]
fn server_pings_keep_answering_clients_and_close_silent_ones() {
    let s = setup(&[
        ("WALCAST_WS_PING_INTERVAL", "300ms"),
        ("WALCAST_WS_PONG_TIMEOUT", "1s"),
    ]);
    // graphql-ws with its own keep-alive off: only the server's pings keep this one busy.
    let url = s.walcast.ws_url();
    let mut live = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--no-keepalive",
        "--query",
        "subscription { messages_mutated { event data { text } } }",
    ]);
    live.expect_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    // The `ws` library answers pings by itself unless told not to; this one is told not to.
    let silent = closed_after(&s, "graphql-transport-ws", "idle");
    assert_eq!(silent["code"], json!(1001), "{silent}");
    assert_eq!(silent["reason"], "ping timeout", "{silent}");
    assert!(
        silent["pings"].as_u64().unwrap_or(0) >= 1,
        "the closed client saw pings first: {silent}"
    );
    let timeouts = metric_sum(&s.walcast.get("/metrics").1, "walcast_ping_timeouts_total");
    assert_eq!(timeouts, Some(1));

    // The answering client outlived several ping intervals and still gets events.
    insert_message(&s.pg, DB, "still here");
    let next = live.expect_data(EVENT_TIMEOUT);
    assert_eq!(
        next["messages_mutated"],
        json!({"event": "create", "data": {"text": "still here"}}),
        "{next}"
    );
}

#[test]
fn legacy_queries_and_mutations_repeat_their_result_in_complete() {
    let s = setup(&[("WALCAST_MUTATIONS", "true")]);
    let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-ws");
    ws.send_json(&json!({"type": "connection_init", "payload": {"access_token": TOKEN}}));
    assert_eq!(ws.recv_json(CONNECT_TIMEOUT)["type"], "connection_ack");
    let next_of = |ws: &mut RawWs, id: &str| -> Value {
        loop {
            let frame = ws.recv_json(EVENT_TIMEOUT);
            if frame["type"] != "ka" && frame["id"] == id {
                return frame;
            }
        }
    };

    // The exchange of Tyk's page.
    ws.send_json(&json!({"id": "7", "type": "start", "payload": {"query": "{ __typename }"}}));
    let data = next_of(&mut ws, "7");
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"], json!({"data": {"__typename": "Query"}}));
    let complete = next_of(&mut ws, "7");
    assert_eq!(complete["type"], "complete", "{complete}");
    assert_eq!(complete["payload"], data["payload"], "{complete}");

    ws.send_json(&json!({"id": "m", "type": "start", "payload": {
        "query": "mutation { create_messages_item(data: {text: \"over the socket\"}) { text } }"
    }}));
    let data = next_of(&mut ws, "m");
    assert_eq!(
        data["payload"]["data"]["create_messages_item"]["text"], "over the socket",
        "{data}"
    );
    let complete = next_of(&mut ws, "m");
    assert_eq!(complete["type"], "complete", "{complete}");
    assert_eq!(complete["payload"], data["payload"], "{complete}");

    // A subscription's complete carries nothing. (Deletes only: the mutation's row, on its way
    // through the WAL, must not reach it.)
    ws.send_json(&json!({"id": "s", "type": "start", "payload": {
        "query": "subscription { messages_mutated(event: \"delete\") { key } }"
    }}));
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    ws.send_json(&json!({"id": "s", "type": "stop"}));
    let complete = next_of(&mut ws, "s");
    assert_eq!(complete, json!({"type": "complete", "id": "s"}));
}
