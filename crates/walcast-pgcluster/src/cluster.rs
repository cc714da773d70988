//! The cluster handle: initdb, start/stop through pg_ctl, SQL through psql.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::binaries::{find_bin_dir, find_psql, which};
use crate::config;
use crate::privilege::RunAs;
use crate::process::{combined_output, describe, run, scrub_env};
use crate::quote::{quote_ident, quote_literal};
use crate::session::PsqlSession;
use crate::watchdog::Watchdog;
use crate::ClusterError;

const HOST: &str = "127.0.0.1";
const SUPERUSER: &str = "postgres";
/// Seconds pg_ctl waits for start/stop; generous because CI may start many clusters at once.
const PG_CTL_TIMEOUT: &str = "60";
/// Start attempts when the picked free port gets taken before the server binds it.
const PORT_ATTEMPTS: usize = 8;
const LOG_TAIL_LINES: usize = 40;
/// Unix socket paths are limited to 107 bytes; the socket lives in the cluster's root dir.
const MAX_SOCKET_PATH: usize = 107;
/// Length of `/walcast-pg-XXXXXX/.s.PGSQL.65535.lock` appended to the temp base dir.
const SOCKET_SUFFIX_LEN: usize = 38;

/// How to set up a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra `postgresql.conf` settings, applied after the defaults (so they may override them).
    /// Values are single-quoted automatically unless already quoted.
    pub extra_conf: Vec<(String, String)>,
    /// Fixed TCP port; `None` picks a free one (and retries another if it gets taken).
    pub port: Option<u16>,
}

/// How to set up a standby ([`PgCluster::start_standby`]).
#[derive(Debug, Clone, Default)]
pub struct StandbyOptions {
    /// A physical slot created on the primary and used by the standby (`primary_slot_name`);
    /// with `hot_standby_feedback` it keeps the primary from removing rows or WAL the standby's
    /// logical slots still need.
    pub primary_slot_name: Option<String>,
    /// Copy the stopped primary's data dir even when pg_basebackup is available.
    pub force_copy: bool,
    /// Extra `postgresql.conf` settings of the standby, applied last.
    pub extra_conf: Vec<(String, String)>,
}

/// A throw-away Postgres cluster in a temporary directory, listening on 127.0.0.1.
///
/// Layout of the temporary root dir: `data/` (the data dir), `postgres.log` (server log), and
/// the Unix socket. Dropping the handle stops the server and removes the root dir; so does the
/// exit of the owning process by any means (see `watchdog`).
pub struct PgCluster {
    bin_dir: PathBuf,
    /// `None` when there is none: the npm builds ship no psql, and a machine with only those
    /// has none on PATH either. Only [`PgCluster::psql`] needs it.
    psql: Option<PathBuf>,
    run_as: RunAs,
    /// `None` once persisted: then nothing is cleaned up.
    root: Option<TempDir>,
    root_path: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    major_version: u32,
    watchdog: Option<Watchdog>,
}

impl PgCluster {
    /// Starts a cluster with default options.
    pub fn start() -> Result<PgCluster, ClusterError> {
        Self::start_with(&ClusterOptions::default())
    }

    /// Creates a fresh data dir with initdb and starts the server on it.
    pub fn start_with(opts: &ClusterOptions) -> Result<PgCluster, ClusterError> {
        Self::start_with_bin_dir(find_bin_dir()?, opts)
    }

