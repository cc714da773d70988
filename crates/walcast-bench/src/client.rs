//! The load generator: many graphql-transport-ws connections, each with some subscriptions,
//! counting `next` messages and, when a payload carries `sent_at` (microseconds since the Unix
//! epoch, as a number or a numeric string), the latency from that time to its arrival. For live
//! queries (PostGraphile's), each `next` is a whole result and each row counts once, at the first
//! result that carries it.
//!
//! It works against any graphql-transport-ws server: nothing in it knows walcast.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::frames::{fast_next, find_sent_at, message_id, result_rows};
use crate::stats::Histogram;

pub(crate) use crate::frames::message_type;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The placeholder in a query replaced by the subscription's number (modulo `--modulo`).
pub const INDEX_PLACEHOLDER: &str = "{{i}}";

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_READ_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `ws://host:port/path`.
    pub url: String,
    /// A subscription document; [`INDEX_PLACEHOLDER`] is replaced per subscription.
    pub query: String,
    /// The placeholder takes `index % modulo` when set, else the plain index (0-based, global).
    pub modulo: Option<u64>,
    pub connections: usize,
    pub subscriptions_per_connection: usize,
    /// Sent as `access_token` in the `connection_init` payload.
    pub token: Option<String>,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// Group latencies by `sent_at` value, to tell when the last subscriber got each row.
    pub track_rows: bool,
    /// Connect and initialise only; subscribe when [`Load::subscribe_all`] is called.
    pub defer_subscribe: bool,
    /// Each `next` is a whole query result (a live query): every row in it (an object with
    /// `id` and `sentAt`) counts once per connection, the first time it appears, with the
    /// latency from its `sentAt` to that result.
    pub live_rows: bool,
}

impl LoadSpec {
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> LoadSpec {
        LoadSpec {
            url: url.into(),
            query: query.into(),
            modulo: None,
            connections: 1,
            subscriptions_per_connection: 1,
            token: None,
            connect_concurrency: 64,
            track_rows: false,
            defer_subscribe: false,
            live_rows: false,
        }
    }

    pub fn total_subscriptions(&self) -> u64 {
        (self.connections * self.subscriptions_per_connection) as u64
    }

    /// The document of subscription number `global` (0-based over all connections).
    pub fn query_for(&self, global: u64) -> String {
        let n = match self.modulo {
            Some(m) if m > 0 => global % m,
            _ => global,
        };
        self.query.replace(INDEX_PLACEHOLDER, &n.to_string())
    }
}

/// Counters shared by every connection task.
struct Shared {
    received: AtomicU64,
    /// When `received` reaches this, `reached_at` is set and `reached` notified.
    target: AtomicU64,
    reached_at: Mutex<Option<Instant>>,
    reached: Notify,
    /// Microseconds since the epoch: rows sent from `[0]` to before `[1]` are the first second
    /// of a run, rows sent from `[2]` on its last; unset while `[0]` is 0.
    windows: [AtomicI64; 3],
    /// With `live_rows`: rows with a lower id (written before the run) are not counted.
    min_id: AtomicI64,
    /// With `live_rows`: query results received, on all connections.
    results: AtomicU64,
}

impl Shared {
    fn count(&self, n: u64) {
        let now = self.received.fetch_add(n, Relaxed) + n;
        let target = self.target.load(Relaxed);
        if target > 0 && now >= target && now - n < target {
            if let Ok(mut at) = self.reached_at.lock() {
                at.get_or_insert_with(Instant::now);
            }
            self.reached.notify_waiters();
        }
    }
}

/// Per row (identified by its `sent_at`): deliveries and the latency of the last one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowStat {
    pub deliveries: u64,
    pub last_latency_us: u64,
}

