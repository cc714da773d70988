//! End to end: the real `@directus/sdk` (`realtime()`) against walcast's Directus realtime
//! endpoint (`/websocket`), over the demo schema (users, articles, comments), with writes made
//! by psql. The scenarios are in tests/js/directus.mjs.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

const ADMIN: &str = "e2e-directus-admin";
const ADMIN_TOO: &str = "e2e-directus-admin-too";
const READER: &str = "e2e-directus-reader";
const SECRET: &str = "e2e-directus-jwt-secret-of-32-bytes-or-more";

/// `reader` sees published articles' id, title and status, and may not write.
const PERMISSIONS: &str = r#"
[reader.articles]
select = true
columns = ["id", "title", "status"]
filter = { status = "published" }
"#;

fn setup(db: &str, extra: &[(&str, &str)]) -> Server {
    let pg = pg();
    pg.create_database(db)
        .unwrap_or_else(|e| panic!("creating database {db}: {e}"));
    sql(&pg, db, &demo_sql());
    let dir = TempDir::new(db);
    let tokens = tokens_file(
        &dir,
        &[(ADMIN, "admin"), (ADMIN_TOO, "admin"), (READER, "reader")],
    );
    let permissions = dir.write("permissions.toml", PERMISSIONS);
    let tokens = tokens.to_str().expect("UTF-8 path").to_owned();
    let permissions = permissions.to_str().expect("UTF-8 path").to_owned();
    let mut env = vec![
        ("WALCAST_TOKENS_FILE", tokens.as_str()),
        ("WALCAST_PERMISSIONS_FILE", permissions.as_str()),
        ("WALCAST_JWT_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    let walcast = Walcast::start(&pg.url(db), &env);
    Server { walcast, pg, dir }
}

fn directus(s: &Server, scenario: &str, token: &str, args: &[&str]) -> JsClient {
    let url = s.walcast.http_url();
    let mut all = vec![scenario, url.as_str(), token];
    all.extend_from_slice(args);
    JsClient::spawn_script("directus.mjs", &all)
}

/// The next `message` line of subscription `tag` (other lines are kept in `rest`).
fn next_of(c: &mut JsClient, tag: &str, rest: &mut Vec<Value>) -> Value {
    if let Some(at) = rest
        .iter()
        .position(|l| l["kind"] == "message" && l["tag"] == tag)
    {
        return rest.remove(at)["message"].clone();
    }
    loop {
        let line = c.next_line(EVENT_TIMEOUT);
        if line["kind"] == "error" || line["kind"] == "subscribe_error" {
            panic!("client reported {line}\n{}", c.stderr());
        }
        if line["kind"] == "message" && line["tag"] == tag {
            return line["message"].clone();
        }
        rest.push(line);
    }
}

fn subscription(event: &str, data: Value, uid: &str) -> Value {
    json!({"type": "subscription", "event": event, "data": data, "uid": uid})
}

/// An HS256 token for `role` whose `exp` is `exp_from_now` seconds away (negative: already
/// past, yet within walcast's 30 s of clock leeway).
fn jwt(role: &str, exp_from_now: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"role": role, "exp": now + exp_from_now}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("signing")
}

#[test]
fn the_seed_example_as_written_prints_every_change() {
    let s = setup("directus_seed", &[]);
    let mut c = directus(&s, "seed", ADMIN, &[]);
    c.expect_kind("connected", CONNECT_TIMEOUT);
    c.expect_kind("subscribed", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    sql(
        &s.pg,
        "directus_seed",
        "INSERT INTO articles (title) VALUES ('From psql'); UPDATE articles SET title = 'Renamed' WHERE id = 1; DELETE FROM comments; DELETE FROM articles WHERE id = 2",
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(c.expect_kind("message", EVENT_TIMEOUT)["message"].clone());
    }
    assert_eq!(
        got,
        vec![
            subscription(
                "create",
                json!({"articles_mutated": {"key": "3", "event": "create", "data": {"id": "3", "title": "From psql"}}}),
                "1"
            ),
            subscription(
                "update",
                json!({"articles_mutated": {"key": "1", "event": "update", "data": {"id": "1", "title": "Renamed"}}}),
                "1"
            ),
            subscription(
                "delete",
                json!({"articles_mutated": {"key": "2", "event": "delete", "data": null}}),
                "1"
            ),
        ],
        "{}",
        show(&got)
    );
}

#[test]
fn collection_subscriptions_get_init_then_their_changes() {
    let s = setup("directus_collection", &[]);
    let published = json!({
        "query": {"fields": ["id", "title", "author.name"], "filter": {"status": {"_eq": "published"}}}
    });
    let creates = json!({"event": "create", "query": {"fields": ["title"], "sort": ["-id"]}});
    // A relational rule: decided by the database, once per transaction.
    let by_grace =
        json!({"query": {"fields": ["id"], "filter": {"author": {"name": {"_eq": "Grace"}}}}});
    let mut c = directus(
        &s,
        "collection",
        ADMIN,
        &[
            &published.to_string(),
            &creates.to_string(),
            &by_grace.to_string(),
        ],
    );
    let mut rest = Vec::new();
    assert_eq!(
        next_of(&mut c, "s0", &mut rest),
        subscription(
            "init",
            json!([{"id": 1, "title": "Streaming the WAL", "author": {"name": "Ada"}}]),
            "s0"
        )
    );
    assert_eq!(
        next_of(&mut c, "s1", &mut rest),
        subscription(
            "init",
            json!([{"title": "Subscriptions without triggers"}, {"title": "Streaming the WAL"}]),
            "s1"
        )
    );
    assert_eq!(
        next_of(&mut c, "s2", &mut rest),
        subscription("init", json!([{"id": 2}]), "s2")
    );
    let db = "directus_collection";
    sql(
        &s.pg,
        db,
        "INSERT INTO articles (title, status, author_id) VALUES ('Fresh', 'published', 2)",
    );
    sql(
        &s.pg,
        db,
        "INSERT INTO articles (title) VALUES ('Hidden draft')",
    );
    sql(
        &s.pg,
        db,
        "UPDATE articles SET title = 'Fresher' WHERE id = 3",
    );
    sql(&s.pg, db, "DELETE FROM articles WHERE id = 3");
    let s0: Vec<Value> = (0..3).map(|_| next_of(&mut c, "s0", &mut rest)).collect();
    assert_eq!(
        s0,
        vec![
            subscription(
                "create",
                json!([{"id": 3, "title": "Fresh", "author": {"name": "Grace"}}]),
                "s0"
            ),
            subscription(
                "update",
                json!([{"id": 3, "title": "Fresher", "author": {"name": "Grace"}}]),
                "s0"
            ),
            subscription("delete", json!([3]), "s0"),
        ],
        "{}",
        show(&s0)
    );
    let s1: Vec<Value> = (0..2).map(|_| next_of(&mut c, "s1", &mut rest)).collect();
    assert_eq!(
        s1,
        vec![
            subscription("create", json!([{"title": "Fresh"}]), "s1"),
            subscription("create", json!([{"title": "Hidden draft"}]), "s1"),
        ],
        "{}",
        show(&s1)
    );
    let s2: Vec<Value> = (0..3).map(|_| next_of(&mut c, "s2", &mut rest)).collect();
    assert_eq!(
        s2,
        vec![
            subscription("create", json!([{"id": 3}]), "s2"),
            subscription("update", json!([{"id": 3}]), "s2"),
            subscription("delete", json!([3]), "s2"),
        ],
        "{}",
        show(&s2)
    );
}

#[test]
fn unsubscribe_stops_one_subscription_and_is_confirmed() {
    let s = setup("directus_unsubscribe", &[]);
    let mut c = directus(&s, "unsubscribe", ADMIN, &[]);
    let mut rest = Vec::new();
    assert_eq!(next_of(&mut c, "gone", &mut rest)["event"], "init");
    let (confirmed, skipped) = c.wait_kind("unsubscribed", EVENT_TIMEOUT);
    rest.extend(skipped);
    assert_eq!(
        confirmed["message"],
        json!({"type": "subscription", "event": "unsubscribe", "uid": "gone"})
    );
    assert_eq!(next_of(&mut c, "stays", &mut rest)["event"], "init");
    s.walcast.wait_subscriptions(1, EVENT_TIMEOUT);
    sql(
        &s.pg,
        "directus_unsubscribe",
        "INSERT INTO articles (title) VALUES ('After')",
    );
    assert_eq!(
        next_of(&mut c, "stays", &mut rest),
        subscription("create", json!([{"id": 3, "title": "After"}]), "stays")
    );
    assert!(
        rest.iter().all(|l| l["kind"] != "after_unsubscribe"),
        "{}",
        show(&rest)
    );
}

#[test]
fn a_refused_token_fails_connect_in_handshake_and_strict_mode() {
    let s = setup("directus_refused", &[]);
    let mut c = directus(&s, "refused", "not-a-token", &[]);
    let line = c.expect_kind("refused", CONNECT_TIMEOUT);
    assert_eq!(
        line["error"], "Authentication failed while opening websocket connection",
        "{line}"
    );
    drop(s);

    let s = setup("directus_strict", &[("WEBSOCKETS_REST_AUTH", "strict")]);
    let mut bad = directus(&s, "strict:refused", "not-a-token", &[]);
    let line = bad.expect_kind("refused", CONNECT_TIMEOUT);
    assert!(
        line["error"].as_str().is_some_and(|e| e.contains("401")),
        "{line}"
    );
    // The right token in the URL: connected without an auth message, and served.
    let all = json!({"query": {"fields": ["id"], "sort": ["id"]}});
    let mut good = directus(&s, "strict:collection", ADMIN, &[&all.to_string()]);
    good.expect_kind("connected", CONNECT_TIMEOUT);
    let mut rest = Vec::new();
    assert_eq!(
        next_of(&mut good, "s0", &mut rest),
        subscription("init", json!([{"id": 1}, {"id": 2}]), "s0")
    );
}

#[test]
fn an_expiring_token_is_refreshed_on_the_open_socket() {
    let s = setup("directus_refresh", &[]);
    // Expires (with walcast's 30 s of clock leeway) about 15 s from now: time enough to connect
    // and subscribe on a busy machine.
    let short = jwt("admin", -15);
    let fresh = jwt("admin", 3600);
    let mut c = directus(&s, "refresh", &short, &[&fresh]);
    let mut rest = Vec::new();
    assert_eq!(next_of(&mut c, "r", &mut rest)["event"], "init");
    let (expired, skipped) = c.wait_kind("auth", Duration::from_secs(60));
    rest.extend(skipped);
    assert_eq!(
        expired["message"]["error"]["code"], "TOKEN_EXPIRED",
        "{expired}"
    );
    let (again, skipped) = c.wait_kind("auth", EVENT_TIMEOUT);
    rest.extend(skipped);
    assert_eq!(
        again["message"],
        json!({"type": "auth", "status": "ok"}),
        "{again}"
    );
    sql(
        &s.pg,
        "directus_refresh",
        "INSERT INTO articles (title) VALUES ('After refresh')",
    );
    assert_eq!(
        next_of(&mut c, "r", &mut rest),
        subscription("create", json!([{"id": 3, "title": "After refresh"}]), "r")
    );
}

#[test]
fn an_auth_message_on_an_open_socket_replaces_the_token() {
    let s = setup("directus_reauth", &[]);
    let mut c = directus(&s, "reauth", ADMIN, &[ADMIN_TOO]);
    let mut rest = Vec::new();
    assert_eq!(next_of(&mut c, "r", &mut rest)["event"], "init");
    let (ok, skipped) = c.wait_kind("auth", EVENT_TIMEOUT);
    rest.extend(skipped);
    // The SDK's sendMessage() numbers the message: the reply carries its uid.
    assert_eq!(
        ok["message"],
        json!({"type": "auth", "status": "ok", "uid": "1"})
    );
    sql(
        &s.pg,
        "directus_reauth",
        "INSERT INTO articles (title) VALUES ('Still here')",
    );
    assert_eq!(
        next_of(&mut c, "r", &mut rest),
        subscription("create", json!([{"id": 3, "title": "Still here"}]), "r")
    );
}

#[test]
fn the_heartbeat_keeps_answering_clients_and_drops_silent_ones() {
    let s = setup(
        "directus_heartbeat",
        &[("WEBSOCKETS_HEARTBEAT_PERIOD", "2")],
    );
    let mut c = directus(&s, "heartbeat", ADMIN, &[]);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 3 {
        let line = c.next_line(Duration::from_secs(30));
        let kind = line["kind"].as_str().unwrap_or_default().to_owned();
        assert_ne!(kind, "error", "{line}");
        seen.insert(kind, line);
    }
    assert_eq!(seen["pong"]["message"]["type"], "pong", "{:?}", seen);
    assert_eq!(seen["pinged"]["open"], true, "{:?}", seen);
    let closed = &seen["silent_closed"];
    assert!(closed["pings"].as_u64().is_some_and(|n| n >= 1), "{closed}");
    assert_eq!(closed["answering_open"], true, "{closed}");
}

#[test]
fn the_roles_row_filter_and_columns_apply_to_init_and_events() {
    let s = setup("directus_permissions", &[]);
    let everything = json!({"query": {"fields": ["*"]}});
    let mut c = directus(&s, "collection", READER, &[&everything.to_string()]);
    let mut rest = Vec::new();
    assert_eq!(
        next_of(&mut c, "s0", &mut rest),
        subscription(
            "init",
            json!([{"id": 1, "title": "Streaming the WAL", "status": "published"}]),
            "s0"
        )
    );
    let db = "directus_permissions";
    sql(
        &s.pg,
        db,
        "INSERT INTO articles (title, author_id) VALUES ('Draft, hidden', 1)",
    );
    sql(
        &s.pg,
        db,
        "UPDATE articles SET status = 'draft' WHERE id = 1",
    );
    sql(
        &s.pg,
        db,
        "INSERT INTO articles (title, status, author_id) VALUES ('Shown', 'published', 2)",
    );
    // The draft never shows; the article that left the role's rows goes as a delete (its key
    // only); the published insert arrives with the role's columns.
    assert_eq!(
        next_of(&mut c, "s0", &mut rest),
        subscription("delete", json!([1]), "s0")
    );
    assert_eq!(
        next_of(&mut c, "s0", &mut rest),
        subscription(
            "create",
            json!([{"id": 4, "title": "Shown", "status": "published"}]),
            "s0"
        )
    );

    // A hidden column is unknown, in fields and in filters alike.
    for options in [
        json!({"query": {"fields": ["id", "author_id"]}}),
        json!({"query": {"fields": ["id"], "filter": {"author_id": {"_eq": 1}}}}),
    ] {
        let mut refused = directus(&s, "collection", READER, &[&options.to_string()]);
        let (line, _) = refused.wait_kind("subscribe_error", CONNECT_TIMEOUT);
        assert_eq!(line["error"]["type"], "subscribe", "{line}");
        assert_eq!(line["error"]["uid"], "s0", "{line}");
        assert_eq!(line["error"]["error"]["code"], "INVALID_QUERY", "{line}");
        assert!(
            line["error"]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("author_id")),
            "{line}"
        );
    }
    // A table the role may not read is answered like one that does not exist.
    let mut users = JsClient::spawn_script(
        "directus.mjs",
        &[
            "items",
            &s.walcast.http_url(),
            READER,
            r#"{"collection":"users","action":"read"}"#,
        ],
    );
    let answer = users.expect_kind("answer", EVENT_TIMEOUT)["message"].clone();
    assert_eq!(answer["error"]["code"], "FORBIDDEN", "{answer}");
    // Writes are off on this server, whatever the role.
    let create = json!({"collection": "articles", "action": "create", "data": {"title": "No"}});
    let mut admin = directus(&s, "items", ADMIN, &[&create.to_string()]);
    let answer = admin.expect_kind("answer", EVENT_TIMEOUT)["message"].clone();
    assert_eq!(answer["error"]["code"], "FORBIDDEN", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("WALCAST_MUTATIONS")),
        "{answer}"
    );
    // A rule walcast does not support is refused by name.
    let icontains = json!({"query": {"filter": {"title": {"_icontains": "wal"}}}});
    let mut refused = directus(&s, "collection", ADMIN, &[&icontains.to_string()]);
    let (line, _) = refused.wait_kind("subscribe_error", CONNECT_TIMEOUT);
    assert_eq!(
        line["error"]["error"]["message"],
        "filter: operator _icontains is not supported by walcast",
        "{line}"
    );
}

