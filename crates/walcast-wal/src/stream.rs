//! The CopyBoth phase: XLogData and keepalives in, standby status updates out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::time::Instant;

use crate::pgoutput::PG_EPOCH_OFFSET_MICROS;
use crate::wire::{describe, Frame, Wire};
use crate::{decode::decode_bytes, Lsn, PgOutput, PgTimestamp, ServerError, WalError};

/// How often a status update is sent while the stream is read, unless changed with
/// [`ReplicationStream::set_status_interval`]. Well under the server's default
/// `wal_sender_timeout` of 60 s.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationEvent {
    /// A pgoutput message and where it lies in the WAL.
    XLogData {
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        server_time: PgTimestamp,
        message: PgOutput,
    },
    /// A primary keepalive. When nothing is in flight, a consumer may acknowledge `wal_end`, so
    /// the slot advances past WAL that holds no change for it.
    Keepalive {
        wal_end: Lsn,
        server_time: PgTimestamp,
        /// Already answered by the stream with a status update.
        reply_requested: bool,
    },
}

/// A replication connection in streaming mode.
pub struct ReplicationStream {
    wire: Wire,
    acknowledged: Lsn,
    status_interval: Duration,
    next_status: Instant,
    /// The server sent CopyDone: the stream is over.
    server_done: bool,
    /// We sent CopyDone.
    client_done: bool,
}

impl ReplicationStream {
    pub(crate) fn new(wire: Wire, start: Lsn) -> Self {
        ReplicationStream {
            wire,
            acknowledged: start,
            status_interval: DEFAULT_STATUS_INTERVAL,
            next_status: Instant::now() + DEFAULT_STATUS_INTERVAL,
            server_done: false,
            client_done: false,
        }
    }

