//! The upgrade of the Directus realtime endpoint (`WEBSOCKETS_REST_PATH`, default `/websocket`).

use std::collections::HashMap;
use std::sync::Arc;

use warp::{Filter, Rejection};

use super::{admit, upgrade, with_app, MAX_MESSAGE};
use crate::app::App;
use crate::config::path_segments;
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
    // Strict mode authenticates the upgrade; the others authenticate with an `auth` message.
    let identity = match admit(&app, app.cfg.rest_auth, &query, authorization.as_deref()) {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    ws.accept(None, MAX_MESSAGE, move |socket| {
        directus::serve(app, socket, identity)
    })
}
