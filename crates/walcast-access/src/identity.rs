//! Who a caller is: the role and claims of its token.

use std::time::SystemTime;

use serde_json::{Map, Value};

/// The role of a caller without a token.
pub const PUBLIC_ROLE: &str = "public";
/// The role of a token that names none.
pub const DEFAULT_ROLE: &str = "authenticated";
/// The role that sees everything without an entry in the permissions file.
pub const ADMIN_ROLE: &str = "admin";

/// Where an identity came from; permissions treat static-token roles differently when no
/// permissions file is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No token: role `public`.
    Anonymous,
    StaticToken,
    Jwt,
}

/// The role and claims of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub role: String,
    pub claims: Map<String, Value>,
    /// When the token stops being accepted (`exp` plus [`crate::CLOCK_LEEWAY`]); `None` never
    /// expires.
    pub expires_at: Option<SystemTime>,
    pub origin: Origin,
}

impl Identity {
    pub fn public() -> Identity {
        Identity {
            role: PUBLIC_ROLE.into(),
            claims: Map::new(),
            expires_at: None,
            origin: Origin::Anonymous,
        }
    }

    /// True once the token has expired.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| SystemTime::now() >= at)
    }
}

/// The role a token's `role` claim (or a tokens-file entry's `role`) names: [`DEFAULT_ROLE`]
/// when absent, `None` when it is not a non-empty string.
pub(crate) fn role_of(claims: &Map<String, Value>) -> Option<String> {
    match claims.get("role") {
        None => Some(DEFAULT_ROLE.to_owned()),
        Some(Value::String(r)) if !r.is_empty() => Some(r.clone()),
        Some(_) => None,
    }
}
