//! Logical messages (`pg_logical_emit_message`) end to end: the `_logical_message` subscription
//! over graphql-transport-ws receives committed transactional messages and non-transactional
//! ones with their fields, in WAL order, and nothing of another prefix or of a rolled-back
//! transaction; prefixes are granted per role by the permissions file.
//!
//! Needs Postgres 14 or newer (pgoutput's `messages` option); the system Postgres of CI is 15.
//! On an older server the test fails with instructions. `scripts/pg-versions.sh` runs this
//! suite only on the majors that support it.

mod support;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const ADMIN: &str = "messages-admin-token";
/// Role `relay`: the `outbox` prefix only.
const RELAY: &str = "messages-relay-token";
/// Role `plain`: the `messages` table, no logical messages.
const PLAIN: &str = "messages-plain-token";

const TOKENS: &str = r#"
["messages-admin-token"]
role = "admin"

["messages-relay-token"]
role = "relay"

["messages-plain-token"]
role = "plain"
"#;

const PERMISSIONS: &str = r#"
[relay]
logical_messages = ["outbox"]

[plain.messages]
select = true
"#;

const FIELDS: &str = "prefix content base64 transactional lsn commitTime";

/// Field order matters for drop: the server goes before the database it reads.
struct Setup {
    walcast: Walcast,
    pg: walcast_pgcluster::PgCluster,
    _dir: TempDir,
}

fn setup() -> Setup {
    let pg = pg();
    assert!(
        pg.major_version() >= 14,
        "logical messages need pgoutput's `messages` option, Postgres 14 or newer, but the \
         Postgres found ({}) is {}; point WALCAST_PG_BINDIR at a newer bin dir, e.g. \
         WALCAST_PG_BINDIR=/usr/lib/postgresql/15/bin (scripts/pg-versions.sh bindir 16)",
        pg.bin_dir().display(),
        pg.major_version()
    );
    pg.create_database(DB).expect("create database");
    sql(&pg, DB, DEMO_SCHEMA);
    let dir = TempDir::new("e2e-messages");
    let tokens = dir.write("tokens.toml", TOKENS);
    let permissions = dir.write("permissions.toml", PERMISSIONS);
    let walcast = Walcast::start(
        &pg.url(DB),
        &[
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens.to_str().expect("UTF-8 path")),
            (
                "WALCAST_PERMISSIONS_FILE",
                permissions.to_str().expect("UTF-8 path"),
            ),
        ],
    );
    Setup {
        walcast,
        pg,
        _dir: dir,
    }
}

impl Setup {
    fn sql(&self, statements: &str) -> String {
        sql(&self.pg, DB, statements)
    }

    /// A graphql-ws (npm) client subscribed to `query` with `token`, connection acknowledged.
    fn client(&self, token: &str, query: &str) -> JsClient {
        let url = self.walcast.ws_url();
        let mut c = JsClient::spawn(&[
            "--protocol",
            "transport",
            "--url",
            &url,
            "--token",
            token,
            "--query",
            query,
        ]);
        c.wait_kind("connected", CONNECT_TIMEOUT);
        c
    }

    /// The error a subscription to `query` gets, as text.
    fn refused(&self, token: &str, query: &str) -> String {
        let mut c = self.client(token, query);
        let line = c.next_line(EVENT_TIMEOUT);
        assert_eq!(
            line["kind"], "error",
            "{query}: expected an error, got {line}"
        );
        line["error"].to_string()
    }
}

/// The next `_logical_message` value; GraphQL errors fail the test.
fn next_message(c: &mut JsClient) -> Value {
    c.expect_data(EVENT_TIMEOUT)["_logical_message"].clone()
}

fn is_lsn(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.split_once('/').is_some_and(|(hi, lo)| {
            [hi, lo]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit()))
        })
    })
}

