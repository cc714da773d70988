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

/// walcast's resident memory, from /proc.
fn rss_kib(s: &Setup) -> u64 {
    let pid = s.walcast.pid().expect("walcast is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// `["1", ..., "n"]`: ids as GraphQL's ID reads them from variables.
fn id_strings(n: usize) -> Vec<String> {
    (1..=n).map(|i| i.to_string()).collect()
}

fn ids(n: usize) -> String {
    (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn a_hundred_thousand_item_in_list_neither_stalls_others_nor_keeps_its_memory() {
    let s = setup(&[("WALCAST_MAX_LIST_ITEMS", "200000")]);
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
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    // A first event and a first list warm every path up (allocator arenas, caches), so the
    // memory read next is the steady state the long list must return to.
    let query = "subscription ($ids: [ID!]) { messages(where: { node: { id_in: $ids } }) { node { text } } }";
    let mut warm = acked(&s);
    warm.send_json(&json!({"type": "subscribe", "id": "w", "payload": {
        "query": query, "variables": { "ids": id_strings(500) }
    }}));
    s.walcast.wait_subscriptions(2, EVENT_TIMEOUT);
    drop(warm);
    s.walcast.wait_subscriptions(1, EVENT_TIMEOUT);
    insert_message(&s.pg, DB, "warm");
    assert_eq!(
        healthy.expect_data(EVENT_TIMEOUT)["messages_mutated"]["data"]["text"],
        "warm"
    );
    let before = rss_kib(&s);

    let mut big = acked(&s);
    big.send_json(&json!({"type": "subscribe", "id": "big", "payload": {
        "query": query, "variables": { "ids": id_strings(100_000) }
    }}));
    // Filing the list in the index is linear: the subscription is live long before a generous
    // timeout, and the other subscriber's events flow meanwhile and after.
    s.walcast.wait_subscriptions(2, EVENT_TIMEOUT);
    let id = insert_message(&s.pg, DB, "for both");
    assert!(id <= 100_000);
    assert_eq!(
        healthy.expect_data(EVENT_TIMEOUT)["messages_mutated"]["data"]["text"],
        "for both"
    );
    let next = big.recv_json(EVENT_TIMEOUT);
    assert_eq!(
        (next["type"].as_str(), next["id"].as_str()),
        (Some("next"), Some("big")),
        "{next}"
    );
    assert_eq!(
        next["payload"]["data"]["messages"]["node"]["text"],
        "for both"
    );

    drop(big);
    s.walcast.wait_subscriptions(1, EVENT_TIMEOUT);
    insert_message(&s.pg, DB, "after");
    assert_eq!(
        healthy.expect_data(EVENT_TIMEOUT)["messages_mutated"]["data"]["text"],
        "after"
    );
    // The memory comes back: within 10% of what it was before the long list.
    let limit = before + before / 10;
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    let mut now = rss_kib(&s);
    while now > limit && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        now = rss_kib(&s);
    }
    assert!(
        now <= limit,
        "RSS {now} KiB after the client left, {before} KiB before it came"
    );
}

#[test]
fn an_http_query_binds_a_long_in_list_as_one_parameter() {
    let s = setup(&[("WALCAST_MAX_LIST_ITEMS", "100000")]);
    insert_message(&s.pg, DB, "one");
    insert_message(&s.pg, DB, "two");
    // Through a variable: a document holds at most 15,000 tokens.
    let (status, body) = s.walcast.graphql(
        "query ($ids: [ID!]) { messages(where: { id_in: $ids }, orderBy: [\"id\"]) { text } }",
        json!({ "ids": id_strings(70_000) }),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"data": {"messages": [{"text": "one"}, {"text": "two"}]}}),
    );
    // _not_in, with a NULL-free list, keeps its meaning.
    let (status, body) = s.walcast.graphql(
        &format!(
            "{{ messages(where: {{ id_not_in: [{}] }}) {{ text }} }}",
            ids(1)
        ),
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"data": {"messages": [{"text": "two"}]}}));
}

#[test]
fn a_list_over_the_limit_is_refused_naming_the_field_and_the_limit() {
    let s = setup(&[("WALCAST_MAX_LIST_ITEMS", "1000")]);
    let mut ws = acked(&s);
    ws.send_json(&json!({"type": "subscribe", "id": "1", "payload": {
        "query": format!("subscription {{ messages(where: {{ node: {{ id_in: [{}] }} }}) {{ node {{ id }} }} }}", ids(1001))
    }}));
    let error = ws.recv_json(CONNECT_TIMEOUT);
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        error["payload"][0]["message"],
        "where.node.id_in: a list of 1001 items; filter lists hold at most 1000 (WALCAST_MAX_LIST_ITEMS)",
        "{error}"
    );
    // The connection stays usable, and a list at the limit is accepted.
    ws.send_json(&json!({"type": "subscribe", "id": "2", "payload": {
        "query": format!("subscription {{ messages_mutated(where: {{ id_in: [{}] }}) {{ data {{ text }} }} }}", ids(1000))
    }}));
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    insert_message(&s.pg, DB, "in the list");
    let next = ws.recv_json(EVENT_TIMEOUT);
    assert_eq!(
        next["payload"]["data"]["messages_mutated"]["data"]["text"], "in the list",
        "{next}"
    );
    // The same over HTTP.
    let (status, body) = s.walcast.graphql(
        &format!(
            "{{ messages(where: {{ id_in: [{}] }}) {{ id }} }}",
            ids(1001)
        ),
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("where.id_in: a list of 1001 items")),
        "{body}"
    );
}

