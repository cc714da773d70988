//! The socket writer of a connection, for every protocol: messages queued by the session and
//! its operations, encoded by the protocol's [`Encoder`] and written in bursts.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use ws_stream::tungstenite::protocol::frame::coding::CloseCode;
use ws_stream::tungstenite::protocol::CloseFrame;
use ws_stream::tungstenite::Message;

use super::outgoing::Out;
use super::protocol::{Protocol, ServerMsg};
use crate::metrics::Metrics;

/// Messages waiting for the socket writer; past this, operations wait (and their hub queues
/// fill, which is what marks a slow consumer).
pub const OUT_QUEUE: usize = 256;
/// Most messages written before a flush.
const WRITE_BATCH: usize = 64;

/// How a protocol turns a connection's messages into text frames.
pub trait Encoder: Send + 'static {
    /// The frame's text, or None when the message has nothing to send.
    fn text(&mut self, msg: ServerMsg) -> Option<String>;
}

/// The GraphQL sub-protocols: each message is one frame, per the negotiated protocol.
impl Encoder for Protocol {
    fn text(&mut self, msg: ServerMsg) -> Option<String> {
        self.encode(&msg)
    }
}

/// What writing one queued item did.
enum Step {
    Fed,
    Skipped,
    /// The close frame went out: the socket is handed back, the session may still drain what
    /// the client is sending.
    Closed,
    /// Nothing more can be written: closing flushes the reply to the client's close frame.
    Gone,
}

/// Writes until the queue closes or a close is sent; returns the sink after a close. Messages
/// already queued go out in one write: one flush (system call) per burst, not per message.
pub async fn run<S, E>(
    mut sink: S,
    mut queue: mpsc::Receiver<Out>,
    mut encoder: E,
    metrics: Arc<Metrics>,
) -> Option<S>
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut fed = 0usize;
        let started = Instant::now();
        while let Some(out) = next.take() {
            match write(&mut sink, out, &mut encoder, &metrics).await {
                Step::Fed => fed += 1,
                Step::Skipped => {}
                Step::Closed => return Some(sink),
                Step::Gone => {
                    let _ = sink.close().await;
                    return None;
                }
            }
            if fed < WRITE_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return None;
        }
        metrics.send_seconds.observe(started.elapsed());
    }
    None
}

async fn write<S, E>(sink: &mut S, out: Out, encoder: &mut E, metrics: &Metrics) -> Step
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    match out {
        Out::Msg(msg) => {
            let encoding = Instant::now();
            let Some(text) = encoder.text(msg) else {
                return Step::Skipped;
            };
            metrics.serialize_seconds.observe(encoding.elapsed());
            metrics.messages_sent.fetch_add(1, Relaxed);
            metrics.bytes_sent.fetch_add(text.len() as u64, Relaxed);
            // After the client's close frame nothing but the reply may be written.
            match sink.feed(Message::text(text)).await {
                Ok(()) => Step::Fed,
                Err(_) => Step::Gone,
            }
        }
        Out::Ping => match sink.feed(Message::Ping(Default::default())).await {
            Ok(()) => Step::Skipped,
            Err(_) => Step::Gone,
        },
        Out::CloseReply => Step::Gone,
        Out::Close(code, reason) => {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            if sink.send(Message::Close(Some(frame))).await.is_err() {
                let _ = sink.close().await;
            }
            Step::Closed
        }
    }
}
