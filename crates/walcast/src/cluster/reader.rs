//! The reader: whoever holds the replication slot publishes its changes to the stream.
//!
//! Every reader candidate tries to stream the slot. Postgres lets one walsender stream a slot
//! at a time; the others get SQLSTATE 55006 and stand by, trying again. The active reader
//! feeds each pgoutput message to the [`Publisher`] (which skips what the stream already
//! holds) and confirms to Postgres only what the stream acknowledged. A reader the stream
//! fences (another took over while it was paused) closes its replication connection and
//! stands by again.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures::FutureExt;
use tokio::sync::watch;
use walcast_cluster::{ClusterError, ClusterStream, ErrorKind, Publisher, DEFAULT_MAX_IN_FLIGHT};
use walcast_wal::{Lsn, PgOutput, ReplicationEvent, ReplicationStream};

use crate::app::App;
use crate::metrics::ReaderState;
use crate::replicator::{self, slot};

/// The wait between two attempts at the slot while another reader holds it.
const STANDBY_RETRY: Duration = Duration::from_millis(500);
/// How often acks are collected and the slot confirmed while no keepalive comes.
const CONFIRM_EVERY: Duration = Duration::from_millis(200);
/// How long a publish may wait on the stream before the lag is read from Postgres instead.
const STALL_REPORT: Duration = Duration::from_secs(1);
/// SQLSTATE `object_in_use`: "replication slot ... is active for PID ...".
const SLOT_ACTIVE: &str = "55006";

/// How an attempt at the slot ended.
enum Turn {
    /// Another reader streams the slot.
    Busy,
    /// Shutdown.
    Stopped,
}