#[test]
fn items_are_read_and_written_as_directus_answers() {
    let s = setup("directus_items", &[("WALCAST_MUTATIONS", "true")]);
    let msgs = [
        json!({"collection": "articles", "action": "read", "query": {"fields": ["id", "title"], "filter": {"status": {"_eq": "published"}}}}),
        // To-many rules: some comment, no comment.
        json!({"collection": "articles", "action": "read", "query": {"fields": ["id", "comments.body"], "filter": {"comments": {"_some": {"body": {"_starts_with": "Nice"}}}}}}),
        json!({"collection": "articles", "action": "read", "query": {"fields": ["id", "comments"], "filter": {"comments": {"_none": {"body": {"_nnull": true}}}}}}),
        json!({"collection": "articles", "action": "create", "data": {"title": "Made by items", "author_id": 2}, "query": {"fields": ["id", "title", "author.name"]}}),
        json!({"collection": "articles", "action": "update", "id": 3, "data": {"status": "published"}, "query": {"fields": ["id", "status"]}}),
        json!({"collection": "articles", "action": "delete", "id": 3}),
        json!({"collection": "articles", "action": "read", "id": 3}),
    ]
    .map(|m| m.to_string());
    let args: Vec<&str> = msgs.iter().map(String::as_str).collect();
    let mut c = directus(&s, "items", ADMIN, &args);
    let answers: Vec<Value> = (0..msgs.len())
        .map(|_| c.expect_kind("answer", EVENT_TIMEOUT)["message"].clone())
        .collect();
    assert_eq!(
        answers[..6],
        [
            json!({"type": "items", "data": [{"id": 1, "title": "Streaming the WAL"}], "uid": "i0"}),
            json!({"type": "items", "data": [{"id": 1, "comments": [{"body": "Nice."}]}], "uid": "i1"}),
            json!({"type": "items", "data": [{"id": 2, "comments": []}], "uid": "i2"}),
            json!({"type": "items", "data": {"id": 3, "title": "Made by items", "author": {"name": "Grace"}}, "uid": "i3"}),
            json!({"type": "items", "data": {"id": 3, "status": "published"}, "uid": "i4"}),
            json!({"type": "items", "data": 3, "uid": "i5"}),
        ],
        "{}",
        show(&answers)
    );
    assert_eq!(answers[6]["status"], "error", "{}", answers[6]);
    assert_eq!(answers[6]["error"]["code"], "FORBIDDEN", "{}", answers[6]);
    assert_eq!(
        sql(&s.pg, "directus_items", "SELECT count(*) FROM articles"),
        "2"
    );

    // The reader's role has no insert grant.
    let create =
        json!({"collection": "articles", "action": "create", "data": {"title": "No"}}).to_string();
    let mut reader = directus(&s, "items", READER, &[&create]);
    let answer = reader.expect_kind("answer", EVENT_TIMEOUT)["message"].clone();
    assert_eq!(answer["error"]["code"], "FORBIDDEN", "{answer}");
    assert_eq!(
        sql(&s.pg, "directus_items", "SELECT count(*) FROM articles"),
        "2"
    );
}

