//! Real decoded transactions from Postgres through the stream: the gateway rebuilds them
//! identically with its own decoder and catalog.

mod common;

use std::sync::Arc;

use common::*;
use walcast_cluster::{sequence_for_lsn, Consumer, Delivery};
use walcast_model::{Catalog, ChangeDecoder, Step, TableSelection, Transaction};
use walcast_pgcluster::PgCluster;
use walcast_wal::{ensure_publication, Lsn, PgOutput, ReplicationClient, ReplicationEvent};

const PART_SIZE: usize = 8;

fn summary(tx: &Transaction, complete: bool) -> String {
    let events: Vec<_> = tx
        .events
        .iter()
        .map(|e| {
            (
                e.table.qualified_name(),
                e.op,
                &e.key,
                &e.new,
                &e.old,
                &e.updated,
                e.cursor,
                e.xid,
                e.commit_time,
            )
        })
        .collect();
    format!(
        "complete={complete} xid={} commit={} end={} time={} first={} events={events:?} messages={:?}",
        tx.xid, tx.commit_lsn, tx.end_lsn, tx.commit_time, tx.first_seq, tx.messages
    )
}

fn psql(pg: &PgCluster, db: &str, sql: &str) {
    pg.psql(db, sql)
        .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"));
}

/// Runs the statements (one transaction each) and records what the slot sends for them.
async fn record(pg: &PgCluster, db: &str, statements: &[&str], commits: usize) -> Vec<PgOutput> {
    let mut repl = ReplicationClient::connect(&pg.url(db))
        .await
        .expect("replication connection");
    repl.ensure_slot("cluster_slot").await.expect("slot");
    let mut stream = repl
        .start("cluster_slot", "cluster_pub", Lsn(0))
        .await
        .expect("start");
    for sql in statements {
        psql(pg, db, sql);
    }
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let event = tokio::time::timeout(WAIT, stream.recv())
            .await
            .expect("the slot sends within the wait")
            .expect("replication stream");
        match event {
            Some(ReplicationEvent::XLogData { message, .. }) => {
                if matches!(message, PgOutput::Commit { .. }) {
                    seen += 1;
                }
                out.push(message);
            }
            Some(_) => {}
            None => panic!("the replication stream ended"),
        }
    }
    out
}

/// What a standalone walcast's decoder makes of the messages.
fn reference(catalog: &Arc<Catalog>, messages: &[PgOutput]) -> Vec<String> {
    let mut decoder =
        ChangeDecoder::new(catalog.clone(), TableSelection::default()).with_part_size(PART_SIZE);
    let mut out = Vec::new();
    for msg in messages {
        match decoder.feed(msg.clone()).expect("decodes") {
            Step::Pending => {}
            Step::Committed(tx) => out.push(summary(&tx, true)),
            Step::Part(tx) => out.push(summary(&tx, false)),
            Step::Message(m) => out.push(format!("message {m:?}")),
            Step::CatalogStale { schema, table } => panic!("stale catalog for {schema}.{table}"),
        }
    }
    out
}

/// Reads `count` deliveries, reloading the catalog when asked; returns them and the number
/// of schema notices.
async fn read(
    consumer: &mut Consumer,
    catalog: &Arc<Catalog>,
    count: usize,
) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut notices = 0;
    while out.len() < count {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("delivers within the wait")
            .expect("reads")
            .expect("open");
        match delivery {
            Delivery::Transaction { tx, complete, .. } => out.push(summary(&tx, complete)),
            Delivery::Message { message, .. } => out.push(format!("message {message:?}")),
            Delivery::SchemaChange { .. } => notices += 1,
            Delivery::CatalogStale { .. } => consumer.set_catalog(catalog.clone()),
        }
    }
    (out, notices)
}

