//! The client's messages: init, start and stop of operations, pings, terminate.

use std::sync::Arc;

use serde_json::{json, Value};
use walcast_graphql::ConnectionHandle;

use super::state::{Close, Session};
use crate::auth::{AuthError, Identity, TokenSources};
use crate::config::AuthMode;
use crate::request::Request;
use crate::ws::close;
use crate::ws::operation::{self, Outlet};
use crate::ws::protocol::{ClientMsg, Protocol, ServerMsg};

impl Session {
    /// Handles one frame; returns a close code and reason to end the connection.
    pub(super) async fn handle(&mut self, text: &str) -> Option<Close> {
        let msg = match self.protocol.decode(text) {
            Ok(m) => m,
            Err(e) => return Some((close::BAD_REQUEST, e.to_string())),
        };
        match msg {
            ClientMsg::Init(payload) => self.init(payload).await,
            ClientMsg::Start { id, request } => self.start(id, request).await,
            ClientMsg::Stop { id } => {
                self.stop(id).await;
                None
            }
            ClientMsg::Ping(payload) => {
                self.send(ServerMsg::Pong(payload)).await;
                None
            }
            ClientMsg::Pong => None,
            ClientMsg::Terminate => Some((close::NORMAL, "terminated".into())),
        }
    }

    async fn refuse(&self, id: String, message: String) {
        let errors = json!([{ "message": message }]);
        self.send(ServerMsg::Error { id, errors }).await;
    }

    async fn start(&mut self, id: String, request: Request) -> Option<Close> {
        if !self.acked {
            if self.protocol == Protocol::Transport {
                return Some((close::UNAUTHORIZED, "Unauthorized".into()));
            }
            self.refuse(id, "send the init message first".into()).await;
            return None;
        }
        if self.ops.get(&id).is_some_and(|op| !op.is_finished()) {
            if self.protocol == Protocol::Transport {
                let reason = format!("Subscriber for {id} already exists");
                return Some((close::DUPLICATE_ID, reason));
            }
            let message = format!("operation id {id:?} is already in use");
            self.refuse(id, message).await;
            return None;
        }
        self.ops.retain(|_, op| !op.is_finished());
        let limit = self.app.cfg.max_subscriptions_per_connection;
        if self.ops.len() >= limit {
            let message = format!("too many operations on this connection (limit {limit})");
            self.refuse(id, message).await;
            return None;
        }
        if self.identity.as_ref().is_some_and(|i| i.expired()) {
            self.refuse(id, "access token expired".into()).await;
            return None;
        }
        self.spawn(id, request);
        None
    }

    /// Runs the operation in the connection's writer task.
    fn spawn(&mut self, id: String, request: Request) {
        let schema = self.app.schemas.load().for_view(&self.access.load());
        let slow = self.slow.clone();
        let handle = ConnectionHandle {
            id: self.id,
            on_overflow: Arc::new(move || slow.notify_one()),
        };
        let ctx = self.app.context(self.access.clone(), Some(handle));
        let serial = self.next_serial;
        self.next_serial += 1;
        let outlet = Outlet {
            messages: self.out.clone(),
            events: self.op_tx.clone(),
            serial,
        };
        let groups = self.app.payloads.clone();
        let op = self.runner.run(operation::run(
            schema,
            ctx,
            groups,
            id.clone(),
            request,
            outlet,
        ));
        self.ops.insert(id, op.numbered(serial));
    }

    async fn stop(&mut self, id: String) {
        self.stream_ended(&id);
        if let Some(op) = self.ops.remove(&id) {
            op.abort();
            // graphql-transport-ws: the client already considers it complete.
            if self.protocol != Protocol::Transport {
                self.send(ServerMsg::Complete { id, result: None }).await;
            }
        }
    }

    async fn init(&mut self, payload: Option<Value>) -> Option<Close> {
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
                if let Err(e) = self.authenticate(payload.as_ref()) {
                    return Some(self.refuse_init(e).await);
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

    /// Handshake mode: the init payload's token, or else the upgrade's header, gives the
    /// identity.
    fn authenticate(&mut self, payload: Option<&Value>) -> Result<(), AuthError> {
        let token = TokenSources::from_init(payload)
            .token()
            .or_else(|| self.header_token.take());
        let who = self.app.auth.load().verify_presented(token.as_deref())?;
        self.token = token;
        self.identity = Some(who);
        self.refresh_view();
        Ok(())
    }

    /// A refused init closes the socket: one socket cannot try token after token. The legacy
    /// and Graphcool protocols say why in a message first.
    async fn refuse_init(&self, e: AuthError) -> Close {
        let reason = format!("Forbidden: {e}");
        if self.protocol != Protocol::Transport {
            self.send(ServerMsg::InitFail(reason.clone())).await;
        }
        (close::FORBIDDEN, reason)
    }
}
