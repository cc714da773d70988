//! The client's messages: auth, ping, subscribe and unsubscribe, item requests.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::Value;

use super::state::{uid_key, Close, Session};
use crate::auth::{AuthError, Identity};
use crate::config::AuthMode;
use crate::ws::close;
use crate::ws::directus::codec::{self, code, ClientMsg};

impl Session {
    /// Handles one frame; returns a close code and reason to end the connection.
    pub(super) async fn handle(&mut self, text: &str) -> Option<Close> {
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

    async fn auth(&mut self, uid: Option<Value>, token: Option<String>) -> Option<Close> {
        let verified = match &token {
            Some(t) => self.app.auth.load().verify(t),
            None => Err(AuthError::Missing),
        };
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
}