/// Tries for the slot until shutdown, publishing while it holds it.
pub async fn run(app: Arc<App>, stream: ClusterStream) -> anyhow::Result<()> {
    let mut shutdown = app.shutdown.clone();
    let mut reader = Reader {
        app: app.clone(),
        stream,
        prepared: false,
        stood_by: false,
        said_standby: false,
    };
    app.metrics.cluster.set_reader(ReaderState::Standby);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut interrupted = false;
        match reader.attempt(&mut shutdown).await {
            Ok(Turn::Stopped) => return Ok(()),
            Ok(Turn::Busy) => {
                if !reader.said_standby {
                    tracing::info!(slot = %app.cfg.slot, "another reader streams the slot: standing by");
                    reader.said_standby = true;
                }
            }
            Err(e) if is_fenced(&e) => {
                app.metrics.cluster.fenced_publishes.fetch_add(1, Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "fenced by the stream: stepping down");
                reader.said_standby = false;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?STANDBY_RETRY, "reader interrupted");
                reader.said_standby = false;
                interrupted = true;
            }
        }
        reader.stood_by = true;
        app.metrics.cluster.set_reader(ReaderState::Standby);
        let lag = if interrupted {
            slot_lag(&app).await
        } else {
            -1
        };
        app.metrics.cluster.reader_lag_bytes.store(lag, Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(STANDBY_RETRY) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The slot's lag while its reader cannot publish (NATS unreachable, say): the WAL written
/// since the last position the stream acknowledged grows until publishing resumes.
async fn slot_lag(app: &App) -> i64 {
    match slot::positions(app).await {
        Ok((confirmed, now)) if confirmed.0 > 0 => {
            i64::try_from(now.0.saturating_sub(confirmed.0)).unwrap_or(i64::MAX)
        }
        _ => -1,
    }
}

fn is_fenced(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ClusterError>()
        .is_some_and(|c| c.kind() == ErrorKind::Fenced)
}

struct Reader {
    app: Arc<App>,
    stream: ClusterStream,
    /// The publication was set up once.
    prepared: bool,
    /// This node waited for the slot before: taking it now is a failover.
    stood_by: bool,
    /// Standing by was logged (once per stand-by period).
    said_standby: bool,
}

impl Reader {
    /// One attempt at the slot: stand by when another reader has it, publish until an error
    /// or shutdown otherwise.
    async fn attempt(&mut self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<Turn> {
        let app = self.app.clone();
        if !self.prepared {
            replicator::prepare_publication(&app).await?;
            self.prepared = true;
        }
        let url = with_wal_sender_timeout(app.cfg.replication_url()?, app.cfg.wal_sender_timeout);
        let (repl, _, _) = slot::open(&app, &url).await?;
        let mut wal = match repl
            .start(&app.cfg.slot, &app.cfg.publication, Lsn(0))
            .await
        {
            Ok(wal) => wal,
            Err(e) if e.sqlstate() == Some(SLOT_ACTIVE) => return Ok(Turn::Busy),
            Err(e) => return Err(anyhow!(e).context("starting replication")),
        };
        // Status updates well within the short timeout, or Postgres drops this reader.
        wal.set_status_interval(app.cfg.wal_sender_timeout / 3);
        let result = self.lead(&mut wal, shutdown).await;
        // Stepping down (or stopping): the slot is free for the next reader.
        wal.send_status().await.ok();
        wal.close().await.ok();
        result
    }

    /// Publishes the slot's changes while this node holds it.
    async fn lead(
        &mut self,
        wal: &mut ReplicationStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Turn> {
        let app = self.app.clone();
        let mut publisher = Publisher::open(&self.stream, DEFAULT_MAX_IN_FLIGHT)
            .await
            .context("taking over the stream")?;
        if self.stood_by {
            app.metrics.cluster.failovers.fetch_add(1, Relaxed);
        }
        app.metrics.cluster.set_reader(ReaderState::Active);
        let resume = publisher.resume_point();
        tracing::info!(slot = %app.cfg.slot, stream = %self.stream.name(), resume_lsn = %resume.lsn, resume_index = resume.index, "this node is the reader now");
        let mut confirm = Confirm {
            wal_end: Lsn(0),
            idle_end: Lsn(0),
            in_transaction: false,
        };
        let mut tick = tokio::time::interval(CONFIRM_EVERY);
        loop {
            tokio::select! {
                event = wal.recv() => {
                    match event.context("reading the replication stream")? {
                        None => return Err(anyhow!("the server ended the replication stream")),
                        Some(ReplicationEvent::XLogData { message, wal_end, .. }) => {
                            confirm.wal_end = confirm.wal_end.max(wal_end);
                            let commit = matches!(message, PgOutput::Commit { .. });
                            match message {
                                PgOutput::Begin { .. } => confirm.in_transaction = true,
                                PgOutput::Commit { .. } => confirm.in_transaction = false,
                                _ => {}
                            }
                            stalled(&app, wal.acknowledged(), publisher.feed(message)).await?;
                            if commit {
                                confirm.stored(&app, wal, &publisher);
                            }
                        }
                        Some(ReplicationEvent::Keepalive { wal_end, .. }) => {
                            confirm.wal_end = confirm.wal_end.max(wal_end);
                            confirm.idle_end = confirm.idle_end.max(wal_end);
                            stalled(&app, wal.acknowledged(), publisher.flush()).await?;
                            confirm.stored(&app, wal, &publisher);
                            confirm.idle(&app, wal);
                        }
                    }
                }
                _ = tick.tick() => {
                    stalled(&app, wal.acknowledged(), publisher.flush()).await?;
                    confirm.stored(&app, wal, &publisher);
                }
                _ = shutdown.changed() => {
                    publisher.flush().await.ok();
                    confirm.stored(&app, wal, &publisher);
                    return Ok(Turn::Stopped);
                }
            }
        }
    }
}

/// Awaits a publisher call. While it waits on the stream's acks longer than [`STALL_REPORT`]
/// (NATS away, say), the loop that reads the server's position is stuck: the lag is then
/// taken from Postgres, so that it grows while nothing can be stored.
async fn stalled<T>(app: &App, confirmed: Lsn, call: impl Future<Output = T>) -> T {
    let mut call = std::pin::pin!(call);
    // Most calls complete at once: no timer for them, on the path of every message.
    if let Some(out) = call.as_mut().now_or_never() {
        return out;
    }
    let start = tokio::time::Instant::now() + STALL_REPORT;
    let mut tick = tokio::time::interval_at(start, STALL_REPORT);
    loop {
        tokio::select! {
            out = &mut call => return out,
            _ = tick.tick() => {
                if let Ok((_, now)) = slot::positions(app).await {
                    let lag = now.0.saturating_sub(confirmed.0);
                    app.metrics
                        .cluster
                        .reader_lag_bytes
                        .store(i64::try_from(lag).unwrap_or(i64::MAX), Relaxed);
                }
            }
        }
    }
}

/// What the reader may confirm to Postgres.
struct Confirm {
    /// The server's WAL position, as last reported (for the lag).
    wal_end: Lsn,
    /// The position of the last keepalive: the server sent everything before it.
    idle_end: Lsn,
    /// Inside a transaction: the WAL before `wal_end` may still hold unsent changes of it.
    in_transaction: bool,
}

impl Confirm {
    /// Confirms the end of the last transaction the stream acknowledged whole.
    fn stored(&self, app: &App, wal: &mut ReplicationStream, publisher: &Publisher) {
        if let Some(lsn) = publisher.stored_up_to() {
            if lsn > wal.acknowledged() {
                // A crash between the stream's ack and the confirmation (fault tests): abort,
                // as `exit` may wait on locks other threads hold.
                #[cfg(feature = "failpoints")]
                fail::fail_point!("cluster::confirm", |_| {
                    std::process::abort();
                });
                wal.acknowledge(lsn);
            }
        }
        self.report(app, wal);
    }

    /// With every publish acknowledged (the caller flushed) and no transaction open, the WAL up
    /// to the server's position holds nothing more to publish.
    fn idle(&self, app: &App, wal: &mut ReplicationStream) {
        if !self.in_transaction && self.idle_end > wal.acknowledged() {
            wal.acknowledge(self.idle_end);
        }
        self.report(app, wal);
    }

    fn report(&self, app: &App, wal: &ReplicationStream) {
        let confirmed = wal.acknowledged();
        app.metrics.confirmed_lsn.store(confirmed.0, Relaxed);
        let lag = self.wal_end.0.saturating_sub(confirmed.0);
        app.metrics
            .cluster
            .reader_lag_bytes
            .store(i64::try_from(lag).unwrap_or(i64::MAX), Relaxed);
    }
}

/// `conninfo` with `wal_sender_timeout` set for the session, so that Postgres frees the slot
/// this long after a reader stopped answering. A connection string that sets its own
/// `options` is left as it is.
pub fn with_wal_sender_timeout(conninfo: &str, timeout: Duration) -> String {
    if conninfo.contains("options=") {
        return conninfo.to_owned();
    }
    let ms = timeout.as_millis();
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let separator = if conninfo.contains('?') { '&' } else { '?' };
        format!("{conninfo}{separator}options=-c%20wal_sender_timeout%3D{ms}ms")
    } else {
        format!("{conninfo} options='-c wal_sender_timeout={ms}ms'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_sender_timeout_joins_the_connection_string() {
        let t = Duration::from_secs(5);
        assert_eq!(
            with_wal_sender_timeout("postgres://u@h/db", t),
            "postgres://u@h/db?options=-c%20wal_sender_timeout%3D5000ms"
        );
        assert_eq!(
            with_wal_sender_timeout("postgres://u@h/db?sslmode=require", t),
            "postgres://u@h/db?sslmode=require&options=-c%20wal_sender_timeout%3D5000ms"
        );
        assert_eq!(
            with_wal_sender_timeout("host=h user=u", t),
            "host=h user=u options='-c wal_sender_timeout=5000ms'"
        );
        let own = "host=h options='-c work_mem=1MB'";
        assert_eq!(with_wal_sender_timeout(own, t), own);
    }
}
