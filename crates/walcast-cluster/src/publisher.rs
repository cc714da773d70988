//! The reader's side: pgoutput messages into the stream, pipelined, exactly once.
//!
//! Every message carries `Nats-Msg-Id` (`<lsn>:<index>`) and `Nats-Expected-Last-Sequence`: the
//! server stores it only if the stream ends where this publisher left it, so a stale reader that
//! comes back after another took over is refused ([`ErrorKind::Fenced`]) instead of appending
//! out of place.
//!
//! The sequence alone does not fence a pipeline: a stale publisher's message sent behind a
//! refused one expects a later sequence, which the new publisher's appends could reach. So a
//! new publisher first appends epoch messages: more of them than any publisher before had in
//! flight (the largest window so far travels in every message's `Walcast-Window` header), in
//! one atomic batch (nats-server 2.12+, the stream's `allow_atomic`) that expects the stream
//! to end where the publisher read it. The batch is stored whole right there or not at all
//! (then the publisher reads again), so no stale message lands among its messages (appended
//! one at a time, a stale message expecting one of their sequences could, behind its own
//! refused predecessor). Once it is stored, the stream ends past every sequence a stale
//! publisher's messages in flight can expect, and the stale publisher gets no ack to send
//! more: none of it can land. The first publisher of an empty stream appends none
//! (there is nobody to fence) and sends its first message alone instead, so that nothing it
//! pipelines lands behind a refused first one. (`Nats-Expected-Last-Msg-Id` fenced pipelines
//! before; nats-server 2.15's catch-up leaves a restarted replica's last id stale, so that
//! replica refuses every later message and cannot rejoin. A check of an epoch subject's last
//! sequence on every message cannot be pipelined on a replicated stream: the leader refuses a
//! second such check of a subject while the first is being replicated.)
//!
//! A new publisher resumes after the last stored event: Postgres replays from the slot's
//! confirmed position, and everything before the stream's last (LSN, index) is skipped.
//!
//! An error stops a publisher for good: whether the messages in flight were stored is unknown,
//! so later acks must not count towards [`Publisher::stored_up_to`]. After [`ErrorKind::Nats`]
//! the caller retries: it opens a new publisher (which reads where the stream ends) and replays
//! from the slot's confirmed position, never past `stored_up_to`. A [`ErrorKind::Fenced`] reader
//! steps down instead.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::ErrorCode;
use async_nats::{header, HeaderMap};
use futures::FutureExt;
use walcast_model::ChangeError;
use walcast_wal::{Lsn, PgOutput, Relation};

use crate::decode;
use crate::encode::{self, MessageKind, Outgoing, Position, TxHeader, HEADER_WINDOW};
use crate::error::{ClusterError, ErrorKind};
use crate::stream::ClusterStream;

/// Publishes in flight before the oldest ack is awaited.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Attempts to append the epoch while a stale publisher's last messages still land.
const OPEN_ATTEMPTS: usize = 10;

/// The deepest pipeline [`Publisher::open`] accepts: the epoch outgrowing it (one message more)
/// must fit in one atomic batch, at most 1,000 messages.
pub const MAX_IN_FLIGHT: usize = 999;

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// A publish awaiting its ack, or (no ack) a position reached once everything before is acked.
struct InFlight {
    ack: Option<AckFuture>,
    /// The sequence the message must be stored at.
    seq: u64,
    message_id: String,
    /// The WAL position stored once this and everything before it is acked.
    reaches: Option<Lsn>,
}

struct OpenTx {
    commit_lsn: Lsn,
    header: TxHeader,
    next_index: u32,
}

/// The one publisher of a slot's stream.
pub struct Publisher {
    stream: ClusterStream,
    max_in_flight: usize,
    /// The sequence of the last message sent: what the next one expects.
    last_seq: u64,
    /// The largest window of any publisher so far, this one's included (`Walcast-Window`).
    window: u64,
    /// Send the next message alone (the first of a publisher without an epoch).
    solo: bool,
    /// Events before this position are in the stream already.
    resume: Position,
    in_flight: VecDeque<InFlight>,
    tx: Option<OpenTx>,
    /// The latest event of the open transaction, sent once it is known whether it is the last.
    held: Option<Outgoing>,
    /// Relations announced since the last event, published as schema notices before the next.
    notices: Vec<Relation>,
    relations: HashMap<u32, Relation>,
    announced: HashMap<u32, Relation>,
    stored: Option<Lsn>,
    /// The error that stopped this publisher: `(kind, message)`.
    failed: Option<(ErrorKind, String)>,
}

