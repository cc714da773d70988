//! What every scenario shares: the database, the walcast binary, a work directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::db::{Database, PUBLICATION, TABLE};
use crate::walcast::{Walcast, WalcastOptions};

/// Subscription to every row of the bench table, with the fields a client would want.
pub const QUERY_ALL: &str =
    "subscription { bench_mutated { key event data { id bucket sent_at payload } } }";
/// Subscription to the rows of one bucket (`{{i}}` is replaced by the subscription number % 100).
pub const QUERY_BUCKET: &str =
    "subscription { bench_mutated(where: {bucket: {{i}}}) { key event data { id bucket sent_at payload } } }";

pub struct Bench {
    pub db: Database,
    pub walcast_bin: PathBuf,
    pub quick: bool,
    /// Where to put `perf record` profiles of the ingest runs (none when unset).
    pub perf_dir: Option<PathBuf>,
    work: tempfile::TempDir,
    permissions_file: PathBuf,
    runs: usize,
}

impl Bench {
    pub async fn new(
        database_url: Option<String>,
        walcast_bin: PathBuf,
        quick: bool,
    ) -> anyhow::Result<Bench> {
        let work = tempfile::Builder::new()
            .prefix("walcast-bench-")
            .tempdir()
            .context("creating a work directory")?;
        let permissions_file = work.path().join("permissions.toml");
        std::fs::write(
            &permissions_file,
            format!("[public.{TABLE}]\nselect = true\n"),
        )
        .context("writing the permissions file")?;
        let db = Database::open(database_url).await?;
        Ok(Bench {
            db,
            walcast_bin,
            quick,
            perf_dir: None,
            work,
            permissions_file,
            runs: 0,
        })
    }

    /// Options for a walcast reading `slot`, logging to a file of its own.
    pub fn walcast_options(&mut self, slot: &str) -> WalcastOptions {
        self.runs += 1;
        WalcastOptions {
            bin: self.walcast_bin.clone(),
            database_url: self.db.url.clone(),
            replication_url: None,
            slot: slot.to_owned(),
            publication: PUBLICATION.to_owned(),
            tables: TABLE.to_owned(),
            permissions_file: self.permissions_file.clone(),
            max_connections: None,
            client_queue: None,
            retention: None,
            env: Vec::new(),
            log_file: self
                .work
                .path()
                .join(format!("walcast-{}-{slot}.log", self.runs)),
        }
    }

    /// A file of this name in the bench's work directory (for logs of other servers).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub async fn start_walcast(&self, opts: &WalcastOptions) -> anyhow::Result<Walcast> {
        Walcast::start(opts, Duration::from_secs(120)).await
    }

    /// Waits until the server reports `want` live subscriptions.
    pub async fn wait_subscriptions(
        walcast: &Walcast,
        want: u64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        walcast
            .wait_metric(
                "walcast_subscriptions_active",
                want as f64,
                Duration::from_millis(50),
                timeout,
            )
            .await
            .map(drop)
    }
}

/// The walcast release binary: next to this executable, else under the workspace's target dir.
pub fn default_walcast_bin() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("walcast")));
    match sibling {
        Some(path) if path.is_file() => path,
        _ => workspace_root().join("target/release/walcast"),
    }
}

/// The workspace this crate was built in (for `git` and `cargo bench`), else the current dir.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if root.join("Cargo.toml").is_file() {
        root.canonicalize().unwrap_or(root)
    } else {
        PathBuf::from(".")
    }
}

/// Raises the soft open-files limit to the hard one; returns the new soft limit. Children
/// (walcast) inherit it.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}
