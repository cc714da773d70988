//! Bad input and limits (API.md section 6): each answered as the contract says, and nothing
//! else breaks — a healthy client on the same server keeps receiving.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "limits-token";

type Setup = Server;

fn setup(extra: &[(&str, &str)]) -> Setup {
    serve(DB, DEMO_SCHEMA, TOKEN, extra)
}

fn acked(s: &Setup) -> RawWs {
    let mut ws = RawWs::connect(&s.walcast.ws_url(), "graphql-transport-ws");
    ws.send_json(&json!({"type": "connection_init", "payload": {"access_token": TOKEN}}));
    assert_eq!(ws.recv_json(CONNECT_TIMEOUT)["type"], "connection_ack");
    ws
}

#[test]
fn malformed_unknown_and_oversized_messages_close_only_their_socket() {
    let s = setup(&[]);
    let url = s.walcast.ws_url();
    let mut healthy = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--query",
        "subscription { messages_mutated { data { text } } }",
    ]);
    healthy.wait_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);

    let mut ws = acked(&s);
    ws.send_text("{ not json");
    let (code, _, _) = ws.expect_close(CONNECT_TIMEOUT);
    assert_eq!(code, 4400, "malformed JSON");

    let mut ws = acked(&s);
    ws.send_json(&json!({"type": "teleport", "id": "1"}));
    let (code, reason, _) = ws.expect_close(CONNECT_TIMEOUT);
    assert_eq!(code, 4400, "unknown message type");
    assert!(reason.contains("teleport"), "{reason}");

    let mut ws = acked(&s);
    let huge = format!(
        "{{\"type\":\"subscribe\",\"id\":\"1\",\"payload\":{{\"query\":\"{}\"}}}}",
        "x".repeat(1_100_000)
    );
    ws.send_text(&huge);
    let (code, _, _) = ws.expect_close(CONNECT_TIMEOUT);
    assert_eq!(code, 1009, "message over 1 MiB");

    insert_message(&s.pg, DB, "still here");
    assert_eq!(
        healthy.expect_data(EVENT_TIMEOUT)["messages_mutated"]["data"]["text"],
        "still here"
    );
}

#[test]
fn subscription_and_connection_limits() {
    let s = setup(&[
        ("WALCAST_MAX_SUBSCRIPTIONS_PER_CONNECTION", "2"),
        ("WALCAST_MAX_CONNECTIONS", "3"),
    ]);
    let mut ws = acked(&s);
    for id in ["1", "2", "3"] {
        ws.send_json(&json!({"type": "subscribe", "id": id, "payload": {"query": "subscription { messages_mutated { key } }"}}));
    }
    let error = ws.recv_json(CONNECT_TIMEOUT);
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("3")),
        "{error}"
    );
    assert!(error.to_string().contains("limit 2"), "{error}");
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);

    // Three sockets are open with this one; the fourth upgrade is refused.
    let _b = acked(&s);
    let _c = acked(&s);
    let refused = RawWs::try_connect(&s.walcast.ws_url(), &["graphql-transport-ws"], &[]);
    let status = refused.err().map(|e| upgrade_status(&e));
    assert_eq!(status, Some(Some(503)), "the connection over the limit");
}

#[test]
fn query_depth_is_limited() {
    let s = setup(&[]);
    let mut deep = String::from("id");
    for _ in 0..14 {
        deep = format!("text user {{ messages {{ {deep} }} }}");
    }
    let (status, body) = s.walcast.graphql(
        &format!("{{ messages {{ {deep} }} }}"),
        json!({}),
        Some(TOKEN),
    );
    assert_ne!(status, 200, "{body}");
    assert!(
        body.to_string().contains("exceeds the limit of 20 levels"),
        "{body}"
    );
}

#[test]
fn a_database_without_logical_replication_is_refused_with_the_fix() {
    let pg = walcast_pgcluster::PgCluster::start_with(&walcast_pgcluster::ClusterOptions {
        extra_conf: vec![("wal_level".into(), "replica".into())],
        ..Default::default()
    })
    .expect("a cluster with wal_level=replica");
    let mut w = Walcast::launch(
        &pg.url("postgres"),
        &[("WEBSOCKETS_GRAPHQL_AUTH", "public")],
    );
    let status = w.wait_exit(Duration::from_secs(30)).expect("serve exits");
    assert!(!status.success());
    assert!(
        w.log().contains("ALTER SYSTEM SET wal_level = logical"),
        "{}",
        w.log_tail(20)
    );

    let out = std::process::Command::new(walcast_bin())
        .arg("check")
        .env("DATABASE_URL", pg.url("postgres"))
        .output()
        .expect("walcast check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL  wal_level = replica"), "{text}");
}

#[test]
fn check_reports_what_a_ready_database_has() {
    let pg = pg();
    let url = demo_db(&pg, DB);
    sql(&pg, DB, "CREATE TABLE plain (id int)");
    let out = std::process::Command::new(walcast_bin())
        .arg("check")
        .env("DATABASE_URL", &url)
        .output()
        .expect("walcast check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok    wal_level = logical"), "{text}");
    assert!(
        text.contains("table public.messages has REPLICA IDENTITY FULL"),
        "{text}"
    );
    assert!(
        text.contains("ALTER TABLE \"public\".\"plain\" REPLICA IDENTITY FULL;"),
        "{text}"
    );
    assert!(text.contains("has no primary key"), "{text}");
}

#[test]
fn check_fails_on_a_slot_of_another_database() {
    let pg = pg();
    let url = demo_db(&pg, DB);
    pg.create_database("other").expect("create database");
    sql(
        &pg,
        "other",
        "SELECT pg_create_logical_replication_slot('walcast', 'pgoutput')",
    );
    let out = std::process::Command::new(walcast_bin())
        .arg("check")
        .env("DATABASE_URL", &url)
        .output()
        .expect("walcast check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check passed:\n{text}");
    assert!(
        text.contains("slot walcast belongs to database other, not app"),
        "{text}"
    );
    assert!(
        text.contains("pg_drop_replication_slot('walcast')"),
        "{text}"
    );
}

#[test]
fn schema_into_a_closed_pipe_exits_quietly() {
    let pg = pg();
    let url = demo_db(&pg, DB);
    // `walcast schema | head -0`: the reader is gone before walcast writes.
    let mut child = std::process::Command::new(walcast_bin())
        .arg("schema")
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("walcast schema");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("walcast schema");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
