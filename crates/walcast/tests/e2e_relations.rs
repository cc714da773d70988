//! Relations end to end: relation fields in events and queries (many-to-one, one-to-many,
//! many-to-many through a join table), relation conditions in filters (the Prisma seed's
//! `author: { followedBy_some: ... }` shape through a self-referencing join table), and the
//! batching promise: one query per relation per committed transaction, whatever the number of
//! events and subscribers.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DB: &str = "app";
const TOKEN: &str = "relations-token";

type Setup = Server;

fn setup() -> Setup {
    let schema = demo_sql()
        + "\nCREATE TABLE categories (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE articles_categories (id serial PRIMARY KEY,
             articles_id integer REFERENCES articles (id), categories_id integer REFERENCES categories (id));
         -- Prisma's followedBy: users following users, through a join table.
         CREATE TABLE follows (follower_id integer REFERENCES users (id), followed_id integer REFERENCES users (id),
             PRIMARY KEY (follower_id, followed_id));
         INSERT INTO categories (name) VALUES ('db'), ('realtime');
         INSERT INTO articles_categories (articles_id, categories_id) VALUES (1, 1), (1, 2);
         INSERT INTO users (name) VALUES ('Linus');
         INSERT INTO follows VALUES (3, 1);";
    serve(DB, &schema, TOKEN, &[])
}

impl Setup {
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

    fn relation_queries(&self) -> u64 {
        metric_sum(
            &self.walcast.get("/metrics").1,
            "walcast_relation_queries_total",
        )
        .unwrap_or(0)
    }
}

fn next_data(c: &mut JsClient) -> Value {
    c.expect_data(EVENT_TIMEOUT)
}

#[test]
fn relation_fields_in_queries_follow_the_naming_rules() {
    let s = setup();
    let (status, body) = s.walcast.graphql(
        "{ articles(orderBy: [\"id\"]) { title author { name } comments { body } articles_categories { categories { name } } } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["articles"][0],
        json!({
            "title": "Streaming the WAL",
            "author": {"name": "Ada"},
            "comments": [{"body": "Nice."}],
            "articles_categories": [{"categories": {"name": "db"}}, {"categories": {"name": "realtime"}}]
        }),
        "{body}"
    );
    // Two foreign keys to users from follows: back-references are named by column.
    let (status, body) = s.walcast.graphql(
        "{ users(where: {name: \"Ada\"}) { name follows_by_followed_id { follower { name } } } }",
        json!({}),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["users"],
        json!([{"name": "Ada", "follows_by_followed_id": [{"follower": {"name": "Linus"}}]}]),
        "{body}"
    );
}

#[test]
fn relations_in_events_load_once_per_transaction_for_all_subscribers() {
    let s = setup();
    let q = "subscription { comments_mutated(event: \"create\") { data { body article { title author { name } } } } }";
    let mut clients: Vec<JsClient> = (0..5).map(|_| s.client(q)).collect();
    s.walcast.wait_subscriptions_at_least(5, CONNECT_TIMEOUT);
    let before = s.relation_queries();
    sql(
        &s.pg,
        DB,
        "INSERT INTO comments (article_id, body) SELECT 1 + (g % 2), 'c' || g FROM generate_series(1, 10) g",
    );
    for c in clients.iter_mut() {
        for _ in 0..10 {
            let d = next_data(c);
            let ev = &d["comments_mutated"]["data"];
            let body = ev["body"].as_str().expect("body");
            let n: i32 = body.trim_start_matches('c').parse().expect("numbered body");
            let (title, author) = if n % 2 == 1 {
                ("Subscriptions without triggers", "Grace")
            } else {
                ("Streaming the WAL", "Ada")
            };
            assert_eq!(
                ev["article"],
                json!({"title": title, "author": {"name": author}}),
                "{d}"
            );
        }
    }
    // 10 events x 5 subscribers x 2 relation fields: one query per relation field.
    let used = s.relation_queries() - before;
    assert_eq!(used, 2, "relation queries for one transaction");
}

#[test]
fn prisma_relation_filter_through_a_join_table() {
    let s = setup();
    let mut followed = s.client(
        "subscription { articles(where: { AND: [{ mutation_in: [CREATED] }, { node: { author: { follows_by_followed_id_some: { follower_id: 3 } } } }] }) {
            mutation node { title author { name } } } }",
    );
    let mut every = s.client(
        "subscription { comments(where: { node: { article: { comments_every: { body_starts_with: \"ok\" } } } }) { node { body } } }",
    );
    s.walcast.wait_subscriptions_at_least(2, CONNECT_TIMEOUT);
    let before = s.relation_queries();
    sql(
        &s.pg,
        DB,
        "INSERT INTO articles (title, author_id) VALUES ('by ada', 1), ('by grace', 2), ('by ada again', 1)",
    );
    let a = next_data(&mut followed);
    assert_eq!(
        a["articles"]["node"],
        json!({"title": "by ada", "author": {"name": "Ada"}}),
        "{a}"
    );
    let b = next_data(&mut followed);
    assert_eq!(b["articles"]["node"]["title"], "by ada again", "{b}");
    followed.expect_no_message(Duration::from_secs(2));
    // One query answered the condition for the three events; one loaded `author`.
    assert_eq!(s.relation_queries() - before, 2);

    // _every: a comment on an article whose comments all start with "ok".
    sql(
        &s.pg,
        DB,
        "INSERT INTO articles (id, title) VALUES (100, 'fresh')",
    );
    sql(
        &s.pg,
        DB,
        "INSERT INTO comments (article_id, body) VALUES (100, 'ok 1')",
    );
    assert_eq!(next_data(&mut every)["comments"]["node"]["body"], "ok 1");
    sql(
        &s.pg,
        DB,
        "INSERT INTO comments (article_id, body) VALUES (100, 'bad')",
    );
    every.expect_no_message(Duration::from_secs(2));
}