impl Publisher {
    /// Takes over the stream: reads its last message to learn where to resume, then appends
    /// the epoch messages that fence every earlier publisher (none on an empty stream).
    /// A `max_in_flight` above [`MAX_IN_FLIGHT`] is lowered to it.
    pub async fn open(
        stream: &ClusterStream,
        max_in_flight: usize,
    ) -> Result<Publisher, ClusterError> {
        if max_in_flight > MAX_IN_FLIGHT {
            tracing::warn!(
                stream = %stream.name,
                max_in_flight,
                "pipeline lowered to {MAX_IN_FLIGHT}: the epoch must fit in one atomic batch"
            );
        }
        let max_in_flight = max_in_flight.clamp(1, MAX_IN_FLIGHT);
        let own = u64::try_from(max_in_flight).unwrap_or(u64::MAX);
        let mut attempts = 0;
        loop {
            let (first, last) = stream.bounds().await?;
            let found = if last >= first && last > 0 {
                Some(last_stored(stream, last).await?)
            } else {
                None
            };
            let (resume, tx, before) = match found {
                Some(found) => found,
                // Nothing kept: the earlier publishers' windows are unknown.
                None if last > 0 => (Position::default(), None, DEFAULT_MAX_IN_FLIGHT as u64),
                None => (Position::default(), None, 0),
            };
            // No publisher writes a larger window than MAX_IN_FLIGHT.
            let window = own.max(before).min(MAX_IN_FLIGHT as u64);
            let last_seq = if last == 0 {
                0
            } else {
                match append_epoch(stream, last, resume, tx, window).await? {
                    Some(seq) => seq,
                    // A stale publisher's last messages landed meanwhile: read again.
                    None if attempts < OPEN_ATTEMPTS => {
                        attempts += 1;
                        continue;
                    }
                    None => {
                        return Err(ClusterError::Fenced {
                            stream: stream.name.clone(),
                            detail: format!(
                                "the stream grew under each of {OPEN_ATTEMPTS} attempts to \
                                 append this publisher's epoch"
                            ),
                        })
                    }
                }
            };
            tracing::info!(stream = %stream.name, last_seq, window, resume_lsn = %resume.lsn, resume_index = resume.index, "publisher opened");
            return Ok(Publisher {
                stream: stream.clone(),
                max_in_flight,
                last_seq,
                window,
                solo: last == 0,
                resume,
                in_flight: VecDeque::new(),
                tx: None,
                held: None,
                notices: Vec::new(),
                relations: HashMap::new(),
                announced: HashMap::new(),
                stored: None,
                failed: None,
            });
        }
    }

    /// Events before this position were stored by an earlier publisher and are skipped.
    pub fn resume_point(&self) -> Position {
        self.resume
    }

    /// The stream sequence of the last message sent (events, notices and epochs).
    pub fn last_sequence(&self) -> u64 {
        self.last_seq
    }

    /// The end LSN of the last transaction whose every event is acked: safe to confirm as
    /// flushed to Postgres.
    pub fn stored_up_to(&self) -> Option<Lsn> {
        self.stored
    }

    /// Publishes what one pgoutput message adds, in stream order. Returns after sending; acks
    /// are collected as they arrive (and awaited when too many are in flight). After an error
    /// every call fails with its kind (see the module docs).
    pub async fn feed(&mut self, msg: PgOutput) -> Result<(), ClusterError> {
        self.usable()?;
        let result = self.feed_one(msg).await;
        self.stop_on_error(result)
    }

    /// Awaits every ack in flight; returns the position then stored.
    pub async fn flush(&mut self) -> Result<Option<Lsn>, ClusterError> {
        self.usable()?;
        let mut result = Ok(());
        while result.is_ok() && !self.in_flight.is_empty() {
            result = self.settle_oldest().await;
        }
        self.stop_on_error(result).map(|()| self.stored)
    }

