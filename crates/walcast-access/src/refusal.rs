//! Why a presented token was refused.

/// Why a token was refused. The messages go to clients: they never contain key material.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing access token")]
    Missing,
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("access token expired")]
    Expired,
}
