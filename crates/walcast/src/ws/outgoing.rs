//! What a connection's operations and session hand on: messages for the socket writer, and
//! the starts and ends the session keeps count of.

use super::protocol::ServerMsg;

/// What an operation tells its session, beside the messages it sends.
///
/// Each carries its operation's serial: an id is the client's and may be used again once its
/// operation ended, and a late event of the old operation must not count for, or end, the new
/// one.
pub enum OpEvent {
    /// A subscription is streaming (counted under its role).
    Started { id: String, serial: u64 },
    /// The operation's last message (`complete` or `error`), for the session to send once it
    /// has forgotten the operation.
    Ended { msg: ServerMsg, serial: u64 },
}

/// One item of the socket writer's queue.
pub enum Out {
    Msg(ServerMsg),
    /// A WebSocket ping frame (keeps proxies from closing an idle socket; the pong proves the
    /// client is there).
    Ping,
    Close(u16, String),
    /// The client closed: flush the close frame tungstenite queued as the reply.
    CloseReply,
}
