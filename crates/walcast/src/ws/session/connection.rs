//! A session from the upgrade to the close: its writer, its event loop, its end.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use ws_stream::tungstenite::{Error as WsError, Message};

use super::events::Flow;
use super::heartbeat::Heartbeat;
use super::state::{Close, Session};
use crate::app::App;
use crate::auth::Identity;
use crate::ws::close;
use crate::ws::expiry::expiry;
use crate::ws::frames::Incoming;
use crate::ws::outgoing::{OpEvent, Out};
use crate::ws::protocol::{Protocol, ServerMsg};
use crate::ws::writer::{self, Goodbye, Writer, OUT_QUEUE};

const LEGACY_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Serves one connection: frames from `stream`, frames to `sink`. `identity` (and the token it
/// came from) is set when strict mode authenticated the upgrade; `header_token` is the upgrade's
/// bearer token in handshake mode. After a close for a message over the limit, `linger` gets
/// both halves back: the client may still be sending.
pub async fn serve<S, R, L, F>(
    app: Arc<App>,
    sink: S,
    mut stream: R,
    protocol: Protocol,
    identity: Option<(Identity, String)>,
    header_token: Option<String>,
    linger: L,
) where
    S: Sink<Message> + Unpin + Send + 'static,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
    L: FnOnce(R, S) -> F,
    F: Future<Output = ()>,
{
    app.metrics.connections.fetch_add(1, Relaxed);
    app.metrics.connections_by.add(&[protocol.name()], 1);
    let Writer {
        queue,
        goodbye,
        ops,
        task: writer,
    } = writer::spawn(sink, protocol, app.metrics.clone());
    let (op_tx, op_rx) = mpsc::channel::<OpEvent>(OUT_QUEUE);
    let mut s = Session::new(
        app.clone(),
        protocol,
        identity,
        header_token,
        queue,
        ops,
        op_tx,
    );
    let close = event_loop(&mut s, &mut stream, op_rx).await;
    let farewell = s.farewell.take();
    s.finish();
    let too_big = matches!(close, Some((close::TOO_BIG, _)));
    match (close, farewell) {
        (Some(close), Some(msgs)) => {
            let _ = goodbye.send(Goodbye { msgs, close });
        }
        (Some((code, reason)), None) => {
            let _ = s.out.send(Out::Close(code, reason)).await;
        }
        (None, _) => {}
    }
    drop(s);
    if let (Ok(Some(sink)), true) = (writer.await, too_big) {
        linger(stream, sink).await;
    }
    app.metrics.connections.fetch_sub(1, Relaxed);
    app.metrics.connections_by.add(&[protocol.name()], -1);
}

/// Runs until the connection ends; returns the close frame to send, if any.
async fn event_loop<R>(
    s: &mut Session,
    stream: &mut R,
    mut op_rx: mpsc::Receiver<OpEvent>,
) -> Option<Close>
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let app = s.app.clone();
    let auth_deadline = tokio::time::sleep(Duration::from_millis(app.cfg.auth_timeout_ms));
    tokio::pin!(auth_deadline);
    // The init's answer carries the first `ka`: an interval ticking at once would send a
    // second right behind it.
    let mut keep_alive = tokio::time::interval_at(
        tokio::time::Instant::now() + LEGACY_KEEP_ALIVE,
        LEGACY_KEEP_ALIVE,
    );
    let mut shutdown = app.shutdown.clone();
    let mut generation = app.generation.subscribe();
    let mut heartbeat = Heartbeat::new(app.cfg.ws_ping_interval, app.cfg.ws_pong_timeout);
    let legacy = s.protocol == Protocol::Legacy;
    let slow = s.slow.clone();
    loop {
        let flow: Flow = tokio::select! {
            frame = stream.next() => {
                heartbeat.heard();
                s.on_frame(Incoming::of(frame)).await
            },
            _ = heartbeat.ping_due() => {
                let _ = s.out.send(Out::Ping).await;
                heartbeat.pinged();
                ControlFlow::Continue(())
            }
            _ = heartbeat.pong_overdue() => {
                app.metrics.ping_timeouts.fetch_add(1, Relaxed);
                ControlFlow::Break(Some((close::GOING_AWAY, "ping timeout".into())))
            }
            Some(event) = op_rx.recv() => s.on_op_event(event).await,
            _ = &mut auth_deadline, if !s.acked => {
                let reason = "Connection initialisation timeout".into();
                ControlFlow::Break(Some((close::INIT_TIMEOUT, reason)))
            }
            _ = keep_alive.tick(), if s.acked && legacy => {
                s.send(ServerMsg::KeepAlive).await;
                ControlFlow::Continue(())
            }
            _ = generation.changed() => s.on_generation().await,
            _ = expiry(s.identity.as_ref().and_then(|i| i.expires_at)) => s.on_expiry().await,
            _ = slow.notified() => {
                app.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                ControlFlow::Break(Some((close::TOO_MANY, "slow consumer".into())))
            }
            _ = shutdown.changed() => s.on_shutdown(),
        };
        if let ControlFlow::Break(close) = flow {
            return close;
        }
    }
}