    fn usable(&self) -> Result<(), ClusterError> {
        match &self.failed {
            None => Ok(()),
            Some((kind, reason)) => Err(ClusterError::Spent {
                stream: self.stream.name.clone(),
                kind: *kind,
                reason: reason.clone(),
            }),
        }
    }

    fn stop_on_error(&mut self, result: Result<(), ClusterError>) -> Result<(), ClusterError> {
        if let Err(e) = &result {
            tracing::warn!(stream = %self.stream.name, error = %e, "publisher stopped");
            self.failed = Some((e.kind(), e.to_string()));
            self.in_flight.clear();
        }
        result
    }

    async fn feed_one(&mut self, msg: PgOutput) -> Result<(), ClusterError> {
        match msg {
            PgOutput::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.tx = Some(OpenTx {
                    commit_lsn: final_lsn,
                    header: TxHeader { xid, commit_time },
                    next_index: 0,
                });
                Ok(())
            }
            PgOutput::Commit { end_lsn, .. } => self.commit(end_lsn).await,
            PgOutput::Relation(rel) => {
                if self.announced.get(&rel.rel_id) != Some(&rel) {
                    self.notices.retain(|r| r.rel_id != rel.rel_id);
                    self.notices.push(rel.clone());
                }
                self.relations.insert(rel.rel_id, rel);
                Ok(())
            }
            PgOutput::Insert { rel_id, .. }
            | PgOutput::Update { rel_id, .. }
            | PgOutput::Delete { rel_id, .. } => self.change(rel_id, msg).await,
            PgOutput::Truncate { options, rel_ids } => {
                for rel_id in rel_ids {
                    let one = PgOutput::Truncate {
                        options,
                        rel_ids: vec![rel_id],
                    };
                    self.change(rel_id, one).await?;
                }
                Ok(())
            }
            PgOutput::Message {
                transactional: true,
                ..
            } if self.tx.is_some() => {
                let subject = self.stream.subjects.message();
                let body = encode::pgoutput_bytes(&msg);
                self.event(MessageKind::Message, subject, body).await
            }
            PgOutput::Message { lsn, .. } => {
                let position = Position { lsn, index: 0 };
                if position < self.resume {
                    return Ok(());
                }
                let out = Outgoing {
                    subject: self.stream.subjects.message(),
                    kind: MessageKind::Message,
                    position,
                    tx: None,
                    tx_end: None,
                    id_suffix: None,
                    body: encode::pgoutput_bytes(&msg),
                };
                self.send(out, Some(lsn)).await
            }
            PgOutput::Origin { .. } | PgOutput::Type { .. } => Ok(()),
        }
    }

    async fn change(&mut self, rel_id: u32, change: PgOutput) -> Result<(), ClusterError> {
        let relation = self.relations.get(&rel_id).ok_or(ClusterError::Change {
            seq: self.last_seq,
            source: ChangeError::UnknownRelation(rel_id),
        })?;
        let subject = self
            .stream
            .subjects
            .table(&relation.namespace, &relation.name);
        let body = encode::change_body(relation, &change);
        self.event(MessageKind::Change, subject, body).await
    }

    /// Positions an event of the open transaction; sends the one held before it.
    async fn event(
        &mut self,
        kind: MessageKind,
        subject: String,
        body: bytes::Bytes,
    ) -> Result<(), ClusterError> {
        let tx = self.tx.as_mut().ok_or(ClusterError::Change {
            seq: self.last_seq,
            source: ChangeError::OutsideTransaction(kind.as_str()),
        })?;
        let position = Position {
            lsn: tx.commit_lsn,
            index: tx.next_index,
        };
        tx.next_index += 1;
        let header = tx.header;
        if position < self.resume {
            // Stored by an earlier publisher, and so were the notices before it.
            self.notices.clear();
            return Ok(());
        }
        if let Some(previous) = self.held.take() {
            self.send(previous, None).await?;
        }
        for rel in std::mem::take(&mut self.notices) {
            let notice = Outgoing {
                subject: self.stream.subjects.schema(&rel.namespace, &rel.name),
                kind: MessageKind::Schema,
                position,
                tx: Some(header),
                tx_end: None,
                id_suffix: Some(format!("schema:{}", rel.rel_id)),
                body: encode::pgoutput_bytes(&PgOutput::Relation(rel.clone())),
            };
            self.send(notice, None).await?;
            self.announced.insert(rel.rel_id, rel);
        }
        self.held = Some(Outgoing {
            subject,
            kind,
            position,
            tx: Some(header),
            tx_end: None,
            id_suffix: None,
            body,
        });
        Ok(())
    }

    async fn commit(&mut self, end_lsn: Lsn) -> Result<(), ClusterError> {
        self.tx = None;
        self.notices.clear();
        match self.held.take() {
            Some(mut last) => {
                last.tx_end = Some(end_lsn);
                self.send(last, Some(end_lsn)).await
            }
            None => {
                // Nothing (left) to store: the position is reached once earlier acks are in.
                self.in_flight.push_back(InFlight {
                    ack: None,
                    seq: self.last_seq,
                    message_id: String::new(),
                    reaches: Some(end_lsn),
                });
                self.settle_ready()
            }
        }
    }

    async fn send(&mut self, out: Outgoing, reaches: Option<Lsn>) -> Result<(), ClusterError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_oldest().await?;
        }
        let message_id = out.message_id();
        let publish = PublishMessage::build()
            .payload(out.body.clone())
            .headers(with_window(out.headers(), self.window))
            .message_id(&message_id)
            .expected_last_sequence(self.last_seq);
        let ack = self
            .stream
            .context
            .send_publish(out.subject.clone(), publish)
            .await
            .map_err(|e| {
                ClusterError::nats(
                    format!("publishing {message_id} to {}", self.stream.name),
                    e,
                )
            })?;
        self.last_seq += 1;
        self.in_flight.push_back(InFlight {
            ack: Some(Box::pin(ack.into_future())),
            seq: self.last_seq,
            message_id,
            reaches,
        });
        if std::mem::take(&mut self.solo) {
            while !self.in_flight.is_empty() {
                self.settle_oldest().await?;
            }
        }
        self.settle_ready()
    }

    /// Settles the acks that already arrived, oldest first, without waiting.
    fn settle_ready(&mut self) -> Result<(), ClusterError> {
        while let Some(front) = self.in_flight.front_mut() {
            let result = match front.ack.as_mut() {
                None => None,
                Some(ack) => match ack.now_or_never() {
                    Some(result) => Some(result),
                    None => return Ok(()),
                },
            };
            if let Some(entry) = self.in_flight.pop_front() {
                self.settled(entry, result)?;
            }
        }
        Ok(())
    }

    async fn settle_oldest(&mut self) -> Result<(), ClusterError> {
        let Some(mut entry) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let result = match entry.ack.take() {
            Some(ack) => Some(ack.await),
            None => None,
        };
        self.settled(entry, result)
    }

    fn settled(
        &mut self,
        entry: InFlight,
        result: Option<Result<PublishAck, PublishError>>,
    ) -> Result<(), ClusterError> {
        let stream = &self.stream.name;
        let fenced = |detail: String| ClusterError::Fenced {
            stream: stream.clone(),
            detail,
        };
        match result {
            None => {}
            Some(Ok(ack)) if ack.duplicate => {
                return Err(fenced(format!(
                    "message {} was already stored at sequence {}",
                    entry.message_id, ack.sequence
                )))
            }
            Some(Ok(ack)) if ack.sequence != entry.seq => {
                return Err(fenced(format!(
                    "message {} stored at sequence {}, expected {}",
                    entry.message_id, ack.sequence, entry.seq
                )))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) if refused(&e) => {
                return Err(fenced(format!(
                    "message {} expected the stream to end at sequence {}: {e}",
                    entry.message_id,
                    entry.seq.saturating_sub(1)
                )))
            }
            Some(Err(e)) => {
                return Err(ClusterError::nats(
                    format!("storing {} in {stream}", entry.message_id),
                    e,
                ))
            }
        }
        if let Some(lsn) = entry.reaches {
            self.stored = Some(self.stored.map_or(lsn, |s| s.max(lsn)));
        }
        Ok(())
    }
}

