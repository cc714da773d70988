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
use crate::auth::{Identity, Origin, TokenSources};
use crate::config::AuthMode;
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
    pub const INVALID_PAYLOAD: u16 = 1007;
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
    /// A WebSocket ping frame (keeps proxies from closing an idle socket; the pong proves the
    /// client is there).
    Ping,
    Close(u16, String),
    /// The client closed: flush the close frame tungstenite queued as the reply.
    CloseReply,
}

struct Session {
    app: Arc<App>,
    protocol: Protocol,
    id: u64,
    identity: Option<Identity>,
    /// The static token the identity came from: checked again when the tokens file is reloaded,
    /// so a revoked token ends its sockets.
    token: Option<String>,
    /// Handshake mode: the bearer token of the upgrade's Authorization header, the identity's
    /// source when the init payload carries no token.
    header_token: Option<String>,
    /// What the identity may read and write; recomputed when permissions or the catalog change.
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

/// Serves one upgraded socket. `identity` (and the token it came from) is set when strict mode
/// authenticated the upgrade; `header_token` is the upgrade's bearer token in handshake mode.
pub async fn serve(
    app: Arc<App>,
    ws: Socket,
    protocol: Protocol,
    identity: Option<(Identity, String)>,
    header_token: Option<String>,
) {
    let (identity, token) = identity.unzip();
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
                            // After the client's close frame nothing but the reply may be
                            // written: closing flushes that reply.
                            let _ = sink.close().await;
                            return None;
                        }
                        fed += 1;
                    }
                    Out::Ping => {
                        if sink.feed(Message::Ping(Default::default())).await.is_err() {
                            let _ = sink.close().await;
                            return None;
                        }
                    }
                    Out::CloseReply => {
                        let _ = sink.close().await;
                        return None;
                    }
                    Out::Close(code, reason) => {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        if sink.send(Message::Close(Some(frame))).await.is_err() {
                            let _ = sink.close().await;
                        }
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
        token,
        header_token,
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
    let mut heartbeat = Heartbeat::new(app.cfg.ws_ping_interval, app.cfg.ws_pong_timeout);
    if s.identity.is_some() {
        s.refresh_view();
    }
    let slow = s.slow.clone();
    let close: Option<(u16, String)> = loop {
        tokio::select! {
            frame = stream.next() => {
                heartbeat.heard();
                match frame {
                    None => break None,
                    // Over `max_message_size` (or `max_frame_size`, the same limit).
                    Some(Err(WsError::Capacity(_))) => {
                        break Some((close::TOO_BIG, "message too big".into()));
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        break Some((close::INVALID_PAYLOAD, "text frame is not valid UTF-8".into()));
                    }
                    Some(Err(_)) => break None,
                    Some(Ok(Message::Close(_))) => {
                        let _ = s.out.send(Out::CloseReply).await;
                        break None;
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Some(c) = s.handle(text.as_str()).await {
                            break Some(c);
                        }
                    }
                    // graphql-transport-ws allows only the messages it defines, as text.
                    Some(Ok(Message::Binary(_))) if protocol == Protocol::Transport => {
                        break Some((close::BAD_REQUEST, "binary frames are not supported".into()));
                    }
                    // Pings are answered by tungstenite; pongs only prove the client is there.
                    Some(Ok(_)) => {}
                }
            },
            _ = heartbeat.ping_due() => {
                let _ = s.out.send(Out::Ping).await;
                heartbeat.pinged();
            }
            _ = heartbeat.pong_overdue() => {
                app.metrics.ping_timeouts.fetch_add(1, Relaxed);
                break Some((close::GOING_AWAY, "ping timeout".into()));
            }
            Some(event) = op_rx.recv() => match event {
                OpEvent::Ended(msg) => {
                    if let ServerMsg::Complete { id, .. } | ServerMsg::Error { id, .. } = &msg {
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
                if let Some(reason) = s.revoked() {
                    s.end_operations(&reason).await;
                    break Some((close::FORBIDDEN, reason));
                }
                if s.identity.is_some() {
                    s.refresh_view();
                }
            }
            _ = expiry(s.identity.as_ref().and_then(|i| i.expires_at)) => {
                s.end_operations("access token expired").await;
                break Some((close::FORBIDDEN, "access token expired".into()));
            }
            _ = slow.notified() => {
                app.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                break Some((close::TOO_MANY, "slow consumer".into()));
            }
            _ = shutdown.changed() => {
                for (id, op) in s.ops.drain().collect::<Vec<_>>() {
                    op.abort();
                    let _ = s.out.send(Out::Msg(ServerMsg::Complete { id, result: None })).await;
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

/// The server's ping frames: when the next one is due, and until when its pong may take.
struct Heartbeat {
    interval: Option<Duration>,
    timeout: Duration,
    next_ping: tokio::time::Instant,
    /// Set while a ping is unanswered.
    pong_by: Option<tokio::time::Instant>,
}

impl Heartbeat {
    /// `interval` zero turns pings off.
    fn new(interval: Duration, timeout: Duration) -> Heartbeat {
        let interval = (!interval.is_zero()).then_some(interval);
        Heartbeat {
            interval,
            timeout,
            next_ping: tokio::time::Instant::now() + interval.unwrap_or_default(),
            pong_by: None,
        }
    }

    /// Anything the client sends proves it is there.
    fn heard(&mut self) {
        self.pong_by = None;
    }

    fn pinged(&mut self) {
        let now = tokio::time::Instant::now();
        if let Some(interval) = self.interval {
            self.next_ping = now + interval;
        }
        if self.pong_by.is_none() {
            self.pong_by = Some(now + self.timeout);
        }
    }

    async fn ping_due(&self) {
        match self.interval {
            Some(_) => tokio::time::sleep_until(self.next_ping).await,
            None => std::future::pending().await,
        }
    }

    async fn pong_overdue(&self) {
        match self.pong_by {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

impl Session {
    /// Why the socket's static token is no longer accepted (removed from the tokens file),
    /// or `None`. A token that now maps to another role keeps the socket with the new role.
    fn revoked(&mut self) -> Option<String> {
        let token = self.token.as_deref()?;
        if self.identity.as_ref()?.origin != Origin::StaticToken {
            return None;
        }
        match self.app.auth.load().verify(token) {
            Ok(who) => {
                self.identity = Some(who);
                None
            }
            Err(_) => Some("access token revoked".into()),
        }
    }

    /// Stops every operation and tells the client why with an error on each. Operations write
    /// to the socket themselves: stopped first, none sends after its error.
    async fn end_operations(&mut self, message: &str) {
        let errors = serde_json::json!([{ "message": message }]);
        for (id, op) in self.ops.drain().collect::<Vec<_>>() {
            op.abort();
            let _ = self
                .out
                .send(Out::Msg(ServerMsg::Error {
                    id,
                    errors: errors.clone(),
                }))
                .await;
        }
    }

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
        self.access.store(Arc::new(self.app.access(&who)));
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
                let schema = self.app.schemas.load().for_view(&self.access.load());
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
                        self.send(ServerMsg::Complete { id, result: None }).await;
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
                // The payload's token wins over the upgrade's header.
                let token = TokenSources::from_init(payload.as_ref())
                    .token()
                    .or_else(|| self.header_token.take());
                let verified = self.app.auth.load().verify_presented(token.as_deref());
                match verified {
                    Ok(who) => {
                        self.token = token;
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
