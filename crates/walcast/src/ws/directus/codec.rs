//! Directus' realtime messages: JSON objects with a `type`, answered with the client's `uid`.

use serde_json::{json, Map, Value};

/// What a client may ask of a collection: Directus' query, as far as walcast applies it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Dot paths (`title`, `author.name`, `*`, `author.*`); none means `*`.
    pub fields: Vec<String>,
    pub filter: Option<Value>,
    /// `title`, `-date_created` (descending).
    pub sort: Vec<String>,
    /// `-1`: no limit.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Create,
    Update,
    Delete,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Create => "create",
            Event::Update => "update",
            Event::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub uid: Option<Value>,
    /// A table, or a GraphQL subscription document run as it is.
    pub collection: String,
    pub event: Option<Event>,
    pub query: Query,
    /// Only this item (its primary key).
    pub item: Option<Value>,
    /// Variables of a GraphQL document.
    pub variables: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Items {
    pub uid: Option<Value>,
    pub collection: String,
    pub action: Action,
    pub id: Option<Value>,
    pub ids: Option<Vec<Value>>,
    pub data: Option<Value>,
    pub query: Query,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    Auth {
        uid: Option<Value>,
        access_token: Option<String>,
    },
    Ping {
        uid: Option<Value>,
    },
    Pong,
    Subscribe(Subscribe),
    Unsubscribe {
        uid: Option<Value>,
    },
    Items(Items),
}

/// A message walcast cannot take, with what its answer needs: the `type` to answer under and
/// the client's `uid`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub reply_type: String,
    pub uid: Option<Value>,
    pub message: String,
}

fn text_list(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(vec![]),
        // Directus takes comma-separated text too (`fields=id,title`).
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("\"{what}\" must be a list of strings"))
            })
            .collect(),
        _ => Err(format!("\"{what}\" must be a list of strings")),
    }
}

fn number(v: &Value, what: &str) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("\"{what}\" must be an integer")),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("\"{what}\" must be an integer")),
        _ => Err(format!("\"{what}\" must be an integer")),
    }
}

fn query_of(v: Option<&Value>) -> Result<Query, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Query::default());
    };
    let Value::Object(o) = v else {
        return Err("\"query\" must be an object".into());
    };
    let mut q = Query::default();
    for (k, v) in o {
        match k.as_str() {
            "fields" => q.fields = text_list(v, "fields")?,
            "filter" => q.filter = Some(v.clone()).filter(|v| !v.is_null()),
            "sort" => q.sort = text_list(v, "sort")?,
            "limit" => q.limit = number(v, "limit")?,
            "offset" => q.offset = number(v, "offset")?,
            "page" => {
                return Err("query parameter \"page\" is not supported: use offset".into())
            }
            other => {
                return Err(format!(
                    "query parameter {other:?} is not supported (fields, filter, sort, limit, offset are)"
                ))
            }
        }
    }
    Ok(q)
}

fn collection_of(o: &Map<String, Value>) -> Result<String, String> {
    match o.get("collection") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err("\"collection\" is required".into()),
    }
}

