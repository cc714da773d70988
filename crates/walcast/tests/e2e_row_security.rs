//! A role's row filter on both sides of a change, end to end: mutations act as row-level
//! security's `USING` and `WITH CHECK` (over HTTP and the legacy socket), and an update is
//! judged on both versions of the row for each subscriber (a row that enters the role's rows
//! arrives as a create, one that leaves them as a delete, a change of hidden columns not at
//! all), live and replayed.

mod support;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const ADMIN: &str = "rs-admin-token";
/// Role `owner` with `sub = "alice"`.
const ALICE: &str = "rs-alice-token";
/// Role `owner` with `sub = "bob"`.
const BOB: &str = "rs-bob-token";

const TOKENS: &str = r#"
["rs-admin-token"]
role = "admin"

["rs-alice-token"]
role = "owner"
sub = "alice"

["rs-bob-token"]
role = "owner"
sub = "bob"
"#;

/// `notes` hides `secret` and may be written; `memos` has the default replica identity.
const PERMISSIONS: &str = r#"
[owner.notes]
select = true
columns = ["id", "owner", "body"]
filter = { owner = "$claims.sub" }
insert = true
update = true
delete = true

[owner.memos]
select = true
filter = { owner = "$claims.sub" }
"#;

const SCHEMA: &str = "
CREATE TABLE notes (id integer PRIMARY KEY, owner text NOT NULL, body text, secret text);
ALTER TABLE notes REPLICA IDENTITY FULL;
CREATE TABLE memos (id integer PRIMARY KEY, owner text NOT NULL, body text);
INSERT INTO notes VALUES (1, 'alice', 'a1', 's1'), (2, 'bob', 'b1', 's2');
INSERT INTO memos VALUES (1, 'alice', 'm1');
";

/// The server goes before the database it reads.
struct Setup {
    walcast: Walcast,
    pg: PgCluster,
    dir: TempDir,
}

fn setup(extra_env: &[(&str, &str)]) -> Setup {
    let pg = pg();
    pg.create_database(DB).expect("create database");
    sql(&pg, DB, SCHEMA);
    let dir = TempDir::new("rowsec");
    let tokens = dir.write("tokens.toml", TOKENS);
    let perms = dir.write("permissions.toml", PERMISSIONS);
    let mut env = vec![
        ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
        ("WALCAST_TOKENS_FILE", tokens.to_str().expect("UTF-8 path")),
        (
            "WALCAST_PERMISSIONS_FILE",
            perms.to_str().expect("UTF-8 path"),
        ),
    ];
    env.extend_from_slice(extra_env);
    let walcast = Walcast::start(&pg.url(DB), &env);
    Setup { walcast, pg, dir }
}

impl Setup {
    fn sql(&self, statements: &str) -> String {
        sql(&self.pg, DB, statements)
    }

