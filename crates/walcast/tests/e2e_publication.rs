//! A publication of the user's own with a column list and a row filter (Postgres 15+), end to
//! end: only the published columns are in the schema, only rows inside the filter arrive, and an
//! UPDATE that moves a row into the filter arrives as CREATED (out of it: DELETED), since
//! pgoutput itself turns such updates into an insert or a delete.
//!
//! Needs Postgres 15 or newer (the system Postgres of CI is 15); on an older server the test
//! fails with instructions. `scripts/pg-versions.sh` runs only the suites a major supports.

mod support;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const TOKEN: &str = "publication-admin-token";
const PUBLICATION: &str = "app_pub";

const SCHEMA: &str = "
CREATE TABLE items (id serial PRIMARY KEY, name text, status text NOT NULL, secret text);
-- Updates and deletes of a table with a row filter need the filter's columns in the replica
-- identity, and a column list must cover the replica identity: FULL would need every column.
CREATE UNIQUE INDEX items_identity ON items (id, status);
ALTER TABLE items REPLICA IDENTITY USING INDEX items_identity;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
CREATE PUBLICATION app_pub FOR TABLE items (id, name, status) WHERE (status = 'live'), notes;
";

/// Field order matters for drop: the server goes before the database it reads.
type Setup = Server;

fn setup() -> Setup {
    let pg = pg();
    assert!(
        pg.major_version() >= 15,
        "publication column lists and row filters need Postgres 15 or newer, but the Postgres \
         found ({}) is {}; point WALCAST_PG_BINDIR at a newer bin dir, e.g. \
         WALCAST_PG_BINDIR=/usr/lib/postgresql/15/bin (scripts/pg-versions.sh bindir 16)",
        pg.bin_dir().display(),
        pg.major_version()
    );
    serve_on(
        pg,
        DB,
        SCHEMA,
        TOKEN,
        &[("WALCAST_PUBLICATION", PUBLICATION)],
    )
}

impl Setup {
    fn sql(&self, statement: &str) -> String {
        sql(&self.pg, DB, statement)
    }

    fn client(&self, query: &str) -> JsClient {
        let url = self.walcast.ws_url();
        let mut c = JsClient::spawn(&[
            "--protocol",
            "transport",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--query",
            query,
        ]);
        c.wait_kind("connected", CONNECT_TIMEOUT);
        c
    }
}

/// The next event's data; GraphQL errors or error lines fail the test.
fn next_data(c: &mut JsClient) -> Value {
    let (line, skipped) = c.wait_kind("next", EVENT_TIMEOUT);
    assert!(
        skipped.iter().all(|l| l["kind"] != "error"),
        "error before the event: {}",
        show(&skipped)
    );
    let payload = &line["payload"];
    assert!(
        payload["errors"].is_null() || payload["errors"] == json!([]),
        "event with errors: {payload}"
    );
    payload["data"].clone()
}

const PRISMA: &str = "subscription {
  items(where: { mutation_in: [CREATED, UPDATED, DELETED] }) {
    mutation
    node { id name status }
    previousValues { id name status }
  }
}";

