//! The hub: live subscriptions by table, fan-out of committed transactions, and the retention
//! window that `after:` replays from. It never waits on a client: each subscription has a
//! bounded queue, and a full queue closes that connection as a slow consumer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use walcast_filter::EventFilter;
use walcast_graphql::{
    ConnectionHandle, EventSource, EventStream, SharedAccess, SubscribeError, SubscriptionRequest,
};
use walcast_model::{Cursor, Event, ResumePoint, Transaction};
use walcast_wal::Lsn;

use crate::metrics::Metrics;

struct Subscriber {
    id: u64,
    /// The table's shape the subscription's filter and fields were built for.
    table: Arc<walcast_model::Table>,
    filter: EventFilter,
    tx: mpsc::Sender<Arc<Event>>,
    connection: Option<ConnectionHandle>,
    /// The caller's access, checked per event: permissions reloads apply at once.
    access: SharedAccess,
    /// The visible columns when subscribing; another set later revokes the subscription.
    columns_key: String,
    /// Transactions this snapshot saw were part of the caller's query result: never resend them,
    /// even when the stream delivers them after the subscription started.
    seen: Option<walcast_model::Snapshot>,
}

/// A committed transaction kept for replay.
struct Retained {
    commit_lsn: Lsn,
    xid: u32,
    commit_time: i64,
    events: Vec<Arc<Event>>,
}

#[derive(Default)]
struct State {
    /// Live subscriptions by table oid.
    by_table: HashMap<u32, Vec<Subscriber>>,
    /// Transactions inside the retention window, oldest first.
    retained: VecDeque<Retained>,
    /// Resuming after a position before this one would skip transactions no longer retained.
    floor: Cursor,
    /// The position of the last transaction handled.
    position: Cursor,
}

pub struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    queue: usize,
    retention: Duration,
    metrics: Arc<Metrics>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Hub {
    pub fn new(queue: usize, retention: Duration, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            queue,
            retention,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update under the lock is a single push or remove, so data behind a poisoned
        // lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Retains a committed transaction and, when `live`, hands it to every matching
    /// subscription in statement order. Transactions re-read from the WAL at start-up (the
    /// retention window) are retained without being delivered: they are history.
    pub fn dispatch(&self, tx: &Transaction, live: bool) {
        let mut st = self.lock();
        let mut matched = 0u64;
        if live {
            let mut dead: Vec<(u32, u64)> = Vec::new();
            for ev in &tx.events {
                let Some(subs) = st.by_table.get(&ev.table.oid) else { continue };
                for sub in subs {
                    // After ALTER TABLE, older subscriptions see events in the shape they know.
                    let shaped;
                    let ev = if Arc::ptr_eq(&sub.table, &ev.table) || Event::same_layout(&sub.table, &ev.table) {
                        ev
                    } else {
                        shaped = Arc::new(ev.in_layout(&sub.table));
                        &shaped
                    };
                    let access = sub.access.load();
                    let allowed = match access.tables.get(&ev.table.oid) {
                        Some(a) if a.columns_key == sub.columns_key => a,
                        // Access to the table (or to these columns) was withdrawn.
                        _ => {
                            dead.push((ev.table.oid, sub.id));
                            continue;
                        }
                    };
                    if allowed
                        .row_filter
                        .as_ref()
                        .is_some_and(|f| !ev.filter_row().is_some_and(|row| f.matches(row)))
                    {
                        continue;
                    }
                    if !sub.filter.matches(ev) || sub.seen.as_ref().is_some_and(|s| s.sees(ev.xid)) {
                        continue;
                    }
                    match sub.tx.try_send(ev.clone()) {
                        Ok(()) => matched += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            if let Some(conn) = &sub.connection {
                                (conn.on_overflow)();
                            }
                            dead.push((ev.table.oid, sub.id));
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => dead.push((ev.table.oid, sub.id)),
                    }
                }
            }
            for (oid, id) in dead {
                Self::remove_locked(&mut st, &self.metrics, oid, id);
            }
        }
        if !tx.events.is_empty() {
            st.retained.push_back(Retained {
                commit_lsn: tx.commit_lsn,
                xid: tx.xid,
                commit_time: tx.commit_time,
                events: tx.events.clone(),
            });
        }
        st.position = tx
            .events
            .last()
            .map(|e| e.cursor)
            .unwrap_or(Cursor { lsn: tx.end_lsn, seq: 0 })
            .max(st.position);
        self.evict_locked(&mut st, now_micros());
        self.metrics.events_matched.fetch_add(matched, Relaxed);
    }

    fn evict_locked(&self, st: &mut State, now: i64) {
        let horizon = now - self.retention.as_micros() as i64;
        while st.retained.front().is_some_and(|t| t.commit_time < horizon) {
            if let Some(t) = st.retained.pop_front() {
                if let Some(last) = t.events.last() {
                    st.floor = st.floor.max(last.cursor);
                }
            }
        }
    }

    /// Drops transactions that left the retention window.
    pub fn evict(&self) {
        let mut st = self.lock();
        self.evict_locked(&mut st, now_micros());
    }

    /// How far the slot may be confirmed, given that everything up to `handled` was delivered:
    /// not past the oldest retained transaction, so a restart re-reads the window from the WAL.
    pub fn confirmable(&self, handled: Lsn) -> Lsn {
        match self.lock().retained.front() {
            Some(t) => handled.min(t.commit_lsn),
            None => handled,
        }
    }

    fn remove_locked(st: &mut State, metrics: &Metrics, oid: u32, id: u64) {
        if let Some(subs) = st.by_table.get_mut(&oid) {
            let before = subs.len();
            subs.retain(|s| s.id != id);
            if subs.len() < before {
                metrics.subscriptions.fetch_sub(1, Relaxed);
            }
            if subs.is_empty() {
                st.by_table.remove(&oid);
            }
        }
    }

    fn remove(&self, oid: u32, id: u64) {
        let mut st = self.lock();
        Self::remove_locked(&mut st, &self.metrics, oid, id);
    }

    /// Retained events after a resume point that a subscription would have received.
    fn replay(
        st: &State,
        from: &ResumePoint,
        oid: u32,
        filter: &EventFilter,
        role: Option<&walcast_filter::RowFilter>,
    ) -> Result<Vec<Arc<Event>>, SubscribeError> {
        let wanted = |e: &&Arc<Event>| {
            e.table.oid == oid
                && role.is_none_or(|f| e.filter_row().is_some_and(|row| f.matches(row)))
                && filter.matches(e)
        };
        match from {
            ResumePoint::After(after) => {
                if *after < st.floor {
                    return Err(SubscribeError::CursorExpired(from.encode()));
                }
                Ok(st
                    .retained
                    .iter()
                    .flat_map(|t| t.events.iter())
                    .filter(|e| e.cursor > *after)
                    .filter(wanted)
                    .cloned()
                    .collect())
            }
            ResumePoint::Snapshot(snap) => {
                if snap.lsn < st.floor.lsn {
                    return Err(SubscribeError::CursorExpired(from.encode()));
                }
                Ok(st
                    .retained
                    .iter()
                    .filter(|t| t.commit_lsn >= snap.lsn && !snap.sees(t.xid))
                    .flat_map(|t| t.events.iter())
                    .filter(wanted)
                    .cloned()
                    .collect())
            }
        }
    }
}

/// Unregisters its subscription when the stream is dropped (complete, stop, disconnect).
struct Registration {
    hub: Arc<Hub>,
    oid: u32,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.oid, self.id);
    }
}

