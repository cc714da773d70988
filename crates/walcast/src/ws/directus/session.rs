//! One Directus realtime connection: authentication (and re-authentication on an open socket),
//! the heartbeat, subscriptions by `uid`, and item requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use ws_stream::tungstenite::{Error as WsError, Message};

use walcast_graphql::{Access, ConnectionHandle, SharedAccess};

use super::codec::{self, code, ClientMsg, Items, Subscribe};
use super::requests::{self, Refusal};
use super::writer::{self, raw, Route, Routes, Shape};
use super::PROTOCOL;
use crate::app::App;
use crate::auth::{AuthError, Identity, Origin};
use crate::config::AuthMode;
use crate::server::Socket;
use crate::ws::operation;
use crate::ws::protocol::{Request, ServerMsg};
use crate::ws::session::{close, OpEvent, Out};

/// Messages waiting for the socket writer; past this, subscriptions wait (and their hub queues
/// fill, which is what marks a slow consumer).
const OUT_QUEUE: usize = 256;

struct Session {
    app: Arc<App>,
    id: u64,
    mode: AuthMode,
    identity: Option<Identity>,
    /// The token the identity came from: a static token is checked again when the tokens file
    /// is reloaded, so a revoked one ends its sockets (as on the GraphQL path).
    token: Option<String>,
    /// Set once a token was accepted (or in public mode): before that, handshake clients have
    /// the auth timeout to send one.
    authenticated_once: bool,
    /// What the identity may read and write; recomputed when permissions or the catalog change.
    access: SharedAccess,
    /// Subscriptions by the client's uid (JSON text): their operation id and task.
    subs: HashMap<String, (String, JoinHandle<()>)>,
    next_op: u64,
    routes: Routes,
    paused: Arc<AtomicBool>,
    out: mpsc::Sender<Out>,
    op_tx: mpsc::Sender<OpEvent>,
    slow: Arc<Notify>,
    /// Roles of subscriptions counted in the metrics, by operation id.
    counted: HashMap<String, String>,
}

fn uid_key(uid: Option<&Value>) -> String {
    uid.map(Value::to_string).unwrap_or_default()
}

