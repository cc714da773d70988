//! Who a caller is: access tokens to roles and claims (see `walcast-access`).

pub use walcast_access::{
    bearer, token_from_init, AuthConfig, AuthConfigError, AuthError, Authenticator, Identity,
    Origin, TokenSources, CLOCK_LEEWAY, DEFAULT_ROLE, PUBLIC_ROLE,
};
