//! HTTP routes: GraphQL over HTTP and WebSocket, GraphiQL, health, readiness, metrics.

mod example;
mod graphiql;
mod http;
pub mod listener;
mod realtime;
mod status;
mod upgrade;

pub use upgrade::Socket;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::app::App;
use crate::auth::{bearer, AuthError, Identity, TokenSources};
use crate::config::AuthMode;
use crate::metrics::Format;
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
    // On its own listener when one is configured; here otherwise.
    let metrics_here = app.cfg.metrics_listen.is_none();
    let metrics = warp::any()
        .and_then(move || async move {
            if metrics_here {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(metrics_route(app.clone()));

    let app_realtime = app.clone();
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
        .and(body(MAX_MESSAGE))
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
        .or(realtime::route(app_realtime))
        .or(ws)
        .or(post)
        .or(page)
        .recover(recover)
}

/// A request body of at most `limit` bytes, with a `content-length` or chunked.
fn body(limit: usize) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, stream| collect_body(length, stream, limit))
}

async fn collect_body<S, B>(
    length: Option<u64>,
    stream: S,
    limit: usize,
) -> Result<bytes::Bytes, Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::TryStreamExt;
    let mut stream = std::pin::pin!(stream);
    let too_large = || warp::reject::custom(BodyTooLarge(limit));
    if length.is_some_and(|n| n > limit as u64) {
        drain(stream).await;
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(mut chunk) = stream
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(BodyUnreadable))?
    {
        if body.len() + chunk.remaining() > limit {
            drain(stream).await;
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

/// Most of a refused body read and dropped, and for how long.
const DRAIN_BYTES: usize = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the rest of a refused body (within bounds) before the 413 goes out: closing with the
/// client's data unread makes the kernel reset the connection, and the client could lose the
/// answer while still sending.
async fn drain<S, B>(mut stream: std::pin::Pin<&mut S>)
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.remaining();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

#[derive(Debug)]
struct BodyTooLarge(usize);
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// `GET /metrics` and the `/status` page over it, behind `WALCAST_METRICS_TOKEN` when it is set:
/// as a bearer token, or as `?access_token=` for a browser opening the page.
fn metrics_route(app: Arc<App>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    #[derive(Clone, Copy)]
    enum Target {
        Metrics,
        Status,
    }
    warp::path!("metrics")
        .map(|| Target::Metrics)
        .or(warp::path!("status").map(|| Target::Status))
        .unify()
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("accept"))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .map(
            |target: Target,
             authorization: Option<String>,
             accept: Option<String>,
             query: HashMap<String, String>,
             app: Arc<App>| {
                if let Some(want) = &app.cfg.metrics_token {
                    let given = authorization
                        .as_deref()
                        .and_then(bearer)
                        .or(match target {
                            Target::Status => query.get("access_token").cloned(),
                            Target::Metrics => None,
                        });
                    if !given.is_some_and(|t| constant_time_eq(t.as_bytes(), want.as_bytes())) {
                        return warp::reply::with_status(
                            "metrics need the token of WALCAST_METRICS_TOKEN (Authorization: Bearer, or ?access_token= for /status)",
                            StatusCode::UNAUTHORIZED,
                        )
                        .into_response();
                    }
                }
                match target {
                    Target::Metrics => {
                        let format = Format::from_accept(accept.as_deref());
                        warp::reply::with_header(
                            app.metrics.render(format),
                            "content-type",
                            format.content_type(),
                        )
                        .into_response()
                    }
                    Target::Status => {
                        warp::reply::html(status::page(&app.cfg.slot, "/metrics")).into_response()
                    }
                }
            },
        )
}

/// The routes of the separate metrics listener (`WALCAST_METRICS_LISTEN`).
pub fn metrics_routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .map(|| "ok")
        .or(metrics_route(app))
        .recover(recover)
}

/// Compares secrets without leaking through timing where they first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The checks every socket upgrade passes: the connection limit, and in strict `mode` a valid
/// token (`?access_token=` or `Authorization: Bearer`), returned with the identity it gives.
// The refusal is the response itself, built once per refused upgrade: not worth a box.
#[allow(clippy::result_large_err)]
fn admit(
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
        session::serve(app, socket, protocol, identity, header_token)
    })
}

async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    // A body refused on the POST route is the answer, whatever the other routes said.
    let (status, message) = if let Some(BodyTooLarge(limit)) = err.find() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {limit} bytes"),
        )
    } else if err.find::<BodyUnreadable>().is_some() {
        (
            StatusCode::BAD_REQUEST,
            "request body could not be read".to_owned(),
        )
    } else if err.is_not_found() {
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
