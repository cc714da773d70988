//! The replication slot as a [`ChangeSource`]: WAL → decoded transactions, with the slot
//! confirmed only past what the hub has handed to every subscriber. Reconnects with backoff.

mod position;
pub mod slot;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use walcast_model::{Catalog, ChangeDecoder, LogicalMessage, Step, Transaction};
use walcast_wal::{
    ensure_publication, Lsn, PgOutput, Relation, ReplicationClient, ReplicationEvent,
    ReplicationStream, SystemInfo,
};

use crate::app::App;
use crate::source::{Change, ChangeSource};

pub use position::Position;
pub use slot::watch_slot;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Feeds the hub from the replication slot until shutdown. Only an error at the very first
/// start is returned: later ones are retried, subscribers staying connected.
pub async fn run(app: Arc<App>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut replicator = Replicator::new(app.clone(), shutdown);
    crate::source::drive(&app, &mut replicator).await
}

/// Reads the slot, one replication session after another.
pub struct Replicator {
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
    position: Position,
    /// The position when the current session began: a session that moved it was healthy.
    session_from: Position,
    /// The server and timeline of the last session: a change means a failover.
    last_system: Option<(String, u32)>,
    /// The slot was created again: the next start tells the hub its history is void.
    history_lost: bool,
    /// A session started once: later failures are retried.
    started: bool,
    /// Caught up with the server, as last told to the hub.
    live: bool,
    backoff: Duration,
    /// The wait before the next session, after a failure.
    retry: Option<Duration>,
    stopped: bool,
    session: Option<Session>,
    /// Changes decoded and not yet taken by the hub.
    pending: VecDeque<Change>,
}

/// One replication connection's state.
struct Session {
    stream: ReplicationStream,
    decoder: ChangeDecoder,
    /// Transactions committed before this position are the retention window being re-read:
    /// history for `after:`, not news.
    live_from: Lsn,
    /// A catalog reloaded mid-transaction, to publish once that transaction is delivered.
    publish: Option<Arc<Catalog>>,
}

impl ChangeSource for Replicator {
    async fn next(&mut self) -> anyhow::Result<Option<Change>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(Some(change));
            }
            if self.stopped {
                return Ok(None);
            }
            if let Some(wait) = self.retry.take() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shutdown.changed() => {
                        self.stopped = true;
                        continue;
                    }
                }
            }
            let result = if self.session.is_some() {
                self.step().await
            } else {
                self.start().await
            };
            if let Err(e) = result {
                self.interrupted(e)?;
            }
        }
    }

    /// Confirms to the slot what was delivered, held back by the hub's retention window.
    fn confirm(&mut self, upto: Lsn) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let lsn = self.position.handled().min(upto);
        if lsn > session.stream.acknowledged() {
            // `return` keeps the slot where it is: delivered, never confirmed.
            crate::failpoint!("replicator::confirm", |_| ());
            session.stream.acknowledge(lsn);
            self.app
                .metrics
                .confirmed_lsn
                .store(session.stream.acknowledged().0, Relaxed);
        }
    }
}

impl Replicator {
    pub fn new(app: Arc<App>, shutdown: watch::Receiver<bool>) -> Replicator {
        Replicator {
            app,
            shutdown,
            position: Position::default(),
            session_from: Position::default(),
            last_system: None,
            history_lost: false,
            started: false,
            live: false,
            backoff: BACKOFF_MIN,
            retry: None,
            stopped: false,
            session: None,
            pending: VecDeque::new(),
        }
    }

    fn set_live(&mut self, live: bool) {
        if self.live != live {
            self.live = live;
            self.pending.push_back(Change::Live(live));
        }
    }