/// Frames no SDK sends: bad messages get an error under their type and leave the socket
/// working; a handshake without a token in time is `AUTH_TIMEOUT` and a close.
#[test]
fn bad_messages_are_answered_and_silence_times_out() {
    let s = setup("directus_raw", &[("WEBSOCKETS_REST_AUTH_TIMEOUT", "1500")]);
    let url = format!("ws://127.0.0.1:{}/websocket", s.walcast.port());
    let mut ws = RawWs::try_connect(&url, &[], &[]).expect("upgrade");
    ws.send_text("not json");
    let e = ws.recv_json(EVENT_TIMEOUT);
    assert_eq!(
        (e["type"].as_str(), e["status"].as_str()),
        (Some("error"), Some("error")),
        "{e}"
    );
    assert_eq!(e["error"]["code"], "INVALID_PAYLOAD", "{e}");
    ws.send_json(&json!({"type": "subscribe", "uid": "x", "collection": "articles"}));
    let e = ws.recv_json(EVENT_TIMEOUT);
    assert_eq!(e["type"], "subscribe", "{e}");
    assert_eq!(e["uid"], "x", "{e}");
    assert_eq!(e["error"]["code"], "FORBIDDEN", "{e}");
    ws.send_json(&json!({"type": "auth", "access_token": ADMIN, "uid": "a"}));
    assert_eq!(
        ws.recv_json(EVENT_TIMEOUT),
        json!({"type": "auth", "status": "ok", "uid": "a"})
    );
    // A GraphQL document that does not validate is the subscription's error.
    ws.send_json(&json!({"type": "subscribe", "uid": "g", "collection": "subscription { nope_mutated { key } }"}));
    let e = ws.recv_json(EVENT_TIMEOUT);
    assert_eq!(
        (e["type"].as_str(), e["uid"].as_str()),
        (Some("subscribe"), Some("g")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope_mutated")),
        "{e}"
    );
    ws.send_json(&json!({"type": "subscribe", "uid": "m", "collection": "missing"}));
    let e = ws.recv_json(EVENT_TIMEOUT);
    assert_eq!(e["error"]["code"], "FORBIDDEN", "{e}");
    ws.send_json(&json!({"type": "ping", "uid": "p"}));
    assert_eq!(
        ws.recv_json(EVENT_TIMEOUT),
        json!({"type": "pong", "uid": "p"})
    );

    let mut silent = RawWs::try_connect(&url, &[], &[]).expect("upgrade");
    let (code, _, seen) = silent.expect_close(EVENT_TIMEOUT);
    assert_eq!(code, 4408, "{}", show(&seen));
    assert_eq!(seen.len(), 1, "{}", show(&seen));
    assert_eq!(seen[0]["error"]["code"], "AUTH_TIMEOUT", "{}", show(&seen));
}

/// Public mode serves the role `public` without an auth message; `WEBSOCKETS_REST_ENABLED=false`
/// takes the endpoint away.
#[test]
fn public_mode_and_the_switch() {
    let s = setup(
        "directus_public",
        &[
            ("WEBSOCKETS_REST_AUTH", "public"),
            ("WEBSOCKETS_REST_PATH", "/live"),
        ],
    );
    let url = format!("ws://127.0.0.1:{}/live", s.walcast.port());
    let mut ws = RawWs::try_connect(&url, &[], &[]).expect("upgrade");
    // The role `public` has no grant in the permissions file: no table exists for it.
    ws.send_json(&json!({"type": "subscribe", "uid": "1", "collection": "articles"}));
    let e = ws.recv_json(EVENT_TIMEOUT);
    assert_eq!(e["error"]["code"], "FORBIDDEN", "{e}");
    ws.send_json(&json!({"type": "auth", "access_token": READER}));
    assert_eq!(
        ws.recv_json(EVENT_TIMEOUT),
        json!({"type": "auth", "status": "ok"})
    );
    ws.send_json(&json!({"type": "subscribe", "uid": "1", "collection": "articles", "query": {"fields": ["id"]}}));
    assert_eq!(
        ws.recv_json(EVENT_TIMEOUT),
        subscription("init", json!([{"id": 1}]), "1")
    );
    drop(s);

    let s = setup("directus_off", &[("WEBSOCKETS_REST_ENABLED", "false")]);
    let url = format!("ws://127.0.0.1:{}/websocket", s.walcast.port());
    let err = RawWs::try_connect(&url, &[], &[]).err().expect("refused");
    assert_eq!(upgrade_status(&err), Some(404), "{err}");
}

/// A static token taken out of the tokens file ends its Directus sockets on SIGHUP, as on the
/// GraphQL path; other sockets stay.
#[test]
fn a_revoked_static_token_ends_its_socket_on_reload() {
    let s = setup("directus_revoked", &[]);
    let url = format!("ws://127.0.0.1:{}/websocket", s.walcast.port());
    let mut revoked = RawWs::try_connect(&url, &[], &[]).expect("upgrade");
    let mut kept = RawWs::try_connect(&url, &[], &[]).expect("upgrade");
    for (ws, token) in [(&mut revoked, ADMIN_TOO), (&mut kept, ADMIN)] {
        ws.send_json(&json!({"type": "auth", "access_token": token}));
        assert_eq!(
            ws.recv_json(EVENT_TIMEOUT),
            json!({"type": "auth", "status": "ok"})
        );
    }
    tokens_file(&s.dir, &[(ADMIN, "admin"), (READER, "reader")]);
    let pid = s.walcast.pid().expect("walcast runs");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let (code, reason, seen) = revoked.expect_close(EVENT_TIMEOUT);
    assert_eq!(
        (code, reason.as_str()),
        (4403, "access token revoked"),
        "{}",
        show(&seen)
    );
    assert_eq!(
        seen,
        vec![
            json!({"type": "auth", "status": "error", "error": {"code": "AUTH_FAILED", "message": "access token revoked"}})
        ]
    );
    kept.send_json(&json!({"type": "ping"}));
    assert_eq!(kept.recv_json(EVENT_TIMEOUT), json!({"type": "pong"}));
}
