//! Walking skeleton, end to end: a real Postgres, the real `walcast` binary and the real npm
//! GraphQL clients. Rows are written by plain psql sessions, as any application would.
//!
//! Needs Postgres server binaries and `npm ci` in tests/js. `WALCAST_TEST_IDLE_SECS` shortens the
//! idle test (default 120 s).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const ADMIN_TOKEN: &str = "e2e-admin-token";
/// The subscription of the Directus guide (seed 000), verbatim.
const SEED_QUERY: &str = "subscription {
    messages_mutated {
        key
        event
        data {
            text
        }
    }
}";

/// A cluster with the demo schema and a handshake-auth walcast that knows `ADMIN_TOKEN`.
/// Field order matters for drop: the server goes before the database it reads.
type Setup = Server;

fn setup(extra_env: &[(&str, &str)]) -> Setup {
    serve(DB, DEMO_SCHEMA, ADMIN_TOKEN, extra_env)
}

impl Setup {
    fn insert(&self, text: &str) -> i64 {
        insert_message(&self.pg, DB, text)
    }

    fn sql(&self, statement: &str) {
        sql(&self.pg, DB, statement);
    }
}

/// A seed-000 subscriber: `protocol` is transport or legacy.
fn subscriber(w: &Walcast, protocol: &str, token: &str, extra: &[&str]) -> JsClient {
    let url = w.ws_url();
    let mut args = vec![
        "--protocol",
        protocol,
        "--url",
        &url,
        "--token",
        token,
        "--query",
        SEED_QUERY,
    ];
    args.extend_from_slice(extra);
    JsClient::spawn(&args)
}

/// `messages_mutated` of the next event, which must carry no GraphQL errors.
fn next_mutation(client: &mut JsClient) -> Value {
    let data = client.expect_data(EVENT_TIMEOUT);
    let m = data["messages_mutated"].clone();
    assert!(m.is_object(), "no messages_mutated in {data}");
    m
}

fn assert_event(m: &Value, event: &str, id: i64, text: Option<&str>) {
    assert_eq!(m["event"], event, "event kind in {m}");
    assert_eq!(
        m["key"],
        json!(id.to_string()),
        "key (the id as a string) in {m}"
    );
    match text {
        Some(text) => assert_eq!(m["data"], json!({ "text": text }), "data in {m}"),
        None => assert_eq!(m["data"], Value::Null, "data of a delete in {m}"),
    }
}

/// Seed 000 end to end: INSERT, UPDATE, DELETE from psql arrive as create, update, delete, in
/// order, and nothing else follows.
fn seed_000_flow(protocol: &str, extra: &[&str]) {
    let s = setup(&[]);
    let mut client = subscriber(&s.walcast, protocol, ADMIN_TOKEN, extra);
    client.expect_kind("connected", CONNECT_TIMEOUT);
    // The subscription stream is set up after `subscribe` returns; writing earlier could be missed.
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);

    let id = s.insert("hello from psql");
    s.sql(&format!(
        "UPDATE messages SET text = 'edited' WHERE id = {id}"
    ));
    s.sql(&format!("DELETE FROM messages WHERE id = {id}"));

    assert_event(
        &next_mutation(&mut client),
        "create",
        id,
        Some("hello from psql"),
    );
    assert_event(&next_mutation(&mut client), "update", id, Some("edited"));
    assert_event(&next_mutation(&mut client), "delete", id, None);
    client.expect_no_message(Duration::from_secs(3));
}

#[test]
fn seed_000_graphql_transport_ws() {
    // --lazy: graphql-ws' own default, which is what the guide's createClient call gets.
    seed_000_flow("transport", &["--keepalive", "30000", "--lazy"]);
}

#[test]
fn seed_000_legacy_graphql_ws() {
    seed_000_flow("legacy", &[]);
}

#[test]
fn bad_token_is_refused_on_both_protocols_and_spares_others() {
    let s = setup(&[]);
    let mut good = subscriber(&s.walcast, "transport", ADMIN_TOKEN, &[]);
    good.expect_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    let mut bad_transport = subscriber(&s.walcast, "transport", "not-a-token", &[]);
    let (closed, before) = bad_transport.wait_kind("closed", CONNECT_TIMEOUT);
    assert_eq!(closed["code"], 4403, "close of a bad token: {closed}");
    assert!(
        before.iter().all(|l| l["kind"] != "connected"),
        "a bad token was acknowledged: {}",
        show(&before)
    );

    let mut bad_legacy = subscriber(&s.walcast, "legacy", "not-a-token", &[]);
    let (_, before) = bad_legacy.wait_kind("closed", CONNECT_TIMEOUT);
    assert!(
        before
            .iter()
            .all(|l| l["kind"] != "connected" && l["kind"] != "next"),
        "a bad token was acknowledged on graphql-ws: {}",
        show(&before)
    );

    // The exact frames of the legacy refusal: connection_error, then a close.
    let mut raw = RawWs::connect(&s.walcast.ws_url(), "graphql-ws");
    raw.send_json(
        &json!({ "type": "connection_init", "payload": { "access_token": "not-a-token" } }),
    );
    let (_, _, frames) = raw.expect_close(CONNECT_TIMEOUT);
    assert!(
        frames.iter().any(|f| f["type"] == "connection_error"),
        "no connection_error before the close: {}",
        show(&frames)
    );
    assert!(
        frames.iter().all(|f| f["type"] != "connection_ack"),
        "a bad token was acknowledged: {}",
        show(&frames)
    );

    // The refused clients left no subscription behind, and the good one still works.
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    let id = s.insert("after the refusals");
    assert_event(
        &next_mutation(&mut good),
        "create",
        id,
        Some("after the refusals"),
    );
    good.expect_no_message(Duration::from_secs(2));
    for bad in [&mut bad_transport, &mut bad_legacy] {
        let lines = bad.drain(Duration::from_millis(200));
        assert!(
            lines.iter().all(|l| l["kind"] != "next"),
            "a refused client got data: {}",
            show(&lines)
        );
    }
}