#[derive(Default)]
struct ConnOutcome {
    latency: Histogram,
    rows: HashMap<i64, RowStat>,
    received: u64,
    errors: Vec<String>,
    close: Option<String>,
    /// Ids the server sent `complete` for (a shutdown completes every subscription).
    completed: std::collections::HashSet<String>,
    /// The close code of the server's close frame.
    close_code: Option<u16>,
    /// Latencies (µs) of rows sent in the first and in the last second of the run.
    first_second: Vec<u32>,
    last_second: Vec<u32>,
    /// With `live_rows`: the row ids seen, and the results received.
    seen: std::collections::HashSet<i64>,
    results: u64,
}

impl ConnOutcome {
    fn on_next(&mut self, sent: Option<i64>, now: i64, spec: &LoadSpec, shared: &Shared) {
        self.received += 1;
        shared.count(1);
        let Some(sent) = sent else { return };
        let latency = now.saturating_sub(sent).max(0) as u64;
        self.latency.record(latency);
        self.window(sent, latency, shared);
        if spec.track_rows {
            let row = self.rows.entry(sent).or_default();
            row.deliveries += 1;
            row.last_latency_us = row.last_latency_us.max(latency);
        }
    }

    /// A whole live query result: its rows not seen before on this connection are delivered.
    fn on_result(&mut self, text: &str, now: i64, shared: &Shared) {
        let Some(rows) = result_rows(text) else {
            self.errors
                .push(format!("not a query result: {}", abbreviate(text)));
            return;
        };
        self.results += 1;
        shared.results.fetch_add(1, Relaxed);
        let min = shared.min_id.load(Relaxed);
        let mut new = 0;
        for (id, sent) in rows {
            if id < min || !self.seen.insert(id) {
                continue;
            }
            new += 1;
            let latency = now.saturating_sub(sent).max(0) as u64;
            self.latency.record(latency);
            self.window(sent, latency, shared);
        }
        self.received += new;
        shared.count(new);
    }

    fn window(&mut self, sent: i64, latency: u64, shared: &Shared) {
        let from = shared.windows[0].load(Relaxed);
        if from == 0 || sent < from {
            return;
        }
        let latency = u32::try_from(latency).unwrap_or(u32::MAX);
        if sent < shared.windows[1].load(Relaxed) {
            self.first_second.push(latency);
        } else if sent >= shared.windows[2].load(Relaxed) {
            self.last_second.push(latency);
        }
    }
}

/// What a run of the load generator saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub connections: usize,
    pub subscriptions: u64,
    pub received: u64,
    /// Latency of every `next` whose payload carried `sent_at`, in microseconds.
    pub latency: Histogram,
    /// With `track_rows`: per row, the latency to the last subscriber that received it.
    pub last_subscriber: Histogram,
    /// After [`Load::set_windows`]: latencies of the rows sent in the first and the last second.
    pub first_second: Histogram,
    pub last_second: Histogram,
    /// With `live_rows`: the query results received (each may carry many rows).
    pub results: u64,
    pub rows: HashMap<i64, RowStat>,
    /// GraphQL `error` messages and other failures, with how often each occurred.
    pub errors: BTreeMap<String, u64>,
    /// Connections the server closed, by close code and reason.
    pub closes: BTreeMap<String, u64>,
    pub connect_errors: BTreeMap<String, u64>,
    /// Connections closed with 1001 (going away) that had a `complete` for every subscription.
    pub completed_and_going_away: u64,
    /// Connections the server closed with 1001.
    pub going_away: u64,
    /// `complete` messages on connections closed with 1001.
    pub completes: u64,
}

