//! The request itself, plain data: the socket codecs build it, with nothing of juniper (the
//! protocol fuzz target compiles the codecs with this file alone).

use serde_json::Value;

/// A GraphQL request carried by a start/subscribe message or a POST body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub query: String,
    pub variables: Option<Value>,
    pub operation_name: Option<String>,
}
