//! The cluster harness of the cluster end-to-end tests: Postgres, a nats-server with
//! JetStream and `walcast` nodes on them, and subscribers counting rows by their number.

// Each cluster test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use walcast_natscluster::{NatsCluster, NatsServer};

use crate::support::*;

pub const DB: &str = "app";
pub const TOKEN: &str = "cluster-token";
pub const SEQ_QUERY: &str = "subscription($after: String) { seq_mutated(event: \"create\", after: $after) { key cursor data { n } } }";
/// Events may take this long to reach a client across a failover.
pub const FAILOVER_QUIET: Duration = Duration::from_secs(60);

/// Postgres, NATS and walcast nodes on them; nodes stop before the services they use.
pub struct Cluster {
    pub nodes: Vec<Walcast>,
    pub nats: NatsServer,
    /// A NATS cluster the nodes use instead of `nats`, for replicated streams.
    pub replicated: Option<NatsCluster>,
    pub pg: PgCluster,
    pub dir: TempDir,
}

/// A database with the `seq` table the nodes stream.
pub fn seq_db() -> PgCluster {
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

impl Cluster {
    pub fn new() -> Cluster {
        let nats = NatsServer::start().unwrap_or_else(|e| panic!("starting nats-server: {e}"));
        Cluster {
            nodes: Vec::new(),
            nats,
            replicated: None,
            pg: seq_db(),
            dir: TempDir::new("cluster"),
        }
    }

    /// Nodes on a NATS cluster of `size` servers (`nats` stays unused).
    pub fn replicated(size: usize) -> Cluster {
        let mut c = Cluster::new();
        c.replicated = Some(
            NatsCluster::start(size).unwrap_or_else(|e| panic!("starting a NATS cluster: {e}")),
        );
        c
    }

    /// What the nodes are given as `WALCAST_NATS_URL`.
    pub fn nats_url(&self) -> String {
        match &self.replicated {
            Some(cluster) => cluster.urls(),
            None => self.nats.url(),
        }
    }

    /// Starts a node (role both) and waits until it serves; the first one started becomes the
    /// reader.
    pub fn add_node(&mut self, extra_env: &[(&str, &str)]) -> usize {
        let tokens = tokens_file(&self.dir, &[(TOKEN, "admin")]);
        let tokens = tokens.to_str().expect("temp path is UTF-8").to_owned();
        let nats = self.nats_url();
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

    pub fn node(&self, i: usize) -> &Walcast {
        &self.nodes[i]
    }

    /// The cluster role gauges of node `i`.
    pub fn role(&self, i: usize, role: &str) -> u64 {
        let text = self.nodes[i].get("/metrics").1;
        let line = format!("walcast_cluster_role{{role=\"{role}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn wait_role(&self, i: usize, role: &str, timeout: Duration) {
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
pub fn write_range(
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
pub fn num(v: &serde_json::Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

/// A counting subscriber: every `n` it received, when, and the last cursor.
pub struct Counter {
    pub client: JsClient,
    pub seen: Vec<(i64, Instant)>,
    pub cursor: Option<String>,
}

impl Counter {
    pub fn start(w: &Walcast, after: Option<&str>) -> Counter {
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
    pub fn read_until(&mut self, n: usize, quiet: Duration) {
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

    pub fn numbers(&self) -> Vec<i64> {
        self.seen.iter().map(|(n, _)| *n).collect()
    }
}

/// Every number from 1 to `n` exactly once, in commit order.
pub fn assert_exactly(seen: &[i64], n: i64, what: &str) {
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

/// The server name of stream `WALCAST_walcast`'s leader, asked of the NATS server on `port`
/// with the plain NATS protocol.
pub fn stream_leader(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(
        b"CONNECT {\"verbose\":false}\r\nSUB info.reply 1\r\n\
          PUB $JS.API.STREAM.INFO.WALCAST_walcast info.reply 0\r\n\r\n",
    )
    .ok()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.starts_with("MSG ") {
            break;
        }
    }
    let len: usize = line.split_whitespace().last()?.parse().ok()?;
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).ok()?;
    let info: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    info["cluster"]["leader"].as_str().map(str::to_owned)
}
