//! What resolvers reach: the event source (the hub), the database pool, the caller.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use walcast_filter::EventFilter;
use walcast_model::{Cursor, Event, ResumePoint, Table};

use crate::session::QuerySession;

pub type EventStream = Pin<Box<dyn Stream<Item = Arc<Event>> + Send>>;

/// The connection a subscription belongs to; `on_overflow` runs when its queue is full.
#[derive(Clone)]
pub struct ConnectionHandle {
    pub id: u64,
    pub on_overflow: Arc<dyn Fn() + Send + Sync>,
}

pub struct SubscriptionRequest {
    pub table: Arc<Table>,
    pub filter: EventFilter,
    pub after: Option<ResumePoint>,
    pub connection: Option<ConnectionHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("CURSOR_EXPIRED: cursor {0} is older than the retention window; resubscribe without `after:` after reading the current state")]
    CursorExpired(String),
    #[error("too many subscriptions on this connection (limit {0})")]
    TooMany(usize),
    #[error("{0}")]
    Unavailable(String),
}

/// Where subscriptions get their events: implemented by the hub.
pub trait EventSource: Send + Sync {
    fn subscribe(&self, req: SubscriptionRequest) -> Result<EventStream, SubscribeError>;
    /// The stream position now.
    fn cursor_now(&self) -> Cursor;
}

/// The per-operation context. Cloned per operation: keep it to a few `Arc`s.
#[derive(Clone)]
pub struct Ctx {
    pub events: Arc<dyn EventSource>,
    pub pool: deadpool_postgres::Pool,
    pub role: Arc<str>,
    pub connection: Option<ConnectionHandle>,
    /// The operation's read transaction.
    pub reads: Arc<QuerySession>,
}

impl juniper::Context for Ctx {}