impl ClientMsg {
    pub fn decode(text: &str) -> Result<ClientMsg, DecodeError> {
        let fail = |ty: &str, uid: Option<Value>, message: String| DecodeError {
            reply_type: ty.to_owned(),
            uid,
            message,
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| fail("error", None, format!("message is not JSON: {e}")))?;
        let Value::Object(o) = value else {
            return Err(fail("error", None, "message is not a JSON object".into()));
        };
        let uid = o.get("uid").filter(|u| !u.is_null()).cloned();
        let Some(ty) = o.get("type").and_then(Value::as_str) else {
            return Err(fail("error", uid, "message has no \"type\"".into()));
        };
        // Directus accepts the type in any case.
        let ty = ty.to_ascii_lowercase();
        let bad = |message: String| fail(&ty, uid.clone(), message);
        match ty.as_str() {
            "auth" => {
                if o.contains_key("refresh_token") && !o.contains_key("access_token") {
                    return Err(bad(
                        "refresh tokens are not supported: send an access_token".into(),
                    ));
                }
                if o.contains_key("email") {
                    return Err(bad(
                        "logging in with email and password is not supported: send an access_token"
                            .into(),
                    ));
                }
                Ok(ClientMsg::Auth {
                    uid: uid.clone(),
                    access_token: o
                        .get("access_token")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            }
            "ping" => Ok(ClientMsg::Ping { uid }),
            "pong" => Ok(ClientMsg::Pong),
            "unsubscribe" => Ok(ClientMsg::Unsubscribe { uid }),
            "subscribe" => {
                let collection = collection_of(&o).map_err(&bad)?;
                let event = match o.get("event") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(e)) => Some(match e.as_str() {
                        "create" => Event::Create,
                        "update" => Event::Update,
                        "delete" => Event::Delete,
                        other => {
                            return Err(bad(format!(
                                "unknown event {other:?} (create, update or delete)"
                            )))
                        }
                    }),
                    Some(_) => return Err(bad("\"event\" must be a string".into())),
                };
                Ok(ClientMsg::Subscribe(Subscribe {
                    collection,
                    event,
                    query: query_of(o.get("query")).map_err(&bad)?,
                    item: o.get("item").filter(|v| !v.is_null()).cloned(),
                    variables: o.get("variables").filter(|v| !v.is_null()).cloned(),
                    uid: uid.clone(),
                }))
            }
            "items" => {
                let collection = collection_of(&o).map_err(&bad)?;
                let action = match o.get("action").and_then(Value::as_str) {
                    Some("create") => Action::Create,
                    Some("read") => Action::Read,
                    Some("update") => Action::Update,
                    Some("delete") => Action::Delete,
                    Some(other) => {
                        return Err(bad(format!(
                            "unknown action {other:?} (create, read, update or delete)"
                        )))
                    }
                    None => return Err(bad("\"action\" is required".into())),
                };
                let ids = match o.get("ids") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(ids)) => Some(ids.clone()),
                    Some(_) => return Err(bad("\"ids\" must be a list".into())),
                };
                Ok(ClientMsg::Items(Items {
                    collection,
                    action,
                    id: o.get("id").filter(|v| !v.is_null()).cloned(),
                    ids,
                    data: o.get("data").filter(|v| !v.is_null()).cloned(),
                    query: query_of(o.get("query")).map_err(&bad)?,
                    uid: uid.clone(),
                }))
            }
            other => Err(fail(
                other,
                uid.clone(),
                format!("unknown message type {other:?}"),
            )),
        }
    }
}

/// Adds `uid` to a message when the client gave one, as Directus does.
fn with_uid(mut msg: Value, uid: Option<&Value>) -> String {
    if let (Some(uid), Value::Object(o)) = (uid, &mut msg) {
        o.insert("uid".into(), uid.clone());
    }
    msg.to_string()
}

pub fn auth_ok(uid: Option<&Value>) -> String {
    with_uid(json!({"type": "auth", "status": "ok"}), uid)
}

/// `{"type":ty,"status":"error","error":{"code":…,"message":…}}`.
pub fn error(ty: &str, code: &str, message: &str, uid: Option<&Value>) -> String {
    with_uid(
        json!({"type": ty, "status": "error", "error": {"code": code, "message": message}}),
        uid,
    )
}

pub fn ping() -> String {
    json!({"type": "ping"}).to_string()
}

pub fn pong(uid: Option<&Value>) -> String {
    with_uid(json!({"type": "pong"}), uid)
}

/// A subscription's message: `init`, `create`, `update`, `delete` (with keys for data) or the
/// event of a GraphQL document.
pub fn subscription(event: Option<&str>, data: Value, uid: Option<&Value>) -> String {
    let mut msg = json!({"type": "subscription"});
    if let (Some(event), Value::Object(o)) = (event, &mut msg) {
        o.insert("event".into(), Value::String(event.to_owned()));
    }
    if let Value::Object(o) = &mut msg {
        o.insert("data".into(), data);
    }
    with_uid(msg, uid)
}

pub fn unsubscribed(uid: Option<&Value>) -> String {
    with_uid(json!({"type": "subscription", "event": "unsubscribe"}), uid)
}

pub fn items(data: Value, uid: Option<&Value>) -> String {
    with_uid(json!({"type": "items", "data": data}), uid)
}

/// Error codes, as Directus names them.
pub mod code {
    pub const AUTH_FAILED: &str = "AUTH_FAILED";
    pub const AUTH_TIMEOUT: &str = "AUTH_TIMEOUT";
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    pub const INVALID_PAYLOAD: &str = "INVALID_PAYLOAD";
    pub const INVALID_QUERY: &str = "INVALID_QUERY";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const INTERNAL: &str = "INTERNAL_SERVER_ERROR";
    pub const LIMIT_EXCEEDED: &str = "REQUESTS_EXCEEDED";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_sdk_subscribe_message() {
        let msg = ClientMsg::decode(
            r#"{"event":"update","query":{"fields":["id","author.name"],"filter":{"status":{"_eq":"published"}}},"uid":"1","collection":"articles","type":"subscribe"}"#,
        )
        .expect("decodes");
        let ClientMsg::Subscribe(s) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(s.collection, "articles");
        assert_eq!(s.event, Some(Event::Update));
        assert_eq!(s.uid, Some(json!("1")));
        assert_eq!(s.query.fields, ["id", "author.name"]);
        assert_eq!(
            s.query.filter,
            Some(json!({"status": {"_eq": "published"}}))
        );
    }

