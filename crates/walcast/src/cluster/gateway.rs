//! A gateway: the cluster's stream as the hub's [`ChangeSource`], read with one ordered
//! consumer and decoded with this node's own catalog, as the slot would be.
//!
//! Event cursors are `(commit LSN, index)` of the same WAL on every gateway, so a cursor handed
//! out by one resumes on any other that retains the event. At start a gateway reads the stream
//! from the first transaction of its retention window, as history (retained for `after:`, not
//! delivered); a cursor older than that is `CURSOR_EXPIRED`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use walcast_cluster::{sequence_for_lsn, ClusterStream, Consumer, Delivery, ErrorKind, Meta};
use walcast_model::{Catalog, ChangeDecoder};
use walcast_wal::{Lsn, PG_EPOCH_OFFSET_MICROS};

use crate::app::App;
use crate::replicator::{load_catalog, Position};
use crate::source::{Change, ChangeSource};

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the hub does its housekeeping and the lag gauge is updated.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// A consumer that reads nothing this long while the stream holds more is reopened: an ordered
/// consumer whose NATS server went away can stay silent instead of failing.
const STALL_AFTER: Duration = Duration::from_secs(10);

pub struct Gateway {
    app: Arc<App>,
    stream: ClusterStream,
    shutdown: watch::Receiver<bool>,
    consumer: Option<Consumer>,
    /// Where the consumer reopens: after the last transaction or message handed on whole.
    /// `None` until the first start, and after falling behind the stream's retention.
    resume: Option<u64>,
    /// Messages up to this sequence were in the stream when the gateway started: history.
    history_until: u64,
    /// The last sequence delivered.
    delivered: u64,
    /// The stream's first sequence when the hub's floor was last set from it.
    head: u64,
    /// What was handed to the hub: a reopened consumer re-reads the open transaction.
    position: Position,
    /// The sequence whose table was not in the catalog: reloaded once for it.
    stale_at: Option<u64>,
    /// A catalog reloaded mid-transaction, for the hub once that transaction is delivered.
    publish: Option<Arc<Catalog>>,
    history_lost: bool,
    started: bool,
    live: bool,
    stopped: bool,
    backoff: Duration,
    retry: Option<Duration>,
    tick: tokio::time::Interval,
    /// The consumer's read position, since when it has not moved, and when that was checked.
    progress: (u64, tokio::time::Instant, tokio::time::Instant),
    pending: VecDeque<Change>,
}

impl ChangeSource for Gateway {
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
            let result = if self.consumer.is_some() {
                self.step().await
            } else {
                self.open().await
            };
            if let Err(e) = result {
                self.interrupted(e)?;
            }
        }
    }

    /// The ordered consumer holds no acks: the stream's retention is its own.
    fn confirm(&mut self, _upto: Lsn) {}
}

impl Gateway {
    pub fn new(app: Arc<App>, stream: ClusterStream) -> Gateway {
        let shutdown = app.shutdown.clone();
        Gateway {
            app,
            stream,
            shutdown,
            consumer: None,
            resume: None,
            history_until: 0,
            delivered: 0,
            head: 0,
            position: Position::default(),
            stale_at: None,
            publish: None,
            history_lost: false,
            started: false,
            live: false,
            stopped: false,
            backoff: BACKOFF_MIN,
            retry: None,
            tick: tokio::time::interval(HOUSEKEEPING_EVERY),
            progress: (0, tokio::time::Instant::now(), tokio::time::Instant::now()),
            pending: VecDeque::new(),
        }
    }

    fn set_live(&mut self, live: bool) {
        if self.live != live {
            self.live = live;
            self.pending.push_back(Change::Live(live));
        }
    }

