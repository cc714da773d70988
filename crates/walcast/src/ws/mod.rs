//! The GraphQL WebSocket endpoint.

pub mod operation;
pub mod protocol;
pub mod session;
