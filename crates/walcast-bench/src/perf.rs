//! Optional CPU profiles (`perf record`) of walcast and the walsender during a measurement.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `perf record -g -p PID`; stopped (SIGINT) and waited for by [`Profile::finish`].
pub struct Profile {
    child: Child,
    pub output: PathBuf,
}

impl Profile {
    /// Starts profiling `pid` into `dir/name.perf.data`; `None` (with a message) when perf
    /// cannot be started.
    pub async fn start(dir: &Path, name: &str, pid: u32) -> Option<Profile> {
        let output = dir.join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                // perf needs a moment to attach.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some(Profile { child, output })
            }
            Err(e) => {
                eprintln!("walcast-bench: perf record not started: {e}");
                None
            }
        }
    }

    pub fn finish(mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the perf process this struct started and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        let _ = self.child.wait();
        eprintln!("walcast-bench: profile in {}", self.output.display());
    }
}
