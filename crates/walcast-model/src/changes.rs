//! Turns the pgoutput message stream into committed transactions of typed events.

use std::collections::HashMap;
use std::sync::Arc;

use walcast_wal::{PgOutput, PgTimestamp, Relation, TupleValue, PG_EPOCH_OFFSET_MICROS};

use crate::catalog::{Catalog, Table, TableSelection};
use crate::datum::Datum;
use crate::event::{Batch, Cursor, Event, LogicalMessage, Op, Row, Transaction};
use crate::value::decode_text;

/// A commit time as microseconds since the Unix epoch.
pub fn pg_time_to_unix_micros(t: PgTimestamp) -> i64 {
    t.saturating_add(PG_EPOCH_OFFSET_MICROS)
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0} message outside a transaction")]
    OutsideTransaction(&'static str),
    #[error("change for relation {0} before its Relation message")]
    UnknownRelation(u32),
}

/// What one message produced.
#[derive(Debug)]
pub enum Step {
    /// Nothing to hand on yet.
    Pending,
    /// A transaction committed: its events, or the last of its parts.
    Committed(Transaction),
    /// The next events of a large transaction (see [`ChangeDecoder::with_part_size`]), before
    /// its commit arrives. pgoutput (without streaming) sends only committed transactions, so
    /// they may be delivered at once: memory stays bounded whatever the size of the transaction.
    /// `end_lsn` is not known yet (it equals `commit_lsn` here).
    Part(Transaction),
    /// A non-transactional logical message: pgoutput sends it as soon as it is decoded, outside
    /// any transaction, and it is never rolled back.
    Message(Arc<LogicalMessage>),
    /// A Relation message announced a table whose shape differs from the catalog snapshot:
    /// reload the catalog, call [`ChangeDecoder::set_catalog`], then feed the same message again.
    CatalogStale { schema: String, table: String },
}

/// How a relation's tuples map onto a catalog table.
struct RelationMap {
    table: Arc<Table>,
    /// For each tuple position, the table column it fills (None: not exposed).
    columns: Vec<Option<usize>>,
    /// Tuple positions of the replica identity key.
    key_positions: Vec<usize>,
}

struct OpenTransaction {
    xid: u32,
    /// The commit's LSN, known from Begin: events are positioned by it.
    commit_lsn: walcast_wal::Lsn,
    commit_time: i64,
    /// Events not handed on yet.
    events: Vec<Arc<Event>>,
    /// Events of this transaction handed on in earlier parts.
    handed: u32,
    /// Transactional logical messages, handed on with the last part.
    messages: Vec<Arc<LogicalMessage>>,
}

/// Events per part of a large transaction.
pub const DEFAULT_PART_SIZE: usize = 1024;

pub struct ChangeDecoder {
    catalog: Arc<Catalog>,
    selection: TableSelection,
    relations: HashMap<u32, Option<RelationMap>>,
    tx: Option<OpenTransaction>,
    part_size: usize,
}

