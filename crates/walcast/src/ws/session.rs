//! One WebSocket connection: the init handshake, authentication, operations by id, keep-alive,
//! and the close codes of each protocol.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use ws_stream::tungstenite::protocol::frame::coding::CloseCode;
use ws_stream::tungstenite::protocol::CloseFrame;
use ws_stream::tungstenite::{Error as WsError, Message};

use walcast_graphql::{Access, ConnectionHandle, SharedAccess};

use super::operation;
use super::protocol::{ClientMsg, Protocol, ServerMsg};
use crate::app::App;
use crate::auth::{token_from_init, AuthError, Identity};
use crate::config::AuthMode;
use crate::permissions::RoleView;
use crate::server::Socket;

/// Messages waiting for the socket writer; past this, operations wait (and their hub queues
/// fill, which is what marks a slow consumer).
const OUT_QUEUE: usize = 256;
const LEGACY_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most messages written before a flush.
const WRITE_BATCH: usize = 64;

pub mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY: u16 = 4429;
    pub const TOO_BIG: u16 = 1009;
    pub const GOING_AWAY: u16 = 1001;
}

/// What an operation tells its session, beside the messages it sends.
pub(super) enum OpEvent {
    /// A subscription is streaming (counted under its role).
    Started(String),
    /// The operation's last message (`complete` or `error`), for the session to send once it
    /// has forgotten the operation.
    Ended(ServerMsg),
}

pub(super) enum Out {
    Msg(ServerMsg),
    Close(u16, String),
}

struct Session {
    app: Arc<App>,
    protocol: Protocol,
    id: u64,
    identity: Option<Identity>,
    /// What the identity may see; recomputed when permissions or the catalog change.
    view: Option<Arc<RoleView>>,
    access: SharedAccess,
    acked: bool,
    ops: HashMap<String, JoinHandle<()>>,
    /// Operations streaming events, with the role they count under.
    streams: HashMap<String, String>,
    out: mpsc::Sender<Out>,
    /// Operations' starts and ends; their other messages go to `out` directly.
    op_tx: mpsc::Sender<OpEvent>,
    slow: Arc<Notify>,
}