/// From the stream's last message `last`: where a new publisher resumes, that message's
/// transaction (the epoch appended after it carries both) and the largest window so far.
async fn last_stored(
    stream: &ClusterStream,
    last: u64,
) -> Result<(Position, Option<TxHeader>, u64), ClusterError> {
    let message = stream.stream.get_raw_message(last).await.map_err(|e| {
        ClusterError::nats(
            format!(
                "reading the last message ({last}) of stream {}",
                stream.name
            ),
            e,
        )
    })?;
    let meta = decode::meta(last, Some(&message.headers))?;
    let resume = match meta.kind {
        // A notice precedes the event at its position: that event is not stored. An epoch
        // carries the position its publisher went on from.
        MessageKind::Schema | MessageKind::Epoch => meta.position,
        MessageKind::Change | MessageKind::Message => Position {
            lsn: meta.position.lsn,
            index: meta.position.index.saturating_add(1),
        },
    };
    // Written before the header existed: assume the default pipeline.
    let window = match message.headers.get(HEADER_WINDOW) {
        None => DEFAULT_MAX_IN_FLIGHT as u64,
        Some(value) => value.as_str().parse::<u64>().map_err(|e| {
            ClusterError::decode(last, format!("{HEADER_WINDOW} {:?}: {e}", value.as_str()))
        })?,
    };
    Ok((resume, meta.tx, window))
}

