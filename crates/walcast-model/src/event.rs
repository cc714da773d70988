//! Change events: one per row changed by a committed transaction.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use walcast_wal::Lsn;

use crate::catalog::Table;
use crate::datum::Datum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
    Truncate,
}

impl Op {
    /// The Directus event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "create" => Some(Op::Create),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            "truncate" => Some(Op::Truncate),
            _ => None,
        }
    }
}

/// Column values in the order of [`Table::columns`].
pub type Row = Vec<Datum>;

/// The position of an event in the stream: the commit's LSN, then the event's index in its
/// transaction. Ordered as commits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    pub lsn: Lsn,
    pub seq: u32,
}

impl Cursor {
    /// Opaque to clients: fixed-width hex, so cursors also sort as strings.
    pub fn encode(&self) -> String {
        format!("{:016X}{:08X}", self.lsn.0, self.seq)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        if s.len() != 24 || !s.is_ascii() {
            return None;
        }
        let lsn = u64::from_str_radix(&s[..16], 16).ok()?;
        let seq = u32::from_str_radix(&s[16..], 16).ok()?;
        Some(Cursor { lsn: Lsn(lsn), seq })
    }
}

/// What the events of one transaction (or the rows of one query result) share: related rows
/// are loaded once for all of them, whichever subscriber asks first.
#[derive(Default)]
pub struct Batch {
    /// The events of the transaction, in order.
    pub siblings: OnceLock<Vec<Weak<Event>>>,
    /// Reads the transaction's data as of a query's snapshot instead of now.
    pub in_query: bool,
    /// Loaded relations, by a key the loader chooses.
    pub cache: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("siblings", &self.siblings.get().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Groups events as one batch.
    pub fn link(events: &[Arc<Event>]) {
        if let Some(first) = events.first() {
            let _ = first
                .batch
                .siblings
                .set(events.iter().map(Arc::downgrade).collect());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub table: Arc<Table>,
    pub op: Op,
    /// The primary key as text; JSON text of the key columns for composite keys; empty for truncate.
    pub key: String,
    /// The row after the change (create, update).
    pub new: Option<Row>,
    /// The row before the change: complete with REPLICA IDENTITY FULL, else only key columns
    /// (the others `Datum::Unavailable`). None for create and truncate.
    pub old: Option<Row>,
    /// Column indexes whose value changed (updates with REPLICA IDENTITY FULL only).
    pub updated: Option<Vec<usize>>,
    pub cursor: Cursor,
    pub xid: u32,
    /// Microseconds since the Unix epoch.
    pub commit_time: i64,
    /// Shared with the other events of the transaction.
    pub batch: Arc<Batch>,
}

impl Event {
    /// The row filters are judged on: the new row, or the previous values for a delete.
    pub fn filter_row(&self) -> Option<&Row> {
        self.new.as_ref().or(self.old.as_ref())
    }

    pub fn updated_field_names(&self) -> Option<Vec<&str>> {
        self.updated.as_ref().map(|cols| {
            cols.iter()
                .filter_map(|&i| self.table.columns.get(i).map(|c| c.gql_name.as_str()))
                .collect()
        })
    }
}

/// The events of one committed transaction, in statement order.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub xid: u32,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time: i64,
    /// The position in the transaction of the first event (nonzero for later parts).
    pub first_seq: u32,
    pub events: Vec<Arc<Event>>,
    /// Transactional `pg_logical_emit_message` messages, in WAL order; set on the last part
    /// only, so they are handed on once the whole transaction is.
    pub messages: Vec<Arc<LogicalMessage>>,
}

/// A message written by `pg_logical_emit_message(transactional, prefix, content)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    pub transactional: bool,
    /// The LSN of the message's own WAL record.
    pub lsn: Lsn,
    pub prefix: String,
    pub content: bytes::Bytes,
    /// The enclosing transaction's commit time (Unix microseconds); None when non-transactional.
    pub commit_time: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_sorts_as_text() {
        let a = Cursor {
            lsn: Lsn(0x1_0000_00FF),
            seq: 3,
        };
        let b = Cursor {
            lsn: Lsn(0x1_0000_0100),
            seq: 0,
        };
        assert_eq!(Cursor::decode(&a.encode()), Some(a));
        assert!(a < b);
        assert!(a.encode() < b.encode());
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode("ZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
    }
}

/// A snapshot taken by a query (`_cursor` read in the same request): which transactions it
/// sees, and the WAL insert position read just before it was taken. A subscription resuming
/// from it receives exactly the transactions the snapshot did not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The server's WAL position read just before the snapshot was taken. A transaction the
    /// snapshot does not see may have its commit record before it (it was being flushed), so
    /// this bounds retention checks, never which transactions to resend.
    pub lsn: Lsn,
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

/// `a` precedes `b` in 32-bit transaction id order (modulo wraparound).
fn xid_precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Snapshot {
    /// Whether the snapshot sees (the effects of) the committed transaction `xid`.
    pub fn sees(&self, xid: u32) -> bool {
        let (xmin, xmax) = (self.xmin as u32, self.xmax as u32);
        if xid_precedes(xid, xmin) {
            return true;
        }
        if !xid_precedes(xid, xmax) {
            return false;
        }
        !self.xip.iter().any(|x| *x as u32 == xid)
    }

    /// Parses `pg_current_snapshot()::text` (`xmin:xmax:xip,xip`).
    pub fn from_pg(lsn: Lsn, text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => vec![],
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        Some(Snapshot {
            lsn,
            xmin,
            xmax,
            xip,
        })
    }
}

/// Where a subscription starts: after an event it saw, or after what a snapshot saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePoint {
    After(Cursor),
    Snapshot(Snapshot),
}

impl ResumePoint {
    /// Event cursors are 24 hex digits; snapshot cursors `S<lsn>-<xmin>-<xmax>-<xip>.<xip>`.
    pub fn encode(&self) -> String {
        match self {
            ResumePoint::After(c) => c.encode(),
            ResumePoint::Snapshot(s) => {
                let xip: Vec<String> = s.xip.iter().map(u64::to_string).collect();
                format!("S{:016X}-{}-{}-{}", s.lsn.0, s.xmin, s.xmax, xip.join("."))
            }
        }
    }

