//! Directus' realtime protocol (`WEBSOCKETS_REST_PATH`, default `/websocket`): what
//! `@directus/sdk`'s `realtime()` speaks. Requests become GraphQL documents over the caller's
//! schema, so subscriptions share the GraphQL path's hub, filters, permissions and relation
//! batching; only the messages differ.

pub mod codec;
mod encoder;
pub mod fields;
pub mod filter;
pub mod requests;
mod routes;
mod session;
#[cfg(test)]
pub(crate) mod testing;
mod translate;

pub use session::{serve, PROTOCOL};
