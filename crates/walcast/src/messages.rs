//! Fan-out of logical messages (`pg_logical_emit_message`) to `_logical_message` subscriptions.
//!
//! Kept apart from the hub's table machinery: messages have no table, row filter or relation
//! to match, and are not retained (no `after:` replay), so the slot's confirmed position does
//! not depend on them. Each subscription has a bounded queue of `WALCAST_CLIENT_QUEUE` messages;
//! a full one closes its connection as a slow consumer, as for table events.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::mpsc;
use walcast_graphql::{
    ConnectionHandle, MessageRequest, MessageStream, SharedAccess, SubscribeError,
};
use walcast_model::LogicalMessage;

use crate::metrics::Metrics;

struct Subscriber {
    /// Asked-for prefixes; None: whatever the caller's grant allows at each message.
    prefixes: Option<BTreeSet<String>>,
    tx: mpsc::Sender<Arc<LogicalMessage>>,
    /// Checked per message, so a permissions reload applies at once.
    access: SharedAccess,
    connection: Option<ConnectionHandle>,
}

pub struct MessageHub {
    subs: Mutex<HashMap<u64, Subscriber>>,
    next_id: AtomicU64,
    queue: usize,
    /// Message subscriptions count in `walcast_subscriptions_active` like table ones.
    metrics: Arc<Metrics>,
}

impl MessageHub {
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> Arc<MessageHub> {
        Arc::new(MessageHub {
            subs: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
            metrics,
        })
    }

    fn remove(&self, subs: &mut HashMap<u64, Subscriber>, id: u64) {
        if subs.remove(&id).is_some() {
            self.metrics.subscriptions.fetch_sub(1, Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        // Every update under the lock is a single insert or remove: consistent after a panic.
        walcast_model::sync::lock(&self.subs)
    }

    pub fn subscribe(
        self: &Arc<Self>,
        req: MessageRequest,
    ) -> Result<MessageStream, SubscribeError> {
        if req.access.load().messages.is_none() {
            return Err(SubscribeError::Unavailable(
                "logical messages are not available to this role".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let id = self.next_id.fetch_add(1, Relaxed);
        self.lock().insert(
            id,
            Subscriber {
                prefixes: req.prefixes,
                tx,
                access: req.access,
                connection: req.connection,
            },
        );
        self.metrics.subscriptions.fetch_add(1, Relaxed);
        Ok(Box::pin(Messages {
            rx,
            _registered: Registration {
                hub: self.clone(),
                id,
            },
        }))
    }

    /// Hands messages, in order, to every subscription that asked for their prefix and may
    /// read it. Called with a transaction's messages once it is delivered, or with one
    /// non-transactional message as it arrives.
    pub fn publish(&self, messages: &[Arc<LogicalMessage>]) {
        if messages.is_empty() {
            return;
        }
        let mut subs = self.lock();
        let mut dead: Vec<u64> = Vec::new();
        for (id, sub) in subs.iter() {
            let access = sub.access.load();
            let Some(granted) = &access.messages else {
                // The grant was withdrawn (permissions reload): the subscription ends.
                dead.push(*id);
                continue;
            };
            for m in messages {
                let wanted = sub.prefixes.as_ref().is_none_or(|p| p.contains(&m.prefix));
                if !wanted || !granted.allows(&m.prefix) {
                    continue;
                }
                match sub.tx.try_send(m.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            connection = sub.connection.as_ref().map(|c| c.id),
                            "logical message queue full: closing the connection as a slow consumer"
                        );
                        if let Some(c) = &sub.connection {
                            (c.on_overflow)();
                        }
                        dead.push(*id);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        dead.push(*id);
                        break;
                    }
                }
            }
        }
        for id in dead {
            self.remove(&mut subs, id);
        }
    }
}

/// Unregisters its subscription when the stream is dropped (complete, stop, disconnect).
struct Registration {
    hub: Arc<MessageHub>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut subs = self.hub.lock();
        self.hub.remove(&mut subs, self.id);
    }
}

struct Messages {
    rx: mpsc::Receiver<Arc<LogicalMessage>>,
    _registered: Registration,
}

impl Stream for Messages {
    type Item = Arc<LogicalMessage>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;
    use futures::StreamExt;
    use walcast_graphql::{Access, MessagePrefixes};
    use walcast_wal::Lsn;

    fn message(prefix: &str) -> Arc<LogicalMessage> {
        Arc::new(LogicalMessage {
            transactional: false,
            lsn: Lsn(1),
            prefix: prefix.into(),
            content: bytes::Bytes::from_static(b"x"),
            commit_time: None,
        })
    }

    fn access(messages: Option<MessagePrefixes>) -> SharedAccess {
        Arc::new(ArcSwap::from_pointee(
            Access::default().with_messages(messages),
        ))
    }

    #[tokio::test]
    async fn delivers_asked_and_granted_prefixes_only() {
        let metrics = Arc::new(Metrics::default());
        let hub = MessageHub::new(8, metrics.clone());
        let only = |p: &[&str]| MessagePrefixes::Only(p.iter().map(|s| s.to_string()).collect());
        let granted = access(Some(only(&["outbox", "audit"])));
        let mut all = hub
            .subscribe(MessageRequest {
                prefixes: None,
                connection: None,
                access: granted.clone(),
            })
            .expect("subscribes");
        let mut outbox = hub
            .subscribe(MessageRequest {
                prefixes: Some(BTreeSet::from(["outbox".to_owned()])),
                connection: None,
                access: granted.clone(),
            })
            .expect("subscribes");
        assert!(hub
            .subscribe(MessageRequest {
                prefixes: None,
                connection: None,
                access: access(None),
            })
            .is_err());
        hub.publish(&[message("other"), message("audit"), message("outbox")]);
        assert_eq!(
            all.next().await.map(|m| m.prefix.clone()).as_deref(),
            Some("audit")
        );
        assert_eq!(
            all.next().await.map(|m| m.prefix.clone()).as_deref(),
            Some("outbox")
        );
        assert_eq!(
            outbox.next().await.map(|m| m.prefix.clone()).as_deref(),
            Some("outbox")
        );
        // A reload that withdraws the grant ends the subscriptions.
        granted.store(Arc::new(Access::default()));
        hub.publish(&[message("outbox")]);
        assert!(all.next().await.is_none());
        assert!(outbox.next().await.is_none());
        assert!(hub.lock().is_empty());
        assert_eq!(metrics.subscriptions.load(Relaxed), 0);
    }
}
