//! The WebSocket endpoints: GraphQL (three sub-protocols) and Directus realtime.

pub mod close;
pub mod directus;
pub mod expiry;
pub mod frames;
pub mod operation;
pub mod operations;
pub mod outgoing;
pub mod protocol;
pub mod session;
#[cfg(test)]
mod testing;
pub mod writer;