impl ChangeDecoder {
    pub fn new(catalog: Arc<Catalog>, selection: TableSelection) -> Self {
        ChangeDecoder {
            catalog,
            selection,
            relations: HashMap::new(),
            tx: None,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Sets how many events of a transaction are buffered before they are handed on as a
    /// [`Step::Part`].
    pub fn with_part_size(mut self, events: usize) -> Self {
        self.part_size = events.max(1);
        self
    }

    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.catalog = catalog;
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// True between Begin and Commit.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Feeds one message.
    pub fn feed(&mut self, msg: PgOutput) -> Result<Step, ChangeError> {
        let step = self.step(msg)?;
        match (&step, &mut self.tx) {
            (Step::Pending, Some(tx)) if tx.events.len() >= self.part_size => {
                let events = std::mem::take(&mut tx.events);
                let commit_lsn = tx.commit_lsn;
                Ok(Step::Part(Self::assemble(
                    tx, events, commit_lsn, commit_lsn,
                )))
            }
            _ => Ok(step),
        }
    }

    /// Positions the next events of `tx` and links them as one batch.
    fn assemble(
        tx: &mut OpenTransaction,
        events: Vec<Arc<Event>>,
        commit_lsn: walcast_wal::Lsn,
        end_lsn: walcast_wal::Lsn,
    ) -> Transaction {
        let batch = Arc::new(Batch::default());
        let first = tx.handed;
        tx.handed += events.len() as u32;
        let events: Vec<Arc<Event>> = events
            .into_iter()
            .enumerate()
            .map(|(i, ev)| {
                let mut ev = Arc::unwrap_or_clone(ev);
                // The commit LSN is known from Begin: a position that holds for every part.
                ev.cursor = Cursor {
                    lsn: commit_lsn,
                    seq: first + i as u32,
                };
                ev.batch = batch.clone();
                Arc::new(ev)
            })
            .collect();
        Batch::link(&events);
        Transaction {
            xid: tx.xid,
            commit_lsn,
            end_lsn,
            commit_time: tx.commit_time,
            first_seq: first,
            events,
            messages: Vec::new(),
        }
    }

    fn step(&mut self, msg: PgOutput) -> Result<Step, ChangeError> {
        match msg {
            PgOutput::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.tx = Some(OpenTransaction {
                    xid,
                    commit_lsn: final_lsn,
                    commit_time: pg_time_to_unix_micros(commit_time),
                    events: Vec::new(),
                    handed: 0,
                    messages: Vec::new(),
                });
                Ok(Step::Pending)
            }
            PgOutput::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                let mut tx = self
                    .tx
                    .take()
                    .ok_or(ChangeError::OutsideTransaction("Commit"))?;
                let events = std::mem::take(&mut tx.events);
                let messages = std::mem::take(&mut tx.messages);
                let mut done = Self::assemble(&mut tx, events, commit_lsn, end_lsn);
                done.messages = messages;
                Ok(Step::Committed(done))
            }
            PgOutput::Relation(rel) => self.relation(rel),
            PgOutput::Insert { rel_id, new } => {
                let Some(map) = self.map(rel_id)? else {
                    return Ok(Step::Pending);
                };
                let new = map.row(&new, None);
                let key = key_text(&map.table, &new);
                let ev = self.event(map.table.clone(), Op::Create, key, Some(new), None, None);
                self.push(ev)
            }
            PgOutput::Update {
                rel_id,
                old_kind,
                old,
                new,
            } => {
                let Some(map) = self.map(rel_id)? else {
                    return Ok(Step::Pending);
                };
                let full_old = old_kind == Some(b'O');
                let old_row = old.as_ref().map(|o| map.row(o, None));
                // Unchanged TOAST values come from the old tuple when it was sent in full.
                let new_row = map.row(&new, if full_old { old_row.as_ref() } else { None });
                let updated = if full_old {
                    old_row.as_ref().map(|o| changed_columns(o, &new_row))
                } else {
                    None
                };
                let previous = match old_row {
                    Some(o) if full_old => o,
                    Some(o) => o,
                    // Key unchanged and not FULL: the key columns are those of the new row.
                    None => map.key_only(&new_row),
                };
                let key = key_text(&map.table, &new_row);
                let ev = self.event(
                    map.table.clone(),
                    Op::Update,
                    key,
                    Some(new_row),
                    Some(previous),
                    updated,
                );
                self.push(ev)
            }
            PgOutput::Delete { rel_id, old, .. } => {
                let Some(map) = self.map(rel_id)? else {
                    return Ok(Step::Pending);
                };
                let old = map.row(&old, None);
                let key = key_text(&map.table, &old);
                let ev = self.event(map.table.clone(), Op::Delete, key, None, Some(old), None);
                self.push(ev)
            }
            PgOutput::Truncate { rel_ids, .. } => {
                for rel_id in rel_ids {
                    let Some(map) = self.map(rel_id)? else {
                        continue;
                    };
                    let ev = self.event(
                        map.table.clone(),
                        Op::Truncate,
                        String::new(),
                        None,
                        None,
                        None,
                    );
                    self.push(ev)?;
                }
                Ok(Step::Pending)
            }
            PgOutput::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                let mut message = LogicalMessage {
                    transactional,
                    lsn,
                    prefix,
                    content,
                    commit_time: None,
                };
                match (&mut self.tx, transactional) {
                    // Delivered only once its transaction is: pgoutput never sends an aborted one.
                    (Some(tx), true) => {
                        message.commit_time = Some(tx.commit_time);
                        tx.messages.push(Arc::new(message));
                        Ok(Step::Pending)
                    }
                    // Non-transactional, or (never seen from pgoutput) transactional without a
                    // Begin: deliver it rather than stop the stream over it.
                    _ => Ok(Step::Message(Arc::new(message))),
                }
            }
            PgOutput::Origin { .. } | PgOutput::Type { .. } => Ok(Step::Pending),
        }
    }

    fn event(
        &self,
        table: Arc<Table>,
        op: Op,
        key: String,
        new: Option<Row>,
        old: Option<Row>,
        updated: Option<Vec<usize>>,
    ) -> Event {
        let (xid, commit_time) = self
            .tx
            .as_ref()
            .map(|t| (t.xid, t.commit_time))
            .unwrap_or_default();
        Event {
            table,
            op,
            key,
            new,
            old,
            updated,
            cursor: Cursor::default(),
            xid,
            commit_time,
            batch: Arc::default(),
        }
    }

    fn push(&mut self, ev: Event) -> Result<Step, ChangeError> {
        let tx = self
            .tx
            .as_mut()
            .ok_or(ChangeError::OutsideTransaction("row change"))?;
        tx.events.push(Arc::new(ev));
        Ok(Step::Pending)
    }

    fn map(&self, rel_id: u32) -> Result<Option<&RelationMap>, ChangeError> {
        match self.relations.get(&rel_id) {
            Some(m) => Ok(m.as_ref()),
            None => Err(ChangeError::UnknownRelation(rel_id)),
        }
    }

    fn relation(&mut self, rel: Relation) -> Result<Step, ChangeError> {
        if !self.selection.selects(&rel.namespace, &rel.name) {
            self.relations.insert(rel.rel_id, None);
            return Ok(Step::Pending);
        }
        let Some(table) = self.catalog.table_by_oid(rel.rel_id).cloned() else {
            return Ok(Step::CatalogStale {
                schema: rel.namespace,
                table: rel.name,
            });
        };
        let mut columns = Vec::with_capacity(rel.columns.len());
        for rc in &rel.columns {
            match table.column_index(&rc.name) {
                Some(i) if table.columns[i].ty.oid == rc.type_oid => columns.push(Some(i)),
                _ => {
                    return Ok(Step::CatalogStale {
                        schema: rel.namespace,
                        table: rel.name,
                    })
                }
            }
        }
        if rel.name != table.name || rel.namespace != table.schema {
            return Ok(Step::CatalogStale {
                schema: rel.namespace,
                table: rel.name,
            });
        }
        let key_positions = rel
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_key())
            .map(|(i, _)| i)
            .collect();
        self.relations.insert(
            rel.rel_id,
            Some(RelationMap {
                table,
                columns,
                key_positions,
            }),
        );
        Ok(Step::Pending)
    }
}

