//! What was handed to the hub already. A reconnect re-sends from the slot's confirmed position,
//! and what was handled is skipped: whole transactions, the first parts of one delivered in
//! parts, non-transactional messages.

use walcast_model::Transaction;
use walcast_wal::Lsn;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Transactions committed before this position (and the WAL before it) are done.
    handled: Lsn,
    /// A transaction handed on in parts, not complete: its commit LSN and how many of its events
    /// were delivered.
    part: Option<(Lsn, u32)>,
}

impl Position {
    /// Everything before this position was handed on.
    pub fn handled(&self) -> Lsn {
        self.handled
    }

    /// Nothing handed on yet: the first session since start-up (or since a new slot).
    pub fn is_start(&self) -> bool {
        self.handled.0 == 0
    }

    /// What of `tx` (a whole transaction, or a part of one when not `complete`) is news, trimmed
    /// of the events delivered before; None when it was handed on whole already. Records it as
    /// handed on.
    pub fn take(&mut self, mut tx: Transaction, complete: bool) -> Option<Transaction> {
        // Re-sent after a reconnect: already retained and delivered. (A commit record starts
        // after the end of every transaction the server sent before it.)
        if tx.commit_lsn < self.handled {
            return None;
        }
        // The first parts of this transaction were delivered before the reconnect.
        let before = self.part.filter(|(lsn, _)| *lsn == tx.commit_lsn);
        if let Some((_, delivered)) = before {
            tx.events.retain(|e| e.cursor.seq >= delivered);
        }
        if complete {
            *self = Position {
                handled: tx.end_lsn,
                part: None,
            };
        } else {
            let delivered = tx.events.last().map_or(0, |e| e.cursor.seq + 1);
            let delivered = delivered.max(before.map_or(0, |(_, n)| n));
            self.part = Some((tx.commit_lsn, delivered));
        }
        Some(tx)
    }

    /// A non-transactional message at `lsn`: false when it was handled already (re-sent after a
    /// reconnect); otherwise it is handled from now on.
    pub fn take_message(&mut self, lsn: Lsn) -> bool {
        if lsn < self.handled {
            return false;
        }
        self.handled = Lsn(lsn.0 + 1);
        true
    }

    /// The server's WAL reached `wal_end`: with no transaction in flight, the WAL before it
    /// holds no change for us.
    pub fn idle(&mut self, wal_end: Lsn, in_transaction: bool) {
        if !in_transaction && wal_end >= self.handled {
            self.handled = wal_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use walcast_model::{Batch, Cursor, Event, Op, Table};

    fn table() -> Arc<Table> {
        Arc::new(Table {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            gql_name: "t".into(),
            columns: vec![],
            primary_key: vec![],
            replica_identity: walcast_model::ReplicaIdentity::Full,
            foreign_keys: vec![],
        })
    }

    /// Events `seqs` of the transaction committed at `commit`, ending at `commit + 10`.
    fn tx(commit: u64, seqs: std::ops::Range<u32>) -> Transaction {
        let t = table();
        let events = seqs
            .clone()
            .map(|seq| {
                Arc::new(Event {
                    table: t.clone(),
                    op: Op::Create,
                    key: seq.to_string(),
                    new: Some(vec![]),
                    old: None,
                    updated: None,
                    cursor: Cursor {
                        lsn: Lsn(commit),
                        seq,
                    },
                    xid: commit as u32,
                    commit_time: 0,
                    batch: Arc::new(Batch::default()),
                })
            })
            .collect();
        Transaction {
            xid: commit as u32,
            commit_lsn: Lsn(commit),
            end_lsn: Lsn(commit + 10),
            commit_time: 0,
            first_seq: seqs.start,
            events,
            messages: vec![],
        }
    }

    fn seqs(tx: &Transaction) -> Vec<u32> {
        tx.events.iter().map(|e| e.cursor.seq).collect()
    }

    #[test]
    fn a_whole_transaction_moves_the_position_to_its_end() {
        let mut p = Position::default();
        assert!(p.is_start());
        let got = p.take(tx(100, 0..3), true).expect("news");
        assert_eq!(seqs(&got), [0, 1, 2]);
        assert_eq!(p.handled(), Lsn(110));
        assert!(!p.is_start());
    }

    #[test]
    fn a_transaction_re_sent_after_a_reconnect_is_skipped() {
        let mut p = Position::default();
        p.take(tx(100, 0..3), true);
        p.take(tx(200, 0..1), true);
        assert!(p.take(tx(100, 0..3), true).is_none());
        assert!(p.take(tx(200, 0..1), false).is_none());
        assert_eq!(p.handled(), Lsn(210));
        // The next one is news.
        assert!(p.take(tx(300, 0..1), true).is_some());
    }

    #[test]
    fn parts_delivered_before_a_reconnect_are_not_delivered_again() {
        let mut p = Position::default();
        p.take(tx(100, 0..3), false);
        p.take(tx(100, 3..6), false);
        assert_eq!(p.handled(), Lsn(0), "a part leaves the position");
        // The server re-sends the transaction from its start, in other part sizes.
        let first = p.take(tx(100, 0..4), false).expect("a part");
        assert!(seqs(&first).is_empty(), "all of it was delivered");
        let second = p.take(tx(100, 4..8), false).expect("a part");
        assert_eq!(seqs(&second), [6, 7]);
        let last = p.take(tx(100, 8..9), true).expect("the last part");
        assert_eq!(seqs(&last), [8]);
        assert_eq!(p.handled(), Lsn(110));
        // A part of another transaction does not trim.
        let other = p.take(tx(200, 0..2), false).expect("a part");
        assert_eq!(seqs(&other), [0, 1]);
    }

    #[test]
    fn a_re_sent_part_that_is_shorter_keeps_the_count() {
        let mut p = Position::default();
        p.take(tx(100, 0..5), false);
        p.take(tx(100, 0..2), false);
        let next = p.take(tx(100, 2..7), true).expect("the rest");
        assert_eq!(seqs(&next), [5, 6]);
    }

    #[test]
    fn messages_are_handled_once() {
        let mut p = Position::default();
        assert!(p.take_message(Lsn(50)));
        assert_eq!(p.handled(), Lsn(51));
        assert!(!p.take_message(Lsn(50)), "re-sent");
        assert!(p.take_message(Lsn(51)));
        p.take(tx(100, 0..1), true);
        assert!(!p.take_message(Lsn(60)));
    }

    #[test]
    fn idle_wal_moves_the_position_only_outside_a_transaction() {
        let mut p = Position::default();
        p.take(tx(100, 0..1), true);
        p.idle(Lsn(500), true);
        assert_eq!(p.handled(), Lsn(110));
        p.idle(Lsn(500), false);
        assert_eq!(p.handled(), Lsn(500));
        p.idle(Lsn(400), false);
        assert_eq!(p.handled(), Lsn(500), "never back");
        assert!(p.take(tx(450, 0..1), true).is_none());
    }
}
