//! The hub: live subscriptions by table, fan-out of committed transactions, and the retention
//! window that `after:` replays from. It never waits on a client: each subscription has a
//! bounded queue, and a full queue closes that connection as a slow consumer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use walcast_access::TableGrant;
use walcast_filter::{EventFilter, RelationBatch, SubscriptionIndex, Truth};
use walcast_graphql::{
    ConnectionHandle, EventSource, EventStream, MessageRequest, MessageStream, SharedAccess,
    SubscribeError, SubscriptionRequest,
};
use walcast_model::{Cursor, Event, Op, ResumePoint, Table, Transaction};
use walcast_wal::Lsn;

use crate::metrics::Metrics;
use crate::visibility::{self, Seen};

/// How long a backlogged subscriber may take to drain before it counts as a slow consumer.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(1);

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
    columns_key: String,
    /// Whether the role had a row filter on the table when subscribing; gaining or losing one
    /// revokes the subscription too (rows it holds may no longer be its to see, and updates
    /// are judged differently).
    filtered: bool,
    /// Transactions this snapshot saw were part of the caller's query result: never resend them,
    /// even when the stream delivers them after the subscription started.
    seen: Option<walcast_model::Snapshot>,
}

/// An event for one subscriber, as its role sees it.
struct Delivery {
    /// The event's position in its transaction.
    index: usize,
    /// Its number in the transaction's `RelationBatch`.
    number: usize,
    id: u64,
    event: Arc<Event>,
}

/// What matching one transaction found.
struct Found<'a> {
    deliveries: &'a mut Vec<Delivery>,
    pending: &'a mut Vec<Delivery>,
    batch: &'a mut RelationBatch,
}

