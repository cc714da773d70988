//! Cluster mode as an operator meets it: NATS missing at start, `walcast check` of the NATS
//! side, cursors older than the stream's retention, and a NATS server that goes away in the
//! middle of a write burst.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cluster::*;
use support::*;
use walcast_natscluster::NatsServer;

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

/// Waits for a subscriber's `error` message and returns it.
fn expect_cursor_expired(counter: &mut Counter, gateway: &str) {
    let (line, _) = counter.client.wait_kind("error", EVENT_TIMEOUT);
    assert!(
        line.to_string().contains("CURSOR_EXPIRED"),
        "{gateway}: {line}"
    );
}

#[test]
fn a_cursor_older_than_the_stream_is_expired_on_every_gateway() {
    let mut c = Cluster::new();
    // A stream of 64 KiB keeps a few hundred of the events written below.
    let small = [("WALCAST_STREAM_MAX_BYTES", "65536")];
    c.add_node(&small);
    c.wait_role(0, "reader", READY_TIMEOUT);
    let mut a = Counter::start(c.node(0), None);
    c.node(0).wait_subscriptions(1, CONNECT_TIMEOUT);
    let written = AtomicI64::new(0);
    write_range(&c.pg, 1, 10, 10, Duration::ZERO, &written);
    a.read_until(1, EVENT_TIMEOUT);
    let early = a.cursor.clone().expect("a cursor of the first event");
    write_range(&c.pg, 11, 3000, 10, Duration::ZERO, &written);
    a.read_until(3000, EVENT_TIMEOUT);
    assert_exactly(&a.numbers(), 3000, "the live subscriber");

    // A gateway started now reads the stream from its first message on.
    c.add_node(&small);
    let mut late = Counter::start(c.node(1), Some(&early));
    expect_cursor_expired(&mut late, "the gateway started after the removal");
    // The gateway that held the event when it left the stream answers the same.
    let mut again = Counter::start(c.node(0), Some(&early));
    expect_cursor_expired(&mut again, "the gateway running through the removal");
    // A cursor still in the stream resumes as before.
    let recent = a.cursor.clone().expect("a recent cursor");
    let mut resumed = Counter::start(c.node(1), Some(&recent));
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    write_range(&c.pg, 3001, 3010, 10, Duration::ZERO, &written);
    resumed.read_until(10, EVENT_TIMEOUT);
    assert_eq!(resumed.numbers(), (3001..=3010).collect::<Vec<_>>());
}

/// The slot's `confirmed_flush_lsn`.
fn slot_confirmed(pg: &PgCluster) -> String {
    sql(
        pg,
        DB,
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walcast'",
    )
    .trim()
    .to_owned()
}

