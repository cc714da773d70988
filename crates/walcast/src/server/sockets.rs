//! The socket upgrades: who may open one, and the session each protocol's socket gets.

use std::collections::HashMap;

use futures::StreamExt;
use warp::http::StatusCode;
use warp::Reply;

use super::upgrade;
use crate::app::App;
use crate::auth::{AuthError, Identity, TokenSources};
use crate::config::AuthMode;
use crate::ws::protocol::Protocol;
use crate::ws::{directus, session};
use std::sync::Arc;

/// Largest WebSocket message accepted; larger ones close the socket with 1009.
pub(super) const MAX_MESSAGE: usize = 1 << 20;

/// The checks every socket upgrade passes: the connection limit, and in strict `mode` a valid
/// token (`?access_token=` or `Authorization: Bearer`), returned with the identity it gives.
// The refusal is the response itself, built once per refused upgrade: not worth a box.
#[allow(clippy::result_large_err)]
pub(super) fn admit(
    app: &App,
    mode: AuthMode,
    query: &HashMap<String, String>,
    authorization: Option<&str>,
) -> Result<Option<(Identity, String)>, warp::reply::Response> {
    let refuse =
        |message: String, status| Err(warp::reply::with_status(message, status).into_response());
    let sockets = app
        .metrics
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    if sockets >= app.cfg.max_connections as u64 {
        return refuse(
            "too many connections".into(),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    if mode != AuthMode::Strict {
        return Ok(None);
    }
    let token = TokenSources {
        query: query.get("access_token").map(String::as_str),
        authorization,
        ..TokenSources::default()
    }
    .token();
    let Some(token) = token else {
        return refuse(AuthError::Missing.to_string(), StatusCode::UNAUTHORIZED);
    };
    match app.auth.load().verify(&token) {
        Ok(who) => Ok(Some((who, token))),
        Err(e) => refuse(e.to_string(), StatusCode::UNAUTHORIZED),
    }
}

/// The GraphQL path's upgrade, on one of the three sub-protocols.
pub(super) fn graphql(
    ws: upgrade::Request,
    protocols: Option<String>,
    authorization: Option<String>,
    query: HashMap<String, String>,
    app: Arc<App>,
) -> warp::reply::Response {
    let Some(protocol) = Protocol::negotiate(protocols.as_deref()) else {
        return warp::reply::with_status(
            "unsupported WebSocket sub-protocol: use graphql-transport-ws, graphql-ws or graphql-subscriptions",
            StatusCode::BAD_REQUEST,
        )
        .into_response();
    };
    let identity = match admit(&app, app.cfg.auth, &query, authorization.as_deref()) {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    // Handshake mode: a bearer token in the upgrade's Authorization header (set by a reverse
    // proxy, or by a client that is not a browser) is verified at init when the init payload
    // carries no token.
    let header_token = match app.cfg.auth {
        AuthMode::Handshake => TokenSources::from_header(authorization.as_deref()).token(),
        _ => None,
    };
    let offered = protocols.is_some().then(|| protocol.name());
    ws.accept(offered, MAX_MESSAGE, move |socket| {
        let (sink, stream) = socket.split();
        session::serve(
            app,
            sink,
            stream,
            protocol,
            identity,
            header_token,
            upgrade::linger,
        )
    })
}

/// The Directus realtime endpoint's upgrade. Strict mode authenticates the upgrade; the others
/// authenticate with an `auth` message.
pub(super) fn directus(
    ws: upgrade::Request,
    authorization: Option<String>,
    query: HashMap<String, String>,
    app: Arc<App>,
) -> warp::reply::Response {
    let identity = match admit(&app, app.cfg.rest_auth, &query, authorization.as_deref()) {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    ws.accept(None, MAX_MESSAGE, move |socket| {
        let (sink, stream) = socket.split();
        directus::serve(app, sink, stream, identity)
    })
}
