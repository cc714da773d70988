//! Cluster mode's reader and gateway against the walsender: the same backlog of N rows read by
//! pg_recvlogical, then by walcast-wal's replication client feeding `walcast_cluster::Publisher`
//! into a JetStream stream (one replica, file storage) on a throw-away nats-server; then read
//! back by a gateway's ordered consumer and `ChangeDecoder`. Then, on the same nats-server,
//! real walcast nodes: commit → client latency against a single node
//! ([`cluster_latency`](crate::scenarios::cluster_latency)) and failover gaps
//! ([`failover`](crate::scenarios::failover)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use walcast_cluster::{ClusterStream, Consumer, Delivery, Publisher, StreamSettings};
use walcast_model::{Catalog, ChangeDecoder, TableSelection};
use walcast_natscluster::NatsServer;
use walcast_wal::{Lsn, PgOutput, ReplicationClient, ReplicationEvent};

use crate::bench::Bench;
use crate::db::PUBLICATION;
use crate::scenarios::cluster_latency::{self, CompareConfig, CompareResult};
use crate::scenarios::failover::{self, FailoverConfig, FailoverResult};
use crate::scenarios::ingest::{self, IngestConfig};
use crate::stats::{rate, thousands};

pub const SLOT: &str = "walcast_bench_cluster";
/// The reader's target against pg_recvlogical.
const TARGET: f64 = 0.5;
/// Longest wait for the next message of either stream.
const STALL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub rows: u64,
    pub rows_per_tx: u64,
    /// The publisher's pipeline depth.
    pub in_flight: usize,
    pub latency: CompareConfig,
    pub failover: FailoverConfig,
}

impl ClusterConfig {
    /// The same backlog as the ingest scenario writes.
    fn ingest(&self) -> IngestConfig {
        IngestConfig {
            rows: self.rows,
            rows_per_tx: self.rows_per_tx,
            repeats: 1,
        }
    }
}

/// One timed read of the backlog.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub secs: f64,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterResult {
    pub rows: u64,
    pub rows_per_tx: u64,
    pub in_flight: usize,
    pub nats_version: String,
    pub recvlogical: Option<Timed>,
    /// Slot to stream: every message acked, `stored_up_to` at the backlog's last commit.
    pub publish: Option<Timed>,
    /// Stream to decoded transactions on a gateway.
    pub consume: Option<Timed>,
    /// Stream messages and bytes after the run.
    pub stream_messages: u64,
    pub stream_bytes: u64,
    pub latency: Option<(CompareConfig, CompareResult)>,
    pub failover: Option<(FailoverConfig, FailoverResult)>,
    pub errors: Vec<String>,
}

