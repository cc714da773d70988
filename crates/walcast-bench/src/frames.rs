//! Reading the frames a server sends: the message type, `sent_at`, and the rows of a live query
//! result. At a million frames a second a full parse of each `next` would make the client the
//! bottleneck, so the common `next` frame is read by a scan ([`fast_next`]) and serde handles
//! everything else.

use serde::Deserialize;
use serde_json::Value;

/// `{"type":"next",` — how walcast starts a `next` frame.
const TYPE_FIRST: &str = r#"{"type":"next","#;
/// `,"type":"next",` after `{"id":"…"` — how the graphql-ws server orders it.
const TYPE_AFTER_ID: &str = r#","type":"next","#;

/// For a `next` frame in one of the two usual key orders: `Some(sent_at)` without parsing it
/// (the payload's first `sent_at`, if any). `None` when the frame is anything else or written
/// otherwise; the caller then parses it.
pub fn fast_next(text: &str) -> Option<Option<i64>> {
    let rest = match text.strip_prefix(TYPE_FIRST) {
        Some(rest) => rest,
        None => {
            let after = text.strip_prefix(r#"{"id":""#)?;
            let end = after.find('"')?;
            // An escaped quote inside the id would end the scan early: leave it to serde.
            if after[..end].contains('\\') {
                return None;
            }
            after[end + 1..].strip_prefix(TYPE_AFTER_ID)?
        }
    };
    Some(find_sent_at(rest))
}

#[derive(Deserialize)]
struct WithId {
    id: Option<String>,
}

/// The `id` of a message (parsed only for the rare ones that need it).
pub fn message_id(text: &str) -> Option<String> {
    serde_json::from_str::<WithId>(text).ok()?.id
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
}

/// The `type` of a message, by a full parse.
pub fn message_type(text: &str) -> Option<String> {
    serde_json::from_str::<Envelope>(text)
        .ok()
        .map(|e| e.ty.into_owned())
}

/// The value of the first `"sent_at":` in a payload: an integer, possibly in quotes.
pub fn find_sent_at(text: &str) -> Option<i64> {
    const KEY: &str = "\"sent_at\":";
    let at = text.find(KEY)? + KEY.len();
    let rest = text[at..].trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The rows of a query result: every object with an integer `id` and a `sentAt` (or `sent_at`),
/// as `(id, sent_at)`, in document order.
pub fn result_rows(text: &str) -> Option<Vec<(i64, i64)>> {
    let frame: Value = serde_json::from_str(text).ok()?;
    let mut rows = Vec::new();
    collect_rows(frame.get("payload")?, &mut rows);
    Some(rows)
}

fn collect_rows(v: &Value, rows: &mut Vec<(i64, i64)>) {
    match v {
        Value::Object(map) => {
            let sent = map.get("sentAt").or_else(|| map.get("sent_at"));
            if let (Some(id), Some(sent)) = (map.get("id").and_then(as_i64), sent.and_then(as_i64))
            {
                rows.push((id, sent));
                return;
            }
            map.values().for_each(|v| collect_rows(v, rows));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rows(v, rows)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sent_at` as serde finds it: the first such key anywhere in the payload.
    fn serde_sent_at(v: &Value) -> Option<i64> {
        match v {
            Value::Object(map) => map
                .get("sent_at")
                .and_then(as_i64)
                .or_else(|| map.values().find_map(serde_sent_at)),
            Value::Array(items) => items.iter().find_map(serde_sent_at),
            _ => None,
        }
    }

    /// Frames as walcast writes them (type first, then id, then the payload as it serialises
    /// events) and as the graphql-ws server does (`{id, type, payload}`), and others.
    fn real_frames() -> Vec<String> {
        let event = r#"{"data":{"bench_mutated":{"key":{"id":"4711"},"event":"INSERT","data":{"id":"4711","bucket":11,"sent_at":"1765000000123456","payload":"row 4711"}}}}"#;
        vec![
            format!(r#"{{"type":"next","id":"1","payload":{event}}}"#),
            format!(r#"{{"type":"next","id":"17","payload":{event}}}"#),
            format!(r#"{{"id":"1","type":"next","payload":{event}}}"#),
            r#"{"type":"next","id":"2","payload":{"data":{"t":{"sent_at":42}}}}"#.into(),
            r#"{"type":"next","id":"3","payload":{"data":{"t":{"other":1}}}}"#.into(),
            r#"{"id":"a\"b","type":"next","payload":{"data":{"t":{"sent_at":7}}}}"#.into(),
            r#"{ "type": "next", "id": "4", "payload": {"data": {"t": {"sent_at": 9}}}}"#.into(),
            r#"{"type":"complete","id":"1"}"#.into(),
            r#"{"type":"error","id":"1","payload":[{"message":"no"}]}"#.into(),
            r#"{"type":"ping"}"#.into(),
            r#"{"type":"connection_ack"}"#.into(),
            r#"{"type":"nextish","id":"1","payload":{}}"#.into(),
        ]
    }

    #[test]
    fn the_fast_path_agrees_with_serde() {
        let mut fast = 0;
        for frame in real_frames() {
            let parsed: Value = serde_json::from_str(&frame).expect("test frames are JSON");
            let is_next = message_type(&frame).as_deref() == Some("next");
            if let Some(sent_at) = fast_next(&frame) {
                fast += 1;
                assert!(is_next, "fast path took a frame that is not next: {frame}");
                assert_eq!(
                    sent_at,
                    parsed.get("payload").and_then(serde_sent_at),
                    "{frame}"
                );
            }
        }
        // Walcast's order and graphql-ws's take the fast path; the rest falls back to serde.
        assert_eq!(fast, 5);
    }

    #[test]
    fn finds_sent_at() {
        assert_eq!(
            find_sent_at(r#"{"data":{"x":{"data":{"id":"1","sent_at":"1700000000123456"}}}}"#),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(find_sent_at(r#"{"sent_at": 42}"#), Some(42));
        assert_eq!(find_sent_at(r#"{"sent_at":null}"#), None);
        assert_eq!(find_sent_at(r#"{"other":1}"#), None);
    }

    #[test]
    fn message_types() {
        assert_eq!(
            message_type(r#"{"id":"1","type":"next","payload":{"data":{}}}"#).as_deref(),
            Some("next")
        );
        assert_eq!(message_type("nope"), None);
    }

    #[test]
    fn rows_of_a_live_result() {
        let frame = r#"{"id":"1","type":"next","payload":{"data":{"allBenches":{"nodes":[{"id":"12","sentAt":"1000"},{"id":"11","sentAt":"900"}]}}}}"#;
        assert_eq!(result_rows(frame), Some(vec![(12, 1000), (11, 900)]));
        let empty = r#"{"id":"1","type":"next","payload":{"data":{"allBenches":{"nodes":[]}}}}"#;
        assert_eq!(result_rows(empty), Some(vec![]));
        assert_eq!(result_rows("nope"), None);
    }
}
