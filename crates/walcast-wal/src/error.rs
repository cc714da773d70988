//! Errors of the replication connection.

use std::fmt;

use crate::{DecodeError, Lsn};

/// An error of the replication connection or of the slot and publication set-up.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The connection string could not be used.
    #[error("invalid replication connection string: {0}")]
    Config(String),
    /// No configured host accepted the connection.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection without an error message.
    #[error("the server closed the connection while {context}")]
    Closed { context: String },
    /// TLS negotiation or configuration failed.
    #[error("TLS: {message}")]
    Tls {
        problem: TlsProblem,
        message: String,
    },
    /// The client could not authenticate (the server's own rejection is [`WalError::Server`]).
    #[error("authentication: {0}")]
    Auth(String),
    /// The server answered with an ErrorResponse.
    #[error("{context}: {error}")]
    Server {
        context: String,
        error: Box<ServerError>,
    },
    /// The server sent something the protocol does not allow at this point.
    #[error("protocol violation while {context}: {detail}")]
    Protocol { context: String, detail: String },
    /// An XLogData payload was not a valid pgoutput message.
    #[error("undecodable WAL record at {wal_start}: {source}")]
    Decode {
        wal_start: Lsn,
        #[source]
        source: DecodeError,
    },
    /// A slot or publication name that Postgres would reject.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A query over an ordinary `tokio_postgres` client failed.
    #[error("{context}: {source}")]
    Query {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// What a TLS failure was about: what to fix depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// The TLS settings themselves (sslmode, a host name that cannot be a server name).
    Config,
    /// The root certificates to verify the server with (sslrootcert) are missing or unusable.
    RootCertificates,
    /// The client certificate or its key (sslcert, sslkey) are missing or unusable.
    ClientCertificate,
    /// The server's certificate does not verify against the root certificates.
    UntrustedCertificate,
    /// The server's certificate verifies but does not name the host connected to.
    NameMismatch,
    /// The server does not accept TLS connections and the sslmode requires TLS.
    NotOffered,
    /// The handshake failed otherwise.
    Handshake,
}

impl WalError {
    pub(crate) fn tls(problem: TlsProblem, message: impl Into<String>) -> WalError {
        WalError::Tls {
            problem,
            message: message.into(),
        }
    }

    /// The TLS problem somewhere in an error's chain of sources, wherever the error was wrapped
    /// (an `io::Error` of a pooled connection, a `tokio_postgres::Error`, an `anyhow` context).
    pub fn tls_problem_in(error: &(dyn std::error::Error + 'static)) -> Option<TlsProblem> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(WalError::Tls { problem, .. }) = e.downcast_ref::<WalError>() {
                return Some(*problem);
            }
            next = e.source().or_else(|| {
                // io::Error's source() skips its payload; the payload is where a wrapped
                // WalError sits.
                e.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            });
        }
        None
    }

    /// The SQLSTATE of a server error, e.g. `28P01` for a wrong password.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            WalError::Server { error, .. } => Some(&error.code),
            WalError::Query { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WalError {
        let context = context.into();
        move |source| WalError::Io { context, source }
    }

    pub(crate) fn protocol(context: impl Into<String>, detail: impl Into<String>) -> WalError {
        WalError::Protocol {
            context: context.into(),
            detail: detail.into(),
        }
    }
}

/// The fields of a server ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, `PANIC` (or `WARNING`, `NOTICE`... for notices).
    pub severity: String,
    /// The SQLSTATE code.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an ErrorResponse or NoticeResponse body; malformed fields are skipped
    /// rather than failing, since the message is already the report of a failure.
    pub(crate) fn from_fields(
        mut fields: postgres_protocol::message::backend::ErrorFields<'_>,
    ) -> Self {
        use fallible_iterator::FallibleIterator;
        let mut error = ServerError::default();
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                // 'V' is the untranslated severity; prefer it over the localized 'S'.
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                _ => {}
            }
        }
        error
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (DETAIL: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (HINT: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}
