//! Stream messages back into pgoutput messages and their position headers.

use async_nats::HeaderMap;
use bytes::Bytes;
use walcast_wal::{Lsn, PgOutput, Relation};

use crate::encode::{
    MessageKind, Position, TxHeader, HEADER_COMMIT_TIME, HEADER_INDEX, HEADER_KIND, HEADER_LSN,
    HEADER_TX_END, HEADER_XID,
};
use crate::error::ClusterError;

/// A stream message's walcast headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub seq: u64,
    pub kind: MessageKind,
    pub position: Position,
    pub tx: Option<TxHeader>,
    pub tx_end: Option<Lsn>,
}

/// A stream message's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Change {
        relation: Relation,
        change: PgOutput,
    },
    /// A pgoutput Message.
    Message(PgOutput),
    Schema(Relation),
    /// A publisher's fence: nothing for a gateway.
    Epoch,
}

/// Reads the walcast headers of stream message `seq`.
pub fn meta(seq: u64, headers: Option<&HeaderMap>) -> Result<Meta, ClusterError> {
    let headers = headers.ok_or_else(|| ClusterError::decode(seq, "no headers"))?;
    let text = |name: &str| headers.get(name).map(|v| v.as_str());
    let required = |name: &str| {
        text(name).ok_or_else(|| ClusterError::decode(seq, format!("no {name} header")))
    };
    let lsn = |name: &str, value: &str| {
        value
            .parse::<Lsn>()
            .map_err(|e| ClusterError::decode(seq, format!("{name}: {e}")))
    };
    let number = |name: &str, value: &str| {
        value
            .parse::<i64>()
            .map_err(|e| ClusterError::decode(seq, format!("{name} {value:?}: {e}")))
    };
    let kind_text = required(HEADER_KIND)?;
    let kind = MessageKind::parse(kind_text)
        .ok_or_else(|| ClusterError::decode(seq, format!("unknown kind {kind_text:?}")))?;
    let index = required(HEADER_INDEX)?;
    let index = u32::try_from(number(HEADER_INDEX, index)?)
        .map_err(|_| ClusterError::decode(seq, format!("{HEADER_INDEX} {index:?} out of range")))?;
    let position = Position {
        lsn: lsn(HEADER_LSN, required(HEADER_LSN)?)?,
        index,
    };
    let tx = match (text(HEADER_XID), text(HEADER_COMMIT_TIME)) {
        (Some(xid), Some(time)) => Some(TxHeader {
            xid: u32::try_from(number(HEADER_XID, xid)?)
                .map_err(|_| ClusterError::decode(seq, format!("xid {xid:?} out of range")))?,
            commit_time: number(HEADER_COMMIT_TIME, time)?,
        }),
        _ => None,
    };
    let tx_end = text(HEADER_TX_END)
        .map(|v| lsn(HEADER_TX_END, v))
        .transpose()?;
    Ok(Meta {
        seq,
        kind,
        position,
        tx,
        tx_end,
    })
}

/// Decodes the body of a message of `kind`.
pub fn body(seq: u64, kind: MessageKind, payload: &Bytes) -> Result<Body, ClusterError> {
    let pgoutput = |bytes: &Bytes| {
        walcast_wal::decode_bytes(bytes).map_err(|e| ClusterError::decode(seq, e.to_string()))
    };
    match kind {
        MessageKind::Change => {
            let len = payload
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| ClusterError::decode(seq, "change body shorter than 4 bytes"))?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let split = len
                .checked_add(4)
                .filter(|&end| end <= payload.len())
                .ok_or_else(|| ClusterError::decode(seq, "relation length beyond the body"))?;
            let relation = match pgoutput(&payload.slice(4..split))? {
                PgOutput::Relation(rel) => rel,
                other => return Err(unexpected(seq, "a Relation", &other)),
            };
            let change = pgoutput(&payload.slice(split..))?;
            match &change {
                PgOutput::Insert { rel_id, .. }
                | PgOutput::Update { rel_id, .. }
                | PgOutput::Delete { rel_id, .. }
                    if *rel_id == relation.rel_id => {}
                PgOutput::Truncate { rel_ids, .. } if rel_ids == &[relation.rel_id] => {}
                other => return Err(unexpected(seq, "a change of the relation", other)),
            }
            Ok(Body::Change { relation, change })
        }
        MessageKind::Message => match pgoutput(payload)? {
            msg @ PgOutput::Message { .. } => Ok(Body::Message(msg)),
            other => Err(unexpected(seq, "a logical message", &other)),
        },
        MessageKind::Schema => match pgoutput(payload)? {
            PgOutput::Relation(rel) => Ok(Body::Schema(rel)),
            other => Err(unexpected(seq, "a Relation", &other)),
        },
        MessageKind::Epoch => Ok(Body::Epoch),
    }
}

fn unexpected(seq: u64, expected: &str, got: &PgOutput) -> ClusterError {
    let name = match got {
        PgOutput::Begin { .. } => "Begin",
        PgOutput::Commit { .. } => "Commit",
        PgOutput::Origin { .. } => "Origin",
        PgOutput::Relation(_) => "Relation",
        PgOutput::Type { .. } => "Type",
        PgOutput::Insert { .. } => "Insert",
        PgOutput::Update { .. } => "Update",
        PgOutput::Delete { .. } => "Delete",
        PgOutput::Truncate { .. } => "Truncate",
        PgOutput::Message { .. } => "Message",
    };
    ClusterError::decode(seq, format!("expected {expected}, found a {name} message"))
}
