//! Helpers shared by the cluster tests: a nats-server per test, synthetic pgoutput
//! transactions, and a view of what the stream holds.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use walcast_cluster::{
    ClusterError, ClusterStream, ErrorKind, MessageKind, Publisher, StorageType, StreamSettings,
};
use walcast_model::{Catalog, Column, Kind, PgType, ReplicaIdentity, Table};
use walcast_natscluster::NatsServer;
use walcast_wal::{Lsn, PgOutput, Relation, RelationColumn, TupleValue};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn nats() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("starting nats-server: {e}"))
}

/// A JetStream context on `url`, or on any of several comma-separated urls.
pub async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url.split(',').collect::<Vec<_>>())
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    async_nats::jetstream::new(client)
}

pub fn settings(slot: &str) -> StreamSettings {
    StreamSettings {
        storage: StorageType::File,
        ..StreamSettings::new(slot)
    }
}

pub async fn open_stream(url: &str, settings: &StreamSettings) -> ClusterStream {
    ClusterStream::open(&jetstream(url).await, settings)
        .await
        .unwrap_or_else(|e| panic!("opening the stream: {e}"))
}

pub async fn publisher(stream: &ClusterStream) -> Publisher {
    Publisher::open(stream, 16)
        .await
        .unwrap_or_else(|e| panic!("opening a publisher: {e}"))
}

pub fn relation() -> Relation {
    Relation {
        rel_id: 16_384,
        namespace: "public".into(),
        name: "items".into(),
        replica_identity: b'd',
        columns: vec![RelationColumn {
            flags: 1,
            name: "id".into(),
            // text: the rows' ids are `<lsn>-<row>`.
            type_oid: 25,
            type_modifier: -1,
        }],
    }
}

/// A gateway's catalog with the table of [`relation`].
pub fn catalog() -> Catalog {
    let rel = relation();
    let column = Column {
        name: "id".into(),
        gql_name: "id".into(),
        attnum: 1,
        ty: PgType {
            oid: 25,
            name: "text".into(),
            kind: Kind::Text,
            array: false,
            enum_values: vec![],
        },
        sql_type: "text".into(),
        not_null: true,
    };
    let table = Table {
        oid: rel.rel_id,
        schema: rel.namespace,
        name: rel.name.clone(),
        gql_name: rel.name,
        columns: vec![column],
        primary_key: vec![0],
        replica_identity: ReplicaIdentity::Default,
        foreign_keys: vec![],
    };
    Catalog::new(vec![table]).unwrap_or_else(|e| panic!("catalog: {e}"))
}

/// A committed transaction at `lsn` inserting `rows` rows, as pgoutput sends it.
pub fn transaction(lsn: u64, rows: usize) -> Vec<PgOutput> {
    let mut out = vec![
        PgOutput::Begin {
            final_lsn: Lsn(lsn),
            commit_time: 1_000,
            xid: lsn as u32,
        },
        PgOutput::Relation(relation()),
    ];
    for i in 0..rows {
        out.push(PgOutput::Insert {
            rel_id: relation().rel_id,
            new: vec![TupleValue::Text(Bytes::from(format!("{lsn}-{i}")))],
        });
    }
    out.push(PgOutput::Commit {
        flags: 0,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 8),
        commit_time: 1_000,
    });
    out
}

pub async fn feed_all(publisher: &mut Publisher, messages: Vec<PgOutput>) {
    for msg in messages {
        publisher
            .feed(msg)
            .await
            .unwrap_or_else(|e| panic!("publishing: {e}"));
    }
}

/// Feeds `messages` and flushes: the first error.
pub async fn try_feed_all(
    publisher: &mut Publisher,
    messages: impl IntoIterator<Item = PgOutput>,
) -> Result<(), ClusterError> {
    for msg in messages {
        publisher.feed(msg).await?;
    }
    publisher.flush().await.map(|_| ())
}

/// Feeds `messages` until the publisher fails, else flushes, which must fail: the error.
pub async fn refusal(
    publisher: &mut Publisher,
    messages: impl IntoIterator<Item = PgOutput>,
) -> ClusterError {
    try_feed_all(publisher, messages)
        .await
        .expect_err("the stale publisher is refused")
}

/// Every event and notice kept (not the publishers' epoch messages): `(seq, kind, lsn, index,
/// tx end)`.
pub async fn contents(stream: &ClusterStream) -> Vec<(u64, String, Lsn, u32, Option<Lsn>)> {
    try_contents(stream).await.expect("reading the stream")
}

