//! Helpers shared by the cluster tests: a nats-server per test, synthetic pgoutput
//! transactions, and a view of what the stream holds.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use walcast_cluster::{
    ClusterError, ClusterStream, MessageKind, Publisher, StorageType, StreamSettings,
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

/// Feeds `messages` until the publisher fails, else flushes, which must fail: the error.
pub async fn refusal(
    publisher: &mut Publisher,
    messages: impl IntoIterator<Item = PgOutput>,
) -> ClusterError {
    for msg in messages {
        if let Err(e) = publisher.feed(msg).await {
            return e;
        }
    }
    publisher
        .flush()
        .await
        .expect_err("the stale publisher is refused")
}

/// Every event and notice kept (not the publishers' epoch messages): `(seq, kind, lsn, index,
/// tx end)`.
pub async fn contents(stream: &ClusterStream) -> Vec<(u64, String, Lsn, u32, Option<Lsn>)> {
    let (first, last) = stream.bounds().await.expect("bounds");
    let mut out = Vec::new();
    for seq in first..=last {
        let meta = stream.meta_at(seq).await.expect("message");
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
    out
}

/// `(lsn, index)` of the events kept, in stream order.
pub async fn event_positions(stream: &ClusterStream) -> Vec<(u64, u32)> {
    contents(stream)
        .await
        .into_iter()
        .filter(|(_, kind, ..)| kind != "schema")
        .map(|(_, _, lsn, index, _)| (lsn.0, index))
        .collect()
}