    /// A session failed: final before the first start, retried with backoff after it.
    fn interrupted(&mut self, e: anyhow::Error) -> anyhow::Result<()> {
        self.session = None;
        self.set_live(false);
        if !self.started {
            return Err(e);
        }
        // A session that made progress was healthy: this failure starts the backoff over.
        if self.position != self.session_from {
            self.backoff = BACKOFF_MIN;
        }
        tracing::warn!(error = %format!("{e:#}"), retry_in = ?self.backoff, "replication interrupted");
        self.app
            .metrics
            .replication_reconnects
            .fetch_add(1, Relaxed);
        self.retry = Some(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Ok(())
    }

    /// Opens a replication session: catalog, publication, slot, then the stream.
    async fn start(&mut self) -> anyhow::Result<()> {
        self.session_from = self.position;
        let catalog = self.prepare().await?;
        let (repl, system) = self.connect().await?;
        let (confirmed, live_from) = slot::positions(&self.app).await?;
        self.pending.push_back(Change::Resumed {
            from: confirmed,
            history_lost: std::mem::take(&mut self.history_lost),
        });
        let stream = repl
            .start(&self.app.cfg.slot, &self.app.cfg.publication, Lsn(0))
            .await
            .context("starting replication")?;
        // Ready (and so serving) once the stream has caught up. After a reconnect everything
        // past what was handled is news, whenever it committed.
        let live_from = if self.position.is_start() {
            live_from
        } else {
            self.position.handled()
        };
        tracing::info!(system = %system.system_id, timeline = system.timeline, %confirmed, %live_from, "replication started");
        self.started = true;
        if confirmed >= live_from {
            self.set_live(true);
        }
        let decoder = ChangeDecoder::new(catalog, self.app.cfg.selection())
            .with_part_size(self.app.cfg.transaction_part.max(1));
        self.session = Some(Session {
            stream,
            decoder,
            live_from,
            publish: None,
        });
        Ok(())
    }

    /// Loads the catalog, makes sure the publication covers it, and hands it on.
    async fn prepare(&mut self) -> anyhow::Result<Arc<Catalog>> {
        let catalog = prepare_publication(&self.app).await?;
        self.pending.push_back(Change::Catalog(catalog.clone()));
        Ok(catalog)
    }

    /// Opens the replication connection and the slot (created again if it vanished).
    async fn connect(&mut self) -> anyhow::Result<(ReplicationClient, SystemInfo)> {
        let app = self.app.clone();
        let (repl, system, created) = slot::open(&app, app.cfg.replication_url()?).await?;
        if created && self.position != Position::default() {
            // The slot vanished while walcast ran: a failover to a server without it, or a
            // DROP. The new slot starts at the server's current position, which may lie
            // behind what was handled on the old one: comparing with it would skip new
            // transactions.
            tracing::error!(
                slot = %app.cfg.slot,
                "the replication slot had disappeared and was created again: changes committed in between are not delivered; clients should query again rather than resume from earlier cursors"
            );
            self.position = Position::default();
            self.history_lost = true;
            app.metrics.slot_recreations.fetch_add(1, Relaxed);
        }
        let now = (system.system_id.clone(), system.timeline);
        if let Some((id, timeline)) = self.last_system.as_ref().filter(|s| **s != now) {
            tracing::warn!(
                from_system = %id, from_timeline = timeline,
                system = %system.system_id, timeline = system.timeline,
                "replication now reads another server or timeline (failover)"
            );
        }
        self.last_system = Some(now);
        Ok((repl, system))
    }

    /// Reads one replication event, or stops on shutdown.
    async fn step(&mut self) -> anyhow::Result<()> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let event = tokio::select! {
            ev = session.stream.recv() => Some(ev.context("reading the replication stream")?),
            _ = self.shutdown.changed() => None,
        };
        let Some(event) = event else {
            self.stop().await;
            return Ok(());
        };
        match event {
            None => Err(anyhow!("the server ended the replication stream")),
            Some(ReplicationEvent::Keepalive { wal_end, .. }) => {
                if wal_end >= session.live_from {
                    self.set_live(true);
                }
                // Nothing in flight: the slot may move past WAL that holds no change for us.
                let in_transaction = self
                    .session
                    .as_ref()
                    .is_some_and(|s| s.decoder.in_transaction());
                self.position.idle(wal_end, in_transaction);
                self.pending.push_back(Change::Idle);
                Ok(())
            }
            Some(ReplicationEvent::XLogData { message, .. }) => {
                let started = std::time::Instant::now();
                self.decode(message).await?;
                self.app.metrics.decode_seconds.observe(started.elapsed());
                Ok(())
            }
        }
    }

    /// Reports the confirmed position and closes the stream: shutdown.
    async fn stop(&mut self) {
        self.stopped = true;
        if let Some(mut session) = self.session.take() {
            crate::failpoint!("replicator::status_update");
            session.stream.send_status().await.ok();
            session.stream.close().await.ok();
        }
    }

