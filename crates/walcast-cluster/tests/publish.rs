//! The publisher against a real nats-server: fencing, resuming, retention and restarts.

mod common;

use std::time::Duration;

use common::*;
use walcast_cluster::{
    sequence_for_lsn, ClusterStream, Consumer, ErrorKind, Position, Publisher, StreamSettings,
    MAX_IN_FLIGHT,
};
use walcast_model::{Catalog, ChangeDecoder, TableSelection};
use walcast_wal::Lsn;

#[tokio::test]
async fn events_carry_positions_ids_and_the_transaction_end() {
    let server = nats();
    let stream = open_stream(&server.url(), &settings("s_positions")).await;
    let mut publisher = publisher(&stream).await;
    feed_all(&mut publisher, transaction(0x100, 3)).await;
    feed_all(&mut publisher, transaction(0x200, 1)).await;
    assert_eq!(
        publisher.flush().await.expect("flush"),
        Some(Lsn(0x208)),
        "stored up to the last transaction's end"
    );
    let kept = contents(&stream).await;
    let summary: Vec<(&str, u64, u32, Option<Lsn>)> = kept
        .iter()
        .map(|(_, kind, lsn, index, end)| (kind.as_str(), lsn.0, *index, *end))
        .collect();
    assert_eq!(
        summary,
        [
            ("schema", 0x100, 0, None),
            ("change", 0x100, 0, None),
            ("change", 0x100, 1, None),
            ("change", 0x100, 2, Some(Lsn(0x108))),
            ("change", 0x200, 0, Some(Lsn(0x208))),
        ],
        "the relation is announced once per publisher, before its first event"
    );
    assert_eq!(kept.first().map(|k| k.0), Some(1));
    assert_eq!(
        sequence_for_lsn(&stream, Lsn(0x200)).await.expect("search"),
        5
    );
    assert_eq!(
        sequence_for_lsn(&stream, Lsn(0x101)).await.expect("search"),
        5
    );
    assert_eq!(
        sequence_for_lsn(&stream, Lsn(0x100)).await.expect("search"),
        1
    );
    assert_eq!(
        sequence_for_lsn(&stream, Lsn(0x900)).await.expect("search"),
        6
    );
}

#[tokio::test]
async fn a_stale_publisher_is_fenced_and_nothing_lands_out_of_place() {
    let server = nats();
    let stream = open_stream(&server.url(), &settings("s_fenced")).await;
    let mut first = publisher(&stream).await;
    feed_all(&mut first, transaction(0x100, 2)).await;
    first.flush().await.expect("first publisher stores tx 1");

    // Another reader takes over (the slot moved to it) and appends.
    let mut second = publisher(&stream).await;
    assert_eq!(
        second.resume_point(),
        Position {
            lsn: Lsn(0x100),
            index: 2
        }
    );
    feed_all(&mut second, transaction(0x100, 2)).await;
    feed_all(&mut second, transaction(0x200, 2)).await;
    assert_eq!(second.flush().await.expect("flush"), Some(Lsn(0x208)));

    // The first comes back from a pause and publishes what it read meanwhile.
    let err = refusal(
        &mut first,
        transaction(0x200, 2)
            .into_iter()
            .chain(transaction(0x300, 2)),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert!(err.to_string().contains("another publisher"), "{err}");

    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 2), (0x200, 2)]),
        "each event once, in order"
    );
}

#[tokio::test]
async fn no_message_of_a_stale_publishers_pipeline_lands_behind_a_refused_one() {
    let server = nats();
    let stream = open_stream(&server.url(), &settings("s_pipeline")).await;
    // A deep pipeline: its messages expect sequences far beyond where it was refused.
    let mut stale = Publisher::open(&stream, 64).await.expect("open");
    feed_all(&mut stale, transaction(0x100, 2)).await;
    stale.flush().await.expect("stored");

    // The next publisher appends past every sequence the stale one can expect, even with
    // a shallower pipeline of its own.
    let mut next = Publisher::open(&stream, 4).await.expect("open");
    for lsn in [0x200, 0x300, 0x400] {
        feed_all(&mut next, transaction(lsn, 8)).await;
    }
    next.flush().await.expect("stored");

    let messages = (0x200..0x2000)
        .step_by(0x100)
        .flat_map(|lsn| transaction(lsn, 4));
    let err = refusal(&mut stale, messages).await;
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 2), (0x200, 8), (0x300, 8), (0x400, 8)]),
        "each event once, in order"
    );
}

