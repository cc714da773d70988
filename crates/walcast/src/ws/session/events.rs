//! What the session does on each event of its loop beside timers: a frame read, an
//! operation's start or end, a changed generation of tokens and permissions, shutdown.

use std::ops::ControlFlow;

use super::state::{Close, Session};
use crate::ws::close;
use crate::ws::frames::Incoming;
use crate::ws::outgoing::{OpEvent, Out};
use crate::ws::protocol::{Protocol, ServerMsg};

/// Go on, or end the connection (with a close frame, or without when the client is gone).
pub(super) type Flow = ControlFlow<Option<Close>>;

fn close_with(code: u16, reason: &str) -> Flow {
    ControlFlow::Break(Some((code, reason.into())))
}

impl Session {
    pub(super) async fn on_frame(&mut self, frame: Incoming) -> Flow {
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
            Incoming::Text(text) => match self.handle(text.as_str()).await {
                Some(c) => ControlFlow::Break(Some(c)),
                None => ControlFlow::Continue(()),
            },
            // graphql-transport-ws allows only the messages it defines, as text.
            Incoming::Binary if self.protocol == Protocol::Transport => {
                close_with(close::BAD_REQUEST, "binary frames are not supported")
            }
            Incoming::Binary | Incoming::Control => ControlFlow::Continue(()),
        }
    }

    pub(super) async fn on_op_event(&mut self, event: OpEvent) -> Flow {
        match event {
            OpEvent::Ended { msg, serial } => {
                if let ServerMsg::Complete { id, .. } | ServerMsg::Error { id, .. } = &msg {
                    if self.ops.get(id).is_some_and(|op| op.serial() != serial) {
                        // The end of an operation stopped before a new one took its id: the
                        // client is owed nothing, and the new one runs on.
                        return ControlFlow::Continue(());
                    }
                    self.ops.remove(id);
                    self.stream_ended(id);
                }
                if self.out.send(Out::Msg(msg)).await.is_err() {
                    return ControlFlow::Break(None);
                }
            }
            // Counted only while it runs: not after a stop, nor under a newer operation's id.
            OpEvent::Started { id, serial } => {
                if self.ops.get(&id).is_some_and(|op| op.serial() == serial) {
                    self.stream_started(&id);
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Tokens, permissions or the catalog changed: a revoked token ends the connection, any
    /// other identity sees what it may see now.
    pub(super) async fn on_generation(&mut self) -> Flow {
        if let Some(reason) = self.revoked() {
            self.end_operations(&reason).await;
            return ControlFlow::Break(Some((close::FORBIDDEN, reason)));
        }
        if self.identity.is_some() {
            self.refresh_view();
        }
        ControlFlow::Continue(())
    }

    pub(super) async fn on_expiry(&mut self) -> Flow {
        self.end_operations("access token expired").await;
        close_with(close::FORBIDDEN, "access token expired")
    }

    pub(super) fn on_shutdown(&mut self) -> Flow {
        self.complete_operations();
        close_with(close::GOING_AWAY, "server shutting down")
    }
}
