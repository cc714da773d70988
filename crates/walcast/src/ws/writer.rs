//! The socket writer of a connection, for every protocol: messages queued by the session and
//! its operations, encoded by the protocol's [`Encoder`] and written in bursts.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Sink, SinkExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use ws_stream::tungstenite::protocol::frame::coding::CloseCode;
use ws_stream::tungstenite::protocol::CloseFrame;
use ws_stream::tungstenite::Message;

use super::operations::{self, Runner, Running};
use super::outgoing::Out;
use super::protocol::{Protocol, ServerMsg};
use crate::metrics::Metrics;

/// Messages waiting for the socket writer; past this, operations wait (and their hub queues
/// fill, which is what marks a slow consumer).
pub const OUT_QUEUE: usize = 256;
/// Most messages written before a flush.
const WRITE_BATCH: usize = 64;
/// Longest a close frame (with a goodbye's last messages) may take to write: a client that does
/// not read cannot hold its connection, nor the server's shutdown, open.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A connection's last messages and close frame, written ahead of anything queued (which is
/// dropped): what a session says when the server shuts down.
pub struct Goodbye {
    pub msgs: Vec<ServerMsg>,
    pub close: (u16, String),
}

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
    /// A message of this many bytes went into the socket's buffer.
    Fed(usize),
    Skipped,
    /// The close frame went out: the socket is handed back, the session may still drain what
    /// the client is sending.
    Closed,
    /// Nothing more can be written: closing flushes the reply to the client's close frame.
    Gone,
}

/// A connection's writer task and the ways to it.
pub struct Writer<S> {
    pub queue: mpsc::Sender<Out>,
    /// Taken by the session's end: dropped unused, the writer just drains the queue.
    pub goodbye: oneshot::Sender<Goodbye>,
    /// Runs the connection's operations in the writer task (see [`operations`]).
    pub ops: Runner,
    pub task: JoinHandle<Option<S>>,
}

/// Starts the writer of `sink` (see [`run`]), with the connection's operations beside it.
pub fn spawn<S, E>(sink: S, encoder: E, metrics: Arc<Metrics>) -> Writer<S>
where
    S: Sink<Message> + Unpin + Send + 'static,
    E: Encoder,
{
    let (queue, queued) = mpsc::channel::<Out>(OUT_QUEUE);
    let (goodbye, last) = oneshot::channel::<Goodbye>();
    let (ops, running) = operations::channel();
    let task = tokio::spawn(pump(sink, queued, last, encoder, metrics, running));
    Writer {
        queue,
        goodbye,
        ops,
        task,
    }
}

/// The writer task: the operations are polled first, so what a batch of events makes them
/// queue goes out in the same burst. When the writing ends the operations are dropped, or after
/// a goodbye left to the runtime's shutdown.
async fn pump<S, E>(
    sink: S,
    queue: mpsc::Receiver<Out>,
    goodbye: oneshot::Receiver<Goodbye>,
    encoder: E,
    metrics: Arc<Metrics>,
    mut running: Running,
) -> Option<S>
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    let (sink, said_goodbye) = tokio::select! {
        biased;
        never = running.drive() => match never {},
        ended = run(sink, queue, goodbye, encoder, metrics) => ended,
    };
    if said_goodbye {
        running.park();
    }
    sink
}

/// How a burst of queued messages ended.
enum Burst {
    Flushed,
    /// The queue closed, or the socket failed.
    Ended,
    Closed,
    Gone,
}

