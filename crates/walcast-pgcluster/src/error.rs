//! Errors of cluster management. Every variant carries enough context (the command line, its
//! stderr, the server log) to diagnose a failure from a test report alone.

use std::path::PathBuf;

/// Error of [`crate::PgCluster`] operations.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable Postgres server binaries were found.
    #[error(
        "Postgres server binaries (initdb, pg_ctl, postgres) not found; searched: {searched}.\n\
         Install them:\n  \
         Debian/Ubuntu: apt-get install postgresql\n  \
         macOS: brew install postgresql@17\n\
         or set WALCAST_PG_BINDIR to the directory containing initdb and pg_ctl"
    )]
    BinariesNotFound { searched: String },

    /// `psql` is in neither the server bin dir nor PATH.
    #[error(
        "psql not found in {bin_dir} or on PATH; install the Postgres client \
         (Debian/Ubuntu: apt-get install postgresql-client)"
    )]
    PsqlNotFound { bin_dir: PathBuf },

    /// A filesystem or process-spawn operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An external command exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    /// The server did not come up; `log_tail` holds the end of the server log.
    #[error("starting Postgres failed: `{command}` ({status}):\n{output}\n--- server log tail ---\n{log_tail}")]
    Start {
        command: String,
        status: String,
        output: String,
        log_tail: String,
    },

    /// A SQL script run through psql failed.
    #[error("psql on database {db:?} failed for SQL {sql:?}:\n{stderr}")]
    Sql {
        db: String,
        sql: String,
        stderr: String,
    },

    /// Running as root, but no unprivileged account or tool to switch to it exists.
    #[error("running as root and cannot drop privileges for initdb/postgres: {0}")]
    Privileges(String),
}

impl ClusterError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}
