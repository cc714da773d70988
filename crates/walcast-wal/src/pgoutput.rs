//! pgoutput logical decoding messages (protocol version 1), as decoded from XLogData payloads.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>

use bytes::Bytes;

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Text that is not an LSN in Postgres' `XXX/XXX` form (two 32-bit hexadecimal halves).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsnParseError {
    /// No `/` between the halves.
    #[error("invalid LSN {text:?}: expected XXX/XXX")]
    MissingSlash { text: String },
    /// A half that is not a 32-bit hexadecimal number.
    #[error("invalid LSN {text:?}: {half} half: {error}")]
    BadHalf {
        text: String,
        /// `high` or `low`.
        half: &'static str,
        error: std::num::ParseIntError,
    },
}

impl std::str::FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .split_once('/')
            .ok_or_else(|| LsnParseError::MissingSlash { text: s.to_owned() })?;
        let half = |digits: &str, half: &'static str| {
            u32::from_str_radix(digits, 16).map_err(|error| LsnParseError::BadHalf {
                text: s.to_owned(),
                half,
                error,
            })
        };
        let (hi, lo) = (half(hi, "high")?, half(lo, "low")?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// Microseconds since 2000-01-01 00:00:00 UTC (the Postgres epoch).
pub type PgTimestamp = i64;

/// Microseconds from the Unix epoch (1970-01-01) to the Postgres epoch (2000-01-01): add it to a
/// [`PgTimestamp`] for Unix time.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// An unchanged TOASTed value: the actual value was not sent.
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 1: part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn {
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub rel_id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum PgOutput {
    Begin {
        final_lsn: Lsn,
        commit_time: PgTimestamp,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: PgTimestamp,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    Type {
        type_oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        rel_id: u32,
        new: Vec<TupleValue>,
    },
    Update {
        rel_id: u32,
        /// `K`: the old key columns (key changed); `O`: the whole old row (REPLICA IDENTITY FULL).
        old_kind: Option<u8>,
        old: Option<Vec<TupleValue>>,
        new: Vec<TupleValue>,
    },
    Delete {
        rel_id: u32,
        old_kind: u8,
        old: Vec<TupleValue>,
    },
    Truncate {
        /// Bit 1: CASCADE; bit 2: RESTART IDENTITY.
        options: u8,
        rel_ids: Vec<u32>,
    },
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        for lsn in [Lsn(0), Lsn(0x1_0000_00A8), Lsn(u64::MAX)] {
            assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        }
        assert_eq!("16/B374D848".parse::<Lsn>(), Ok(Lsn(0x16_B374_D848)));
    }

    #[test]
    fn lsn_errors_say_what_is_wrong() {
        assert!(matches!(
            "16B374D848".parse::<Lsn>(),
            Err(LsnParseError::MissingSlash { .. })
        ));
        let err = "16/XYZ".parse::<Lsn>().expect_err("not hex");
        assert!(
            matches!(err, LsnParseError::BadHalf { half: "low", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("\"16/XYZ\""), "{err}");
        // Each half is 32 bits; more would silently overlap the other half.
        let err = "1FFFFFFFF/0".parse::<Lsn>().expect_err("33-bit half");
        assert!(
            matches!(err, LsnParseError::BadHalf { half: "high", .. }),
            "{err}"
        );
    }
}
