//! The walcast server under test: a child process started from the release binary.

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::http;

/// How a walcast process is started.
#[derive(Debug, Clone)]
pub struct WalcastOptions {
    pub bin: PathBuf,
    pub database_url: String,
    /// Where the slot is read; `None`: `database_url`.
    pub replication_url: Option<String>,
    pub slot: String,
    pub publication: String,
    /// `WALCAST_TABLES`.
    pub tables: String,
    pub permissions_file: PathBuf,
    pub max_connections: Option<usize>,
    pub client_queue: Option<usize>,
    pub retention: Option<String>,
    /// Further variables (cluster mode: `WALCAST_NATS_URL`, `WALCAST_ROLE`).
    pub env: Vec<(String, String)>,
    /// Server log (stdout and stderr).
    pub log_file: PathBuf,
}

/// A running walcast; killed on drop if not stopped.
pub struct Walcast {
    child: Option<Child>,
    addr: SocketAddr,
    log_file: PathBuf,
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Open WebSocket connections (the metric's name changed once; both are read).
pub const CONNECTIONS: &str = "walcast_connections_active|walcast_connections";

/// Variables the child gets from this process; every other one (a stray `WALCAST_*` in
/// particular) is left out.
const INHERITED: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "TZ"];

impl Walcast {
    /// Starts `walcast serve` and waits until `/readyz` answers 200.
    pub async fn start(opts: &WalcastOptions, ready_timeout: Duration) -> anyhow::Result<Walcast> {
        let mut walcast = Self::spawn(opts)?;
        walcast.wait_ready(ready_timeout).await?;
        Ok(walcast)
    }

    /// Starts `walcast serve` without waiting for anything.
    pub fn spawn(opts: &WalcastOptions) -> anyhow::Result<Walcast> {
        if !opts.bin.is_file() {
            bail!(
                "walcast binary not found at {} (build it: cargo build --release -p walcast)",
                opts.bin.display()
            );
        }
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&opts.log_file)
            .with_context(|| format!("opening {}", opts.log_file.display()))?;
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("serve").env_clear();
        for name in INHERITED {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.env("RUST_LOG", "warn")
            .env("DATABASE_URL", &opts.database_url)
            .env("WALCAST_LISTEN", addr.to_string())
            .env("WALCAST_SLOT", &opts.slot)
            .env("WALCAST_PUBLICATION", &opts.publication)
            .env("WALCAST_TABLES", &opts.tables)
            .env("WEBSOCKETS_GRAPHQL_AUTH", "public")
            .env("WALCAST_PERMISSIONS_FILE", &opts.permissions_file);
        if let Some(url) = &opts.replication_url {
            cmd.env("WALCAST_REPLICATION_URL", url);
        }
        if let Some(n) = opts.max_connections {
            cmd.env("WALCAST_MAX_CONNECTIONS", n.to_string());
        }
        if let Some(n) = opts.client_queue {
            cmd.env("WALCAST_CLIENT_QUEUE", n.to_string());
        }
        if let Some(r) = &opts.retention {
            cmd.env("WALCAST_RETENTION", r);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the server goes when this process does, however
        // it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.bin.display()))?;
        Ok(Walcast {
            child: Some(child),
            addr,
            log_file: opts.log_file.clone(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Like `exited`, without reaping (the status is read from /proc).
    fn exited_now(&self) -> Option<String> {
        let pid = self.pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let zombie = stat.as_deref().is_none_or(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z")
        });
        zombie.then(|| {
            format!(
                "walcast exited; log tail:\n{}",
                log_tail(&self.log_file, 20)
            )
        })
    }

    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "walcast exited ({status}); log tail:\n{}",
                log_tail(&self.log_file, 20)
            )),
            _ => None,
        }
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(why) = self.exited() {
                bail!(why);
            }
            // The listener is bound before replication is live, but nothing is served until
            // then: a request waits (short timeout, so an exit is noticed).
            if let Ok((200, _)) = http::get(self.addr, "/readyz", Duration::from_millis(500)).await
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "walcast not ready within {timeout:?}; log tail:\n{}",
                    log_tail(&self.log_file, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let (status, body) = http::get(self.addr, "/metrics", Duration::from_secs(30)).await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(http::parse_metrics(&body))
    }

    /// One metric, summed over its label sets; 0 when absent.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(http::metric_sum(&self.metrics().await?, name))
    }

