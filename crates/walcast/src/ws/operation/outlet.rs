//! Where an operation's messages go.

use tokio::sync::mpsc;

use super::error::{Disconnected, OperationError};
use crate::ws::outgoing::{OpEvent, Out};
use crate::ws::protocol::ServerMsg;

/// Events go straight to the connection's writer (one hop, not two, per event); the operation's
/// start and its end go to the session too, which tracks them.
pub struct Outlet {
    pub messages: mpsc::Sender<Out>,
    pub events: mpsc::Sender<OpEvent>,
    /// The operation's serial on its connection (see [`OpEvent`]).
    pub serial: u64,
}

impl Outlet {
    /// Sends a message that goes out once per operation (start, end, errors), and tells the
    /// session. The send futures are boxed: every await of an unboxed one takes its own room in
    /// the operation task's state, which lives as long as the subscription; only the per-event
    /// send is worth keeping inline.
    pub async fn once(&self, msg: ServerMsg) -> Result<(), Disconnected> {
        match msg {
            // Through the session, which forgets the operation before the client can see its
            // end (and reuse its id); every `next` is already queued ahead of it.
            ServerMsg::Complete { .. } | ServerMsg::Error { .. } => {
                let serial = self.serial;
                Box::pin(self.events.send(OpEvent::Ended { msg, serial }))
                    .await
                    .map_err(|_| Disconnected)
            }
            ServerMsg::Started { ref id } => {
                let started = OpEvent::Started {
                    id: id.clone(),
                    serial: self.serial,
                };
                Box::pin(self.messages.send(Out::Msg(msg)))
                    .await
                    .map_err(|_| Disconnected)?;
                Box::pin(self.events.send(started))
                    .await
                    .map_err(|_| Disconnected)
            }
            msg => Box::pin(self.messages.send(Out::Msg(msg)))
                .await
                .map_err(|_| Disconnected),
        }
    }

    /// One event's message, straight to the writer.
    pub async fn next(&self, msg: ServerMsg) -> Result<(), Disconnected> {
        self.messages
            .send(Out::Msg(msg))
            .await
            .map_err(|_| Disconnected)
    }

    /// Ends the operation with its error.
    pub async fn fail(&self, id: &str, e: OperationError) -> Result<(), Disconnected> {
        let msg = ServerMsg::Error {
            id: id.to_owned(),
            errors: e.errors(),
        };
        self.once(msg).await
    }
}
