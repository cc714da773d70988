//! The replication connection against a real Postgres: set-up, streaming, acknowledgement,
//! keepalives, server errors and termination.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use walcast_wal::{
    ensure_publication, Lsn, PgOutput, ReplicationClient, ReplicationEvent, TupleValue, WalError,
};

fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[tokio::test]
async fn streams_changes_in_order_and_confirms_exactly_the_acknowledged_lsn() {
    let pg = cluster();
    let db = database(pg, "stream_order");
    psql(
        pg,
        &db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, at timestamptz, f float8, d interval);
         CREATE TABLE \"Other Table\" (id int PRIMARY KEY);",
    );
    let sql = client(&pg.url(&db)).await;
    let tables = vec![
        ("public".to_owned(), "items".to_owned()),
        ("public".to_owned(), "Other Table".to_owned()),
    ];
    assert!(ensure_publication(&sql, "pub", &tables)
        .await
        .expect("create"));
    assert!(!ensure_publication(&sql, "pub", &[]).await.expect("reuse"));
    let published = psql(
        pg,
        &db,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'pub'",
    );
    assert_eq!(published, "Other Table,items");

    let mut repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("connect");
    let info = repl.identify_system().await.expect("identify_system");
    assert_eq!(info.dbname.as_deref(), Some(db.as_str()));
    assert_eq!(info.timeline, 1);
    assert!(info.xlogpos > Lsn(0));
    assert!(!info.system_id.is_empty());
    assert!(repl.ensure_slot("s1").await.expect("create slot"));
    assert!(!repl.ensure_slot("s1").await.expect("reuse slot"));
    let slot_start = confirmed_flush_lsn(pg, &db, "s1");

    let mut stream = repl.start("s1", "pub", Lsn(0)).await.expect("start");
    assert_eq!(stream.acknowledged(), Lsn(0));
    psql(
        pg,
        &db,
        "INSERT INTO items VALUES
           (1, 'a', '2024-01-02 03:04:05+02', 0.1, '1 day 2 hours'),
           (2, NULL, NULL, NULL, NULL);",
    );

    let PgOutput::Begin { final_lsn, xid, .. } = next_message(&mut stream).await else {
        panic!("expected Begin")
    };
    let PgOutput::Relation(rel) = next_message(&mut stream).await else {
        panic!("expected Relation")
    };
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "items")
    );
    let names: Vec<&str> = rel.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "at", "f", "d"]);
    assert!(rel.columns[0].is_key());
    // The session settings make text values independent of the server's defaults.
    assert_eq!(
        next_message(&mut stream).await,
        PgOutput::Insert {
            rel_id: rel.rel_id,
            new: vec![
                text("1"),
                text("a"),
                text("2024-01-02 01:04:05+00"),
                text("0.1"),
                text("P1DT2H"),
            ],
        }
    );
    assert_eq!(
        next_message(&mut stream).await,
        PgOutput::Insert {
            rel_id: rel.rel_id,
            new: vec![
                text("2"),
                TupleValue::Null,
                TupleValue::Null,
                TupleValue::Null,
                TupleValue::Null
            ],
        }
    );
    let PgOutput::Commit {
        commit_lsn,
        end_lsn,
        ..
    } = next_message(&mut stream).await
    else {
        panic!("expected Commit")
    };
    assert_eq!(commit_lsn, final_lsn);
    assert!(xid > 0);
    assert!(end_lsn > slot_start);

    // Nothing acknowledged yet: the slot has not moved.
    stream.send_status().await.expect("status");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(confirmed_flush_lsn(pg, &db, "s1"), slot_start);

    stream.acknowledge(end_lsn);
    stream.acknowledge(Lsn(end_lsn.0 - 1)); // ignored: positions never move back
    assert_eq!(stream.acknowledged(), end_lsn);
    stream.send_status().await.expect("status");
    eventually("confirmed_flush_lsn to reach the acknowledged LSN", || {
        confirmed_flush_lsn(pg, &db, "s1") == end_lsn
    })
    .await;

    // A later transaction that is received but not acknowledged does not move the slot.
    psql(pg, &db, "INSERT INTO \"Other Table\" VALUES (7)");
    let mut second_end = None;
    while second_end.is_none() {
        if let PgOutput::Commit { end_lsn, .. } = next_message(&mut stream).await {
            second_end = Some(end_lsn);
        }
    }
    stream.send_status().await.expect("status");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(confirmed_flush_lsn(pg, &db, "s1"), end_lsn);

    stream.close().await.expect("close");
    eventually("the slot to become inactive", || {
        psql(
            pg,
            &db,
            "SELECT active FROM pg_replication_slots WHERE slot_name = 's1'",
        ) == "f"
    })
    .await;
    assert_eq!(confirmed_flush_lsn(pg, &db, "s1"), end_lsn);

    // Restarting from the slot resends the unacknowledged transaction, and only that one.
    let repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("reconnect");
    let mut stream = repl.start("s1", "pub", Lsn(0)).await.expect("restart");
    assert!(matches!(
        next_message(&mut stream).await,
        PgOutput::Begin { .. }
    ));
    let PgOutput::Relation(rel) = next_message(&mut stream).await else {
        panic!("expected Relation")
    };
    assert_eq!(rel.name, "Other Table");
    assert!(
        matches!(next_message(&mut stream).await, PgOutput::Insert { new, .. } if new == vec![text("7")])
    );
    stream.close().await.expect("close");
}

