//! Helpers shared by the integration tests: one cluster per test binary, a database per test,
//! and bounded waits so a broken stream fails a test instead of hanging it.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use walcast_pgcluster::{ClusterOptions, PgCluster};
use walcast_wal::{Lsn, PgOutput, ReplicationEvent, ReplicationStream, WalError};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| PgCluster::start().unwrap_or_else(|e| panic!("starting Postgres: {e}")))
}

pub fn start_cluster(options: &ClusterOptions) -> PgCluster {
    PgCluster::start_with(options).unwrap_or_else(|e| panic!("starting Postgres: {e}"))
}

/// A fresh database named after the test.
pub fn database(cluster: &PgCluster, name: &str) -> String {
    cluster
        .create_database(name)
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    name.to_owned()
}

pub fn psql(cluster: &PgCluster, db: &str, sql: &str) -> String {
    cluster
        .psql(db, sql)
        .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
}

pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// The next event, failing the test after [`WAIT`].
pub async fn next_event(
    stream: &mut ReplicationStream,
) -> Result<Option<ReplicationEvent>, WalError> {
    tokio::time::timeout(WAIT, stream.recv())
        .await
        .unwrap_or_else(|_| panic!("no replication event within {WAIT:?}"))
}

/// The next pgoutput message, skipping keepalives.
pub async fn next_message(stream: &mut ReplicationStream) -> PgOutput {
    loop {
        match next_event(stream).await {
            Ok(Some(ReplicationEvent::XLogData { message, .. })) => return message,
            Ok(Some(ReplicationEvent::Keepalive { .. })) => {}
            Ok(None) => panic!("the replication stream ended"),
            Err(e) => panic!("replication stream failed: {e}"),
        }
    }
}

pub fn confirmed_flush_lsn(cluster: &PgCluster, db: &str, slot: &str) -> Lsn {
    let out = psql(
        cluster,
        db,
        &format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    );
    out.parse()
        .unwrap_or_else(|e| panic!("confirmed_flush_lsn {out:?}: {e}"))
}

/// Polls `check` until it returns true, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