    /// As [`Self::start_with`], with the server binaries of `bin_dir` instead of the ones the
    /// search finds (a downloaded build, say).
    pub fn start_with_bin_dir(
        bin_dir: PathBuf,
        opts: &ClusterOptions,
    ) -> Result<PgCluster, ClusterError> {
        let mut cluster = Self::init(bin_dir)?;
        cluster.start_on_port(opts, free_port)?;
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.data_dir.display(),
            version = cluster.major_version,
            "Postgres cluster started"
        );
        Ok(cluster)
    }

    /// A configured data dir, server not started yet.
    fn init(bin_dir: PathBuf) -> Result<PgCluster, ClusterError> {
        let mut cluster = Self::empty(bin_dir)?;
        cluster.initdb()?;
        cluster.major_version = read_major_version(&cluster.data_dir)?;
        config::prepare_data_dir(&cluster.data_dir)?;
        Ok(cluster)
    }

    /// A handle on a fresh root dir with no data dir yet, its watchdog armed.
    fn empty(bin_dir: PathBuf) -> Result<PgCluster, ClusterError> {
        let psql = find_psql(&bin_dir);
        let run_as = RunAs::detect()?;
        let root = make_root_dir(&run_as)?;
        let root_path = root.path().to_path_buf();
        run_as.give(&root_path)?;

        let mut cluster = PgCluster {
            data_dir: root_path.join("data"),
            log_file: root_path.join("postgres.log"),
            bin_dir,
            psql,
            run_as,
            root: Some(root),
            root_path,
            port: 0,
            major_version: 0,
            watchdog: None,
        };
        // Armed before initdb, so even a half-made cluster is removed if this process dies.
        let stop = cluster.pg_ctl_command(&["stop", "-m", "immediate", "-w"]);
        cluster.watchdog = Some(Watchdog::spawn(&cluster.root_path, &stop)?);
        Ok(cluster)
    }

    /// Starts a physical standby of this cluster, streaming from it, in a directory and on a
    /// port of its own (removed on drop like any cluster).
    ///
    /// The base backup is taken with `pg_basebackup -R -X stream` when a `pg_basebackup` of this
    /// server's major version is found (in the bin dir, else on PATH). Otherwise (the npm builds
    /// ship none, and pg_basebackup refuses newer servers) this cluster is stopped cleanly, its
    /// data dir copied without its replication slots, and started again. Both sides keep
    /// `wal_level = logical`; the standby runs with `hot_standby` and `hot_standby_feedback`,
    /// so it can serve reads and, from Postgres 16 on, logical decoding.
    pub fn start_standby(&mut self, opts: &StandbyOptions) -> Result<PgCluster, ClusterError> {
        if let Some(slot) = &opts.primary_slot_name {
            self.psql(
                "postgres",
                &format!(
                    "SELECT 1 FROM pg_create_physical_replication_slot({}, true)",
                    quote_literal(slot)
                ),
            )?;
        }
        let mut standby = Self::empty(self.bin_dir.clone())?;
        match (opts.force_copy, self.find_pg_basebackup()) {
            (false, Some(tool)) => self.base_backup(&tool, &standby)?,
            _ => self.cold_copy(&standby)?,
        }
        // Written by the server account, like pg_basebackup -R does.
        let signal = standby.data_dir.join("standby.signal");
        fs::write(&signal, "")
            .map_err(|e| ClusterError::io(format!("writing {}", signal.display()), e))?;
        standby.run_as.give(&signal)?;
        standby.major_version = read_major_version(&standby.data_dir)?;

        let mut extra = vec![
            ("hot_standby".to_owned(), "on".to_owned()),
            ("hot_standby_feedback".to_owned(), "on".to_owned()),
            (
                "primary_conninfo".to_owned(),
                format!(
                    "host={HOST} port={} user={SUPERUSER} application_name=walcast_standby",
                    self.port
                ),
            ),
        ];
        if let Some(slot) = &opts.primary_slot_name {
            extra.push(("primary_slot_name".to_owned(), slot.clone()));
        }
        extra.extend(opts.extra_conf.iter().cloned());
        let conf = ClusterOptions {
            extra_conf: extra,
            port: None,
        };
        standby.start_on_port(&conf, free_port)?;
        tracing::info!(
            port = standby.port,
            primary_port = self.port,
            data_dir = %standby.data_dir.display(),
            "Postgres standby started"
        );
        Ok(standby)
    }

    /// Promotes a standby to a primary (`pg_ctl promote`), waiting until it accepts writes.
    pub fn promote(&mut self) -> Result<(), ClusterError> {
        self.pg_ctl(&["promote", "-w", "-t", PG_CTL_TIMEOUT])
    }

    /// Whether the server is a standby (`pg_is_in_recovery()`).
    pub fn is_in_recovery(&self) -> Result<bool, ClusterError> {
        Ok(self.psql("postgres", "SELECT pg_is_in_recovery()")? == "t")
    }

    /// Waits until `standby` has replayed everything this cluster wrote so far (its WAL insert
    /// position: with `synchronous_commit = off` a commit may not be written yet).
    pub fn wait_replayed(
        &self,
        standby: &PgCluster,
        timeout: std::time::Duration,
    ) -> Result<(), ClusterError> {
        let target = self.psql("postgres", "SELECT pg_current_wal_insert_lsn()")?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let caught_up = standby.psql(
                "postgres",
                &format!(
                    "SELECT pg_last_wal_replay_lsn() >= {}::pg_lsn",
                    quote_literal(&target)
                ),
            )?;
            if caught_up == "t" {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(ClusterError::io(
                    format!(
                        "waiting for the standby on port {} to replay up to {target}",
                        standby.port
                    ),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("not replayed within {timeout:?}"),
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// A pg_basebackup of this server's major version: pg_basebackup refuses newer servers, and
    /// an older server's backup format may differ.
    fn find_pg_basebackup(&self) -> Option<PathBuf> {
        let local = self.bin_dir.join("pg_basebackup");
        [Some(local), which("pg_basebackup")]
            .into_iter()
            .flatten()
            .find(|tool| {
                let Ok(output) = Command::new(tool).arg("--version").output() else {
                    return false;
                };
                // "pg_basebackup (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
                String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.split('.').next())
                    .and_then(|major| major.parse::<u32>().ok())
                    == Some(self.major_version)
            })
    }

    fn base_backup(&self, tool: &Path, standby: &PgCluster) -> Result<(), ClusterError> {
        let mut cmd = standby.run_as.command(tool, &standby.root_path);
        scrub_env(&mut cmd)
            .env("PGCONNECT_TIMEOUT", "10")
            .arg("-D")
            .arg(&standby.data_dir)
            .args(["-h", HOST, "-p", &self.port.to_string(), "-U", SUPERUSER])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"]);
        run(&mut cmd).map(drop)
    }

    /// The data dir copied while this server is stopped: a consistent copy without
    /// pg_basebackup. Replication slots stay behind (a base backup holds none either).
    fn cold_copy(&mut self, standby: &PgCluster) -> Result<(), ClusterError> {
        self.stop()?;
        let copy = which("cp")
            .ok_or_else(|| {
                ClusterError::io("finding cp on PATH", std::io::ErrorKind::NotFound.into())
            })
            .and_then(|cp| {
                let mut cmd = standby.run_as.command(&cp, &standby.root_path);
                cmd.arg("-a").arg(&self.data_dir).arg(&standby.data_dir);
                run(&mut cmd).map(drop)
            });
        // The primary comes back whatever happened to the copy.
        let started = self.pg_ctl_start();
        copy?;
        started?;
        let slots = standby.data_dir.join("pg_replslot");
        let entries = fs::read_dir(&slots)
            .map_err(|e| ClusterError::io(format!("reading {}", slots.display()), e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| ClusterError::io(format!("reading {}", slots.display()), e))?
                .path();
            fs::remove_dir_all(&path)
                .map_err(|e| ClusterError::io(format!("removing {}", path.display()), e))?;
        }
        for leftover in ["postmaster.pid", "postmaster.opts"] {
            let path = standby.data_dir.join(leftover);
            if path.exists() {
                fs::remove_file(&path)
                    .map_err(|e| ClusterError::io(format!("removing {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    /// Directory holding initdb, pg_ctl and postgres; see the crate docs for the search order.
    pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
        find_bin_dir()
    }

    /// Server major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Superuser name (`postgres`); authentication is `trust`, no password.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`; `db` is inserted verbatim.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{db}", self.port)
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `sql` (any number of statements, psql meta-commands allowed) against `db`, stopping at
    /// the first error. Returns unaligned, tuples-only output without the trailing newline.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let mut cmd = self.psql_command(db)?;
        let mut child = cmd
            .spawn()
            .map_err(|e| ClusterError::io(format!("spawning `{}`", describe(&cmd)), e))?;
        let stdin = child.stdin.take();
        // Feeding stdin from a second thread: a large script could otherwise deadlock against
        // psql blocking on a full stdout pipe.
        let output = std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                scope.spawn(move || {
                    // A write error means psql exited early; its stderr says why.
                    let _ = stdin.write_all(sql.as_bytes());
                });
            }
            child.wait_with_output()
        })
        .map_err(|e| ClusterError::io(format!("waiting for `{}`", describe(&cmd)), e))?;

        if !output.status.success() {
            return Err(ClusterError::Sql {
                db: db.to_owned(),
                sql: abbreviate(sql, 300),
                stderr: combined_output(&output),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        Ok(stdout.trim_end_matches('\n').to_owned())
    }

    /// An open psql session on `db`: statements run one after the other on one connection, so a
    /// test can hold a transaction or a lock open while other sessions work.
    pub fn session(&self, db: &str) -> Result<PsqlSession, ClusterError> {
        PsqlSession::spawn(self.psql_command(db)?, db)
    }

    /// psql on `db` as the superuser, unaligned and tuples-only, stopping at the first error.
    fn psql_command(&self, db: &str) -> Result<Command, ClusterError> {
        let psql = self
            .psql
            .as_ref()
            .ok_or_else(|| ClusterError::PsqlNotFound {
                bin_dir: self.bin_dir.clone(),
            })?;
        let mut cmd = Command::new(psql);
        scrub_env(&mut cmd)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-w"])
            .args([
                "-h",
                HOST,
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// `CREATE DATABASE "name"` (the name is quoted as an identifier).
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(drop)
    }

    /// Clean shutdown (`pg_ctl stop -m fast`).
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", PG_CTL_TIMEOUT])
    }

    /// Starts the stopped server again on the same data dir and port.
    pub fn start_again(&mut self) -> Result<(), ClusterError> {
        self.pg_ctl_start()
    }

    /// Clean shutdown followed by a start.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.stop()?;
        self.start_again()
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`): no checkpoint, crash recovery on the
    /// next start.
    pub fn kill(&mut self) -> Result<(), ClusterError> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT])
    }

    /// Keeps the cluster: the server is left running and its root dir (parent of
    /// [`Self::data_dir`]) is not removed. Stop it with `pg_ctl -D <root>/data stop`.
    pub fn persist(mut self) -> PathBuf {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        match self.root.take() {
            Some(root) => root.keep(),
            None => self.root_path.clone(),
        }
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut cmd = self
            .run_as
            .command(&self.bin_dir.join("initdb"), &self.root_path);
        scrub_env(&mut cmd).arg("-D").arg(&self.data_dir).args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut cmd).map(drop)
    }

    /// Writes the settings and starts; with no fixed port, retries on a fresh port when the
    /// chosen one was taken in the meantime (parallel test processes race for ports).
    fn start_on_port(
        &mut self,
        opts: &ClusterOptions,
        mut pick_port: impl FnMut() -> Result<u16, ClusterError>,
    ) -> Result<(), ClusterError> {
        let mut attempt = 1;
        loop {
            self.port = match opts.port {
                Some(port) => port,
                None => pick_port()?,
            };
            let conf = config::write_settings(
                &self.data_dir,
                self.port,
                &self.root_path,
                &opts.extra_conf,
            );
            conf.and_then(|()| self.run_as.give(&self.data_dir.join(config::CONF_FILE)))?;

            let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let Err(err) = self.pg_ctl_start() else {
                return Ok(());
            };
            let retry = opts.port.is_none()
                && attempt < PORT_ATTEMPTS
                && is_port_conflict(&read_from(&self.log_file, log_offset));
            if !retry {
                return Err(err);
            }
            tracing::debug!(port = self.port, attempt, "port taken, retrying");
            attempt += 1;
        }
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg_ctl_command(&["-w", "-t", PG_CTL_TIMEOUT, "start"]);
        cmd.arg("-l").arg(&self.log_file);
        let command = describe(&cmd);
        match run(&mut cmd) {
            Ok(_) => Ok(()),
            Err(ClusterError::Command { status, output, .. }) => Err(ClusterError::Start {
                command,
                status,
                output,
                log_tail: log_tail(&self.log_file, LOG_TAIL_LINES),
            }),
            Err(other) => Err(other),
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), ClusterError> {
        run(&mut self.pg_ctl_command(args)).map(drop)
    }

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = self
            .run_as
            .command(&self.bin_dir.join("pg_ctl"), &self.root_path);
        scrub_env(&mut cmd).arg("-D").arg(&self.data_dir).args(args);
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(root) = self.root.take() else {
            return; // persisted
        };
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        // The pid file also covers a server whose start "failed" by timeout but came up anyway.
        if self.data_dir.join("postmaster.pid").exists() {
            if let Err(err) = self.pg_ctl(&["stop", "-m", "immediate", "-w"]) {
                tracing::warn!(%err, "stopping Postgres cluster on drop");
            }
        }
        if let Err(err) = root.close() {
            tracing::warn!(%err, dir = %self.root_path.display(), "removing Postgres cluster dir");
        }
    }
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("major_version", &self.major_version)
            .finish_non_exhaustive()
    }
}

/// Temp dir for one cluster. Its path must be short (the socket lives there) and, when the
/// server runs as another user, reachable by that user; otherwise `/tmp` is used.
fn make_root_dir(run_as: &RunAs) -> Result<TempDir, ClusterError> {
    let preferred = std::env::temp_dir();
    let usable = preferred.as_os_str().len() + SOCKET_SUFFIX_LEN <= MAX_SOCKET_PATH
        && (!run_as.is_other() || traversable_by_others(&preferred));
    let base = if usable {
        preferred
    } else {
        PathBuf::from("/tmp")
    };
    tempfile::Builder::new()
        .prefix("walcast-pg-")
        .tempdir_in(&base)
        .map_err(|e| ClusterError::io(format!("creating temp dir in {}", base.display()), e))
}

fn traversable_by_others(dir: &Path) -> bool {
    dir.ancestors().all(|p| {
        fs::metadata(p)
            .map(|m| m.mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| ClusterError::io("finding a free TCP port on 127.0.0.1", e))
}

fn is_port_conflict(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}

/// `PG_VERSION` holds "15" (or "9.6" for old releases); the major version is its first number.
fn read_major_version(data_dir: &Path) -> Result<u32, ClusterError> {
    let path = data_dir.join("PG_VERSION");
    let text = fs::read_to_string(&path)
        .map_err(|e| ClusterError::io(format!("reading {}", path.display()), e))?;
    text.trim()
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| {
            ClusterError::io(
                format!("parsing {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{text:?}")),
            )
        })
}

/// The server log from byte `offset` on; empty when unreadable.
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn abbreviate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviates_on_char_boundaries() {
        assert_eq!(abbreviate("héllo", 2), "hé...");
        assert_eq!(abbreviate("hi", 5), "hi");
    }

    #[test]
    fn recognises_port_conflicts() {
        let log = "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n";
        assert!(is_port_conflict(log));
        assert!(!is_port_conflict(
            "FATAL:  data directory has wrong ownership"
        ));
    }

    #[test]
    fn reads_major_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, major) in [("15\n", 15), ("9.6\n", 9)] {
            fs::write(dir.path().join("PG_VERSION"), text).expect("write");
            assert_eq!(read_major_version(dir.path()).expect("parse"), major);
        }
    }

    /// The race of parallel starts: the picked port is taken before the server binds it.
    #[test]
    fn retries_on_another_port_when_picked_port_is_taken() {
        let taken = TcpListener::bind((HOST, 0)).expect("bind");
        let taken_port = taken.local_addr().expect("addr").port();
        let mut picks = 0;
        let mut cluster = PgCluster::init(find_bin_dir().expect("binaries")).expect("init");
        cluster
            .start_on_port(&ClusterOptions::default(), || {
                picks += 1;
                if picks == 1 {
                    Ok(taken_port)
                } else {
                    free_port()
                }
            })
            .expect("start on second port");
        assert_eq!(picks, 2);
        assert_ne!(cluster.port(), taken_port);
        assert_eq!(cluster.psql("postgres", "select 1").expect("psql"), "1");
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PgCluster>();
    }
}
