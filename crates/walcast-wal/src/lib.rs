//! The replication stage: a logical replication connection to Postgres speaking the streaming
//! replication protocol, and the decoder of the `pgoutput` messages it carries.
//!
//! ```no_run
//! # async fn run() -> Result<(), walcast_wal::WalError> {
//! use walcast_wal::{Lsn, ReplicationClient, ReplicationEvent, PgOutput};
//! let mut client = ReplicationClient::connect("postgres://walcast@db/app").await?;
//! client.ensure_slot("walcast").await?;
//! let mut stream = client.start("walcast", "walcast", Lsn(0)).await?;
//! while let Some(event) = stream.recv().await? {
//!     if let ReplicationEvent::XLogData { message: PgOutput::Commit { end_lsn, .. }, .. } = event {
//!         // ...once the transaction's changes are safely handled:
//!         stream.acknowledge(end_lsn);
//!     }
//! }
//! # Ok(()) }
//! ```

mod config;
mod conn;
pub mod decode;
mod error;
pub mod pgoutput;
pub mod positions;
mod quote;
mod setup;
mod stream;
pub mod tls;
mod transport;
mod wire;

pub use config::ReplicationConfig;
pub use conn::{ReplicationClient, SystemInfo};
pub use decode::{decode, decode_bytes, DecodeError, DecodeProblem};
pub use error::{ServerError, TlsProblem, WalError};
pub use pgoutput::{
    Lsn, LsnParseError, PgOutput, PgTimestamp, Relation, RelationColumn, TupleValue,
    PG_EPOCH_OFFSET_MICROS,
};
pub use quote::{quote_ident, quote_literal};
pub use setup::ensure_publication;
pub use stream::{ReplicationEvent, ReplicationStream, DEFAULT_STATUS_INTERVAL};
pub use tls::{
    client_config as tls_client_config, split_conninfo, SslMode, TlsClient, TlsSettings,
};
