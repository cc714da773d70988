//! A Directus connection's subscriptions as its writer sees them: by operation id, the
//! client's uid and how results take Directus' shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::fields::Selection;
use crate::ws::outgoing::Out;
use crate::ws::protocol::ServerMsg;

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