/// The hub as the GraphQL layer sees it.
#[derive(Clone)]
pub struct HubSource(pub Arc<Hub>);

impl EventSource for HubSource {
    fn subscribe(&self, req: SubscriptionRequest) -> Result<EventStream, SubscribeError> {
        let hub = &self.0;
        let (tx, rx) = mpsc::channel(hub.queue);
        let id = hub.next_id.fetch_add(1, Relaxed);
        let oid = req.table.oid;
        let (columns_key, role_filter) = match req.access.load().tables.get(&oid) {
            Some(a) => (a.columns_key.clone(), a.row_filter.clone()),
            None => {
                return Err(SubscribeError::Unavailable(format!(
                    "table {} is not available to this role",
                    req.table.gql_name
                )))
            }
        };
        // Replay and registration happen under one lock, so no event falls between them.
        let replay = {
            let mut st = hub.lock();
            let replay = match &req.after {
                None => vec![],
                Some(from) => Hub::replay(&st, from, oid, &req.filter, role_filter.as_ref())?,
            };
            st.by_table.entry(oid).or_default().push(Subscriber {
                id,
                table: req.table.clone(),
                access: req.access.clone(),
                columns_key,
                filter: req.filter,
                tx,
                connection: req.connection,
                seen: match req.after {
                    Some(ResumePoint::Snapshot(s)) => Some(s),
                    _ => None,
                },
            });
            hub.metrics.subscriptions.fetch_add(1, Relaxed);
            replay
        };
        let guard = Registration {
            hub: hub.clone(),
            oid,
            id,
        };
        let live = ReceiverStream::new(rx).map(move |ev| {
            let _registered = &guard;
            ev
        });
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    fn cursor_now(&self) -> Cursor {
        self.0.lock().position
    }
}
