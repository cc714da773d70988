//! Stream messages from pgoutput messages: subjects, headers, and bodies that are the pgoutput
//! messages themselves (protocol version 1), so a gateway decodes them with the same decoder
//! and value parser as a standalone walcast.

use async_nats::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};
use walcast_wal::{Lsn, PgOutput, Relation, TupleValue};

/// Header: the commit LSN of the event's transaction (a non-transactional message: its own LSN).
pub const HEADER_LSN: &str = "Walcast-Lsn";
/// Header: the event's index in its transaction (row changes and transactional messages count;
/// a schema notice carries the index of the event it precedes).
pub const HEADER_INDEX: &str = "Walcast-Index";
/// Header, on the last event of a transaction only: the transaction's end LSN.
pub const HEADER_TX_END: &str = "Walcast-Tx-End";
/// Header: the transaction id.
pub const HEADER_XID: &str = "Walcast-Xid";
/// Header: the commit time, Postgres microseconds since 2000-01-01.
pub const HEADER_COMMIT_TIME: &str = "Walcast-Commit-Time";
/// Header: the largest pipeline (messages in flight) of any publisher so far, which the next
/// publisher's fence must outgrow (see [`crate::Publisher`]).
pub const HEADER_WINDOW: &str = "Walcast-Window";
/// Header: `change`, `message`, `schema` or `epoch`.
pub const HEADER_KIND: &str = "Walcast-Kind";

/// What a stream message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A row change: body = u32 length + Relation message, then the change message.
    Change,
    /// A logical message: body = the pgoutput Message message.
    Message,
    /// A table's shape as first seen or changed: body = the Relation message.
    Schema,
    /// A publisher's fence (see [`crate::Publisher`]): empty body, skipped by gateways. Its
    /// position is where the publisher's next event goes: every event before it is stored
    /// before it.
    Epoch,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Change => "change",
            MessageKind::Message => "message",
            MessageKind::Schema => "schema",
            MessageKind::Epoch => "epoch",
        }
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        match s {
            "change" => Some(MessageKind::Change),
            "message" => Some(MessageKind::Message),
            "schema" => Some(MessageKind::Schema),
            "epoch" => Some(MessageKind::Epoch),
            _ => None,
        }
    }
}

/// Where an event sits in the WAL: the commit LSN, then its index in the transaction. Events
/// are stored in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub lsn: Lsn,
    pub index: u32,
}

/// The transaction an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxHeader {
    pub xid: u32,
    /// Postgres microseconds since 2000-01-01.
    pub commit_time: i64,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub kind: MessageKind,
    pub position: Position,
    pub tx: Option<TxHeader>,
    /// Set on the last event of a transaction.
    pub tx_end: Option<Lsn>,
    /// Distinguishes schema notices and epochs from the event at the same position.
    pub id_suffix: Option<String>,
    pub body: Bytes,
}

impl Outgoing {
    /// The `Nats-Msg-Id`: `<lsn>:<index>`, plus a suffix for schema notices.
    pub fn message_id(&self) -> String {
        match &self.id_suffix {
            Some(suffix) => format!("{}:{}:{suffix}", self.position.lsn, self.position.index),
            None => format!("{}:{}", self.position.lsn, self.position.index),
        }
    }

    /// The walcast headers (the NATS ones are added by the publisher).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_KIND, self.kind.as_str());
        headers.insert(HEADER_LSN, self.position.lsn.to_string());
        headers.insert(HEADER_INDEX, self.position.index.to_string());
        if let Some(tx) = self.tx {
            headers.insert(HEADER_XID, tx.xid.to_string());
            headers.insert(HEADER_COMMIT_TIME, tx.commit_time.to_string());
        }
        if let Some(end) = self.tx_end {
            headers.insert(HEADER_TX_END, end.to_string());
        }
        headers
    }
}

/// Subjects of one slot's stream.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(slot: &str) -> Subjects {
        Subjects {
            prefix: format!("walcast.{}", subject_token(slot)),
        }
    }

    /// Everything of the slot: the stream's subject filter.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// `walcast.<slot>.<schema>.<table>`.
    pub fn table(&self, schema: &str, table: &str) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            subject_token(schema),
            subject_token(table)
        )
    }

    /// `walcast.<slot>.$message`: logical messages (`$` cannot start an escaped schema name).
    pub fn message(&self) -> String {
        format!("{}.$message", self.prefix)
    }

    /// `walcast.<slot>.$epoch`: the publishers' fence messages.
    pub fn epoch(&self) -> String {
        format!("{}.$epoch", self.prefix)
    }

    /// `walcast.<slot>.$schema.<schema>.<table>`.
    pub fn schema(&self, schema: &str, table: &str) -> String {
        format!(
            "{}.$schema.{}.{}",
            self.prefix,
            subject_token(schema),
            subject_token(table)
        )
    }
}

