//! Cluster mode end to end: real `walcast` processes sharing one slot through a real
//! nats-server with JetStream, real Postgres, real WebSocket clients counting every event by a
//! sequence number written in the rows. Readers are killed, paused and crashed at the worst
//! moment; no client may miss or repeat an event.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use walcast_natscluster::NatsServer;

const DB: &str = "app";
const TOKEN: &str = "cluster-token";
const SEQ_QUERY: &str = "subscription($after: String) { seq_mutated(event: \"create\", after: $after) { key cursor data { n } } }";
/// Events may take this long to reach a client across a failover.
const FAILOVER_QUIET: Duration = Duration::from_secs(60);

/// Postgres, NATS and walcast nodes on them; nodes stop before the services they use.
struct Cluster {
    nodes: Vec<Walcast>,
    nats: NatsServer,
    pg: PgCluster,
    dir: TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let pg = pg();
        pg.create_database(DB)
            .unwrap_or_else(|e| panic!("creating database {DB}: {e}"));
        sql(
            &pg,
            DB,
            "CREATE TABLE seq (n integer PRIMARY KEY, pad text); \
             ALTER TABLE seq REPLICA IDENTITY FULL;",
        );
        let nats = NatsServer::start().unwrap_or_else(|e| panic!("starting nats-server: {e}"));
        Cluster {
            nodes: Vec::new(),
            nats,
            pg,
            dir: TempDir::new("cluster"),
        }
    }

    /// Starts a node (role both) and waits until it serves; the first one started becomes the
    /// reader.
    fn add_node(&mut self, extra_env: &[(&str, &str)]) -> usize {
        let tokens = tokens_file(&self.dir, &[(TOKEN, "admin")]);
        let tokens = tokens.to_str().expect("temp path is UTF-8").to_owned();
        let nats = self.nats.url();
        let mut env = vec![
            ("WALCAST_NATS_URL", nats.as_str()),
            ("WALCAST_TABLES", "seq"),
            ("WALCAST_WAL_SENDER_TIMEOUT", "2s"),
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens.as_str()),
        ];
        env.extend_from_slice(extra_env);
        self.nodes.push(Walcast::start(&self.pg.url(DB), &env));
        self.nodes.len() - 1
    }

    fn node(&self, i: usize) -> &Walcast {
        &self.nodes[i]
    }

    /// The cluster role gauges of node `i`.
    fn role(&self, i: usize, role: &str) -> u64 {
        let text = self.nodes[i].get("/metrics").1;
        let line = format!("walcast_cluster_role{{role=\"{role}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_role(&self, i: usize, role: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.role(i, role) != 1 {
            assert!(
                Instant::now() < deadline,
                "node {i} not {role} after {timeout:?}\n{}",
                self.nodes[i].log_tail(40)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Writes `seq` rows `from..=to` in batches (one transaction each), retrying a batch until it
/// commits; `written` follows the last row committed.
fn write_range(
    pg: &PgCluster,
    from: i32,
    to: i32,
    batch: i32,
    pause: Duration,
    written: &AtomicI64,
) {
    let mut start = from;
    while start <= to {
        let end = (start + batch - 1).min(to);
        let statement = format!(
            "INSERT INTO seq (n) SELECT g FROM generate_series({start}, {end}) g ON CONFLICT DO NOTHING"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg.psql(DB, &statement).is_err() {
            assert!(
                Instant::now() < deadline,
                "could not write rows {start}..{end} for 60 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
        written.store(i64::from(end), Ordering::SeqCst);
        start = end + 1;
        thread::sleep(pause);
    }
}

/// `n` is the primary key, so an `ID`: a string.
fn num(v: &serde_json::Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

/// A counting subscriber: every `n` it received, when, and the last cursor.
struct Counter {
    client: JsClient,
    seen: Vec<(i64, Instant)>,
    cursor: Option<String>,
}

impl Counter {
    fn start(w: &Walcast, after: Option<&str>) -> Counter {
        let url = w.ws_url();
        let vars = json!({ "after": after }).to_string();
        let client = JsClient::spawn(&[
            "--protocol",
            "transport",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--query",
            SEQ_QUERY,
            "--variables",
            &vars,
        ]);
        Counter {
            client,
            seen: Vec::new(),
            cursor: after.map(str::to_owned),
        }
    }

    /// Reads events until `n` are held, nothing arrives for `quiet`, or the socket ends.
    fn read_until(&mut self, n: usize, quiet: Duration) {
        while self.seen.len() < n {
            let Some(line) = self.client.try_next_line(quiet) else {
                return;
            };
            match line["kind"].as_str() {
                Some("next") => {
                    assert!(line["payload"]["errors"].is_null(), "errors: {line}");
                    let m = &line["payload"]["data"]["seq_mutated"];
                    let v = num(&m["data"]["n"]).unwrap_or_else(|| panic!("no n in {line}"));
                    self.seen.push((v, Instant::now()));
                    self.cursor = m["cursor"].as_str().map(str::to_owned);
                }
                Some("closed") | Some("error") => {
                    eprintln!("subscriber ended: {line}");
                    return;
                }
                _ => {}
            }
        }
    }

    fn numbers(&self) -> Vec<i64> {
        self.seen.iter().map(|(n, _)| *n).collect()
    }
}

/// Every number from 1 to `n` exactly once, in commit order.
fn assert_exactly(seen: &[i64], n: i64, what: &str) {
    let distinct: BTreeSet<_> = seen.iter().collect();
    let dups = seen.len() - distinct.len();
    let missing: Vec<i64> = (1..=n).filter(|i| !distinct.contains(i)).take(10).collect();
    assert_eq!(dups, 0, "{what}: {dups} duplicated events");
    assert!(
        missing.is_empty(),
        "{what}: missing events, first: {missing:?} (got {})",
        seen.len()
    );
    assert_eq!(seen.len() as i64, n, "{what}: event count");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "{what}: events out of commit order"
    );
}

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
