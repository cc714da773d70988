//! A long-lived psql process: one connection that keeps its transaction and locks between
//! statements, so tests can arrange concurrency explicitly instead of relying on timing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::process::describe;
use crate::ClusterError;

/// An open psql session ([`crate::PgCluster::session`]).
///
/// [`PsqlSession::run`] sends SQL and waits for its output; [`PsqlSession::send`] only sends, for
/// a statement that is meant to block (on a lock the test holds), and [`PsqlSession::finish`]
/// collects its output later. The session stops at the first error (`ON_ERROR_STOP`), which the
/// next call reports with psql's message. A statement is terminated with `;` when it lacks one.
pub struct PsqlSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    command: String,
    db: String,
    /// Markers sent and not yet read back, oldest first.
    pending: Vec<String>,
    sent: u64,
}

impl PsqlSession {
    pub(crate) fn spawn(mut cmd: Command, db: &str) -> Result<PsqlSession, ClusterError> {
        let command = describe(&cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| ClusterError::io(format!("spawning `{command}`"), e))?;
        let (Some(stdin), Some(stdout), Some(mut stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ClusterError::io(
                format!("`{command}` has no piped stdio"),
                std::io::Error::other("missing pipe"),
            ));
        };
        // Drained on its own thread so notices can never fill the pipe and stall psql.
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stderr_pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(PsqlSession {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr,
            command,
            db: db.to_owned(),
            pending: Vec::new(),
            sent: 0,
        })
    }

    /// Runs `sql` and returns its unaligned, tuples-only output without the trailing newline.
    pub fn run(&mut self, sql: &str) -> Result<String, ClusterError> {
        self.send(sql)?;
        self.finish()
    }

    /// Sends `sql` without waiting for it to complete.
    pub fn send(&mut self, sql: &str) -> Result<(), ClusterError> {
        self.sent += 1;
        let marker = format!("__walcast_session_done_{}__", self.sent);
        // A statement without its `;` would wait in psql's buffer instead of running.
        let end = if sql.trim_end().ends_with(';') {
            ""
        } else {
            ";"
        };
        let script = format!("{sql}{end}\n\\echo {marker}\n");
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(script.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("session closed")),
        };
        if written.is_err() {
            return Err(self.failure(sql));
        }
        self.pending.push(marker);
        Ok(())
    }

    /// Waits until the oldest statement sent with [`PsqlSession::send`] completes; returns its
    /// output.
    pub fn finish(&mut self) -> Result<String, ClusterError> {
        if self.pending.is_empty() {
            return Ok(String::new());
        }
        let marker = self.pending.remove(0);
        let mut output = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.failure("(the session's last statement)")),
                Ok(_) => {}
            }
            if line.trim_end_matches('\n') == marker {
                return Ok(output.trim_end_matches('\n').to_owned());
            }
            output.push_str(&line);
        }
    }

    /// psql has exited or its pipe broke: the error carries what it printed.
    fn failure(&mut self, sql: &str) -> ClusterError {
        self.stdin = None;
        let _ = self.child.wait();
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        ClusterError::Sql {
            db: self.db.clone(),
            sql: format!("{sql} (session `{}`)", self.command),
            stderr,
        }
    }
}

impl Drop for PsqlSession {
    fn drop(&mut self) {
        // Killed rather than waited for: a statement still blocked (on a lock another session
        // of the test holds) would never end. The server rolls back what was open.
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
