//! Ordinary database connections: the pool, and the checks made before serving.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use anyhow::{bail, Context};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;
use tokio_postgres_rustls::MakeRustlsConnect;
use walcast_wal::TlsClient;

/// Session settings that make values' text forms the same as pgoutput sends them.
pub const TEXT_SETTINGS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c extra_float_digits=3";

pub fn pool(url: &str) -> anyhow::Result<Pool> {
    // sslmode verify-ca/verify-full, sslrootcert, sslcert and sslkey are ours to handle.
    let (url, tls) = walcast_wal::split_conninfo(url).context("parsing DATABASE_URL")?;
    let mut cfg = tokio_postgres::Config::from_str(&url).context("parsing DATABASE_URL")?;
    let options = match cfg.get_options() {
        Some(existing) => format!("{existing} {TEXT_SETTINGS}"),
        None => TEXT_SETTINGS.to_owned(),
    };
    cfg.options(&options);
    if cfg.get_application_name().is_none() {
        cfg.application_name("walcast");
    }
    let mgr_cfg = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let tls = tls
        .client()
        .context("configuring TLS for DATABASE_URL (the query pool)")?;
    // As libpq, and as the replication connection: no TLS over Unix sockets.
    #[cfg(unix)]
    let tls = {
        let hosts = cfg.get_hosts();
        let all_unix = !hosts.is_empty()
            && hosts
                .iter()
                .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        if all_unix {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        } else {
            tls
        }
    };
    let mgr = match tls {
        None => Manager::from_config(cfg, tokio_postgres::NoTls, mgr_cfg),
        Some(tls) => Manager::from_config(
            cfg,
            PoolTls {
                inner: MakeRustlsConnect::new((*tls.config()).clone()),
                tls,
            },
            mgr_cfg,
        ),
    };
    Pool::builder(mgr)
        .max_size(16)
        .build()
        .context("building the connection pool")
}

/// The pool's TLS: rustls as set up by walcast-wal, with handshake failures explained (which
/// connection, and why a certificate did not verify).
#[derive(Clone)]
struct PoolTls {
    inner: MakeRustlsConnect,
    tls: TlsClient,
}

type RustlsTlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl MakeTlsConnect<Socket> for PoolTls {
    type Stream = RustlsStream;
    type TlsConnect = PoolTlsConnect;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, host: &str) -> Result<PoolTlsConnect, Self::Error> {
        Ok(PoolTlsConnect {
            inner: MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, host)?,
            host: host.to_owned(),
            tls: self.tls.clone(),
        })
    }
}

struct PoolTlsConnect {
    inner: RustlsTlsConnect,
    host: String,
    tls: TlsClient,
}

impl TlsConnect<Socket> for PoolTlsConnect {
    type Stream = RustlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, std::io::Error>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let PoolTlsConnect { inner, host, tls } = self;
        let handshake = inner.connect(stream);
        Box::pin(async move {
            handshake.await.map_err(|e| {
                std::io::Error::new(e.kind(), tls.explain("query pool connection", &host, &e))
            })
        })
    }
}

/// What `serve` needs from the server before it starts; each failure says what to run.
pub async fn preflight(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .context("reading wal_level")?
        .get(0);
    if wal_level != "logical" {
        bail!(
            "wal_level is {wal_level:?}, walcast needs \"logical\".\n  Run: ALTER SYSTEM SET wal_level = logical;\n  then restart Postgres (wal_level takes effect only at start)."
        );
    }
    let row = client
        .query_one(
            "SELECT rolreplication OR rolsuper, current_user::text FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .context("reading the role's privileges")?;
    let (can_replicate, user): (bool, String) = (row.get(0), row.get(1));
    if !can_replicate {
        bail!(
            "role {user:?} may not read a replication slot.\n  Run: ALTER ROLE {} WITH REPLICATION;",
            walcast_wal::quote_ident(&user)
        );
    }
    Ok(())
}
