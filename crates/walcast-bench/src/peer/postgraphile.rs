//! A PostGraphile 4 server with live queries (`--live`, `@graphile/subscriptions-lds`) as a
//! child process, and the live queries that match the bench's subscriptions.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::peer::install::postgraphile_bin;
use crate::walcast::{free_port, log_tail};

/// The schema is introspected before the server listens; on a busy machine that takes a while.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running PostGraphile; stopped (SIGTERM, then SIGKILL) on drop.
pub struct PostGraphile {
    child: Child,
    addr: SocketAddr,
    log_file: PathBuf,
}

/// The live query of subscriber `{{i}}`: the newest `first` rows of its bucket (1%) or of the
/// table. A live query sends its whole result again on each change, so it names a window of
/// rows; a row that leaves the window before a result carries it is never delivered.
pub fn live_query(one_percent: bool, first: u64) -> String {
    let condition = if one_percent {
        "condition: {bucket: {{i}}}, "
    } else {
        ""
    };
    format!(
        "subscription {{ allBenches({condition}orderBy: ID_DESC, first: {first}) {{ nodes {{ id sentAt }} }} }}"
    )
}

impl PostGraphile {
    /// Starts `postgraphile --live --subscriptions --append-plugins @graphile/subscriptions-lds`
    /// on a free port of 127.0.0.1 and waits until it accepts WebSocket connections.
    pub async fn start(
        cache: &Path,
        database_url: &str,
        log_file: &Path,
    ) -> anyhow::Result<PostGraphile> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_file)
            .with_context(|| format!("opening {}", log_file.display()))?;
        let bin = postgraphile_bin(cache);
        let mut cmd = Command::new(&bin);
        cmd.current_dir(cache)
            .arg("--connection")
            .arg(database_url)
            .args(["--schema", "public", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args([
                "--subscriptions",
                "--live",
                "--append-plugins",
                "@graphile/subscriptions-lds",
                "--disable-query-log",
                "--disable-graphiql",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the server goes when this process does.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = PostGraphile {
            child,
            addr,
            log_file: log_file.to_owned(),
        };
        server.wait_listening().await?;
        Ok(server)
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for PostGraphile")? {
                bail!(
                    "PostGraphile exited ({status}) before listening; its log:\n{}",
                    log_tail(&self.log_file, 30)
                );
            }
            // It listens before the schema is built; the WebSocket handler comes with the schema.
            let probe = crate::client::LoadSpec::new(self.ws_url(), "");
            if let Ok(mut ws) = crate::client::open(&probe).await {
                let _ = ws.close(None).await;
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "PostGraphile did not listen on {} within {READY_TIMEOUT:?}; its log:\n{}",
                    self.addr,
                    log_tail(&self.log_file, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// SIGTERM, so that its temporary replication slot goes with its connection; SIGKILL after
    /// `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        self.terminate(grace).await
    }

    async fn terminate(&mut self, grace: Duration) -> anyhow::Result<()> {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.kill().context("killing PostGraphile")?;
        self.child.wait().context("reaping PostGraphile")?;
        Ok(())
    }
}

impl Drop for PostGraphile {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_queries() {
        assert_eq!(
            live_query(true, 50),
            "subscription { allBenches(condition: {bucket: {{i}}}, orderBy: ID_DESC, first: 50) { nodes { id sentAt } } }"
        );
        assert!(!live_query(false, 10).contains("condition"));
    }
}
