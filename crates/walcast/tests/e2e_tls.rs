//! TLS to Postgres: with `sslmode=require` both the replication connection and the ordinary
//! pool are encrypted, and events and queries flow as without it.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "tls-token";

/// A self-signed certificate for the server, owned by the user Postgres runs as.
fn enable_ssl(pg: &mut PgCluster) {
    let data = pg.data_dir().to_path_buf();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(data.join("server.key"))
        .arg("-out")
        .arg(data.join("server.crt"))
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The data directory belongs to the server's user: so must the key, readable by it only.
    let owner = Command::new("stat")
        .args(["-c", "%U"])
        .arg(&data)
        .output()
        .expect("stat");
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    for f in ["server.key", "server.crt"] {
        let path = data.join(f);
        assert!(Command::new("chown")
            .arg(&owner)
            .arg(&path)
            .status()
            .expect("chown")
            .success());
        assert!(Command::new("chmod")
            .arg("600")
            .arg(&path)
            .status()
            .expect("chmod")
            .success());
    }
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on")
        .expect("ssl = on");
    pg.restart().expect("restart with ssl");
}

#[test]
fn events_and_queries_flow_over_tls() {
    let mut pg = pg();
    enable_ssl(&mut pg);
    pg.create_database(DB).expect("create database");
    sql(
        &pg,
        DB,
        "CREATE TABLE messages (id serial PRIMARY KEY, text text)",
    );
    let url = format!("{}?sslmode=require", pg.url(DB));
    let dir = TempDir::new("tls");
    let tokens = tokens_file(&dir, &[(TOKEN, "admin")]);
    let tokens = tokens.to_str().expect("temp path is UTF-8");
    let w = Walcast::start(
        &url,
        &[
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens),
        ],
    );
    let ws = w.ws_url();
    let mut c = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &ws,
        "--token",
        TOKEN,
        "--query",
        "subscription { messages_mutated { event data { text } } }",
    ]);
    c.wait_kind("connected", CONNECT_TIMEOUT);
    w.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    sql(&pg, DB, "INSERT INTO messages (text) VALUES ('secret')");
    let data = c.expect_data(EVENT_TIMEOUT);
    assert_eq!(
        data["messages_mutated"],
        json!({"event": "create", "data": {"text": "secret"}})
    );
    let (status, body) = w.graphql("{ messages { text } }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"], json!([{"text": "secret"}]));
    // Both of walcast's connections are encrypted.
    let plain = sql(
        &pg,
        DB,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'walcast' AND NOT s.ssl",
    );
    let encrypted = sql(
        &pg,
        DB,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'walcast' AND s.ssl",
    );
    assert_eq!(plain, "0", "unencrypted walcast connections");
    assert!(
        encrypted.parse::<i32>().unwrap_or(0) >= 2,
        "encrypted walcast connections: {encrypted}"
    );
}
