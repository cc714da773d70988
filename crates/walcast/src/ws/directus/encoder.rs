//! The Directus side of a connection's writer: GraphQL results of its subscriptions turned into
//! Directus messages on the way out, and the session's own messages as they are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::codec::{self, code};
use super::fields::Selection;
use super::translate::translate;
use crate::ws::outgoing::Out;
use crate::ws::protocol::ServerMsg;
use crate::ws::writer::Encoder;

/// How a subscription's GraphQL results become Directus messages.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shape {
    /// A collection subscription: `{key event data}` under the alias `s`, as `create`, `update`
    /// (the item in a list) or `delete` (the key in a list).
    Items { sel: Selection, numeric_key: bool },
    /// A GraphQL document: its `data` as it is, with the event it names.
    Document,
}

pub(super) struct Route {
    pub(super) uid: Option<Value>,
    /// Shared by the payload translations made for it (see `translate`).
    pub(super) shape: Arc<Shape>,
}

/// Subscriptions by operation id, shared by the session (which adds and removes them) and the
/// writer (which reads them per event).
pub(super) type Routes = Arc<Mutex<HashMap<String, Arc<Route>>>>;

/// A message of the session itself: sent under the empty operation id, which no operation has.
pub(super) fn raw(text: String) -> Out {
    Out::Msg(ServerMsg::Next {
        id: String::new(),
        payload: text.into(),
    })
}

/// How a Directus connection's messages become frames.
pub(super) struct Outgoing {
    pub(super) routes: Routes,
    /// Between an expired token and the next one, events are not delivered.
    pub(super) paused: Arc<AtomicBool>,
}

impl Outgoing {
    fn route(&self, id: &str) -> Option<Arc<Route>> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.get(id).cloned()
    }

    fn forget(&self, id: &str) -> Option<Arc<Route>> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
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