    /// Rewrites the permissions file and sends SIGHUP; returns once the server logged the
    /// reload.
    fn reload_permissions(&self, text: &str) {
        let reloads = || {
            self.walcast
                .log()
                .matches("tokens and permissions reloaded")
                .count()
        };
        let before = reloads();
        self.dir.write("permissions.toml", text);
        let pid = self.walcast.pid().expect("walcast runs");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP {pid}: {status}");
        let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
        while reloads() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no reload logged after SIGHUP\n{}",
                self.walcast.log_tail(40)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Inserts memos of `owner` (ids from `first`), one transaction each, until `c`'s
    /// operation completes; returns the lines before the completion.
    fn write_until_complete(&self, c: &mut JsClient, first: i64, owner: &str) -> Vec<Value> {
        let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
        let mut seen = Vec::new();
        for id in first.. {
            assert!(
                std::time::Instant::now() < deadline,
                "no completion: {}",
                show(&seen)
            );
            self.sql(&format!("INSERT INTO memos VALUES ({id}, '{owner}', 'm')"));
            for line in c.drain(std::time::Duration::from_millis(300)) {
                if line["kind"] == "complete" {
                    return seen;
                }
                seen.push(line);
            }
        }
        unreachable!("the id range is unbounded")
    }

    fn notes(&self) -> String {
        self.sql("SELECT id, owner, body, secret FROM notes ORDER BY id")
    }

    /// A client of `protocol` with `token`, running `query`, once acknowledged.
    fn client(&self, protocol: &str, token: &str, query: &str, extra: &[&str]) -> JsClient {
        let url = self.walcast.ws_url();
        let mut args = vec![
            "--protocol",
            protocol,
            "--url",
            &url,
            "--token",
            token,
            "--query",
            query,
        ];
        args.extend_from_slice(extra);
        let mut c = JsClient::spawn(&args);
        c.wait_kind("connected", CONNECT_TIMEOUT);
        c
    }

    /// A mutation over HTTP that succeeds: its data.
    fn mutate_ok(&self, token: &str, query: &str) -> Value {
        let (status, body) = self.walcast.graphql(query, json!({}), Some(token));
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body["errors"].is_null(), "{query}: {body}");
        body["data"].clone()
    }

    /// A mutation over HTTP that is refused: its one error message. Nothing of a row comes back.
    fn mutate_refused(&self, token: &str, query: &str) -> String {
        let (status, body) = self.walcast.graphql(query, json!({}), Some(token));
        assert_eq!(status, 200, "{query}: {body}");
        let errors = body["errors"].as_array().cloned().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{query}: {body}");
        assert_eq!(
            errors[0]["extensions"]["code"], "FORBIDDEN",
            "{query}: {body}"
        );
        let data = body["data"].as_object().cloned().unwrap_or_default();
        assert!(data.values().all(Value::is_null), "{query}: {body}");
        errors[0]["message"].as_str().unwrap_or_default().to_owned()
    }

    /// A mutation over the legacy `graphql-ws` socket (subscriptions-transport-ws): the result
    /// the client library reports.
    fn mutate_on_socket(&self, token: &str, query: &str) -> Value {
        let mut c = self.client("legacy", token, query, &[]);
        let (line, _) = c.wait_kind("next", EVENT_TIMEOUT);
        line["payload"].clone()
    }
}

fn payloads(c: &mut JsClient, n: usize, field: &str) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let (line, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
            assert!(
                skipped.iter().all(|l| l["kind"] != "error"),
                "errors before the event: {}",
                show(&skipped)
            );
            assert!(line["payload"]["errors"].is_null(), "{line}");
            line["payload"]["data"][field].clone()
        })
        .collect()
}

fn expect_quiet(c: &mut JsClient) {
    let lines = c.drain(std::time::Duration::from_millis(1000));
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] != "next" && l["kind"] != "error"),
        "expected nothing more, got {}",
        show(&lines)
    );
}

