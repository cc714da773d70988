//! The frames a session reads, as the sessions of every protocol tell them apart.

use ws_stream::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// What one read from the socket gave.
pub enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// The client's close frame.
    Close,
    /// Ping and pong frames: pings are answered by tungstenite, pongs only prove the client is
    /// there.
    Control,
    /// Over `max_message_size` (or `max_frame_size`, the same limit).
    TooBig,
    NotUtf8,
    /// The connection is gone (or broke).
    Ended,
}

impl Incoming {
    pub fn of(frame: Option<Result<Message, WsError>>) -> Incoming {
        match frame {
            None => Incoming::Ended,
            Some(Err(WsError::Capacity(_))) => Incoming::TooBig,
            Some(Err(WsError::Utf8(_))) => Incoming::NotUtf8,
            Some(Err(_)) => Incoming::Ended,
            Some(Ok(Message::Close(_))) => Incoming::Close,
            Some(Ok(Message::Text(text))) => Incoming::Text(text),
            Some(Ok(Message::Binary(_))) => Incoming::Binary,
            Some(Ok(_)) => Incoming::Control,
        }
    }
}