#[tokio::test]
async fn a_stale_pipeline_racing_the_next_publishers_epoch_leaves_no_gap() {
    let server = nats();
    let stream = open_stream(&server.url(), &settings("s_race")).await;
    race_stale_pipelines(&stream).await;
}

#[tokio::test]
async fn a_pipeline_deeper_than_a_batch_is_lowered_to_fit_the_epoch() {
    let server = nats();
    let stream = open_stream(&server.url(), &settings("s_deep")).await;
    let mut first = publisher(&stream).await;
    feed_all(&mut first, transaction(0x100, 2)).await;
    first.flush().await.expect("stored");
    let before = stream.bounds().await.expect("bounds").1;

    // Its epoch, one more than its window, is the largest batch the server takes (1,000).
    let mut deep = Publisher::open(&stream, 5_000).await.expect("open");
    assert_eq!(deep.last_sequence(), before + MAX_IN_FLIGHT as u64 + 1);
    feed_all(&mut deep, transaction(0x200, 2)).await;
    deep.flush().await.expect("stored");
    // The next one outgrows the window the deep one left in its messages.
    let before = stream.bounds().await.expect("bounds").1;
    let next = Publisher::open(&stream, 4).await.expect("open");
    assert_eq!(next.last_sequence(), before + MAX_IN_FLIGHT as u64 + 1);
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 2), (0x200, 2)])
    );
}

#[tokio::test]
async fn a_new_publisher_resumes_after_the_last_stored_event() {
    let server = nats();
    let stream = open_stream(&server.url(), &settings("s_resume")).await;
    let mut crashed = publisher(&stream).await;
    feed_all(&mut crashed, transaction(0x100, 3)).await;
    // Half of the next transaction: events 0 and 1 are sent, 2 is held back.
    let partial: Vec<_> = transaction(0x200, 5).into_iter().take(5).collect();
    feed_all(&mut crashed, partial).await;
    assert_eq!(crashed.flush().await.expect("flush"), Some(Lsn(0x108)));
    drop(crashed);
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 3), (0x200, 2)])
    );

    // Postgres replays from the confirmed position (0x108): all of tx 0x200. Older replays
    // are skipped too.
    let mut next = publisher(&stream).await;
    assert_eq!(
        next.resume_point(),
        Position {
            lsn: Lsn(0x200),
            index: 2
        }
    );
    feed_all(&mut next, transaction(0x100, 3)).await;
    feed_all(&mut next, transaction(0x200, 5)).await;
    feed_all(&mut next, transaction(0x300, 1)).await;
    assert_eq!(next.flush().await.expect("flush"), Some(Lsn(0x308)));
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 3), (0x200, 5), (0x300, 1)]),
        "nothing repeated, nothing missing"
    );
    let ends: Vec<Option<Lsn>> = contents(&stream)
        .await
        .into_iter()
        .filter(|k| k.2 == Lsn(0x200))
        .map(|k| k.4)
        .collect();
    assert_eq!(ends.iter().flatten().count(), 1, "one end for tx 0x200");
    assert_eq!(ends.last(), Some(&Some(Lsn(0x208))));
}

