//! Fan-out of one committed transaction to the matching subscriptions' queues.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use walcast_model::{Event, Transaction};

use super::inbox::Inbox;
use super::matching::{Delivery, Found};
use super::relations::answer_relations;
use super::retention::now_micros;
use super::{Hub, State};

/// How long a backlogged subscriber may go without draining before it counts as a slow
/// consumer.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(1);
/// The longest wait on backlogs that keep draining: a reading client on a busy machine may need
/// more than a second for a queue's worth, but one that drains too slowly must not hold
/// delivery up for everybody.
const SLOW_CONSUMER_MAX_GRACE: Duration = Duration::from_secs(10);

/// Each subscriber's events of one transaction, in statement order.
type Chunks = Vec<(u64, Vec<Arc<Event>>)>;

impl Hub {
    /// Retains a committed transaction and, when `live`, hands it to every matching
    /// subscription in statement order. Transactions re-read from the WAL at start-up (the
    /// retention window) are retained without being delivered: they are history.
    ///
    /// Conditions on related rows are answered by the database: one query per distinct
    /// condition for the whole transaction, never one per subscriber.
    pub async fn dispatch(&self, tx: &Transaction, live: bool, pool: &deadpool_postgres::Pool) {
        let started = Instant::now();
        let deliveries = if live {
            self.find(tx, pool).await
        } else {
            Vec::new()
        };
        self.metrics.match_seconds.observe(started.elapsed());
        crate::failpoint!("hub::dispatch");
        let (chunks, backlogged) = self.chunks(deliveries);
        self.grace(&backlogged).await;
        let mut st = self.lock();
        let matched = self.send_locked(&mut st, chunks);
        Self::retain_locked(&mut st, tx);
        self.evict_locked(&mut st, now_micros());
        self.metrics.events_matched.fetch_add(matched, Relaxed);
    }

    /// Who receives which event of `tx`, in statement order; relation conditions answered.
    async fn find(&self, tx: &Transaction, pool: &deadpool_postgres::Pool) -> Vec<Delivery> {
        let mut found = Found::default();
        {
            let mut st = self.lock();
            for (i, ev) in tx.events.iter().enumerate() {
                Self::match_event(&self.metrics, &mut st, i, tx.events.len(), ev, &mut found);
            }
        }
        let Found {
            mut deliveries,
            pending,
            mut batch,
        } = found;
        if pending.is_empty() {
            return deliveries;
        }
        answer_relations(&mut batch, pool, &self.metrics).await;
        let st = self.lock();
        for d in pending {
            let Some(sub) = st.subs.get(&d.id) else {
                continue;
            };
            if batch.matches(d.number, &d.event, &sub.filter) {
                deliveries.push(d);
            }
        }
        deliveries.sort_by_key(|d| d.index);
        deliveries
    }

    /// Each subscriber's events of this transaction, in its table's shape, as one chunk: a
    /// large transaction takes one queue slot, and a backlog (not a big transaction) makes a
    /// slow consumer. Also the inboxes already full.
    fn chunks(&self, deliveries: Vec<Delivery>) -> (Chunks, Vec<Arc<Inbox>>) {
        let st = self.lock();
        let mut chunks: Chunks = Vec::new();
        // Keyed by the hub's own subscription ids: see `State::subs`.
        let mut chunk_of: FxHashMap<u64, usize> = FxHashMap::default();
        for Delivery { id, event: ev, .. } in deliveries {
            let Some(sub) = st.subs.get(&id) else {
                continue;
            };
            let ev = if Arc::ptr_eq(&sub.table, &ev.table)
                || Event::same_layout(&sub.table, &ev.table)
            {
                ev
            } else {
                Arc::new(ev.in_layout(&sub.table))
            };
            match chunk_of.get(&id) {
                Some(&c) => chunks[c].1.push(ev),
                None => {
                    chunk_of.insert(id, chunks.len());
                    chunks.push((id, vec![ev]));
                }
            }
        }
        let backlogged: Vec<Arc<Inbox>> = chunks
            .iter()
            .filter_map(|(id, _)| st.subs.get(id))
            .filter(|sub| sub.tx.pending() >= self.queue)
            .map(|sub| sub.tx.0.clone())
            .collect();
        (chunks, backlogged)
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
    /// Returns how many events were queued.
    fn send_locked(&self, st: &mut State, chunks: Chunks) -> u64 {
        let mut matched = 0u64;
        let mut dead: Vec<u64> = Vec::new();
        for (id, events) in chunks {
            let Some(sub) = st.subs.get(&id) else {
                continue;
            };
            if sub.tx.pending() >= self.queue {
                if let Some(conn) = &sub.connection {
                    (conn.on_overflow)();
                }
                dead.push(id);
                continue;
            }
            let n = events.len();
            if sub.tx.send(events).is_err() {
                dead.push(id);
            } else {
                matched += n as u64;
            }
        }
        for id in dead {
            Self::remove_locked(st, &self.metrics, id);
        }
        matched
    }
}
