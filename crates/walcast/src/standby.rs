//! Logical decoding on a standby (Postgres 16+), with `WALCAST_REPLICATION_URL` naming the
//! standby and `DATABASE_URL` its primary.
//!
//! Creating a logical slot on a standby waits for a running-transactions record from the
//! primary, which the primary writes every 15 s only while it has write activity: on a quiet
//! primary the creation may wait for good. walcast knows the primary (the pool), so while the
//! creation waits it asks the primary for such a record with `pg_log_standby_snapshot()`.

use std::time::Duration;

use anyhow::Context;
use walcast_wal::ReplicationClient;

use crate::app::App;

/// How long slot creation may take before the primary is asked for a snapshot record.
const NUDGE_AFTER: Duration = Duration::from_millis(500);
/// How often it is asked again while the creation still waits.
const NUDGE_EVERY: Duration = Duration::from_secs(2);

/// Creates the slot unless it exists (true when created), asking the primary for the records a
/// standby needs when replication reads from a server other than `DATABASE_URL`.
pub async fn ensure_slot(app: &App, repl: &mut ReplicationClient) -> anyhow::Result<bool> {
    let slot = app.cfg.slot.clone();
    let separate = match (&app.cfg.replication_url, app.cfg.database_url()) {
        (Some(replication), Ok(database)) => replication != database,
        _ => false,
    };
    let create = repl.ensure_slot(&slot);
    tokio::pin!(create);
    let context = || format!("setting up replication slot {slot:?}");
    if !separate {
        return create.await.with_context(context);
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + NUDGE_AFTER, NUDGE_EVERY);
    let mut nudger = Nudger::default();
    loop {
        tokio::select! {
            created = &mut create => return created.with_context(context),
            _ = tick.tick() => nudger.nudge(app).await,
        }
    }
}

#[derive(Default)]
struct Nudger {
    asked: bool,
    failed: bool,
}

impl Nudger {
    async fn nudge(&mut self, app: &App) {
        match log_standby_snapshot(app).await {
            Ok(true) => {
                if !self.asked {
                    tracing::info!(
                        slot = %app.cfg.slot,
                        "creating the slot on the standby waits for a running-transactions record of the primary: asking the primary (DATABASE_URL) for one with pg_log_standby_snapshot()"
                    );
                    self.asked = true;
                }
            }
            // Not a primary of 16+: the slot is not created on a standby of it.
            Ok(false) => {}
            Err(e) => {
                if !self.failed {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "creating the slot on the standby waits for a running-transactions record of the primary, and asking the primary for one failed; the primary writes one every 15 s while it has write activity, or GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO the walcast role"
                    );
                    self.failed = true;
                }
            }
        }
    }
}

/// `SELECT pg_log_standby_snapshot()` on the `DATABASE_URL` server when it is a primary of
/// Postgres 16 or newer; false when it is not one.
async fn log_standby_snapshot(app: &App) -> anyhow::Result<bool> {
    let client = app
        .pool
        .get()
        .await
        .context("connecting to the primary (DATABASE_URL)")?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 160000 AND NOT pg_is_in_recovery()",
            &[],
        )
        .await
        .context("reading the primary's version and role")?;
    if !row.get::<_, bool>(0) {
        return Ok(false);
    }
    client
        .execute("SELECT pg_log_standby_snapshot()", &[])
        .await
        .context("SELECT pg_log_standby_snapshot() on the primary")?;
    Ok(true)
}
