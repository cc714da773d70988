//! The examples of the seed documents, end to end with real clients and plain SQL writes:
//! Directus (event filter, variables, update and delete payloads, specific fields), Tyk (queries
//! and mutations over the legacy socket), Prisma 1 (created / updated / deleted, previousValues,
//! updatedFields filters, the OR combination, the error case) over graphql-transport-ws and the
//! raw graphql-subscriptions protocol.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const TOKEN: &str = "seed-admin-token";

type Setup = Server;

fn setup(extra_env: &[(&str, &str)]) -> Setup {
    // The Prisma document's model: posts with an author, users following users.
    let schema = demo_sql()
        + "\nCREATE TABLE post (id text PRIMARY KEY, title text NOT NULL, description text, \"imageUrl\" text, \
             author_id integer REFERENCES users (id));
         ALTER TABLE post REPLICA IDENTITY FULL;";
    let mut env = vec![("WALCAST_MUTATIONS", "true")];
    env.extend_from_slice(extra_env);
    serve(DB, &schema, TOKEN, &env)
}

impl Setup {
    fn sql(&self, statement: &str) -> String {
        sql(&self.pg, DB, statement)
    }

    fn client(&self, protocol: &str, query: &str, extra: &[&str]) -> JsClient {
        let url = self.walcast.ws_url();
        let mut args = vec![
            "--protocol",
            protocol,
            "--url",
            &url,
            "--token",
            TOKEN,
            "--query",
            query,
        ];
        args.extend_from_slice(extra);
        let mut c = JsClient::spawn(&args);
        c.wait_kind("connected", CONNECT_TIMEOUT);
        c
    }
}

