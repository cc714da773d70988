//! Decoder of pgoutput message bytes (protocol version 1, non-streaming).
//!
//! Every read is bounds-checked: malformed or truncated input yields a [`DecodeError`] naming the
//! message and the field, never a panic.

use std::fmt::Display;

use bytes::Bytes;

use crate::pgoutput::{Lsn, PgOutput, Relation, RelationColumn, TupleValue};

/// A pgoutput message that could not be decoded: which message, which field, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message: {}", Described(self))]
pub struct DecodeError {
    /// The message type byte; `None` for an empty payload.
    pub tag: Option<u8>,
    /// The field being read, e.g. `new tuple column 0 length`; empty when the message type
    /// itself is at fault.
    pub field: String,
    /// Where in the payload the problem lies, counting the message type byte as offset 0.
    pub offset: usize,
    pub problem: DecodeProblem,
}

/// What was wrong with the bytes at a [`DecodeError`]'s offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeProblem {
    #[error("empty message")]
    Empty,
    #[error("unknown message type")]
    UnknownType,
    #[error("needs {needed} bytes, {left} left")]
    Truncated { needed: usize, left: usize },
    #[error("negative count {0}")]
    NegativeCount(i16),
    #[error("negative length {0}")]
    NegativeLength(i32),
    #[error("missing NUL terminator")]
    MissingNul,
    #[error("invalid UTF-8: {0}")]
    InvalidUtf8(std::str::Utf8Error),
    #[error("expected {expected}, got {} (0x{got:02x})", char::from(*got).escape_default())]
    UnexpectedByte { expected: String, got: u8 },
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// A problem with the message as a whole, not one of its fields.
    fn whole_message(tag: Option<u8>, problem: DecodeProblem) -> Self {
        DecodeError {
            tag,
            field: String::new(),
            offset: 0,
            problem,
        }
    }

    /// The message's name (`Begin`, `Insert`, ...), `unknown` for an unknown or missing type.
    pub fn message_name(&self) -> &'static str {
        self.tag.map_or("unknown", message_name)
    }
}

/// The text after "malformed pgoutput message: ".
struct Described<'a>(&'a DecodeError);

impl Display for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        match (&e.problem, e.tag) {
            (DecodeProblem::Empty, _) | (_, None) => write!(f, "{}", e.problem),
            (DecodeProblem::UnknownType, Some(tag)) => write!(
                f,
                "unknown message type {} (0x{tag:02x})",
                char::from(tag).escape_default()
            ),
            (problem, Some(_)) => write!(
                f,
                "{} message, {} at offset {}: {problem}",
                e.message_name(),
                e.field,
                e.offset
            ),
        }
    }
}

/// Decodes one pgoutput message, as carried by one XLogData payload.
pub fn decode(buf: &[u8]) -> Result<PgOutput, DecodeError> {
    decode_with(buf, None)
}

/// Like [`decode`], but values and message contents share `buf`'s memory instead of copying.
pub fn decode_bytes(buf: &Bytes) -> Result<PgOutput, DecodeError> {
    decode_with(buf, Some(buf))
}

fn decode_with(buf: &[u8], owner: Option<&Bytes>) -> Result<PgOutput, DecodeError> {
    let (&tag, body) = buf
        .split_first()
        .ok_or(DecodeError::whole_message(None, DecodeProblem::Empty))?;
    let mut r = Reader {
        buf: body,
        owner,
        pos: 0,
        tag,
    };
    let message = match tag {
        b'B' => PgOutput::Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_time: r.i64("commit timestamp")?,
            xid: r.u32("xid")?,
        },
        b'C' => PgOutput::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit timestamp")?,
        },
        b'O' => PgOutput::Origin {
            commit_lsn: r.lsn("origin commit LSN")?,
            name: r.string("origin name")?,
        },
        b'R' => PgOutput::Relation(relation(&mut r)?),
        b'Y' => PgOutput::Type {
            type_oid: r.u32("type OID")?,
            namespace: r.string("namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let rel_id = r.u32("relation OID")?;
            r.expect_tag(b'N', "new tuple marker")?;
            PgOutput::Insert {
                rel_id,
                new: r.tuple("new tuple")?,
            }
        }
        b'U' => update(&mut r)?,
        b'D' => {
            let rel_id = r.u32("relation OID")?;
            let old_kind = r.u8("old tuple marker")?;
            if old_kind != b'K' && old_kind != b'O' {
                return Err(r.bad_tag("old tuple marker", old_kind, "'K' or 'O'"));
            }
            PgOutput::Delete {
                rel_id,
                old_kind,
                old: r.tuple("old tuple")?,
            }
        }
        b'T' => truncate(&mut r)?,
        b'M' => {
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message LSN")?;
            let prefix = r.string("prefix")?;
            let len = r.len32("content length")?;
            PgOutput::Message {
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content: r.take_bytes(len, "content")?,
            }
        }
        _ => {
            return Err(DecodeError::whole_message(
                Some(tag),
                DecodeProblem::UnknownType,
            ))
        }
    };
    r.finish()?;
    Ok(message)
}

