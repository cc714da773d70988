//! The database side of one query operation: every read of the operation runs in one
//! REPEATABLE READ transaction, and `_cursor` names its snapshot, so a subscription started
//! `after:` it receives exactly the changes the reads did not see.

use std::str::FromStr;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{Mutex, MutexGuard};
use walcast_model::{ResumePoint, Snapshot};
use walcast_wal::Lsn;

use crate::error::Error;

pub struct Open {
    client: Option<Object>,
    pub snapshot: Snapshot,
}

impl Open {
    pub fn client(&self) -> Result<&Object, Error> {
        self.client.as_ref().ok_or(Error::TransactionEnded)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        // Never hand a connection still inside a transaction back to the pool.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

pub struct QuerySession {
    pool: Pool,
    open: Mutex<Option<Open>>,
}

/// The server's WAL position now (its replay position on a standby).
async fn server_position(client: &tokio_postgres::Client) -> Result<Lsn, Error> {
    let lsn: String = client
        .query_one(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_insert_lsn() END)::text",
            &[],
        )
        .await
        .map_err(Error::database)?
        .get(0);
    Lsn::from_str(&lsn).map_err(Error::database)
}

/// Refuses a resume point from beyond the server's WAL position: walcast never issued it, and a
/// snapshot cursor from the future would replay the whole retention window.
pub async fn check_issued(pool: &Pool, point: &ResumePoint) -> Result<(), Error> {
    let (lsn, consistent) = match point {
        ResumePoint::After(cursor) => (cursor.lsn, true),
        ResumePoint::Snapshot(snap) => (
            snap.lsn,
            snap.xmin <= snap.xmax && snap.xip.iter().all(|x| (snap.xmin..snap.xmax).contains(x)),
        ),
    };
    let client = pool.get().await?;
    let now = server_position(&client).await?;
    if lsn > now || !consistent {
        return Err(Error::CursorNotIssued {
            cursor: point.encode(),
            position: now.to_string(),
        });
    }
    Ok(())
}

impl QuerySession {
    pub fn new(pool: Pool) -> QuerySession {
        QuerySession {
            pool,
            open: Mutex::new(None),
        }
    }

    /// The operation's transaction, begun on first use.
    pub async fn get(&self) -> Result<MutexGuard<'_, Option<Open>>, Error> {
        let mut guard = self.open.lock().await;
        if guard.is_none() {
            let client = self.pool.get().await?;
            // Read before the snapshot: whatever it does not see commits after this position.
            let lsn = server_position(&client).await?;
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(Error::database)?;
            let snap: String = client
                .query_one("SELECT pg_current_snapshot()::text", &[])
                .await
                .map_err(Error::database)?
                .get(0);
            let snapshot = Snapshot::from_pg(lsn, &snap)
                .ok_or_else(|| Error::database(format!("unreadable snapshot {snap:?}")))?;
            *guard = Some(Open {
                client: Some(client),
                snapshot,
            });
        }
        Ok(guard)
    }

    /// Ends the transaction, if one was begun.
    pub async fn finish(&self) {
        let mut guard = self.open.lock().await;
        if let Some(mut open) = guard.take() {
            if let Some(client) = open.client.take() {
                if client.batch_execute("COMMIT").await.is_err() {
                    drop(Object::take(client));
                }
            }
        }
    }
}