/// Writes until the queue closes, a close is sent or a [`Goodbye`] arrives; returns the sink
/// after a close. Messages already queued go out in one write: one flush (system call) per
/// burst, not per message. The goodbye is polled first and cuts short a burst held up by a
/// full socket. Also says whether a goodbye ended it.
async fn run<S, E>(
    mut sink: S,
    mut queue: mpsc::Receiver<Out>,
    goodbye: oneshot::Receiver<Goodbye>,
    mut encoder: E,
    metrics: Arc<Metrics>,
) -> (Option<S>, bool)
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    // None once the session ended without a goodbye.
    let mut goodbye = Some(goodbye);
    loop {
        let burst = burst(&mut sink, &mut queue, &mut encoder, &metrics);
        let ended = match goodbye.as_mut() {
            Some(last) => tokio::select! {
                biased;
                last = last => match last {
                    Ok(last) => {
                        return (say_goodbye(sink, last, &mut encoder, &metrics).await, true)
                    }
                    Err(_) => {
                        goodbye = None;
                        continue;
                    }
                },
                ended = burst => ended,
            },
            None => burst.await,
        };
        match ended {
            Burst::Flushed => {}
            Burst::Ended => return (None, false),
            Burst::Closed => return (Some(sink), false),
            Burst::Gone => {
                let _ = timeout(CLOSE_GRACE, sink.close()).await;
                return (None, false);
            }
        }
    }
}

/// Writes what is queued (waiting for the first message), then flushes.
async fn burst<S, E>(
    sink: &mut S,
    queue: &mut mpsc::Receiver<Out>,
    encoder: &mut E,
    metrics: &Metrics,
) -> Burst
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    let Some(first) = queue.recv().await else {
        return Burst::Ended;
    };
    let mut next = Some(first);
    // Counted here and added once per burst: shared counters touched per message bounce
    // between the cores at every delivery.
    let (mut fed, mut bytes) = (0usize, 0usize);
    let started = Instant::now();
    let ended = loop {
        let Some(out) = next.take() else {
            break None;
        };
        match write(sink, out, encoder).await {
            Step::Fed(n) => {
                fed += 1;
                bytes += n;
            }
            Step::Skipped => {}
            Step::Closed => break Some(Burst::Closed),
            Step::Gone => break Some(Burst::Gone),
        }
        if fed < WRITE_BATCH {
            next = queue.try_recv().ok();
        }
    };
    metrics.messages_sent.fetch_add(fed as u64, Relaxed);
    metrics.bytes_sent.fetch_add(bytes as u64, Relaxed);
    if let Some(ended) = ended {
        return ended;
    }
    metrics.serialize_seconds.observe(started.elapsed());
    if sink.flush().await.is_err() {
        return Burst::Ended;
    }
    metrics.send_seconds.observe(started.elapsed());
    Burst::Flushed
}

/// Writes a goodbye's messages and close frame within [`CLOSE_GRACE`]; what was queued is
/// dropped, so no operation's message follows its last one. The sink is returned when the
/// close went out.
async fn say_goodbye<S, E>(
    mut sink: S,
    goodbye: Goodbye,
    encoder: &mut E,
    metrics: &Metrics,
) -> Option<S>
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    let written = timeout(CLOSE_GRACE, async {
        for msg in goodbye.msgs {
            let Some(text) = encoder.text(msg) else {
                continue;
            };
            metrics.messages_sent.fetch_add(1, Relaxed);
            metrics.bytes_sent.fetch_add(text.len() as u64, Relaxed);
            sink.feed(Message::text(text)).await?;
        }
        let (code, reason) = goodbye.close;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        sink.send(Message::Close(Some(frame))).await
    })
    .await;
    match written {
        Ok(Ok(())) => Some(sink),
        _ => None,
    }
}

async fn write<S, E>(sink: &mut S, out: Out, encoder: &mut E) -> Step
where
    S: Sink<Message> + Unpin,
    E: Encoder,
{
    match out {
        Out::Msg(msg) => {
            let Some(text) = encoder.text(msg) else {
                return Step::Skipped;
            };
            let n = text.len();
            // After the client's close frame nothing but the reply may be written.
            match sink.feed(Message::text(text)).await {
                Ok(()) => Step::Fed(n),
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
            // Bounded: a client that does not read would hold the session forever.
            let failed = matches!(
                timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await,
                Ok(Err(_))
            );
            if failed {
                let _ = timeout(CLOSE_GRACE, sink.close()).await;
            }
            Step::Closed
        }
    }
}