/// Serves one upgraded socket. `identity` is set when strict mode authenticated the upgrade.
pub async fn serve(app: Arc<App>, ws: Socket, protocol: Protocol, identity: Option<Identity>) {
    app.metrics.connections.fetch_add(1, Relaxed);
    app.metrics.connections_by.add(&[protocol.name()], 1);
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUT_QUEUE);
    let metrics = app.metrics.clone();
    let writer = tokio::spawn(async move {
        // Messages already queued go out in one write: one flush (system call) per burst, not
        // per message.
        while let Some(first) = out_rx.recv().await {
            let mut next = Some(first);
            let mut fed = 0usize;
            let started = std::time::Instant::now();
            while let Some(out) = next.take() {
                match out {
                    Out::Msg(msg) => {
                        let encoding = std::time::Instant::now();
                        let Some(text) = protocol.encode(&msg) else {
                            next = out_rx.try_recv().ok();
                            continue;
                        };
                        metrics.serialize_seconds.observe(encoding.elapsed());
                        metrics.messages_sent.fetch_add(1, Relaxed);
                        metrics.bytes_sent.fetch_add(text.len() as u64, Relaxed);
                        if sink.feed(Message::text(text)).await.is_err() {
                            return None;
                        }
                        fed += 1;
                    }
                    Out::Close(code, reason) => {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        // The socket stays open: the session may still drain what the client
                        // is sending.
                        return Some(sink);
                    }
                }
                if fed < WRITE_BATCH {
                    next = out_rx.try_recv().ok();
                }
            }
            if sink.flush().await.is_err() {
                return None;
            }
            metrics.send_seconds.observe(started.elapsed());
        }
        None
    });
    let (op_tx, mut op_rx) = mpsc::channel::<OpEvent>(OUT_QUEUE);
    let mut s = Session {
        id: app.connection_id(),
        app: app.clone(),
        protocol,
        identity,
        view: None,
        access: Arc::new(arc_swap::ArcSwap::from_pointee(Access::default())),
        acked: false,
        ops: HashMap::new(),
        streams: HashMap::new(),
        out: out_tx,
        op_tx,
        slow: Arc::new(Notify::new()),
    };
    let auth_deadline = tokio::time::sleep(Duration::from_millis(app.cfg.auth_timeout_ms));
    tokio::pin!(auth_deadline);
    let mut keep_alive = tokio::time::interval(LEGACY_KEEP_ALIVE);
    let mut shutdown = app.shutdown.clone();
    let mut generation = app.generation.subscribe();
    if s.identity.is_some() {
        s.refresh_view();
    }
    let slow = s.slow.clone();
    let close: Option<(u16, String)> = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                None => break None,
                // Over `max_message_size` (or `max_frame_size`, the same limit).
                Some(Err(WsError::Capacity(_))) => {
                    break Some((close::TOO_BIG, "message too big".into()));
                }
                Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Text(text))) => {
                    if let Some(c) = s.handle(text.as_str()).await {
                        break Some(c);
                    }
                }
                // Pings are answered by tungstenite; binary frames are not part of any protocol.
                Some(Ok(_)) => {}
            },
            Some(event) = op_rx.recv() => match event {
                OpEvent::Ended(msg) => {
                    if let ServerMsg::Complete { id } | ServerMsg::Error { id, .. } = &msg {
                        s.ops.remove(id);
                        s.stream_ended(id);
                    }
                    if s.out.send(Out::Msg(msg)).await.is_err() {
                        break None;
                    }
                }
                OpEvent::Started(id) => s.stream_started(&id),
            },
            _ = &mut auth_deadline, if !s.acked => {
                break Some((close::INIT_TIMEOUT, "Connection initialisation timeout".into()));
            }
            _ = keep_alive.tick(), if s.acked && protocol == Protocol::Legacy => {
                let _ = s.out.send(Out::Msg(ServerMsg::KeepAlive)).await;
            }
            _ = generation.changed() => {
                if s.identity.is_some() {
                    s.refresh_view();
                }
            }
            _ = expiry(s.identity.as_ref().and_then(|i| i.expires_at)) => {
                let errors = serde_json::json!([{"message": "access token expired"}]);
                // Operations write to the socket themselves: stopped first, none sends after
                // its error.
                for (id, op) in s.ops.drain().collect::<Vec<_>>() {
                    op.abort();
                    let _ = s.out.send(Out::Msg(ServerMsg::Error { id, errors: errors.clone() })).await;
                }
                break Some((close::FORBIDDEN, "access token expired".into()));
            }
            _ = slow.notified() => {
                app.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                break Some((close::TOO_MANY, "slow consumer".into()));
            }
            _ = shutdown.changed() => {
                for (id, op) in s.ops.drain().collect::<Vec<_>>() {
                    op.abort();
                    let _ = s.out.send(Out::Msg(ServerMsg::Complete { id })).await;
                }
                break Some((close::GOING_AWAY, "server shutting down".into()));
            }
        }
    };
    for (_, op) in s.ops.drain() {
        op.abort();
    }
    for (_, role) in s.streams.drain() {
        app.metrics
            .subscriptions_by
            .add(&[protocol.name(), &role], -1);
    }
    let too_big = matches!(close, Some((close::TOO_BIG, _)));
    if let Some((code, reason)) = close {
        let _ = s.out.send(Out::Close(code, reason)).await;
    }
    drop(s);
    if let (Ok(Some(sink)), true) = (writer.await, too_big) {
        linger(stream, sink).await;
    }
    app.metrics.connections.fetch_sub(1, Relaxed);
    app.metrics.connections_by.add(&[protocol.name()], -1);
}

/// Most a closed socket is drained of, and for how long.
const LINGER_BYTES: usize = 4 << 20;
const LINGER: Duration = Duration::from_secs(2);

/// After closing a socket whose client is still sending (a message over the limit), reads and
/// discards the rest for a moment: closing with unread data makes the kernel reset the
/// connection, and the client would lose the close frame (1009) that says why.
async fn linger(
    stream: futures::stream::SplitStream<Socket>,
    sink: futures::stream::SplitSink<Socket, Message>,
) {
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

/// Resolves when a token expires; never without one.
async fn expiry(at: Option<std::time::SystemTime>) {
    match at {
        Some(at) => {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left).await
        }
        None => std::future::pending().await,
    }
}

impl Session {
    fn role(&self) -> String {
        self.identity
            .as_ref()
            .map(|i| i.role.clone())
            .unwrap_or_else(|| "public".into())
    }

    fn stream_started(&mut self, id: &str) {
        let role = self.role();
        self.app
            .metrics
            .subscriptions_by
            .add(&[self.protocol.name(), &role], 1);
        self.streams.insert(id.to_owned(), role);
    }

    fn stream_ended(&mut self, id: &str) {
        if let Some(role) = self.streams.remove(id) {
            self.app
                .metrics
                .subscriptions_by
                .add(&[self.protocol.name(), &role], -1);
        }
    }

    fn refresh_view(&mut self) {
        let who = self.identity.clone().unwrap_or_else(Identity::public);
        let (view, access) = self.app.view(&who);
        self.access.store(Arc::new(access));
        self.view = Some(Arc::new(view));
    }

    async fn send(&self, msg: ServerMsg) {
        let _ = self.out.send(Out::Msg(msg)).await;
    }

