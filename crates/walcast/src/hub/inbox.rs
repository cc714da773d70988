//! A subscription's queue and its stream of events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use futures::Stream;
use smallvec::SmallVec;
use walcast_model::Event;

use super::registration::Registration;

/// A transaction's matching events for one subscription. Most transactions bring a subscriber
/// one event, held inline: no allocation per subscriber.
pub(super) type Chunk = SmallVec<[Arc<Event>; 1]>;

/// A subscription's queue: the hub pushes a transaction's matching events as one chunk, the
/// subscription's stream takes them one at a time. A mutex and a waker rather than a tokio
/// channel, whose first block (32 slots) and cache-padded state took about 1.3 KiB per
/// subscription whether anything was queued or not; an empty inbox allocates nothing.
#[derive(Default)]
pub(super) struct Inbox {
    state: Mutex<InboxState>,
    /// Events sent but not yet taken by the subscription: the queue's fill.
    pub(super) pending: AtomicUsize,
    /// The subscription's connection (0: none), so a transaction wakes a connection's
    /// subscriptions together.
    pub(super) connection: u64,
    /// Set under the hub lock when the subscriber leaves the hub: queueing, under the same
    /// lock, skips it without looking the subscriber up. (Its stream learns it when the
    /// subscriber is dropped, after the lock.)
    pub(super) removed: AtomicBool,
}

#[derive(Default)]
struct InboxState {
    chunks: VecDeque<Chunk>,
    waker: Option<Waker>,
    /// The hub dropped the subscriber (removed, revoked, slow): the stream ends once drained.
    sender_gone: bool,
    /// The stream is gone: nothing more is queued.
    receiver_gone: bool,
}

impl Inbox {
    pub(super) fn new(connection: u64) -> Inbox {
        Inbox {
            connection,
            ..Inbox::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // Each update under the lock is a single push, pop or flag: consistent after a panic.
        walcast_model::sync::lock(&self.state)
    }

    /// Queues a chunk; `Err` when the subscription's stream is gone. Returns the stream's
    /// waker instead of waking it: the hub wakes once its own lock is released, so a woken
    /// stream never runs into it.
    pub(super) fn send(&self, events: Chunk) -> Result<Option<Waker>, ()> {
        let mut st = self.lock();
        if st.receiver_gone {
            return Err(());
        }
        self.pending.fetch_add(events.len(), Relaxed);
        st.chunks.push_back(events);
        Ok(st.waker.take())
    }
}

/// The hub's end of an inbox; dropping it ends the subscription's stream.
pub(super) struct InboxSender(pub(super) Arc<Inbox>);

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
pub(super) struct InboxStream {
    pub(super) replay: std::vec::IntoIter<Arc<Event>>,
    pub(super) chunk: smallvec::IntoIter<[Arc<Event>; 1]>,
    pub(super) inbox: Arc<Inbox>,
    pub(super) _registered: Registration,
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
