//! What a connection's operations and session hand on: messages for the socket writer, and
//! the starts and ends the session keeps count of.

use super::protocol::ServerMsg;

/// What an operation tells its session, beside the messages it sends.
pub enum OpEvent {
    /// A subscription is streaming (counted under its role).
    Started(String),
    /// The operation's last message (`complete` or `error`), for the session to send once it
    /// has forgotten the operation.
    Ended(ServerMsg),
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
