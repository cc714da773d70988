//! What a GraphQL session knows of its client and its operations.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use walcast_graphql::{Access, SharedAccess};

use crate::app::App;
use crate::auth::{Identity, Origin};
use crate::ws::operations::{OpHandle, Runner};
use crate::ws::outgoing::{OpEvent, Out};
use crate::ws::protocol::{Protocol, ServerMsg};

/// A close code and its reason, ending the connection.
pub(super) type Close = (u16, String);

pub(super) struct Session {
    pub(super) app: Arc<App>,
    pub(super) protocol: Protocol,
    pub(super) id: u64,
    pub(super) identity: Option<Identity>,
    /// The static token the identity came from: checked again when the tokens file is reloaded,
    /// so a revoked token ends its sockets.
    pub(super) token: Option<String>,
    /// Handshake mode: the bearer token of the upgrade's Authorization header, the identity's
    /// source when the init payload carries no token.
    pub(super) header_token: Option<String>,
    /// What the identity may read and write; recomputed when permissions or the catalog change.
    pub(super) access: SharedAccess,
    pub(super) acked: bool,
    pub(super) ops: HashMap<String, OpHandle>,
    /// The serial of the next operation (see `OpEvent`).
    pub(super) next_serial: u64,
    /// Runs operations in the connection's writer task.
    pub(super) runner: Runner,
    /// Operations streaming events, with the role they count under.
    streams: HashMap<String, String>,
    pub(super) out: mpsc::Sender<Out>,
    /// Operations' starts and ends; their other messages go to `out` directly.
    pub(super) op_tx: mpsc::Sender<OpEvent>,
    pub(super) slow: Arc<Notify>,
    /// Set at shutdown: the `complete`s the goodbye carries ahead of the close.
    pub(super) farewell: Option<Vec<ServerMsg>>,
}

impl Session {
    /// `identity` (and the token it came from) is set when strict mode authenticated the
    /// upgrade.
    pub(super) fn new(
        app: Arc<App>,
        protocol: Protocol,
        identity: Option<(Identity, String)>,
        header_token: Option<String>,
        out: mpsc::Sender<Out>,
        runner: Runner,
        op_tx: mpsc::Sender<OpEvent>,
    ) -> Session {
        let (identity, token) = identity.unzip();
        let mut s = Session {
            id: app.connection_id(),
            app,
            protocol,
            identity,
            token,
            header_token,
            access: Arc::new(arc_swap::ArcSwap::from_pointee(Access::default())),
            acked: false,
            ops: HashMap::new(),
            next_serial: 1,
            runner,
            streams: HashMap::new(),
            out,
            op_tx,
            slow: Arc::new(Notify::new()),
            farewell: None,
        };
        if s.identity.is_some() {
            s.refresh_view();
        }
        s
    }

    /// Why the socket's static token is no longer accepted (removed from the tokens file),
    /// or `None`. A token that now maps to another role keeps the socket with the new role.
    pub(super) fn revoked(&mut self) -> Option<String> {
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
    pub(super) async fn end_operations(&mut self, message: &str) {
        let errors = serde_json::json!([{ "message": message }]);
        for (id, op) in self.ops.drain().collect::<Vec<_>>() {
            op.abort();
            let errors = errors.clone();
            let _ = self
                .out
                .send(Out::Msg(ServerMsg::Error { id, errors }))
                .await;
        }
    }

    /// Keeps a `complete` for every operation, for the goodbye: it goes out ahead of anything
    /// queued, which is dropped, so an operation's late `next` cannot follow its `complete`.
    /// Nothing is awaited, so a full queue cannot hold it. The operations are left to the
    /// runtime's bounded shutdown rather than aborted: tearing down each subscription (hub,
    /// payload group) would compete with every other connection's goodbye for the cores.
    pub(super) fn complete_operations(&mut self) {
        let completes = self
            .ops
            .drain()
            .map(|(id, _)| ServerMsg::Complete { id, result: None })
            .collect();
        self.farewell = Some(completes);
    }

    /// The session is over: its operations stop and its streams are no longer counted.
    pub(super) fn finish(&mut self) {
        for (_, op) in self.ops.drain() {
            op.abort();
        }
        for (_, role) in self.streams.drain() {
            self.app
                .metrics
                .subscriptions_by
                .add(&[self.protocol.name(), &role], -1);
        }
    }

    fn role(&self) -> String {
        self.identity
            .as_ref()
            .map(|i| i.role.clone())
            .unwrap_or_else(|| "public".into())
    }

    pub(super) fn stream_started(&mut self, id: &str) {
        let role = self.role();
        self.app
            .metrics
            .subscriptions_by
            .add(&[self.protocol.name(), &role], 1);
        self.streams.insert(id.to_owned(), role);
    }

    pub(super) fn stream_ended(&mut self, id: &str) {
        if let Some(role) = self.streams.remove(id) {
            self.app
                .metrics
                .subscriptions_by
                .add(&[self.protocol.name(), &role], -1);
        }
    }

    pub(super) fn refresh_view(&mut self) {
        let who = self.identity.clone().unwrap_or_else(Identity::public);
        self.access.store(Arc::new(self.app.access(&who)));
    }

    pub(super) async fn send(&self, msg: ServerMsg) {
        let _ = self.out.send(Out::Msg(msg)).await;
    }
}