/// Appends `window + 1` epoch messages after sequence `after` as one atomic batch, the first
/// expecting the stream to end at `after`: the sequence of the last, or `None` if the batch is
/// refused (something else landed first). Nothing lands between the messages of a batch, so
/// no stale message can take a sequence among them (appended one at a time, a stale message
/// expecting one of them could, behind its own refused predecessor). Their position is the
/// resume point and their transaction that of the message before them, so positions and
/// commit times stay ordered along the stream for searches.
async fn append_epoch(
    stream: &ClusterStream,
    after: u64,
    position: Position,
    tx: Option<TxHeader>,
    window: u64,
) -> Result<Option<u64>, ClusterError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let batch_id = format!("walcast-epoch-{after}-{nanos}");
    let context = || format!("appending epoch batch {batch_id} to {}", stream.name);
    let subject = stream.subjects.epoch();
    let count = window + 1;
    let headers = |n: u64| {
        let epoch = Outgoing {
            subject: subject.clone(),
            kind: MessageKind::Epoch,
            position,
            tx,
            tx_end: None,
            id_suffix: None,
            body: bytes::Bytes::new(),
        };
        // No Nats-Msg-Id: nothing to dedupe, a retry is a new batch after a new read.
        let mut headers = with_window(epoch.headers(), window);
        headers.insert(header::NATS_BATCH_ID, batch_id.as_str());
        headers.insert(header::NATS_BATCH_SEQUENCE, n.to_string());
        if n == 1 {
            // Checked at the commit, against the stream as it ends before the batch.
            headers.insert(header::NATS_EXPECTED_LAST_SEQUENCE, after.to_string());
        }
        headers
    };
    // Staged by the server until the commit; only the commit is answered.
    let client = stream.context.client();
    for n in 1..count {
        client
            .publish_with_headers(subject.clone(), headers(n), bytes::Bytes::new())
            .await
            .map_err(|e| ClusterError::nats(context(), e))?;
    }
    let mut commit = headers(count);
    commit.insert(header::NATS_BATCH_COMMIT, "1");
    let ack = stream
        .context
        .send_publish(subject.clone(), PublishMessage::build().headers(commit))
        .await
        .map_err(|e| ClusterError::nats(context(), e))?
        .await;
    match ack {
        Ok(ack) if !ack.duplicate && ack.sequence == after + count => Ok(Some(ack.sequence)),
        Ok(ack) => Err(ClusterError::Fenced {
            stream: stream.name.clone(),
            detail: format!(
                "epoch batch {batch_id} ended at sequence {} (duplicate: {}), expected {}",
                ack.sequence,
                ack.duplicate,
                after + count
            ),
        }),
        Err(e) if refused(&e) => Ok(None),
        Err(e) => Err(ClusterError::nats(context(), e)),
    }
}

fn with_window(mut headers: HeaderMap, window: u64) -> HeaderMap {
    headers.insert(HEADER_WINDOW, window.to_string());
    headers
}

/// The server refused a publish because the stream does not end where the publisher expected.
fn refused(error: &PublishError) -> bool {
    match error.kind() {
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => true,
        PublishErrorKind::Other => std::error::Error::source(error)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|e| e.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT),
        _ => false,
    }
}
