//! The hub: live subscriptions by table, fan-out of committed transactions, and the retention
//! window that `after:` replays from. It never waits on a client: each subscription has a
//! bounded queue, and a full queue closes that connection as a slow consumer.
//!
//! Fed by [`crate::source::drive`]; read by sessions through [`HubSource`].

mod dispatch;
mod inbox;
mod matching;
mod registration;
mod relations;
mod retention;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use walcast_filter::{EventFilter, SubscriptionIndex};
use walcast_graphql::{ConnectionHandle, SharedAccess};
use walcast_model::{Cursor, Table};
use walcast_wal::Lsn;

use crate::metrics::Metrics;
use inbox::InboxSender;
use retention::Retained;

pub use subscribe::HubSource;

struct Subscriber {
    id: u64,
    oid: u32,
    /// The table's shape the subscription's filter and fields were built for.
    table: Arc<walcast_model::Table>,
    filter: Arc<EventFilter>,
    /// A transaction's matching events travel as one chunk.
    tx: InboxSender,
    connection: Option<ConnectionHandle>,
    /// The caller's access, checked per event: permissions reloads apply at once.
    access: SharedAccess,
    /// The visible columns when subscribing; another set later revokes the subscription.
    columns_key: Arc<str>,
    /// Whether the role had a row filter on the table when subscribing; gaining or losing one
    /// revokes the subscription too (rows it holds may no longer be its to see, and updates
    /// are judged differently).
    filtered: bool,
    /// Transactions this snapshot saw were part of the caller's query result: never resend them,
    /// even when the stream delivers them after the subscription started.
    seen: Option<walcast_model::Snapshot>,
}

#[derive(Default)]
struct State {
    /// Live subscriptions by id. The ids are the hub's own counter, never chosen by a client,
    /// so a fast hash does and a DoS-resistant one is not needed: this map is read once or
    /// more per delivery.
    subs: FxHashMap<u64, Subscriber>,
    /// Subscriptions by table, event kind and the equalities their filters require, so an
    /// event visits only those that may match.
    index: SubscriptionIndex<u64>,
    /// The table shape the index entries of each table were built for.
    layouts: HashMap<u32, Arc<Table>>,
    /// Subscriptions built for an older shape of their table (before an ALTER TABLE): matched
    /// one by one on the event in their shape.
    stale: HashMap<u32, Vec<u64>>,
    /// Transactions inside the retention window, oldest first.
    retained: VecDeque<Retained>,
    /// Events in `retained`, kept up to date as transactions come and leave rather than
    /// counted per transaction.
    held: usize,
    /// Resuming after a position before this one would skip transactions no longer retained.
    floor: Cursor,
    /// The position of the last transaction handled.
    position: Cursor,
    /// Live subscriptions with a row filter, by table: only then can an update be seen as a
    /// create or a delete.
    filtered: HashMap<u32, usize>,
}

pub struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    queue: usize,
    retention: Duration,
    /// Most events kept for replay, whatever the retention window says.
    max_retained: usize,
    metrics: Arc<Metrics>,
    /// Logical messages travel apart from table events: no table, no retention.
    pub messages: Arc<crate::messages::MessageHub>,
}

impl Hub {
    pub fn new(
        queue: usize,
        retention: Duration,
        max_retained: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            queue,
            retention,
            max_retained,
            messages: crate::messages::MessageHub::new(queue, metrics.clone()),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update under the lock is a single push or remove, so data behind a poisoned
        // lock is still consistent.
        walcast_model::sync::lock(&self.state)
    }

    /// Drops the retention window and the position: the stream starts over on a new slot, whose
    /// positions say nothing about the old ones.
    pub fn forget_history(&self) {
        let mut st = self.lock();
        st.retained.clear();
        st.held = 0;
        st.floor = Cursor::default();
        st.position = Cursor::default();
    }

    /// Sets where replay can start: the slot's confirmed position when streaming (re)starts.
    pub fn set_floor(&self, lsn: Lsn) {
        let mut st = self.lock();
        if st.retained.is_empty() {
            st.floor = Cursor { lsn, seq: 0 };
            if st.position < st.floor {
                st.position = st.floor;
            }
        }
    }

    /// Expires every cursor before `lsn` (never lowers the floor). Events retained before it
    /// stay until they age out, but no resume reaches them.
    pub fn raise_floor(&self, lsn: Lsn) {
        let mut st = self.lock();
        st.floor = st.floor.max(Cursor { lsn, seq: 0 });
        st.position = st.position.max(st.floor);
    }

    /// Unregisters subscription `id`. The caller drops what is returned once the hub lock is
    /// released: dropping it wakes the stream to end.
    fn remove_locked(st: &mut State, metrics: &Metrics, id: u64) -> Option<Subscriber> {
        let sub = st.subs.remove(&id)?;
        sub.tx.0.removed.store(true, Relaxed);
        st.index.remove(sub.oid, &id);
        if sub.filtered {
            if let Some(n) = st.filtered.get_mut(&sub.oid) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(stale) = st.stale.get_mut(&sub.oid) {
            stale.retain(|s| *s != id);
        }
        metrics.subscriptions.fetch_sub(1, Relaxed);
        if sub.filter.list_items() >= crate::memory::LARGE_FILTER_ITEMS {
            crate::memory::trim_soon();
        }
        Some(sub)
    }

    fn remove(&self, id: u64) {
        let removed = {
            let mut st = self.lock();
            Self::remove_locked(&mut st, &self.metrics, id)
        };
        // Its stream is woken to end with the hub lock released.
        drop(removed);
    }
}