async fn try_contents(
    stream: &ClusterStream,
) -> Result<Vec<(u64, String, Lsn, u32, Option<Lsn>)>, ClusterError> {
    let (first, last) = stream.bounds().await?;
    let mut out = Vec::new();
    for seq in first..=last {
        let meta = stream.meta_at(seq).await?;
        if meta.kind == MessageKind::Epoch {
            continue;
        }
        out.push((
            seq,
            meta.kind.as_str().to_owned(),
            meta.position.lsn,
            meta.position.index,
            meta.tx_end,
        ));
    }
    Ok(out)
}

/// `(lsn, index)` of the events kept, in stream order.
pub async fn event_positions(stream: &ClusterStream) -> Vec<(u64, u32)> {
    events_of(contents(stream).await)
}

/// [`event_positions`] where a replica may not have the latest messages yet (a direct get goes
/// to any): read again until every message is found.
pub async fn replicated_event_positions(stream: &ClusterStream) -> Vec<(u64, u32)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_contents(stream).await {
            Ok(kept) => return events_of(kept),
            Err(e) if tokio::time::Instant::now() > deadline => panic!("reading the stream: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn events_of(kept: Vec<(u64, String, Lsn, u32, Option<Lsn>)>) -> Vec<(u64, u32)> {
    kept.into_iter()
        .filter(|(_, kind, ..)| kind != "schema")
        .map(|(_, _, lsn, index, _)| (lsn.0, index))
        .collect()
}

/// `(lsn, index)` of every event of transactions `(lsn, rows)`.
pub fn positions(txs: &[(u64, u32)]) -> Vec<(u64, u32)> {
    txs.iter()
        .flat_map(|&(lsn, n)| (0..n).map(move |i| (lsn, i)))
        .collect()
}

/// Rounds of a stale 64-deep pipeline sent while the next publisher opens (takes over), on a
/// stream without events yet: each event stored once, in order, whatever landed first.
pub async fn race_stale_pipelines(stream: &ClusterStream) {
    // Stored as a reader would: again while a new replicated stream has no leader yet.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = async {
            let mut first = Publisher::open(stream, 16).await?;
            try_feed_all(&mut first, transaction(0x100, 1)).await
        };
        match stored.await {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::Nats && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("storing the first transaction: {e}"),
        }
    }
    let mut expected = positions(&[(0x100, 1)]);
    let mut fenced = 0;
    for round in 0..8u64 {
        // 16 transactions of 4 rows and a notice: one message more than the pipeline holds,
        // all sent before the first ack is awaited.
        let txs: Vec<(u64, u32)> = (0..16)
            .map(|k| (0x1000 * (round + 1) + 0x10 * k, 4))
            .collect();
        let messages: Vec<PgOutput> = txs
            .iter()
            .flat_map(|&(lsn, rows)| transaction(lsn, rows as usize))
            .collect();
        let mut stale = Publisher::open(stream, 64).await.expect("open");
        let stale_end = stale.last_sequence();
        // The stale pipeline goes out while the next publisher opens: in even rounds as soon
        // as the stream grows under it (into the epoch, were it appended piecemeal), in odd
        // rounds after as many round trips as the round's half (into the next publisher's
        // reads and batch).
        let burst = async {
            if round % 2 == 0 {
                tokio::time::timeout(WAIT, async {
                    while stream.bounds().await.expect("bounds").1 == stale_end {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .expect("the next publisher appends");
            } else {
                for _ in 0..round / 2 {
                    stream.bounds().await.expect("bounds");
                }
            }
            try_feed_all(&mut stale, messages.clone()).await
        };
        let (outcome, next) = tokio::join!(burst, Publisher::open(stream, 4));
        match outcome {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Fenced => fenced += 1,
            Err(e) => panic!("the stale publisher: {e}"),
        }
        // The next publisher replays the same transactions: it resumes after whatever of the
        // stale pipeline landed, and that was a gapless prefix.
        let mut next = next.unwrap_or_else(|e| panic!("the next publisher opens: {e}"));
        feed_all(&mut next, messages).await;
        next.flush().await.expect("stored");
        expected.extend(positions(&txs));
        assert_eq!(
            replicated_event_positions(stream).await,
            expected,
            "round {round}: each event once, in order"
        );
    }
    assert!(fenced > 0, "no stale pipeline was refused");
}