impl Found<'_> {
    /// Offers `event` (as the subscriber's role sees event `index`) with its filter's in-memory
    /// result.
    fn offer(
        &mut self,
        sub: &Subscriber,
        index: usize,
        number: usize,
        event: &Arc<Event>,
        truth: Truth,
    ) {
        if sub.seen.as_ref().is_some_and(|s| s.sees(event.xid)) {
            return;
        }
        let delivery = || Delivery {
            index,
            number,
            id: sub.id,
            event: event.clone(),
        };
        if truth.is_true() {
            self.deliveries.push(delivery());
        } else if truth == Truth::Unknown && sub.filter.has_relations() {
            self.batch.add(number, event, &sub.filter);
            self.pending.push(delivery());
        }
    }
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
    /// Live subscriptions by id.
    subs: HashMap<u64, Subscriber>,
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

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
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
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the retention window and the position: the stream starts over on a new slot, whose
    /// positions say nothing about the old ones.
    pub fn forget_history(&self) {
        let mut st = self.lock();
        st.retained.clear();
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

    /// Retains a committed transaction and, when `live`, hands it to every matching
    /// subscription in statement order. Transactions re-read from the WAL at start-up (the
    /// retention window) are retained without being delivered: they are history.
    ///
    /// Conditions on related rows are answered by the database: one query per distinct
    /// condition for the whole transaction, never one per subscriber.
    pub async fn dispatch(&self, tx: &Transaction, live: bool, pool: &deadpool_postgres::Pool) {
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut pending: Vec<Delivery> = Vec::new();
        let mut batch = RelationBatch::new();
        let started = std::time::Instant::now();
        if live {
            let mut st = self.lock();
            let mut found = Found {
                deliveries: &mut deliveries,
                pending: &mut pending,
                batch: &mut batch,
            };
            for (i, ev) in tx.events.iter().enumerate() {
                Self::match_event(&self.metrics, &mut st, i, tx.events.len(), ev, &mut found);
            }
        }
        if !pending.is_empty() {
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
        }
        self.metrics.match_seconds.observe(started.elapsed());
        let mut matched = 0u64;
        let mut dead: Vec<u64> = Vec::new();
        // Each subscriber's events of this transaction, in statement order, as one chunk: a large
        // transaction takes one queue slot, and a backlog (not a big transaction) makes a slow
        // consumer.
        let (chunks, backlogged) = {
            let st = self.lock();
            let mut chunks: Vec<(u64, Vec<Arc<Event>>)> = Vec::new();
            let mut chunk_of: HashMap<u64, usize> = HashMap::new();
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
            // Backlogs get a short grace before they count as slow consumers: when walcast itself is
            // behind (a catch-up, a burst), delivery catches up and decoding waits; a client that
            // does not read stays over the limit and is closed.
            let backlogged: Vec<Arc<Inbox>> = chunks
                .iter()
                .filter_map(|(id, _)| st.subs.get(id))
                .filter(|sub| sub.tx.pending() >= self.queue)
                .map(|sub| sub.tx.0.clone())
                .collect();
            (chunks, backlogged)
        };
        if !backlogged.is_empty() {
            let deadline = std::time::Instant::now() + SLOW_CONSUMER_GRACE;
            while std::time::Instant::now() < deadline
                && backlogged
                    .iter()
                    .any(|p| p.pending.load(Relaxed) >= self.queue)
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let mut st = self.lock();
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
            Self::remove_locked(&mut st, &self.metrics, id);
        }
        if !tx.events.is_empty() {
            st.retained.push_back(Retained {
                commit_lsn: tx.commit_lsn,
                xid: tx.xid,
                commit_time: tx.commit_time,
                events: tx.events.clone(),
            });
        }
        // A transaction without events for us leaves the position: nothing lies between.
        if let Some(last) = tx.events.last() {
            st.position = st.position.max(last.cursor);
        }
        self.evict_locked(&mut st, now_micros());
        self.metrics.events_matched.fetch_add(matched, Relaxed);
    }

    /// Decides, in memory, who receives event `i` of `n`, as each one's role sees it:
    /// `deliveries` for certain matches, `pending` (and `batch`) for those whose relation
    /// conditions the database must answer.
    ///
    /// An update is looked up three times: as itself, for the subscribers whose role sees it as
    /// an update, and as the create of its new version and the delete of its previous one, for
    /// those whose role sees the row enter or leave its rows (see `crate::visibility`). Each
    /// subscriber is offered at most one of them.
    fn match_event(
        metrics: &Metrics,
        st: &mut State,
        i: usize,
        n: usize,
        ev: &Arc<Event>,
        found: &mut Found<'_>,
    ) {
        let oid = ev.table.oid;
        // A new shape of the table: entries built for the old one leave the index.
        let current = st.layouts.get(&oid).cloned();
        if let Some(layout) = current {
            if !Arc::ptr_eq(&layout, &ev.table) && !Event::same_layout(&layout, &ev.table) {
                let moved: Vec<u64> = st
                    .subs
                    .values()
                    .filter(|s| s.oid == oid && !Event::same_layout(&s.table, &ev.table))
                    .map(|s| s.id)
                    .collect();
                for id in &moved {
                    st.index.remove(oid, id);
                }
                st.stale.entry(oid).or_default().extend(moved);
                st.layouts.insert(oid, ev.table.clone());
            }
        } else {
            st.layouts.insert(oid, ev.table.clone());
        }
        let mut revoked: Vec<u64> = Vec::new();
        // How the subscriber's role sees `ev`; None when its access was withdrawn.
        let judge = |sub: &Subscriber, ev: &Event, revoked: &mut Vec<u64>| {
            let access = sub.access.load();
            match access.table(oid).filter(|a| {
                a.columns_key() == sub.columns_key && a.row_filter().is_some() == sub.filtered
            }) {
                Some(allowed) => Some(visibility::judge(ev, allowed)),
                None => {
                    // Access to the table (or to these columns) was withdrawn, or a row filter
                    // given or taken away.
                    revoked.push(sub.id);
                    None
                }
            }
        };
        // The delete view's filter row is the previous version: relation conditions on it
        // are numbered apart from those on the new version.
        let number = |seen: Seen| if seen == Seen::Deleted { n + i } else { i };
        let subs = &st.subs;
        st.index.for_each_outcome(ev, |id, _, truth| {
            if let Some(sub) = subs.get(id) {
                if judge(sub, ev, &mut revoked) == Some(Seen::AsIs) {
                    found.offer(sub, i, i, ev, truth);
                }
            }
        });
        if ev.op == Op::Update && st.filtered.get(&oid).is_some_and(|n| *n > 0) {
            for seen in [Seen::Created, Seen::Deleted] {
                let Some(view) = visibility::view(ev, seen) else {
                    continue;
                };
                st.index.for_each_candidate(&view, |id, filter| {
                    if let Some(sub) = subs.get(id).filter(|s| s.filtered) {
                        if judge(sub, ev, &mut revoked) == Some(seen) {
                            found.offer(sub, i, number(seen), &view, filter.evaluate(&view));
                        }
                    }
                });
            }
        }
        if let Some(stale) = st.stale.get(&oid) {
            for id in stale {
                let Some(sub) = subs.get(id) else { continue };
                let shaped = Arc::new(ev.in_layout(&sub.table));
                let Some(seen) = judge(sub, &shaped, &mut revoked) else {
                    continue;
                };
                if let Some(view) = visibility::view(&shaped, seen) {
                    let truth = sub.filter.evaluate(&view);
                    found.offer(sub, i, number(seen), &view, truth);
                }
            }
        }
        for id in revoked {
            Self::remove_locked(st, metrics, id);
        }
    }

    fn evict_locked(&self, st: &mut State, now: i64) {
        let horizon = now - self.retention.as_micros() as i64;
        let mut held: usize = st.retained.iter().map(|t| t.events.len()).sum();
        // Old transactions leave by age; beyond `max_retained` events the oldest leave early, so
        // memory stays bounded whatever the write rate (their cursors then expire sooner). A
        // large transaction is retained part by part, and leaves the same way.
        while let Some(front) = st.retained.front() {
            let too_old = front.commit_time < horizon;
            let too_many = held > self.max_retained;
            if !too_old && !too_many {
                break;
            }
            if let Some(t) = st.retained.pop_front() {
                held -= t.events.len();
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

    fn remove_locked(st: &mut State, metrics: &Metrics, id: u64) {
        if let Some(sub) = st.subs.remove(&id) {
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
        }
    }

    fn remove(&self, id: u64) {
        let mut st = self.lock();
        Self::remove_locked(&mut st, &self.metrics, id);
    }

    /// Retained events after a resume point that a subscription would have received.
    fn replay(
        st: &State,
        from: &ResumePoint,
        oid: u32,
        filter: &EventFilter,
        access: &TableGrant,
    ) -> Result<Vec<Arc<Event>>, SubscribeError> {
        // Each event as the role sees it, as live delivery would have offered it.
        let wanted = |e: &Arc<Event>| -> Option<Arc<Event>> {
            if e.table.oid != oid {
                return None;
            }
            visibility::view(e, visibility::judge(e, access)).filter(|v| filter.matches(v))
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
                    .filter_map(wanted)
                    .collect())
            }
            ResumePoint::Snapshot(snap) => {
                if snap.lsn < st.floor.lsn {
                    return Err(SubscribeError::CursorExpired(from.encode()));
                }
                // Visibility alone decides: a transaction whose commit record precedes the
                // snapshot's position may still have been in progress for the snapshot (its
                // commit record is written, and flushed, before it stops running).
                Ok(st
                    .retained
                    .iter()
                    .filter(|t| !snap.sees(t.xid))
                    .flat_map(|t| t.events.iter())
                    .filter_map(wanted)
                    .collect())
            }
        }
    }
}

/// Unregisters its subscription when the stream is dropped (complete, stop, disconnect).
struct Registration {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

/// The hub as the GraphQL layer sees it.
#[derive(Clone)]
pub struct HubSource(pub Arc<Hub>);

impl EventSource for HubSource {
    fn subscribe(&self, req: SubscriptionRequest) -> Result<EventStream, SubscribeError> {
        let hub = &self.0;
        let inbox = Arc::new(Inbox::default());
        let id = hub.next_id.fetch_add(1, Relaxed);
        let oid = req.table.oid;
        let allowed = match req.access.load().table(oid) {
            Some(a) => a.clone(),
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
                Some(from) => Hub::replay(&st, from, oid, &req.filter, &allowed)?,
            };
            let filter = Arc::new(req.filter);
            let current = st
                .layouts
                .get(&oid)
                .is_none_or(|l| Event::same_layout(l, &req.table));
            if current {
                st.index.insert(oid, id, filter.clone());
            } else {
                st.stale.entry(oid).or_default().push(id);
            }
            st.subs.insert(
                id,
                Subscriber {
                    id,
                    oid,
                    table: req.table.clone(),
                    access: req.access.clone(),
                    columns_key: allowed.columns_key().to_owned(),
                    filtered: allowed.row_filter().is_some(),
                    filter,
                    tx: InboxSender(inbox.clone()),
                    connection: req.connection,
                    seen: match req.after {
                        Some(ResumePoint::Snapshot(s)) => Some(s),
                        _ => None,
                    },
                },
            );
            if allowed.row_filter().is_some() {
                *st.filtered.entry(oid).or_default() += 1;
            }
            hub.metrics.subscriptions.fetch_add(1, Relaxed);
            replay
        };
        let guard = Registration {
            hub: hub.clone(),
            id,
        };
        Ok(Box::pin(InboxStream {
            replay: replay.into_iter(),
            chunk: Vec::new().into_iter(),
            inbox,
            _registered: guard,
        }))
    }

    fn cursor_now(&self) -> Cursor {
        self.0.lock().position
    }

    fn subscribe_messages(&self, req: MessageRequest) -> Result<MessageStream, SubscribeError> {
        self.0.messages.subscribe(req)
    }
}

/// Runs the batch's relation queries; a condition whose query fails stays unknown (no delivery).
async fn answer_relations(
    batch: &mut RelationBatch,
    pool: &deadpool_postgres::Pool,
    metrics: &Metrics,
) {
    use tokio_postgres::types::ToSql;
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "relation conditions not evaluated: no database connection");
            return;
        }
    };
    for q in batch.queries() {
        let refs: Vec<&(dyn ToSql + Sync)> =
            q.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        metrics.relation_queries.fetch_add(1, Relaxed);
        match client.query(&q.sql, &refs).await {
            Ok(rows) => {
                let ordinals: Vec<i64> = rows
                    .iter()
                    .filter_map(|r| r.try_get::<_, i64>(0).ok())
                    .collect();
                batch.answer(&q, ordinals);
            }
            Err(e) => tracing::error!(error = %e, "relation condition query failed"),
        }
    }
}

