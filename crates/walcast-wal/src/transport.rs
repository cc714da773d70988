//! The byte stream under the protocol: TCP, TLS over TCP, or a Unix socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::config::Target;
use crate::tls::TlsClient;
use crate::{TlsProblem, WalError};

pub(crate) enum Transport {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Transport {
    pub async fn open(target: &Target) -> Result<Transport, WalError> {
        let connect_err = |source| WalError::Connect {
            addr: target.to_string(),
            source,
        };
        match target {
            Target::Tcp {
                addr: Some(addr),
                port,
                ..
            } => tcp(TcpStream::connect((*addr, *port))
                .await
                .map_err(connect_err)?),
            Target::Tcp { host, port, .. } => tcp(TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(connect_err)?),
            #[cfg(unix)]
            Target::Unix { path } => Ok(Transport::Unix(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?,
            )),
            #[cfg(not(unix))]
            Target::Unix { .. } => Err(connect_err(io::Error::new(
                io::ErrorKind::Unsupported,
                "Unix sockets are not available on this platform",
            ))),
        }
    }

    /// Wraps a TCP stream in TLS, after the server accepted an SSLRequest; the server's
    /// certificate is checked as `tls` says, against `host`.
    pub async fn start_tls(self, host: &str, tls: &TlsClient) -> Result<Transport, WalError> {
        let Transport::Tcp(tcp) = self else {
            return Err(WalError::tls(
                TlsProblem::Config,
                "TLS is only used over TCP",
            ));
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            WalError::tls(
                TlsProblem::Config,
                format!("invalid server name {host:?}: {e}"),
            )
        })?;
        let stream = tokio_rustls::TlsConnector::from(tls.config())
            .connect(name, tcp)
            .await
            .map_err(|e| tls.explain("replication connection", host, &e))?;
        Ok(Transport::Tls(Box::new(stream)))
    }
}

fn tcp(stream: TcpStream) -> Result<Transport, WalError> {
    // Status updates are small and latency matters more than packet count.
    stream
        .set_nodelay(true)
        .map_err(WalError::io("setting TCP_NODELAY"))?;
    Ok(Transport::Tcp(stream))
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
