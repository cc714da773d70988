//! What the sessions' unit tests share: a real `App` over the blog catalog (no database
//! behind its pool), and a client end of an in-memory socket.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use ws_stream::tungstenite::{Error as WsError, Message};

use crate::app::{App, AppParts};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::{Cli, ServeArgs};
use crate::hub::{Hub, HubSource};
use crate::metrics::Metrics;
use crate::permissions::Permissions;

/// A waker that counts its wakes: what a future asks of its task, without a runtime.
#[derive(Default)]
pub struct Wakes(pub std::sync::atomic::AtomicUsize);

impl Wakes {
    pub fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An app, and the shutdown signal its sessions watch.
pub struct TestApp {
    pub app: Arc<App>,
    pub shutdown: watch::Sender<bool>,
}

/// The settings as the defaults give them, for the test to change.
pub fn settings() -> ServeArgs {
    Cli::try_parse_from(["walcast"])
        .expect("default settings")
        .serve
}

pub fn app(cfg: ServeArgs) -> TestApp {
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(
        cfg.client_queue,
        cfg.retention,
        cfg.retention_max_events,
        metrics.clone(),
    );
    let auth = Authenticator::from_config(&AuthConfig {
        tokens_file: None,
        jwt_secret: None,
        jwt_public_key: None,
    })
    .expect("no tokens");
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = App::new(AppParts {
        cfg,
        catalog: crate::ws::directus::testing::catalog(),
        source: Arc::new(HubSource(hub.clone())),
        hub,
        // Never connected: the tests run nothing that reads.
        pool: crate::db::pool("postgres://walcast@127.0.0.1:9/walcast").expect("pool"),
        auth,
        permissions: Permissions::load(None).expect("permissions"),
        metrics,
        shutdown: shutdown_rx,
    });
    TestApp {
        app: Arc::new(app),
        shutdown,
    }
}

/// The server's halves of an in-memory socket.
pub type ServerSink = mpsc::Sender<Message>;
pub type ServerStream = mpsc::UnboundedReceiver<Result<Message, WsError>>;

/// The client's end: frames to the session, frames from it.
pub struct Client {
    pub to_server: mpsc::UnboundedSender<Result<Message, WsError>>,
    pub from_server: mpsc::Receiver<Message>,
}

/// A socket whose server side buffers `capacity` frames the client has not read.
pub fn socket(capacity: usize) -> (Client, ServerSink, ServerStream) {
    let (to_server, stream) = mpsc::unbounded();
    let (sink, from_server) = mpsc::channel(capacity);
    let client = Client {
        to_server,
        from_server,
    };
    (client, sink, stream)
}

const PATIENCE: Duration = Duration::from_secs(5);

impl Client {
    pub async fn send(&mut self, frame: Result<Message, WsError>) {
        self.to_server.send(frame).await.expect("session reading");
    }

    pub async fn text(&mut self, text: &str) {
        self.send(Ok(Message::text(text))).await;
    }

    /// The next frame; None once the server's side is gone.
    pub async fn frame(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.from_server.next())
            .await
            .expect("a frame in time")
    }

    pub async fn json(&mut self) -> Value {
        match self.frame().await {
            Some(Message::Text(text)) => serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The close frame's code and reason, then the end of the stream.
    pub async fn closed(&mut self) -> (u16, String) {
        let close = match self.frame().await {
            Some(Message::Close(Some(frame))) => (u16::from(frame.code), frame.reason.to_string()),
            other => panic!("expected a close frame, got {other:?}"),
        };
        assert!(self.frame().await.is_none(), "nothing after the close");
        close
    }
}
