//! One Directus realtime connection: authentication (and re-authentication on an open socket),
//! the heartbeat, subscriptions by `uid`, and item requests.
//!
//! The session reads frames from any `Stream` and writes them to any `Sink`; the socket writer
//! is the one of every protocol (`ws::writer`), with Directus' encoder.

mod connection;
mod handle;
mod state;
mod subscribe;
#[cfg(test)]
mod tests;

pub use connection::serve;
pub use state::PROTOCOL;