impl LoadReport {
    /// A short human summary for the `load` command and logs.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "connections {}  subscriptions {}  received {}",
            self.connections, self.subscriptions, self.received
        );
        if self.latency.count() > 0 {
            out.push_str(&format!(
                "\nlatency ms: p50 {}  p95 {}  p99 {}  max {}  (n = {})",
                crate::stats::ms(self.latency.quantile(0.5)),
                crate::stats::ms(self.latency.quantile(0.95)),
                crate::stats::ms(self.latency.quantile(0.99)),
                crate::stats::ms(self.latency.max()),
                self.latency.count()
            ));
        }
        if self.last_subscriber.count() > 0 {
            out.push_str(&format!(
                "\nlatency to the last subscriber per row ms: p50 {}  p99 {}  max {}  (rows = {})",
                crate::stats::ms(self.last_subscriber.quantile(0.5)),
                crate::stats::ms(self.last_subscriber.quantile(0.99)),
                crate::stats::ms(self.last_subscriber.max()),
                self.last_subscriber.count()
            ));
        }
        for (label, map) in [
            ("connect error", &self.connect_errors),
            ("error", &self.errors),
            ("closed", &self.closes),
        ] {
            for (what, n) in map {
                out.push_str(&format!("\n{label} x{n}: {what}"));
            }
        }
        out
    }
}

/// A running load: connections open, subscriptions live.
pub struct Load {
    spec: Arc<LoadSpec>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    go: watch::Sender<bool>,
    tasks: Vec<JoinHandle<ConnOutcome>>,
    connect_errors: BTreeMap<String, u64>,
}

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Load {
    /// Opens every connection (`connect_concurrency` handshakes at a time), waits for each
    /// `connection_ack`, and sends the subscriptions unless deferred. Connections that fail are
    /// counted in [`Load::connect_errors`]; the others run.
    pub async fn start(spec: LoadSpec) -> Load {
        let spec = Arc::new(spec);
        let shared = Arc::new(Shared {
            received: AtomicU64::new(0),
            target: AtomicU64::new(0),
            reached_at: Mutex::new(None),
            reached: Notify::new(),
            windows: Default::default(),
            min_id: AtomicI64::new(i64::MIN),
            results: AtomicU64::new(0),
        });
        let (stop, _) = watch::channel(false);
        let (go, _) = watch::channel(false);
        let mut load = Load {
            spec: spec.clone(),
            shared,
            stop,
            go,
            tasks: Vec::with_capacity(spec.connections),
            connect_errors: BTreeMap::new(),
        };
        let opened: Vec<(usize, anyhow::Result<Ws>)> = futures::stream::iter(0..spec.connections)
            .map(|i| {
                let spec = spec.clone();
                async move { (i, open(&spec).await) }
            })
            .buffer_unordered(spec.connect_concurrency.max(1))
            .collect()
            .await;
        for (index, result) in opened {
            match result {
                Ok(ws) => {
                    let task = tokio::spawn(run_connection(
                        ws,
                        spec.clone(),
                        index,
                        load.shared.clone(),
                        load.stop.subscribe(),
                        load.go.subscribe(),
                    ));
                    load.tasks.push(task);
                }
                Err(e) => *load.connect_errors.entry(format!("{e:#}")).or_default() += 1,
            }
        }
        load
    }

    pub fn connected(&self) -> usize {
        self.tasks.len()
    }

    pub fn connect_errors(&self) -> &BTreeMap<String, u64> {
        &self.connect_errors
    }

    /// Subscriptions of the connections that are open.
    pub fn subscriptions(&self) -> u64 {
        (self.tasks.len() * self.spec.subscriptions_per_connection) as u64
    }

    /// Sends the subscriptions of a load started with `defer_subscribe`.
    pub fn subscribe_all(&self) {
        let _ = self.go.send(true);
    }

    /// `next` messages received so far.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Relaxed)
    }

    /// Sorts the latencies of rows sent (by their `sent_at`, µs since the epoch) in
    /// `[start, start + 1 s)` into the first second and from `last_from` on into the last.
    pub fn set_windows(&self, start: i64, last_from: i64) {
        let w = &self.shared.windows;
        w[1].store(start + 1_000_000, Relaxed);
        w[2].store(last_from, Relaxed);
        w[0].store(start, Relaxed);
    }

    /// With `live_rows`: query results received so far (the first of each subscription is its
    /// initial result).
    pub fn results(&self) -> u64 {
        self.shared.results.load(Relaxed)
    }

    /// With `live_rows`: rows with an id below this are not counted.
    pub fn ignore_ids_below(&self, id: i64) {
        self.shared.min_id.store(id, Relaxed);
    }

    /// Notes the instant `target` messages have been received in all, for [`Load::wait_for`].
    pub fn arm(&self, target: u64) {
        self.shared.target.store(target, Relaxed);
    }

    /// Waits until `target` messages were received in all; gives up after `idle` without any
    /// progress. Returns when the target was reached (`None` when it was not).
    pub async fn wait_for(&self, target: u64, idle: Duration) -> Option<Instant> {
        self.shared.target.store(target, Relaxed);
        let mut last = self.received();
        let mut last_progress = Instant::now();
        loop {
            let notified = self.shared.reached.notified();
            if self.received() >= target {
                let at = self.shared.reached_at.lock().ok().and_then(|a| *a);
                return Some(at.unwrap_or_else(Instant::now));
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            let now = self.received();
            if now != last {
                last = now;
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= idle {
                return None;
            }
        }
    }

    /// Closes every connection and gathers what they saw.
    pub async fn finish(self) -> LoadReport {
        let _ = self.stop.send(true);
        let mut report = LoadReport {
            connections: self.tasks.len(),
            subscriptions: self.subscriptions(),
            connect_errors: self.connect_errors,
            ..LoadReport::default()
        };
        for task in self.tasks {
            let outcome = match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    *report
                        .errors
                        .entry(format!("connection task: {e}"))
                        .or_default() += 1;
                    continue;
                }
                Err(_) => {
                    *report
                        .errors
                        .entry("connection did not close within 10 s".into())
                        .or_default() += 1;
                    continue;
                }
            };
            report.received += outcome.received;
            report.results += outcome.results;
            report.latency.merge(&outcome.latency);
            for &v in &outcome.first_second {
                report.first_second.record(u64::from(v));
            }
            for &v in &outcome.last_second {
                report.last_second.record(u64::from(v));
            }
            for (row, stat) in outcome.rows {
                let entry = report.rows.entry(row).or_default();
                entry.deliveries += stat.deliveries;
                entry.last_latency_us = entry.last_latency_us.max(stat.last_latency_us);
            }
            for e in outcome.errors {
                *report.errors.entry(e).or_default() += 1;
            }
            // A `complete` is expected only as the server goes away; otherwise it is an error.
            if outcome.close_code == Some(1001) {
                report.going_away += 1;
                report.completes += outcome.completed.len() as u64;
                if outcome.completed.len() >= self.spec.subscriptions_per_connection {
                    report.completed_and_going_away += 1;
                }
            } else if !outcome.completed.is_empty() {
                *report
                    .errors
                    .entry("server completed a subscription".into())
                    .or_default() += outcome.completed.len() as u64;
            }
            if let Some(c) = outcome.close {
                *report.closes.entry(c).or_default() += 1;
            }
        }
        for stat in report.rows.values() {
            report.last_subscriber.record(stat.last_latency_us);
        }
        report
    }
}

