//! What resolvers reach: the event source (the hub), the database pool, the caller.

use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::Stream;
use std::collections::BTreeSet;
use walcast_filter::{EventFilter, RowFilter};
use walcast_model::{Cursor, Event, LogicalMessage, ResumePoint, Table};

pub use crate::error::SubscribeError;
use crate::session::QuerySession;
use crate::shared::{Outbox, Sharing};

pub type EventStream = Pin<Box<dyn Stream<Item = Arc<Event>> + Send>>;
pub type MessageStream = Pin<Box<dyn Stream<Item = Arc<LogicalMessage>> + Send>>;

pub use walcast_access::{Access, MessagePrefixes};

/// A caller's access, swapped when permissions are reloaded, so live subscriptions follow the
/// new rules: a table no longer granted ends them.
pub type SharedAccess = Arc<ArcSwap<Access>>;

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
    pub access: SharedAccess,
}

/// A subscription to logical messages.
pub struct MessageRequest {
    /// The prefixes asked for (each one checked against the caller's grant); None: every
    /// prefix the caller may read, now and after a permissions reload.
    pub prefixes: Option<BTreeSet<String>>,
    pub connection: Option<ConnectionHandle>,
    pub access: SharedAccess,
}

/// Where subscriptions get their events: implemented by the hub.
pub trait EventSource: Send + Sync {
    fn subscribe(&self, req: SubscriptionRequest) -> Result<EventStream, SubscribeError>;
    /// The stream position now.
    fn cursor_now(&self) -> Cursor;
    /// Logical messages as they are committed (or, non-transactional, as they are written).
    fn subscribe_messages(&self, _req: MessageRequest) -> Result<MessageStream, SubscribeError> {
        Err(SubscribeError::Unavailable(
            "logical messages are not available from this event source".into(),
        ))
    }
}

/// The per-operation context. Cloned per operation: keep it to a few `Arc`s.
#[derive(Clone)]
pub struct Ctx {
    pub events: Arc<dyn EventSource>,
    pub pool: deadpool_postgres::Pool,
    pub connection: Option<ConnectionHandle>,
    /// The operation's read transaction.
    pub reads: Arc<QuerySession>,
    /// Each event's serialised payload, taken by the socket layer with the stream item.
    pub outbox: Arc<Outbox>,
    /// Set for socket operations: subscriptions of identical operations share payloads.
    pub sharing: Option<Arc<Sharing>>,
    /// Counts the queries that load related rows (shared by every operation).
    pub relation_queries: Arc<std::sync::atomic::AtomicU64>,
    pub access: SharedAccess,
    pub limits: Limits,
}

/// Bounds on what one operation may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// On its filters (`WALCAST_MAX_LIST_ITEMS`).
    pub filters: walcast_filter::Limits,
    /// On its cost, see [`crate::cost`] (`WALCAST_MAX_OPERATION_COST`).
    pub max_operation_cost: u64,
}

impl Ctx {
    /// The caller's row filter on a table (None: every row).
    pub fn row_filter(&self, oid: u32) -> Option<RowFilter> {
        self.access
            .load()
            .table(oid)
            .and_then(|t| t.row_filter().cloned())
    }
}

impl juniper::Context for Ctx {}
