//! Subscription results in Directus' shape. Identical subscriptions on different connections
//! share their payload bytes: a payload is parsed and shaped once per shape, and each
//! subscriber's message only splices its `uid` in.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::Value;
use walcast_graphql::Payload;

use super::codec;
use super::fields::Selection;
use super::requests::directus_key;
use super::routes::{Route, Shape};

/// A subscription message without its `uid`: the uid goes between `head` and `tail` (the
/// errors, if any, and the closing brace), where `codec::subscription` puts it.
pub(super) struct Translated {
    head: String,
    tail: String,
}

impl Translated {
    fn message(&self, uid: Option<&Value>) -> String {
        let uid = uid.map(|uid| format!(",\"uid\":{uid}")).unwrap_or_default();
        let mut text = String::with_capacity(self.head.len() + uid.len() + self.tail.len());
        text.push_str(&self.head);
        text.push_str(&uid);
        text.push_str(&self.tail);
        text
    }
}

/// The Directus text of one GraphQL result of a subscription; None when there is nothing to
/// send.
pub(super) fn translate(route: &Route, payload: &Payload) -> Option<String> {
    translated(payload, &route.shape).map(|t| t.message(route.uid.as_ref()))
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

/// A collection event (`{key event data}` under the alias `s`): its name and its items.
fn items_of(data: &mut Value, sel: &Selection, numeric_key: bool) -> (String, Vec<Value>) {
    let mut m = data.get_mut("s").map(Value::take).unwrap_or(Value::Null);
    let event = m
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("update")
        .to_owned();
    let items = match event.as_str() {
        "delete" => vec![directus_key(
            m.get("key").unwrap_or(&Value::Null),
            numeric_key,
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
    (event, items)
}

/// Parses and shapes a payload; None when there is nothing to send.
fn shape_payload(shape: &Shape, payload: &str) -> Option<Translated> {
    let mut v: Value = serde_json::from_str(payload).ok()?;
    let errors = v
        .get_mut("errors")
        .map(Value::take)
        .filter(|e| !e.is_null());
    let mut data = v.get_mut("data").map(Value::take).unwrap_or(Value::Null);
    let mut head = match shape {
        Shape::Document => codec::subscription(event_of(&data).as_deref(), data, None),
        Shape::Items { sel, numeric_key } => {
            let (event, items) = items_of(&mut data, sel, *numeric_key);
            if items.is_empty() && event != "truncate" && errors.is_none() {
                return None;
            }
            codec::subscription(Some(&event), Value::Array(items), None)
        }
    };
    // The message is an object: its closing brace goes to the tail.
    head.pop();
    let tail = match errors {
        None => "}".to_owned(),
        Some(errors) => format!(",\"errors\":{errors}}}"),
    };
    Some(Translated { head, tail })
}

/// Payloads whose translations are kept: the subscribers of a payload write it within moments
/// of each other, so the last few cover them (a payload gone from here is translated again).
const KEPT: usize = 256;

struct Entry {
    /// Held so that its address, the key, stays its own.
    payload: Payload,
    shape: Arc<Shape>,
    translated: Option<Arc<Translated>>,
}

#[derive(Default)]
struct Recent {
    by_address: HashMap<usize, Entry>,
    order: VecDeque<usize>,
}

/// For every connection: the subscribers of one payload are on many.
static RECENT: LazyLock<Mutex<Recent>> = LazyLock::new(Default::default);

fn same_shape(a: &Arc<Shape>, b: &Arc<Shape>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// The payload's translation for the shape: made by the first subscriber to write it.
fn translated(payload: &Payload, shape: &Arc<Shape>) -> Option<Arc<Translated>> {
    let key = Arc::as_ptr(payload) as *const u8 as usize;
    {
        let recent = walcast_model::sync::lock(&RECENT);
        if let Some(e) = recent.by_address.get(&key) {
            if Arc::ptr_eq(&e.payload, payload) && same_shape(&e.shape, shape) {
                return e.translated.clone();
            }
        }
    }
    let translated = shape_payload(shape, payload).map(Arc::new);
    let entry = Entry {
        payload: payload.clone(),
        shape: shape.clone(),
        translated: translated.clone(),
    };
    let mut recent = walcast_model::sync::lock(&RECENT);
    if recent.by_address.insert(key, entry).is_none() {
        recent.order.push_back(key);
        if recent.order.len() > KEPT {
            if let Some(old) = recent.order.pop_front() {
                recent.by_address.remove(&old);
            }
        }
    }
    translated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::directus::fields::Selection;
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
            shape: Arc::new(Shape::Items {
                sel,
                numeric_key: true,
            }),
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
            parse(translate(&r, &create.into())),
            json!({"type": "subscription", "event": "create", "data": [{"id": 3, "title": "T"}], "uid": "1"})
        );
        let delete = r#"{"data":{"s":{"key":"3","event":"delete","data":null}}}"#;
        assert_eq!(
            parse(translate(&r, &delete.into())),
            json!({"type": "subscription", "event": "delete", "data": [3], "uid": "1"})
        );
    }

    #[test]
    fn documents_keep_their_data_and_name_their_event() {
        let r = Route {
            uid: Some(json!("2")),
            shape: Arc::new(Shape::Document),
        };
        let p = r#"{"data":{"articles_mutated":{"key":"1","event":"update","data":{"id":"1"}}}}"#;
        assert_eq!(
            parse(translate(&r, &p.into())),
            json!({"type": "subscription", "event": "update", "data": {"articles_mutated": {"key": "1", "event": "update", "data": {"id": "1"}}}, "uid": "2"})
        );
        let prisma = r#"{"data":{"post":{"mutation":"DELETED","node":null}}}"#;
        assert_eq!(parse(translate(&r, &prisma.into()))["event"], "delete");
        let errors = r#"{"data":{"x":null},"errors":[{"message":"m"}]}"#;
        assert_eq!(
            parse(translate(&r, &errors.into()))["errors"][0]["message"],
            "m"
        );
    }

    /// The exact bytes, uid and errors where they always were.
    #[test]
    fn messages_keep_their_bytes() {
        let mut r = Route {
            uid: Some(json!({"n": 1})),
            shape: Arc::new(Shape::Document),
        };
        let p = r#"{"data":{"a":{"event":"create","v":1.5}},"errors":[{"message":"m\n"}]}"#;
        let want = r#"{"type":"subscription","event":"create","data":{"a":{"event":"create","v":1.5}},"uid":{"n":1},"errors":[{"message":"m\n"}]}"#;
        assert_eq!(translate(&r, &p.into()).as_deref(), Some(want));
        r.uid = None;
        let p = r#"{"data":{"a":null}}"#;
        let want = r#"{"type":"subscription","data":{"a":null}}"#;
        assert_eq!(translate(&r, &p.into()).as_deref(), Some(want));
    }

    /// Subscribers of one payload (each with its own uid and route) share one translation.
    #[test]
    fn a_payload_is_translated_once_per_shape() {
        let one = items_route(&["id", "title"]);
        let two = Route {
            uid: Some(json!("2")),
            shape: Arc::new(Shape::clone(&one.shape)),
        };
        let payload: Payload =
            r#"{"data":{"s":{"key":"3","event":"create","data":{"id":"3","title":"T"}}}}"#.into();
        let first = translated(&payload, &one.shape).expect("a message");
        let again = translated(&payload, &two.shape).expect("a message");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(
            parse(translate(&two, &payload)),
            json!({"type": "subscription", "event": "create", "data": [{"id": 3, "title": "T"}], "uid": "2"})
        );
        let other: Payload = payload.to_string().into();
        let fresh = translated(&other, &one.shape).expect("a message");
        assert!(!Arc::ptr_eq(&first, &fresh));
    }
}
