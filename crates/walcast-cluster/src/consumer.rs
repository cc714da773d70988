//! A gateway's side: the stream read back into transactions, from any stream sequence.
//!
//! One ordered consumer delivers the messages; the gateway's own [`ChangeDecoder`] (its
//! catalog, its table selection, its part size) turns them into the same transactions, parts
//! and messages a standalone walcast decodes from the slot.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;
use walcast_model::{Catalog, ChangeDecoder, LogicalMessage, Step, Transaction};
use walcast_wal::{Lsn, PgOutput, Relation};

use crate::decode::{self, Body, Meta};
use crate::encode::MessageKind;
use crate::error::ClusterError;
use crate::stream::ClusterStream;

/// What the stream delivers, each with the sequence of its (last) stream message: a gateway
/// cursor is `(stream epoch, sequence, LSN)`; resume after it from `sequence + 1`.
#[derive(Debug)]
pub enum Delivery {
    /// A transaction, or (`complete` false) the next events of a large one.
    Transaction {
        tx: Transaction,
        seq: u64,
        complete: bool,
        /// Nothing more was pending in the stream when it was read.
        live: bool,
    },
    /// A non-transactional logical message.
    Message {
        message: Arc<LogicalMessage>,
        seq: u64,
        live: bool,
    },
    /// A table's shape as the reader first saw it or saw it change.
    SchemaChange { relation: Relation, seq: u64 },
    /// The gateway's catalog lacks or differs from a table in the stream: reload it, call
    /// [`Consumer::set_catalog`], then [`Consumer::next`] again.
    CatalogStale {
        schema: String,
        table: String,
        seq: u64,
    },
}

/// pgoutput messages of one stream message still to feed (after a catalog reload).
struct Pending {
    seq: u64,
    live: bool,
    messages: VecDeque<PgOutput>,
}

pub struct Consumer {
    stream_name: String,
    messages: Ordered,
    decoder: ChangeDecoder,
    next_seq: u64,
    started: bool,
    /// Commit LSN of the transaction whose end has not arrived yet.
    open_tx: Option<Lsn>,
    /// The relation last fed to the decoder, per OID.
    fed: HashMap<u32, Relation>,
    pending: Option<Pending>,
    ready: VecDeque<Delivery>,
}

