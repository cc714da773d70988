//! Where a request carries its access token: the URL's `?access_token=`, an init payload
//! (`connectionParams`), or an `Authorization: Bearer` header. Every endpoint reads it through
//! [`TokenSources`].

use serde_json::Value;

/// The places one request may carry a token; an endpoint fills in those it has. The first that
/// holds a token wins, in field order.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenSources<'a> {
    /// The URL's `?access_token=` (a browser cannot set headers on a WebSocket).
    pub query: Option<&'a str>,
    /// An init payload, see [`token_from_init`].
    pub init: Option<&'a Value>,
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
}

/// An `Authorization` header that is there but not `Bearer <token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Authorization header must be `Bearer <token>`")]
pub struct NotBearer;

impl<'a> TokenSources<'a> {
    /// Only an `Authorization` header.
    pub fn from_header(authorization: Option<&'a str>) -> TokenSources<'a> {
        TokenSources {
            authorization,
            ..TokenSources::default()
        }
    }

    /// Only an init payload.
    pub fn from_init(payload: Option<&'a Value>) -> TokenSources<'a> {
        TokenSources {
            init: payload,
            ..TokenSources::default()
        }
    }

    /// The token, or none; [`NotBearer`] when no source holds one and the `Authorization`
    /// header is not a bearer token (a mistake an endpoint may report rather than treat as an
    /// anonymous request).
    pub fn find(&self) -> Result<Option<String>, NotBearer> {
        if let Some(token) = self.query {
            return Ok(Some(token.to_owned()));
        }
        if let Some(token) = token_from_init(self.init) {
            return Ok(Some(token));
        }
        match self.authorization {
            None => Ok(None),
            Some(header) => bearer(header).map(Some).ok_or(NotBearer),
        }
    }

    /// The token, with an `Authorization` header that is not a bearer token taken as none.
    pub fn token(&self) -> Option<String> {
        self.find().ok().flatten()
    }
}

/// The token in an init payload: `access_token`, `authToken`, or an `Authorization: Bearer`
/// value (at the top level or under `headers`).
pub fn token_from_init(payload: Option<&Value>) -> Option<String> {
    let p = payload?.as_object()?;
    let str_of = |v: &Value| v.as_str().map(str::to_owned);
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

    #[test]
    fn sources_are_read_in_order() {
        let init = json!({"authToken": "from-init"});
        let all = TokenSources {
            query: Some("from-query"),
            init: Some(&init),
            authorization: Some("Bearer from-header"),
        };
        assert_eq!(all.find(), Ok(Some("from-query".into())));
        let no_query = TokenSources { query: None, ..all };
        assert_eq!(no_query.token(), Some("from-init".into()));
        let header = TokenSources::from_header(Some("Bearer from-header"));
        assert_eq!(header.find(), Ok(Some("from-header".into())));
        // An empty `?access_token=` is a token (refused as missing when verified).
        let empty = TokenSources {
            query: Some(""),
            ..header
        };
        assert_eq!(empty.token(), Some(String::new()));
        assert_eq!(TokenSources::default().find(), Ok(None));
    }

    #[test]
    fn a_header_that_is_not_bearer_is_reported_or_ignored() {
        let basic = TokenSources::from_header(Some("Basic x"));
        assert_eq!(basic.find(), Err(NotBearer));
        assert_eq!(basic.token(), None);
        let with_query = TokenSources {
            query: Some("q"),
            ..basic
        };
        assert_eq!(with_query.find(), Ok(Some("q".into())));
    }
}
