//! Ordinary database connections: the pool, and the checks made before serving.

use std::str::FromStr;

use anyhow::{bail, Context};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Session settings that make values' text forms the same as pgoutput sends them.
pub const TEXT_SETTINGS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c extra_float_digits=3";

pub fn pool(url: &str) -> anyhow::Result<Pool> {
    let mut cfg = tokio_postgres::Config::from_str(url).context("parsing DATABASE_URL")?;
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
    let mgr = if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        Manager::from_config(cfg, tokio_postgres::NoTls, mgr_cfg)
    } else {
        let tls = walcast_wal::tls_client_config().context("configuring TLS for DATABASE_URL")?;
        Manager::from_config(
            cfg,
            tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone()),
            mgr_cfg,
        )
    };
    Pool::builder(mgr)
        .max_size(16)
        .build()
        .context("building the connection pool")
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