#[test]
fn column_lists_and_row_filters_of_the_publication_are_honoured() {
    let s = setup();

    // The schema has the published columns only.
    let (status, body) = s.walcast.graphql(
        r#"{ __type(name: "items") { fields { name } } }"#,
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    let mut fields: Vec<String> = body["data"]["__type"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields of type items: {body}"))
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect();
    fields.sort();
    assert_eq!(fields, ["id", "name", "status"], "{body}");
    let (status, body) = s
        .walcast
        .graphql("{ items { id secret } }", json!({}), Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("secret"),
        "the error names the unpublished field: {body}"
    );
    // A table published without a column list keeps every column.
    let (status, body) = s.walcast.graphql(
        r#"{ __type(name: "notes") { fields { name } } }"#,
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["__type"]["fields"],
        json!([{"name": "id"}, {"name": "body"}]),
        "{body}"
    );

    let mut items = s.client(PRISMA);
    let mut directus = s.client("subscription { items_mutated { key event data { id status } } }");
    s.walcast.wait_subscriptions(2, CONNECT_TIMEOUT);

    let inside =
        s.sql("INSERT INTO items (name, status, secret) VALUES ('a', 'live', 's1') RETURNING id");
    let outside =
        s.sql("INSERT INTO items (name, status, secret) VALUES ('b', 'draft', 's2') RETURNING id");
    let (inside, outside): (i64, i64) = (
        inside.parse().expect("id of a"),
        outside.parse().expect("id of b"),
    );
    // Outside the filter, an update stays invisible; moved into it, the row is CREATED.
    s.sql(&format!(
        "UPDATE items SET name = 'b2' WHERE id = {outside}"
    ));
    s.sql(&format!(
        "UPDATE items SET status = 'live' WHERE id = {outside}"
    ));
    // Inside, an update is an update; moved out, the row is DELETED.
    s.sql(&format!("UPDATE items SET name = 'a2' WHERE id = {inside}"));
    s.sql(&format!(
        "UPDATE items SET status = 'gone' WHERE id = {inside}"
    ));
    s.sql(&format!("UPDATE items SET name = 'a3' WHERE id = {inside}"));
    // A fence: nothing arrives between the delete and this insert.
    let fence = s.sql("INSERT INTO items (name, status) VALUES ('c', 'live') RETURNING id");
    let fence: i64 = fence.parse().expect("id of c");

    // Prisma's `id` is an ID: a string. The replica identity is (id, status), so the previous
    // values of an update or a delete hold those two and name is unknown (null).
    let (a, b, c) = (inside.to_string(), outside.to_string(), fence.to_string());
    let expected = [
        json!({"mutation": "CREATED", "node": {"id": a, "name": "a", "status": "live"}, "previousValues": null}),
        json!({"mutation": "CREATED", "node": {"id": b, "name": "b2", "status": "live"}, "previousValues": null}),
        json!({"mutation": "UPDATED", "node": {"id": a, "name": "a2", "status": "live"}, "previousValues": {"id": a, "name": null, "status": "live"}}),
        json!({"mutation": "DELETED", "node": null, "previousValues": {"id": a, "name": null, "status": "live"}}),
        json!({"mutation": "CREATED", "node": {"id": c, "name": "c", "status": "live"}, "previousValues": null}),
    ];
    let got: Vec<Value> = expected
        .iter()
        .map(|_| next_data(&mut items)["items"].clone())
        .collect();
    assert_eq!(got, expected, "{}", show(&got));
    let directus_expected = [
        (&a, "create", json!({"id": a, "status": "live"})),
        (&b, "create", json!({"id": b, "status": "live"})),
        (&a, "update", json!({"id": a, "status": "live"})),
        (&a, "delete", Value::Null),
        (&c, "create", json!({"id": c, "status": "live"})),
    ];
    for (key, event, data) in directus_expected {
        let got = next_data(&mut directus);
        assert_eq!(
            got["items_mutated"],
            json!({"key": key, "event": event, "data": data}),
            "{got}"
        );
    }
    items.expect_no_message(std::time::Duration::from_secs(1));

    // `walcast check` reports the column list and the row filter.
    let out = std::process::Command::new(walcast_bin())
        .arg("check")
        .env("DATABASE_URL", s.pg.url(DB))
        .env("WALCAST_PUBLICATION", PUBLICATION)
        .output()
        .expect("walcast check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "table public.items: publication app_pub publishes columns (id, name, status); not exposed: secret"
        ),
        "{text}"
    );
    assert!(
        text.contains("table public.items: publication app_pub publishes only rows WHERE (status = 'live'::text)"),
        "{text}"
    );
    assert!(!text.contains("table public.notes: publication"), "{text}");

    // A wider column list is picked up by itself: the next Relation message carries a column
    // walcast does not know, and the schema is reloaded with it.
    s.sql("ALTER PUBLICATION app_pub SET TABLE items (id, name, status, secret) WHERE (status = 'live'), notes");
    s.sql("INSERT INTO items (name, status, secret) VALUES ('d', 'live', 'visible')");
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let (_, body) = s.walcast.graphql(
            "{ items(where: {name: \"d\"}) { name secret } }",
            json!({}),
            Some(TOKEN),
        );
        if body["data"]["items"] == json!([{"name": "d", "secret": "visible"}]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "secret not exposed after the column list grew: {body}\n{}",
            s.walcast.log_tail(30)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