#[test]
fn committed_and_non_transactional_messages_reach_granted_subscribers() {
    let s = setup();
    let mut relay = s.client(
        RELAY,
        &format!("subscription {{ _logical_message(prefix: \"outbox\") {{ {FIELDS} }} }}"),
    );
    let mut admin = s.client(
        ADMIN,
        "subscription { _logical_message { prefix content transactional } }",
    );
    let mut both = s.client(
        ADMIN,
        "subscription { m: _logical_message(prefix_in: [\"outbox\", \"audit\"]) { prefix } }",
    );
    s.walcast.wait_subscriptions(3, EVENT_TIMEOUT);

    // Committed with a row change; the message comes once the transaction has committed.
    s.sql(
        "BEGIN; \
         INSERT INTO messages (text) VALUES ('order placed'); \
         SELECT pg_logical_emit_message(true, 'outbox', '{\"order\":1}'); \
         COMMIT;",
    );
    // Rolled back: never sent by pgoutput, never delivered.
    s.sql("BEGIN; SELECT pg_logical_emit_message(true, 'outbox', 'rolled back'); ROLLBACK;");
    // Another prefix: not for `relay`.
    s.sql("SELECT pg_logical_emit_message(true, 'audit', 'not for relay')");
    // Non-transactional, and not valid UTF-8: base64.
    s.sql("SELECT pg_logical_emit_message(false, 'outbox', '\\xff00'::bytea)");
    s.sql("SELECT pg_logical_emit_message(true, 'outbox', 'last')");

    let first = next_message(&mut relay);
    assert_eq!(first["prefix"], "outbox", "{first}");
    assert_eq!(first["content"], "{\"order\":1}", "{first}");
    assert_eq!(first["base64"], false, "{first}");
    assert_eq!(first["transactional"], true, "{first}");
    assert!(is_lsn(&first["lsn"]), "{first}");
    let commit_time = first["commitTime"].as_str().unwrap_or_default();
    assert!(
        commit_time.ends_with('Z') && commit_time.contains('T'),
        "commitTime of a transactional message: {first}"
    );

    let second = next_message(&mut relay);
    assert_eq!(
        (
            &second["prefix"],
            &second["content"],
            &second["base64"],
            &second["transactional"],
            &second["commitTime"],
        ),
        (
            &json!("outbox"),
            &json!("/wA="),
            &json!(true),
            &json!(false),
            &Value::Null
        ),
        "{second}"
    );
    assert!(is_lsn(&second["lsn"]), "{second}");

    let third = next_message(&mut relay);
    assert_eq!(
        (&third["content"], &third["transactional"]),
        (&json!("last"), &json!(true)),
        "{third}"
    );
    relay.expect_no_message(std::time::Duration::from_millis(500));

    // Admin without a filter: every prefix, in WAL order, still nothing rolled back.
    let seen: Vec<Value> = (0..4).map(|_| next_message(&mut admin)).collect();
    assert_eq!(
        seen,
        vec![
            json!({"prefix": "outbox", "content": "{\"order\":1}", "transactional": true}),
            json!({"prefix": "audit", "content": "not for relay", "transactional": true}),
            json!({"prefix": "outbox", "content": "/wA=", "transactional": false}),
            json!({"prefix": "outbox", "content": "last", "transactional": true}),
        ]
    );
    admin.expect_no_message(std::time::Duration::from_millis(300));

    // `prefix_in`, under an alias.
    let prefixes: Vec<Value> = (0..4)
        .map(|_| both.expect_data(EVENT_TIMEOUT)["m"]["prefix"].clone())
        .collect();
    assert_eq!(prefixes, vec!["outbox", "audit", "outbox", "outbox"]);
}

#[test]
fn roles_without_the_grant_cannot_subscribe() {
    let s = setup();
    let query = "subscription { _logical_message { prefix content } }";
    // Not in the schema of a role without `logical_messages`.
    let err = s.refused(PLAIN, query);
    assert!(err.contains("_logical_message"), "{err}");
    // A prefix outside the grant is refused, naming it.
    let err = s.refused(
        RELAY,
        "subscription { _logical_message(prefix_in: [\"outbox\", \"audit\"]) { prefix } }",
    );
    assert!(
        err.contains("may not read logical messages with prefix \\\"audit\\\""),
        "{err}"
    );
    // No replay: `after` is refused with the reason.
    let err = s.refused(
        ADMIN,
        "subscription { _logical_message(after: \"0/0\") { prefix } }",
    );
    assert!(err.contains("not supported"), "{err}");
    assert!(!s.walcast.log().contains("panicked"));

    // The role's table subscription still works, and sees no message.
    let mut plain = s.client(PLAIN, "subscription { messages_mutated { key event } }");
    s.walcast.wait_subscriptions(1, EVENT_TIMEOUT);
    s.sql("SELECT pg_logical_emit_message(true, 'outbox', 'x'); INSERT INTO messages (text) VALUES ('y');");
    let data = plain.expect_data(EVENT_TIMEOUT);
    assert_eq!(data["messages_mutated"]["event"], "create", "{data}");
    plain.expect_no_message(std::time::Duration::from_millis(300));
}