    pub fn decode(s: &str) -> Option<ResumePoint> {
        let Some(rest) = s.strip_prefix('S') else {
            return Cursor::decode(s).map(ResumePoint::After);
        };
        let mut parts = rest.split('-');
        let lsn = u64::from_str_radix(parts.next()?, 16).ok()?;
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => vec![],
            list => list
                .split('.')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(ResumePoint::Snapshot(Snapshot {
            lsn: Lsn(lsn),
            xmin,
            xmax,
            xip,
        }))
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn visibility_follows_postgres_rules() {
        let s = Snapshot::from_pg(Lsn(5), "100:105:101,103").expect("parses");
        assert!(s.sees(99));
        assert!(s.sees(100));
        assert!(!s.sees(101));
        assert!(s.sees(102));
        assert!(!s.sees(103));
        assert!(!s.sees(105));
        assert!(!s.sees(200));
        let empty = Snapshot::from_pg(Lsn(5), "7:7:").expect("parses");
        assert!(empty.sees(6));
        assert!(!empty.sees(7));
    }

    #[test]
    fn resume_points_round_trip() {
        let snap =
            ResumePoint::Snapshot(Snapshot::from_pg(Lsn(0xAB), "100:105:101,103").expect("parses"));
        assert_eq!(ResumePoint::decode(&snap.encode()), Some(snap));
        let after = ResumePoint::After(Cursor {
            lsn: Lsn(9),
            seq: 2,
        });
        assert_eq!(ResumePoint::decode(&after.encode()), Some(after));
        assert_eq!(ResumePoint::decode("S1-2"), None);
        assert_eq!(ResumePoint::decode("Sxyz-1-2-"), None);
    }
}

impl Event {
    /// Whether rows of `a` and `b` have the same columns at the same positions.
    pub fn same_layout(a: &Table, b: &Table) -> bool {
        a.columns.len() == b.columns.len()
            && a.columns
                .iter()
                .zip(&b.columns)
                .all(|(x, y)| x.name == y.name && x.ty.oid == y.ty.oid)
    }

    /// This event in the column layout of an older (or newer) shape of its table, matched by
    /// column name: a subscription made before `ALTER TABLE` keeps resolving the columns it
    /// knows. Columns the event lacks are `Unavailable`.
    pub fn in_layout(&self, table: &Arc<Table>) -> Event {
        let map: Vec<Option<usize>> = table
            .columns
            .iter()
            .map(|c| {
                self.table.column_index(&c.name).filter(|&i| {
                    self.table
                        .columns
                        .get(i)
                        .is_some_and(|n| n.ty.oid == c.ty.oid)
                })
            })
            .collect();
        let row = |r: &Row| -> Row {
            map.iter()
                .map(|m| {
                    m.and_then(|i| r.get(i).cloned())
                        .unwrap_or(Datum::Unavailable)
                })
                .collect()
        };
        Event {
            table: table.clone(),
            op: self.op,
            key: self.key.clone(),
            new: self.new.as_ref().map(row),
            old: self.old.as_ref().map(row),
            updated: self.updated.as_ref().map(|cols| {
                map.iter()
                    .enumerate()
                    .filter(|(_, m)| m.is_some_and(|i| cols.contains(&i)))
                    .map(|(i, _)| i)
                    .collect()
            }),
            cursor: self.cursor,
            xid: self.xid,
            commit_time: self.commit_time,
            batch: self.batch.clone(),
        }
    }
}