#[tokio::test]
async fn logical_messages_updates_deletes_and_truncates_arrive() {
    let pg = cluster();
    let db = database(pg, "stream_kinds");
    psql(
        pg,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         ALTER TABLE t REPLICA IDENTITY FULL;
         CREATE PUBLICATION p FOR TABLE t;",
    );
    let mut repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("connect");
    repl.ensure_slot("kinds").await.expect("slot");
    let mut stream = repl.start("kinds", "p", Lsn(0)).await.expect("start");
    psql(
        pg,
        &db,
        "INSERT INTO t VALUES (1, 'a');
         UPDATE t SET v = 'b';
         DELETE FROM t;
         TRUNCATE t;
         SELECT pg_logical_emit_message(true, 'walcast', 'hi');",
    );
    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        match next_message(&mut stream).await {
            PgOutput::Insert { .. } => kinds.push("insert"),
            PgOutput::Update {
                old_kind, old, new, ..
            } => {
                assert_eq!(old_kind, Some(b'O'));
                assert_eq!(old, Some(vec![text("1"), text("a")]));
                assert_eq!(new, vec![text("1"), text("b")]);
                kinds.push("update");
            }
            PgOutput::Delete { old_kind, old, .. } => {
                assert_eq!(old_kind, b'O');
                assert_eq!(old, vec![text("1"), text("b")]);
                kinds.push("delete");
            }
            PgOutput::Truncate { rel_ids, .. } => {
                assert_eq!(rel_ids.len(), 1);
                kinds.push("truncate");
            }
            PgOutput::Message {
                transactional,
                prefix,
                content,
                ..
            } => {
                assert!(transactional);
                assert_eq!(prefix, "walcast");
                assert_eq!(&content[..], b"hi");
                kinds.push("message");
            }
            _ => {}
        }
    }
    assert_eq!(kinds, ["insert", "update", "delete", "truncate", "message"]);
    stream.close().await.expect("close");
}

