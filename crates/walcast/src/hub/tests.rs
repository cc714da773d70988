//! The hub in-process: fed by synthetic transactions, read through its streams.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use walcast_access::{TableGrant, Writes};
use walcast_graphql::{Access, EventSource, SharedAccess, SubscriptionRequest};
use walcast_model::{
    Batch, Column, Cursor, Datum, Event, Kind, Op, PgType, ReplicaIdentity, Table, Transaction,
};
use walcast_wal::Lsn;

use super::retention::now_micros;
use super::{Hub, HubSource};
use crate::metrics::Metrics;

fn table() -> Arc<Table> {
    let column = |i: i16, name: &str| Column {
        name: name.into(),
        gql_name: name.into(),
        attnum: i,
        ty: PgType {
            oid: 23,
            name: "int4".into(),
            kind: Kind::Int4,
            array: false,
            enum_values: vec![],
        },
        sql_type: "int4".into(),
        not_null: false,
    };
    Arc::new(Table {
        oid: 1,
        schema: "public".into(),
        name: "notes".into(),
        gql_name: "notes".into(),
        columns: vec![column(1, "id"), column(2, "owner")],
        primary_key: vec![0],
        replica_identity: ReplicaIdentity::Full,
        foreign_keys: vec![],
    })
}

/// One update of row 1 from owner `from` to owner `to`.
fn moved(t: &Arc<Table>, from: i64, to: i64, lsn: u64) -> Transaction {
    let row = |owner: i64| vec![Datum::Int(1), Datum::Int(owner)];
    let cursor = Cursor {
        lsn: Lsn(lsn),
        seq: 0,
    };
    let ev = Arc::new(Event {
        table: t.clone(),
        op: Op::Update,
        key: "1".into(),
        new: Some(row(to)),
        old: Some(row(from)),
        updated: Some(vec![1]),
        cursor,
        xid: lsn as u32,
        commit_time: now_micros(),
        batch: Arc::new(Batch::default()),
    });
    Transaction {
        xid: lsn as u32,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn),
        commit_time: now_micros(),
        first_seq: 0,
        events: vec![ev],
        messages: vec![],
    }
}

fn access(t: &Table, owner: Option<i64>) -> Access {
    let grant = TableGrant::new(Arc::new(t.clone()), None, Writes::ALL);
    let grant = match owner {
        Some(o) => grant.with_filter(json!({"owner": o})).expect("filter"),
        None => grant,
    };
    Access::new([grant])
}

