//! The WebSocket endpoints: GraphQL (three sub-protocols) and Directus realtime.

pub mod directus;
pub mod operation;
pub mod protocol;
pub mod session;
