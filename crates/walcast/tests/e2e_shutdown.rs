//! A stop under load: SIGTERM with a few hundred sockets open, several subscriptions on each.
//! Every client gets a `complete` for each of its subscriptions (and no `next` after it), then a
//! 1001 close, and walcast exits 0.

mod support;

use std::collections::BTreeSet;

use serde_json::json;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "shutdown-token";
const CONNECTIONS: usize = 300;
const SUBSCRIPTIONS: usize = 5;
const QUERY: &str = "subscription { messages_mutated { event data { text } } }";

#[test]
fn sigterm_with_sockets_open_completes_every_subscription_and_closes_1001() {
    let mut s = serve(DB, DEMO_SCHEMA, TOKEN, &[]);
    let url = s.walcast.ws_url();
    let mut sockets: Vec<RawWs> = (0..CONNECTIONS)
        .map(|_| {
            let mut ws = RawWs::connect(&url, "graphql-transport-ws");
            ws.send_json(&json!({"type": "connection_init", "payload": {"access_token": TOKEN}}));
            ws
        })
        .collect();
    for ws in &mut sockets {
        assert_eq!(ws.recv_json(CONNECT_TIMEOUT)["type"], "connection_ack");
        for id in 1..=SUBSCRIPTIONS {
            ws.send_json(&json!({
                "id": id.to_string(),
                "type": "subscribe",
                "payload": {"query": QUERY},
            }));
        }
    }
    s.walcast
        .wait_subscriptions((CONNECTIONS * SUBSCRIPTIONS) as u64, CONNECT_TIMEOUT);
    // A row on its way as the signal comes: its `next`s may arrive, but never after a
    // `complete`.
    insert_message(&s.pg, DB, "last words");
    // `stop` fails the test when walcast is still running 20 s after SIGTERM.
    let status = s.walcast.stop().expect("was running");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        s.walcast.log_tail(40)
    );
    // What the server wrote before it exited waits in each socket's receive buffer.
    for (n, ws) in sockets.iter_mut().enumerate() {
        let (code, reason, seen) = ws.expect_close(EVENT_TIMEOUT);
        let seen_text = show(&seen);
        assert_eq!(code, 1001, "connection {n}: {reason} after {seen_text}");
        let mut completed = BTreeSet::new();
        for msg in &seen {
            let id = msg["id"].as_str().unwrap_or_default().to_owned();
            match msg["type"].as_str() {
                Some("complete") => {
                    assert!(completed.insert(id), "connection {n}: {seen_text}")
                }
                Some("next") => assert!(
                    !completed.contains(&id),
                    "connection {n}: `next` after `complete`: {seen_text}"
                ),
                _ => panic!("connection {n}: unexpected message in {seen_text}"),
            }
        }
        let expected: BTreeSet<String> = (1..=SUBSCRIPTIONS).map(|i| i.to_string()).collect();
        assert_eq!(completed, expected, "connection {n}: {seen_text}");
    }
}
