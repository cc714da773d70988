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

use crate::app::{App, SchemaSet};

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs until shutdown. Only an error at the very first start is returned: later ones are
/// retried, subscribers staying connected.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut backoff = BACKOFF_MIN;
    // Transactions at or before this were handed to the hub already (re-sent after a reconnect).
    let mut handled = Lsn(0);
    let mut started = false;
    loop {
        let result = session(&app, &mut handled, &mut shutdown, &mut started).await;
        app.ready.store(false, Relaxed);
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
    handled: &mut Lsn,
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
    app.schemas
        .store(Arc::new(SchemaSet::build(catalog.clone())));

    let url = app.cfg.replication_url()?;
    let mut repl = ReplicationClient::connect(url)
        .await
        .context("opening the replication connection")?;
    let system = repl.identify_system().await.context("IDENTIFY_SYSTEM")?;
    if repl
        .ensure_slot(&app.cfg.slot)
        .await
        .with_context(|| format!("setting up replication slot {:?}", app.cfg.slot))?
    {
        tracing::info!(slot = %app.cfg.slot, "replication slot created");
    }
    let mut stream = repl
        .start(&app.cfg.slot, &app.cfg.publication, Lsn(0))
        .await
        .context("starting replication")?;
    tracing::info!(system = %system.system_id, timeline = system.timeline, "replication live");
    app.ready.store(true, Relaxed);
    *started = true;

    let mut decoder = ChangeDecoder::new(catalog, app.cfg.selection());
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
                // Nothing in flight: the slot may move past WAL that holds no change for us.
                if !decoder.in_transaction() && wal_end >= *handled {
                    stream.acknowledge(wal_end);
                    app.metrics.confirmed_lsn.store(wal_end.0, Relaxed);
                }
            }
            Some(ReplicationEvent::XLogData { message, .. }) => {
                handle(app, &mut decoder, &mut stream, message, handled).await?;
            }
        }
    }
}

async fn handle(
    app: &Arc<App>,
    decoder: &mut ChangeDecoder,
    stream: &mut ReplicationStream,
    message: PgOutput,
    handled: &mut Lsn,
) -> anyhow::Result<()> {
    let step = match message {
        PgOutput::Relation(rel) => {
            match decoder
                .feed(PgOutput::Relation(rel.clone()))
                .context("decoding")?
            {
                Step::CatalogStale { schema, table } => {
                    tracing::info!(%schema, %table, "table changed shape: reloading the schema");
                    let catalog = load_catalog(app).await?;
                    app.schemas
                        .store(Arc::new(SchemaSet::build(catalog.clone())));
                    app.metrics.schema_reloads.fetch_add(1, Relaxed);
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
    if let Step::Committed(tx) = step {
        if tx.end_lsn <= *handled {
            return Ok(());
        }
        app.metrics.transactions.fetch_add(1, Relaxed);
        app.metrics
            .events_decoded
            .fetch_add(tx.events.len() as u64, Relaxed);
        app.metrics
            .last_commit_micros
            .store(tx.commit_time.max(0) as u64, Relaxed);
        app.hub.dispatch(&tx);
        *handled = tx.end_lsn;
        // Every subscriber's queue accepted the transaction (or its connection is closing).
        stream.acknowledge(tx.end_lsn);
        app.metrics.confirmed_lsn.store(tx.end_lsn.0, Relaxed);
    }
    Ok(())
}