#[test]
fn a_malformed_id_is_a_clear_error_not_a_database_one() {
    let s = setup(&[]);
    let (status, body) = s.walcast.graphql(
        "{ messages_by_id(id: \"abc\") { id } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("argument \"id\": "), "{body}");
    assert!(
        !message.contains("22P02") && !message.contains("database"),
        "{body}"
    );
    // The same id `where` refuses, with the same words.
    let (_, by_where) = s.walcast.graphql(
        "{ messages(where: { id: \"abc\" }) { id } }",
        json!({}),
        Some(TOKEN),
    );
    let where_message = by_where["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        where_message.ends_with(message.trim_start_matches("argument \"id\": ")),
        "{where_message} / {message}"
    );
    let id = insert_message(&s.pg, DB, "found");
    let (_, body) = s.walcast.graphql(
        &format!("{{ messages_by_id(id: \"{id}\") {{ text }} }}"),
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(body, json!({"data": {"messages_by_id": {"text": "found"}}}));
}

#[test]
fn an_unquoted_event_gets_the_quoted_form_as_a_hint() {
    let s = setup(&[]);
    let mut ws = acked(&s);
    ws.send_json(&json!({"type": "subscribe", "id": "1", "payload": {
        "query": "subscription { messages_mutated(event: create) { key } }"
    }}));
    let error = ws.recv_json(CONNECT_TIMEOUT);
    assert_eq!(error["type"], "error", "{error}");
    let message = error["payload"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("event: \"create\""), "{error}");
}

/// The blog schema, with relations, for the operation cost.
fn blog(extra: &[(&str, &str)]) -> Setup {
    serve(DB, &demo_sql(), TOKEN, extra)
}

fn relation_queries(s: &Setup) -> u64 {
    metric_sum(
        &s.walcast.get("/metrics").1,
        "walcast_relation_queries_total",
    )
    .unwrap_or(0)
}

#[test]
fn an_operation_over_the_cost_limit_is_refused_before_it_runs() {
    let s = blog(&[]);
    // 800 aliased relation fields: one row change would be 800 reads per subscriber.
    let fields: String = (0..800)
        .map(|i| format!("a{i}: comments(where: {{ id: {i} }}) {{ body }} "))
        .collect();
    let mut ws = acked(&s);
    ws.send_json(&json!({"type": "subscribe", "id": "1", "payload": {
        "query": format!("subscription {{ articles_mutated {{ data {{ {fields} }} }} }}")
    }}));
    let error = ws.recv_json(CONNECT_TIMEOUT);
    assert_eq!(error["type"], "error", "{error}");
    let message = error["payload"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "operation cost 800 exceeds the limit of 500 (WALCAST_MAX_OPERATION_COST)"
        ),
        "{error}"
    );
    // Nested lists multiply, 10 rows each without `first`: comments are read for 10 articles,
    // their article for 100 comments, its comments for 100 articles, their article for 1000.
    let (status, body) = s.walcast.graphql(
        "{ articles { comments { article { comments { article { title } } } } } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("operation cost 1210 exceeds"),
        "{body}"
    );
    // `first` bounds a list's weight.
    let (status, body) = s.walcast.graphql(
        "{ articles(first: 2) { comments(first: 2) { article { author { name } } } } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");

    // A normal relation subscription works, and identical reads under other aliases and in
    // other subscriptions share one query per transaction.
    let query = "subscription { comments_mutated(event: \"create\") { data { body a: article { title } b: article { title } c: article { title } } } }";
    let mut a = acked(&s);
    let mut b = acked(&s);
    for ws in [&mut a, &mut b] {
        ws.send_json(&json!({"type": "subscribe", "id": "r", "payload": {"query": query}}));
    }
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);
    let before = relation_queries(&s);
    sql(
        &s.pg,
        DB,
        "INSERT INTO comments (article_id, body) VALUES (1, 'first'), (1, 'second')",
    );
    for ws in [&mut a, &mut b] {
        for body in ["first", "second"] {
            let next = ws.recv_json(EVENT_TIMEOUT);
            let data = &next["payload"]["data"]["comments_mutated"]["data"];
            assert_eq!(data["body"], body, "{next}");
            for alias in ["a", "b", "c"] {
                assert_eq!(data[alias]["title"], "Streaming the WAL", "{next}");
            }
        }
    }
    assert_eq!(
        relation_queries(&s) - before,
        1,
        "relation reads for one transaction"
    );
}
