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
    ConnectionHandle, EventSource, EventStream, SubscribeError, SubscriptionRequest,
};
use walcast_model::{Cursor, Event, Transaction};

use crate::metrics::Metrics;

struct Subscriber {
    id: u64,
    filter: EventFilter,
    tx: mpsc::Sender<Arc<Event>>,
    connection: Option<ConnectionHandle>,
}

#[derive(Default)]
struct State {
    /// Live subscriptions by table oid.
    by_table: HashMap<u32, Vec<Subscriber>>,
    /// Committed events still inside the retention window, oldest first.
    retained: VecDeque<Arc<Event>>,
    /// Events at or before this cursor are no longer replayable.
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
        // A panic while holding the lock leaves consistent data (every update is one push or
        // remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a committed transaction to every matching subscription, in statement order.
    pub fn dispatch(&self, tx: &Transaction) {
        let mut st = self.lock();
        let mut matched = 0u64;
        let mut dead: Vec<(u32, u64)> = Vec::new();
        for ev in &tx.events {
            let Some(subs) = st.by_table.get(&ev.table.oid) else {
                continue;
            };
            for sub in subs {
                if !sub.filter.matches(ev) {
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
        st.retained.extend(tx.events.iter().cloned());
        if let Some(last) = tx.events.last() {
            st.position = last.cursor;
        } else {
            st.position = Cursor {
                lsn: tx.end_lsn,
                seq: 0,
            };
        }
        let horizon = tx.commit_time - self.retention.as_micros() as i64;
        while st.retained.front().is_some_and(|e| e.commit_time < horizon) {
            if let Some(e) = st.retained.pop_front() {
                st.floor = e.cursor;
            }
        }
        self.metrics.events_matched.fetch_add(matched, Relaxed);
    }

    /// The oldest position still needed for replay: the slot must not be confirmed past it.
    pub fn retained_from(&self) -> Option<Cursor> {
        self.lock().retained.front().map(|e| e.cursor)
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
        // Replay and registration happen under one lock, so no event falls between them.
        let replay: Vec<Arc<Event>> = {
            let mut st = hub.lock();
            let replay = match req.after {
                None => vec![],
                Some(after) if after < st.floor => {
                    return Err(SubscribeError::CursorExpired(after.encode()));
                }
                Some(after) => st
                    .retained
                    .iter()
                    .filter(|e| e.cursor > after && e.table.oid == oid && req.filter.matches(e))
                    .cloned()
                    .collect(),
            };
            st.by_table.entry(oid).or_default().push(Subscriber {
                id,
                filter: req.filter,
                tx,
                connection: req.connection,
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
            let _keep = &guard;
            ev
        });
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    fn cursor_now(&self) -> Cursor {
        self.0.lock().position
    }
}