impl RelationMap {
    /// Builds a table row from a tuple; `fill` supplies values for unchanged TOAST columns.
    fn row(&self, tuple: &[TupleValue], fill: Option<&Row>) -> Row {
        let mut row = vec![Datum::Unavailable; self.table.columns.len()];
        for (pos, value) in tuple.iter().enumerate() {
            let Some(Some(ci)) = self.columns.get(pos) else {
                continue;
            };
            let ci = *ci;
            let Some(col) = self.table.columns.get(ci) else {
                continue;
            };
            row[ci] = match value {
                TupleValue::Null => Datum::Null,
                TupleValue::UnchangedToast => fill
                    .and_then(|f| f.get(ci))
                    .cloned()
                    .unwrap_or(Datum::Unavailable),
                TupleValue::Text(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => decode_text(&col.ty, text).unwrap_or_else(|e| {
                        tracing::warn!(table = %self.table.qualified_name(), column = %col.name, error = %e, "value kept as text");
                        Datum::Text(text.to_owned())
                    }),
                    Err(_) => Datum::Unavailable,
                },
                TupleValue::Binary(_) => Datum::Unavailable,
            };
        }
        row
    }

    /// A row holding only the replica identity key columns of `row`.
    fn key_only(&self, row: &Row) -> Row {
        let mut out = vec![Datum::Unavailable; row.len()];
        for &pos in &self.key_positions {
            if let Some(Some(ci)) = self.columns.get(pos) {
                if let (Some(slot), Some(v)) = (out.get_mut(*ci), row.get(*ci)) {
                    *slot = v.clone();
                }
            }
        }
        out
    }
}

