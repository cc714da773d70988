//! Where committed changes come from, apart from who receives them: the hub is fed from a
//! [`ChangeSource`] by [`drive`]. The replication slot ([`crate::replicator::Replicator`]) is
//! one source; a cluster's event stream is another.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use walcast_model::{Catalog, LogicalMessage, Transaction};
use walcast_wal::Lsn;

use crate::app::App;
use crate::metrics::Metrics;

/// What a source produces, in the order the hub must see it.
#[derive(Debug)]
pub enum Change {
    /// A committed transaction (`complete`), or the next part of one whose commit follows.
    /// `live`: news for subscribers; otherwise history re-read at start-up, retained for
    /// `after:` but not delivered.
    Transaction {
        tx: Transaction,
        live: bool,
        complete: bool,
    },
    /// Logical messages to publish now: non-transactional ones, or those of the transaction
    /// just handed on.
    Messages(Vec<Arc<LogicalMessage>>),
    /// A new catalog: the schemas follow it.
    Catalog(Arc<Catalog>),
    /// The source (re)starts at `from`, the earliest position a resume can go back to. With
    /// `history_lost`, its positions say nothing about earlier ones (a new slot).
    Resumed { from: Lsn, history_lost: bool },
    /// The source no longer holds anything before this position (a cluster stream removed
    /// it): cursors before it are expired on every node alike, whatever the hub retains.
    Floor(Lsn),
    /// The source caught up with its upstream (true) or lost it (false): readiness.
    Live(bool),
    /// Nothing new for now: a moment for housekeeping and for confirming.
    Idle,
}

/// A stream of committed changes that can be told how far the hub is done with them.
pub trait ChangeSource {
    /// The next change; `Ok(None)` once the source stopped (shutdown). An error is final.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Change>>> + Send;

    /// Everything yielded before `upto` was delivered and is no longer retained by the hub: the
    /// source may release it for good (confirm its slot, acknowledge its stream). `upto` is
    /// past everything yielded when the hub retains nothing.
    fn confirm(&mut self, upto: Lsn);
}

/// Feeds the hub from `source` until the source stops; its final error is returned.
pub async fn drive(app: &App, source: &mut impl ChangeSource) -> anyhow::Result<()> {
    let result = loop {
        match source.next().await {
            Ok(Some(change)) => apply(app, change).await,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
        source.confirm(app.hub.confirmable(Lsn(u64::MAX)));
    };
    app.ready.store(false, Relaxed);
    result
}

/// Hands one change to the hub and the state around it.
async fn apply(app: &App, change: Change) {
    match change {
        Change::Transaction { tx, live, .. } => {
            count(&app.metrics, &tx);
            // Every subscriber's queue accepts the events, or its connection is closed as
            // slow: the wait for a backlogged one is what paces a large transaction.
            app.hub.dispatch(&tx, live, &app.pool).await;
        }
        Change::Messages(messages) => app.hub.messages.publish(&messages),
        Change::Catalog(catalog) => app.set_catalog(catalog),
        Change::Resumed { from, history_lost } => {
            if history_lost {
                app.hub.forget_history();
            }
            app.hub.set_floor(from);
        }
        Change::Floor(lsn) => app.hub.raise_floor(lsn),
        Change::Live(live) => {
            if app.ready.swap(live, Relaxed) != live && live {
                tracing::info!("replication live");
            }
        }
        Change::Idle => app.hub.evict(),
    }
}

/// Counts a transaction (once, on its first part) and its events by table and kind, with one
/// label lookup per run of events.
fn count(metrics: &Metrics, tx: &Transaction) {
    if tx.first_seq == 0 {
        metrics.transactions.fetch_add(1, Relaxed);
    }
    metrics
        .last_commit_micros
        .store(tx.commit_time.max(0) as u64, Relaxed);
    let mut runs: Vec<(u32, walcast_model::Op, &str, i64)> = Vec::new();
    for ev in &tx.events {
        match runs.last_mut() {
            Some((oid, op, _, n)) if *oid == ev.table.oid && *op == ev.op => *n += 1,
            _ => runs.push((ev.table.oid, ev.op, &ev.table.gql_name, 1)),
        }
    }
    for (_, op, table, n) in runs {
        metrics.events_decoded.add(&[table, op.as_str()], n);
    }
}
