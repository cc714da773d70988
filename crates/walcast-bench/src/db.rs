//! The database under the benchmark: a throw-away cluster (or `DATABASE_URL`), the `bench`
//! table, its publication, the writer and the replication slot helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio_postgres::{Client, NoTls};
use walcast_pgcluster::{ClusterOptions, PgCluster};

/// The table every scenario writes; its GraphQL subscription field is `bench_mutated`.
pub const TABLE: &str = "bench";
/// Publication shared by walcast and the pg_recvlogical baseline.
pub const PUBLICATION: &str = "walcast_bench";
/// The comment that marks a `bench` table as this tool's own (safe to write to and drop).
const MARKER: &str = "walcast-bench";

/// Server settings of the throw-away cluster, beyond walcast-pgcluster's defaults
/// (`wal_level=logical`, `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`).
pub const CLUSTER_SETTINGS: &[(&str, &str)] = &[
    // Logical decoding reads only flushed WAL: with asynchronous commit a change waits for the
    // WAL writer (up to wal_writer_delay, 200 ms), which would dominate commit-to-client latency.
    // fsync stays off, so a flush costs little.
    ("synchronous_commit", "on"),
    // The ingest scenario holds a replication stream paused for as long as writing takes.
    ("wal_sender_timeout", "0"),
    ("shared_buffers", "256MB"),
    ("max_wal_size", "4GB"),
    ("max_connections", "200"),
];

pub struct Database {
    pub url: String,
    /// TCP address of the server (what the proxy forwards to).
    pub upstream: SocketAddr,
    /// Where pg_recvlogical is.
    pub bin_dir: PathBuf,
    pub server_version: String,
    pub server_version_num: i32,
    client: Client,
    own_table: bool,
    /// A throw-away cluster of this process: its backends are local processes.
    pub own_cluster: bool,
    // Dropped last: stops the throw-away server.
    _cluster: Option<PgCluster>,
}

/// Connects; the connection runs on a task of its own.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("walcast-bench: database connection: {e}");
        }
    });
    Ok(client)
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// `url` with its host and port replaced by `addr` (URL form only).
pub fn with_address(url: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow!("a postgres:// URL is needed to route replication through the proxy")
    })?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let userinfo = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    Ok(format!("{scheme}://{userinfo}{addr}{tail}"))
}

async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let config: tokio_postgres::Config = url.parse().context("parsing DATABASE_URL")?;
    let host = config
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => Some(name.clone()),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving {host}:{port}"))?;
    let first = addrs.next();
    first.ok_or_else(|| anyhow!("{host}:{port} resolves to nothing"))
}