#[test]
fn mutations_change_only_rows_the_role_may_write_over_http_and_the_socket() {
    let s = setup(&[("WALCAST_MUTATIONS", "true")]);
    let before = s.notes();
    assert_eq!(before, "1|alice|a1|s1\n2|bob|b1|s2");
    // Every change that reaches the WAL, as admin sees it.
    let mut audit = s.client(
        "transport",
        ADMIN,
        "subscription { notes_mutated { event key data { owner body secret } } }",
        &[],
    );
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);

    // USING: another owner's row is out of reach, and reads exactly like a missing one.
    let update = |id: &str| {
        format!(
            r#"mutation {{ update_notes_item(id: "{id}", data: {{body: "mine"}}) {{ id owner body }} }}"#
        )
    };
    let hidden = s.mutate_refused(ALICE, &update("2"));
    let missing = s.mutate_refused(ALICE, &update("999"));
    assert_eq!(hidden, missing, "a refusal tells whether the row exists");
    assert!(hidden.contains("update_notes_item"), "{hidden}");
    let delete = |id: &str| format!(r#"mutation {{ delete_notes_item(id: "{id}") {{ id }} }}"#);
    let hidden = s.mutate_refused(ALICE, &delete("2"));
    assert_eq!(hidden, s.mutate_refused(ALICE, &delete("999")));
    // WITH CHECK: a row may not be given away, nor created for someone else.
    let given = s.mutate_refused(
        ALICE,
        r#"mutation { update_notes_item(id: "1", data: {owner: "bob", body: "yours"}) { id } }"#,
    );
    assert!(given.contains("nothing was written"), "{given}");
    let created = s.mutate_refused(
        ALICE,
        r#"mutation { create_notes_item(data: {id: 3, owner: "bob", body: "forged"}) { id } }"#,
    );
    assert!(created.contains("nothing was written"), "{created}");
    assert_eq!(s.notes(), before, "a refused mutation changed a row");

    // What the filter allows goes through, and answers with the role's columns only.
    assert_eq!(
        s.mutate_ok(
            ALICE,
            r#"mutation { update_notes_item(id: "1", data: {body: "a2"}) { id owner body } }"#
        ),
        json!({"update_notes_item": {"id": "1", "owner": "alice", "body": "a2"}})
    );
    assert_eq!(
        s.mutate_ok(
            ALICE,
            r#"mutation { create_notes_item(data: {id: 3, owner: "alice", body: "a3"}) { id owner } }"#
        ),
        json!({"create_notes_item": {"id": "3", "owner": "alice"}})
    );
    assert_eq!(
        s.mutate_ok(ALICE, &delete("3")),
        json!({"delete_notes_item": {"id": "3"}})
    );

    // The same over the socket.
    for query in [
        update("2"),
        update("999"),
        delete("2"),
        r#"mutation { create_notes_item(data: {id: 4, owner: "bob"}) { id } }"#.to_owned(),
        r#"mutation { update_notes_item(id: "1", data: {owner: "carol"}) { id } }"#.to_owned(),
    ] {
        let p = s.mutate_on_socket(ALICE, &query);
        let errors = p["errors"].to_string();
        assert!(errors.contains("FORBIDDEN"), "{query}: {p}");
        let data = p["data"].as_object().cloned().unwrap_or_default();
        assert!(data.values().all(Value::is_null), "{query}: {p}");
    }
    let p = s.mutate_on_socket(
        ALICE,
        r#"mutation { update_notes_item(id: "1", data: {body: "a4"}) { id body } }"#,
    );
    assert_eq!(
        p,
        json!({"data": {"update_notes_item": {"id": "1", "body": "a4"}}})
    );
    // Bob's own row is his to change.
    let p = s.mutate_on_socket(
        BOB,
        r#"mutation { update_notes_item(id: "2", data: {body: "b2"}) { id body } }"#,
    );
    assert_eq!(
        p,
        json!({"data": {"update_notes_item": {"id": "2", "body": "b2"}}})
    );
    assert_eq!(s.notes(), "1|alice|a4|s1\n2|bob|b2|s2");

    // The WAL saw the allowed changes only: refused ones were rolled back or never matched.
    assert_eq!(
        payloads(&mut audit, 5, "notes_mutated"),
        vec![
            json!({"event": "update", "key": "1", "data": {"owner": "alice", "body": "a2", "secret": "s1"}}),
            json!({"event": "create", "key": "3", "data": {"owner": "alice", "body": "a3", "secret": null}}),
            json!({"event": "delete", "key": "3", "data": null}),
            json!({"event": "update", "key": "1", "data": {"owner": "alice", "body": "a4", "secret": "s1"}}),
            json!({"event": "update", "key": "2", "data": {"owner": "bob", "body": "b2", "secret": "s2"}}),
        ]
    );
    expect_quiet(&mut audit);
}

const PRISMA: &str = "subscription ($after: String) { notes(after: $after) { mutation node { id owner body } updatedFields previousValues { id owner body } } }";
const DIRECTUS: &str = "subscription { notes_mutated { event key data { id owner body } } }";

