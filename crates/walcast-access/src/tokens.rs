//! The static tokens file (`WALCAST_TOKENS_FILE`): one `[token]` table per token, with its role
//! and claims.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::identity::{role_of, Identity, Origin};
use crate::toml_json::toml_to_json;

/// Why the tokens file was refused. Messages name the file and the entry.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    #[error("reading WALCAST_TOKENS_FILE {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing WALCAST_TOKENS_FILE {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("WALCAST_TOKENS_FILE {}: [{token}] must be a table with a role", path.display())]
    NotATable { path: PathBuf, token: String },
    #[error("WALCAST_TOKENS_FILE {}: a token must be non-empty and contain no whitespace", path.display())]
    BadToken { path: PathBuf },
    #[error("WALCAST_TOKENS_FILE {}: role of [{token}] must be a non-empty string", path.display())]
    BadRole { path: PathBuf, token: String },
}

/// Token -> the identity it gives.
pub(crate) fn load(path: &Path) -> Result<HashMap<String, Identity>, TokensFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokensFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| TokensFileError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let mut tokens = HashMap::new();
    for (token, entry) in table {
        let toml::Value::Table(entry) = entry else {
            return Err(TokensFileError::NotATable {
                path: path.to_owned(),
                token,
            });
        };
        // verify() trims what clients send, so such a token could never match.
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(TokensFileError::BadToken {
                path: path.to_owned(),
            });
        }
        let claims: Map<String, Value> = entry
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect();
        let Some(role) = role_of(&claims) else {
            return Err(TokensFileError::BadRole {
                path: path.to_owned(),
                token,
            });
        };
        tokens.insert(
            token,
            Identity {
                role,
                claims,
                expires_at: None,
                origin: Origin::StaticToken,
            },
        );
    }
    Ok(tokens)
}
