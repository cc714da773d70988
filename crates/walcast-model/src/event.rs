//! Change events: one per row changed by a committed transaction.

use std::sync::Arc;

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

/// The position of an event in the stream: the commit's end LSN, then the event's index in its
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
    pub events: Vec<Arc<Event>>,
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
