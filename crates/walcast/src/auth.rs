//! Who a caller is: tokens to roles.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

/// The role and claims of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub role: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    pub fn public() -> Identity {
        Identity {
            role: "public".into(),
            claims: serde_json::Map::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing access token")]
    Missing,
    #[error("invalid access token")]
    Invalid,
}

/// Verifies tokens: static tokens from the tokens file.
#[derive(Debug, Default)]
pub struct Authenticator {
    static_tokens: HashMap<String, Identity>,
}

impl Authenticator {
    pub fn load(tokens_file: Option<&Path>) -> anyhow::Result<Authenticator> {
        let mut static_tokens = HashMap::new();
        if let Some(path) = tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading WALCAST_TOKENS_FILE {}", path.display()))?;
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("parsing WALCAST_TOKENS_FILE {}", path.display()))?;
            for (token, entry) in table {
                let toml::Value::Table(entry) = entry else {
                    anyhow::bail!(
                        "WALCAST_TOKENS_FILE {}: [{token}] must be a table with a role",
                        path.display()
                    );
                };
                let claims: serde_json::Map<String, serde_json::Value> = entry
                    .into_iter()
                    .map(|(k, v)| (k, toml_to_json(v)))
                    .collect();
                let role = claims
                    .get("role")
                    .and_then(|r| r.as_str())
                    .unwrap_or("authenticated")
                    .to_owned();
                static_tokens.insert(token, Identity { role, claims });
            }
        }
        Ok(Authenticator { static_tokens })
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.static_tokens
            .get(token)
            .cloned()
            .ok_or(AuthError::Invalid)
    }
}

fn toml_to_json(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(toml_to_json).collect())
        }
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// The token in an init payload: `access_token`, `authToken`, or an `Authorization: Bearer`
/// value (at the top level or under `headers`).
pub fn token_from_init(payload: Option<&serde_json::Value>) -> Option<String> {
    let p = payload?.as_object()?;
    let str_of = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if let Some(t) = p
        .get("access_token")
        .or_else(|| p.get("authToken"))
        .and_then(str_of)
    {
        return Some(t);
    }
    let header = p
        .get("Authorization")
        .or_else(|| p.get("authorization"))
        .or_else(|| {
            p.get("headers")
                .and_then(|h| h.get("Authorization").or_else(|| h.get("authorization")))
        })
        .and_then(str_of)?;
    bearer(&header)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<String> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_tokens_in_init_payloads() {
        assert_eq!(
            token_from_init(Some(&json!({"access_token": "a"}))),
            Some("a".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"authToken": "b"}))),
            Some("b".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"Authorization": "Bearer c"}))),
            Some("c".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"headers": {"authorization": "bearer d"}}))),
            Some("d".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"Authorization": "Basic x"}))),
            None
        );
        assert_eq!(token_from_init(Some(&json!("text"))), None);
        assert_eq!(token_from_init(None), None);
    }
}
