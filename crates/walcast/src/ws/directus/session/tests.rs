//! The Directus session over an in-memory socket: frames in, frames out.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;
use tokio::task::JoinHandle;
use ws_stream::tungstenite::Message;

use super::serve;
use crate::config::{AuthMode, ServeArgs};
use crate::ws::close;
use crate::ws::testing::{app, settings, socket, Client, TestApp};

fn open(cfg: ServeArgs) -> (TestApp, Client, JoinHandle<()>) {
    let test = app(cfg);
    let (client, sink, stream) = socket(16);
    let session = tokio::spawn(serve(test.app.clone(), sink, stream, None));
    (test, client, session)
}

fn public() -> ServeArgs {
    let mut cfg = settings();
    cfg.rest_auth = AuthMode::Public;
    cfg
}

#[tokio::test]
async fn pings_are_answered_with_their_uid() {
    let (_test, mut client, _session) = open(public());
    client.text(r#"{"type":"ping","uid":"u1"}"#).await;
    assert_eq!(client.json().await, json!({"type": "pong", "uid": "u1"}));
}

#[tokio::test]
async fn messages_that_do_not_parse_are_answered_not_closed() {
    let (_test, mut client, _session) = open(public());
    client.text("{").await;
    let answer = client.json().await;
    assert_eq!(answer["status"], "error");
    assert_eq!(answer["error"]["code"], "INVALID_PAYLOAD");
    client.text(r#"{"type":"ping"}"#).await;
    assert_eq!(client.json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn a_subscription_to_an_unknown_collection_is_refused() {
    let (_test, mut client, _session) = open(public());
    client
        .text(r#"{"type":"subscribe","collection":"nope","uid":"s"}"#)
        .await;
    let answer = client.json().await;
    assert_eq!(answer["type"], "subscribe");
    assert_eq!(answer["status"], "error");
    assert_eq!(answer["uid"], "s");
}

#[tokio::test]
async fn a_refused_first_token_closes_forbidden() {
    let (test, mut client, session) = open(settings());
    client
        .text(r#"{"type":"auth","access_token":"wrong","uid":"a"}"#)
        .await;
    let answer = client.json().await;
    assert_eq!(answer["type"], "auth");
    assert_eq!(answer["error"]["code"], "AUTH_FAILED");
    assert_eq!(client.closed().await.0, close::FORBIDDEN);
    session.await.expect("session ends");
    assert_eq!(test.app.metrics.connections.load(Relaxed), 0);
}

#[tokio::test]
async fn the_clients_close_ends_the_session() {
    let (_test, mut client, session) = open(public());
    client.send(Ok(Message::Close(None))).await;
    assert!(client.frame().await.is_none());
    session.await.expect("session ends");
}
