//! A TCP proxy whose server-to-client direction can be paused.
//!
//! The ingest scenario puts it on walcast's replication connection: paused, it stops reading
//! from the walsender, so the WAL written meanwhile piles up in Postgres, not in walcast, while
//! walcast, its HTTP server and its subscribers stay up. The upstream socket's receive buffer
//! is kept small so that little is decoded and sent ahead while paused; how much was is
//! measured (`pg_stat_replication.sent_lsn`) and reported.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Receive buffer of the proxy's upstream socket (the kernel doubles it).
const UPSTREAM_RCVBUF: u32 = 16 * 1024;
const COPY_BUF: usize = 64 * 1024;

pub struct PausableProxy {
    addr: SocketAddr,
    paused: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PausableProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<PausableProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let (paused, _) = watch::channel(false);
        let pause_rx = paused.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let pause_rx = pause_rx.clone();
                tokio::spawn(async move {
                    if let Err(e) = forward(client, upstream, pause_rx).await {
                        eprintln!("walcast-bench: proxy connection ended: {e:#}");
                    }
                });
            }
        });
        Ok(PausableProxy { addr, paused, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding server-to-client bytes (client-to-server still flows).
    pub fn pause(&self) {
        let _ = self.paused.send(true);
    }

    pub fn resume(&self) {
        let _ = self.paused.send(false);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    mut paused: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let socket = if upstream.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_recv_buffer_size(UPSTREAM_RCVBUF)?;
    let server = socket
        .connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    server.set_nodelay(true)?;
    client.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            if paused.wait_for(|p| !*p).await.is_err() {
                break;
            }
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
    Ok(())
}
