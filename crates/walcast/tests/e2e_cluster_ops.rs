//! Cluster mode as an operator meets it: NATS missing at start, `walcast check` of the NATS
//! side, cursors older than the stream's retention, and a NATS server that goes away in the
//! middle of a write burst.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::process::{Command, Output};

use cluster::*;
use support::*;
use walcast_natscluster::NatsServer;

/// A database with the `seq` table the cluster harness streams.
fn seq_db() -> PgCluster {
    let pg = pg();
    pg.create_database(DB)
        .unwrap_or_else(|e| panic!("creating database {DB}: {e}"));
    sql(
        &pg,
        DB,
        "CREATE TABLE seq (n integer PRIMARY KEY, pad text); \
         ALTER TABLE seq REPLICA IDENTITY FULL;",
    );
    pg
}

/// `walcast check` against `pg` with `env`, none of the developer's own settings.
fn check(pg: &PgCluster, env: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = Command::new(walcast_bin());
    cmd.arg("check");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("WALCAST_") || key == "DATABASE_URL" {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd
        .env("DATABASE_URL", pg.url(DB))
        .env("WALCAST_TABLES", "seq")
        .envs(env.iter().copied())
        .output()
        .expect("running walcast check");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn serve_exits_naming_the_nats_url_it_cannot_reach() {
    let pg = seq_db();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let mut w = Walcast::launch(
        &pg.url(DB),
        &[
            ("WALCAST_NATS_URL", url.as_str()),
            ("WALCAST_TABLES", "seq"),
        ],
    );
    let status = w
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|| panic!("serve kept running without NATS\n{}", w.log_tail(30)));
    assert!(!status.success(), "exit status {status}");
    let log = w.log();
    assert!(
        log.contains(&format!("connecting to NATS at {url} (WALCAST_NATS_URL)")),
        "{}",
        w.log_tail(30)
    );
}

#[test]
fn check_passes_against_nats_with_jetstream() {
    let pg = seq_db();
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("starting nats-server: {e}"));
    let url = nats.url();
    let (out, text) = check(&pg, &[("WALCAST_NATS_URL", url.as_str())]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("ok    connected to NATS (WALCAST_NATS_URL {url})")),
        "{text}"
    );
    assert!(text.contains("ok    JetStream enabled"), "{text}");
    assert!(
        text.contains("does not exist yet: walcast creates it"),
        "{text}"
    );
}

#[test]
fn check_fails_on_unreachable_nats_and_nats_without_jetstream() {
    let pg = seq_db();
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let (out, text) = check(&pg, &[("WALCAST_NATS_URL", nowhere.as_str())]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("FAIL  connecting to NATS at {nowhere}")),
        "{text}"
    );

    let core = NatsServer::start_without_jetstream()
        .unwrap_or_else(|e| panic!("starting nats-server: {e}"));
    let url = core.url();
    let (out, text) = check(&pg, &[("WALCAST_NATS_URL", url.as_str())]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ok    connected to NATS"), "{text}");
    assert!(text.contains("FAIL  JetStream"), "{text}");
    assert!(text.contains("start nats-server with JetStream"), "{text}");
}

#[test]
fn check_names_the_field_of_a_conflicting_stream() {
    let mut c = Cluster::new();
    // The first node creates the stream with a one-hour age limit.
    c.add_node(&[("WALCAST_STREAM_MAX_AGE", "1h")]);
    let url = c.nats.url();
    let (out, text) = check(
        &c.pg,
        &[
            ("WALCAST_NATS_URL", url.as_str()),
            ("WALCAST_STREAM_MAX_AGE", "1h"),
        ],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("has the configuration walcast needs"),
        "{text}"
    );
    let (out, text) = check(&c.pg, &[("WALCAST_NATS_URL", url.as_str())]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL  "), "{text}");
    assert!(text.contains("max_age"), "{text}");
    assert!(text.contains("WALCAST_STREAM_"), "{text}");
}