    /// Polls a metric until it reaches `target`; returns when it did.
    pub async fn wait_metric(
        &self,
        name: &str,
        target: f64,
        interval: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let start = Instant::now();
        loop {
            let v = match self.metric(name).await {
                Ok(v) => v,
                Err(e) if start.elapsed() > timeout => return Err(e),
                Err(_) => {
                    if let Some(why) = self.exited_now() {
                        bail!(why);
                    }
                    tokio::time::sleep(interval).await;
                    continue;
                }
            };
            if v >= target {
                return Ok(Instant::now());
            }
            if start.elapsed() > timeout {
                bail!("{name} is {v} after {timeout:?}, expected {target}");
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Polls a metric until it is below `limit`.
    pub async fn wait_metric_below(
        &self,
        name: &str,
        limit: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let v = self.metric(name).await?;
            if v < limit {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("{name} is still {v} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cluster role this node reports (`walcast_cluster_role{role="…"} 1`): `reader`,
    /// `standby`, or `None` (no reader role, or single-node mode).
    pub async fn cluster_role(&self) -> anyhow::Result<Option<&'static str>> {
        let metrics = self.metrics().await?;
        Ok(["reader", "standby"].into_iter().find(|role| {
            metrics
                .get(&format!("walcast_cluster_role{{role=\"{role}\"}}"))
                .is_some_and(|v| *v >= 1.0)
        }))
    }

    /// Polls the role gauge until the node reports `role`.
    pub async fn wait_role(&self, role: &str, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(why) = self.exited_now() {
                bail!(why);
            }
            if let Ok(Some(now)) = self.cluster_role().await {
                if now == role {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "walcast not {role} within {timeout:?}; log tail:\n{}",
                    log_tail(&self.log_file, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (nothing runs on the way out), then reaps the process.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Resident set size of the server process, in bytes (`VmRSS` of /proc/PID/status).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("walcast is not running"))?;
        rss_of(pid)
    }

    /// SIGTERM, then waits for the exit: the time it took and the exit status, `None` when it
    /// still ran 30 s later (then it is killed).
    pub async fn terminate(mut self) -> anyhow::Result<(Duration, Option<ExitStatus>)> {
        let Some(mut child) = self.child.take() else {
            bail!("walcast is not running");
        };
        signal(child.id(), libc::SIGTERM);
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok((start.elapsed(), Some(status))),
                Ok(None) if start.elapsed() > Duration::from_secs(30) => {
                    let took = start.elapsed();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok((took, None));
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => return Err(e).context("waiting for walcast to exit"),
            }
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 20 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(child.id(), libc::SIGTERM);
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if start.elapsed() > Duration::from_secs(20) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("walcast did not stop within 20 s of SIGTERM");
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(e).context("waiting for walcast to exit"),
            }
        }
    }
}

impl Drop for Walcast {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3 of stat(5); utime and stime are 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// CPU use of a process over an interval, in cores (1.0 = one core busy).
pub struct CpuMeter {
    pid: u32,
    start_cpu: f64,
    start: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Option<CpuMeter> {
        Some(CpuMeter {
            pid,
            start_cpu: cpu_seconds(pid)?,
            start: std::time::Instant::now(),
        })
    }

    pub fn cores(&self) -> Option<f64> {
        let used = self.seconds()?;
        let secs = self.start.elapsed().as_secs_f64();
        (secs > 0.0).then(|| used / secs)
    }

    /// CPU seconds (user + system) used since the start.
    pub fn seconds(&self) -> Option<f64> {
        Some(cpu_seconds(self.pid)? - self.start_cpu)
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS in {path}"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("bad VmRSS line {line:?}"))?;
    Ok(kib * 1024)
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
