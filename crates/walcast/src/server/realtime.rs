//! The upgrade of the Directus realtime endpoint (`WEBSOCKETS_REST_PATH`, default `/websocket`).

use std::collections::HashMap;
use std::sync::Arc;

use warp::{Filter, Rejection};

use super::{sockets, upgrade};
use crate::app::App;
use crate::config::path_segments;

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
        .map(move |ws, authorization, query| {
            sockets::directus(ws, authorization, query, app.clone())
        })
}
