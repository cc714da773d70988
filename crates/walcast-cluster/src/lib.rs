//! Cluster mode: one reader publishes a slot's changes to a NATS JetStream stream, gateways
//! read them back.
//!
//! - [`ClusterStream::open`] creates the slot's stream or checks an existing one.
//! - [`Publisher`] (the reader) feeds pgoutput messages in, pipelined and fenced, and reports
//!   the WAL position stored so far ([`Publisher::stored_up_to`]).
//! - [`Consumer`] (a gateway) reads from a stream sequence with an ordered consumer and decodes
//!   with its own [`walcast_model::ChangeDecoder`] and catalog: transactions (or parts of large
//!   ones), logical messages and schema notices, each with its stream sequence.
//!
//! Stream messages are the pgoutput messages themselves (see [`encode`]), so the gateway's
//! events are built by the same decoder and value parser as a standalone walcast's.

mod consumer;
pub mod decode;
pub mod encode;
mod error;
mod publisher;
mod stream;

pub use async_nats::jetstream::stream::StorageType;
pub use consumer::{sequence_for_lsn, Consumer, Delivery};
pub use decode::Meta;
pub use encode::{MessageKind, Position, Subjects};
pub use error::{ClusterError, ErrorKind};
pub use publisher::{Publisher, DEFAULT_MAX_IN_FLIGHT, MAX_IN_FLIGHT};
pub use stream::{ClusterStream, StreamSettings};