    fn session_mut(&mut self) -> anyhow::Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or_else(|| anyhow!("no replication session"))
    }

    /// Feeds one message to the decoder and queues what it completed.
    async fn decode(&mut self, message: PgOutput) -> anyhow::Result<()> {
        let step = match message {
            PgOutput::Relation(rel) => self.relation(rel).await?,
            other => self
                .session_mut()?
                .decoder
                .feed(other)
                .context("decoding")?,
        };
        match step {
            Step::Part(part) => self.transaction(part, false),
            Step::Committed(tx) => self.transaction(tx, true),
            Step::Message(message) => self.message(message),
            Step::Pending | Step::CatalogStale { .. } => {}
        }
        Ok(())
    }

    /// A Relation message, with the catalog reloaded when the table changed shape.
    async fn relation(&mut self, rel: Relation) -> anyhow::Result<Step> {
        let session = self.session_mut()?;
        let step = session
            .decoder
            .feed(PgOutput::Relation(rel.clone()))
            .context("decoding")?;
        let Step::CatalogStale { schema, table } = step else {
            return Ok(step);
        };
        tracing::info!(%schema, %table, "table changed shape: reloading the schema");
        // Decoding uses the new catalog at once; the schema follows once this transaction is
        // delivered, so no subscription made in between receives it.
        let catalog = load_catalog(&self.app).await?;
        self.app.metrics.schema_reloads.fetch_add(1, Relaxed);
        let session = self.session_mut()?;
        session.publish = Some(catalog.clone());
        session.decoder.set_catalog(catalog);
        match session
            .decoder
            .feed(PgOutput::Relation(rel))
            .context("decoding")?
        {
            Step::CatalogStale { schema, table } => {
                tracing::warn!(%schema, %table, "table not in the catalog after a reload; its changes are skipped");
                Ok(Step::Pending)
            }
            other => Ok(other),
        }
    }

    /// Queues a committed transaction, or the next part of one, unless it was handed on before.
    fn transaction(&mut self, mut tx: Transaction, complete: bool) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let live_from = session.live_from;
        let publish = if complete {
            session.publish.take()
        } else {
            None
        };
        let live = tx.commit_lsn >= live_from;
        let messages = std::mem::take(&mut tx.messages);
        let news = self.position.take(tx, complete);
        let end = news.as_ref().map(|tx| tx.end_lsn);
        if let Some(tx) = news {
            self.pending
                .push_back(Change::Transaction { tx, live, complete });
            // After the transaction's events, and only when they were news (not re-sent, not
            // the retention window re-read at start-up): messages are not retained.
            if complete && live && !messages.is_empty() {
                self.pending.push_back(Change::Messages(messages));
            }
        }
        if let Some(catalog) = publish {
            self.pending.push_back(Change::Catalog(catalog));
        }
        if complete && end.is_some_and(|end| end > live_from) {
            self.set_live(true);
        }
    }

    /// A non-transactional message: sent by pgoutput as soon as it is decoded, outside any
    /// transaction. One already handled (re-sent after a reconnect) or from before start-up is
    /// not news.
    fn message(&mut self, message: Arc<LogicalMessage>) {
        let Some(live_from) = self.session.as_ref().map(|s| s.live_from) else {
            return;
        };
        if !self.position.take_message(message.lsn) {
            return;
        }
        if message.lsn >= live_from {
            self.pending.push_back(Change::Messages(vec![message]));
        }
        if self.position.handled() > live_from {
            self.set_live(true);
        }
    }
}

/// Loads the catalog and makes sure the publication covers it: before a replication session
/// starts, in single-node and in cluster mode.
pub(crate) async fn prepare_publication(app: &App) -> anyhow::Result<Arc<Catalog>> {
    let catalog = load_catalog(app).await?;
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
    for t in &catalog.tables {
        if t.replica_identity != walcast_model::ReplicaIdentity::Full {
            tracing::warn!(
                table = %t.qualified_name(),
                "REPLICA IDENTITY is not FULL: updates carry no previous values and no updatedFields (ALTER TABLE {} REPLICA IDENTITY FULL)",
                t.qualified_name()
            );
        }
    }
    Ok(catalog)
}

pub(crate) async fn load_catalog(app: &App) -> anyhow::Result<Arc<Catalog>> {
    let client = app.pool.get().await.context("connecting to the database")?;
    let catalog = Catalog::load(&client, &app.cfg.selection())
        .await
        .context("loading the catalog")?;
    Ok(Arc::new(catalog))
}
