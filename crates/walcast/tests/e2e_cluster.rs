//! Cluster mode end to end: real `walcast` processes sharing one slot through a real
//! nats-server with JetStream, real Postgres, real WebSocket clients counting every event by a
//! sequence number written in the rows. Readers are killed, paused and crashed at the worst
//! moment; no client may miss or repeat an event.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cluster::*;
use serde_json::json;
use support::*;

#[test]
fn clients_on_every_gateway_get_every_event_once_in_order() {
    let mut c = Cluster::new();
    c.add_node(&[]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    // The second node is given a list of servers whose first refuses connections.
    let servers = format!("nats://127.0.0.1:1,{}", c.nats.url());
    c.add_node(&[("WALCAST_NATS_URL", servers.as_str())]);
    c.wait_role(1, "standby", READY_TIMEOUT);
    let mut a = Counter::start(c.node(0), None);
    let mut b = Counter::start(c.node(1), None);
    c.node(0).wait_subscriptions(1, CONNECT_TIMEOUT);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    write_range(&c.pg, 1, 300, 10, Duration::ZERO, &AtomicI64::new(0));
    a.read_until(300, EVENT_TIMEOUT);
    b.read_until(300, EVENT_TIMEOUT);
    assert_exactly(&a.numbers(), 300, "gateway 0");
    assert_exactly(&b.numbers(), 300, "gateway 1");
}

#[test]
fn killing_the_reader_mid_burst_loses_and_repeats_nothing() {
    let mut c = Cluster::new();
    c.add_node(&[]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[]);
    let mut b = Counter::start(c.node(1), None);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    let written = AtomicI64::new(0);
    let (killed_at, written_at_kill) = thread::scope(|scope| {
        let writer =
            scope.spawn(|| write_range(&c.pg, 1, 1500, 5, Duration::from_millis(5), &written));
        b.read_until(200, EVENT_TIMEOUT);
        let at = Instant::now();
        let w = written.load(Ordering::SeqCst);
        let pid = c.node(0).pid().expect("reader pid");
        signal(pid, "KILL");
        writer.join().expect("writer thread");
        (at, w)
    });
    b.read_until(1500, FAILOVER_QUIET);
    assert_exactly(&b.numbers(), 1500, "across the reader's kill -9");
    // Rows committed after the kill can only have come through the new reader.
    if let Some((_, first)) = b.seen.iter().find(|(n, _)| *n > written_at_kill) {
        eprintln!(
            "failover gap (kill -9 of the reader to the first event from the new reader): {:?}",
            first.duration_since(killed_at)
        );
    }
    c.wait_role(1, "reader", READY_TIMEOUT);
    let failovers = metric_sum(
        &c.node(1).get("/metrics").1,
        "walcast_cluster_failovers_total",
    );
    assert_eq!(failovers, Some(1), "the standby counts its takeover");
}

#[test]
fn a_client_of_a_killed_gateway_resumes_on_another_with_its_cursor() {
    let mut c = Cluster::new();
    c.add_node(&[]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[]);
    let mut first = Counter::start(c.node(1), None);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    let written = AtomicI64::new(0);
    write_range(&c.pg, 1, 200, 10, Duration::ZERO, &written);
    first.read_until(120, EVENT_TIMEOUT);
    c.nodes[1].kill();
    let cursor = first.cursor.clone().expect("a cursor before the kill");
    let mut second = Counter::start(c.node(0), Some(&cursor));
    c.node(0).wait_subscriptions(1, CONNECT_TIMEOUT);
    write_range(&c.pg, 201, 400, 10, Duration::ZERO, &written);
    let need = 400 - first.seen.len();
    second.read_until(need, EVENT_TIMEOUT);
    let mut all = first.numbers();
    all.extend(second.numbers());
    assert_exactly(&all, 400, "resumed on the other gateway");
}

#[test]
fn a_new_column_reaches_subscribers_on_every_gateway() {
    let mut c = Cluster::new();
    c.add_node(&[]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[]);
    sql(&c.pg, DB, "ALTER TABLE seq ADD COLUMN extra text");
    sql(&c.pg, DB, "INSERT INTO seq (n, extra) VALUES (1, 'first')");
    let query = "subscription { seq_mutated(event: \"create\") { data { n extra } } }";
    for i in 0..2 {
        // The gateway reloads its catalog when the stream shows the new shape.
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut client = loop {
            let mut client = JsClient::spawn(&[
                "--protocol",
                "transport",
                "--url",
                &c.node(i).ws_url(),
                "--token",
                TOKEN,
                "--query",
                query,
            ]);
            match client.try_next_line(Duration::from_secs(3)) {
                Some(line) if line["kind"] == "error" => {
                    assert!(
                        Instant::now() < deadline,
                        "gateway {i} never offered `extra`: {line}"
                    );
                    thread::sleep(Duration::from_millis(200));
                }
                _ => break client,
            }
        };
        c.node(i).wait_subscriptions(1, CONNECT_TIMEOUT);
        let n = 10 + i as i64;
        sql(
            &c.pg,
            DB,
            &format!("INSERT INTO seq (n, extra) VALUES ({n}, 'new {n}')"),
        );
        let data = client.expect_data(EVENT_TIMEOUT);
        assert_eq!(
            data["seq_mutated"]["data"]["extra"],
            json!(format!("new {n}")),
            "gateway {i}: {data}"
        );
    }
}

#[test]
fn a_reader_dying_between_the_stream_ack_and_the_slot_confirmation_repeats_nothing() {
    let mut c = Cluster::new();
    // The first node dies right after the stream acknowledged its first transaction, before
    // confirming it to Postgres: the new reader is sent it again.
    c.add_node(&[("FAILPOINTS", "cluster::confirm=return")]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[]);
    let mut b = Counter::start(c.node(1), None);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    write_range(
        &c.pg,
        1,
        600,
        5,
        Duration::from_millis(5),
        &AtomicI64::new(0),
    );
    b.read_until(600, FAILOVER_QUIET);
    assert_exactly(
        &b.numbers(),
        600,
        "after a crash between ack and confirmation",
    );
    assert!(
        c.nodes[0].wait_exit(Duration::from_secs(30)).is_some(),
        "the failpoint never fired\n{}",
        c.nodes[0].log_tail(30)
    );
    c.wait_role(1, "reader", READY_TIMEOUT);
}

#[test]
fn a_paused_reader_is_fenced_when_it_resumes_and_steps_down() {
    let mut c = Cluster::new();
    c.add_node(&[]);
    c.wait_role(0, "reader", READY_TIMEOUT);
    c.add_node(&[]);
    let mut b = Counter::start(c.node(1), None);
    c.node(1).wait_subscriptions(1, CONNECT_TIMEOUT);
    let written = AtomicI64::new(0);
    let pid = c.node(0).pid().expect("reader pid");
    thread::scope(|scope| {
        let writer =
            scope.spawn(|| write_range(&c.pg, 1, 1000, 5, Duration::from_millis(5), &written));
        b.read_until(100, EVENT_TIMEOUT);
        signal(pid, "STOP");
        // The standby takes the slot once Postgres dropped the silent walsender.
        b.read_until(500, FAILOVER_QUIET);
        signal(pid, "CONT");
        writer.join().expect("writer thread");
    });
    b.read_until(1000, FAILOVER_QUIET);
    assert_exactly(&b.numbers(), 1000, "across a paused reader");
    c.wait_role(1, "reader", READY_TIMEOUT);
    c.wait_role(0, "standby", READY_TIMEOUT);
    let mut a = Counter::start(c.node(0), None);
    c.node(0).wait_subscriptions(1, CONNECT_TIMEOUT);
    write_range(&c.pg, 1001, 1010, 5, Duration::ZERO, &written);
    a.read_until(10, EVENT_TIMEOUT);
    assert_eq!(
        a.numbers(),
        (1001..=1010).collect::<Vec<_>>(),
        "the resumed node serves again"
    );
}