impl ClusterResult {
    pub fn markdown(&self) -> String {
        let n = self.rows as f64;
        let mut out = format!(
            "{} rows of 4 small columns, {} per transaction, written before reading starts; \
             nats-server {} (one node, JetStream file storage, stream with one replica), on the \
             same machine; {} publishes in flight.\n\n",
            thousands(self.rows),
            thousands(self.rows_per_tx),
            self.nats_version,
            self.in_flight
        );
        out.push_str("| reader | seconds | rows/s | vs pg_recvlogical | target |\n|---|---:|---:|---:|---|\n");
        let base = self.recvlogical.map(|t| n / t.secs);
        if let Some(t) = self.recvlogical {
            out.push_str(&format!(
                "| pg_recvlogical (pgoutput, -f /dev/null) | {:.2} | {} | 1.00x | |\n",
                t.secs,
                rate(n / t.secs)
            ));
        }
        if let Some(t) = self.publish {
            let per_sec = n / t.secs;
            let (ratio, target) = match base {
                Some(b) => (
                    format!("{:.2}x", per_sec / b),
                    format!(
                        "≥ {TARGET}x: {}",
                        if per_sec / b >= TARGET {
                            "met"
                        } else {
                            "**missed**"
                        }
                    ),
                ),
                None => ("—".into(), String::new()),
            };
            out.push_str(&format!(
                "| walcast reader: replication client → `Publisher` → stream, until every ack is in | {:.2} | {} | {ratio} | {target} |\n",
                t.secs,
                rate(per_sec)
            ));
        }
        if let Some(t) = self.consume {
            out.push_str(&format!(
                "| walcast gateway: ordered consumer → `ChangeDecoder`, the whole stream | {:.2} | {} | | |\n",
                t.secs,
                rate(n / t.secs)
            ));
        }
        if self.stream_messages > 0 {
            out.push_str(&format!(
                "\nThe stream holds {} messages, {} bytes: {:.0} bytes a row change as JetStream stores it \
                 (pgoutput relation + change, walcast headers, subject).\n",
                thousands(self.stream_messages),
                thousands(self.stream_bytes),
                self.stream_bytes as f64 / self.stream_messages as f64
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        if let Some((cfg, r)) = &self.latency {
            out.push('\n');
            out.push_str(&r.markdown(cfg));
        }
        if let Some((cfg, r)) = &self.failover {
            out.push('\n');
            out.push_str(&r.markdown(cfg));
        }
        out
    }
}

pub async fn run(bench: &mut Bench, cfg: &ClusterConfig) -> ClusterResult {
    let mut result = ClusterResult {
        rows: cfg.rows,
        rows_per_tx: cfg.rows_per_tx,
        in_flight: cfg.in_flight,
        nats_version: nats_version(),
        ..Default::default()
    };
    eprintln!("cluster: pg_recvlogical");
    match ingest::recvlogical(bench, &cfg.ingest()).await {
        Ok(run) => result.recvlogical = Some(Timed { secs: run.secs }),
        Err(e) => result.errors.push(format!("pg_recvlogical: {e:#}")),
    }
    let server = match tokio::task::spawn_blocking(NatsServer::start).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            result.errors.push(format!("starting nats-server: {e}"));
            return result;
        }
        Err(e) => {
            result.errors.push(format!("starting nats-server: {e}"));
            return result;
        }
    };
    if let Err(e) = through_the_stream(bench, cfg, &server, &mut result).await {
        result.errors.push(format!("{e:#}"));
    }
    if let Err(e) = bench.db.drop_slot(SLOT).await {
        result.errors.push(format!("dropping slot {SLOT}: {e:#}"));
    }
    let latency = cluster_latency::run(bench, &server, &cfg.latency).await;
    result.latency = Some((cfg.latency.clone(), latency));
    eprintln!("cluster: failover, {} kills", cfg.failover.kills);
    let failover = failover::run(bench, &server, &cfg.failover).await;
    result.failover = Some((cfg.failover.clone(), failover));
    result
}

fn nats_version() -> String {
    walcast_natscluster::find_server()
        .ok()
        .and_then(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .ok()
        })
        .map(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            text.trim()
                .trim_start_matches("nats-server: ")
                .trim_start_matches('v')
                .to_owned()
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn through_the_stream(
    bench: &Bench,
    cfg: &ClusterConfig,
    server: &NatsServer,
    result: &mut ClusterResult,
) -> anyhow::Result<()> {
    let client = async_nats::connect(server.url())
        .await
        .with_context(|| format!("connecting to {}", server.url()))?;
    let js = async_nats::jetstream::new(client);
    let settings = StreamSettings::new(SLOT);
    let stream = ClusterStream::open(&js, &settings).await?;

    bench.db.drop_slot(SLOT).await?;
    let mut repl = ReplicationClient::connect(&bench.db.url).await?;
    repl.ensure_slot(SLOT).await?;
    repl.close().await?;
    ingest::write(bench, &cfg.ingest()).await?;

    eprintln!("cluster: reader → stream");
    let started = Instant::now();
    publish(bench, &stream, cfg).await?;
    result.publish = Some(Timed {
        secs: started.elapsed().as_secs_f64(),
    });

    let info = js
        .get_stream(stream.name())
        .await
        .context("reading the stream's info")?
        .info()
        .await
        .context("reading the stream's info")?
        .state
        .clone();
    result.stream_messages = info.messages;
    result.stream_bytes = info.bytes;

    eprintln!("cluster: stream → gateway");
    let selection = TableSelection {
        publication: Some(PUBLICATION.into()),
        ..TableSelection::default()
    };
    let catalog = Arc::new(
        Catalog::load(bench.db.client(), &selection)
            .await
            .context("loading the catalog")?,
    );
    let started = Instant::now();
    consume(&stream, catalog, selection, cfg.rows).await?;
    result.consume = Some(Timed {
        secs: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// Streams the slot into the stream until `rows` inserts are fed and every ack is in; confirms
/// the stored position to Postgres as a reader does.
async fn publish(bench: &Bench, stream: &ClusterStream, cfg: &ClusterConfig) -> anyhow::Result<()> {
    let rows = cfg.rows;
    let repl = ReplicationClient::connect(&bench.db.url).await?;
    let mut wal = repl.start(SLOT, PUBLICATION, Lsn(0)).await?;
    let mut publisher = Publisher::open(stream, cfg.in_flight).await?;
    let mut inserts = 0u64;
    let mut last_end = None;
    while last_end.is_none() {
        let event = tokio::time::timeout(STALL, wal.recv())
            .await
            .with_context(|| format!("no WAL for {STALL:?} after {inserts} rows"))??;
        let message = match event {
            Some(ReplicationEvent::XLogData { message, .. }) => message,
            Some(ReplicationEvent::Keepalive { .. }) => continue,
            None => bail!("the replication stream ended after {inserts} rows"),
        };
        match &message {
            PgOutput::Insert { .. } => inserts += 1,
            PgOutput::Commit { end_lsn, .. } if inserts >= rows => last_end = Some(*end_lsn),
            _ => {}
        }
        publisher.feed(message).await?;
        if let Some(stored) = publisher.stored_up_to() {
            wal.acknowledge(stored);
        }
    }
    let stored = publisher.flush().await?;
    if stored != last_end {
        bail!("stored up to {stored:?} after the flush, expected {last_end:?}");
    }
    if let Some(stored) = stored {
        wal.acknowledge(stored);
    }
    wal.close().await?;
    Ok(())
}

/// Reads the stream from its start until `rows` row changes are decoded.
async fn consume(
    stream: &ClusterStream,
    catalog: Arc<Catalog>,
    selection: TableSelection,
    rows: u64,
) -> anyhow::Result<()> {
    let decoder = ChangeDecoder::new(catalog, selection);
    let mut consumer = Consumer::open(stream, 1, decoder).await?;
    let mut events = 0u64;
    while events < rows {
        let delivery = tokio::time::timeout(STALL, consumer.next())
            .await
            .with_context(|| format!("no delivery for {STALL:?} after {events} rows"))??;
        match delivery {
            Some(Delivery::Transaction { tx, .. }) => events += tx.events.len() as u64,
            Some(Delivery::CatalogStale { schema, table, .. }) => {
                bail!("the catalog lacks {schema}.{table}")
            }
            Some(Delivery::Message { .. } | Delivery::SchemaChange { .. }) => {}
            None => bail!("the consumer closed after {events} rows"),
        }
    }
    Ok(())
}