/// A subscription's queue: the hub pushes a transaction's matching events as one chunk, the
/// subscription's stream takes them one at a time. A mutex and a waker rather than a tokio
/// channel, whose first block (32 slots) and cache-padded state took about 1.3 KiB per
/// subscription whether anything was queued or not; an empty inbox allocates nothing.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    /// Events sent but not yet taken by the subscription: the queue's fill.
    pending: AtomicUsize,
}

#[derive(Default)]
struct InboxState {
    chunks: VecDeque<Vec<Arc<Event>>>,
    waker: Option<std::task::Waker>,
    /// The hub dropped the subscriber (removed, revoked, slow): the stream ends once drained.
    sender_gone: bool,
    /// The stream is gone: nothing more is queued.
    receiver_gone: bool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // Each update under the lock is a single push, pop or flag: consistent after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The hub's end of an inbox; dropping it ends the subscription's stream.
struct InboxSender(Arc<Inbox>);

impl InboxSender {
    fn pending(&self) -> usize {
        self.0.pending.load(Relaxed)
    }

    /// Queues a chunk; `Err` when the subscription's stream is gone.
    fn send(&self, events: Vec<Arc<Event>>) -> Result<(), ()> {
        let waker = {
            let mut st = self.0.lock();
            if st.receiver_gone {
                return Err(());
            }
            self.0.pending.fetch_add(events.len(), Relaxed);
            st.chunks.push_back(events);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.0.lock();
            st.sender_gone = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A subscription's events: the `after:` replay, then the inbox. Dropping it unregisters the
/// subscription from the hub.
struct InboxStream {
    replay: std::vec::IntoIter<Arc<Event>>,
    chunk: std::vec::IntoIter<Arc<Event>>,
    inbox: Arc<Inbox>,
    _registered: Registration,
}

impl Stream for InboxStream {
    type Item = Arc<Event>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<Event>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some(ev) = this.replay.next() {
            return Poll::Ready(Some(ev));
        }
        loop {
            if let Some(ev) = this.chunk.next() {
                this.inbox.pending.fetch_sub(1, Relaxed);
                return Poll::Ready(Some(ev));
            }
            let mut st = this.inbox.lock();
            match st.chunks.pop_front() {
                Some(chunk) => this.chunk = chunk.into_iter(),
                None if st.sender_gone => return Poll::Ready(None),
                None => {
                    if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        st.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for InboxStream {
    fn drop(&mut self) {
        let mut st = self.inbox.lock();
        st.receiver_gone = true;
        // Queued events are shared with the retention window; release this queue's references.
        st.chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;
    use walcast_access::{TableGrant, Writes};
    use walcast_graphql::Access;
    use walcast_model::{Batch, Column, Datum, Kind, PgType, ReplicaIdentity};

    fn table() -> Arc<Table> {
        let column = |i: i16, name: &str| Column {
            name: name.into(),
            gql_name: name.into(),
            attnum: i,
            ty: PgType {
                oid: 23,
                name: "int4".into(),
                kind: Kind::Int4,
                array: false,
                enum_values: vec![],
            },
            sql_type: "int4".into(),
            not_null: false,
        };
        Arc::new(Table {
            oid: 1,
            schema: "public".into(),
            name: "notes".into(),
            gql_name: "notes".into(),
            columns: vec![column(1, "id"), column(2, "owner")],
            primary_key: vec![0],
            replica_identity: ReplicaIdentity::Full,
            foreign_keys: vec![],
        })
    }

    /// One update of row 1 from owner `from` to owner `to`.
    fn moved(t: &Arc<Table>, from: i64, to: i64, lsn: u64) -> Transaction {
        let row = |owner: i64| vec![Datum::Int(1), Datum::Int(owner)];
        let cursor = Cursor {
            lsn: Lsn(lsn),
            seq: 0,
        };
        let ev = Arc::new(Event {
            table: t.clone(),
            op: Op::Update,
            key: "1".into(),
            new: Some(row(to)),
            old: Some(row(from)),
            updated: Some(vec![1]),
            cursor,
            xid: lsn as u32,
            commit_time: now_micros(),
            batch: Arc::new(Batch::default()),
        });
        Transaction {
            xid: lsn as u32,
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(lsn),
            commit_time: now_micros(),
            first_seq: 0,
            events: vec![ev],
            messages: vec![],
        }
    }

    fn access(t: &Table, owner: Option<i64>) -> Access {
        let grant = TableGrant::new(Arc::new(t.clone()), None, Writes::ALL);
        let grant = match owner {
            Some(o) => grant.with_filter(json!({"owner": o})).expect("filter"),
            None => grant,
        };
        Access::new([grant])
    }

    #[tokio::test]
    async fn a_row_filter_given_or_taken_away_ends_the_subscription() {
        let t = table();
        let mgr =
            deadpool_postgres::Manager::new(tokio_postgres::Config::new(), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(mgr)
            .max_size(1)
            .build()
            .expect("a pool (it never connects here)");
        let hub = Hub::new(
            100,
            Duration::from_secs(60),
            1000,
            Arc::new(Metrics::default()),
        );
        let source = HubSource(hub.clone());
        for (before, after) in [(None, Some(7)), (Some(7), None)] {
            let shared: SharedAccess =
                Arc::new(arc_swap::ArcSwap::from_pointee(access(&t, before)));
            let filter = walcast_filter::parse_subscription_where(
                &t,
                &json!({"mutation_in": ["CREATED", "UPDATED", "DELETED"]}),
            )
            .expect("filter");
            let mut stream = source
                .subscribe(SubscriptionRequest {
                    table: t.clone(),
                    filter,
                    after: None,
                    connection: None,
                    access: shared.clone(),
                })
                .expect("subscribed");
            // Into owner 7's rows: an update without a filter, a create with one.
            hub.dispatch(&moved(&t, 3, 7, 10), true, &pool).await;
            let ev = stream.next().await.expect("an event");
            let expected = if before.is_some() {
                Op::Create
            } else {
                Op::Update
            };
            assert_eq!(ev.op, expected);
            shared.store(Arc::new(access(&t, after)));
            hub.dispatch(&moved(&t, 7, 3, 11), true, &pool).await;
            assert!(stream.next().await.is_none(), "{before:?} -> {after:?}");
        }
        let st = hub.lock();
        assert!(st.subs.is_empty());
        assert!(st.filtered.values().all(|n| *n == 0));
    }
}
