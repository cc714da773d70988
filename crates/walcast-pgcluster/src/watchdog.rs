//! Cleanup that survives the owning process.
//!
//! Clusters kept in statics are never dropped, and a crashed or killed test process skips `Drop`.
//! A small shell process therefore waits for EOF on a pipe whose only writer is the owner; when
//! the owner goes away by any means, the kernel closes the pipe and the shell stops the server and
//! removes the directory.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::process::describe;
use crate::ClusterError;

/// `$1` is the directory to remove, the rest the stop command. Hangups and Ctrl-C must not end
/// the wait early, so they are ignored (and the shell has its own process group).
const SCRIPT: &str = r#"trap '' HUP INT
while IFS= read -r _; do :; done
dir=$1; shift
"$@" >/dev/null 2>&1
rm -rf "$dir""#;

pub(crate) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts watching: once this process exits, `stop` runs and `dir` is removed.
    pub(crate) fn spawn(dir: &Path, stop: &Command) -> Result<Watchdog, ClusterError> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("walcast-pgcluster-watchdog")
            .arg(dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::piped())
            // Not inheriting stdout/stderr: test runners wait for those pipes to close.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                ClusterError::io(
                    format!("spawning cleanup watchdog for `{}`", describe(stop)),
                    e,
                )
            })?;
        Ok(Watchdog { child })
    }

    /// Ends the watchdog without it running the cleanup.
    pub(crate) fn disarm(mut self) {
        // SIGKILL cannot be trapped, so the cleanup commands never run.
        if let Err(e) = self.child.kill() {
            tracing::debug!(error = %e, "watchdog already gone");
        }
        if let Err(e) = self.child.wait() {
            tracing::warn!(error = %e, "waiting for cluster watchdog");
        }
    }
}
