//! The session over an in-memory socket: frames in, frames out.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use ws_stream::tungstenite::{error::CapacityError, Error as WsError, Message};

use super::serve;
use crate::config::AuthMode;
use crate::ws::close;
use crate::ws::protocol::Protocol;
use crate::ws::testing::{app, settings, socket, Client, TestApp};

/// A session on `protocol` in public mode, its client, and the task serving it.
fn open(protocol: Protocol, capacity: usize) -> (TestApp, Client, JoinHandle<()>) {
    let mut cfg = settings();
    cfg.auth = AuthMode::Public;
    cfg.auth_timeout_ms = 300;
    open_with(cfg, protocol, capacity)
}

fn open_with(
    cfg: crate::config::ServeArgs,
    protocol: Protocol,
    capacity: usize,
) -> (TestApp, Client, JoinHandle<()>) {
    let test = app(cfg);
    let (client, sink, stream) = socket(capacity);
    let session = tokio::spawn(serve(
        test.app.clone(),
        sink,
        stream,
        protocol,
        None,
        None,
        |_, _| async {},
    ));
    (test, client, session)
}

async fn acked(protocol: Protocol, capacity: usize) -> (TestApp, Client, JoinHandle<()>) {
    let (test, mut client, session) = open(protocol, capacity);
    client.text(r#"{"type":"connection_init"}"#).await;
    assert_eq!(client.json().await, json!({"type": "connection_ack"}));
    (test, client, session)
}

#[tokio::test]
async fn init_is_acknowledged_and_ping_answered() {
    let (test, mut client, session) = acked(Protocol::Transport, 16).await;
    client.text(r#"{"type":"ping","payload":{"n":1}}"#).await;
    assert_eq!(
        client.json().await,
        json!({"type": "pong", "payload": {"n": 1}})
    );
    // A second init is one too many.
    client.text(r#"{"type":"connection_init"}"#).await;
    assert_eq!(
        client.closed().await,
        (close::TOO_MANY, "Too many initialisation requests".into())
    );
    session.await.expect("session ends");
    assert_eq!(test.app.metrics.connections.load(Relaxed), 0);
}

#[tokio::test]
async fn legacy_init_gets_a_keep_alive_too() {
    let (_test, mut client, _session) = open(Protocol::Legacy, 16);
    client.text(r#"{"type":"connection_init"}"#).await;
    assert_eq!(client.json().await, json!({"type": "connection_ack"}));
    assert_eq!(client.json().await, json!({"type": "ka"}));
}

#[tokio::test]
async fn a_subscription_that_does_not_validate_ends_with_its_error() {
    let (_test, mut client, _session) = acked(Protocol::Transport, 16).await;
    let subscribe = r#"{"type":"subscribe","id":"1","payload":{"query":"subscription { nope }"}}"#;
    client.text(subscribe).await;
    let error = client.json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["id"], "1");
    assert!(error["payload"][0]["message"].is_string(), "{error}");
    // The session forgot the operation before the client saw its end: the id is free again.
    client.text(subscribe).await;
    assert_eq!(client.json().await["type"], "error");
}

#[tokio::test]
async fn a_query_answers_then_completes() {
    let (_test, mut client, _session) = acked(Protocol::Transport, 16).await;
    client
        .text(r#"{"type":"subscribe","id":"q","payload":{"query":"{ __typename }"}}"#)
        .await;
    assert_eq!(
        client.json().await,
        json!({"type": "next", "id": "q", "payload": {"data": {"__typename": "Query"}}})
    );
    assert_eq!(client.json().await, json!({"type": "complete", "id": "q"}));
}

#[tokio::test]
async fn invalid_messages_close_with_the_protocols_code() {
    let (_test, mut client, session) = acked(Protocol::Transport, 16).await;
    client.text("{").await;
    assert_eq!(client.closed().await.0, close::BAD_REQUEST);
    session.await.expect("session ends");

    let (_test, mut client, _session) = acked(Protocol::Transport, 16).await;
    client.send(Ok(Message::binary(vec![1u8]))).await;
    assert_eq!(client.closed().await.0, close::BAD_REQUEST);

    let (_test, mut client, _session) = acked(Protocol::Transport, 16).await;
    let too_big = WsError::Capacity(CapacityError::MessageTooLong {
        size: 2,
        max_size: 1,
    });
    client.send(Err(too_big)).await;
    assert_eq!(
        client.closed().await,
        (close::TOO_BIG, "message too big".into())
    );
}

#[tokio::test]
async fn subscribing_before_init_is_unauthorized() {
    let (_test, mut client, _session) = open(Protocol::Transport, 16);
    client
        .text(r#"{"type":"subscribe","id":"1","payload":{"query":"{ __typename }"}}"#)
        .await;
    assert_eq!(
        client.closed().await,
        (close::UNAUTHORIZED, "Unauthorized".into())
    );
}

#[tokio::test]
async fn no_init_in_time_closes() {
    let (_test, mut client, _session) = open(Protocol::Transport, 16);
    assert_eq!(
        client.closed().await,
        (
            close::INIT_TIMEOUT,
            "Connection initialisation timeout".into()
        )
    );
}

#[tokio::test]
async fn a_refused_handshake_says_why_then_closes() {
    let mut cfg = settings();
    cfg.auth = AuthMode::Handshake;
    let (_test, mut client, _session) = open_with(cfg, Protocol::Legacy, 16);
    client.text(r#"{"type":"connection_init"}"#).await;
    let error = client.json().await;
    assert_eq!(error["type"], "connection_error");
    assert_eq!(client.closed().await.0, close::FORBIDDEN);
}

/// A client that stops reading holds the session up (nothing is lost or reordered), and gets
/// everything once it reads again.
#[tokio::test]
async fn a_slow_reader_gets_everything_in_order() {
    let (_test, mut client, _session) = acked(Protocol::Transport, 1).await;
    const PINGS: usize = 600;
    for n in 0..PINGS {
        client
            .text(&format!(r#"{{"type":"ping","payload":{{"n":{n}}}}}"#))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in 0..PINGS {
        assert_eq!(
            client.json().await,
            json!({"type": "pong", "payload": {"n": n}})
        );
    }
}

#[tokio::test]
async fn the_clients_close_ends_the_session() {
    let (test, mut client, session) = acked(Protocol::Legacy, 16).await;
    assert_eq!(client.json().await, json!({"type": "ka"}));
    assert_eq!(test.app.metrics.connections.load(Relaxed), 1);
    client.send(Ok(Message::Close(None))).await;
    assert!(client.frame().await.is_none());
    session.await.expect("session ends");
    assert_eq!(test.app.metrics.connections.load(Relaxed), 0);
}

#[tokio::test]
async fn shutdown_closes_going_away() {
    let (test, mut client, _session) = acked(Protocol::Transport, 16).await;
    let _ = test.shutdown.send(true);
    assert_eq!(
        client.closed().await,
        (close::GOING_AWAY, "server shutting down".into())
    );
}

#[tokio::test]
async fn a_late_end_of_a_stopped_operation_leaves_the_one_that_took_its_id() {
    use crate::metrics::Format;
    use crate::ws::outgoing::{OpEvent, Out};
    use crate::ws::protocol::ServerMsg;
    use std::collections::HashMap;
    use tokio::sync::mpsc;

    let test = app(settings());
    let (out, mut queued) = mpsc::channel(16);
    let (op_tx, _op_rx) = mpsc::channel(16);
    let (runner, _running) = crate::ws::operations::channel();
    let mut s = super::state::Session::new(
        test.app.clone(),
        Protocol::Legacy,
        None,
        None,
        out,
        runner.clone(),
        op_tx,
    );
    // Operation 1 under id "a" was stopped by the client; operation 2 took the id since.
    s.ops = HashMap::from([(
        "a".to_owned(),
        runner.run(std::future::pending()).numbered(2),
    )]);
    s.next_serial = 3;
    let active = |t: &TestApp| {
        let text = t.app.metrics.render(Format::Prometheus);
        text.lines()
            .find(|l| l.starts_with("walcast_operations_active{protocol=\"graphql-ws\""))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    };
    let end = |serial| OpEvent::Ended {
        msg: ServerMsg::Complete {
            id: "a".into(),
            result: None,
        },
        serial,
    };
    let started = |serial| OpEvent::Started {
        id: "a".into(),
        serial,
    };

    // The old operation's late start and end: neither counts, ends or reaches the client.
    assert!(s.on_op_event(started(1)).await.is_continue());
    assert!(s.on_op_event(end(1)).await.is_continue());
    assert!(s.ops.contains_key("a"), "the new operation was forgotten");
    assert!(
        queued.try_recv().is_err(),
        "the old operation's end was sent"
    );
    assert_ne!(active(&test).as_deref(), Some("1"));

    // The new operation's own start and end do.
    assert!(s.on_op_event(started(2)).await.is_continue());
    assert_eq!(active(&test).as_deref(), Some("1"));
    assert!(s.on_op_event(end(2)).await.is_continue());
    assert!(!s.ops.contains_key("a"));
    assert!(matches!(
        queued.try_recv(),
        Ok(Out::Msg(ServerMsg::Complete { id, .. })) if id == "a"
    ));
    assert_eq!(active(&test).as_deref(), Some("0"));
}
