//! The accept loop: walcast's own instead of warp's, because warp's has no header timeout, no
//! connection limit before the upgrade, and retries a failed accept (`EMFILE`) every second
//! forever while the process has no descriptor to spare.
//!
//! Every TCP connection holds a slot of the [`ConnectionLimit`] from accept until it closes or is
//! upgraded (the socket then counts in the WebSocket connection gauge instead), so silent or
//! byte-at-a-time clients cannot exhaust descriptors; each must send its request head within
//! the header timeout.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use warp::{Filter, Reply};

/// Open HTTP connections (not yet upgraded) against the limit shared with WebSocket sockets.
pub struct ConnectionLimit {
    http: AtomicU64,
    sockets: Box<dyn Fn() -> u64 + Send + Sync>,
    max: u64,
}

impl ConnectionLimit {
    /// `sockets` reads the number of upgraded WebSocket connections.
    pub fn new(max: u64, sockets: impl Fn() -> u64 + Send + Sync + 'static) -> ConnectionLimit {
        ConnectionLimit {
            http: AtomicU64::new(0),
            sockets: Box::new(sockets),
            max,
        }
    }

    /// Takes a slot for a new TCP connection, or `None` when every slot is in use.
    fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let http = self.http.fetch_add(1, Relaxed) + 1;
        if http + (self.sockets)() > self.max {
            self.http.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// One connection's place under the limit, given back on drop.
struct Slot(Arc<ConnectionLimit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.http.fetch_sub(1, Relaxed);
    }
}

/// How long a failed accept waits before the next, doubling up to [`MAX_ACCEPT_BACKOFF`].
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Longest wait for in-flight HTTP requests at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Longest a refused connection is kept to deliver its answer.
const REFUSE_LINGER: Duration = Duration::from_secs(2);

/// What a connection over the limit is told before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 20\r\nconnection: close\r\n\r\ntoo many connections";

/// Serves `filter` on `listener` until `shutdown` turns true, then lets in-flight HTTP requests
/// finish (upgraded sockets close themselves on the same signal) for up to [`DRAIN`].
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limit: Arc<ConnectionLimit>,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let in_flight = Arc::new(());
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    while !*shutdown.borrow() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                stream
            }
            Err(e) => {
                // Out of descriptors (or another transient error): the listener stays; waiting
                // lets connections close before the next try instead of spinning.
                tracing::warn!(error = %e, retry_in = ?backoff, "accepting a connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Some(slot) = limit.acquire() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let mut stop = shutdown.clone();
        let held = in_flight.clone();
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                    // Finishes the request in progress, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop((slot, held));
        });
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + DRAIN;
    while Arc::strong_count(&in_flight) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers 503 and closes, without waiting long for a client that does not read. What the
/// client sent is read and dropped first: closing with it unread would make the kernel reset the
/// connection, and the client could lose the answer.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        stream.write_all(TOO_MANY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}