    /// The consumer failed: final before the first start, retried with backoff after it.
    fn interrupted(&mut self, e: anyhow::Error) -> anyhow::Result<()> {
        self.consumer = None;
        self.set_live(false);
        if !self.started {
            return Err(e);
        }
        tracing::warn!(error = %format!("{e:#}"), retry_in = ?self.backoff, "stream consumer interrupted");
        self.retry = Some(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Ok(())
    }

    /// Opens the consumer: at the retention window's start the first time, after what was
    /// handed on otherwise.
    async fn open(&mut self) -> anyhow::Result<()> {
        let app = self.app.clone();
        let (first, last) = self.stream.bounds().await?;
        let start = match self.resume {
            Some(seq) => seq,
            None => {
                let (start, floor) = window_start(&app, &self.stream, first, last).await?;
                self.history_until = last;
                self.head = first;
                self.pending.push_back(Change::Resumed {
                    from: floor,
                    history_lost: std::mem::take(&mut self.history_lost),
                });
                start
            }
        };
        if !self.started {
            note_logical_messages(&app).await?;
        }
        let catalog = app.schemas.load().catalog.clone();
        let decoder = ChangeDecoder::new(catalog, app.cfg.selection())
            .with_part_size(app.cfg.transaction_part.max(1));
        let consumer = match Consumer::open(&self.stream, start, decoder).await {
            Ok(consumer) => consumer,
            Err(e) if e.kind() == ErrorKind::CursorExpired && self.resume.is_some() => {
                // Retention removed messages this gateway had not read: its subscribers' next
                // resume gets CURSOR_EXPIRED rather than a silent gap.
                tracing::error!(error = %e, "this gateway fell behind the stream's retention: events were lost to it; starting over from the stream's first transaction");
                self.resume = None;
                self.position = Position::default();
                self.history_lost = true;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(stream = %self.stream.name(), start, last, "reading the stream");
        self.consumer = Some(consumer);
        self.started = true;
        self.backoff = BACKOFF_MIN;
        self.delivered = start.saturating_sub(1);
        if start > last {
            self.set_live(true);
        }
        Ok(())
    }

    /// Hands on the next delivery, or does the housekeeping when nothing comes.
    async fn step(&mut self) -> anyhow::Result<()> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(());
        };
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery?,
            _ = self.tick.tick() => {
                return match self.housekeeping().await {
                    Some(last) => self.check_progress(last),
                    None => Ok(()),
                };
            }
            _ = self.shutdown.changed() => {
                self.stopped = true;
                return Ok(());
            }
        };
        match delivery.ok_or_else(|| anyhow!("the server closed the stream consumer"))? {
            Delivery::Transaction {
                mut tx,
                seq,
                complete,
                live,
            } => {
                self.delivered = seq;
                let news = seq > self.history_until;
                let messages = std::mem::take(&mut tx.messages);
                if let Some(tx) = self.position.take(tx, complete) {
                    self.pending.push_back(Change::Transaction {
                        tx,
                        live: news,
                        complete,
                    });
                    if complete && news && !messages.is_empty() {
                        self.pending.push_back(Change::Messages(messages));
                    }
                }
                if complete {
                    self.resume = Some(seq + 1);
                    if let Some(catalog) = self.publish.take() {
                        self.pending.push_back(Change::Catalog(catalog));
                    }
                }
                if live || seq >= self.history_until {
                    self.set_live(true);
                }
            }
            Delivery::Message { message, seq, live } => {
                self.delivered = seq;
                if self.position.take_message(message.lsn) && seq > self.history_until {
                    self.pending.push_back(Change::Messages(vec![message]));
                }
                self.resume = Some(seq + 1);
                if live || seq >= self.history_until {
                    self.set_live(true);
                }
            }
            Delivery::SchemaChange { relation, seq } => {
                self.delivered = seq;
                tracing::debug!(schema = %relation.namespace, table = %relation.name, seq, "table shape in the stream");
            }
            Delivery::CatalogStale { schema, table, seq } => {
                self.reload(schema, table, seq).await?;
            }
        }
        Ok(())
    }

    /// The stream names a table this gateway's catalog lacks or has in another shape.
    async fn reload(&mut self, schema: String, table: String, seq: u64) -> anyhow::Result<()> {
        if self.stale_at == Some(seq) {
            return Err(anyhow!(
                "table {schema}.{table} (stream message {seq}) is not in the catalog after a reload"
            ));
        }
        self.stale_at = Some(seq);
        tracing::info!(%schema, %table, "table changed shape: reloading the schema");
        let catalog = load_catalog(&self.app)
            .await
            .context("reloading the catalog")?;
        self.app.metrics.schema_reloads.fetch_add(1, Relaxed);
        if let Some(consumer) = self.consumer.as_mut() {
            consumer.set_catalog(catalog.clone());
        }
        // Decoding uses the new catalog at once; the schema follows once this transaction is
        // delivered, so no subscription made in between receives it.
        self.publish = Some(catalog);
        Ok(())
    }

    /// Hub housekeeping, and how far behind the stream's end this gateway is. Returns the
    /// stream's last sequence when it could be read.
    async fn housekeeping(&mut self) -> Option<u64> {
        self.pending.push_back(Change::Idle);
        let (lag, last) = match self.stream.bounds().await {
            Ok((first, last)) => {
                self.follow_head(first, last).await;
                let lag = i64::try_from(last.saturating_sub(self.delivered)).unwrap_or(i64::MAX);
                (lag, Some(last))
            }
            Err(_) => (-1, None),
        };
        self.app
            .metrics
            .cluster
            .gateway_lag_messages
            .store(lag, Relaxed);
        last
    }