#[tokio::test]
async fn a_requested_keepalive_reply_is_sent_without_acknowledging_more() {
    let pg = cluster();
    let db = database(pg, "keepalive");
    psql(pg, &db, "CREATE PUBLICATION p");
    // The walsender asks for a reply after half of wal_sender_timeout without one.
    let url = format!(
        "{}?application_name=walcast_keepalive&options=-c%20wal_sender_timeout%3D2s",
        pg.url(&db)
    );
    let mut repl = ReplicationClient::connect(&url).await.expect("connect");
    repl.ensure_slot("ka").await.expect("slot");
    let start = confirmed_flush_lsn(pg, &db, "ka");
    let mut stream = repl.start("ka", "p", start).await.expect("start");
    // Only replies to the server's requests keep the connection alive now.
    stream.set_status_interval(Duration::from_secs(3600));

    // The server's clock, so the reply below is dated against the same clock, however late
    // this process runs.
    let server_began = psql(pg, &db, "SELECT now()");
    let began = tokio::time::Instant::now();
    let mut requested = 0;
    while began.elapsed() < Duration::from_secs(5) {
        match next_event(&mut stream).await {
            Ok(Some(ReplicationEvent::Keepalive {
                reply_requested: true,
                ..
            })) => requested += 1,
            Ok(Some(_)) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    // Outlived two and a half timeouts, so the replies arrived.
    assert!(requested >= 2, "{requested} keepalives asked for a reply");
    let reply_time = psql(
        pg,
        &db,
        &format!(
            "SELECT reply_time > '{server_began}'::timestamptz FROM pg_stat_replication \
             WHERE application_name = 'walcast_keepalive'"
        ),
    );
    assert_eq!(reply_time, "t");
    assert_eq!(confirmed_flush_lsn(pg, &db, "ka"), start);
    stream.close().await.expect("close");
}

#[tokio::test]
async fn terminating_the_walsender_ends_recv_with_an_error() {
    let pg = cluster();
    let db = database(pg, "terminate");
    psql(pg, &db, "CREATE PUBLICATION p");
    let url = format!("{}?application_name=walcast_terminated", pg.url(&db));
    let mut repl = ReplicationClient::connect(&url).await.expect("connect");
    repl.ensure_slot("term").await.expect("slot");
    let mut stream = repl.start("term", "p", Lsn(0)).await.expect("start");
    let killed = psql(
        pg,
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication \
         WHERE application_name = 'walcast_terminated'",
    );
    assert_eq!(killed, "t");
    let err = loop {
        match next_event(&mut stream).await {
            Ok(Some(ReplicationEvent::Keepalive { .. })) => {}
            Ok(other) => panic!("expected an error, got {other:?}"),
            Err(e) => break e,
        }
    };
    match &err {
        WalError::Server { error, .. } => {
            assert_eq!(error.code, "57P01", "{err}");
            assert_eq!(error.severity, "FATAL");
        }
        WalError::Closed { .. } | WalError::Io { .. } => {}
        other => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn a_server_error_while_streaming_carries_its_fields() {
    let pg = cluster();
    let db = database(pg, "stream_error");
    psql(pg, &db, "CREATE TABLE t (id int PRIMARY KEY)");
    let mut repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("connect");
    repl.ensure_slot("err").await.expect("slot");
    // pgoutput looks the publication up only when it decodes the first change.
    let mut stream = repl
        .start("err", "no_such_publication", Lsn(0))
        .await
        .expect("start");
    psql(pg, &db, "INSERT INTO t VALUES (1)");
    let err = loop {
        match next_event(&mut stream).await {
            Ok(Some(ReplicationEvent::Keepalive { .. })) => {}
            // Before Postgres 15, pgoutput sends BEGIN before it looks the publication up.
            Ok(Some(ReplicationEvent::XLogData {
                message: walcast_wal::PgOutput::Begin { .. },
                ..
            })) => {}
            Ok(other) => panic!("expected an error, got {other:?}"),
            Err(e) => break e,
        }
    };
    let WalError::Server { error, .. } = &err else {
        panic!("expected a server error, got {err}")
    };
    assert_eq!(error.code, "42704", "{err}");
    assert!(error.message.contains("no_such_publication"), "{err}");
    assert_eq!(err.sqlstate(), Some("42704"));
}

#[tokio::test]
async fn an_existing_slot_of_another_kind_is_refused() {
    let pg = cluster();
    let db = database(pg, "slot_kind");
    psql(
        pg,
        &db,
        "SELECT pg_create_logical_replication_slot('td', 'test_decoding')",
    );
    let mut repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("connect");
    let err = repl
        .ensure_slot("td")
        .await
        .expect_err("test_decoding slot");
    assert!(err.to_string().contains("test_decoding"), "{err}");
    let err = repl.ensure_slot("Bad-Name").await.expect_err("bad name");
    assert!(matches!(err, WalError::InvalidName { .. }), "{err}");
    repl.close().await.expect("close");
}

#[tokio::test]
async fn connects_over_a_unix_socket() {
    let pg = cluster();
    let dir = pg
        .data_dir()
        .parent()
        .expect("the socket lives in the cluster's root dir");
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres",
        dir.display(),
        pg.port()
    );
    let mut repl = ReplicationClient::connect(&conninfo)
        .await
        .expect("connect");
    let info = repl.identify_system().await.expect("identify_system");
    assert_eq!(info.dbname.as_deref(), Some("postgres"));
    assert_eq!(repl.server_major_version(), Some(pg.major_version()));
}

#[tokio::test]
async fn connection_failures_are_clear() {
    let pg = cluster();
    let err = ReplicationClient::connect(&pg.url("no_such_db"))
        .await
        .err()
        .expect("missing database");
    assert_eq!(err.sqlstate(), Some("3D000"), "{err}");
    assert!(err.to_string().contains("no_such_db"), "{err}");

    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let err = ReplicationClient::connect(&format!("postgres://u@127.0.0.1:{closed_port}/db"))
        .await
        .err()
        .expect("closed port");
    assert!(matches!(err, WalError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&closed_port.to_string()), "{err}");

    let err = ReplicationClient::connect("postgres://")
        .await
        .err()
        .expect("no user");
    assert!(matches!(err, WalError::Config(_)), "{err}");
}

#[tokio::test]
async fn sslmode_require_against_a_server_without_tls_is_refused() {
    let pg = cluster();
    let err = ReplicationClient::connect(&format!("{}?sslmode=require", pg.url("postgres")))
        .await
        .err()
        .expect("no TLS on the server");
    assert!(matches!(err, WalError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("does not accept TLS"), "{err}");
}

#[tokio::test]
async fn recv_is_cancellation_safe() {
    let pg = cluster();
    let db = database(pg, "cancel_safe");
    psql(
        pg,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE PUBLICATION p FOR TABLE t;",
    );
    let mut repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("connect");
    repl.ensure_slot("cancel").await.expect("slot");
    let mut stream = repl.start("cancel", "p", Lsn(0)).await.expect("start");
    // Rows big enough to span several reads, so cancellations land mid-frame.
    psql(
        pg,
        &db,
        "INSERT INTO t SELECT i, repeat(md5(i::text), 200) FROM generate_series(1, 300) i",
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut ids, mut cancelled) = (Vec::new(), 0);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        let event = tokio::select! {
            event = stream.recv() => event.expect("recv").expect("stream open"),
            () = tokio::task::yield_now() => { cancelled += 1; continue }
        };
        match event {
            ReplicationEvent::XLogData {
                message: PgOutput::Insert { new, .. },
                ..
            } => {
                let Some(TupleValue::Text(id)) = new.first() else {
                    panic!("no id")
                };
                ids.push(String::from_utf8_lossy(id).parse::<i32>().expect("id"));
            }
            ReplicationEvent::XLogData {
                message: PgOutput::Commit { .. },
                ..
            } => break,
            _ => {}
        }
    }
    assert_eq!(ids, (1..=300).collect::<Vec<_>>());
    assert!(cancelled > 0, "no recv was cancelled");
    stream.close().await.expect("close");
}

#[tokio::test]
async fn periodic_status_updates_report_the_acknowledged_position() {
    let pg = cluster();
    let db = database(pg, "periodic_status");
    psql(
        pg,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;",
    );
    let mut repl = ReplicationClient::connect(&pg.url(&db))
        .await
        .expect("connect");
    repl.ensure_slot("periodic").await.expect("slot");
    let mut stream = repl.start("periodic", "p", Lsn(0)).await.expect("start");
    stream.set_status_interval(Duration::from_millis(200));
    psql(pg, &db, "INSERT INTO t VALUES (1)");
    let end = loop {
        if let PgOutput::Commit { end_lsn, .. } = next_message(&mut stream).await {
            break end_lsn;
        }
    };
    stream.acknowledge(end);
    // No explicit send_status: recv sends one within the interval even with no traffic.
    let deadline = tokio::time::Instant::now() + WAIT;
    while confirmed_flush_lsn(pg, &db, "periodic") != end {
        assert!(tokio::time::Instant::now() < deadline, "no periodic status");
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.recv()).await;
    }
    stream.close().await.expect("close");
}