    #[test]
    fn decodes_auth_ping_pong_unsubscribe_and_items() {
        assert_eq!(
            ClientMsg::decode(r#"{"type":"auth","access_token":"t"}"#),
            Ok(ClientMsg::Auth {
                uid: None,
                access_token: Some("t".into())
            })
        );
        assert_eq!(
            ClientMsg::decode(r#"{"type":"PING","uid":7}"#),
            Ok(ClientMsg::Ping {
                uid: Some(json!(7))
            })
        );
        assert_eq!(ClientMsg::decode(r#"{"type":"pong"}"#), Ok(ClientMsg::Pong));
        assert_eq!(
            ClientMsg::decode(r#"{"type":"unsubscribe","uid":"3"}"#),
            Ok(ClientMsg::Unsubscribe {
                uid: Some(json!("3"))
            })
        );
        let ClientMsg::Items(i) = ClientMsg::decode(
            r#"{"type":"items","collection":"a","action":"read","query":{"fields":"id, title","sort":"-id","limit":"2"}}"#,
        )
        .expect("decodes") else {
            panic!()
        };
        assert_eq!(i.action, Action::Read);
        assert_eq!(i.query.fields, ["id", "title"]);
        assert_eq!(i.query.sort, ["-id"]);
        assert_eq!(i.query.limit, Some(2));
    }

    #[test]
    fn refusals_name_the_problem_and_keep_type_and_uid() {
        let e = ClientMsg::decode(r#"{"type":"subscribe","uid":"9"}"#).expect_err("no collection");
        assert_eq!(e.reply_type, "subscribe");
        assert_eq!(e.uid, Some(json!("9")));
        assert!(e.message.contains("collection"), "{e}");
        let e = ClientMsg::decode(r#"{"type":"subscribe","collection":"a","event":"truncate"}"#)
            .expect_err("bad event");
        assert!(e.message.contains("truncate"), "{e}");
        let e = ClientMsg::decode(
            r#"{"type":"items","collection":"a","action":"read","query":{"deep":{}}}"#,
        )
        .expect_err("unsupported parameter");
        assert!(e.message.contains("deep"), "{e}");
        let e = ClientMsg::decode("[1]").expect_err("not an object");
        assert_eq!(e.reply_type, "error");
        let e = ClientMsg::decode(r#"{"type":"shout","uid":1}"#).expect_err("unknown type");
        assert_eq!((e.reply_type.as_str(), e.uid), ("shout", Some(json!(1))));
        let e = ClientMsg::decode(r#"{"type":"auth","refresh_token":"r"}"#).expect_err("refresh");
        assert!(e.message.contains("refresh"), "{e}");
    }

    #[test]
    fn encodes_directus_replies() {
        let parse = |s: String| serde_json::from_str::<Value>(&s).expect("JSON");
        assert_eq!(
            parse(auth_ok(None)),
            json!({"type": "auth", "status": "ok"})
        );
        assert_eq!(
            parse(error("auth", code::AUTH_FAILED, "no", Some(&json!("u")))),
            json!({"type": "auth", "status": "error", "error": {"code": "AUTH_FAILED", "message": "no"}, "uid": "u"})
        );
        assert_eq!(parse(ping()), json!({"type": "ping"}));
        assert_eq!(
            parse(pong(Some(&json!(2)))),
            json!({"type": "pong", "uid": 2})
        );
        assert_eq!(
            parse(subscription(
                Some("delete"),
                json!([1, 2]),
                Some(&json!("1"))
            )),
            json!({"type": "subscription", "event": "delete", "data": [1, 2], "uid": "1"})
        );
        assert_eq!(
            parse(subscription(None, json!({"x": 1}), None)),
            json!({"type": "subscription", "data": {"x": 1}})
        );
        assert_eq!(
            parse(unsubscribed(Some(&json!("1")))),
            json!({"type": "subscription", "event": "unsubscribe", "uid": "1"})
        );
        assert_eq!(
            parse(items(json!([{"id": 1}]), None)),
            json!({"type": "items", "data": [{"id": 1}]})
        );
    }
}