impl Consumer {
    /// Reads from `start_seq`, which must be the first message of a transaction (one after a
    /// delivered complete transaction's sequence, or from [`sequence_for_lsn`]). Below the
    /// stream's first sequence is [`crate::ErrorKind::CursorExpired`].
    pub async fn open(
        stream: &ClusterStream,
        start_seq: u64,
        decoder: ChangeDecoder,
    ) -> Result<Consumer, ClusterError> {
        let (first, _) = stream.bounds().await?;
        if start_seq < first {
            return Err(ClusterError::CursorExpired {
                stream: stream.name.clone(),
                requested: start_seq,
                first,
            });
        }
        let consumer = stream
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: stream.subjects.all(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start_seq,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ClusterError::nats(format!("creating a consumer on {}", stream.name), e)
            })?;
        let messages = consumer.messages().await.map_err(|e| {
            ClusterError::nats(format!("reading from {} at {start_seq}", stream.name), e)
        })?;
        Ok(Consumer {
            stream_name: stream.name.clone(),
            messages,
            decoder,
            next_seq: start_seq,
            started: false,
            open_tx: None,
            fed: HashMap::new(),
            pending: None,
            ready: VecDeque::new(),
        })
    }

    /// After [`Delivery::CatalogStale`]: the reloaded catalog.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.decoder.set_catalog(catalog);
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        self.decoder.catalog()
    }

    /// The stream sequence this consumer reads next: everything before it was read.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// The next delivery; waits for new messages when caught up. `None` once the server
    /// closed the consumer.
    pub async fn next(&mut self) -> Result<Option<Delivery>, ClusterError> {
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Ok(Some(delivery));
            }
            if let Some(pending) = self.pending.take() {
                self.feed(pending)?;
                continue;
            }
            let Some(message) = self.messages.next().await else {
                return Ok(None);
            };
            let message = message.map_err(|e| {
                ClusterError::nats(format!("reading stream {}", self.stream_name), e)
            })?;
            let (seq, live) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending == 0),
                Err(e) => {
                    return Err(ClusterError::nats(
                        format!("reading stream {}: message metadata", self.stream_name),
                        e,
                    ))
                }
            };
            if seq < self.next_seq {
                continue;
            }
            if seq > self.next_seq {
                // Retention removed messages this gateway had not read yet.
                return Err(ClusterError::CursorExpired {
                    stream: self.stream_name.clone(),
                    requested: self.next_seq,
                    first: seq,
                });
            }
            self.next_seq = seq + 1;
            let meta = decode::meta(seq, message.headers.as_ref())?;
            if meta.kind == MessageKind::Epoch {
                // A publisher's fence between events: no event, and no transaction start.
                continue;
            }
            let body = decode::body(seq, meta.kind, &message.payload)?;
            self.accept(meta, body, live)?;
        }
    }

    /// Turns one stream message into the pgoutput messages a slot would have sent.
    fn accept(&mut self, meta: Meta, body: Body, live: bool) -> Result<(), ClusterError> {
        let seq = meta.seq;
        let in_tx = !matches!(
            (&body, meta.tx),
            (
                Body::Message(PgOutput::Message {
                    transactional: false,
                    ..
                }),
                _
            ) | (Body::Message(_), None)
        );
        if !self.started && in_tx && meta.position.index > 0 {
            return Err(ClusterError::NotTransactionStart {
                stream: self.stream_name.clone(),
                seq,
            });
        }
        self.started = true;
        let mut messages = VecDeque::new();
        match body {
            Body::Epoch => return Ok(()),
            Body::Schema(relation) => {
                self.ready
                    .push_back(Delivery::SchemaChange { relation, seq });
                return Ok(());
            }
            Body::Message(msg) if !in_tx => messages.push_back(msg),
            Body::Message(msg) => {
                self.begin(&meta, &mut messages)?;
                messages.push_back(msg);
            }
            Body::Change { relation, change } => {
                self.begin(&meta, &mut messages)?;
                if self.fed.get(&relation.rel_id) != Some(&relation) {
                    messages.push_back(PgOutput::Relation(relation));
                }
                messages.push_back(change);
            }
        }
        if in_tx {
            if let (Some(end_lsn), Some(tx)) = (meta.tx_end, meta.tx) {
                messages.push_back(PgOutput::Commit {
                    flags: 0,
                    commit_lsn: meta.position.lsn,
                    end_lsn,
                    commit_time: tx.commit_time,
                });
                self.open_tx = None;
            }
        }
        self.feed(Pending {
            seq,
            live,
            messages,
        })
    }

    /// Opens the message's transaction unless it is the open one.
    fn begin(&mut self, meta: &Meta, out: &mut VecDeque<PgOutput>) -> Result<(), ClusterError> {
        if self.open_tx == Some(meta.position.lsn) {
            return Ok(());
        }
        if let Some(open) = self.open_tx {
            return Err(ClusterError::decode(
                meta.seq,
                format!("transaction {open} has no end before {}", meta.position.lsn),
            ));
        }
        let tx = meta.tx.ok_or_else(|| {
            ClusterError::decode(meta.seq, "a transaction's event without its xid header")
        })?;
        out.push_back(PgOutput::Begin {
            final_lsn: meta.position.lsn,
            commit_time: tx.commit_time,
            xid: tx.xid,
        });
        self.open_tx = Some(meta.position.lsn);
        Ok(())
    }

    fn feed(&mut self, mut pending: Pending) -> Result<(), ClusterError> {
        let (seq, live) = (pending.seq, pending.live);
        while let Some(msg) = pending.messages.pop_front() {
            let relation = match &msg {
                PgOutput::Relation(rel) => Some(rel.clone()),
                _ => None,
            };
            let step = self
                .decoder
                .feed(msg.clone())
                .map_err(|source| ClusterError::Change { seq, source })?;
            match step {
                Step::Pending => {}
                Step::Committed(tx) => self.ready.push_back(Delivery::Transaction {
                    tx,
                    seq,
                    complete: true,
                    live,
                }),
                Step::Part(tx) => self.ready.push_back(Delivery::Transaction {
                    tx,
                    seq,
                    complete: false,
                    live,
                }),
                Step::Message(message) => {
                    self.ready
                        .push_back(Delivery::Message { message, seq, live })
                }
                Step::CatalogStale { schema, table } => {
                    pending.messages.push_front(msg);
                    self.pending = Some(pending);
                    self.ready
                        .push_back(Delivery::CatalogStale { schema, table, seq });
                    return Ok(());
                }
            }
            if let Some(rel) = relation {
                self.fed.insert(rel.rel_id, rel);
            }
        }
        Ok(())
    }
}

/// The first sequence whose event's commit LSN is at least `lsn` (one past the last message
/// when there is none), by binary search with direct gets. A stream whose first kept message
/// is already past `lsn`, after older ones were removed, is
/// [`crate::ErrorKind::CursorExpired`].
pub async fn sequence_for_lsn(stream: &ClusterStream, lsn: Lsn) -> Result<u64, ClusterError> {
    let (first, last) = stream.bounds().await?;
    let (mut lo, mut hi) = (first, last.saturating_add(1).max(first));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if stream.meta_at(mid).await?.position.lsn < lsn {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == first && first > 1 && first <= last && stream.meta_at(first).await?.position.lsn > lsn
    {
        return Err(ClusterError::CursorExpired {
            stream: stream.name.clone(),
            requested: first - 1,
            first,
        });
    }
    // Schema notices share their event's LSN: `lo` is the first message of the transaction.
    Ok(lo)
}