#[test]
fn idle_clients_stay_connected() {
    let idle_secs: u64 = std::env::var("WALCAST_TEST_IDLE_SECS")
        .ok()
        .map(|v| {
            v.parse()
                .expect("WALCAST_TEST_IDLE_SECS is a number of seconds")
        })
        .unwrap_or(120);
    let s = setup(&[]);
    let mut clients = [
        (
            "transport, keepAlive 30000",
            subscriber(
                &s.walcast,
                "transport",
                ADMIN_TOKEN,
                &["--keepalive", "30000"],
            ),
        ),
        (
            "transport, no keep-alive",
            subscriber(&s.walcast, "transport", ADMIN_TOKEN, &["--no-keepalive"]),
        ),
        (
            "legacy graphql-ws",
            subscriber(&s.walcast, "legacy", ADMIN_TOKEN, &[]),
        ),
    ];
    for (_, c) in clients.iter_mut() {
        c.expect_kind("connected", CONNECT_TIMEOUT);
    }
    s.walcast.wait_subscriptions(3, CONNECT_TIMEOUT);

    std::thread::sleep(Duration::from_secs(idle_secs));

    // Any line now would be a close or a silent reconnect (`connected` again).
    for (name, c) in clients.iter_mut() {
        let lines = c.drain(Duration::from_millis(100));
        assert!(
            lines.is_empty(),
            "{name}: after {idle_secs} s idle: {}",
            show(&lines)
        );
    }
    s.walcast.wait_subscriptions(3, Duration::from_secs(1));

    let id = s.insert("after the idle period");
    for (_, c) in clients.iter_mut() {
        assert_event(
            &next_mutation(c),
            "create",
            id,
            Some("after the idle period"),
        );
    }
    for (_, c) in clients.iter_mut() {
        c.expect_no_message(Duration::from_secs(1));
    }
}

#[test]
fn restart_resumes_without_redelivery() {
    let mut s = setup(&[("WALCAST_SLOT", "e2e_restart")]);
    let mut before = subscriber(&s.walcast, "transport", ADMIN_TOKEN, &[]);
    before.expect_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    let a = s.insert("A before the restart");
    assert_event(
        &next_mutation(&mut before),
        "create",
        a,
        Some("A before the restart"),
    );

    s.walcast.stop();
    // Its socket is gone; killing it also rules out a reconnect to the restarted server.
    drop(before);

    // Written while walcast is down: the slot holds them.
    let b1 = s.insert("B1 while down");
    let b2 = s.insert("B2 while down");
    s.sql(&format!(
        "UPDATE messages SET text = 'B1 edited' WHERE id = {b1}"
    ));
    s.sql(&format!("DELETE FROM messages WHERE id = {b2}"));

    s.walcast.restart();
    let mut after = subscriber(&s.walcast, "transport", ADMIN_TOKEN, &[]);
    after.expect_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    let c = s.insert("C after the restart");

    // A new subscriber without `after:` gets live events only: it may see the downtime rows
    // (still being streamed from the slot when it joined), never A, which was already delivered.
    let mut seen = Vec::new();
    loop {
        let m = next_mutation(&mut after);
        let key = m["key"].clone();
        seen.push(m.clone());
        assert_ne!(
            key,
            json!(a.to_string()),
            "A delivered again: {}",
            show(&seen)
        );
        assert!(
            [b1, b2, c].iter().any(|id| key == json!(id.to_string())),
            "event for an unknown row: {}",
            show(&seen)
        );
        if key == json!(c.to_string()) {
            assert_event(&m, "create", c, Some("C after the restart"));
            break;
        }
    }
    after.expect_no_message(Duration::from_secs(3));

    let log = s.walcast.log();
    assert!(
        !log.contains("panicked"),
        "walcast panicked:\n{}",
        s.walcast.log_tail(80)
    );
}