/// A name as one subject token: bytes outside `[A-Za-z0-9_-]` become `%XX`, an empty name `%`.
pub fn subject_token(name: &str) -> String {
    if name.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A change message's body: the relation, then the change.
pub fn change_body(relation: &Relation, change: &PgOutput) -> Bytes {
    let mut rel = BytesMut::new();
    write_pgoutput(&mut rel, &PgOutput::Relation(relation.clone()));
    let mut out = BytesMut::with_capacity(4 + rel.len() + 64);
    out.put_u32(rel.len() as u32);
    out.put_slice(&rel);
    write_pgoutput(&mut out, change);
    out.freeze()
}

/// One pgoutput message as Postgres sends it (protocol version 1).
pub fn pgoutput_bytes(msg: &PgOutput) -> Bytes {
    let mut out = BytesMut::new();
    write_pgoutput(&mut out, msg);
    out.freeze()
}

fn write_pgoutput(out: &mut BytesMut, msg: &PgOutput) {
    match msg {
        PgOutput::Begin {
            final_lsn,
            commit_time,
            xid,
        } => {
            out.put_u8(b'B');
            out.put_u64(final_lsn.0);
            out.put_i64(*commit_time);
            out.put_u32(*xid);
        }
        PgOutput::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        } => {
            out.put_u8(b'C');
            out.put_u8(*flags);
            out.put_u64(commit_lsn.0);
            out.put_u64(end_lsn.0);
            out.put_i64(*commit_time);
        }
        PgOutput::Origin { commit_lsn, name } => {
            out.put_u8(b'O');
            out.put_u64(commit_lsn.0);
            put_cstr(out, name);
        }
        PgOutput::Relation(rel) => {
            out.put_u8(b'R');
            out.put_u32(rel.rel_id);
            put_cstr(out, &rel.namespace);
            put_cstr(out, &rel.name);
            out.put_u8(rel.replica_identity);
            out.put_i16(rel.columns.len() as i16);
            for col in &rel.columns {
                out.put_u8(col.flags);
                put_cstr(out, &col.name);
                out.put_u32(col.type_oid);
                out.put_i32(col.type_modifier);
            }
        }
        PgOutput::Type {
            type_oid,
            namespace,
            name,
        } => {
            out.put_u8(b'Y');
            out.put_u32(*type_oid);
            put_cstr(out, namespace);
            put_cstr(out, name);
        }
        PgOutput::Insert { rel_id, new } => {
            out.put_u8(b'I');
            out.put_u32(*rel_id);
            out.put_u8(b'N');
            put_tuple(out, new);
        }
        PgOutput::Update {
            rel_id,
            old_kind,
            old,
            new,
        } => {
            out.put_u8(b'U');
            out.put_u32(*rel_id);
            if let (Some(kind), Some(old)) = (old_kind, old) {
                out.put_u8(*kind);
                put_tuple(out, old);
            }
            out.put_u8(b'N');
            put_tuple(out, new);
        }
        PgOutput::Delete {
            rel_id,
            old_kind,
            old,
        } => {
            out.put_u8(b'D');
            out.put_u32(*rel_id);
            out.put_u8(*old_kind);
            put_tuple(out, old);
        }
        PgOutput::Truncate { options, rel_ids } => {
            out.put_u8(b'T');
            out.put_u32(rel_ids.len() as u32);
            out.put_u8(*options);
            for id in rel_ids {
                out.put_u32(*id);
            }
        }
        PgOutput::Message {
            transactional,
            lsn,
            prefix,
            content,
        } => {
            out.put_u8(b'M');
            out.put_u8(u8::from(*transactional));
            out.put_u64(lsn.0);
            put_cstr(out, prefix);
            out.put_u32(content.len() as u32);
            out.put_slice(content);
        }
    }
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn put_tuple(out: &mut BytesMut, tuple: &[TupleValue]) {
    out.put_i16(tuple.len() as i16);
    for value in tuple {
        match value {
            TupleValue::Null => out.put_u8(b'n'),
            TupleValue::UnchangedToast => out.put_u8(b'u'),
            TupleValue::Text(bytes) => {
                out.put_u8(b't');
                out.put_u32(bytes.len() as u32);
                out.put_slice(bytes);
            }
            TupleValue::Binary(bytes) => {
                out.put_u8(b'b');
                out.put_u32(bytes.len() as u32);
                out.put_slice(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walcast_wal::RelationColumn;

    fn relation() -> Relation {
        Relation {
            rel_id: 16384,
            namespace: "public".into(),
            name: "item s".into(),
            replica_identity: b'f',
            columns: vec![RelationColumn {
                flags: 1,
                name: "id".into(),
                type_oid: 23,
                type_modifier: -1,
            }],
        }
    }

    #[test]
    fn pgoutput_bytes_decode_to_the_same_message() {
        let messages = [
            PgOutput::Relation(relation()),
            PgOutput::Insert {
                rel_id: 1,
                new: vec![TupleValue::Text(Bytes::from_static(b"7")), TupleValue::Null],
            },
            PgOutput::Update {
                rel_id: 1,
                old_kind: Some(b'O'),
                old: Some(vec![TupleValue::UnchangedToast]),
                new: vec![TupleValue::Binary(Bytes::from_static(b"\0\x01"))],
            },
            PgOutput::Update {
                rel_id: 1,
                old_kind: None,
                old: None,
                new: vec![],
            },
            PgOutput::Delete {
                rel_id: 2,
                old_kind: b'K',
                old: vec![TupleValue::Text(Bytes::from_static(b"x"))],
            },
            PgOutput::Truncate {
                options: 3,
                rel_ids: vec![1, 2],
            },
            PgOutput::Message {
                transactional: true,
                lsn: Lsn(99),
                prefix: "p".into(),
                content: Bytes::from_static(b"\r\n"),
            },
        ];
        for msg in messages {
            assert_eq!(walcast_wal::decode(&pgoutput_bytes(&msg)), Ok(msg));
        }
    }

    #[test]
    fn names_become_single_subject_tokens() {
        let subjects = Subjects::new("walcast_slot");
        assert_eq!(
            subjects.table("public", "item s"),
            "walcast.walcast_slot.public.item%20s"
        );
        assert_eq!(subject_token("a.b*>"), "a%2Eb%2A%3E");
        assert_eq!(subject_token(""), "%");
        assert_eq!(subject_token("$schema"), "%24schema");
    }
}
