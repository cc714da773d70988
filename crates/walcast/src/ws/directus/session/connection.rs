//! A Directus session from the upgrade to the close: its writer, its event loop, its end.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use ws_stream::tungstenite::{Error as WsError, Message};

use super::state::{Close, Session, PROTOCOL};
use crate::app::App;
use crate::auth::Identity;
use crate::ws::close;
use crate::ws::directus::codec::{self, code};
use crate::ws::directus::encoder::Outgoing;
use crate::ws::directus::routes::Routes;
use crate::ws::expiry::expiry;
use crate::ws::frames::Incoming;
use crate::ws::outgoing::{OpEvent, Out};
use crate::ws::protocol::ServerMsg;
use crate::ws::writer::{self, Goodbye, Writer, OUT_QUEUE};

/// Go on, or end the connection (with a close frame, or without when the client is gone).
type Flow = ControlFlow<Option<Close>>;

fn close_with(code: u16, reason: &str) -> Flow {
    ControlFlow::Break(Some((code, reason.into())))
}

/// Serves one connection: frames from `stream`, frames to `sink`. `identity` (and the token it
/// came from) is set when strict mode authenticated the upgrade.
pub async fn serve<S, R>(
    app: Arc<App>,
    sink: S,
    mut stream: R,
    identity: Option<(Identity, String)>,
) where
    S: Sink<Message> + Unpin + Send + 'static,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    app.metrics.connections.fetch_add(1, Relaxed);
    app.metrics.connections_by.add(&[PROTOCOL], 1);
    let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
    let paused = Arc::new(AtomicBool::new(false));
    let outgoing = Outgoing {
        routes: routes.clone(),
        paused: paused.clone(),
    };
    let Writer {
        queue,
        goodbye,
        ops,
        task: writer,
    } = writer::spawn(sink, outgoing, app.metrics.clone());
    let (op_tx, op_rx) = mpsc::channel::<OpEvent>(OUT_QUEUE);
    let mut s = Session::new(app.clone(), identity, routes, paused, queue, ops, op_tx);
    let close = event_loop(&mut s, &mut stream, op_rx).await;
    s.finish();
    match close {
        // Shutting down: the close goes ahead of what is queued, within the writer's grace.
        Some(close) if close.0 == close::GOING_AWAY && *app.shutdown.borrow() => {
            let _ = goodbye.send(Goodbye {
                msgs: Vec::new(),
                close,
            });
        }
        Some((code, reason)) => {
            let _ = s.out.send(Out::Close(code, reason)).await;
        }
        None => {}
    }
    drop(s);
    let _ = writer.await;
    app.metrics.connections.fetch_sub(1, Relaxed);
    app.metrics.connections_by.add(&[PROTOCOL], -1);
}

/// Directus' heartbeat: a ping each period once authenticated.
fn heartbeat(app: &App) -> Interval {
    let period = Duration::from_secs(app.cfg.heartbeat_period_s.max(1));
    let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
    // A session held up (a full socket) must not fire missed pings back to back: the client
    // gets a whole period to answer each.
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    heartbeat
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
    let auth_deadline = tokio::time::sleep(Duration::from_millis(app.cfg.rest_auth_timeout_ms));
    tokio::pin!(auth_deadline);
    let mut heartbeat = heartbeat(&app);
    // A ping is outstanding: nothing has come from the client since it was sent.
    let mut awaiting = false;
    let mut shutdown = app.shutdown.clone();
    let mut generation = app.generation.subscribe();
    let slow = s.slow.clone();
    loop {
        let flow: Flow = tokio::select! {
            frame = stream.next() => s.on_frame(Incoming::of(frame), &mut awaiting).await,
            Some(event) = op_rx.recv() => s.on_op_event(event).await,
            _ = &mut auth_deadline, if !s.authenticated_once => {
                s.send(codec::error("auth", code::AUTH_TIMEOUT, "no auth message in time", None)).await;
                close_with(close::INIT_TIMEOUT, "authentication timeout")
            }
            _ = heartbeat.tick(), if app.cfg.heartbeat_enabled && s.authenticated_once => {
                if awaiting {
                    close_with(close::NORMAL, "no pong to the last heartbeat")
                } else {
                    awaiting = true;
                    s.send(codec::ping()).await;
                    ControlFlow::Continue(())
                }
            }
            _ = generation.changed() => s.on_generation().await,
            _ = expiry(s.identity.as_ref().and_then(|i| i.expires_at)) => {
                s.expired().await;
                ControlFlow::Continue(())
            }
            _ = slow.notified() => {
                app.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                close_with(close::TOO_MANY, "slow consumer")
            }
            _ = shutdown.changed() => close_with(close::GOING_AWAY, "server shutting down"),
        };
        if let ControlFlow::Break(close) = flow {
            return close;
        }
    }
}

impl Session {
    /// Anything but a text frame that ends nothing still answers a heartbeat.
    async fn on_frame(&mut self, frame: Incoming, awaiting: &mut bool) -> Flow {
        match frame {
            Incoming::Ended => ControlFlow::Break(None),
            Incoming::TooBig => close_with(close::TOO_BIG, "message too big"),
            Incoming::NotUtf8 => {
                close_with(close::INVALID_PAYLOAD, "text frame is not valid UTF-8")
            }
            Incoming::Close => {
                let _ = self.out.send(Out::CloseReply).await;
                ControlFlow::Break(None)
            }
            Incoming::Text(text) => {
                *awaiting = false;
                match self.handle(text.as_str()).await {
                    Some(c) => ControlFlow::Break(Some(c)),
                    None => ControlFlow::Continue(()),
                }
            }
            Incoming::Binary | Incoming::Control => {
                *awaiting = false;
                ControlFlow::Continue(())
            }
        }
    }

    async fn on_op_event(&mut self, event: OpEvent) -> Flow {
        match event {
            // Its operation ids are its own and never reused: no serial to compare.
            OpEvent::Ended { msg, .. } => {
                if let ServerMsg::Complete { id, .. } | ServerMsg::Error { id, .. } = &msg {
                    self.ended(id);
                }
                // The writer turns an error into the subscription's error, then forgets
                // the route.
                if self.out.send(Out::Msg(msg)).await.is_err() {
                    return ControlFlow::Break(None);
                }
            }
            OpEvent::Started { id, .. } => self.started(&id),
        }
        ControlFlow::Continue(())
    }

    /// Tokens, permissions or the catalog changed: a revoked token ends the connection, any
    /// other identity sees what it may see now.
    async fn on_generation(&mut self) -> Flow {
        if self.revoked() {
            let text = codec::error("auth", code::AUTH_FAILED, "access token revoked", None);
            self.send(text).await;
            return close_with(close::FORBIDDEN, "access token revoked");
        }
        if self.identity.is_some() {
            self.refresh_view();
        }
        ControlFlow::Continue(())
    }
}
