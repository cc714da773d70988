//! The one error type of cluster mode; [`ClusterError::kind`] tells callers what to do.

use walcast_model::ChangeError;

/// What a caller does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another publisher appended to the stream: this reader steps down (stops reading the slot).
    Fenced,
    /// The requested start is older than the stream's first message (`CURSOR_EXPIRED`).
    CursorExpired,
    /// The requested start is not the first message of a transaction.
    NotTransactionStart,
    /// The stream exists with a configuration walcast cannot use.
    StreamConfig,
    /// Talking to NATS failed (connection, timeout, API error); retrying may help.
    Nats,
    /// A stream message walcast cannot read (written by something else, or corrupt).
    Decode,
    /// The gateway's change decoder rejected the stream's pgoutput messages.
    Change,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "stream {stream}: another publisher appended to the stream ({detail}); \
         this reader is fenced and steps down"
    )]
    Fenced { stream: String, detail: String },

    #[error(
        "stream {stream}: cursor expired: sequence {requested} is older than the first \
         message kept ({first})"
    )]
    CursorExpired {
        stream: String,
        requested: u64,
        first: u64,
    },

    #[error("stream {stream}: sequence {seq} is inside a transaction, not at its start")]
    NotTransactionStart { stream: String, seq: u64 },

    #[error(
        "stream {stream} exists with an incompatible configuration: {field} is {found}, \
         walcast needs {expected}"
    )]
    StreamConfig {
        stream: String,
        field: &'static str,
        expected: String,
        found: String,
    },

    #[error("{context}: {source}")]
    Nats {
        context: String,
        #[source]
        source: async_nats::Error,
    },

    #[error("stream message {seq}: {detail}")]
    Decode { seq: u64, detail: String },

    #[error("stream message {seq}: {source}")]
    Change {
        seq: u64,
        #[source]
        source: ChangeError,
    },

    /// A publisher is asked to go on after an error: it stays stopped, with that error's kind.
    #[error(
        "stream {stream}: the publisher stopped at an earlier error ({reason}); open a new one"
    )]
    Spent {
        stream: String,
        kind: ErrorKind,
        reason: String,
    },
}

impl ClusterError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClusterError::Fenced { .. } => ErrorKind::Fenced,
            ClusterError::CursorExpired { .. } => ErrorKind::CursorExpired,
            ClusterError::NotTransactionStart { .. } => ErrorKind::NotTransactionStart,
            ClusterError::StreamConfig { .. } => ErrorKind::StreamConfig,
            ClusterError::Nats { .. } => ErrorKind::Nats,
            ClusterError::Decode { .. } => ErrorKind::Decode,
            ClusterError::Change { .. } => ErrorKind::Change,
            ClusterError::Spent { kind, .. } => *kind,
        }
    }

    pub(crate) fn nats(
        context: impl Into<String>,
        source: impl Into<async_nats::Error>,
    ) -> ClusterError {
        ClusterError::Nats {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn decode(seq: u64, detail: impl Into<String>) -> ClusterError {
        ClusterError::Decode {
            seq,
            detail: detail.into(),
        }
    }
}
