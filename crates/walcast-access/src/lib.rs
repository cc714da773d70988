//! Access policy: who a caller is, and what its role may read and write.
//!
//! Authentication turns a token into an [`Identity`]: static tokens from `WALCAST_TOKENS_FILE`
//! first, then JWTs verified with the configured key ([`Authenticator`]). Every endpoint finds the
//! token through [`TokenSources`]. Authorization turns an identity into an [`Access`]: one
//! [`TableGrant`] per table the role may read (columns, row filter with `$claims` substituted,
//! mutations) and its logical message prefixes, from `WALCAST_PERMISSIONS_FILE`
//! ([`Permissions`]). The GraphQL schema of a caller is built from its [`Access`], and every event
//! and mutation is checked against it.

mod authenticator;
mod claims;
mod file;
mod grant;
mod identity;
mod jwt;
mod permissions;
mod refusal;
#[cfg(test)]
mod test_support;
mod token;
mod tokens;
mod toml_json;
mod view;

pub use authenticator::{AuthConfig, AuthConfigError, AuthError, Authenticator};
pub use claims::{BadPlaceholder, MissingClaim};
pub use file::FileError;
pub use grant::{MessagePrefixes, TableGrant, Writes};
pub use identity::{Identity, Origin, ADMIN_ROLE, DEFAULT_ROLE, PUBLIC_ROLE};
pub use jwt::{KeyError, CLOCK_LEEWAY};
pub use permissions::{Permissions, PermissionsError};
pub use token::{bearer, token_from_init, NotBearer, TokenSources};
pub use tokens::TokensFileError;
pub use view::{full_view, Access};
