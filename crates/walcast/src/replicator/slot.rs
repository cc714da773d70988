//! The replication slot: creating it (on a standby too), reading its positions, watching its
//! WAL footprint.
//!
//! Logical decoding on a standby (Postgres 16+), with `WALCAST_REPLICATION_URL` naming the
//! standby and `DATABASE_URL` its primary: creating a logical slot on a standby waits for a
//! running-transactions record from the primary, which the primary writes every 15 s only while
//! it has write activity: on a quiet primary the creation may wait for good. walcast knows the
//! primary (the pool), so while the creation waits it asks the primary for such a record with
//! `pg_log_standby_snapshot()`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use walcast_wal::{Lsn, ReplicationClient, SystemInfo};

use crate::app::App;
/// How long slot creation may take before the primary is asked for a snapshot record.
const NUDGE_AFTER: Duration = Duration::from_millis(500);
/// How often it is asked again while the creation still waits.
const NUDGE_EVERY: Duration = Duration::from_secs(2);

/// Opens a replication connection to `url` and the slot (true when it was created), and
/// notes whether the server sends logical messages.
pub(crate) async fn open(
    app: &App,
    url: &str,
) -> anyhow::Result<(ReplicationClient, SystemInfo, bool)> {
    let mut repl = ReplicationClient::connect(url)
        .await
        .context("opening the replication connection")?;
    // `start` asks for logical messages on 14+ only; schemas offer `_logical_message` then.
    let messages = repl.server_major_version().is_some_and(|v| v >= 14);
    if app.logical_messages.swap(messages, Relaxed) != messages {
        app.generation.send_modify(|g| *g += 1);
    }
    let system = repl.identify_system().await.context("IDENTIFY_SYSTEM")?;
    let created = ensure_slot(app, &mut repl).await?;
    if created {
        tracing::info!(slot = %app.cfg.slot, "replication slot created");
    }
    Ok((repl, system, created))
}

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

/// The slot's confirmed position, and the server's WAL insert position now.
pub(crate) async fn positions(app: &App) -> anyhow::Result<(Lsn, Lsn)> {
    let client = app.pool.get().await.context("connecting to the database")?;
    let row = client
        .query_one(
            "SELECT (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1), \
             (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)::text",
            &[&app.cfg.slot],
        )
        .await
        .context("reading the slot position")?;
    let parse = |v: Option<String>| -> anyhow::Result<Lsn> {
        match v {
            Some(text) => text.parse::<Lsn>().map_err(|e| anyhow!(e)),
            None => Ok(Lsn(0)),
        }
    };
    Ok((parse(row.get(0))?, parse(row.get(1))?))
}

/// Reads the slot's WAL footprint every `every` into the metrics, and warns while the slot
/// comes close to `max_slot_wal_keep_size` (past it, Postgres invalidates the slot).
pub async fn watch_slot(app: Arc<App>, every: std::time::Duration) {
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Ok(client) = app.pool.get().await else {
            continue;
        };
        let row = client
            .query_opt(
                "WITH now AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END AS lsn) \
                 SELECT pg_wal_lsn_diff(now.lsn, s.restart_lsn)::bigint, \
                        pg_wal_lsn_diff(now.lsn, s.confirmed_flush_lsn)::bigint, \
                        s.safe_wal_size, \
                        pg_size_bytes(current_setting('max_slot_wal_keep_size')) \
                 FROM pg_replication_slots s, now WHERE s.slot_name = $1",
                &[&app.cfg.slot],
            )
            .await;
        let Ok(Some(row)) = row else { continue };
        let retained: Option<i64> = row.get(0);
        let lag: Option<i64> = row.get(1);
        let safe: Option<i64> = row.get(2);
        app.metrics
            .retained_wal_bytes
            .store(retained.unwrap_or(-1), Relaxed);
        app.metrics.slot_lag_bytes.store(lag.unwrap_or(-1), Relaxed);
        let keep: Option<i64> = row.get(3);
        app.metrics
            .wal_keep_size_bytes
            .store(keep.unwrap_or(-1), Relaxed);
        if let (Some(safe), Some(retained)) = (safe, retained) {
            // Less room left than the slot already holds: a burst could cost the slot.
            if safe < retained {
                tracing::warn!(
                    slot = %app.cfg.slot,
                    retained_bytes = retained,
                    bytes_left = safe,
                    "the replication slot is close to max_slot_wal_keep_size; raise it or shorten WALCAST_RETENTION"
                );
            }
        }
    }
}