#[tokio::test]
async fn a_row_filter_given_or_taken_away_ends_the_subscription() {
    let t = table();
    let mgr = deadpool_postgres::Manager::new(tokio_postgres::Config::new(), tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(mgr)
        .max_size(1)
        .build()
        .expect("a pool (it never connects here)");
    let hub = hub(100, 1000);
    let source = HubSource(hub.clone());
    for (before, after) in [(None, Some(7)), (Some(7), None)] {
        let shared: SharedAccess = Arc::new(arc_swap::ArcSwap::from_pointee(access(&t, before)));
        let filter = walcast_filter::parse_subscription_where(
            &t,
            &json!({"mutation_in": ["CREATED", "UPDATED", "DELETED"]}),
        )
        .expect("filter");
        let mut stream = source
            .subscribe(SubscriptionRequest {
                table: t.clone(),
                filter,
                after: None,
                connection: None,
                access: shared.clone(),
            })
            .expect("subscribed");
        // Into owner 7's rows: an update without a filter, a create with one.
        hub.dispatch(&moved(&t, 3, 7, 10), true, &pool).await;
        let ev = stream.next().await.expect("an event");
        let expected = if before.is_some() {
            Op::Create
        } else {
            Op::Update
        };
        assert_eq!(ev.op, expected);
        shared.store(Arc::new(access(&t, after)));
        hub.dispatch(&moved(&t, 7, 3, 11), true, &pool).await;
        assert!(stream.next().await.is_none(), "{before:?} -> {after:?}");
    }
    let st = hub.lock();
    assert!(st.subs.is_empty());
    assert!(st.filtered.values().all(|n| *n == 0));
}

// --- The hub fed through the source seam ------------------------------------------------------

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::app::{App, AppParts};
use crate::source::{drive, Change, ChangeSource};

/// Transactions (and the rest) from a list; the positions it is told to confirm, kept.
struct Synthetic {
    changes: VecDeque<Change>,
    confirmed: Arc<Mutex<Vec<Lsn>>>,
}

impl ChangeSource for Synthetic {
    async fn next(&mut self) -> anyhow::Result<Option<Change>> {
        Ok(self.changes.pop_front())
    }

    fn confirm(&mut self, upto: Lsn) {
        self.confirmed.lock().expect("not poisoned").push(upto);
    }
}

impl Synthetic {
    fn new(changes: impl IntoIterator<Item = Change>) -> (Synthetic, Arc<Mutex<Vec<Lsn>>>) {
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let source = Synthetic {
            changes: changes.into_iter().collect(),
            confirmed: confirmed.clone(),
        };
        (source, confirmed)
    }
}

/// A hub with a queue of `queue` events per subscriber, a minute of retention and at most
/// `retained` events kept.
fn hub(queue: usize, retained: usize) -> Arc<Hub> {
    Hub::new(
        queue,
        Duration::from_secs(60),
        retained,
        Arc::new(Metrics::default()),
    )
}

/// A hub (see [`hub`]), the app its source feeds, and the source subscriptions are made on.
fn fed(queue: usize, retained: usize) -> (Arc<Hub>, App, HubSource) {
    let hub = hub(queue, retained);
    (hub.clone(), app(hub.clone()), HubSource(hub))
}

fn pool() -> deadpool_postgres::Pool {
    let mgr = deadpool_postgres::Manager::new(tokio_postgres::Config::new(), tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(mgr)
        .max_size(1)
        .build()
        .expect("a pool (it never connects here)")
}

/// An app around `hub`, with the default settings and nothing to connect to.
fn app(hub: Arc<Hub>) -> App {
    use clap::Parser;
    let cfg = crate::config::Cli::parse_from(["walcast"]).serve;
    let (_, shutdown) = tokio::sync::watch::channel(false);
    App::new(AppParts {
        cfg,
        catalog: Arc::new(walcast_model::Catalog::default()),
        source: Arc::new(HubSource(hub.clone())),
        metrics: Arc::new(Metrics::default()),
        hub,
        pool: pool(),
        auth: crate::auth::Authenticator::from_config(&crate::auth::AuthConfig {
            tokens_file: None,
            jwt_secret: None,
            jwt_public_key: None,
        })
        .expect("no credentials to read"),
        permissions: crate::permissions::Permissions::load(None).expect("default permissions"),
        shutdown,
    })
}

/// Inserts of rows `ids` with `owner = id % 3`, committed at `lsn`, ending at `lsn + 1`.
fn inserts(t: &Arc<Table>, ids: std::ops::Range<i64>, lsn: u64) -> Transaction {
    let events = ids
        .enumerate()
        .map(|(seq, id)| {
            Arc::new(Event {
                table: t.clone(),
                op: Op::Create,
                key: id.to_string(),
                new: Some(vec![Datum::Int(id), Datum::Int(id % 3)]),
                old: None,
                updated: None,
                cursor: Cursor {
                    lsn: Lsn(lsn),
                    seq: seq as u32,
                },
                xid: lsn as u32,
                commit_time: now_micros(),
                batch: Arc::new(Batch::default()),
            })
        })
        .collect();
    Transaction {
        xid: lsn as u32,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 1),
        commit_time: now_micros(),
        first_seq: 0,
        events,
        messages: vec![],
    }
}

fn live(tx: Transaction) -> Change {
    Change::Transaction {
        tx,
        live: true,
        complete: true,
    }
}

fn subscribe(
    source: &HubSource,
    t: &Arc<Table>,
    filter: serde_json::Value,
) -> walcast_graphql::EventStream {
    let shared: SharedAccess = Arc::new(arc_swap::ArcSwap::from_pointee(access(t, None)));
    subscribe_as(source, t, filter, shared)
}

/// Subscribes with the caller's access, to be changed later.
fn subscribe_as(
    source: &HubSource,
    t: &Arc<Table>,
    filter: serde_json::Value,
    shared: SharedAccess,
) -> walcast_graphql::EventStream {
    source
        .subscribe(SubscriptionRequest {
            table: t.clone(),
            filter: walcast_filter::parse_subscription_where(t, &filter).expect("filter"),
            after: None,
            connection: None,
            access: shared,
        })
        .expect("subscribed")
}

/// Keys of the next `n` events, then nothing more queued.
async fn keys(stream: &mut walcast_graphql::EventStream, n: usize) -> Vec<i64> {
    use futures::FutureExt;
    let mut keys = Vec::new();
    for _ in 0..n {
        let ev = stream.next().await.expect("an event");
        keys.push(ev.key.parse().expect("a numeric key"));
    }
    assert!(
        stream.next().now_or_never().is_none(),
        "more than {n} events"
    );
    keys
}

#[tokio::test]
async fn many_subscriptions_receive_their_events_in_commit_order() {
    let t = table();
    let (_, app, source) = fed(1000, 100_000);
    // 60 subscriptions, 20 of each kind: everything, owner 0, id above 250.
    let mut everything = Vec::new();
    let mut owner0 = Vec::new();
    let mut above = Vec::new();
    for _ in 0..20 {
        everything.push(subscribe(&source, &t, json!({})));
        owner0.push(subscribe(&source, &t, json!({"node": {"owner": 0}})));
        above.push(subscribe(&source, &t, json!({"node": {"id_gt": 250}})));
    }
    // 100 transactions of 3 inserts each.
    let (mut feed, confirmed) =
        Synthetic::new((0..100).map(|i| live(inserts(&t, i * 3..i * 3 + 3, 100 + i as u64 * 10))));
    drive(&app, &mut feed)
        .await
        .expect("the source ends cleanly");
    let all: Vec<i64> = (0..300).collect();
    for s in &mut everything {
        assert_eq!(keys(s, 300).await, all);
    }
    let zeros: Vec<i64> = all.iter().copied().filter(|id| id % 3 == 0).collect();
    for s in &mut owner0 {
        assert_eq!(keys(s, zeros.len()).await, zeros);
    }
    let high: Vec<i64> = (251..300).collect();
    for s in &mut above {
        assert_eq!(keys(s, high.len()).await, high);
    }
    // Everything is retained: the slot may be confirmed up to the oldest transaction only.
    assert!(confirmed
        .lock()
        .expect("not poisoned")
        .iter()
        .all(|l| *l == Lsn(100)));
    assert_eq!(
        source.cursor_now(),
        Cursor {
            lsn: Lsn(1090),
            seq: 2
        }
    );
}

#[tokio::test]
async fn a_slow_consumer_is_closed_and_a_reading_one_is_paced() {
    let t = table();
    let (hub, app, source) = fed(4, 100_000);
    let mut stalled = subscribe(&source, &t, json!({}));
    let mut reading = subscribe(&source, &t, json!({}));
    let reader = tokio::spawn(async move {
        let got = keys(&mut reading, 40).await;
        (got, reading)
    });
    let (mut feed, _) =
        Synthetic::new((0..40).map(|i| live(inserts(&t, i..i + 1, 100 + i as u64 * 10))));
    drive(&app, &mut feed)
        .await
        .expect("the source ends cleanly");
    // The reader kept up, however small its queue: every event, in order.
    let (got, _reading) = reader.await.expect("the reader task");
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    // The stalled one got its queue's worth, then its stream ended: it was dropped as slow.
    let mut held = Vec::new();
    while let Some(ev) = stalled.next().await {
        held.push(ev.key.parse::<i64>().expect("a numeric key"));
    }
    assert_eq!(held, [0, 1, 2, 3]);
    assert_eq!(
        hub.metrics
            .subscriptions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn the_slot_is_confirmed_behind_the_retention_window_and_history_is_not_delivered() {
    let t = table();
    // At most 5 events retained: older transactions leave the window early.
    let (hub, app, source) = fed(100, 5);
    let mut sub = subscribe(&source, &t, json!({}));
    let history = (0..3).map(|i| Change::Transaction {
        tx: inserts(&t, i..i + 1, 100 + i as u64 * 10),
        live: false,
        complete: true,
    });
    let news = (3..10).map(|i| live(inserts(&t, i..i + 1, 100 + i as u64 * 10)));
    let changes = std::iter::once(Change::Resumed {
        from: Lsn(100),
        history_lost: false,
    })
    .chain(history)
    .chain(std::iter::once(Change::Live(true)))
    .chain(news);
    let (mut feed, confirmed) = Synthetic::new(changes);
    drive(&app, &mut feed)
        .await
        .expect("the source ends cleanly");
    assert_eq!(keys(&mut sub, 7).await, (3..10).collect::<Vec<_>>());
    let confirmed = confirmed.lock().expect("not poisoned").clone();
    // Nothing retained yet: everything yielded may go; then the oldest retained commit.
    assert_eq!(confirmed.first(), Some(&Lsn(u64::MAX)));
    assert_eq!(confirmed.last(), Some(&Lsn(150)), "{confirmed:?}");
    assert!(
        confirmed.windows(2).skip(1).all(|w| w[0] <= w[1]),
        "{confirmed:?}"
    );
    // The source stopped: not ready any more.
    assert!(!app.is_ready());
    // The running count of retained events is the window's.
    let st = hub.lock();
    assert_eq!(st.held, st.retained.iter().map(|t| t.len()).sum::<usize>());
    assert!(st.held <= 5, "{}", st.held);
}

/// Counts wakes, and notes any that came while the hub lock was held.
struct Probe {
    hub: Arc<Hub>,
    woken: std::sync::atomic::AtomicUsize,
    under_lock: std::sync::atomic::AtomicBool,
}

impl std::task::Wake for Probe {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.woken.fetch_add(1, Relaxed);
        if self.hub.state.try_lock().is_err() {
            self.under_lock.store(true, Relaxed);
        }
    }
}

#[tokio::test]
async fn streams_are_woken_with_the_hub_lock_released() {
    use std::sync::atomic::Ordering::Relaxed;
    use std::task::{Context, Poll, Waker};
    let t = table();
    let hub = Hub::new(100, Duration::from_secs(60), 1000, Default::default());
    let source = HubSource(hub.clone());
    let shared: SharedAccess = Arc::new(arc_swap::ArcSwap::from_pointee(access(&t, None)));
    let mut stream = subscribe_as(&source, &t, json!({}), shared.clone());
    let probe = Arc::new(Probe {
        hub: hub.clone(),
        woken: Default::default(),
        under_lock: Default::default(),
    });
    let waker = Waker::from(probe.clone());
    let mut cx = Context::from_waker(&waker);
    // Queued events wake the stream.
    assert!(stream.poll_next_unpin(&mut cx).is_pending());
    hub.dispatch(&inserts(&t, 0..1, 100), true, &pool()).await;
    assert_eq!(probe.woken.load(Relaxed), 1);
    assert!(matches!(
        stream.poll_next_unpin(&mut cx),
        Poll::Ready(Some(_))
    ));
    // A row filter given: the subscription is revoked while matching, its stream woken to end.
    assert!(stream.poll_next_unpin(&mut cx).is_pending());
    shared.store(Arc::new(access(&t, Some(7))));
    hub.dispatch(&inserts(&t, 1..2, 110), true, &pool()).await;
    assert_eq!(probe.woken.load(Relaxed), 2);
    assert!(matches!(stream.poll_next_unpin(&mut cx), Poll::Ready(None)));
    assert!(!probe.under_lock.load(Relaxed), "woken under the hub lock");
}

#[tokio::test]
async fn a_fan_out_larger_than_a_send_batch_reaches_everyone_in_order() {
    let t = table();
    let (_, app, source) = fed(1000, 100_000);
    let subscribers = super::dispatch::SEND_BATCH * 2 + 7;
    let mut streams: Vec<_> = (0..subscribers)
        .map(|_| subscribe(&source, &t, json!({})))
        .collect();
    // Transactions of one event and of three, each queued in several batches.
    let txs = (0..6).map(|i| {
        let width = if i % 2 == 0 { 1 } else { 3 };
        live(inserts(&t, i * 3..i * 3 + width, 100 + i as u64 * 10))
    });
    let (mut feed, _) = Synthetic::new(txs);
    drive(&app, &mut feed)
        .await
        .expect("the source ends cleanly");
    let expected: Vec<i64> = (0..6)
        .flat_map(|i: i64| {
            let width = if i % 2 == 0 { 1 } else { 3 };
            i * 3..i * 3 + width
        })
        .collect();
    for s in &mut streams {
        assert_eq!(keys(s, expected.len()).await, expected);
    }
}