impl Database {
    /// A fresh throw-away cluster, or the database of `url`.
    pub async fn open(url: Option<String>) -> anyhow::Result<Database> {
        let (cluster, url, bin_dir) = match url {
            Some(url) => {
                let bin_dir = PgCluster::find_bin_dir()
                    .context("finding pg_recvlogical (set WALCAST_PG_BINDIR)")?;
                (None, url, bin_dir)
            }
            None => {
                let opts = ClusterOptions {
                    extra_conf: CLUSTER_SETTINGS
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    port: None,
                };
                let cluster = tokio::task::spawn_blocking(move || PgCluster::start_with(&opts))
                    .await
                    .context("starting Postgres")?
                    .context("starting a throw-away Postgres cluster")?;
                let url = cluster.url("postgres");
                let bin_dir = cluster.bin_dir().to_path_buf();
                (Some(cluster), url, bin_dir)
            }
        };
        let upstream = resolve(&url).await?;
        let client = connect(&url).await?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int4, current_setting('wal_level')",
                &[],
            )
            .await?;
        let wal_level: String = row.get(2);
        if wal_level != "logical" {
            bail!("wal_level is {wal_level:?} on this database; logical is needed");
        }
        let mut db = Database {
            url,
            upstream,
            bin_dir,
            server_version: row.get(0),
            server_version_num: row.get(1),
            client,
            own_table: false,
            own_cluster: cluster.is_some(),
            _cluster: cluster,
        };
        db.setup().await?;
        Ok(db)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A second connection (the writer runs on its own).
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.url).await
    }

    /// Creates the `bench` table and the publication; refuses a `bench` table it did not make.
    async fn setup(&mut self) -> anyhow::Result<()> {
        let existing = self
            .client
            .query_one(
                "SELECT to_regclass('public.bench') IS NOT NULL, \
                 coalesce(obj_description(to_regclass('public.bench'), 'pg_class'), '')",
                &[],
            )
            .await?;
        let exists: bool = existing.get(0);
        let comment: String = existing.get(1);
        if exists && comment != MARKER {
            bail!("the database has a table public.bench that walcast-bench did not create; use another database");
        }
        if !exists {
            self.client
                .batch_execute(&format!(
                    "CREATE TABLE public.{TABLE} (id int8 PRIMARY KEY, bucket int4 NOT NULL, \
                     sent_at int8 NOT NULL, payload text NOT NULL); \
                     COMMENT ON TABLE public.{TABLE} IS '{MARKER}'"
                ))
                .await
                .context("creating the bench table")?;
        }
        self.own_table = true;
        let has_pub = self
            .client
            .query_one(
                "SELECT count(*) > 0 FROM pg_publication WHERE pubname = $1",
                &[&PUBLICATION],
            )
            .await?
            .get::<_, bool>(0);
        if !has_pub {
            self.client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {PUBLICATION} FOR TABLE public.{TABLE}"
                ))
                .await
                .context("creating the publication")?;
        }
        Ok(())
    }

    /// Removes the slots, the publication and the table (for a `DATABASE_URL` run).
    pub async fn cleanup(&self, slots: &[&str]) -> anyhow::Result<()> {
        for slot in slots {
            self.drop_slot(slot).await?;
        }
        if self.own_table {
            self.client
                .batch_execute(&format!(
                    "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS public.{TABLE}"
                ))
                .await?;
        }
        Ok(())
    }

    /// The next unused id.
    pub async fn next_id(&self) -> anyhow::Result<i64> {
        let row = self
            .client
            .query_one(
                &format!("SELECT coalesce(max(id), 0) + 1 FROM public.{TABLE}"),
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Inserts ids `from..=to` in one transaction, with `bucket = id % 100` and `sent_at` the
    /// server's clock in microseconds at insert time.
    pub async fn insert(client: &Client, from: i64, to: i64) -> anyhow::Result<()> {
        client
            .execute(
                "INSERT INTO public.bench (id, bucket, sent_at, payload) \
                 SELECT g, (g % 100)::int4, (extract(epoch FROM clock_timestamp()) * 1000000)::int8, 'row ' || g \
                 FROM generate_series($1::int8, $2::int8) g",
                &[&from, &to],
            )
            .await
            .context("inserting rows")?;
        Ok(())
    }

    /// Writes `rows` rows from `first` on, `per_tx` per transaction.
    pub async fn write_rows(&self, first: i64, rows: u64, per_tx: u64) -> anyhow::Result<()> {
        let last = first + rows as i64 - 1;
        let mut from = first;
        while from <= last {
            let to = (from + per_tx as i64 - 1).min(last);
            Self::insert(&self.client, from, to).await?;
            from = to + 1;
        }
        Ok(())
    }

    /// `pg_current_wal_lsn()` as text.
    pub async fn current_lsn(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0))
    }

    /// Bytes of WAL from `a` to `b`.
    pub async fn lsn_diff(&self, b: &str, a: &str) -> anyhow::Result<f64> {
        let row = self
            .client
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                &[&b, &a],
            )
            .await?;
        Ok(row.get(0))
    }

    /// How far the walsender of `slot` has sent.
    pub async fn sent_lsn(&self, slot: &str) -> anyhow::Result<Option<String>> {
        let row = self
            .client
            .query_opt(
                "SELECT r.sent_lsn::text FROM pg_stat_replication r \
                 JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $1",
                &[&slot],
            )
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Process id of the walsender reading `slot`.
    pub async fn walsender_pid(&self, slot: &str) -> anyhow::Result<Option<i32>> {
        let row = self
            .client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Drops `slot` if it exists, waiting (up to 10 s) for its reader to let go of it.
    pub async fn drop_slot(&self, slot: &str) -> anyhow::Result<()> {
        for _ in 0..200 {
            let row = self
                .client
                .query_opt(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await?;
            match row {
                None => return Ok(()),
                Some(r) if !r.get::<_, bool>(0) => {
                    self.client
                        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                        .await
                        .with_context(|| format!("dropping slot {slot}"))?;
                    return Ok(());
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        bail!("replication slot {slot} stayed active")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_and_redacts_urls() {
        let addr: SocketAddr = "127.0.0.1:6000".parse().expect("addr");
        assert_eq!(
            with_address("postgres://u:p@db.example:5432/app?sslmode=disable", addr).expect("url"),
            "postgres://u:p@127.0.0.1:6000/app?sslmode=disable"
        );
        assert_eq!(
            with_address("postgresql://db/app", addr).expect("url"),
            "postgresql://127.0.0.1:6000/app"
        );
        assert!(with_address("host=db dbname=app", addr).is_err());
        assert_eq!(
            redact("postgres://u:secret@db:5432/app"),
            "postgres://u@db:5432/app"
        );
    }
}