#[test]
fn updates_are_judged_on_both_versions_of_the_row() {
    let s = setup(&[]);
    let (status, body) = s.walcast.graphql("{ _cursor }", json!({}), Some(ALICE));
    assert_eq!(status, 200, "{body}");
    let cursor = body["data"]["_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();

    let mut alice = s.client("transport", ALICE, PRISMA, &[]);
    let mut alice_directus = s.client("legacy", ALICE, DIRECTUS, &[]);
    // Filed under creates and deletes only: found through the update's other versions.
    let mut alice_created = s.client(
        "graphcool",
        ALICE,
        "subscription { notes(where: {mutation_in: [CREATED]}) { mutation node { id } } }",
        &[],
    );
    let mut alice_deleted = s.client(
        "transport",
        ALICE,
        r#"subscription { notes_mutated(event: "delete") { event key } }"#,
        &[],
    );
    let mut bob = s.client("transport", BOB, PRISMA, &[]);
    let memos = "subscription { memos { mutation node { id owner body } previousValues { id owner body } } }";
    let mut alice_memos = s.client("transport", ALICE, memos, &[]);
    let mut bob_memos = s.client("legacy", BOB, memos, &[]);
    let mut control = s.client(
        "graphcool",
        ADMIN,
        "subscription { notes { mutation } }",
        &[],
    );
    s.walcast.wait_subscriptions_at_least(8, CONNECT_TIMEOUT);

    // One transaction per statement.
    s.sql(
        "UPDATE notes SET owner = 'alice' WHERE id = 2;
         UPDATE notes SET secret = 'x' WHERE id = 2;
         UPDATE notes SET body = 'b2', secret = 'y' WHERE id = 2;
         UPDATE notes SET owner = 'carol' WHERE id = 2;
         UPDATE notes SET body = 'c' WHERE id = 2;
         UPDATE notes SET id = 10, owner = 'bob' WHERE id = 1;
         UPDATE memos SET owner = 'bob' WHERE id = 1;",
    );
    assert_eq!(payloads(&mut control, 6, "notes").len(), 6);

    // Bob's row becomes alice's (create), a hidden column changes (nothing), a visible one
    // with it (update naming it only), the row goes to carol (delete with what alice saw),
    // carol's row changes (nothing), alice's row 1 goes to bob under a new key (delete of key 1).
    let expected = vec![
        json!({"mutation": "CREATED", "node": {"id": "2", "owner": "alice", "body": "b1"},
               "updatedFields": null, "previousValues": null}),
        json!({"mutation": "UPDATED", "node": {"id": "2", "owner": "alice", "body": "b2"},
               "updatedFields": ["body"], "previousValues": {"id": "2", "owner": "alice", "body": "b1"}}),
        json!({"mutation": "DELETED", "node": null, "updatedFields": null,
               "previousValues": {"id": "2", "owner": "alice", "body": "b2"}}),
        json!({"mutation": "DELETED", "node": null, "updatedFields": null,
               "previousValues": {"id": "1", "owner": "alice", "body": "a1"}}),
    ];
    assert_eq!(payloads(&mut alice, 4, "notes"), expected);
    assert_eq!(
        payloads(&mut alice_directus, 4, "notes_mutated"),
        vec![
            json!({"event": "create", "key": "2", "data": {"id": "2", "owner": "alice", "body": "b1"}}),
            json!({"event": "update", "key": "2", "data": {"id": "2", "owner": "alice", "body": "b2"}}),
            json!({"event": "delete", "key": "2", "data": null}),
            json!({"event": "delete", "key": "1", "data": null}),
        ]
    );
    assert_eq!(
        payloads(&mut alice_created, 1, "notes"),
        vec![json!({"mutation": "CREATED", "node": {"id": "2"}})]
    );
    assert_eq!(
        payloads(&mut alice_deleted, 2, "notes_mutated"),
        vec![
            json!({"event": "delete", "key": "2"}),
            json!({"event": "delete", "key": "1"}),
        ]
    );
    assert_eq!(
        payloads(&mut bob, 2, "notes"),
        vec![
            json!({"mutation": "DELETED", "node": null, "updatedFields": null,
                   "previousValues": {"id": "2", "owner": "bob", "body": "b1"}}),
            json!({"mutation": "CREATED", "node": {"id": "10", "owner": "bob", "body": "a1"},
                   "updatedFields": null, "previousValues": null}),
        ]
    );
    // Without REPLICA IDENTITY FULL the previous owner is unknown: the new owner sees an
    // update, the previous one nothing (a delete could name a row it never saw).
    assert_eq!(
        payloads(&mut bob_memos, 1, "memos"),
        vec![
            json!({"mutation": "UPDATED", "node": {"id": "1", "owner": "bob", "body": "m1"},
                    "previousValues": {"id": "1", "owner": null, "body": null}})
        ]
    );
    for c in [
        &mut alice,
        &mut alice_directus,
        &mut alice_created,
        &mut alice_deleted,
        &mut bob,
        &mut alice_memos,
        &mut bob_memos,
    ] {
        expect_quiet(c);
    }

    // Replaying from before the writes judges them the same way.
    let variables = json!({"after": cursor}).to_string();
    let mut replay = s.client("transport", ALICE, PRISMA, &["--variables", &variables]);
    assert_eq!(payloads(&mut replay, 4, "notes"), expected);
    expect_quiet(&mut replay);
}

/// `memos` without a row filter.
const PERMISSIONS_UNFILTERED_MEMOS: &str = r#"
[owner.notes]
select = true
columns = ["id", "owner", "body"]
filter = { owner = "$claims.sub" }

[owner.memos]
select = true
"#;

#[test]
fn a_reload_that_gives_or_takes_a_row_filter_ends_the_subscriptions_under_it() {
    let s = setup(&[]);
    let memos = "subscription { memos_mutated { event key data { owner } } }";
    let mut alice_memos = s.client("transport", ALICE, memos, &[]);
    let mut alice_notes = s.client("transport", ALICE, DIRECTUS, &[]);
    s.walcast.wait_subscriptions_at_least(2, CONNECT_TIMEOUT);

    // The filter on memos goes away: rows alice holds from it may not be all she now sees, so
    // the subscription ends (at the table's next event once her connection has the new view;
    // bob's memos, invisible to her before, are written until then) and she subscribes again.
    // Notes keep their filter, and their subscription goes on.
    s.reload_permissions(PERMISSIONS_UNFILTERED_MEMOS);
    s.sql("UPDATE notes SET body = 'a2' WHERE id = 1;");
    let lines = s.write_until_complete(&mut alice_memos, 100, "bob");
    assert!(
        lines.iter().all(|l| l["kind"] != "next"),
        "events before the end: {}",
        show(&lines)
    );
    assert_eq!(
        payloads(&mut alice_notes, 1, "notes_mutated"),
        vec![
            json!({"event": "update", "key": "1", "data": {"id": "1", "owner": "alice", "body": "a2"}})
        ]
    );
    let mut again = s.client("transport", ALICE, memos, &[]);
    s.walcast.wait_subscriptions_at_least(2, CONNECT_TIMEOUT);
    s.sql("INSERT INTO memos VALUES (3, 'bob', 'm3');");
    assert_eq!(
        payloads(&mut again, 1, "memos_mutated"),
        vec![json!({"event": "create", "key": "3", "data": {"owner": "bob"}})]
    );

    // And back: the filter returns, the unfiltered subscription ends (carol's memos reach it
    // until its connection has the new view).
    s.reload_permissions(PERMISSIONS);
    s.write_until_complete(&mut again, 200, "carol");
    expect_quiet(&mut alice_notes);
}
