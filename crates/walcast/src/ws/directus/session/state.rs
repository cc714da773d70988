//! What a Directus session knows of its client, its subscriptions and their routes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use walcast_graphql::{Access, ConnectionHandle, SharedAccess};

use crate::app::App;
use crate::auth::{Identity, Origin};
use crate::config::AuthMode;
use crate::ws::directus::codec::{self, code};
use crate::ws::directus::requests::Refusal;
use crate::ws::directus::routes::{raw, Route, Routes, Shape};
use crate::ws::operations::{OpHandle, Runner};
use crate::ws::outgoing::{OpEvent, Out};

/// The protocol's name in metrics.
pub const PROTOCOL: &str = "directus";

/// A close code and its reason, ending the connection.
pub(super) type Close = (u16, String);

pub(super) struct Session {
    pub(super) app: Arc<App>,
    pub(super) id: u64,
    pub(super) mode: AuthMode,
    pub(super) identity: Option<Identity>,
    /// The token the identity came from: a static token is checked again when the tokens file
    /// is reloaded, so a revoked one ends its sockets (as on the GraphQL path).
    pub(super) token: Option<String>,
    /// Set once a token was accepted (or in public mode): before that, handshake clients have
    /// the auth timeout to send one.
    pub(super) authenticated_once: bool,
    /// What the identity may read and write; recomputed when permissions or the catalog change.
    pub(super) access: SharedAccess,
    /// Subscriptions by the client's uid (JSON text): their operation id and task.
    pub(super) subs: HashMap<String, (String, OpHandle)>,
    /// Runs subscriptions in the connection's writer task.
    pub(super) runner: Runner,
    pub(super) next_op: u64,
    pub(super) routes: Routes,
    pub(super) paused: Arc<AtomicBool>,
    pub(super) out: mpsc::Sender<Out>,
    pub(super) op_tx: mpsc::Sender<OpEvent>,
    pub(super) slow: Arc<Notify>,
    /// Roles of subscriptions counted in the metrics, by operation id.
    counted: HashMap<String, String>,
}

pub(super) fn uid_key(uid: Option<&Value>) -> String {
    uid.map(Value::to_string).unwrap_or_default()
}

impl Session {
    /// `identity` (and the token it came from) is set when strict mode authenticated the
    /// upgrade; `routes` and `paused` are shared with the connection's writer.
    pub(super) fn new(
        app: Arc<App>,
        identity: Option<(Identity, String)>,
        routes: Routes,
        paused: Arc<AtomicBool>,
        out: mpsc::Sender<Out>,
        runner: Runner,
        op_tx: mpsc::Sender<OpEvent>,
    ) -> Session {
        let (identity, token) = identity.unzip();
        let mode = app.cfg.rest_auth;
        let identity = match (mode, identity) {
            (AuthMode::Public, None) => Some(Identity::public()),
            (_, who) => who,
        };
        let mut s = Session {
            id: app.connection_id(),
            app,
            mode,
            authenticated_once: identity.is_some(),
            identity,
            token,
            access: Arc::new(arc_swap::ArcSwap::from_pointee(Access::default())),
            subs: HashMap::new(),
            runner,
            next_op: 1,
            routes,
            paused,
            out,
            op_tx,
            slow: Arc::new(Notify::new()),
            counted: HashMap::new(),
        };
        if s.identity.is_some() {
            s.refresh_view();
        }
        s
    }

    /// The session is over: its subscriptions stop and are no longer counted.
    pub(super) fn finish(&mut self) {
        for (_, (_, task)) in self.subs.drain() {
            task.abort();
        }
        for (_, role) in self.counted.drain() {
            self.app
                .metrics
                .subscriptions_by
                .add(&[PROTOCOL, &role], -1);
        }
    }

    pub(super) async fn send(&self, text: String) {
        let _ = self.out.send(raw(text)).await;
    }

    /// True when the socket's static token is no longer accepted (removed from the tokens
    /// file). A token that now maps to another role keeps the socket with the new role.
    pub(super) fn revoked(&mut self) -> bool {
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

    pub(super) fn role(&self) -> String {
        self.identity
            .as_ref()
            .map(|i| i.role.clone())
            .unwrap_or_else(|| crate::auth::PUBLIC_ROLE.into())
    }

    pub(super) fn refresh_view(&mut self) {
        let who = self.identity.clone().unwrap_or_else(Identity::public);
        self.access.store(Arc::new(self.app.access(&who)));
    }

    pub(super) fn started(&mut self, op: &str) {
        let role = self.role();
        self.app.metrics.subscriptions_by.add(&[PROTOCOL, &role], 1);
        self.counted.insert(op.to_owned(), role);
    }

    pub(super) fn ended(&mut self, op: &str) {
        if let Some(role) = self.counted.remove(op) {
            self.app
                .metrics
                .subscriptions_by
                .add(&[PROTOCOL, &role], -1);
        }
        self.subs.retain(|_, (id, _)| id != op);
    }

    pub(super) fn stop(&mut self, key: &str) -> bool {
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
        walcast_model::sync::lock(&self.routes).remove(&op);
        true
    }

    /// The token expired: the client is told (`TOKEN_EXPIRED`, the SDK answers with a fresh
    /// token) and nothing is delivered under it meanwhile.
    pub(super) async fn expired(&mut self) {
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

    pub(super) fn authorized(&self) -> Result<(), Refusal> {
        match &self.identity {
            Some(who) if !who.expired() => Ok(()),
            Some(_) => Err(Refusal::new(code::TOKEN_EXPIRED, "access token expired")),
            None => Err(Refusal::new(
                code::FORBIDDEN,
                "authenticate first: {\"type\":\"auth\",\"access_token\":…}",
            )),
        }
    }

    pub(super) fn schema_and_ctx(
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

    pub(super) fn route(&self, op: &str, uid: Option<Value>, shape: Shape) {
        walcast_model::sync::lock(&self.routes).insert(
            op.to_owned(),
            Arc::new(Route {
                uid,
                shape: Arc::new(shape),
            }),
        );
    }
}
