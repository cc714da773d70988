//! `walcast tail` end to end: against a running walcast's WebSocket (a `--where` filter and
//! `--after` from the retention window), and with `--database-url` through a temporary slot
//! that is gone after Ctrl-C.
//!
//! Needs Postgres server binaries.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "tail-admin-token";

/// A `walcast tail` process: JSON lines on stdout, progress on stderr.
struct Tail {
    child: Child,
    lines: Receiver<String>,
    err: Arc<Mutex<String>>,
}

impl Tail {
    fn start(args: &[&str]) -> Tail {
        let mut child = Command::new(walcast_bin())
            .arg("tail")
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", walcast_bin().display()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = Arc::new(Mutex::new(String::new()));
        let sink = err.clone();
        let stderr = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        });
        Tail { child, lines, err }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn wait_stderr(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let err = self.stderr();
            if let Some(line) = err.lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("walcast tail exited ({status}) before printing {text:?}\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "walcast tail did not print {text:?} within {timeout:?}\n{err}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The next event line, parsed.
    fn next_event(&mut self) -> Value {
        match self.lines.recv_timeout(EVENT_TIMEOUT) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}")),
            Err(e) => panic!("no event line ({e})\n{}", self.stderr()),
        }
    }

    fn interrupt(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "walcast tail did not exit after SIGINT\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tail_over_the_websocket_filters_and_resumes_after_a_cursor() {
    let s = serve(DB, &demo_sql(), TOKEN, &[]);
    let url = s.walcast.ws_url();
    let mut tail = Tail::start(&[
        "messages",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--where",
        r#"{"text_starts_with": "keep"}"#,
    ]);
    tail.wait_stderr("subscribed to messages_mutated", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    // In commit order: the first line shows the filter skipped the first insert.
    insert_message(&s.pg, DB, "drop me");
    let kept = insert_message(&s.pg, DB, "keep 1");
    let first = tail.next_event();
    assert_eq!(first["event"], "create", "{first}");
    assert_eq!(first["key"], kept.to_string(), "{first}");
    assert_eq!(first["data"]["text"], "keep 1", "{first}");
    assert_eq!(first["data"]["id"], kept.to_string(), "{first}");
    assert!(first["data"]["date_created"].is_string(), "{first}");
    let cursor = first["cursor"].as_str().expect("a cursor").to_owned();
    assert!(tail.interrupt().success(), "{}", tail.stderr());
    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);

    // Written while no tail ran: --after replays it from the retention window.
    sql(
        &s.pg,
        DB,
        "UPDATE messages SET text = 'keep 2' WHERE text = 'drop me'",
    );
    let mut again = Tail::start(&[
        "messages", "--url", &url, "--token", TOKEN, "--after", &cursor,
    ]);
    let replayed = again.next_event();
    assert_eq!(replayed["event"], "update", "{replayed}");
    assert_eq!(replayed["data"]["text"], "keep 2", "{replayed}");
    assert!(again.interrupt().success(), "{}", again.stderr());

    // A filter the schema refuses is an error with the reason, and a failing exit.
    let bad = Command::new(walcast_bin())
        .args(["tail", "messages", "--url", &url, "--token", TOKEN])
        .args(["--where", r#"{"nope": 1}"#])
        .output()
        .expect("running walcast tail");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn tail_from_the_database_uses_a_temporary_slot_dropped_on_ctrl_c() {
    let pg = pg();
    let url = demo_db(&pg, DB);
    let mut tail = Tail::start(&[
        "messages",
        "--database-url",
        &url,
        "--where",
        r#"{"text_contains": "yes"}"#,
    ]);
    let line = tail.wait_stderr("temporary slot walcast_tail_", CONNECT_TIMEOUT);
    let slot = line
        .split_whitespace()
        .find(|w| w.starts_with("walcast_tail_"))
        .expect("the slot's name")
        .to_owned();
    let listed = sql(
        &pg,
        DB,
        &format!("SELECT temporary FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    );
    assert_eq!(listed.trim(), "t", "{}", tail.stderr());

    let no = insert_message(&pg, DB, "no thanks");
    let yes = insert_message(&pg, DB, "oh yes");
    sql(&pg, DB, &format!("DELETE FROM messages WHERE id = {no}"));
    sql(
        &pg,
        DB,
        &format!("UPDATE messages SET text = 'yes again' WHERE id = {yes}"),
    );
    let created = tail.next_event();
    assert_eq!(created["event"], "create", "{created}");
    assert_eq!(created["key"], yes.to_string(), "{created}");
    assert_eq!(created["data"]["text"], "oh yes", "{created}");
    assert_eq!(
        created["cursor"].as_str().map(str::len),
        Some(24),
        "{created}"
    );
    let updated = tail.next_event();
    assert_eq!(updated["event"], "update", "{updated}");
    assert_eq!(updated["data"]["text"], "yes again", "{updated}");

    assert!(tail.interrupt().success(), "{}", tail.stderr());
    let err = tail.stderr();
    assert!(
        err.contains(&format!("temporary slot {slot} dropped")),
        "{err}"
    );
    let left = sql(
        &pg,
        DB,
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'walcast_tail_%'",
    );
    assert_eq!(left.trim(), "0", "{err}");
    // No publication had the table: tail made one for it, and dropped it.
    assert!(
        err.contains(&format!("on publication {slot}:"))
            && err.contains(&format!("publication {slot} dropped")),
        "{err}"
    );
    let pubs = sql(
        &pg,
        DB,
        "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'walcast_tail_%'",
    );
    assert_eq!(pubs.trim(), "0", "{err}");

    // --after needs a running walcast.
    let out = Command::new(walcast_bin())
        .args(["tail", "messages", "--database-url", &url, "--after", "x"])
        .output()
        .expect("running walcast tail");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--after needs a running walcast"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
