//! The subcommands.

pub mod check;
pub mod demo;
pub mod schema;
pub mod serve;
pub mod tail;

use tokio::sync::watch;

/// Listens for SIGINT and SIGTERM from now on (not from the first poll, as `ctrl_c` would), so
/// a signal during a slow start is not fatal; the receiver turns `true` on the first.
pub(crate) fn stop_signal() -> anyhow::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    {
        use anyhow::Context;
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(true);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Resolves once [`stop_signal`]'s receiver turns `true`.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which happens only after it sent.
    let _ = rx.wait_for(|stop| *stop).await;
}
