//! Cluster mode (`WALCAST_NATS_URL`): one elected reader publishes the slot's changes to a
//! NATS JetStream stream ([`reader`]), every gateway feeds its hub from that stream
//! ([`gateway`]). Without a NATS URL none of this runs.

pub mod gateway;
pub mod reader;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use walcast_cluster::{ClusterStream, StreamSettings};

use crate::app::App;
use crate::config::ServeArgs;

/// How long connecting to NATS at start-up may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to NATS; unreachable is an error naming the URL. A comma-separated list names
/// several servers of one cluster: the client tries them in turn and learns the others.
pub async fn connect(url: &str) -> anyhow::Result<jetstream::Context> {
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .with_context(|| format!("WALCAST_NATS_URL: {s:?} is not a NATS server URL"))
        })
        .collect::<anyhow::Result<_>>()?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .name("walcast")
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {url} (WALCAST_NATS_URL)"))?;
    Ok(jetstream::new(client))
}

/// The stream settings from the configuration.
pub fn settings(cfg: &ServeArgs) -> StreamSettings {
    let mut settings = StreamSettings::new(cfg.slot.clone());
    settings.replicas = cfg.stream_replicas;
    settings.max_age = cfg.stream_max_age;
    settings.max_bytes = cfg.stream_max_bytes;
    settings
}

/// Creates the slot's stream or checks the existing one.
pub async fn open_stream(
    js: &jetstream::Context,
    cfg: &ServeArgs,
) -> anyhow::Result<ClusterStream> {
    let settings = settings(cfg);
    ClusterStream::open(js, &settings).await.with_context(|| {
        format!(
            "opening JetStream stream {} (is JetStream enabled on the NATS server?)",
            settings.stream_name()
        )
    })
}

/// Runs this node's roles until shutdown: the reader candidate in the background, the gateway
/// feeding the hub. A reader-only node serves no events and is ready at once.
pub async fn run(app: Arc<App>, stream: ClusterStream) -> anyhow::Result<()> {
    let role = app.cfg.role;
    tracing::info!(role = role.name(), stream = %stream.name(), "cluster mode");
    let reader = role
        .reads()
        .then(|| tokio::spawn(reader::run(app.clone(), stream.clone())));
    let result = if role.serves() {
        app.metrics.cluster.gateway.store(1, Relaxed);
        let mut gateway = gateway::Gateway::new(app.clone(), stream);
        crate::source::drive(&app, &mut gateway).await
    } else {
        app.ready.store(true, Relaxed);
        let mut shutdown = app.shutdown.clone();
        let _ = shutdown.wait_for(|stop| *stop).await;
        Ok(())
    };
    if let Some(reader) = reader {
        match tokio::time::timeout(Duration::from_secs(5), reader).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "reader stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "reader task failed"),
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
    }
    result
}
