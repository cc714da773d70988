//! Fan-out of one committed transaction to the matching subscriptions' queues.

use std::collections::hash_map::Entry;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use smallvec::smallvec;
use walcast_model::{Event, Transaction};

use super::inbox::{Chunk, Inbox};
use super::matching::{Delivery, Found};
use super::relations::answer_relations;
use super::retention::now_micros;
use super::{Hub, State, Subscriber};

/// How long a backlogged subscriber may go without draining before it counts as a slow
/// consumer.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(1);
/// The longest wait on backlogs that keep draining: a reading client on a busy machine may need
/// more than a second for a queue's worth, but one that drains too slowly must not hold
/// delivery up for everybody.
const SLOW_CONSUMER_MAX_GRACE: Duration = Duration::from_secs(10);
/// Subscribers queued under one hold of the hub lock, then woken.
pub(super) const SEND_BATCH: usize = 1024;

/// A subscriber's events of one transaction, in statement order, and the inbox they go to.
struct Outgoing {
    id: u64,
    inbox: Arc<Inbox>,
    events: Chunk,
}

/// What queueing a transaction left for after the hub lock: streams to wake, subscribers to
/// drop (which wakes their streams to end).
#[derive(Default)]
struct Queued {
    /// Events queued.
    matched: u64,
    /// With the connection of each: see [`Queued::wake`].
    wakers: Vec<(u64, Waker)>,
    removed: Vec<Subscriber>,
}

impl Hub {
    /// Retains a committed transaction and, when `live`, hands it to every matching
    /// subscription in statement order. Transactions re-read from the WAL at start-up (the
    /// retention window) are retained without being delivered: they are history.
    ///
    /// Conditions on related rows are answered by the database: one query per distinct
    /// condition for the whole transaction, never one per subscriber.
    pub async fn dispatch(&self, tx: &Transaction, live: bool, pool: &deadpool_postgres::Pool) {
        let started = Instant::now();
        let (outgoing, chunking) = if live {
            self.find(tx, pool).await
        } else {
            (Vec::new(), Duration::ZERO)
        };
        // Building the chunks happens under the matching lock but is queueing's share.
        let matching = started.elapsed().saturating_sub(chunking);
        self.metrics.match_seconds.observe(matching);
        crate::failpoint!("hub::dispatch");
        let backlogged: Vec<Arc<Inbox>> = outgoing
            .iter()
            .filter(|o| o.inbox.pending.load(Relaxed) >= self.queue)
            .map(|o| o.inbox.clone())
            .collect();
        self.grace(&backlogged).await;
        let sending = Instant::now();
        {
            let mut st = self.lock();
            Self::retain_locked(&mut st, tx);
            self.evict_locked(&mut st, now_micros());
        }
        // Queued and woken a batch at a time, each batch under the hub lock and woken after
        // it: the first connections write while the hub queues the rest. A subscriber that
        // registers in between is not among them and, resuming from a cursor, replays the
        // transaction, which is already retained.
        let mut matched = 0;
        let mut outgoing = outgoing.into_iter();
        while outgoing.len() > 0 {
            let queued = {
                let mut st = self.lock();
                self.send_locked(&mut st, outgoing.by_ref().take(SEND_BATCH))
            };
            matched += queued.matched;
            // With the hub lock released: a woken stream may run at once on another thread,
            // and one that ends unregisters itself.
            queued.wake();
        }
        self.metrics.events_matched.fetch_add(matched, Relaxed);
        self.metrics
            .dispatch_seconds
            .observe(chunking + sending.elapsed());
    }

    /// Who receives which events of `tx`, in statement order; relation conditions answered.
    /// The chunks are built under the lock that saw every receiver registered: the matching
    /// one, or the one after the database answered. Also how long building them took.
    async fn find(
        &self,
        tx: &Transaction,
        pool: &deadpool_postgres::Pool,
    ) -> (Vec<Outgoing>, Duration) {
        // Declared before the guard, so subscribers revoked while matching are dropped after it.
        let mut found = Found::default();
        {
            let mut st = self.lock();
            for (i, ev) in tx.events.iter().enumerate() {
                Self::match_event(&self.metrics, &mut st, i, tx.events.len(), ev, &mut found);
            }
            if found.pending.is_empty() {
                if !found.removed.is_empty() {
                    // Matched by an event before the one that revoked it: nothing to queue.
                    found.deliveries.retain(|d| st.subs.contains_key(&d.id));
                }
                return chunks(std::mem::take(&mut found.deliveries), tx.events.len());
            }
        }
        let Found {
            mut deliveries,
            pending,
            mut batch,
            removed,
        } = found;
        drop(removed);
        answer_relations(&mut batch, pool, &self.metrics).await;
        let st = self.lock();
        // Subscribers may have left while the database answered.
        deliveries.retain(|d| st.subs.contains_key(&d.id));
        for d in pending {
            let Some(sub) = st.subs.get(&d.id) else {
                continue;
            };
            if batch.matches(d.number, &d.event, &sub.filter) {
                deliveries.push(d);
            }
        }
        deliveries.sort_by_key(|d| d.index);
        chunks(deliveries, tx.events.len())
    }