/// Serves one upgraded socket. `identity` (and the token it came from) is set when strict mode
/// authenticated the upgrade.
pub async fn serve(app: Arc<App>, ws: Socket, identity: Option<(Identity, String)>) {
    let (identity, token) = identity.unzip();
    app.metrics.connections.fetch_add(1, Relaxed);
    app.metrics.connections_by.add(&[PROTOCOL], 1);
    let (sink, mut stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<Out>(OUT_QUEUE);
    let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
    let paused = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(writer::run(
        sink,
        out_rx,
        routes.clone(),
        paused.clone(),
        app.metrics.clone(),
    ));
    let (op_tx, mut op_rx) = mpsc::channel::<OpEvent>(OUT_QUEUE);
    let mode = app.cfg.rest_auth;
    let identity = match (mode, identity) {
        (AuthMode::Public, None) => Some(Identity::public()),
        (_, who) => who,
    };
    let mut s = Session {
        id: app.connection_id(),
        app: app.clone(),
        mode,
        authenticated_once: identity.is_some(),
        identity,
        token,
        access: Arc::new(arc_swap::ArcSwap::from_pointee(Access::default())),
        subs: HashMap::new(),
        next_op: 1,
        routes,
        paused,
        out: out_tx,
        op_tx,
        slow: Arc::new(Notify::new()),
        counted: HashMap::new(),
    };
    if s.identity.is_some() {
        s.refresh_view();
    }
    let auth_deadline = tokio::time::sleep(Duration::from_millis(app.cfg.rest_auth_timeout_ms));
    tokio::pin!(auth_deadline);
    let period = Duration::from_secs(app.cfg.heartbeat_period_s.max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // A session held up (a full socket) must not fire missed pings back to back: the client
    // gets a whole period to answer each.
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A ping is outstanding: nothing has come from the client since it was sent.
    let mut awaiting = false;
    let mut shutdown = app.shutdown.clone();
    let mut generation = app.generation.subscribe();
    let slow = s.slow.clone();
    let close: Option<(u16, String)> = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                None => break None,
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
                    awaiting = false;
                    if let Some(c) = s.handle(text.as_str()).await {
                        break Some(c);
                    }
                }
                Some(Ok(_)) => awaiting = false,
            },
            Some(event) = op_rx.recv() => match event {
                OpEvent::Ended(msg) => {
                    if let ServerMsg::Complete { id, .. } | ServerMsg::Error { id, .. } = &msg {
                        s.ended(id);
                    }
                    // The writer turns an error into the subscription's error, then forgets
                    // the route.
                    if s.out.send(Out::Msg(msg)).await.is_err() {
                        break None;
                    }
                }
                OpEvent::Started(id) => s.started(&id),
            },
            _ = &mut auth_deadline, if !s.authenticated_once => {
                s.send(codec::error("auth", code::AUTH_TIMEOUT, "no auth message in time", None)).await;
                break Some((close::INIT_TIMEOUT, "authentication timeout".into()));
            }
            _ = heartbeat.tick(), if app.cfg.heartbeat_enabled && s.authenticated_once => {
                if awaiting {
                    break Some((1000, "no pong to the last heartbeat".into()));
                }
                awaiting = true;
                s.send(codec::ping()).await;
            }
            _ = generation.changed() => {
                if s.revoked() {
                    s.send(codec::error("auth", code::AUTH_FAILED, "access token revoked", None)).await;
                    break Some((close::FORBIDDEN, "access token revoked".into()));
                }
                if s.identity.is_some() {
                    s.refresh_view();
                }
            }
            _ = expiry(s.identity.as_ref().and_then(|i| i.expires_at)) => {
                s.expired().await;
            }
            _ = slow.notified() => {
                app.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                break Some((close::TOO_MANY, "slow consumer".into()));
            }
            _ = shutdown.changed() => {
                break Some((close::GOING_AWAY, "server shutting down".into()));
            }
        }
    };
    for (_, (_, task)) in s.subs.drain() {
        task.abort();
    }
    for (_, role) in s.counted.drain() {
        app.metrics.subscriptions_by.add(&[PROTOCOL, &role], -1);
    }
    if let Some((code, reason)) = close {
        let _ = s.out.send(Out::Close(code, reason)).await;
    }
    drop(s);
    let _ = writer.await;
    app.metrics.connections.fetch_sub(1, Relaxed);
    app.metrics.connections_by.add(&[PROTOCOL], -1);
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
    async fn send(&self, text: String) {
        let _ = self.out.send(raw(text)).await;
    }

    /// True when the socket's static token is no longer accepted (removed from the tokens
    /// file). A token that now maps to another role keeps the socket with the new role.
    fn revoked(&mut self) -> bool {
        let Some(token) = self.token.as_deref() else {
            return false;
        };
        if self.identity.as_ref().map(|i| i.origin) != Some(Origin::StaticToken) {
            return false;
        }
        match self.app.auth.load().verify(token) {
            Ok(who) => {
                self.identity = Some(who);
                false
            }
            Err(_) => true,
        }
    }

    fn role(&self) -> String {
        self.identity
            .as_ref()
            .map(|i| i.role.clone())
            .unwrap_or_else(|| crate::auth::PUBLIC_ROLE.into())
    }

    fn refresh_view(&mut self) {
        let who = self.identity.clone().unwrap_or_else(Identity::public);
        self.access.store(Arc::new(self.app.access(&who)));
    }

    fn started(&mut self, op: &str) {
        let role = self.role();
        self.app.metrics.subscriptions_by.add(&[PROTOCOL, &role], 1);
        self.counted.insert(op.to_owned(), role);
    }

    fn ended(&mut self, op: &str) {
        if let Some(role) = self.counted.remove(op) {
            self.app
                .metrics
                .subscriptions_by
                .add(&[PROTOCOL, &role], -1);
        }
        self.subs.retain(|_, (id, _)| id != op);
    }

    fn stop(&mut self, key: &str) -> bool {
        let Some((op, task)) = self.subs.remove(key) else {
            return false;
        };
        task.abort();
        if let Some(role) = self.counted.remove(&op) {
            self.app
                .metrics
                .subscriptions_by
                .add(&[PROTOCOL, &role], -1);
        }
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&op);
        true
    }

    /// The token expired: the client is told (`TOKEN_EXPIRED`, the SDK answers with a fresh
    /// token) and nothing is delivered under it meanwhile.
    async fn expired(&mut self) {
        self.send(codec::error(
            "auth",
            code::TOKEN_EXPIRED,
            "access token expired",
            None,
        ))
        .await;
        self.token = None;
        if self.mode == AuthMode::Public {
            self.identity = Some(Identity::public());
            self.refresh_view();
        } else {
            self.identity = None;
            self.paused.store(true, Relaxed);
        }
    }

    /// Handles one frame; returns a close code and reason to end the connection.
    async fn handle(&mut self, text: &str) -> Option<(u16, String)> {
        let msg = match ClientMsg::decode(text) {
            Ok(m) => m,
            Err(e) => {
                self.send(codec::error(
                    &e.reply_type,
                    code::INVALID_PAYLOAD,
                    &e.message,
                    e.uid.as_ref(),
                ))
                .await;
                return None;
            }
        };
        match msg {
            ClientMsg::Auth { uid, access_token } => self.auth(uid, access_token).await,
            ClientMsg::Ping { uid } => {
                self.send(codec::pong(uid.as_ref())).await;
                None
            }
            ClientMsg::Pong => None,
            ClientMsg::Unsubscribe { uid } => {
                match &uid {
                    Some(u) => {
                        if self.stop(&uid_key(Some(u))) {
                            self.send(codec::unsubscribed(uid.as_ref())).await;
                        }
                    }
                    // Without a uid: every subscription of the connection.
                    None => {
                        let keys: Vec<String> = self.subs.keys().cloned().collect();
                        for k in keys {
                            self.stop(&k);
                        }
                        self.send(codec::unsubscribed(None)).await;
                    }
                }
                None
            }
            ClientMsg::Subscribe(sub) => {
                let uid = sub.uid.clone();
                if let Err(r) = self.subscribe(sub) {
                    self.send(codec::error("subscribe", r.code, &r.message, uid.as_ref()))
                        .await;
                }
                None
            }
            ClientMsg::Items(items) => {
                match self.authorized() {
                    Err(r) => {
                        self.send(codec::error(
                            "items",
                            r.code,
                            &r.message,
                            items.uid.as_ref(),
                        ))
                        .await
                    }
                    Ok(()) => self.items(items),
                }
                None
            }
        }
    }

    async fn auth(&mut self, uid: Option<Value>, token: Option<String>) -> Option<(u16, String)> {
        let verified = self.app.auth.load().verify_presented(token.as_deref());
        match verified {
            Ok(who) => {
                self.identity = Some(who);
                self.token = token;
                self.authenticated_once = true;
                self.refresh_view();
                self.paused.store(false, Relaxed);
                self.send(codec::auth_ok(uid.as_ref())).await;
                None
            }
            Err(e) => {
                let c = if e == AuthError::Expired {
                    code::TOKEN_EXPIRED
                } else {
                    code::AUTH_FAILED
                };
                self.send(codec::error("auth", c, &e.to_string(), uid.as_ref()))
                    .await;
                if !self.authenticated_once {
                    // Handshake: closing after a refusal stops one socket from trying token
                    // after token.
                    return Some((close::FORBIDDEN, format!("Forbidden: {e}")));
                }
                // A refused token replaces the one before it: nothing is delivered until a
                // good one comes (public mode falls back to the public role).
                self.token = None;
                if self.mode == AuthMode::Public {
                    self.identity = Some(Identity::public());
                    self.refresh_view();
                } else {
                    self.identity = None;
                    self.paused.store(true, Relaxed);
                }
                None
            }
        }
    }

    fn authorized(&self) -> Result<(), Refusal> {
        match &self.identity {
            Some(who) if !who.expired() => Ok(()),
            Some(_) => Err(Refusal::new(code::TOKEN_EXPIRED, "access token expired")),
            None => Err(Refusal::new(
                code::FORBIDDEN,
                "authenticate first: {\"type\":\"auth\",\"access_token\":…}",
            )),
        }
    }

    fn schema_and_ctx(
        &self,
        connection: bool,
    ) -> (Arc<walcast_graphql::Schema>, walcast_graphql::Ctx) {
        let schema = self.app.schemas.load().for_view(&self.access.load());
        let handle = connection.then(|| {
            let slow = self.slow.clone();
            ConnectionHandle {
                id: self.id,
                on_overflow: Arc::new(move || slow.notify_one()),
            }
        });
        (schema, self.app.context(self.access.clone(), handle))
    }

    fn subscribe(&mut self, sub: Subscribe) -> Result<(), Refusal> {
        self.authorized()?;
        let key = uid_key(sub.uid.as_ref());
        // A uid in use is replaced, as in Directus.
        self.stop(&key);
        self.subs.retain(|_, (_, task)| !task.is_finished());
        let limit = self.app.cfg.max_subscriptions_per_connection;
        if self.subs.len() >= limit {
            return Err(Refusal::new(
                code::LIMIT_EXCEEDED,
                format!("too many subscriptions on this connection (limit {limit})"),
            ));
        }
        let (schema, ctx) = self.schema_and_ctx(true);
        let op = self.next_op.to_string();
        self.next_op += 1;
        let outlet = || operation::Outlet {
            messages: self.out.clone(),
            events: self.op_tx.clone(),
        };
        let groups = self.app.payloads.clone();
        let task = if requests::is_document(&sub.collection) {
            self.route(&op, sub.uid.clone(), Shape::Document);
            let request = Request {
                query: sub.collection.clone(),
                variables: sub.variables.clone(),
                operation_name: None,
            };
            tokio::spawn(operation::run(
                schema,
                ctx,
                groups,
                op.clone(),
                request,
                outlet(),
            ))
        } else {
            let t = requests::table(&schema, &sub.collection)?;
            let sel = requests::selection(&t, &sub.query)?;
            let filter = requests::where_of(&t, &sub.query, sub.item.as_ref())?;
            let numeric_key = super::fields::id_field(&t).is_some_and(|(_, n)| n);
            let doc = requests::subscription_doc(&t, &sel);
            self.route(
                &op,
                sub.uid.clone(),
                Shape::Items {
                    sel: sel.clone(),
                    numeric_key,
                },
            );
            let (_, read_ctx) = self.schema_and_ctx(false);
            let out = self.out.clone();
            let outlet = outlet();
            let op = op.clone();
            let uid = sub.uid.clone();
            let event = sub.event.map(|e| e.name());
            tokio::spawn(async move {
                // The items now, then every change after the position they were read at. The
                // read is boxed: this task lives as long as the subscription, and its state is as
                // large as its largest await.
                let read = Box::pin(requests::read(
                    &schema,
                    &read_ctx,
                    &t,
                    &sel,
                    &sub.query,
                    filter.clone(),
                ));
                let (rows, cursor) = match read.await {
                    Ok(r) => r,
                    Err(r) => {
                        let _ = out
                            .send(raw(codec::error(
                                "subscribe",
                                r.code,
                                &r.message,
                                uid.as_ref(),
                            )))
                            .await;
                        return;
                    }
                };
                // What the stream does not need goes before it starts.
                drop((read_ctx, sub, t, sel));
                let _ = out
                    .send(raw(codec::subscription(Some("init"), rows, uid.as_ref())))
                    .await;
                let request = Request {
                    query: doc,
                    variables: Some(requests::variables_without_nulls(
                        json!({"where": filter, "event": event, "after": cursor}),
                    )),
                    operation_name: None,
                };
                operation::run(schema, ctx, groups, op, request, outlet).await;
            })
        };
        self.subs.insert(key, (op, task));
        Ok(())
    }

    fn route(&self, op: &str, uid: Option<Value>, shape: Shape) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op.to_owned(), Arc::new(Route { uid, shape }));
    }

    fn items(&self, msg: Items) {
        let (schema, ctx) = self.schema_and_ctx(false);
        let out = self.out.clone();
        let mutations = self.app.cfg.mutations;
        tokio::spawn(async move {
            let text = match requests::items(&schema, &ctx, mutations, &msg).await {
                Ok(data) => codec::items(data, msg.uid.as_ref()),
                Err(r) => codec::error("items", r.code, &r.message, msg.uid.as_ref()),
            };
            let _ = out.send(raw(text)).await;
        });
    }
}