    /// An error (so the consumer is reopened after what was handed on) when the consumer has
    /// read nothing for [`STALL_AFTER`] although the stream holds messages after its position.
    fn check_progress(&mut self, last: u64) -> anyhow::Result<()> {
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let read = consumer.next_sequence();
        let now = tokio::time::Instant::now();
        let (seen, since, checked) = self.progress;
        // A gap between checks means this gateway was busy elsewhere (the hub), not waiting on
        // the consumer: the wait starts again.
        let waiting = now.duration_since(checked) <= HOUSEKEEPING_EVERY * 3;
        if read != seen || read > last || !waiting {
            self.progress = (read, now, now);
            return Ok(());
        }
        self.progress = (seen, since, now);
        if now.duration_since(since) < STALL_AFTER {
            return Ok(());
        }
        self.progress = (0, now, now);
        Err(anyhow!(
            "the stream consumer read nothing for {STALL_AFTER:?} though the stream holds \
             sequences {read} to {last}"
        ))
    }

    /// Retention removed the stream's oldest messages: cursors before its new first whole
    /// transaction expire here too, as on a gateway started now, though the hub still
    /// retains their events.
    async fn follow_head(&mut self, first: u64, last: u64) {
        if first <= self.head || first > last {
            return;
        }
        match self.stream.meta_at(first).await {
            Ok(meta) => {
                self.head = first;
                self.pending.push_back(Change::Floor(whole_floor(&meta)));
            }
            Err(e) => tracing::debug!(error = %e, first, "reading the stream's first message"),
        }
    }
}

/// Where cursors stop being expired given the stream's first kept message: its transaction's
/// commit LSN, or past it when retention removed that transaction's start.
fn whole_floor(meta: &Meta) -> Lsn {
    if meta.tx.is_some() && meta.position.index > 0 {
        Lsn(meta.position.lsn.0 + 1)
    } else {
        meta.position.lsn
    }
}

/// The first sequence of the first transaction committed within the retention window, and
/// the position from which every event is in the stream (the hub's resume floor).
async fn window_start(
    app: &App,
    stream: &ClusterStream,
    first: u64,
    last: u64,
) -> anyhow::Result<(u64, Lsn)> {
    if last < first || last == 0 {
        // An empty stream: nothing before this moment can be resumed from.
        let (_, now) = crate::replicator::slot::positions(app).await?;
        return Ok((last + 1, now));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let retention = i64::try_from(app.cfg.retention.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now
        .saturating_sub(PG_EPOCH_OFFSET_MICROS)
        .saturating_sub(retention);
    let (mut lo, mut hi) = (first, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let meta = stream.meta_at(mid).await?;
        // A non-transactional message has no commit time: it counts as old.
        if meta.tx.is_none_or(|tx| tx.commit_time < cutoff) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo > last {
        let meta = stream.meta_at(last).await?;
        return Ok((last + 1, Lsn(meta.position.lsn.0 + 1)));
    }
    // The first message may be inside a transaction whose start retention removed: the
    // window then starts at the next whole one.
    let floor = whole_floor(&stream.meta_at(lo).await?);
    let start = sequence_for_lsn(stream, floor).await?;
    Ok((start, floor))
}

/// Whether the server sends logical messages (Postgres 14+): only then do schemas offer
/// `_logical_message`. A gateway opens no replication connection to learn it from.
async fn note_logical_messages(app: &App) -> anyhow::Result<()> {
    let client = app.pool.get().await.context("connecting to the database")?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 140000",
            &[],
        )
        .await
        .context("reading the server version")?;
    let messages: bool = row.get(0);
    if app.logical_messages.swap(messages, Relaxed) != messages {
        app.generation.send_modify(|g| *g += 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use walcast_cluster::{MessageKind, Position};

    use super::*;

    fn meta(kind: MessageKind, index: u32, tx: bool) -> Meta {
        Meta {
            seq: 7,
            kind,
            position: Position {
                lsn: Lsn(100),
                index,
            },
            tx: tx.then_some(walcast_cluster::encode::TxHeader {
                xid: 1,
                commit_time: 0,
            }),
            tx_end: None,
        }
    }

    #[test]
    fn the_floor_skips_a_transaction_whose_start_was_removed() {
        assert_eq!(whole_floor(&meta(MessageKind::Change, 0, true)), Lsn(100));
        assert_eq!(whole_floor(&meta(MessageKind::Change, 3, true)), Lsn(101));
        // A non-transactional message stands alone.
        assert_eq!(whole_floor(&meta(MessageKind::Message, 3, false)), Lsn(100));
    }
}