    /// Changes how often status updates are sent while [`recv`](Self::recv) runs.
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.status_interval = interval;
        self.next_status = Instant::now() + interval;
    }

    /// The next event; `Ok(None)` once the server has ended the stream.
    ///
    /// Status updates go out from here (every status interval, and at once when a keepalive asks
    /// for a reply), so keep calling it. Cancellation safe: usable in `tokio::select!`.
    pub async fn recv(&mut self) -> Result<Option<ReplicationEvent>, WalError> {
        const CONTEXT: &str = "receiving replication data";
        if self.server_done {
            return Ok(None);
        }
        loop {
            if self.wire.has_pending_writes() || Instant::now() >= self.next_status {
                if let Err(e) = self.send_status().await {
                    return Err(self.server_reason(e).await);
                }
            }
            let frame = tokio::select! {
                frame = self.wire.read_frame(CONTEXT) => frame?,
                () = tokio::time::sleep_until(self.next_status) => continue,
            };
            match frame {
                Frame::CopyData(data) => {
                    let event = parse_copy_data(data)?;
                    if let ReplicationEvent::Keepalive {
                        reply_requested: true,
                        wal_end,
                        ..
                    } = event
                    {
                        if let Err(e) = self.send_reply(wal_end).await {
                            return Err(self.server_reason(e).await);
                        }
                    }
                    return Ok(Some(event));
                }
                Frame::Message(Message::CopyDone) => {
                    self.server_done = true;
                    self.send_copy_done().await?;
                    return Ok(None);
                }
                Frame::Message(Message::ErrorResponse(body)) => {
                    return Err(WalError::Server {
                        context: CONTEXT.to_owned(),
                        error: Box::new(ServerError::from_fields(body.fields())),
                    })
                }
                Frame::Message(Message::NoticeResponse(body)) => {
                    crate::wire::log_notice(body.fields())
                }
                Frame::Message(Message::ParameterStatus(_)) => {}
                other => {
                    return Err(WalError::protocol(
                        CONTEXT,
                        format!("unexpected {}", describe(&other)),
                    ))
                }
            }
        }
    }

    /// Marks everything up to and including `lsn` as durably processed. Positions never move
    /// back: a smaller `lsn` is ignored.
    pub fn acknowledge(&mut self, lsn: Lsn) {
        self.acknowledged = self.acknowledged.max(lsn);
    }

    /// The position status updates report as written, flushed and applied.
    pub fn acknowledged(&self) -> Lsn {
        self.acknowledged
    }

    /// Sends a standby status update now, reporting the acknowledged position.
    pub async fn send_status(&mut self) -> Result<(), WalError> {
        const CONTEXT: &str = "standby status update";
        let mut payload = BytesMut::with_capacity(34);
        payload.put_u8(b'r');
        // write, flush and apply: the server confirms the slot up to `flush`.
        for _ in 0..3 {
            payload.put_u64(self.acknowledged.0);
        }
        payload.put_i64(pg_now());
        payload.put_u8(0); // no reply requested
        self.wire.queue(CONTEXT, |buf| {
            frontend::CopyData::new(payload.freeze())?.write(buf);
            Ok(())
        })?;
        self.wire.flush(CONTEXT).await?;
        self.next_status = Instant::now() + self.status_interval;
        tracing::trace!(acknowledged = %self.acknowledged, "sent standby status update");
        Ok(())
    }

    /// Answers a keepalive that asks for a reply: everything up to `received` arrived (TCP keeps
    /// order), but the flush position is left invalid so the slot does not move. A server that
    /// shuts down waits until its walsenders' clients report the end of WAL as written (or as
    /// flushed, when that is valid): a consumer that holds its confirmed position back — walcast
    /// keeps its retention window in the slot — would otherwise block every fast shutdown.
    async fn send_reply(&mut self, received: Lsn) -> Result<(), WalError> {
        const CONTEXT: &str = "keepalive reply";
        let mut payload = BytesMut::with_capacity(34);
        payload.put_u8(b'r');
        payload.put_u64(received.0.max(self.acknowledged.0));
        payload.put_u64(0);
        payload.put_u64(0);
        payload.put_i64(pg_now());
        payload.put_u8(0);
        self.wire.queue(CONTEXT, |buf| {
            frontend::CopyData::new(payload.freeze())?.write(buf);
            Ok(())
        })?;
        self.wire.flush(CONTEXT).await
    }

    /// Reports the acknowledged position, ends the stream and the session.
    ///
    /// Data still in flight is discarded: it was not acknowledged, so the server sends it again
    /// on the next start.
    pub async fn close(mut self) -> Result<(), WalError> {
        const CONTEXT: &str = "closing the replication stream";
        if !self.server_done {
            self.send_status().await?;
            self.send_copy_done().await?;
            let drain = async {
                loop {
                    match self.wire.read_frame(CONTEXT).await? {
                        Frame::Message(Message::ReadyForQuery(_)) => return Ok(()),
                        Frame::Message(Message::ErrorResponse(body)) => {
                            return Err(WalError::Server {
                                context: CONTEXT.to_owned(),
                                error: Box::new(ServerError::from_fields(body.fields())),
                            })
                        }
                        // In-flight CopyData, the server's CopyDone, CommandComplete...
                        _ => {}
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), drain).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!("the server did not end the stream within 10 s"),
            }
        }
        self.wire.queue("Terminate", |buf| {
            frontend::terminate(buf);
            Ok(())
        })?;
        // The server may already have closed; the status update above was what mattered.
        if let Err(e) = self.wire.flush("Terminate").await {
            tracing::debug!(error = %e, "sending Terminate");
        }
        self.wire.shutdown().await;
        Ok(())
    }

    /// A failed write usually means the server hung up, often right after an ErrorResponse
    /// (a terminated backend, say) that explains more than the broken pipe does.
    async fn server_reason(&mut self, write_error: WalError) -> WalError {
        let read_error = async {
            loop {
                match self
                    .wire
                    .read_frame("reading the server's last message")
                    .await
                {
                    Ok(Frame::Message(Message::ErrorResponse(body))) => {
                        return Some(WalError::Server {
                            context: "receiving replication data".to_owned(),
                            error: Box::new(ServerError::from_fields(body.fields())),
                        })
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(1), read_error).await {
            Ok(Some(server_error)) => server_error,
            _ => write_error,
        }
    }

    async fn send_copy_done(&mut self) -> Result<(), WalError> {
        if !self.client_done {
            self.wire.queue("CopyDone", |buf| {
                frontend::copy_done(buf);
                Ok(())
            })?;
            self.wire.flush("CopyDone").await?;
            self.client_done = true;
        }
        Ok(())
    }
}

/// The current time as a Postgres timestamp.
fn pg_now() -> PgTimestamp {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let micros = since_unix
        .as_micros()
        .saturating_sub(u128::from(PG_EPOCH_OFFSET_MICROS.unsigned_abs()));
    i64::try_from(micros).unwrap_or(i64::MAX)
}

fn parse_copy_data(data: Bytes) -> Result<ReplicationEvent, WalError> {
    const CONTEXT: &str = "receiving replication data";
    let field8 = |at: usize, field: &str| -> Result<[u8; 8], WalError> {
        data.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| {
                WalError::protocol(
                    CONTEXT,
                    format!("CopyData of {} bytes has no {field}", data.len()),
                )
            })
    };
    match data.first() {
        Some(b'w') => {
            let wal_start = Lsn(u64::from_be_bytes(field8(1, "XLogData start")?));
            let wal_end = Lsn(u64::from_be_bytes(field8(9, "XLogData end")?));
            let server_time = i64::from_be_bytes(field8(17, "XLogData send time")?);
            let payload = data
                .get(25..)
                .map(|payload| data.slice_ref(payload))
                .ok_or_else(|| WalError::protocol(CONTEXT, "XLogData without payload"))?;
            let message =
                decode_bytes(&payload).map_err(|source| WalError::Decode { wal_start, source })?;
            Ok(ReplicationEvent::XLogData {
                wal_start,
                wal_end,
                server_time,
                message,
            })
        }
        Some(b'k') => {
            let wal_end = Lsn(u64::from_be_bytes(field8(1, "keepalive WAL end")?));
            let server_time = i64::from_be_bytes(field8(9, "keepalive send time")?);
            let reply = data
                .get(17)
                .copied()
                .ok_or_else(|| WalError::protocol(CONTEXT, "keepalive has no reply flag"))?;
            Ok(ReplicationEvent::Keepalive {
                wal_end,
                server_time,
                reply_requested: reply != 0,
            })
        }
        other => Err(WalError::protocol(
            CONTEXT,
            format!(
                "unknown CopyData message type {:?}",
                other.map(|&b| char::from(b))
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_and_short_frames() {
        let mut k = vec![b'k'];
        k.extend(0x10u64.to_be_bytes());
        k.extend(7i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse_copy_data(Bytes::from(k.clone())).expect("keepalive"),
            ReplicationEvent::Keepalive {
                wal_end: Lsn(0x10),
                server_time: 7,
                reply_requested: true
            }
        );
        for len in 0..k.len() {
            assert!(parse_copy_data(Bytes::copy_from_slice(&k[..len])).is_err());
        }
        assert!(parse_copy_data(Bytes::from_static(b"w\0\0")).is_err());
        assert!(parse_copy_data(Bytes::from_static(b"?")).is_err());
    }

    #[test]
    fn xlogdata_with_a_bad_payload_names_the_lsn() {
        let mut w = vec![b'w'];
        w.extend(0x0102_0304u64.to_be_bytes());
        w.extend(0u64.to_be_bytes());
        w.extend(0i64.to_be_bytes());
        w.push(b'Z');
        let err = parse_copy_data(Bytes::from(w)).expect_err("bad payload");
        assert!(err.to_string().contains("0/1020304"), "{err}");
    }

    #[test]
    fn pg_now_is_after_2024() {
        assert!(pg_now() > 757_382_400_000_000);
    }
}
