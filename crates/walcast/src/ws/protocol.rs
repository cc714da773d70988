//! The three WebSocket sub-protocols, as codecs between their frames and one set of messages.

use serde_json::{json, Value};

pub use crate::request::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the `graphql-ws` npm client).
    Transport,
    /// `graphql-ws` (subscriptions-transport-ws).
    Legacy,
    /// `graphql-subscriptions` (Graphcool / Prisma 1).
    Graphcool,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Transport => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
            Protocol::Graphcool => "graphql-subscriptions",
        }
    }

    /// The first protocol of the client's `Sec-WebSocket-Protocol` list that walcast speaks.
    pub fn negotiate(header: Option<&str>) -> Option<Protocol> {
        let Some(header) = header else {
            return Some(Protocol::Transport);
        };
        header.split(',').map(str::trim).find_map(|p| match p {
            "graphql-transport-ws" => Some(Protocol::Transport),
            "graphql-ws" => Some(Protocol::Legacy),
            "graphql-subscriptions" => Some(Protocol::Graphcool),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    Init(Option<Value>),
    Start { id: String, request: Request },
    Stop { id: String },
    Ping(Option<Value>),
    Pong,
    Terminate,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    Ack,
    /// Refusal of the init message (legacy `connection_error`, Graphcool `init_fail`).
    InitFail(String),
    /// The subscription is live (Graphcool `subscription_success`; nothing elsewhere).
    Started {
        id: String,
    },
    /// A result: `payload` is serialised JSON (`{"data":…}`), shared by every subscriber of an
    /// identical subscription; only the envelope is per message.
    Next {
        id: String,
        payload: walcast_graphql::Payload,
    },
    /// GraphQL errors that end an operation before it produced data.
    Error {
        id: String,
        errors: Value,
    },
    Complete {
        id: String,
        /// A query's or mutation's result, repeated in the legacy protocol's `complete` as
        /// gateways such as Tyk describe it; `None` for subscriptions.
        result: Option<walcast_graphql::Payload>,
    },
    Pong(Option<Value>),
    KeepAlive,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not JSON: {0}")]
    Json(String),
    #[error("message has no \"type\"")]
    NoType,
    #[error("unknown message type {0:?} for {1}")]
    UnknownType(String, &'static str),
    #[error("{0} message needs {1}")]
    Missing(&'static str, &'static str),
}

fn id_of(v: &Value, msg: &'static str) -> Result<String, DecodeError> {
    match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(DecodeError::Missing(msg, "an \"id\"")),
    }
}

fn request_of(v: &Value, msg: &'static str) -> Result<Request, DecodeError> {
    let query = v
        .get("query")
        .and_then(Value::as_str)
        .ok_or(DecodeError::Missing(msg, "a \"query\" string"))?
        .to_owned();
    Ok(Request {
        query,
        variables: v.get("variables").filter(|v| !v.is_null()).cloned(),
        operation_name: v
            .get("operationName")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `{"type":…,"id":…,"payload":…}` around serialised payload text: the bytes
/// `json!({"type": ty, "id": id, "payload": payload}).to_string()` gives, without parsing the
/// payload again.
fn envelope(ty: &str, id: &str, payload: &str) -> String {
    let mut frame = String::with_capacity(ty.len() + id.len() + payload.len() + 34);
    frame.push_str("{\"type\":\"");
    frame.push_str(ty);
    frame.push_str("\",\"id\":");
    // Ids are short and plain in practice: written as they are unless JSON must escape them.
    if id.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        frame.push('"');
        frame.push_str(id);
        frame.push('"');
    } else {
        frame.push_str(&Value::String(id.to_owned()).to_string());
    }
    frame.push_str(",\"payload\":");
    frame.push_str(payload);
    frame.push('}');
    frame
}

impl Protocol {
    pub fn decode(self, text: &str) -> Result<ClientMsg, DecodeError> {
        let v: Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or(DecodeError::NoType)?;
        let payload = || v.get("payload").filter(|p| !p.is_null()).cloned();
        let unknown = || DecodeError::UnknownType(ty.to_owned(), self.name());
        Ok(match (self, ty) {
            (Protocol::Transport | Protocol::Legacy, "connection_init") => {
                ClientMsg::Init(payload())
            }
            (Protocol::Graphcool, "init") => ClientMsg::Init(payload()),
            (Protocol::Transport, "subscribe") => ClientMsg::Start {
                id: id_of(&v, "subscribe")?,
                request: request_of(
                    v.get("payload")
                        .ok_or(DecodeError::Missing("subscribe", "a payload"))?,
                    "subscribe",
                )?,
            },
            (Protocol::Legacy, "start") => ClientMsg::Start {
                id: id_of(&v, "start")?,
                request: request_of(
                    v.get("payload")
                        .ok_or(DecodeError::Missing("start", "a payload"))?,
                    "start",
                )?,
            },
            (Protocol::Graphcool, "subscription_start") => ClientMsg::Start {
                id: id_of(&v, "subscription_start")?,
                request: request_of(&v, "subscription_start")?,
            },
            (Protocol::Transport, "complete") => ClientMsg::Stop {
                id: id_of(&v, "complete")?,
            },
            (Protocol::Legacy, "stop") => ClientMsg::Stop {
                id: id_of(&v, "stop")?,
            },
            (Protocol::Graphcool, "subscription_end") => ClientMsg::Stop {
                id: id_of(&v, "subscription_end")?,
            },
            (Protocol::Transport, "ping") => ClientMsg::Ping(payload()),
            (Protocol::Transport, "pong") => ClientMsg::Pong,
            (Protocol::Legacy, "connection_terminate") => ClientMsg::Terminate,
            _ => return Err(unknown()),
        })
    }

    /// The frame for a message, or None where the protocol has no such message.
    pub fn encode(self, msg: &ServerMsg) -> Option<String> {
        let v = match (self, msg) {
            (Protocol::Transport | Protocol::Legacy, ServerMsg::Ack) => {
                json!({"type": "connection_ack"})
            }
            (Protocol::Graphcool, ServerMsg::Ack) => json!({"type": "init_success"}),
            (Protocol::Transport, ServerMsg::InitFail(_)) => return None,
            (Protocol::Legacy, ServerMsg::InitFail(m)) => {
                json!({"type": "connection_error", "payload": {"message": m}})
            }
            (Protocol::Graphcool, ServerMsg::InitFail(m)) => {
                json!({"type": "init_fail", "payload": {"error": m}})
            }
            (Protocol::Graphcool, ServerMsg::Started { id }) => {
                json!({"type": "subscription_success", "id": id})
            }
            (_, ServerMsg::Started { .. }) => return None,
            (_, ServerMsg::Next { id, payload }) => {
                let ty = match self {
                    Protocol::Transport => "next",
                    Protocol::Legacy => "data",
                    Protocol::Graphcool => "subscription_data",
                };
                return Some(envelope(ty, id, payload));
            }
            (Protocol::Transport, ServerMsg::Error { id, errors }) => {
                json!({"type": "error", "id": id, "payload": errors})
            }
            // subscriptions-transport-ws reads the error payload as the errors themselves.
            (Protocol::Legacy, ServerMsg::Error { id, errors }) => {
                json!({"type": "error", "id": id, "payload": errors})
            }
            (Protocol::Graphcool, ServerMsg::Error { id, errors }) => {
                json!({"type": "subscription_fail", "id": id, "payload": {"errors": errors}})
            }
            (
                Protocol::Legacy,
                ServerMsg::Complete {
                    id,
                    result: Some(result),
                },
            ) => return Some(envelope("complete", id, result)),
            (Protocol::Transport | Protocol::Legacy, ServerMsg::Complete { id, .. }) => {
                json!({"type": "complete", "id": id})
            }
            (Protocol::Graphcool, ServerMsg::Complete { id, .. }) => {
                json!({"type": "subscription_end", "id": id})
            }
            (Protocol::Transport, ServerMsg::Pong(p)) => match p {
                Some(p) => json!({"type": "pong", "payload": p}),
                None => json!({"type": "pong"}),
            },
            (_, ServerMsg::Pong(_)) => return None,
            (Protocol::Legacy, ServerMsg::KeepAlive) => json!({"type": "ka"}),
            (_, ServerMsg::KeepAlive) => return None,
        };
        Some(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_in_client_order() {
        assert_eq!(
            Protocol::negotiate(Some("graphql-ws")),
            Some(Protocol::Legacy)
        );
        assert_eq!(
            Protocol::negotiate(Some("foo, graphql-subscriptions, graphql-ws")),
            Some(Protocol::Graphcool)
        );
        assert_eq!(Protocol::negotiate(Some("mqtt")), None);
        assert_eq!(Protocol::negotiate(None), Some(Protocol::Transport));
    }

    #[test]
    fn decodes_each_protocols_start() {
        let q = Request {
            query: "subscription { a }".into(),
            variables: None,
            operation_name: None,
        };
        assert_eq!(
            Protocol::Transport.decode(
                r#"{"type":"subscribe","id":"1","payload":{"query":"subscription { a }"}}"#
            ),
            Ok(ClientMsg::Start {
                id: "1".into(),
                request: q.clone()
            })
        );
        assert_eq!(
            Protocol::Legacy
                .decode(r#"{"type":"start","id":"1","payload":{"query":"subscription { a }"}}"#),
            Ok(ClientMsg::Start {
                id: "1".into(),
                request: q.clone()
            })
        );
        assert_eq!(
            Protocol::Graphcool
                .decode(r#"{"type":"subscription_start","id":"1","query":"subscription { a }"}"#),
            Ok(ClientMsg::Start {
                id: "1".into(),
                request: q
            })
        );
    }

    /// Payload frames are the bytes the JSON-value encoding gave, for every protocol.
    #[test]
    fn payload_frames_match_value_encoding() {
        let payload = json!({"data": {"a_mutated": {"key": "1", "data": {"t": "é\"\\\n\u{1}"}}}, "errors": [{"message": "x"}]});
        for id in ["1", "a\"b\\c", "é\u{7f}\u{1f}", ""] {
            for (p, ty) in [
                (Protocol::Transport, "next"),
                (Protocol::Legacy, "data"),
                (Protocol::Graphcool, "subscription_data"),
            ] {
                let msg = ServerMsg::Next {
                    id: id.into(),
                    payload: payload.to_string().into(),
                };
                let want = json!({"type": ty, "id": id, "payload": payload}).to_string();
                assert_eq!(p.encode(&msg), Some(want));
            }
        }
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(
            Protocol::Transport.decode("{"),
            Err(DecodeError::Json(_))
        ));
        assert_eq!(Protocol::Transport.decode("{}"), Err(DecodeError::NoType));
        assert!(matches!(
            Protocol::Transport.decode(r#"{"type":"start","id":"1","payload":{"query":"q"}}"#),
            Err(DecodeError::UnknownType(..))
        ));
        assert!(matches!(
            Protocol::Legacy.decode(r#"{"type":"start","payload":{"query":"q"}}"#),
            Err(DecodeError::Missing(..))
        ));
        assert!(matches!(
            Protocol::Graphcool.decode(r#"{"type":"subscription_start","id":"1"}"#),
            Err(DecodeError::Missing(..))
        ));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn protocols() -> impl Strategy<Value = Protocol> {
        prop_oneof![
            Just(Protocol::Transport),
            Just(Protocol::Legacy),
            Just(Protocol::Graphcool)
        ]
    }

    /// JSON-ish frames: mostly objects with the protocols' keys, values of any type.
    fn frames() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z_ ]{0,12}".prop_map(serde_json::Value::String),
            prop_oneof![
                Just("connection_init"),
                Just("subscribe"),
                Just("start"),
                Just("stop"),
                Just("complete"),
                Just("ping"),
                Just("init"),
                Just("subscription_start"),
                Just("subscription_end"),
                Just("connection_terminate"),
            ]
            .prop_map(|s| serde_json::Value::String(s.into())),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_owned()),
                        Just("id".to_owned()),
                        Just("payload".to_owned()),
                        Just("query".to_owned()),
                        Just("variables".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![value.prop_map(|v| v.to_string()), ".{0,64}"]
    }

    proptest! {
        /// Whatever a client sends, decoding answers a message or an error; it never panics.
        #[test]
        fn decoding_never_panics(p in protocols(), frame in frames()) {
            let _ = p.decode(&frame);
        }

        /// A payload frame is byte for byte what encoding the payload as a JSON value gave.
        #[test]
        fn payload_frames_are_the_value_encoding(p in protocols(), id in ".{0,12}", text in ".{0,24}") {
            let payload = serde_json::json!({"data": {"f": text}});
            let ty = match p {
                Protocol::Transport => "next",
                Protocol::Legacy => "data",
                Protocol::Graphcool => "subscription_data",
            };
            let want = serde_json::json!({"type": ty, "id": id, "payload": payload}).to_string();
            let msg = ServerMsg::Next { id: id.clone(), payload: payload.to_string().into() };
            prop_assert_eq!(p.encode(&msg), Some(want));
        }

        /// Every server message either has no frame in a protocol or encodes to JSON with a type.
        #[test]
        fn encoded_frames_are_json_with_a_type(p in protocols(), id in "[0-9a-z-]{1,8}", text in ".{0,16}") {
            for msg in [
                ServerMsg::Ack,
                ServerMsg::InitFail(text.clone()),
                ServerMsg::Started { id: id.clone() },
                ServerMsg::Next { id: id.clone(), payload: serde_json::json!({"data": text}).to_string().into() },
                ServerMsg::Error { id: id.clone(), errors: serde_json::json!([{"message": text}]) },
                ServerMsg::Complete {
                    id: id.clone(),
                    result: None,
                },
                ServerMsg::Pong(None),
                ServerMsg::KeepAlive,
            ] {
                if let Some(frame) = p.encode(&msg) {
                    let v: serde_json::Value = serde_json::from_str(&frame).expect("JSON");
                    prop_assert!(v.get("type").and_then(|t| t.as_str()).is_some());
                }
            }
        }
    }

    /// The legacy protocol repeats a query's result in `complete`, as Tyk's gateway documents;
    /// the other protocols and subscriptions send a bare `complete`.
    #[test]
    fn legacy_complete_carries_the_result() {
        let result: walcast_graphql::Payload = r#"{"data":{"__typename":"Query"}}"#.into();
        let with = ServerMsg::Complete {
            id: "7".into(),
            result: Some(result),
        };
        assert_eq!(
            Protocol::Legacy.encode(&with).as_deref(),
            Some(r#"{"type":"complete","id":"7","payload":{"data":{"__typename":"Query"}}}"#)
        );
        assert_eq!(
            Protocol::Transport.encode(&with).as_deref(),
            Some(r#"{"type":"complete","id":"7"}"#)
        );
        let bare = ServerMsg::Complete {
            id: "7".into(),
            result: None,
        };
        assert_eq!(
            Protocol::Legacy.encode(&bare).as_deref(),
            Some(r#"{"type":"complete","id":"7"}"#)
        );
    }

    /// The fuzz target's property (`scripts/fuzz.sh protocol`) on its seeds and on every input
    /// kept from fuzzing: no panic, and an operation id comes back intact in its answers.
    #[test]
    fn fuzz_seeds_and_regressions_keep_ids_intact() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut started = 0;
        for dir in ["seeds/protocol", "regressions/protocol"] {
            let dir = root.join(dir);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("directory entry").path();
                let data =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let Ok(text) = std::str::from_utf8(&data) else {
                    continue;
                };
                for p in [Protocol::Transport, Protocol::Legacy, Protocol::Graphcool] {
                    let Ok(ClientMsg::Start { id, .. }) = p.decode(text) else {
                        continue;
                    };
                    started += 1;
                    for answer in [
                        ServerMsg::Complete {
                            id: id.clone(),
                            result: None,
                        },
                        ServerMsg::Error {
                            id: id.clone(),
                            errors: json!([{"message": "x"}]),
                        },
                    ] {
                        if let Some(frame) = p.encode(&answer) {
                            let v: Value = serde_json::from_str(&frame).expect("frame is JSON");
                            assert_eq!(v["id"].as_str(), Some(id.as_str()), "{}", path.display());
                        }
                    }
                }
            }
        }
        assert_eq!(started, 3, "each protocol's start seed decodes");
    }
}
