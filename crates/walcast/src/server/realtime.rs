//! The upgrade of the Directus realtime endpoint (`WEBSOCKETS_REST_PATH`, default `/websocket`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{upgrade, with_app, MAX_MESSAGE};
use crate::app::App;
use crate::auth::{bearer, Identity};
use crate::config::{path_segments, AuthMode};
use crate::ws::directus;

/// `GET <WEBSOCKETS_REST_PATH>` upgraded to a WebSocket; nothing when `WEBSOCKETS_REST_ENABLED`
/// is false.
pub fn route(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let want: Vec<String> = path_segments(&app.cfg.rest_path)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let enabled = app.cfg.rest_enabled;
    warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            let want = want.clone();
            async move {
                if enabled && path_segments(full.as_str()) == want {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
        .and(upgrade::request())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .map(accept)
}

fn accept(
    ws: upgrade::Request,
    authorization: Option<String>,
    query: HashMap<String, String>,
    app: Arc<App>,
) -> warp::reply::Response {
    if app.metrics.connections.load(Relaxed) >= app.cfg.max_connections as u64 {
        return warp::reply::with_status("too many connections", StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    // Strict mode authenticates the upgrade; the others authenticate with an `auth` message.
    let identity: Option<(Identity, String)> = match app.cfg.rest_auth {
        AuthMode::Strict => {
            let token = query
                .get("access_token")
                .cloned()
                .or_else(|| authorization.as_deref().and_then(bearer));
            match token.map(|t| (app.auth.load().verify(&t), t)) {
                Some((Ok(who), token)) => Some((who, token)),
                Some((Err(e), _)) => {
                    return warp::reply::with_status(e.to_string(), StatusCode::UNAUTHORIZED)
                        .into_response()
                }
                None => {
                    return warp::reply::with_status(
                        "missing access token",
                        StatusCode::UNAUTHORIZED,
                    )
                    .into_response()
                }
            }
        }
        _ => None,
    };
    ws.accept(None, MAX_MESSAGE, move |socket| {
        directus::serve(app, socket, identity)
    })
}