fn message_name(tag: u8) -> &'static str {
    match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        _ => "unknown",
    }
}

fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let rel_id = r.u32("relation OID")?;
    let namespace = r.string("namespace")?;
    let name = r.string("relation name")?;
    let replica_identity = r.u8("replica identity")?;
    let ncols = r.count16("column count")?;
    let mut columns = Vec::with_capacity(ncols.min(r.remaining()));
    for i in 0..ncols {
        columns.push(RelationColumn {
            flags: r.u8(format_args!("column {i} flags"))?,
            name: r.string(format_args!("column {i} name"))?,
            type_oid: r.u32(format_args!("column {i} type OID"))?,
            type_modifier: r.i32(format_args!("column {i} type modifier"))?,
        });
    }
    Ok(Relation {
        rel_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update(r: &mut Reader<'_>) -> Result<PgOutput, DecodeError> {
    let rel_id = r.u32("relation OID")?;
    let (old_kind, old) = match r.u8("tuple marker")? {
        b'N' => (None, None),
        kind @ (b'K' | b'O') => {
            let old = r.tuple("old tuple")?;
            r.expect_tag(b'N', "new tuple marker")?;
            (Some(kind), Some(old))
        }
        other => return Err(r.bad_tag("tuple marker", other, "'K', 'O' or 'N'")),
    };
    Ok(PgOutput::Update {
        rel_id,
        old_kind,
        old,
        new: r.tuple("new tuple")?,
    })
}

fn truncate(r: &mut Reader<'_>) -> Result<PgOutput, DecodeError> {
    let nrels = r.u32("relation count")?;
    let options = r.u8("options")?;
    let nrels = usize::try_from(nrels).unwrap_or(usize::MAX);
    // Bound the allocation by what the buffer can hold (4 bytes per OID), not by the claimed count.
    let mut rel_ids = Vec::with_capacity(nrels.min(r.remaining() / 4));
    for i in 0..nrels {
        rel_ids.push(r.u32(format_args!("relation OID {i}"))?);
    }
    Ok(PgOutput::Truncate { options, rel_ids })
}

/// A bounds-checked cursor over one message body.
struct Reader<'a> {
    buf: &'a [u8],
    /// The `Bytes` that `buf` lies in, if any, for zero-copy values.
    owner: Option<&'a Bytes>,
    pos: usize,
    /// The message type byte, for errors.
    tag: u8,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// An error at the current position; +1 since offsets count the message type byte, as a
    /// hex dump of the payload shows them.
    fn err(&self, field: impl Display, problem: DecodeProblem) -> DecodeError {
        self.err_at(self.pos + 1, field, problem)
    }

    fn err_at(&self, offset: usize, field: impl Display, problem: DecodeProblem) -> DecodeError {
        DecodeError {
            tag: Some(self.tag),
            field: field.to_string(),
            offset,
            problem,
        }
    }

    /// An unexpected marker byte, just read: its offset is the position before the read.
    fn bad_tag(&self, field: impl Display, got: u8, expected: &str) -> DecodeError {
        let problem = DecodeProblem::UnexpectedByte {
            expected: expected.to_owned(),
            got,
        };
        self.err_at(self.pos, field, problem)
    }

    fn take(&mut self, n: usize, field: impl Display) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.err(
                field,
                DecodeProblem::Truncated {
                    needed: n,
                    left: self.remaining(),
                },
            )),
        }
    }

    fn take_bytes(&mut self, n: usize, field: impl Display) -> Result<Bytes, DecodeError> {
        let owner = self.owner;
        let slice = self.take(n, field)?;
        Ok(match owner {
            Some(owner) => owner.slice_ref(slice),
            None => Bytes::copy_from_slice(slice),
        })
    }

    fn array<const N: usize>(&mut self, field: impl Display) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, field: impl Display) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    fn i16(&mut self, field: impl Display) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: impl Display) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: impl Display) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: impl Display) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn lsn(&mut self, field: impl Display) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(field)?)))
    }

    /// A non-negative Int16 count.
    fn count16(&mut self, field: impl Display) -> Result<usize, DecodeError> {
        let n = self.i16(&field)?;
        usize::try_from(n).map_err(|_| self.err(&field, DecodeProblem::NegativeCount(n)))
    }

    /// A non-negative Int32 length.
    fn len32(&mut self, field: impl Display) -> Result<usize, DecodeError> {
        let n = self.i32(&field)?;
        usize::try_from(n).map_err(|_| self.err(&field, DecodeProblem::NegativeLength(n)))
    }

    /// A NUL-terminated UTF-8 string (the replication connection asks for client_encoding UTF8).
    fn string(&mut self, field: impl Display) -> Result<String, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err(&field, DecodeProblem::MissingNul))?;
        let bytes = rest.get(..len).unwrap_or_default();
        let s = std::str::from_utf8(bytes)
            .map_err(|e| self.err(field, DecodeProblem::InvalidUtf8(e)))?
            .to_owned();
        self.pos += len + 1;
        Ok(s)
    }

    fn expect_tag(&mut self, expected: u8, field: &str) -> Result<(), DecodeError> {
        let got = self.u8(field)?;
        if got == expected {
            Ok(())
        } else {
            Err(self.bad_tag(
                field,
                got,
                &format!("'{}'", char::from(expected).escape_default()),
            ))
        }
    }

    fn tuple(&mut self, which: &str) -> Result<Vec<TupleValue>, DecodeError> {
        let ncols = self.count16(format_args!("{which} column count"))?;
        // Each column takes at least its one kind byte.
        let mut values = Vec::with_capacity(ncols.min(self.remaining()));
        for i in 0..ncols {
            let value = match self.u8(format_args!("{which} column {i}"))? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                kind @ (b't' | b'b') => {
                    let len = self.len32(format_args!("{which} column {i} length"))?;
                    let data = self.take_bytes(len, format_args!("{which} column {i} value"))?;
                    if kind == b't' {
                        TupleValue::Text(data)
                    } else {
                        TupleValue::Binary(data)
                    }
                }
                other => {
                    return Err(self.bad_tag(
                        format_args!("{which} column {i}"),
                        other,
                        "'n', 'u', 't' or 'b'",
                    ))
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err("end", DecodeProblem::TrailingBytes(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_message_field_and_offset() {
        let err = decode(b"B\0\0\0\0").expect_err("short Begin");
        assert_eq!(err.tag, Some(b'B'));
        assert_eq!(err.message_name(), "Begin");
        assert_eq!(err.field, "final LSN");
        assert_eq!(err.offset, 1);
        assert_eq!(err.problem, DecodeProblem::Truncated { needed: 8, left: 4 });

        let err = decode(b"I\0\0\0\x01N\0\x01x").expect_err("bad column kind");
        assert_eq!((err.field.as_str(), err.offset), ("new tuple column 0", 8));
        assert!(matches!(
            err.problem,
            DecodeProblem::UnexpectedByte { got: b'x', .. }
        ));

        let err = decode(b"").expect_err("empty");
        assert_eq!((err.tag, &err.problem), (None, &DecodeProblem::Empty));
        assert_eq!(err.to_string(), "malformed pgoutput message: empty message");
    }
}