/// The next event's payload; protocol chatter such as `subscription_success` is skipped.
fn next_payload(c: &mut JsClient) -> Value {
    let (line, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
    assert!(
        skipped
            .iter()
            .all(|l| l["kind"] != "next" && l["kind"] != "error"),
        "unexpected lines before the event: {}",
        show(&skipped)
    );
    line["payload"].clone()
}

#[test]
fn directus_event_filter_variables_and_payloads() {
    let s = setup(&[]);
    let mut created = s.client(
        "transport",
        r#"subscription { articles_mutated(event: "create") { key event data { id title status } } }"#,
        &[],
    );
    let mut updates = s.client(
        "transport",
        "subscription ArticleUpdates($event: String) { articles_mutated(event: $event) { key event data { title status } } }",
        &["--variables", r#"{"event":"update"}"#, "--op-name", "ArticleUpdates"],
    );
    let mut deletes = s.client(
        "legacy",
        r#"subscription { articles_mutated(event: "delete") { key event data { id } } }"#,
        &[],
    );
    s.walcast.wait_subscriptions_at_least(3, CONNECT_TIMEOUT);

    let id =
        s.sql("INSERT INTO articles (title, author_id) VALUES ('New Article', 1) RETURNING id");
    s.sql(&format!(
        "UPDATE articles SET status = 'published', title = 'Updated Article' WHERE id = {id}"
    ));
    s.sql(&format!("DELETE FROM articles WHERE id = {id}"));

    let c = next_payload(&mut created);
    assert_eq!(
        c["data"]["articles_mutated"],
        json!({"key": id, "event": "create", "data": {"id": id, "title": "New Article", "status": "draft"}}),
        "{c}"
    );
    let u = next_payload(&mut updates);
    assert_eq!(
        u["data"]["articles_mutated"],
        json!({"key": id, "event": "update", "data": {"title": "Updated Article", "status": "published"}}),
        "{u}"
    );
    let d = next_payload(&mut deletes);
    assert_eq!(
        d["data"]["articles_mutated"],
        json!({"key": id, "event": "delete", "data": null}),
        "{d}"
    );
    // Each saw only its own kind.
    created.expect_no_message(Duration::from_secs(2));
    updates.expect_no_message(Duration::from_millis(200));
    deletes.expect_no_message(Duration::from_millis(200));
}

#[test]
fn directus_unquoted_event_is_an_error_that_shows_the_quoted_form() {
    let s = setup(&[]);
    let mut c = s.client(
        "transport",
        "subscription { articles_mutated(event: create) { key } }",
        &[],
    );
    let line = c.expect_kind("error", EVENT_TIMEOUT);
    let text = line.to_string();
    assert!(text.contains("event"), "error names the argument: {text}");
    let mut bad = s.client(
        "transport",
        r#"subscription { articles_mutated(event: "created") { key } }"#,
        &[],
    );
    let text = bad.expect_kind("error", EVENT_TIMEOUT).to_string();
    assert!(
        text.contains(r#"\"create\""#) && text.contains("created"),
        "{text}"
    );
}

#[test]
fn tyk_queries_and_mutations_over_the_legacy_socket() {
    let s = setup(&[]);
    // A query answers one data message, then complete.
    let mut q = s.client("legacy", "{ users(orderBy: [\"id\"]) { id name } }", &[]);
    let p = next_payload(&mut q);
    assert_eq!(
        p["data"]["users"],
        json!([{"id": "1", "name": "Ada"}, {"id": "2", "name": "Grace"}]),
        "{p}"
    );
    q.expect_kind("complete", EVENT_TIMEOUT);

    // A subscriber sees what a mutation over the socket writes: it comes back through the WAL.
    let mut sub = s.client(
        "legacy",
        r#"subscription { messages_mutated(event: "create") { event data { text } } }"#,
        &[],
    );
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    let mut m = s.client(
        "legacy",
        r#"mutation SavePing { create_messages_item(data: {text: "ping"}) { id text } }"#,
        &["--op-name", "SavePing"],
    );
    let p = next_payload(&mut m);
    assert_eq!(p["data"]["create_messages_item"]["text"], "ping", "{p}");
    m.expect_kind("complete", EVENT_TIMEOUT);
    let e = next_payload(&mut sub);
    assert_eq!(
        e["data"]["messages_mutated"],
        json!({"event": "create", "data": {"text": "ping"}}),
        "{e}"
    );
    let count = s.sql("SELECT count(*) FROM messages WHERE text = 'ping'");
    assert_eq!(count, "1");
}

#[test]
fn queries_over_http_and_graphql_transport_ws() {
    let s = setup(&[]);
    let (status, body) = s.walcast.graphql(
        r#"query Q($w: articlesWhereInput) { articles(where: $w) { title } one: articles_by_id(id: "2") { title } _cursor }"#,
        json!({"w": {"status": "published"}}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["articles"],
        json!([{"title": "Streaming the WAL"}]),
        "{body}"
    );
    assert_eq!(
        body["data"]["one"],
        json!({"title": "Subscriptions without triggers"}),
        "{body}"
    );
    assert!(
        body["data"]["_cursor"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{body}"
    );

    let (status, body) = s.walcast.graphql(
        "{ articles(where: {nope: 1}) { title } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("nope"),
        "the error names the field: {body}"
    );

    let mut q = s.client(
        "transport",
        "{ users(where: {name_starts_with: \"G\"}) { name } }",
        &[],
    );
    let p = next_payload(&mut q);
    assert_eq!(p["data"]["users"], json!([{"name": "Grace"}]), "{p}");
}

const PRISMA_ALL: &str = "subscription {
  post(where: { mutation_in: [CREATED, UPDATED, DELETED] }) {
    mutation
    node { id description }
    updatedFields
    previousValues { description imageUrl }
  }
}";

fn prisma_flow(protocol: &str) {
    let s = setup(&[]);
    let mut all = s.client(protocol, PRISMA_ALL, &[]);
    let mut desc = s.client(
        protocol,
        r#"subscription { post(where: { mutation_in: [UPDATED], updatedFields_contains: "description" }) {
            mutation node { description } updatedFields previousValues { description } } }"#,
        &[],
    );
    let mut created = s.client(
        protocol,
        "subscription newPosts { post(filter: { mutation_in: [CREATED] }) { mutation node { description imageUrl } } }",
        &[],
    );
    // The OR combination: created posts, or updates of the title.
    let mut or = s.client(
        protocol,
        r#"subscription { post(where: { OR: [{ mutation_in: [CREATED] }, { AND: [{ mutation_in: [UPDATED] }, { updatedFields_contains: "title" }] }] }) {
            mutation node { title } } }"#,
        &[],
    );
    s.walcast.wait_subscriptions_at_least(4, CONNECT_TIMEOUT);

    s.sql("INSERT INTO post (id, title, description, \"imageUrl\") VALUES ('p1', 'T', 'first', 'a.png')");
    s.sql("UPDATE post SET \"imageUrl\" = 'b.png' WHERE id = 'p1'");
    s.sql("UPDATE post SET description = 'second', title = 'T2' WHERE id = 'p1'");
    s.sql("DELETE FROM post WHERE id = 'p1'");

    let c = next_payload(&mut all);
    assert_eq!(
        c["data"]["post"],
        json!({"mutation": "CREATED", "node": {"id": "p1", "description": "first"}, "updatedFields": null, "previousValues": null}),
        "{c}"
    );
    let u1 = next_payload(&mut all);
    assert_eq!(u1["data"]["post"]["mutation"], "UPDATED", "{u1}");
    assert_eq!(
        u1["data"]["post"]["updatedFields"],
        json!(["imageUrl"]),
        "{u1}"
    );
    assert_eq!(
        u1["data"]["post"]["previousValues"],
        json!({"description": "first", "imageUrl": "a.png"}),
        "{u1}"
    );
    let u2 = next_payload(&mut all);
    let mut fields: Vec<String> =
        serde_json::from_value(u2["data"]["post"]["updatedFields"].clone()).expect("a list");
    fields.sort();
    assert_eq!(fields, vec!["description", "title"], "{u2}");
    let d = next_payload(&mut all);
    assert_eq!(
        d["data"]["post"],
        json!({"mutation": "DELETED", "node": null, "updatedFields": null, "previousValues": {"description": "second", "imageUrl": "b.png"}}),
        "{d}"
    );

    let mut only = next_payload(&mut desc);
    let post = &mut only["data"]["post"];
    let mut fields: Vec<String> =
        serde_json::from_value(post["updatedFields"].take()).expect("a list");
    fields.sort();
    assert_eq!(fields, vec!["description", "title"], "{only}");
    assert_eq!(
        only["data"]["post"],
        json!({"mutation": "UPDATED", "node": {"description": "second"}, "updatedFields": null, "previousValues": {"description": "first"}}),
        "{only}"
    );
    desc.expect_no_message(Duration::from_secs(2));

    let n = next_payload(&mut created);
    assert_eq!(
        n["data"]["post"],
        json!({"mutation": "CREATED", "node": {"description": "first", "imageUrl": "a.png"}}),
        "{n}"
    );
    created.expect_no_message(Duration::from_millis(300));

    assert_eq!(
        next_payload(&mut or)["data"]["post"],
        json!({"mutation": "CREATED", "node": {"title": "T"}})
    );
    assert_eq!(
        next_payload(&mut or)["data"]["post"],
        json!({"mutation": "UPDATED", "node": {"title": "T2"}})
    );
    or.expect_no_message(Duration::from_millis(300));
}

#[test]
fn prisma_seed_over_graphql_transport_ws() {
    prisma_flow("transport");
}

#[test]
fn prisma_seed_over_graphql_subscriptions() {
    prisma_flow("graphcool");
}

#[test]
fn prisma_updated_fields_with_created_is_an_error() {
    let s = setup(&[]);
    let mut c = s.client(
        "graphcool",
        r#"subscription { post(where: { mutation_in: [CREATED], updatedFields_contains: "description" }) { mutation } }"#,
        &[],
    );
    let fail = c.expect_kind("subscription_fail", EVENT_TIMEOUT);
    assert!(fail.to_string().contains("updatedFields"), "{fail}");
    // The socket stays usable: another id on it works.
    let mut ok = s.client("transport", "subscription { post { mutation } }", &[]);
    s.walcast.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    s.sql("INSERT INTO post (id, title) VALUES ('p2', 'x')");
    assert_eq!(next_payload(&mut ok)["data"]["post"]["mutation"], "CREATED");
}
