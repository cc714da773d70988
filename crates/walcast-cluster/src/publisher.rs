//! The reader's side: pgoutput messages into the stream, pipelined, exactly once.
//!
//! Every message carries `Nats-Msg-Id` (`<lsn>:<index>`) and `Nats-Expected-Last-Sequence`: the
//! server stores it only if the stream ends where this publisher left it, so a stale reader that
//! comes back after another took over is refused ([`ErrorKind::Fenced`]) instead of appending
//! out of place. A new publisher resumes after the last stored event: Postgres replays from the
//! slot's confirmed position, and everything before the stream's last (LSN, index) is skipped.
//!
//! An error stops a publisher for good: whether the messages in flight were stored is unknown,
//! so later acks must not count towards [`Publisher::stored_up_to`]. After [`ErrorKind::Nats`]
//! the caller retries: it opens a new publisher (which reads where the stream ends) and replays
//! from the slot's confirmed position, never past `stored_up_to`. A [`ErrorKind::Fenced`] reader
//! steps down instead.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use futures::FutureExt;
use walcast_model::ChangeError;
use walcast_wal::{Lsn, PgOutput, Relation};

use crate::decode;
use crate::encode::{self, MessageKind, Outgoing, Position, TxHeader};
use crate::error::{ClusterError, ErrorKind};
use crate::stream::ClusterStream;

/// Publishes in flight before the oldest ack is awaited.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

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
    /// The id of the last message sent: the next one expects it too, so that a message
    /// pipelined behind a refused one cannot land where the refused one should have.
    last_id: Option<String>,
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
    /// Takes over the stream: reads its last message to learn where to resume.
    pub async fn open(
        stream: &ClusterStream,
        max_in_flight: usize,
    ) -> Result<Publisher, ClusterError> {
        let (first, last) = stream.bounds().await?;
        let mut last_id = None;
        let resume = if last >= first && last > 0 {
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
            last_id = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned());
            match meta.kind {
                // A notice precedes the event at its position: that event is not stored.
                MessageKind::Schema => meta.position,
                MessageKind::Change | MessageKind::Message => Position {
                    lsn: meta.position.lsn,
                    index: meta.position.index.saturating_add(1),
                },
            }
        } else {
            Position::default()
        };
        tracing::info!(stream = %stream.name, last_seq = last, resume_lsn = %resume.lsn, resume_index = resume.index, "publisher opened");
        Ok(Publisher {
            stream: stream.clone(),
            max_in_flight: max_in_flight.max(1),
            last_seq: last,
            last_id,
            resume,
            in_flight: VecDeque::new(),
            tx: None,
            held: None,
            notices: Vec::new(),
            relations: HashMap::new(),
            announced: HashMap::new(),
            stored: None,
            failed: None,
        })
    }

    /// Events before this position were stored by an earlier publisher and are skipped.
    pub fn resume_point(&self) -> Position {
        self.resume
    }

    /// The stream sequence of the last message sent.
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
        let mut publish = PublishMessage::build()
            .payload(out.body.clone())
            .headers(out.headers())
            .message_id(&message_id)
            .expected_last_sequence(self.last_seq);
        if let Some(last_id) = &self.last_id {
            publish = publish.expected_last_message_id(last_id);
        }
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
        self.last_id = Some(message_id.clone());
        self.in_flight.push_back(InFlight {
            ack: Some(Box::pin(ack.into_future())),
            seq: self.last_seq,
            message_id,
            reaches,
        });
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
            Some(Err(e))
                if matches!(
                    e.kind(),
                    PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                ) =>
            {
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