/// Connects, sends `connection_init`, waits for `connection_ack`.
pub(crate) async fn open(spec: &LoadSpec) -> anyhow::Result<Ws> {
    let mut request = spec
        .url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {:?}", spec.url))?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("graphql-transport-ws"),
    );
    // Small read buffers: the default (128 KiB) is touched in full by every connection.
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow!("WebSocket handshake timed out"))?
        .context("WebSocket handshake")?;
    let payload = match &spec.token {
        Some(token) => serde_json::json!({ "access_token": token }),
        None => serde_json::json!({}),
    };
    let init = serde_json::json!({ "type": "connection_init", "payload": payload });
    ws.send(Message::text(init.to_string()))
        .await
        .context("sending connection_init")?;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no connection_ack within {HANDSHAKE_TIMEOUT:?}"))?;
        match frame {
            Some(Ok(Message::Text(text))) => match message_type(&text).as_deref() {
                Some("connection_ack") => return Ok(ws),
                Some("ping") => {
                    ws.send(Message::text(r#"{"type":"pong"}"#)).await?;
                }
                _ => bail!(
                    "unexpected message before connection_ack: {}",
                    abbreviate(&text)
                ),
            },
            Some(Ok(Message::Close(frame))) => {
                bail!("closed before connection_ack: {}", describe_close(frame))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("waiting for connection_ack"),
            None => bail!("closed before connection_ack"),
        }
    }
}

fn describe_close(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("{} {}", u16::from(f.code), f.reason),
        None => "no close frame".into(),
    }
}

fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

async fn send_subscriptions(
    sink: &mut SplitSink<Ws, Message>,
    spec: &LoadSpec,
    index: usize,
) -> anyhow::Result<()> {
    let per = spec.subscriptions_per_connection;
    for k in 0..per {
        let global = (index * per + k) as u64;
        let msg = serde_json::json!({
            "id": (k + 1).to_string(),
            "type": "subscribe",
            "payload": { "query": spec.query_for(global) },
        });
        sink.feed(Message::text(msg.to_string())).await?;
    }
    sink.flush().await?;
    Ok(())
}

async fn run_connection(
    ws: Ws,
    spec: Arc<LoadSpec>,
    index: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
) -> ConnOutcome {
    let (mut sink, mut stream): (SplitSink<Ws, Message>, SplitStream<Ws>) = ws.split();
    let mut out = ConnOutcome::default();
    let mut subscribed = false;
    if !spec.defer_subscribe {
        if let Err(e) = send_subscriptions(&mut sink, &spec, index).await {
            out.errors.push(format!("subscribing: {e}"));
            return out;
        }
        subscribed = true;
    }
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let now = now_micros();
                    if !spec.live_rows {
                        if let Some(sent) = fast_next(&text) {
                            out.on_next(sent, now, &spec, &shared);
                            continue;
                        }
                    }
                    match message_type(&text).as_deref() {
                        Some("next") if spec.live_rows => out.on_result(&text, now, &shared),
                        Some("next") => out.on_next(find_sent_at(&text), now, &spec, &shared),
                        Some("ping") => {
                            if sink.send(Message::text(r#"{"type":"pong"}"#)).await.is_err() {
                                break;
                            }
                        }
                        Some("error") => out.errors.push(format!("GraphQL error: {}", abbreviate(&text))),
                        Some("complete") => {
                            let id = message_id(&text).unwrap_or_default();
                            out.completed.insert(id);
                        }
                        Some(_) => {}
                        None => out.errors.push(format!("not a graphql-transport-ws message: {}", abbreviate(&text))),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    out.close_code = frame.as_ref().map(|f| u16::from(f.code));
                    if !*stop.borrow() {
                        out.close = Some(describe_close(frame));
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if !*stop.borrow() {
                        out.close = Some(format!("connection error: {e}"));
                    }
                    break;
                }
                None => {
                    if !*stop.borrow() {
                        out.close = Some("connection closed without a close frame".into());
                    }
                    break;
                }
            },
            changed = go.changed(), if !subscribed => {
                if changed.is_err() {
                    break;
                }
                subscribed = true;
                if let Err(e) = send_subscriptions(&mut sink, &spec, index).await {
                    out.errors.push(format!("subscribing: {e}"));
                    break;
                }
            }
            _ = stop.changed() => {
                let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(frame)))).await;
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder() {
        let mut spec = LoadSpec::new(
            "ws://x",
            "subscription { t(where: {bucket: {{i}}}) { id } }",
        );
        spec.modulo = Some(100);
        assert_eq!(
            spec.query_for(250),
            "subscription { t(where: {bucket: 50}) { id } }"
        );
        spec.modulo = None;
        assert!(spec.query_for(250).contains("bucket: 250"));
    }
}
