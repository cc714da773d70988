//! One GraphQL WebSocket connection: the init handshake, authentication, operations by id,
//! keep-alive, and the close codes of each protocol.
//!
//! The session reads frames from any `Stream` and writes them to any `Sink` (a socket's halves,
//! or channels in tests); the socket writer runs as its own task (`ws::writer`).

mod connection;
mod events;
mod handle;
mod heartbeat;
mod state;
#[cfg(test)]
mod tests;

pub use crate::ws::close;
pub use connection::serve;
