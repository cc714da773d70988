//! The WebSocket upgrade of the GraphQL path, done with hyper's upgrade instead of `warp::ws`.
//!
//! warp's `Ws` cannot set tungstenite's buffer sizes, and the default 128 KiB read buffer is
//! zero-filled to its capacity on the first read, so it stayed resident for every connection
//! (145 KiB of an idle connection's 150). Here each socket gets a small read buffer that grows
//! only for a frame that needs it.

use std::future::Future;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use warp::http::{header, HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};
use ws_stream::tungstenite::handshake::derive_accept_key;
use ws_stream::tungstenite::protocol::{Role, WebSocketConfig};
use ws_stream::tungstenite::Message;
use ws_stream::WebSocketStream;

/// An upgraded GraphQL socket.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Client messages are small (init, subscribe, ping); a larger frame grows the buffer for itself.
const READ_BUFFER: usize = 4 * 1024;
/// Frames are written out once this much is buffered, or at the writer's flush after a burst.
/// A threshold, not an allocation: an idle socket keeps only what its last burst needed.
const WRITE_BUFFER: usize = 16 * 1024;

fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// A WebSocket upgrade request, not yet answered.
pub struct Request {
    key: String,
    on_upgrade: Option<OnUpgrade>,
}

#[derive(Debug)]
struct NoConnectionUpgrade;
impl warp::reject::Reject for NoConnectionUpgrade {}

/// Matches what `warp::ws()` matches: `GET` with `connection: upgrade`, `upgrade: websocket`,
/// `sec-websocket-version: 13` and a `sec-websocket-key`.
pub fn request() -> impl Filter<Extract = (Request,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::header::exact_ignore_case("upgrade", "websocket"))
        .and(warp::header::exact("sec-websocket-version", "13"))
        .and(warp::header::<String>("connection"))
        .and(warp::header::<String>("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
        .and_then(
            |connection: String, key: String, on_upgrade: Option<OnUpgrade>| async move {
                if connection
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
                {
                    Ok(Request { key, on_upgrade })
                } else {
                    Err(warp::reject::custom(NoConnectionUpgrade))
                }
            },
        )
}

impl Request {
    /// Answers `101 Switching Protocols` (naming `protocol` when the client offered
    /// sub-protocols) and runs `serve` on the socket once hyper hands the connection over.
    pub fn accept<F, Fut>(
        self,
        protocol: Option<&'static str>,
        max_message: usize,
        serve: F,
    ) -> warp::reply::Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // HTTP/2 and HTTP/1.0 requests carry no upgrade: nothing would ever reach the socket.
        let Some(on_upgrade) = self.on_upgrade else {
            return warp::reply::with_status(
                "this connection cannot be upgraded to a WebSocket",
                StatusCode::BAD_REQUEST,
            )
            .into_response();
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config(max_message)),
                    )
                    .await;
                    serve(socket).await;
                }
                Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
            }
        });
        let mut res = warp::reply().into_response();
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = res.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        // The accept key is base64, always a valid header value.
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = protocol {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
        }
        res
    }
}

/// Most a closed socket is drained of, and for how long.
const LINGER_BYTES: usize = 4 << 20;
const LINGER: Duration = Duration::from_secs(2);

/// After closing a socket whose client is still sending (a message over the limit), reads and
/// discards the rest for a moment: closing with unread data makes the kernel reset the
/// connection, and the client would lose the close frame (1009) that says why.
pub async fn linger(stream: SplitStream<Socket>, sink: SplitSink<Socket, Message>) {
    use tokio::io::AsyncReadExt;
    let Ok(mut ws) = stream.reunite(sink) else {
        return;
    };
    let io = ws.get_mut();
    let mut buf = vec![0u8; 16 << 10];
    let mut read = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}
