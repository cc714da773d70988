//! The Directus side of a connection's writer: GraphQL results of its subscriptions turned into
//! Directus messages on the way out, and the session's own messages as they are.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::Value;

use super::codec::{self, code};
use super::routes::{Route, Routes};
use super::translate::translate;
use crate::ws::protocol::ServerMsg;
use crate::ws::writer::Encoder;

/// How a Directus connection's messages become frames.
pub(super) struct Outgoing {
    pub(super) routes: Routes,
    /// Between an expired token and the next one, events are not delivered.
    pub(super) paused: Arc<AtomicBool>,
}

impl Outgoing {
    fn route(&self, id: &str) -> Option<Arc<Route>> {
        let routes = walcast_model::sync::lock(&self.routes);
        routes.get(id).cloned()
    }

    fn forget(&self, id: &str) -> Option<Arc<Route>> {
        let mut routes = walcast_model::sync::lock(&self.routes);
        routes.remove(id)
    }
}

impl Encoder for Outgoing {
    fn text(&mut self, msg: ServerMsg) -> Option<String> {
        match msg {
            ServerMsg::Next { id, payload } if id.is_empty() => Some(payload.to_string()),
            ServerMsg::Next { .. } if self.paused.load(Relaxed) => None,
            ServerMsg::Next { id, payload } => {
                self.route(&id).and_then(|r| translate(&r, &payload))
            }
            // An operation's last message: its route goes with it.
            ServerMsg::Error { id, errors } => self.forget(&id).map(|r| {
                let message = errors
                    .get(0)
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("subscription failed");
                codec::error("subscribe", code::INVALID_QUERY, message, r.uid.as_ref())
            }),
            ServerMsg::Complete { id, .. } => {
                self.forget(&id);
                None
            }
            _ => None,
        }
    }
}
