//! HTTP routes: GraphQL over HTTP and WebSocket, GraphiQL, health, readiness, metrics.

mod example;
mod graphiql;
mod http;
mod upgrade;

pub use upgrade::Socket;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::app::App;
use crate::auth::{bearer, Identity};
use crate::config::AuthMode;
use crate::ws::protocol::Protocol;
use crate::ws::session;

/// Largest WebSocket message accepted; larger ones close the socket with 1009.
const MAX_MESSAGE: usize = 1 << 20;

fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// `GET /<prefix>/<name>` for the files vendored into the binary, as (name, content type, bytes).
fn vendored(
    prefix: &'static str,
    assets: &'static [(&'static str, &'static str, &'static [u8])],
) -> impl Filter<Extract = (impl Reply,), Error = warp::Rejection> + Clone {
    warp::path(prefix)
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move |name: String| async move {
            assets
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, ty, bytes)| {
                    let reply = warp::reply::with_header(*bytes, "content-type", *ty);
                    warp::reply::with_header(reply, "cache-control", "public, max-age=86400")
                })
                .ok_or_else(warp::reject::not_found)
        })
}

/// Every route, under the configured GraphQL path.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let segments: Vec<String> = app
        .cfg
        .graphql_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let path = warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            let want = segments.clone();
            async move {
                let got: Vec<&str> = full.as_str().split('/').filter(|s| !s.is_empty()).collect();
                if got == want {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one();

    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_app(app.clone()))
        .map(|app: Arc<App>| {
            if app.is_ready() {
                warp::reply::with_status("ready", StatusCode::OK)
            } else {
                warp::reply::with_status("replication not live", StatusCode::SERVICE_UNAVAILABLE)
            }
        });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app.clone()))
        .map(|app: Arc<App>| {
            warp::reply::with_header(
                app.metrics.render(),
                "content-type",
                "text/plain; version=0.0.4",
            )
        });

    let ws = path
        .clone()
        .and(upgrade::request())
        .and(warp::header::optional::<String>("sec-websocket-protocol"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app.clone()))
        .map(
            |ws: upgrade::Request,
             protocols: Option<String>,
             authorization: Option<String>,
             query: HashMap<String, String>,
             app: Arc<App>| { upgrade(ws, protocols, authorization, query, app) },
        );
    let post = path
        .clone()
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(MAX_MESSAGE as u64))
        .and(warp::body::bytes())
        .and(with_app(app.clone()))
        .then(http::post);
    let example_path = app.cfg.graphql_path.clone();
    let page = path
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| warp::reply::html(graphiql::page(&app.cfg.graphql_path)));

    let assets = vendored("graphiql", graphiql::ASSETS);

    // A live page over a table's rows (`?table=`, default the demo's `messages`), for a first
    // look without tooling; `/example` is its old address.
    let example = warp::path!("examples" / "live")
        .or(warp::path!("example"))
        .unify()
        .and(warp::get())
        .map(move || warp::reply::html(example::page(&example_path)));
    let example_assets = vendored("examples", example::ASSETS);

    healthz
        .or(readyz)
        .or(assets)
        .or(example)
        .or(example_assets)
        .or(metrics)
        .or(ws)
        .or(post)
        .or(page)
        .recover(recover)
}

fn upgrade(
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
    let max = app.cfg.max_connections as u64;
    if app
        .metrics
        .connections
        .load(std::sync::atomic::Ordering::Relaxed)
        >= max
    {
        return warp::reply::with_status("too many connections", StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    let identity: Option<Identity> = match app.cfg.auth {
        AuthMode::Strict => {
            let token = query
                .get("access_token")
                .cloned()
                .or_else(|| authorization.as_deref().and_then(bearer));
            match token.map(|t| app.auth.load().verify(&t)) {
                Some(Ok(who)) => Some(who),
                Some(Err(e)) => {
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
    let offered = protocols.is_some().then(|| protocol.name());
    ws.accept(offered, MAX_MESSAGE, move |socket| {
        session::serve(app, socket, protocol, identity)
    })
}

async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if err.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_owned())
    } else if let Some(e) = err.find::<warp::reject::MethodNotAllowed>() {
        (StatusCode::METHOD_NOT_ALLOWED, e.to_string())
    } else if let Some(e) = err.find::<warp::reject::PayloadTooLarge>() {
        (StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
    } else {
        (StatusCode::BAD_REQUEST, format!("{err:?}"))
    };
    Ok(warp::reply::with_status(message, status).into_response())
}
