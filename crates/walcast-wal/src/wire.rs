//! Message framing over a [`Transport`]: buffered, cancellation-safe reads of backend messages
//! (including the CopyBothResponse that `postgres_protocol` does not parse) and buffered writes.

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::Transport;
use crate::{ServerError, WalError};

/// CopyData frames carry whole WAL records; Postgres caps a message at 1 GiB.
const MAX_FRAME_LEN: usize = (1 << 30) + 1024;
const READ_CHUNK: usize = 64 * 1024;

pub(crate) enum Frame {
    /// `W`: the server entered CopyBoth mode.
    CopyBothResponse,
    /// `d`: the payload of a CopyData message.
    CopyData(Bytes),
    /// Any other backend message.
    Message(Message),
}

pub(crate) struct Wire {
    io: Transport,
    /// Bytes received but not yet parsed; a partial frame stays here across cancelled reads.
    rbuf: BytesMut,
    /// Messages queued but not yet written; partially written ones stay here across cancelled
    /// flushes.
    wbuf: BytesMut,
}

impl Wire {
    pub fn new(io: Transport) -> Self {
        Wire {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
        }
    }

    /// Gives the transport back for the TLS handshake. Bytes the server sent after its answer
    /// to SSLRequest must not be kept: they were not protected by TLS.
    pub fn into_transport(self) -> Result<Transport, WalError> {
        if self.rbuf.is_empty() {
            Ok(self.io)
        } else {
            Err(WalError::protocol(
                "negotiating TLS",
                "the server sent unencrypted data before the TLS handshake",
            ))
        }
    }

    /// Reads a single byte, for the answer to SSLRequest (which is not a framed message).
    pub async fn read_byte(&mut self, context: &str) -> Result<u8, WalError> {
        while self.rbuf.is_empty() {
            self.fill(context).await?;
        }
        Ok(self.rbuf.get_u8())
    }

    /// Queues a message built by a `postgres_protocol::message::frontend` function.
    pub fn queue<F>(&mut self, context: &str, build: F) -> Result<(), WalError>
    where
        F: FnOnce(&mut BytesMut) -> std::io::Result<()>,
    {
        build(&mut self.wbuf).map_err(WalError::io(format!("encoding {context}")))
    }

    pub fn has_pending_writes(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes every queued message. Cancellation safe: unwritten bytes stay queued.
    pub async fn flush(&mut self, context: &str) -> Result<(), WalError> {
        let result = match self.io.write_all_buf(&mut self.wbuf).await {
            Ok(()) => self.io.flush().await,
            Err(e) => Err(e),
        };
        result.map_err(WalError::io(format!("sending {context}")))
    }

    /// The next frame. Cancellation safe: partial frames stay buffered.
    pub async fn read_frame(&mut self, context: &str) -> Result<Frame, WalError> {
        loop {
            if let Some(frame) = self.parse_frame(context)? {
                return Ok(frame);
            }
            self.fill(context).await?;
        }
    }

    /// The next frame that is not a notice or parameter status (those are logged or ignored).
    pub async fn read_significant(&mut self, context: &str) -> Result<Frame, WalError> {
        loop {
            match self.read_frame(context).await? {
                Frame::Message(Message::NoticeResponse(body)) => log_notice(body.fields()),
                Frame::Message(Message::ParameterStatus(_)) => {}
                frame => return Ok(frame),
            }
        }
    }

    pub async fn shutdown(&mut self) {
        // Best effort: the peer may already be gone.
        let _ = self.io.shutdown().await;
    }

    async fn fill(&mut self, context: &str) -> Result<(), WalError> {
        self.rbuf.reserve(READ_CHUNK);
        let n = self
            .io
            .read_buf(&mut self.rbuf)
            .await
            .map_err(WalError::io(context))?;
        if n == 0 {
            return Err(WalError::Closed {
                context: context.to_owned(),
            });
        }
        Ok(())
    }

    fn parse_frame(&mut self, context: &str) -> Result<Option<Frame>, WalError> {
        let Some(&[tag, a, b, c, d]) = self.rbuf.get(..5) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([a, b, c, d]);
        let total = usize::try_from(len)
            .ok()
            .filter(|len| (4..=MAX_FRAME_LEN).contains(len))
            .map(|len| len + 1)
            .ok_or_else(|| {
                WalError::protocol(
                    context,
                    format!(
                        "message '{}' has invalid length {len}",
                        char::from(tag).escape_default()
                    ),
                )
            })?;
        if self.rbuf.len() < total {
            self.rbuf.reserve(total - self.rbuf.len());
            return Ok(None);
        }
        match tag {
            b'W' => {
                // Format and column codes do not matter for replication.
                self.rbuf.advance(total);
                Ok(Some(Frame::CopyBothResponse))
            }
            b'd' => {
                let mut frame = self.rbuf.split_to(total);
                frame.advance(5);
                Ok(Some(Frame::CopyData(frame.freeze())))
            }
            _ => match Message::parse(&mut self.rbuf) {
                Ok(Some(message)) => Ok(Some(Frame::Message(message))),
                Ok(None) => Err(WalError::protocol(context, "incomplete message")),
                Err(e) => Err(WalError::protocol(
                    context,
                    format!(
                        "malformed message '{}': {e}",
                        char::from(tag).escape_default()
                    ),
                )),
            },
        }
    }
}

pub(crate) fn log_notice(fields: postgres_protocol::message::backend::ErrorFields<'_>) {
    let notice = ServerError::from_fields(fields);
    tracing::info!(target: "walcast_wal::server", severity = %notice.severity, code = %notice.code, "{}", notice.message);
}

/// A short, printable name for an unexpected message in error texts.
pub(crate) fn describe(frame: &Frame) -> &'static str {
    match frame {
        Frame::CopyBothResponse => "CopyBothResponse",
        Frame::CopyData(_) => "CopyData",
        Frame::Message(m) => match m {
            Message::AuthenticationOk
            | Message::AuthenticationCleartextPassword
            | Message::AuthenticationMd5Password(_)
            | Message::AuthenticationSasl(_)
            | Message::AuthenticationSaslContinue(_)
            | Message::AuthenticationSaslFinal(_)
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationSspi => "an authentication request",
            Message::BackendKeyData(_) => "BackendKeyData",
            Message::CommandComplete(_) => "CommandComplete",
            Message::CopyDone => "CopyDone",
            Message::CopyInResponse(_) => "CopyInResponse",
            Message::CopyOutResponse(_) => "CopyOutResponse",
            Message::DataRow(_) => "DataRow",
            Message::EmptyQueryResponse => "EmptyQueryResponse",
            Message::ErrorResponse(_) => "ErrorResponse",
            Message::NoticeResponse(_) => "NoticeResponse",
            Message::NotificationResponse(_) => "NotificationResponse",
            Message::ParameterStatus(_) => "ParameterStatus",
            Message::ReadyForQuery(_) => "ReadyForQuery",
            Message::RowDescription(_) => "RowDescription",
            _ => "an extended-query message",
        },
    }
}
