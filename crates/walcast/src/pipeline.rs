//! The replication loop: WAL → decoded transactions → the hub, with the slot confirmed only past
//! what the hub has handed to every subscriber. Reconnects with backoff.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use walcast_model::{Catalog, ChangeDecoder, Step};
use walcast_wal::{
    ensure_publication, Lsn, PgOutput, ReplicationClient, ReplicationEvent, ReplicationStream,
};

use crate::app::App;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What was handed to the hub already; a reconnect re-sends from the slot's confirmed position,
/// and this is skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Handled {
    /// Transactions committed before this position (and the WAL before it) are done.
    lsn: Lsn,
    /// A transaction handed on in parts, not complete: its commit LSN and how many of its events
    /// were delivered.
    part: Option<(Lsn, u32)>,
}

/// Runs until shutdown. Only an error at the very first start is returned: later ones are
/// retried, subscribers staying connected.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut backoff = BACKOFF_MIN;
    let mut handled = Handled::default();
    // The server and timeline of the last session: a change means a failover.
    let mut last_system = None;
    let mut started = false;
    loop {
        let streamed_before = handled;
        let result = session(
            &app,
            &mut handled,
            &mut last_system,
            &mut shutdown,
            &mut started,
        )
        .await;
        app.ready.store(false, Relaxed);
        // A session that made progress was healthy: the next failure starts the backoff over.
        if handled != streamed_before {
            backoff = BACKOFF_MIN;
        }
        match result {
            Ok(()) => return Ok(()),
            Err(e) if !started => return Err(e),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "replication interrupted");
                app.metrics.replication_reconnects.fetch_add(1, Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn load_catalog(app: &App) -> anyhow::Result<Arc<Catalog>> {
    let client = app.pool.get().await.context("connecting to the database")?;
    let catalog = Catalog::load(&client, &app.cfg.selection())
        .await
        .context("loading the catalog")?;
    Ok(Arc::new(catalog))
}

async fn session(
    app: &Arc<App>,
    handled: &mut Handled,
    last_system: &mut Option<(String, u32)>,
    shutdown: &mut watch::Receiver<bool>,
    started: &mut bool,
) -> anyhow::Result<()> {
    let catalog = load_catalog(app).await?;
    {
        let client = app.pool.get().await.context("connecting to the database")?;
        let tables: Vec<(String, String)> = catalog
            .tables
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        if ensure_publication(&client, &app.cfg.publication, &tables)
            .await
            .context("setting up the publication")?
        {
            tracing::info!(publication = %app.cfg.publication, tables = tables.len(), "publication created");
        }
    }
    for t in &catalog.tables {
        if t.replica_identity != walcast_model::ReplicaIdentity::Full {
            tracing::warn!(
                table = %t.qualified_name(),
                "REPLICA IDENTITY is not FULL: updates carry no previous values and no updatedFields (ALTER TABLE {} REPLICA IDENTITY FULL)",
                t.qualified_name()
            );
        }
    }
    app.set_catalog(catalog.clone());

    let url = app.cfg.replication_url()?;
    let mut repl = ReplicationClient::connect(url)
        .await
        .context("opening the replication connection")?;
    // `start` asks for logical messages on 14+ only; schemas offer `_logical_message` then.
    let messages = repl.server_major_version().is_some_and(|v| v >= 14);
    if app.logical_messages.swap(messages, Relaxed) != messages {
        app.generation.send_modify(|g| *g += 1);
    }
    let system = repl.identify_system().await.context("IDENTIFY_SYSTEM")?;
    if crate::standby::ensure_slot(app, &mut repl).await? {
        tracing::info!(slot = %app.cfg.slot, "replication slot created");
        if *handled != Handled::default() {
            // The slot vanished while walcast ran: a failover to a server without it, or a
            // DROP. The new slot starts at the server's current position, which may lie behind
            // what was handled on the old one: comparing with it would skip new transactions.
            tracing::error!(
                slot = %app.cfg.slot,
                "the replication slot had disappeared and was created again: changes committed in between are not delivered; clients should query again rather than resume from earlier cursors"
            );
            *handled = Handled::default();
            app.hub.forget_history();
            app.metrics.slot_recreations.fetch_add(1, Relaxed);
        }
    }
    if let Some((id, timeline)) = last_system.as_ref() {
        if *id != system.system_id || *timeline != system.timeline {
            tracing::warn!(
                from_system = %id, from_timeline = timeline,
                system = %system.system_id, timeline = system.timeline,
                "replication now reads another server or timeline (failover)"
            );
        }
    }
    *last_system = Some((system.system_id.clone(), system.timeline));
    let (confirmed, live_from) = positions(app).await?;
    app.hub.set_floor(confirmed);
    let mut stream = repl
        .start(&app.cfg.slot, &app.cfg.publication, Lsn(0))
        .await
        .context("starting replication")?;
    // Transactions committed before this position are the retention window being re-read:
    // history for `after:`, not news. Ready (and so serving) once the stream has caught up.
    // After a reconnect everything past what was handled is news, whenever it committed.
    let live_from = if handled.lsn.0 == 0 {
        live_from
    } else {
        handled.lsn
    };
    tracing::info!(system = %system.system_id, timeline = system.timeline, %confirmed, %live_from, "replication started");
    *started = true;
    let mark_ready = |app: &App| {
        if !app.ready.swap(true, Relaxed) {
            tracing::info!("replication live");
        }
    };
    if confirmed >= live_from {
        mark_ready(app);
    }

    let mut decoder = ChangeDecoder::new(catalog, app.cfg.selection())
        .with_part_size(app.cfg.transaction_part.max(1));
    // A catalog reloaded mid-transaction, to publish once that transaction is delivered.
    let mut publish: Option<Arc<Catalog>> = None;
    loop {
        let event = tokio::select! {
            ev = stream.recv() => ev.context("reading the replication stream")?,
            _ = shutdown.changed() => {
                stream.send_status().await.ok();
                stream.close().await.ok();
                return Ok(());
            }
        };
        match event {
            None => return Err(anyhow!("the server ended the replication stream")),
            Some(ReplicationEvent::Keepalive { wal_end, .. }) => {
                if wal_end >= live_from {
                    mark_ready(app);
                }
                // Nothing in flight: the slot may move past WAL that holds no change for us.
                if !decoder.in_transaction() && wal_end >= handled.lsn {
                    handled.lsn = wal_end;
                }
                app.hub.evict();
                confirm(app, &mut stream, handled.lsn);
            }
            Some(ReplicationEvent::XLogData { message, .. }) => {
                let started = std::time::Instant::now();
                let outcome =
                    handle(app, &mut decoder, message, handled, live_from, &mut publish).await?;
                app.metrics.decode_seconds.observe(started.elapsed());
                if let Some(end) = outcome {
                    if end > live_from {
                        mark_ready(app);
                    }
                    confirm(app, &mut stream, handled.lsn);
                }
            }
        }
    }
}

/// The slot's confirmed position, and the server's WAL insert position now.
async fn positions(app: &App) -> anyhow::Result<(Lsn, Lsn)> {
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

/// Confirms to the slot what was delivered, held back by the retention window.
fn confirm(app: &App, stream: &mut ReplicationStream, handled: Lsn) {
    let lsn = app.hub.confirmable(handled);
    stream.acknowledge(lsn);
    app.metrics
        .confirmed_lsn
        .store(stream.acknowledged().0, Relaxed);
}

/// Feeds one message; returns the end of a transaction it completed.
async fn handle(
    app: &Arc<App>,
    decoder: &mut ChangeDecoder,
    message: PgOutput,
    handled: &mut Handled,
    live_from: Lsn,
    publish: &mut Option<Arc<Catalog>>,
) -> anyhow::Result<Option<Lsn>> {
    let step = match message {
        PgOutput::Relation(rel) => {
            match decoder
                .feed(PgOutput::Relation(rel.clone()))
                .context("decoding")?
            {
                Step::CatalogStale { schema, table } => {
                    tracing::info!(%schema, %table, "table changed shape: reloading the schema");
                    // Decoding uses the new catalog at once; the schema follows once this
                    // transaction is delivered, so no subscription made in between receives it.
                    let catalog = load_catalog(app).await?;
                    app.metrics.schema_reloads.fetch_add(1, Relaxed);
                    *publish = Some(catalog.clone());
                    decoder.set_catalog(catalog);
                    match decoder.feed(PgOutput::Relation(rel)).context("decoding")? {
                        Step::CatalogStale { schema, table } => {
                            tracing::warn!(%schema, %table, "table not in the catalog after a reload; its changes are skipped");
                            Step::Pending
                        }
                        other => other,
                    }
                }
                other => other,
            }
        }
        other => decoder.feed(other).context("decoding")?,
    };
    match step {
        Step::Part(part) => {
            deliver(app, part, handled, live_from, false).await;
            Ok(None)
        }
        Step::Committed(mut tx) => {
            let messages = std::mem::take(&mut tx.messages);
            let live = tx.commit_lsn >= live_from;
            let outcome = deliver(app, tx, handled, live_from, true).await;
            // After the transaction's events, and only when they were news (not re-sent, not
            // the retention window re-read at start-up): messages are not retained.
            if outcome.is_some() && live {
                app.hub.messages.publish(&messages);
            }
            if let Some(catalog) = publish.take() {
                app.set_catalog(catalog);
            }
            Ok(outcome)
        }
        Step::Message(message) => {
            // Non-transactional: sent by pgoutput as soon as it is decoded, outside any
            // transaction. One already handled (re-sent after a reconnect) or from before
            // start-up is not news.
            if message.lsn < handled.lsn {
                return Ok(None);
            }
            if message.lsn >= live_from {
                app.hub.messages.publish(std::slice::from_ref(&message));
            }
            handled.lsn = walcast_wal::Lsn(message.lsn.0 + 1);
            Ok(Some(handled.lsn))
        }
        Step::Pending | Step::CatalogStale { .. } => Ok(None),
    }
}

/// Hands a committed transaction, or the next part of one, to the hub; returns the
/// transaction's end when `complete` and it was not a re-sent one.
async fn deliver(
    app: &Arc<App>,
    mut tx: walcast_model::Transaction,
    handled: &mut Handled,
    live_from: Lsn,
    complete: bool,
) -> Option<Lsn> {
    // Re-sent after a reconnect: already retained and delivered. (A commit record starts after
    // the end of every transaction the server sent before it.)
    if tx.commit_lsn < handled.lsn {
        return None;
    }
    // The first parts of this transaction were delivered before the reconnect.
    if let Some((lsn, delivered)) = handled.part {
        if lsn == tx.commit_lsn {
            tx.events.retain(|e| e.cursor.seq >= delivered);
        }
    }
    if tx.first_seq == 0 {
        app.metrics.transactions.fetch_add(1, Relaxed);
    }
    count_events(&app.metrics, &tx);
    app.metrics
        .last_commit_micros
        .store(tx.commit_time.max(0) as u64, Relaxed);
    // Every subscriber's queue accepts the events, or its connection is closed as slow: the
    // wait for a backlogged one is what paces a large transaction.
    app.hub
        .dispatch(&tx, tx.commit_lsn >= live_from, &app.pool)
        .await;
    if complete {
        *handled = Handled {
            lsn: tx.end_lsn,
            part: None,
        };
        Some(tx.end_lsn)
    } else {
        let delivered = tx.events.last().map_or(0, |e| e.cursor.seq + 1);
        let before = handled.part.filter(|(lsn, _)| *lsn == tx.commit_lsn);
        handled.part = Some((tx.commit_lsn, delivered.max(before.map_or(0, |(_, n)| n))));
        None
    }
}

/// Counts a transaction's events by table and kind, with one label lookup per run of events.
fn count_events(metrics: &crate::metrics::Metrics, tx: &walcast_model::Transaction) {
    let mut runs: Vec<(u32, walcast_model::Op, &str, i64)> = Vec::new();
    for ev in &tx.events {
        match runs.last_mut() {
            Some((oid, op, _, n)) if *oid == ev.table.oid && *op == ev.op => *n += 1,
            _ => runs.push((ev.table.oid, ev.op, &ev.table.gql_name, 1)),
        }
    }
    for (_, op, table, n) in runs {
        metrics.events_decoded.add(&[table, op.as_str()], n);
    }
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
