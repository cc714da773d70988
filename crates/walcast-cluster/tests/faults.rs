//! The publisher while NATS fails under it: a node of a 3-node cluster killed and restarted, the
//! stream's leader killed (and restarted), a single server gone altogether. Every transaction the publisher
//! reports stored is in the stream, exactly once and in order, and gateways read it back
//! without a gap. Waits are on events, with generous limits; no timing is asserted.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::ConnectOptions;
use common::*;
use tokio::time::{sleep, timeout, Instant};
use walcast_cluster::{
    ClusterError, ClusterStream, Consumer, Delivery, ErrorKind, MessageKind, Meta, Position,
    Publisher, StreamSettings,
};
use walcast_model::{ChangeDecoder, TableSelection};
use walcast_natscluster::NatsCluster;
use walcast_wal::Lsn;

/// Upper bound for one phase: elections and reconnects take seconds on a busy machine.
const PATIENCE: Duration = Duration::from_secs(180);
const RETRY: Duration = Duration::from_millis(200);
const ROWS: usize = 4;
const IN_FLIGHT: usize = 16;

/// Transaction `i` commits at this LSN and inserts `ROWS` rows.
fn lsn_of(i: usize) -> u64 {
    0x1000 * (i as u64 + 1)
}

/// The end LSN of transaction `i` (see [`transaction`]).
fn end_of(i: usize) -> Lsn {
    Lsn(lsn_of(i) + 8)
}

/// The number of transactions covered by a stored position.
fn covered(stored: Option<Lsn>) -> usize {
    stored.map_or(0, |end| ((end.0 - 8) / 0x1000) as usize)
}

/// `(lsn, index)` of every event of the first `count` transactions.
fn expected_events(count: usize) -> Vec<(u64, u32)> {
    (0..count)
        .flat_map(|i| (0..ROWS as u32).map(move |r| (lsn_of(i), r)))
        .collect()
}

/// What a gateway reads of the first `count` transactions: commit LSN and row keys.
fn expected_transactions(count: usize) -> Vec<(u64, Vec<String>)> {
    (0..count)
        .map(|i| {
            let keys = (0..ROWS).map(|r| format!("{}-{r}", lsn_of(i))).collect();
            (lsn_of(i), keys)
        })
        .collect()
}

fn replicated(slot: &str) -> StreamSettings {
    StreamSettings {
        replicas: 3,
        ..settings(slot)
    }
}

fn cluster() -> NatsCluster {
    NatsCluster::start(3).unwrap_or_else(|e| panic!("starting a 3-node NATS cluster: {e}"))
}

/// Retries `attempt` until it succeeds or `PATIENCE` runs out (then panics with the last error).
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "{what}: retrying");
                sleep(RETRY).await;
            }
            Err(e) => panic!("{what}: still failing after {PATIENCE:?}: {e}"),
        }
    }
}

/// The stream's last message, from whichever server answers.
async fn last_message(stream: &ClusterStream) -> Option<Meta> {
    eventually("reading the stream's last message", || async {
        let (first, last) = stream.bounds().await?;
        if last < first {
            return Ok(None);
        }
        stream.meta_at(last).await.map(Some)
    })
    .await
}

/// The stream's leader, once it has one other than `not`.
async fn leader(stream: &ClusterStream, not: Option<&str>) -> String {
    eventually("finding the stream's leader", || async {
        match stream.leader().await? {
            Some(name) if Some(name.as_str()) != not => Ok(name),
            other => Err(ClusterError::Decode {
                seq: 0,
                detail: format!("no new leader yet ({other:?})"),
            }),
        }
    })
    .await
}

fn node_index(cluster: &NatsCluster, name: &str) -> usize {
    cluster
        .nodes()
        .iter()
        .position(|n| n.name() == name)
        .unwrap_or_else(|| panic!("no node named {name}"))
}

/// A reader as walcast runs one: after an error it opens a new publisher and replays from the
/// position stored so far, as Postgres replays from the slot's confirmed position.
struct Reader {
    stream: ClusterStream,
    publisher: Option<Publisher>,
    /// The index of the next transaction to feed.
    next: usize,
    /// The highest `stored_up_to` any publisher reported.
    stored: Option<Lsn>,
    errors: Vec<String>,
}

impl Reader {
    fn new(stream: &ClusterStream) -> Reader {
        Reader {
            stream: stream.clone(),
            publisher: None,
            next: 0,
            stored: None,
            errors: Vec::new(),
        }
    }