#[tokio::test]
async fn a_start_below_the_first_kept_message_is_cursor_expired() {
    let server = nats();
    let settings = StreamSettings {
        max_messages: 5,
        ..settings("s_expired")
    };
    let stream = open_stream(&server.url(), &settings).await;
    let mut publisher = publisher(&stream).await;
    for lsn in [0x100, 0x200, 0x300] {
        feed_all(&mut publisher, transaction(lsn, 3)).await;
    }
    publisher.flush().await.expect("flush");
    let (first, last) = stream.bounds().await.expect("bounds");
    assert_eq!((first, last), (6, 10));

    let decoder = || {
        let catalog = std::sync::Arc::new(Catalog::new(vec![]).expect("catalog"));
        ChangeDecoder::new(catalog, TableSelection::default())
    };
    let err = Consumer::open(&stream, 2, decoder())
        .await
        .err()
        .expect("the server would silently start at the first kept message");
    assert_eq!(err.kind(), ErrorKind::CursorExpired, "{err}");
    assert!(err.to_string().contains("cursor expired"), "{err}");

    let err = sequence_for_lsn(&stream, Lsn(0x100))
        .await
        .expect_err("the LSN's events are gone");
    assert_eq!(err.kind(), ErrorKind::CursorExpired);
    assert_eq!(
        sequence_for_lsn(&stream, Lsn(0x300)).await.expect("kept"),
        8
    );

    // Inside a transaction is no place to start.
    let mut consumer = Consumer::open(&stream, 6, decoder()).await.expect("open");
    let err = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("answers")
        .expect_err("mid-transaction");
    assert_eq!(err.kind(), ErrorKind::NotTransactionStart, "{err}");
}

#[tokio::test]
async fn an_incompatible_existing_stream_is_an_error_naming_the_field() {
    let server = nats();
    let js = jetstream(&server.url()).await;
    let base = settings("s_config");
    ClusterStream::open(&js, &base).await.expect("created");
    ClusterStream::open(&js, &base)
        .await
        .expect("same settings are fine");

    let longer = StreamSettings {
        max_age: Duration::from_secs(3600),
        ..base.clone()
    };
    let err = ClusterStream::open(&js, &longer)
        .await
        .expect_err("max_age differs");
    assert_eq!(err.kind(), ErrorKind::StreamConfig);
    assert!(err.to_string().contains("max_age"), "{err}");

    let mut loose = settings("s_loose").config();
    loose.deny_delete = false;
    js.create_stream(loose)
        .await
        .expect("created by someone else");
    let err = ClusterStream::open(&js, &settings("s_loose"))
        .await
        .expect_err("deletes allowed");
    assert!(err.to_string().contains("deny_delete"), "{err}");
}

#[tokio::test]
async fn a_stream_without_atomic_batches_is_switched_to_them() {
    let server = nats();
    let js = jetstream(&server.url()).await;
    // As an earlier walcast created it.
    let mut older = settings("s_older").config();
    older.allow_atomic_publish = false;
    js.create_stream(older).await.expect("created");
    let stream = open_stream(&server.url(), &settings("s_older")).await;
    let mut info = js.get_stream("WALCAST_s_older").await.expect("stream");
    assert!(info.info().await.expect("info").config.allow_atomic_publish);

    let mut first = publisher(&stream).await;
    feed_all(&mut first, transaction(0x100, 2)).await;
    first.flush().await.expect("stored");
    let mut second = publisher(&stream).await;
    feed_all(&mut second, transaction(0x200, 2)).await;
    second.flush().await.expect("stored");
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 2), (0x200, 2)])
    );
}

#[tokio::test]
async fn acked_events_survive_a_nats_restart() {
    let mut server = nats();
    let settings = settings("s_restart");
    let stream = open_stream(&server.url(), &settings).await;
    let mut before = publisher(&stream).await;
    for lsn in [0x100, 0x200] {
        feed_all(&mut before, transaction(lsn, 50)).await;
    }
    assert_eq!(before.flush().await.expect("flush"), Some(Lsn(0x208)));
    drop(before);
    drop(stream);

    server.restart().expect("restarts with its store");
    let stream = open_stream(&server.url(), &settings).await;
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 50), (0x200, 50)])
    );
    let mut after = publisher(&stream).await;
    assert_eq!(
        after.resume_point(),
        Position {
            lsn: Lsn(0x200),
            index: 50
        }
    );
    feed_all(&mut after, transaction(0x200, 50)).await;
    feed_all(&mut after, transaction(0x300, 1)).await;
    after.flush().await.expect("flush");
    assert_eq!(
        event_positions(&stream).await,
        positions(&[(0x100, 50), (0x200, 50), (0x300, 1)])
    );
}
