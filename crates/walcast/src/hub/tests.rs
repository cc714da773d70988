//! The hub in-process: fed by synthetic transactions, read through its streams.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use walcast_graphql::{Access, EventSource, SharedAccess, SubscriptionRequest, TableAccess};
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
    let row_filter =
        owner.map(|o| walcast_filter::parse_where(t, &json!({"owner": o})).expect("filter"));
    let mut access = Access::default();
    access.tables.insert(
        t.oid,
        TableAccess {
            columns_key: "*".into(),
            row_filter,
            visible: None,
        },
    );
    access
}

#[tokio::test]
async fn a_row_filter_given_or_taken_away_ends_the_subscription() {
    let t = table();
    let mgr = deadpool_postgres::Manager::new(tokio_postgres::Config::new(), tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(mgr)
        .max_size(1)
        .build()
        .expect("a pool (it never connects here)");
    let hub = Hub::new(
        100,
        Duration::from_secs(60),
        1000,
        Arc::new(Metrics::default()),
    );
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