    /// Handles one frame; returns a close code and reason to end the connection.
    async fn handle(&mut self, text: &str) -> Option<(u16, String)> {
        let msg = match self.protocol.decode(text) {
            Ok(m) => m,
            Err(e) => return Some((close::BAD_REQUEST, e.to_string())),
        };
        match msg {
            ClientMsg::Init(payload) => self.init(payload).await,
            ClientMsg::Start { id, request } => {
                if !self.acked {
                    return match self.protocol {
                        Protocol::Transport => Some((close::UNAUTHORIZED, "Unauthorized".into())),
                        _ => {
                            let errors =
                                serde_json::json!([{"message": "send the init message first"}]);
                            self.send(ServerMsg::Error { id, errors }).await;
                            None
                        }
                    };
                }
                if let Some(op) = self.ops.get(&id) {
                    if !op.is_finished() {
                        if self.protocol == Protocol::Transport {
                            return Some((
                                close::DUPLICATE_ID,
                                format!("Subscriber for {id} already exists"),
                            ));
                        }
                        let errors = serde_json::json!([{"message": format!("operation id {id:?} is already in use")}]);
                        self.send(ServerMsg::Error { id, errors }).await;
                        return None;
                    }
                }
                self.ops.retain(|_, op| !op.is_finished());
                let limit = self.app.cfg.max_subscriptions_per_connection;
                if self.ops.len() >= limit {
                    let errors = serde_json::json!([{"message": format!("too many operations on this connection (limit {limit})")}]);
                    self.send(ServerMsg::Error { id, errors }).await;
                    return None;
                }
                if self.identity.as_ref().is_some_and(|i| i.expired()) {
                    let errors = serde_json::json!([{"message": "access token expired"}]);
                    self.send(ServerMsg::Error { id, errors }).await;
                    return None;
                }
                let view = match &self.view {
                    Some(v) => v.clone(),
                    None => Arc::new(RoleView::nothing()),
                };
                let schema = self.app.schemas.load().for_view(&view);
                let slow = self.slow.clone();
                let handle = ConnectionHandle {
                    id: self.id,
                    on_overflow: Arc::new(move || slow.notify_one()),
                };
                let ctx = self.app.context(self.access.clone(), Some(handle));
                let task = tokio::spawn(operation::run(
                    schema,
                    ctx,
                    self.app.payloads.clone(),
                    id.clone(),
                    request,
                    operation::Outlet {
                        messages: self.out.clone(),
                        events: self.op_tx.clone(),
                    },
                ));
                self.ops.insert(id, task);
                None
            }
            ClientMsg::Stop { id } => {
                self.stream_ended(&id);
                if let Some(op) = self.ops.remove(&id) {
                    op.abort();
                    // graphql-transport-ws: the client already considers it complete.
                    if self.protocol != Protocol::Transport {
                        self.send(ServerMsg::Complete { id }).await;
                    }
                }
                None
            }
            ClientMsg::Ping(payload) => {
                self.send(ServerMsg::Pong(payload)).await;
                None
            }
            ClientMsg::Pong => None,
            ClientMsg::Terminate => Some((1000, "terminated".into())),
        }
    }

    async fn init(&mut self, payload: Option<serde_json::Value>) -> Option<(u16, String)> {
        if self.acked {
            return match self.protocol {
                Protocol::Transport => {
                    Some((close::TOO_MANY, "Too many initialisation requests".into()))
                }
                _ => None,
            };
        }
        match self.app.cfg.auth {
            AuthMode::Public => {
                self.identity = Some(Identity::public());
                self.refresh_view();
            }
            // Authenticated at the upgrade already.
            AuthMode::Strict => {}
            AuthMode::Handshake => {
                let verified = match token_from_init(payload.as_ref()) {
                    Some(token) => self.app.auth.load().verify(&token),
                    None => Err(AuthError::Missing),
                };
                match verified {
                    Ok(who) => {
                        self.identity = Some(who);
                        self.refresh_view();
                    }
                    Err(e) => {
                        let reason = format!("Forbidden: {e}");
                        return match self.protocol {
                            Protocol::Transport => Some((close::FORBIDDEN, reason)),
                            Protocol::Legacy => {
                                self.send(ServerMsg::InitFail(reason.clone())).await;
                                Some((close::FORBIDDEN, reason))
                            }
                            // Closing after a refusal stops one socket from trying token after token.
                            Protocol::Graphcool => {
                                self.send(ServerMsg::InitFail(reason.clone())).await;
                                Some((close::FORBIDDEN, reason))
                            }
                        };
                    }
                }
            }
        }
        self.acked = true;
        self.send(ServerMsg::Ack).await;
        if self.protocol == Protocol::Legacy {
            self.send(ServerMsg::KeepAlive).await;
        }
        None
    }
}