    /// Feeds the transactions up to `count` (and, with `flush`, waits until all are stored),
    /// through any number of retryable errors.
    async fn run(&mut self, count: usize, flush: bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.advance(count, flush).await {
                Ok(()) => return,
                Err(e) => self.recover(e).await,
            }
            assert!(
                Instant::now() < deadline,
                "no progress for {PATIENCE:?}; errors: {:#?}",
                self.errors
            );
        }
    }

    async fn advance(&mut self, count: usize, flush: bool) -> Result<(), ClusterError> {
        let mut publisher = match self.publisher.take() {
            Some(p) => p,
            None => Publisher::open(&self.stream, IN_FLIGHT).await?,
        };
        while self.next < count {
            for msg in transaction(lsn_of(self.next), ROWS) {
                publisher.feed(msg).await?;
            }
            self.next += 1;
            self.stored_now(publisher.stored_up_to()).await;
        }
        if flush {
            let stored = publisher.flush().await?;
            self.stored_now(stored).await;
        }
        self.publisher = Some(publisher);
        Ok(())
    }

    /// After an error: the publisher is gone, Postgres replays from what was stored.
    async fn recover(&mut self, error: ClusterError) {
        assert!(
            matches!(error.kind(), ErrorKind::Nats | ErrorKind::Fenced),
            "a reader retries on NATS errors (and on being fenced by its own late messages): {error}"
        );
        eprintln!("the reader retries after: {error}");
        self.errors.push(error.to_string());
        self.publisher = None;
        self.next = covered(self.stored);
        sleep(RETRY).await;
    }

    /// Checks a reported stored position against the stream: it holds the transaction's last
    /// event (and, as the final check shows, everything before it once).
    async fn stored_now(&mut self, stored: Option<Lsn>) {
        let Some(end) = stored else {
            return;
        };
        if self.stored >= Some(end) {
            return;
        }
        let done = covered(Some(end));
        assert!(done >= 1 && end_of(done - 1) == end, "stored {end}");
        let want = Position {
            lsn: Lsn(lsn_of(done - 1)),
            index: ROWS as u32 - 1,
        };
        let last = last_message(&self.stream).await;
        let holds = last.is_some_and(|m| {
            m.position > want || (m.position == want && m.kind != MessageKind::Schema)
        });
        assert!(
            holds,
            "stored_up_to is {end}, but the stream ends at {:?}",
            last.map(|m| m.position)
        );
        self.stored = Some(end);
    }
}

/// Every event and transaction end the stream keeps, in stream order (notices and the
/// publishers' epoch messages are not events).
async fn kept(stream: &ClusterStream) -> (Vec<(u64, u32)>, Vec<Lsn>) {
    let (first, last) = eventually("reading the stream's bounds", || stream.bounds()).await;
    let mut events = Vec::new();
    let mut ends = Vec::new();
    for seq in first..=last {
        let meta = eventually("reading a message", || stream.meta_at(seq)).await;
        if !matches!(meta.kind, MessageKind::Schema | MessageKind::Epoch) {
            events.push((meta.position.lsn.0, meta.position.index));
        }
        ends.extend(meta.tx_end);
    }
    (events, ends)
}

/// The stream holds the first `count` transactions, each event once, in order.
async fn assert_exactly_once(stream: &ClusterStream, count: usize) {
    let (events, ends) = kept(stream).await;
    assert_eq!(events, expected_events(count), "each event once, in order");
    let want_ends: Vec<Lsn> = (0..count).map(end_of).collect();
    assert_eq!(ends, want_ends, "each transaction ends once");
}

/// Reads the stream from its start through a connection to `url` alone, as a gateway does:
/// complete transactions (commit LSN and row keys), from a gap-free run of sequences.
async fn read_back(url: &str, settings: &StreamSettings, count: usize) -> Vec<(u64, Vec<String>)> {
    let client = ConnectOptions::new()
        .ignore_discovered_servers()
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let js = async_nats::jetstream::new(client);
    let stream = eventually("opening the stream", || ClusterStream::open(&js, settings)).await;
    let mut consumer = eventually("opening a consumer", || {
        let decoder = ChangeDecoder::new(Arc::new(catalog()), TableSelection::default());
        Consumer::open(&stream, 1, decoder)
    })
    .await;
    let mut out = Vec::new();
    let mut last_seq = 0;
    while out.len() < count {
        let delivery = timeout(PATIENCE, consumer.next())
            .await
            .expect("the gateway receives within the wait")
            .unwrap_or_else(|e| panic!("reading a contiguous sequence: {e}"))
            .expect("the consumer stays open");
        let seq = match delivery {
            Delivery::Transaction {
                tx, seq, complete, ..
            } => {
                assert!(complete, "small transactions come whole");
                let keys = tx.events.iter().map(|e| e.key.clone()).collect();
                out.push((tx.commit_lsn.0, keys));
                seq
            }
            Delivery::SchemaChange { seq, .. } => seq,
            other => panic!("unexpected {other:?}"),
        };
        assert!(seq > last_seq, "sequence {seq} after {last_seq}");
        last_seq = seq;
    }
    out
}

