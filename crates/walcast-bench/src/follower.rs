//! One subscriber to `bench_mutated` that records every row it receives (its id and arrival
//! time) and the last cursor, so it can move to another node and resume there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, LoadSpec};

/// Every insert into the bench table after `$after` (live from now without it).
const QUERY: &str = "subscription($after: String) { bench_mutated(event: \"create\", after: $after) { cursor data { id sent_at } } }";

/// Every row the client received (id, arrival) and its last cursor.
#[derive(Default)]
pub struct Seen {
    pub rows: Vec<(i64, Instant)>,
    pub cursor: Option<String>,
    /// Why the subscription ended, when the server ended it.
    pub ended: Option<String>,
}

/// A client following `bench_mutated` on one node.
pub struct Follower {
    /// The node it is connected to.
    pub node: usize,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn num(v: &serde_json::Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

/// Subscribes on `node` after `cursor` (live from now without one) and records every row.
pub async fn follow(
    node: usize,
    url: String,
    cursor: Option<String>,
    seen: Arc<Mutex<Seen>>,
) -> anyhow::Result<Follower> {
    let ws = client::open(&LoadSpec::new(url.clone(), QUERY))
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let (mut sink, mut stream) = ws.split();
    let subscribe = serde_json::json!({
        "id": "1",
        "type": "subscribe",
        "payload": { "query": QUERY, "variables": { "after": cursor } },
    });
    sink.send(Message::text(subscribe.to_string()))
        .await
        .context("subscribing")?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let ended = loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                _ = &mut stopped => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => break "closed by the server".to_owned(),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break format!("connection error: {e}"),
            };
            let arrived = Instant::now();
            match client::message_type(&text).as_deref() {
                Some("next") => {}
                Some("ping") => {
                    let _ = sink.send(Message::text(r#"{"type":"pong"}"#)).await;
                    continue;
                }
                Some(_) | None => break format!("unexpected message: {text}"),
            }
            let value: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => break format!("bad JSON ({e}): {text}"),
            };
            let event = &value["payload"]["data"]["bench_mutated"];
            let Some(id) = num(&event["data"]["id"]) else {
                break format!("no id in {text}");
            };
            if let Ok(mut s) = seen.lock() {
                s.rows.push((id, arrived));
                s.cursor = event["cursor"].as_str().map(str::to_owned);
            }
        };
        if let Ok(mut s) = seen.lock() {
            s.ended = Some(ended);
        }
    });
    Ok(Follower { node, stop, task })
}

impl Follower {
    pub async fn close(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Waits until the client holds a row with an id above `id`; returns when it arrived.
pub async fn arrival_after(
    seen: &Mutex<Seen>,
    id: i64,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let start = Instant::now();
    loop {
        {
            let s = seen.lock().map_err(|_| anyhow!("client state poisoned"))?;
            if let Some((_, at)) = s.rows.iter().find(|(n, _)| *n > id) {
                return Ok(*at);
            }
            if let Some(why) = &s.ended {
                bail!("the client's subscription ended: {why}");
            }
        }
        if start.elapsed() > timeout {
            bail!("no row after id {id} reached the client within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
