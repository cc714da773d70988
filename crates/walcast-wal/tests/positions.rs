//! The server's WAL position on a primary and on a standby.

mod common;

use std::time::Duration;

use common::{client, psql, start_cluster};
use walcast_pgcluster::{ClusterOptions, StandbyOptions};
use walcast_wal::positions::current_wal_lsn;
use walcast_wal::Lsn;

#[tokio::test]
async fn primary_and_standby_report_their_wal_position() {
    let mut primary = start_cluster(&ClusterOptions::default());
    let on_primary = client(&primary.url("postgres")).await;
    let before = current_wal_lsn(&on_primary)
        .await
        .expect("primary position");
    psql(
        &primary,
        "postgres",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    );
    let after = current_wal_lsn(&on_primary)
        .await
        .expect("primary position");
    assert!(after > before, "{after} after {before}");
    let written: Lsn = psql(&primary, "postgres", "SELECT pg_current_wal_lsn()")
        .parse()
        .expect("an LSN");
    assert!(after >= written, "insert position {after} before {written}");

    let standby = primary
        .start_standby(&StandbyOptions::default())
        .unwrap_or_else(|e| panic!("starting a standby: {e}"));
    primary
        .wait_replayed(&standby, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let on_standby = client(&standby.url("postgres")).await;
    let replayed = current_wal_lsn(&on_standby)
        .await
        .expect("standby position");
    assert!(
        replayed >= after,
        "standby at {replayed}, primary wrote {after}"
    );
}
