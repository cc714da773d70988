//! Subscribing: the hub as the GraphQL layer sees it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use walcast_graphql::{
    EventSource, EventStream, MessageRequest, MessageStream, SubscribeError, SubscriptionRequest,
};
use walcast_model::{Cursor, Event, ResumePoint};

use super::inbox::{Chunk, Inbox, InboxSender, InboxStream};
use super::registration::Registration;
use super::{Hub, Subscriber};

/// The hub as the GraphQL layer sees it.
#[derive(Clone)]
pub struct HubSource(pub Arc<Hub>);

impl EventSource for HubSource {
    fn subscribe(&self, req: SubscriptionRequest) -> Result<EventStream, SubscribeError> {
        let hub = &self.0;
        let inbox = Arc::new(Inbox::new(req.connection.as_ref().map_or(0, |c| c.id)));
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
                    columns_key: allowed.columns_key().clone(),
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
            chunk: Chunk::new().into_iter(),
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