fn changed_columns(old: &Row, new: &Row) -> Vec<usize> {
    old.iter()
        .zip(new.iter())
        .enumerate()
        .filter(|(_, (o, n))| o != n)
        .map(|(i, _)| i)
        .collect()
}

/// The event key: the primary key value as text, or the JSON text of a composite key.
pub fn key_text(table: &Table, row: &Row) -> String {
    let text = |ci: usize| -> serde_json::Value {
        let kind = table.columns.get(ci).map(|c| c.ty.kind);
        match (row.get(ci), kind) {
            (Some(d), Some(kind)) => d.to_json(kind),
            _ => serde_json::Value::Null,
        }
    };
    match table.primary_key.as_slice() {
        [] => String::new(),
        [single] => match text(*single) {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        },
        cols => {
            let obj: serde_json::Map<String, serde_json::Value> = cols
                .iter()
                .filter_map(|&ci| {
                    table
                        .columns
                        .get(ci)
                        .map(|c| (c.gql_name.clone(), text(ci)))
                })
                .collect();
            serde_json::Value::Object(obj).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walcast_wal::Lsn;

    fn message(transactional: bool, prefix: &str) -> PgOutput {
        PgOutput::Message {
            transactional,
            lsn: Lsn(0x10),
            prefix: prefix.into(),
            content: bytes::Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn transactional_messages_wait_for_the_commit_and_others_do_not() {
        let catalog = Arc::new(Catalog::new(vec![]).expect("empty catalog"));
        let mut decoder = ChangeDecoder::new(catalog, TableSelection::default());
        let step = decoder.feed(message(false, "now")).expect("decodes");
        let Step::Message(m) = step else {
            panic!("a non-transactional message is handed on at once: {step:?}")
        };
        assert_eq!((m.prefix.as_str(), m.commit_time), ("now", None));

        let begin = PgOutput::Begin {
            final_lsn: Lsn(0x20),
            commit_time: 0,
            xid: 7,
        };
        assert!(matches!(decoder.feed(begin), Ok(Step::Pending)));
        assert!(matches!(
            decoder.feed(message(true, "outbox")),
            Ok(Step::Pending)
        ));
        let commit = PgOutput::Commit {
            flags: 0,
            commit_lsn: Lsn(0x20),
            end_lsn: Lsn(0x28),
            commit_time: 0,
        };
        let Ok(Step::Committed(tx)) = decoder.feed(commit) else {
            panic!("the commit hands the transaction on")
        };
        assert!(tx.events.is_empty());
        assert_eq!(tx.messages.len(), 1);
        assert_eq!(tx.messages[0].prefix, "outbox");
        assert_eq!(tx.messages[0].commit_time, Some(pg_time_to_unix_micros(0)));
    }
}