/// Waits until the stream holds the first `count` transactions' events (and the notices before
/// them): a point in the middle of a run to strike at.
async fn wait_for_transactions(stream: &ClusterStream, count: usize) {
    let target = (count * ROWS) as u64;
    loop {
        if let Ok((_, last)) = stream.bounds().await {
            if last >= target {
                return;
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn acked_transactions_survive_a_node_restart() {
    let mut cluster = cluster();
    let settings = replicated("s_node_restart");
    let stream = open_stream(&cluster.urls(), &settings).await;
    let mut reader = Reader::new(&stream);
    reader.run(20, true).await;

    // A node other than the leader is killed in the middle of a run, then comes back.
    let leader = leader(&stream, None).await;
    let victim = (node_index(&cluster, &leader) + 1) % 3;
    let survivor = (victim + 1) % 3;
    tokio::join!(reader.run(60, false), async {
        wait_for_transactions(&stream, 30).await;
        cluster.node_mut(victim).expect("node").kill();
    });
    cluster
        .node_mut(victim)
        .expect("node")
        .start_again()
        .unwrap_or_else(|e| panic!("restarting: {e}"));
    reader.run(90, true).await;
    assert_eq!(reader.stored, Some(end_of(89)));

    assert_exactly_once(&stream, 90).await;
    let survivor_url = cluster.nodes()[survivor].url();
    assert_eq!(
        read_back(&survivor_url, &settings, 90).await,
        expected_transactions(90)
    );
}

#[tokio::test]
async fn acked_transactions_survive_killing_the_stream_leader() {
    let mut cluster = cluster();
    let settings = replicated("s_leader");
    let stream = open_stream(&cluster.urls(), &settings).await;
    let mut reader = Reader::new(&stream);
    reader.run(20, true).await;

    // The leader dies in the middle of a run; the others elect a new one and the reader
    // carries on through it.
    let old_leader = leader(&stream, None).await;
    let victim = node_index(&cluster, &old_leader);
    tokio::join!(reader.run(60, true), async {
        wait_for_transactions(&stream, 30).await;
        cluster.node_mut(victim).expect("node").kill();
    });
    let new_leader = leader(&stream, Some(&old_leader)).await;
    assert_eq!(reader.stored, Some(end_of(59)));
    assert_exactly_once(&stream, 60).await;

    // A gateway on a surviving node reads it all while the old leader is still down.
    let survivor_url = cluster.nodes()[node_index(&cluster, &new_leader)].url();
    assert_eq!(
        read_back(&survivor_url, &settings, 60).await,
        expected_transactions(60)
    );

    // The publisher goes on with two of three nodes.
    reader.run(90, true).await;
    assert_exactly_once(&stream, 90).await;
    let other = (0..3)
        .find(|&i| i != victim && i != node_index(&cluster, &new_leader))
        .expect("a third node");
    assert_eq!(
        read_back(&cluster.nodes()[other].url(), &settings, 90).await,
        expected_transactions(90)
    );
}

/// A condition not reached yet, for [`eventually`].
fn not_yet(detail: String) -> ClusterError {
    ClusterError::Decode { seq: 0, detail }
}

/// Waits until the stream's info names `node` a current replica (or the leader).
async fn wait_caught_up(urls: &str, settings: &StreamSettings, node: &str) {
    let js = jetstream(urls).await;
    let name = settings.stream_name();
    eventually("waiting for the restarted node to catch up", || async {
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(|e| not_yet(format!("getting the stream: {e}")))?;
        let info = stream
            .info()
            .await
            .map_err(|e| not_yet(format!("reading the stream's info: {e}")))?;
        let cluster = info.cluster.as_ref();
        let leads = cluster.and_then(|c| c.leader.as_deref()) == Some(node);
        let current = cluster.is_some_and(|c| {
            c.replicas
                .iter()
                .any(|r| r.name == node && r.current && !r.offline)
        });
        if leads || current {
            Ok(())
        } else {
            Err(not_yet(format!(
                "{node} is not a current replica: {cluster:?}"
            )))
        }
    })
    .await
}

fn lock(cluster: &Mutex<NatsCluster>) -> MutexGuard<'_, NatsCluster> {
    cluster
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[tokio::test]
async fn a_restarted_stream_leader_rejoins_while_publishing_goes_on() {
    let cluster = Arc::new(Mutex::new(cluster()));
    let settings = replicated("s_rejoin");
    let urls = lock(&cluster).urls();
    let stream = open_stream(&urls, &settings).await;
    let mut reader = Reader::new(&stream);
    reader.run(20, true).await;

    // The leader dies in the middle of a run and comes back while the reader goes on (through
    // the election and the restart); it must catch up with what was stored meanwhile.
    let old_leader = leader(&stream, None).await;
    let victim = node_index(&lock(&cluster), &old_leader);
    let rejoined = AtomicBool::new(false);
    let mut count = 30;
    tokio::join!(
        async {
            while !rejoined.load(Relaxed) {
                count += 5;
                reader.run(count, false).await;
                sleep(Duration::from_millis(100)).await;
            }
        },
        async {
            wait_for_transactions(&stream, 30).await;
            lock(&cluster).node_mut(victim).expect("node").kill();
            leader(&stream, Some(&old_leader)).await;
            let restarting = Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || {
                lock(&restarting)
                    .node_mut(victim)
                    .expect("node")
                    .start_again()
            })
            .await
            .expect("the restart thread finishes")
            .unwrap_or_else(|e| panic!("the old leader comes back healthy: {e}"));
            wait_caught_up(&urls, &settings, &old_leader).await;
            rejoined.store(true, Relaxed);
        }
    );
    count += 20;
    reader.run(count, true).await;
    assert_eq!(reader.stored, Some(end_of(count - 1)));
    wait_caught_up(&urls, &settings, &old_leader).await;
    assert_exactly_once(&stream, count).await;
    let victim_url = lock(&cluster).nodes()[victim].url();
    assert_eq!(
        read_back(&victim_url, &settings, count).await,
        expected_transactions(count)
    );

    // It stored what it replicated: no write error from applying a message (as the last
    // message id check caused: the catch-up does not update it).
    let log_path = lock(&cluster).nodes()[victim].log_path();
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", log_path.display()));
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("write error"))
        .take(3)
        .collect();
    assert!(errors.is_empty(), "the restarted node: {errors:#?}");

    // The rejoined node is a full member: with the current leader killed, it and the third
    // node elect a leader and the reader carries on.
    let new_leader = leader(&stream, None).await;
    let second = node_index(&lock(&cluster), &new_leader);
    assert_ne!(second, victim, "{new_leader} leads again");
    lock(&cluster).node_mut(second).expect("node").kill();
    leader(&stream, Some(&new_leader)).await;
    count += 20;
    reader.run(count, true).await;
    assert_exactly_once(&stream, count).await;
    assert_eq!(
        read_back(&victim_url, &settings, count).await,
        expected_transactions(count)
    );
}

#[tokio::test]
async fn a_stale_pipeline_racing_the_next_publishers_epoch_leaves_no_gap_on_r3() {
    let cluster = cluster();
    let stream = open_stream(&cluster.urls(), &replicated("s_race")).await;
    race_stale_pipelines(&stream).await;
}

#[tokio::test]
async fn while_nats_is_away_nothing_more_is_stored_and_the_reader_retries() {
    let mut server = nats();
    let settings = settings("s_away");
    let stream = open_stream(&server.url(), &settings).await;
    let mut reader = Reader::new(&stream);
    reader.run(10, true).await;
    assert_eq!(reader.stored, Some(end_of(9)));
    let mut publisher = reader.publisher.take().expect("the reader's publisher");

    server.kill();
    let mut failure = None;
    'feeding: for i in 10..20 {
        for msg in transaction(lsn_of(i), ROWS) {
            if let Err(e) = publisher.feed(msg).await {
                failure = Some(e);
                break 'feeding;
            }
        }
        assert_eq!(publisher.stored_up_to(), Some(end_of(9)));
    }
    let error = match failure {
        Some(e) => e,
        None => publisher
            .flush()
            .await
            .expect_err("nothing is acknowledged while NATS is away"),
    };
    assert_eq!(error.kind(), ErrorKind::Nats, "retryable: {error}");
    assert_eq!(publisher.stored_up_to(), Some(end_of(9)), "not advanced");
    let again = publisher
        .flush()
        .await
        .expect_err("a publisher stays stopped after an error");
    assert_eq!(again.kind(), ErrorKind::Nats, "{again}");
    assert_eq!(publisher.stored_up_to(), Some(end_of(9)));
    drop(publisher);

    // NATS comes back: the reader retries with a new publisher from what was stored.
    server
        .start_again()
        .unwrap_or_else(|e| panic!("restarting: {e}"));
    reader.recover(error).await;
    assert_eq!(reader.next, 10, "Postgres replays from the stored position");
    reader.run(30, true).await;
    assert_eq!(reader.stored, Some(end_of(29)));
    assert_exactly_once(&stream, 30).await;
    assert_eq!(
        read_back(&server.url(), &settings, 30).await,
        expected_transactions(30)
    );
}