/// `walcast_cluster_reader_lag_bytes` of a node (-1 while it stands by).
fn reader_lag(w: &Walcast) -> Option<i64> {
    let text = w.get("/metrics").1;
    text.lines()
        .find_map(|l| l.strip_prefix("walcast_cluster_reader_lag_bytes "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the writer committed `rows` more rows than it had.
fn wait_written(written: &AtomicI64, rows: i64) {
    let target = written.load(Ordering::SeqCst) + rows;
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while written.load(Ordering::SeqCst) < target {
        assert!(Instant::now() < deadline, "the writer stalled");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nats_restarted_mid_burst_loses_and_repeats_nothing() {
    let mut c = Cluster::new();
    c.add_node(&[]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[]);
    let mut a = Counter::start(c.node(0), None);
    let mut b = Counter::start(c.node(1), None);
    c.node(0).wait_subscriptions(1, CONNECT_TIMEOUT);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    let written = AtomicI64::new(0);
    thread::scope(|scope| {
        let pg = &c.pg;
        let writer =
            scope.spawn(|| write_range(pg, 1, 1500, 5, Duration::from_millis(5), &written));
        b.read_until(200, EVENT_TIMEOUT);
        c.nats.kill();
        wait_written(&written, 100);
        let confirmed = slot_confirmed(pg);
        let lag = reader_lag(&c.nodes[0]).unwrap_or(-1);
        wait_written(&written, 100);
        // The reader cannot publish: its lag grows with the rows written meanwhile.
        let deadline = Instant::now() + READY_TIMEOUT;
        while reader_lag(&c.nodes[0]).is_none_or(|now| now <= lag.max(0)) {
            assert!(
                Instant::now() < deadline,
                "the reader lag stayed at {lag} while NATS was away\n{}",
                c.nodes[0].log_tail(30)
            );
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            slot_confirmed(pg),
            confirmed,
            "the slot advanced while nothing could be stored"
        );
        c.nats
            .start_again()
            .unwrap_or_else(|e| panic!("restarting nats-server: {e}"));
        writer.join().expect("writer thread");
    });
    a.read_until(1500, FAILOVER_QUIET);
    b.read_until(1500, FAILOVER_QUIET);
    assert_exactly(&a.numbers(), 1500, "gateway 0 across the NATS restart");
    assert_exactly(&b.numbers(), 1500, "gateway 1 across the NATS restart");
}

#[test]
fn a_replicated_stream_loses_nothing_when_a_follower_nats_node_dies() {
    let mut c = Cluster::replicated(3);
    let env = [("WALCAST_STREAM_REPLICAS", "3")];
    c.add_node(&env);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&env);
    let mut b = Counter::start(c.node(1), None);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    let written = AtomicI64::new(0);
    thread::scope(|scope| {
        let pg = &c.pg;
        let writer =
            scope.spawn(|| write_range(pg, 1, 1500, 5, Duration::from_millis(5), &written));
        b.read_until(200, EVENT_TIMEOUT);
        let nats = c.replicated.as_mut().expect("a NATS cluster");
        let deadline = Instant::now() + READY_TIMEOUT;
        let leader = loop {
            if let Some(leader) = nats.nodes().iter().find_map(|n| stream_leader(n.port())) {
                break leader;
            }
            assert!(Instant::now() < deadline, "the stream has no leader");
            thread::sleep(Duration::from_millis(100));
        };
        // A killed stream leader must not come back (a nats-server bug): a follower dies.
        let follower = nats
            .nodes()
            .iter()
            .position(|n| n.name() != leader)
            .expect("a follower");
        eprintln!("stream leader {leader}; killing node {follower}");
        if let Some(node) = nats.node_mut(follower) {
            node.kill();
        }
        writer.join().expect("writer thread");
    });
    b.read_until(1500, FAILOVER_QUIET);
    assert_exactly(&b.numbers(), 1500, "across a follower's death");
}

#[test]
fn a_huge_transaction_crosses_the_cluster_with_bounded_memory() {
    const ROWS: i64 = 100_000;
    let mut c = Cluster::new();
    c.add_node(&[("WALCAST_ROLE", "reader")]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[
        ("WALCAST_ROLE", "gateway"),
        ("WALCAST_RETENTION_MAX_EVENTS", "10000"),
    ]);
    let mut g = Counter::start(c.node(1), None);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    let pids = [0, 1].map(|i| c.node(i).pid().expect("walcast runs"));
    let before = pids.map(|pid| proc_kib(pid, "VmHWM"));
    // Over 100 MB as events if either process held the transaction whole.
    c.pg.psql(
        DB,
        &format!(
            "INSERT INTO seq (n, pad) SELECT g, repeat('x', 500) FROM generate_series(1, {ROWS}) g"
        ),
    )
    .expect("insert");
    g.read_until(ROWS as usize, Duration::from_secs(180));
    assert_exactly(&g.numbers(), ROWS, "one 100,000-row transaction");
    for (i, role) in ["reader", "gateway"].iter().enumerate() {
        let peak = proc_kib(pids[i], "VmHWM");
        let grown_mib = peak.saturating_sub(before[i]) / 1024;
        eprintln!(
            "{role} peak RSS {} kB before, {peak} kB after ({grown_mib} MiB more)",
            before[i]
        );
        assert!(
            grown_mib < 48,
            "the {role}'s memory grew by {grown_mib} MiB for one transaction: not bounded"
        );
    }
}