    /// Backlogs get a grace before they count as slow consumers: when walcast itself is behind
    /// (a catch-up, a burst) or the machine is busy, delivery catches up and decoding waits. The
    /// wait goes on while some backlog over the limit drained in the last
    /// [`SLOW_CONSUMER_GRACE`], up to [`SLOW_CONSUMER_MAX_GRACE`]; a client that does not read
    /// drains nothing, stays over the limit and is closed.
    async fn grace(&self, backlogged: &[Arc<Inbox>]) {
        if backlogged.is_empty() {
            return;
        }
        let pending =
            || -> Vec<usize> { backlogged.iter().map(|p| p.pending.load(Relaxed)).collect() };
        let started = Instant::now();
        let mut checkpoint = started + SLOW_CONSUMER_GRACE;
        let mut before = pending();
        loop {
            let now = pending();
            if now.iter().all(|&n| n < self.queue) {
                return;
            }
            if Instant::now() >= checkpoint {
                let draining = now
                    .iter()
                    .zip(&before)
                    .any(|(&n, &was)| n >= self.queue && n < was);
                if !draining || started.elapsed() >= SLOW_CONSUMER_MAX_GRACE {
                    return;
                }
                before = now;
                checkpoint += SLOW_CONSUMER_GRACE;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Queues the chunks; a subscriber still over its limit is closed as a slow consumer.
    fn send_locked(&self, st: &mut State, outgoing: impl Iterator<Item = Outgoing>) -> Queued {
        let mut queued = Queued::default();
        let mut dead: Vec<u64> = Vec::new();
        for Outgoing { id, inbox, events } in outgoing {
            // Revoked or closed since matching: it receives nothing.
            if inbox.removed.load(Relaxed) {
                continue;
            }
            if inbox.pending.load(Relaxed) >= self.queue {
                if let Some(conn) = st.subs.get(&id).and_then(|s| s.connection.as_ref()) {
                    (conn.on_overflow)();
                }
                dead.push(id);
                continue;
            }
            let n = events.len();
            match inbox.send(events) {
                Ok(waker) => {
                    queued.matched += n as u64;
                    queued.wakers.extend(waker.map(|w| (inbox.connection, w)));
                }
                Err(()) => dead.push(id),
            }
        }
        for id in dead {
            let removed = Self::remove_locked(st, &self.metrics, id);
            queued.removed.extend(removed);
        }
        queued
    }
}

impl Queued {
    /// Wakes the streams a connection at a time: the first wake schedules the connection's
    /// writer, the others only mark its operations ready, so it writes all of them in one burst
    /// (one socket write). In the hub's order, the subscriptions of a connection that
    /// subscribed while others did are spread over the fan-out, and its writer could run once
    /// per few of them.
    fn wake(self) {
        let mut wakers = self.wakers;
        wakers.sort_unstable_by_key(|(conn, _)| *conn);
        for (_, waker) in wakers {
            waker.wake();
        }
        drop(self.removed);
    }
}

/// Each subscriber's events of one transaction, in its table's shape, as one chunk: a large
/// transaction takes one queue slot, and a backlog (not a big transaction) makes a slow
/// consumer. Also how long building them took.
fn chunks(deliveries: Vec<Delivery>, events: usize) -> (Vec<Outgoing>, Duration) {
    let started = Instant::now();
    let mut outgoing: Vec<Outgoing> = Vec::with_capacity(deliveries.len());
    let shaped = |event: Arc<Event>, table: &Arc<walcast_model::Table>| {
        if Arc::ptr_eq(table, &event.table) || Event::same_layout(table, &event.table) {
            event
        } else {
            Arc::new(event.in_layout(table))
        }
    };
    // Each subscriber is offered an event once: with one event, one chunk per delivery.
    if events == 1 {
        outgoing.extend(deliveries.into_iter().map(|d| Outgoing {
            id: d.id,
            events: smallvec![shaped(d.event, &d.table)],
            inbox: d.inbox,
        }));
        return (outgoing, started.elapsed());
    }
    // Keyed by the hub's own subscription ids: see `State::subs`.
    let mut chunk_of: FxHashMap<u64, usize> =
        FxHashMap::with_capacity_and_hasher(deliveries.len(), Default::default());
    for Delivery {
        id,
        event,
        inbox,
        table,
        ..
    } in deliveries
    {
        let ev = shaped(event, &table);
        match chunk_of.entry(id) {
            Entry::Occupied(c) => outgoing[*c.get()].events.push(ev),
            Entry::Vacant(v) => {
                v.insert(outgoing.len());
                outgoing.push(Outgoing {
                    id,
                    inbox,
                    events: smallvec![ev],
                });
            }
        }
    }
    (outgoing, started.elapsed())
}