#[tokio::test]
async fn real_transactions_come_back_identical_on_the_gateway() {
    let pg = PgCluster::start().expect("starting Postgres");
    let db = "cluster_roundtrip";
    pg.create_database(db).expect("database");
    psql(
        &pg,
        db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, big text, tags text[], price numeric,
                             at timestamptz);
         CREATE TABLE \"Other Table\" (id int PRIMARY KEY, doc jsonb, note text);
         ALTER TABLE \"Other Table\" REPLICA IDENTITY FULL;",
    );
    let (sql, connection) = tokio_postgres::connect(&pg.url(db), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let tables =
        [("public", "items"), ("public", "Other Table")].map(|(s, t)| (s.to_owned(), t.to_owned()));
    ensure_publication(&sql, "cluster_pub", &tables)
        .await
        .expect("publication");
    let selection = TableSelection {
        publication: Some("cluster_pub".into()),
        ..TableSelection::default()
    };
    let catalog = Arc::new(Catalog::load(&sql, &selection).await.expect("catalog"));

    let statements = [
        // NULLs, arrays, a value big enough to be TOASTed out of line.
        "INSERT INTO items VALUES
           (1, 'a', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g),
            '{x,NULL,\"y z\"}', 1.50, '2024-01-02 03:04:05+02'),
           (2, NULL, NULL, NULL, NULL, NULL)",
        // The TOASTed column is unchanged: pgoutput does not send it.
        "UPDATE items SET name = 'b' WHERE id = 1",
        "BEGIN;
         INSERT INTO \"Other Table\" VALUES (1, '{\"k\": [1, 2]}', 'n');
         UPDATE \"Other Table\" SET note = 'm' WHERE id = 1;
         DELETE FROM items WHERE id = 2;
         SELECT pg_logical_emit_message(true, 'outbox', 'hi');
         COMMIT",
        "SELECT pg_logical_emit_message(false, 'now', 'x\r\ny')",
        // A large transaction, decoded in parts.
        "INSERT INTO items SELECT g, 'n' || g, NULL, ARRAY[g::text], g, NULL
           FROM generate_series(10, 60) g",
        "TRUNCATE \"Other Table\"",
    ];
    let messages = record(&pg, db, &statements, 5).await;
    let expected = reference(&catalog, &messages);
    assert!(
        expected.iter().any(|s| s.contains("Unavailable")),
        "unchanged TOAST"
    );
    assert!(expected.iter().any(|s| s.contains("Array(")), "arrays");
    assert!(
        expected.iter().any(|s| s.contains("complete=false")),
        "parts"
    );
    assert!(
        expected.iter().any(|s| s.starts_with("message")),
        "logical message"
    );
    // Four transactions, the message, and the large one as six parts and its last.
    assert_eq!(expected.len(), 12, "{expected:#?}");

    let server = nats();
    let stream = open_stream(&server.url(), &settings("cluster_slot")).await;
    let mut publisher = publisher(&stream).await;
    let last_end = messages.iter().rev().find_map(|m| match m {
        PgOutput::Commit { end_lsn, .. } => Some(*end_lsn),
        _ => None,
    });
    feed_all(&mut publisher, messages.clone()).await;
    assert_eq!(publisher.flush().await.expect("flush"), last_end);

    // The gateway starts with an empty catalog and loads it when the stream asks.
    let empty = Arc::new(Catalog::new(vec![]).expect("catalog"));
    let decoder = ChangeDecoder::new(empty, TableSelection::default()).with_part_size(PART_SIZE);
    let mut consumer = Consumer::open(&stream, 1, decoder).await.expect("consumer");
    let (got, notices) = read(&mut consumer, &catalog, expected.len()).await;
    assert_eq!(got, expected);
    assert_eq!(notices, 2, "one schema notice per table");

    // From the large transaction's LSN: its parts first.
    let big_lsn = messages
        .iter()
        .filter_map(|m| match m {
            PgOutput::Begin { final_lsn, .. } => Some(*final_lsn),
            _ => None,
        })
        .nth(3)
        .expect("the fourth transaction");
    let start = sequence_for_lsn(&stream, big_lsn).await.expect("search");
    let decoder =
        ChangeDecoder::new(catalog.clone(), TableSelection::default()).with_part_size(PART_SIZE);
    let mut consumer = Consumer::open(&stream, start, decoder)
        .await
        .expect("consumer");
    let from_big: Vec<String> = expected
        .iter()
        .skip_while(|s| !s.contains(&format!("commit={big_lsn}")))
        .cloned()
        .collect();
    let (got, _) = read(&mut consumer, &catalog, from_big.len()).await;
    assert_eq!(got, from_big);
}
