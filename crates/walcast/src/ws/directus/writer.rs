//! The socket writer of a Directus connection: GraphQL results of its subscriptions turned
//! into Directus messages on the way out, and the session's own messages as they are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use futures::stream::SplitSink;
use futures::SinkExt;
use serde_json::Value;
use tokio::sync::mpsc;
use ws_stream::tungstenite::protocol::frame::coding::CloseCode;
use ws_stream::tungstenite::protocol::CloseFrame;
use ws_stream::tungstenite::Message;

use super::codec::{self, code};
use super::fields::Selection;
use super::requests::directus_key;
use crate::metrics::Metrics;
use crate::server::Socket;
use crate::ws::protocol::ServerMsg;
use crate::ws::session::Out;

/// Most messages written before a flush.
const WRITE_BATCH: usize = 64;

/// How a subscription's GraphQL results become Directus messages.
pub(super) enum Shape {
    /// A collection subscription: `{key event data}` under the alias `s`, as `create`, `update`
    /// (the item in a list) or `delete` (the key in a list).
    Items { sel: Selection, numeric_key: bool },
    /// A GraphQL document: its `data` as it is, with the event it names.
    Document,
}

pub(super) struct Route {
    pub(super) uid: Option<Value>,
    pub(super) shape: Shape,
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

fn event_of(data: &Value) -> Option<String> {
    let first = data.as_object()?.values().next()?;
    if let Some(e) = first.get("event").and_then(Value::as_str) {
        return Some(e.to_owned());
    }
    // Prisma 1 payloads: CREATED, UPDATED, DELETED.
    let m = first.get("mutation").and_then(Value::as_str)?;
    Some(m.strip_suffix('D').unwrap_or(m).to_ascii_lowercase())
}

/// The Directus text of one GraphQL result of a subscription; None when there is nothing to
/// send.
pub(super) fn translate(route: &Route, payload: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(payload).ok()?;
    let errors = v
        .get_mut("errors")
        .map(Value::take)
        .filter(|e| !e.is_null());
    let mut data = v.get_mut("data").map(Value::take).unwrap_or(Value::Null);
    let uid = route.uid.as_ref();
    let text = match &route.shape {
        Shape::Document => codec::subscription(event_of(&data).as_deref(), data, uid),
        Shape::Items { sel, numeric_key } => {
            let mut m = data.get_mut("s").map(Value::take).unwrap_or(Value::Null);
            let event = m
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("update")
                .to_owned();
            let items = match event.as_str() {
                "delete" => vec![directus_key(
                    m.get("key").unwrap_or(&Value::Null),
                    *numeric_key,
                )],
                "truncate" => vec![],
                _ => {
                    let mut item = m.get_mut("data").map(Value::take).unwrap_or(Value::Null);
                    if item.is_null() {
                        vec![]
                    } else {
                        sel.shape(&mut item);
                        vec![item]
                    }
                }
            };
            if items.is_empty() && event != "truncate" && errors.is_none() {
                return None;
            }
            codec::subscription(Some(&event), Value::Array(items), uid)
        }
    };
    match errors {
        None => Some(text),
        Some(errors) => {
            let mut msg: Value = serde_json::from_str(&text).ok()?;
            if let Value::Object(o) = &mut msg {
                o.insert("errors".into(), errors);
            }
            Some(msg.to_string())
        }
    }
}

/// Writes until the channel closes or a close is sent; returns the sink after a close.
pub(super) async fn run(
    mut sink: SplitSink<Socket, Message>,
    mut out_rx: mpsc::Receiver<Out>,
    routes: Routes,
    paused: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> Option<SplitSink<Socket, Message>> {
    let route = |id: &str| {
        routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    };
    let forget = |id: &str| routes.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    while let Some(first) = out_rx.recv().await {
        let mut next = Some(first);
        let mut fed = 0usize;
        while let Some(out) = next.take() {
            let text = match out {
                Out::Msg(ServerMsg::Next { id, payload }) if id.is_empty() => {
                    Some(payload.to_string())
                }
                // Between an expired token and the next one, events are not delivered.
                Out::Msg(ServerMsg::Next { .. }) if paused.load(Relaxed) => None,
                Out::Msg(ServerMsg::Next { id, payload }) => {
                    route(&id).and_then(|r| translate(&r, &payload))
                }
                // An operation's last message: its route goes with it.
                Out::Msg(ServerMsg::Error { id, errors }) => forget(&id).map(|r| {
                    let message = errors
                        .get(0)
                        .and_then(|e| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("subscription failed");
                    codec::error("subscribe", code::INVALID_QUERY, message, r.uid.as_ref())
                }),
                Out::Msg(ServerMsg::Complete { id, .. }) => {
                    forget(&id);
                    None
                }
                Out::Msg(_) => None,
                Out::Ping => {
                    if sink.feed(Message::Ping(Default::default())).await.is_err() {
                        let _ = sink.close().await;
                        return None;
                    }
                    None
                }
                // The client closed: closing flushes the reply tungstenite queued.
                Out::CloseReply => {
                    let _ = sink.close().await;
                    return None;
                }
                Out::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    if sink.send(Message::Close(Some(frame))).await.is_err() {
                        let _ = sink.close().await;
                    }
                    return Some(sink);
                }
            };
            if let Some(text) = text {
                metrics.messages_sent.fetch_add(1, Relaxed);
                metrics.bytes_sent.fetch_add(text.len() as u64, Relaxed);
                if sink.feed(Message::text(text)).await.is_err() {
                    // After the client's close frame only the reply may be written.
                    let _ = sink.close().await;
                    return None;
                }
                fed += 1;
            }
            if fed < WRITE_BATCH {
                next = out_rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::directus::testing::blog;
    use serde_json::json;

    fn items_route(fields: &[&str]) -> Route {
        let info = blog();
        let t = info.table("articles").expect("articles").clone();
        let sel = Selection::parse(
            &t,
            &fields.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect("selection");
        Route {
            uid: Some(json!("1")),
            shape: Shape::Items {
                sel,
                numeric_key: true,
            },
        }
    }

    fn parse(s: Option<String>) -> Value {
        serde_json::from_str(&s.expect("a message")).expect("JSON")
    }

    #[test]
    fn collection_events_take_directus_shape() {
        let r = items_route(&["id", "title"]);
        let create = r#"{"data":{"s":{"key":"3","event":"create","data":{"id":"3","title":"T"}}}}"#;
        assert_eq!(
            parse(translate(&r, create)),
            json!({"type": "subscription", "event": "create", "data": [{"id": 3, "title": "T"}], "uid": "1"})
        );
        let delete = r#"{"data":{"s":{"key":"3","event":"delete","data":null}}}"#;
        assert_eq!(
            parse(translate(&r, delete)),
            json!({"type": "subscription", "event": "delete", "data": [3], "uid": "1"})
        );
    }

    #[test]
    fn documents_keep_their_data_and_name_their_event() {
        let r = Route {
            uid: Some(json!("2")),
            shape: Shape::Document,
        };
        let p = r#"{"data":{"articles_mutated":{"key":"1","event":"update","data":{"id":"1"}}}}"#;
        assert_eq!(
            parse(translate(&r, p)),
            json!({"type": "subscription", "event": "update", "data": {"articles_mutated": {"key": "1", "event": "update", "data": {"id": "1"}}}, "uid": "2"})
        );
        let prisma = r#"{"data":{"post":{"mutation":"DELETED","node":null}}}"#;
        assert_eq!(parse(translate(&r, prisma))["event"], "delete");
        let errors = r#"{"data":{"x":null},"errors":[{"message":"m"}]}"#;
        assert_eq!(parse(translate(&r, errors))["errors"][0]["message"], "m");
    }
}
