//! `walcast serve`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use walcast_model::Catalog;

use crate::app::{App, AppParts};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::{AuthMode, ServeArgs};
use crate::hub::{Hub, HubSource};
use crate::metrics::Metrics;
use crate::permissions::Permissions;
use crate::server::listener::{self, ConnectionLimit};
use crate::{cluster, db, replicator, server};

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP re-reads tokens, permissions and the catalog, without dropping connections.
fn spawn_reload_on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            app.reload_auth();
            match app.pool.get().await {
                Ok(client) => match Catalog::load(&client, &app.cfg.selection()).await {
                    Ok(catalog) => app.set_catalog(Arc::new(catalog)),
                    Err(e) => tracing::error!(error = %e, "catalog not reloaded"),
                },
                Err(e) => tracing::error!(error = %e, "catalog not reloaded"),
            }
        }
    });
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.print_config {
        println!("{}", crate::config::effective_config(&args));
        return Ok(());
    }
    serve_until(args, termination(), |_| {}).await
}

/// Serves until `stop` resolves; `on_ready` gets the bound address.
pub async fn serve_until(
    args: ServeArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    args.validate()?;
    let pool = db::pool(args.database_url()?)?;
    let catalog = {
        let client = pool
            .get()
            .await
            .context("connecting to the database (DATABASE_URL)")?;
        db::preflight(&client).await?;
        Arc::new(
            Catalog::load(&client, &args.selection())
                .await
                .context("loading the catalog")?,
        )
    };
    // Cluster mode: the stream must be there before anything is served.
    let stream = match args.nats_url.as_deref() {
        Some(url) => {
            let js = cluster::connect(url).await?;
            Some(cluster::open_stream(&js, &args).await?)
        }
        None => None,
    };
    let auth = Authenticator::from_config(&AuthConfig {
        tokens_file: args.tokens_file.clone(),
        jwt_secret: args.jwt_secret.clone(),
        jwt_public_key: args.jwt_public_key.clone(),
    })?;
    let permissions = Permissions::load(args.permissions_file.as_deref())?;
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(
        args.client_queue,
        args.retention,
        args.retention_max_events,
        metrics.clone(),
    );
    let source = Arc::new(HubSource(hub.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let listen = args.listen;
    let app = Arc::new(App::new(AppParts {
        cfg: args,
        catalog,
        hub,
        source,
        pool,
        auth,
        permissions,
        metrics: metrics.clone(),
        shutdown: shutdown_rx.clone(),
    }));
    spawn_reload_on_sighup(app.clone());
    tokio::spawn(replicator::watch_slot(app.clone(), Duration::from_secs(10)));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (WALCAST_LISTEN)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut replication = match stream {
        Some(stream) => tokio::spawn(cluster::run(app.clone(), stream)),
        None => tokio::spawn(replicator::run(app.clone(), shutdown_rx.clone())),
    };

    // The first replication start decides whether serving makes sense at all.
    let mut first = shutdown_rx.clone();
    loop {
        if app.is_ready() {
            break;
        }
        if replication.is_finished() {
            return match (&mut replication).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("replication task failed: {e}")),
            };
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = first.changed() => return Ok(()),
        }
    }

    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    if let Some(metrics_addr) = app.cfg.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("listening on {metrics_addr} (WALCAST_METRICS_LISTEN)"))?;
        let limit = Arc::new(ConnectionLimit::new(64, || 0));
        tokio::spawn(listener::serve(
            metrics_listener,
            server::metrics_routes(app.clone()),
            limit,
            app.cfg.http_header_timeout,
            shutdown_rx.clone(),
        ));
        tracing::info!(addr = %metrics_addr, "serving /metrics");
    } else if app.cfg.metrics_token.is_none() && app.cfg.auth != AuthMode::Public {
        tracing::warn!(
            "/metrics is open to anyone who reaches {addr} and names tables and roles: set \
             WALCAST_METRICS_TOKEN or WALCAST_METRICS_LISTEN"
        );
    }
    let sockets = app.metrics.clone();
    let limit = Arc::new(ConnectionLimit::new(
        app.cfg.max_connections as u64,
        move || sockets.connections.load(Relaxed),
    ));
    let server = listener::serve(
        listener,
        server::routes(app.clone()),
        limit,
        app.cfg.http_header_timeout,
        shutdown_rx.clone(),
    );
    tracing::info!(%addr, path = %app.cfg.graphql_path, "serving GraphQL over HTTP and WebSocket");
    on_ready(addr);
    let mut server = std::pin::pin!(server);
    let mut signalled = shutdown_rx.clone();
    // The listener returns only once the signal came; it may already have drained.
    let drained = tokio::select! {
        _ = &mut server => true,
        _ = signalled.wait_for(|stopping| *stopping) => false,
    };
    // One deadline for the whole stop, its parts waited on together: in-flight HTTP requests,
    // the sockets (upgraded connections the HTTP server no longer tracks close themselves on the
    // signal, each within the writer's close grace) and replication (which confirms the slot).
    let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
    let (_, sockets, replicated) = tokio::join!(
        tokio::time::timeout_at(deadline, async {
            if !drained {
                server.await;
            }
        }),
        tokio::time::timeout_at(deadline, sockets_closed(&metrics)),
        tokio::time::timeout_at(deadline, replication),
    );
    if sockets.is_err() {
        let open = metrics.connections.load(Relaxed);
        tracing::warn!(open, "sockets still open at the stop deadline");
    }
    match replicated {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(anyhow::anyhow!("replication task failed: {e}")),
        Err(_) => {
            tracing::warn!(deadline = ?STOP_DEADLINE, "replication did not stop in time");
            Ok(())
        }
    }
}

/// How long the stop may take after the signal, past the sockets' close grace
/// ([`crate::ws::writer::CLOSE_GRACE`]) so that a slow client still gets its close.
const STOP_DEADLINE: Duration = Duration::from_secs(3);

async fn sockets_closed(metrics: &Metrics) {
    while metrics.connections.load(Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
