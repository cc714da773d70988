//! Throw-away local `nats-server` instances with JetStream, for tests.
//!
//! [`NatsServer::start`] runs `nats-server -js` on a free port of 127.0.0.1 with its store in a
//! fresh temporary directory; [`NatsCluster::start`] runs several such nodes joined by routes.
//! A node can be stopped and started again on the same port with the same store, to test what
//! survives a restart. Servers are killed on drop.
//!
//! The binary is `$WALCAST_NATS_SERVER`, else `nats-server` on PATH.

mod binary;
mod error;
mod server;

pub use binary::{find_server, SERVER_ENV};
pub use error::NatsError;
pub use server::{NatsCluster, NatsServer};
