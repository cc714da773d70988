//! The retention window: committed transactions kept for `after:` replay, and how far the
//! slot may be confirmed while they are kept.

use std::sync::Arc;

use walcast_access::TableGrant;
use walcast_filter::EventFilter;
use walcast_graphql::SubscribeError;
use walcast_model::{Event, ResumePoint, Transaction};
use walcast_wal::Lsn;

use super::{Hub, State};
use crate::visibility;

/// A committed transaction kept for replay.
pub(super) struct Retained {
    commit_lsn: Lsn,
    xid: u32,
    commit_time: i64,
    events: Vec<Arc<Event>>,
}

impl Retained {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }
}

pub(super) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Hub {
    /// Keeps `tx` for replay and moves the position past it.
    pub(super) fn retain_locked(st: &mut State, tx: &Transaction) {
        if !tx.events.is_empty() {
            st.held += tx.events.len();
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
    }

    pub(super) fn evict_locked(&self, st: &mut State, now: i64) {
        let horizon = now - self.retention.as_micros() as i64;
        // Old transactions leave by age; beyond `max_retained` events the oldest leave early, so
        // memory stays bounded whatever the write rate (their cursors then expire sooner). A
        // large transaction is retained part by part, and leaves the same way.
        while let Some(front) = st.retained.front() {
            let too_old = front.commit_time < horizon;
            let too_many = st.held > self.max_retained;
            if !too_old && !too_many {
                break;
            }
            if let Some(t) = st.retained.pop_front() {
                st.held -= t.events.len();
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

    /// Retained events after a resume point that a subscription would have received.
    pub(super) fn replay(
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
