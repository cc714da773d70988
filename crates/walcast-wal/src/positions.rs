//! The server's WAL position, read over an ordinary (non-replication) connection.

use tokio_postgres::types::PgLsn;

use crate::{Lsn, WalError};

/// The server's WAL position now, as a `pg_lsn` SQL expression to embed in a larger query: the
/// insert position on a primary (a commit may be visible before it is written, with
/// `synchronous_commit = off`), the replay position on a standby, which inserts nothing itself.
pub const CURRENT_WAL_LSN_SQL: &str = "(CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)";

/// The server's WAL position now ([`CURRENT_WAL_LSN_SQL`]): no position walcast has seen a
/// commit at lies beyond it.
pub async fn current_wal_lsn(client: &tokio_postgres::Client) -> Result<Lsn, WalError> {
    const CONTEXT: &str = "reading the server's WAL position";
    let query_error = |source| WalError::Query {
        context: CONTEXT.to_owned(),
        source,
    };
    let row = client
        .query_one(&format!("SELECT {CURRENT_WAL_LSN_SQL}"), &[])
        .await
        .map_err(query_error)?;
    match row.try_get::<_, Option<PgLsn>>(0).map_err(query_error)? {
        Some(lsn) => Ok(Lsn(u64::from(lsn))),
        // pg_last_wal_replay_lsn() is NULL only on a server that never was in recovery.
        None => Err(WalError::protocol(
            CONTEXT,
            "the server reported no position",
        )),
    }
}
