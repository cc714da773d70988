//! Matching one event against the subscriptions, as each subscriber's role sees it.

use std::sync::Arc;

use walcast_filter::{RelationBatch, Truth};
use walcast_model::{Event, Op, Table};

use super::inbox::Inbox;
use super::{Hub, State, Subscriber};
use crate::metrics::Metrics;
use crate::visibility::{self, Seen};

/// An event for one subscriber, as its role sees it.
pub(super) struct Delivery {
    /// The event's position in its transaction.
    pub(super) index: usize,
    /// Its number in the transaction's `RelationBatch`.
    pub(super) number: usize,
    pub(super) id: u64,
    pub(super) event: Arc<Event>,
    /// The subscriber's inbox and table shape, taken at match time: queueing needs no further
    /// look-up of the subscriber.
    pub(super) inbox: Arc<Inbox>,
    pub(super) table: Arc<Table>,
}

/// What matching one transaction found.
#[derive(Default)]
pub(super) struct Found {
    /// Certain matches.
    pub(super) deliveries: Vec<Delivery>,
    /// Matches if the database says their relation conditions hold.
    pub(super) pending: Vec<Delivery>,
    pub(super) batch: RelationBatch,
    /// Subscriptions revoked while matching, dropped once the hub lock is released.
    pub(super) removed: Vec<Subscriber>,
}

impl Found {
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
            inbox: sub.tx.0.clone(),
            table: sub.table.clone(),
        };
        if truth.is_true() {
            self.deliveries.push(delivery());
        } else if truth == Truth::Unknown && sub.filter.has_relations() {
            self.batch.add(number, event, &sub.filter);
            self.pending.push(delivery());
        }
    }
}

impl Hub {
    /// Decides, in memory, who receives event `i` of `n`, as each one's role sees it:
    /// `deliveries` for certain matches, `pending` (and `batch`) for those whose relation
    /// conditions the database must answer.
    ///
    /// An update is looked up three times: as itself, for the subscribers whose role sees it as
    /// an update, and as the create of its new version and the delete of its previous one, for
    /// those whose role sees the row enter or leave its rows (see `crate::visibility`). Each
    /// subscriber is offered at most one of them.
    pub(super) fn match_event(
        metrics: &Metrics,
        st: &mut State,
        i: usize,
        n: usize,
        ev: &Arc<Event>,
        found: &mut Found,
    ) {
        let oid = ev.table.oid;
        Self::follow_layout(st, ev);
        let mut revoked: Vec<u64> = Vec::new();
        // How the subscriber's role sees `ev`; None when its access was withdrawn.
        let judge = |sub: &Subscriber, ev: &Event, revoked: &mut Vec<u64>| {
            let access = sub.access.load();
            match access.table(oid).filter(|a| {
                a.shows_columns(&sub.columns_key) && a.row_filter().is_some() == sub.filtered
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
            found.removed.extend(Self::remove_locked(st, metrics, id));
        }
    }

    /// A new shape of the event's table: index entries built for the old one leave the index,
    /// and those subscriptions are matched one by one from then on.
    fn follow_layout(st: &mut State, ev: &Arc<Event>) {
        let oid = ev.table.oid;
        let Some(layout) = st.layouts.get(&oid).cloned() else {
            st.layouts.insert(oid, ev.table.clone());
            return;
        };
        if Arc::ptr_eq(&layout, &ev.table) || Event::same_layout(&layout, &ev.table) {
            return;
        }
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
}
