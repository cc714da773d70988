//! Machinery shared by the end-to-end tests: a throw-away Postgres, the real `walcast` binary,
//! the real JavaScript GraphQL clients of `tests/js`, a raw WebSocket for protocol checks, and
//! reverse proxies in front of walcast (`proxy`).
//!
//! Every test starts its own cluster and server, so tests in one binary run in parallel.
//! Nothing here skips: a missing Postgres, Node or `npm ci` fails the test with instructions.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

pub use walcast_pgcluster::PgCluster;

pub mod proxy;

/// How long a committed change may take to reach a subscriber.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client may take to connect, authenticate and subscribe.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `walcast serve` may take to answer 200 on /readyz.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The demo table of the Directus guide (seed 000), with full replica identity so updates carry
/// the previous values.
pub const DEMO_SCHEMA: &str = "CREATE TABLE messages (id serial primary key, text text, \
     date_created timestamptz default now());\n\
     ALTER TABLE messages REPLICA IDENTITY FULL;";

// ---------------------------------------------------------------------------------------------
// Postgres

/// Starts a throw-away cluster (removed on drop). Fails, never skips, when Postgres is missing:
/// the panic message carries the install instructions.
pub fn pg() -> PgCluster {
    PgCluster::start().unwrap_or_else(|e| panic!("cannot start a Postgres for the e2e tests:\n{e}"))
}

/// Runs `sql` on `db` through psql (separate connection, autocommit); returns its `-At` output.
pub fn sql(pg: &PgCluster, db: &str, sql: &str) -> String {
    pg.psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// Creates database `db` with the demo `messages` table and returns its URL.
pub fn demo_db(pg: &PgCluster, db: &str) -> String {
    pg.create_database(db)
        .unwrap_or_else(|e| panic!("creating database {db}: {e}"));
    sql(pg, db, DEMO_SCHEMA);
    pg.url(db)
}

/// The demo schema of `walcast demo` (sql/demo.sql): users, articles, comments.
pub fn demo_sql() -> String {
    fs::read_to_string(repo_root().join("sql/demo.sql")).expect("sql/demo.sql")
}

/// A throw-away cluster with one database and a walcast serving it: the set-up of most
/// end-to-end tests. Field order matters: walcast stops before its database.
pub struct Server {
    pub walcast: Walcast,
    pub pg: PgCluster,
    /// Holds the tokens file (and whatever else a test writes).
    pub dir: TempDir,
}

/// Creates database `db` from `schema_sql` on a new cluster and starts walcast on it with
/// handshake auth and `token` for role admin, plus `extra_env`.
pub fn serve(db: &str, schema_sql: &str, token: &str, extra_env: &[(&str, &str)]) -> Server {
    serve_on(pg(), db, schema_sql, token, extra_env)
}

/// [`serve`] on a cluster the test started (and checked) itself.
pub fn serve_on(
    pg: PgCluster,
    db: &str,
    schema_sql: &str,
    token: &str,
    extra_env: &[(&str, &str)],
) -> Server {
    pg.create_database(db)
        .unwrap_or_else(|e| panic!("creating database {db}: {e}"));
    sql(&pg, db, schema_sql);
    let dir = TempDir::new(db);
    let tokens = tokens_file(&dir, &[(token, "admin")]);
    let tokens = tokens.to_str().expect("temp path is UTF-8");
    let mut env = vec![
        ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
        ("WALCAST_TOKENS_FILE", tokens),
    ];
    env.extend_from_slice(extra_env);
    let walcast = Walcast::start(&pg.url(db), &env);
    Server { walcast, pg, dir }
}

/// Inserts a message in its own transaction and returns its id.
pub fn insert_message(pg: &PgCluster, db: &str, text: &str) -> i64 {
    let out = sql(
        pg,
        db,
        &format!(
            "INSERT INTO messages (text) VALUES ({}) RETURNING id",
            quote_literal(text)
        ),
    );
    out.lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("INSERT ... RETURNING id printed no id: {out:?}"))
}

/// `text` as an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// JSON lines as one compact JSON array, for assertion messages.
pub fn show(lines: &[Value]) -> String {
    Value::Array(lines.to_vec()).to_string()
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under the system temp dir, removed on drop unless the test is failing
/// (then it is kept, and its path printed, so the walcast log can be read).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "walcast-e2e-{prefix}-{}-{n}-{nanos}",
            std::process::id()
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns the file's path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // WALCAST_TEST_KEEP keeps them after a pass too, to read a walcast log.
        if thread::panicking() || std::env::var_os("WALCAST_TEST_KEEP").is_some() {
            eprintln!("kept {} for inspection", self.path.display());
            return;
        }
        // Best effort: a leftover temp dir must not turn a passing test into a failure.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Writes a `WALCAST_TOKENS_FILE` with one `[token] role = ...` table per entry.
pub fn tokens_file(dir: &TempDir, tokens: &[(&str, &str)]) -> PathBuf {
    let mut toml = String::new();
    for (token, role) in tokens {
        let _ = writeln!(
            toml,
            "[{}]\nrole = {}\n",
            toml_string(token),
            toml_string(role)
        );
    }
    dir.write("tokens.toml", &toml)
}

fn toml_string(s: &str) -> String {
    // A JSON string is a valid TOML basic string.
    Value::String(s.to_owned()).to_string()
}

// ---------------------------------------------------------------------------------------------
// The walcast server

/// A `walcast serve` process on a free port of 127.0.0.1, killed on drop.
pub struct Walcast {
    child: Option<Child>,
    port: u16,
    /// The harness picked the port (the test did not set `WALCAST_LISTEN`): a start that lost
    /// it to another process may move to another.
    own_port: bool,
    env: Vec<(String, String)>,
    graphql_path: String,
    log_path: PathBuf,
    starts: u32,
    /// Holds the log; kept on disk when a test fails.
    dir: TempDir,
}

impl Walcast {
    /// Starts `walcast serve` against `database_url` with `env` added (it overrides the defaults
    /// `WALCAST_LISTEN`, `RUST_LOG=info,walcast=debug`) and waits for /readyz to answer 200.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Walcast {
        let mut w = Walcast::launch(database_url, env);
        w.wait_ready(READY_TIMEOUT);
        w
    }

    /// Like [`Walcast::start`] without waiting for readiness: for start-up failures and
    /// for watching /readyz go from 503 to 200.
    pub fn launch(database_url: &str, env: &[(&str, &str)]) -> Walcast {
        let port = free_port();
        let mut vars: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.into()),
            ("WALCAST_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("RUST_LOG".into(), "info,walcast=debug".into()),
        ];
        for (k, v) in env {
            vars.retain(|(existing, _)| existing != k);
            vars.push(((*k).into(), (*v).into()));
        }
        let own_port = !env.iter().any(|(k, _)| *k == "WALCAST_LISTEN");
        // The listen address decides the port; keep `port` in step when a test sets it.
        let port = vars
            .iter()
            .find(|(k, _)| k == "WALCAST_LISTEN")
            .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
            .unwrap_or(port);
        let graphql_path = vars
            .iter()
            .find(|(k, _)| k == "WEBSOCKETS_GRAPHQL_PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "/graphql".into());
        let dir = TempDir::new("walcast");
        let log_path = dir.path().join("walcast.log");
        let mut w = Walcast {
            child: None,
            port,
            own_port,
            env: vars,
            graphql_path,
            log_path,
            starts: 0,
            dir,
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path.display()));
        let _ = writeln!(log, "===== walcast serve, start #{} =====", self.starts);
        let err = log.try_clone().expect("cloning the log file handle");
        let mut cmd = Command::new(walcast_bin());
        cmd.arg("serve");
        // The developer's own settings must not leak into a test's server.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("WALCAST_")
                || key.starts_with("WEBSOCKETS_")
                || key == "DATABASE_URL"
                || key == "RUST_LOG"
            {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", walcast_bin().display()));
        self.child = Some(child);
    }

    /// Waits until /readyz answers 200; panics with the log tail if the process exits or the
    /// timeout passes first.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut moves = 0;
        loop {
            if let Some(status) = self.try_wait() {
                // Only a first start moves: a restarted server keeps the port its clients know.
                let first_start = self.starts == 1 + moves;
                if self.own_port && first_start && moves < 5 && self.lost_its_port() {
                    moves += 1;
                    self.port = free_port();
                    let listen = format!("127.0.0.1:{}", self.port);
                    for (k, v) in &mut self.env {
                        if k == "WALCAST_LISTEN" {
                            v.clone_from(&listen);
                        }
                    }
                    self.spawn();
                    continue;
                }
                panic!(
                    "walcast exited ({status}) before becoming ready\n{}",
                    self.log_tail(80)
                );
            }
            let last = match http_request(self.port, "GET", "/readyz", &[], None) {
                Ok(resp) if resp.status == 200 => return,
                Ok(resp) => format!("{} {}", resp.status, resp.text()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "walcast not ready after {timeout:?} (last /readyz: {last})\n{}",
                    self.log_tail(80)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last start failed because another process bound the port between [`free_port`]
    /// picking it and walcast binding it (test binaries and clusters run side by side).
    fn lost_its_port(&self) -> bool {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let last = log
            .rsplit("===== walcast serve, start #")
            .next()
            .unwrap_or("");
        last.contains("(WALCAST_LISTEN): Address already in use")
    }

    /// The exit status if the process has exited (`None` while it runs or was never started).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("polling the walcast process")
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `ws://127.0.0.1:PORT/graphql` (or the configured path).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, self.graphql_path)
    }

    /// `http://127.0.0.1:PORT` (no path).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn graphql_path(&self) -> &str {
        &self.graphql_path
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let resp = http_request(self.port, "GET", path, &[], None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log_tail(40)));
        (resp.status, resp.text())
    }

    /// POST `body` as JSON to `path`, with `Authorization: Bearer` when given: (status, body as
    /// JSON, or as a JSON string when the body is not JSON).
    pub fn post_json(&self, path: &str, body: &Value, bearer: Option<&str>) -> (u16, Value) {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let payload = body.to_string();
        let resp = http_request(self.port, "POST", path, &headers, Some(payload.as_bytes()))
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.log_tail(40)));
        let text = resp.text();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (resp.status, value)
    }

    /// A GraphQL request over HTTP on the GraphQL path.
    pub fn graphql(&self, query: &str, variables: Value, bearer: Option<&str>) -> (u16, Value) {
        let body = json!({ "query": query, "variables": variables });
        self.post_json(&self.graphql_path, &body, bearer)
    }

    /// The sum of every `walcast_subscriptions_active` sample in /metrics.
    pub fn active_subscriptions(&self) -> u64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        metric_sum(&body, "walcast_subscriptions_active").unwrap_or_else(|| {
            panic!("/metrics has no walcast_subscriptions_active sample:\n{body}")
        })
    }

    /// Waits until exactly `n` subscriptions are active.
    pub fn wait_subscriptions(&self, n: u64, timeout: Duration) {
        self.wait_subscriptions_where(timeout, &format!("== {n}"), |v| v == n);
    }

    /// Waits until at least `n` subscriptions are active.
    pub fn wait_subscriptions_at_least(&self, n: u64, timeout: Duration) {
        self.wait_subscriptions_where(timeout, &format!(">= {n}"), |v| v >= n);
    }

    fn wait_subscriptions_where(&self, timeout: Duration, what: &str, ok: impl Fn(u64) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.active_subscriptions();
            if ok(v) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "walcast_subscriptions_active is {v}, expected {what} within {timeout:?}\n{}",
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, and reap. No-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: the point is that it no longer runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit (panics if it takes over 20 s). Returns the exit
    /// status, or `None` when it was not running.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("polling the walcast process") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "walcast did not exit within 20 s of SIGTERM\n{}",
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops (if running) and starts again with the same environment and port, then waits for
    /// readiness.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready(READY_TIMEOUT);
    }

    /// Everything the process(es) wrote so far, across restarts.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, framed for a panic message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- walcast log tail ({}) ---\n{tail}\n--- end of log ---",
            self.log_path.display()
        )
    }
}

impl Drop for Walcast {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary under test: this build's `walcast`, or `$WALCAST_E2E_BIN` (say, a release build).
pub fn walcast_bin() -> PathBuf {
    std::env::var_os("WALCAST_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_walcast")))
}

/// A port that was free a moment ago. Racy by nature; good enough for loopback tests.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

pub fn signal(pid: u32, sig: &str) {
    // std offers only SIGKILL; the shell's kill builtin avoids a libc dependency.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} {pid}"))
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{sig} {pid} failed: {status}");
}

/// Sums the samples of metric `name` (any labels) in Prometheus text format; `None` if absent.
pub fn metric_sum(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // Only the metric itself, not `name_total` and friends.
        let rest = if let Some(labels) = rest.strip_prefix('{') {
            match labels.find('}') {
                Some(end) => &labels[end + 1..],
                None => continue,
            }
        } else if rest.starts_with([' ', '\t']) {
            rest
        } else {
            continue;
        };
        if let Some(Ok(v)) = rest.split_whitespace().next().map(str::parse::<f64>) {
            found = true;
            sum += v;
        }
    }
    // Gauges of counts are integral; rounding absorbs a float rendering such as `1.0`.
    found.then(|| sum.round().max(0.0) as u64)
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 client

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection with `Connection: close`.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(req, "Content-Length: {}\r\n", body.len());
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body)?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        decode_chunked(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// JavaScript clients (tests/js)

/// The workspace root.
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("resolving {}: {e}", root.display()))
}

/// `tests/js`, with its dependencies installed.
pub fn js_dir() -> PathBuf {
    let dir = repo_root().join("tests/js");
    assert!(
        dir.join("node_modules").is_dir(),
        "{}/node_modules is missing: run `npm ci` in tests/js (or .ci/run)",
        dir.display()
    );
    dir
}

/// A `node tests/js/<script>` process whose stdout JSON lines are read on a thread; killed on
/// drop.
pub struct JsClient {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    command: String,
}

impl JsClient {
    /// `node client.mjs ARGS` (see the usage at the top of tests/js/client.mjs).
    pub fn spawn(args: &[&str]) -> JsClient {
        JsClient::spawn_script("client.mjs", args)
    }

    /// `node raw.mjs ARGS`: raw frames, see tests/js/raw.mjs.
    pub fn spawn_raw(args: &[&str]) -> JsClient {
        JsClient::spawn_script("raw.mjs", args)
    }

    pub fn spawn_script(script: &str, args: &[&str]) -> JsClient {
        let dir = js_dir();
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning node (Node 20+ is needed): {e}"));
        let command = format!("node {script} {}", shell_words(args));

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        JsClient {
            child,
            lines,
            stderr,
            command,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn describe(&mut self) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("exited: {s}"),
            Ok(None) => "running".to_owned(),
            Err(e) => format!("unknown: {e}"),
        };
        // Let the stderr thread catch up with a process that just died.
        thread::sleep(Duration::from_millis(100));
        format!(
            "client `{}` ({status})\n--- client stderr ---\n{}--- end of stderr ---",
            self.command,
            self.stderr()
        )
    }

    /// The next line within `timeout`, or `None` on timeout or end of output.
    pub fn try_next_line(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(self.parse(&line)),
            Err(_) => None,
        }
    }

    fn parse(&mut self, line: &str) -> Value {
        serde_json::from_str(line).unwrap_or_else(|e| {
            let who = self.describe();
            panic!("client printed a line that is not JSON ({e}): {line:?}\n{who}")
        })
    }

    /// The next line; panics (with the client's stderr) on timeout or end of output.
    pub fn next_line(&mut self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => self.parse(&line),
            Err(RecvTimeoutError::Timeout) => {
                let who = self.describe();
                panic!("no message from the client within {timeout:?}\n{who}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                let who = self.describe();
                panic!("the client's output ended\n{who}")
            }
        }
    }

    /// The next line, which must be of `kind`.
    pub fn expect_kind(&mut self, kind: &str, timeout: Duration) -> Value {
        let line = self.next_line(timeout);
        if line["kind"] != kind {
            let who = self.describe();
            panic!("expected a {kind:?} message, got {line}\n{who}");
        }
        line
    }

    /// Skips lines until one of `kind`; returns it and the skipped ones.
    pub fn wait_kind(&mut self, kind: &str, timeout: Duration) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next_line(left) {
                Some(line) if line["kind"] == kind => return (line, skipped),
                Some(line) => skipped.push(line),
                None => {
                    let who = self.describe();
                    panic!(
                        "no {kind:?} message within {timeout:?}; saw {}\n{who}",
                        Value::Array(skipped)
                    )
                }
            }
        }
    }

    /// Panics if any line arrives within `quiet`.
    pub fn expect_no_message(&mut self, quiet: Duration) {
        if let Some(line) = self.try_next_line(quiet) {
            let who = self.describe();
            panic!("expected silence for {quiet:?}, got {line}\n{who}");
        }
    }

    /// Every line that arrives within `window`.
    pub fn drain(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(line) =
            self.try_next_line(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(line);
        }
        out
    }

    /// The payload of the next line, which must be a `next` without GraphQL errors.
    pub fn expect_data(&mut self, timeout: Duration) -> Value {
        let line = self.expect_kind("next", timeout);
        let payload = &line["payload"];
        let no_errors = match &payload["errors"] {
            Value::Null => true,
            Value::Array(errors) => errors.is_empty(),
            _ => false,
        };
        assert!(no_errors, "event with errors: {line}");
        payload["data"].clone()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        // Already exited is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JsClient {
    fn drop(&mut self) {
        self.kill();
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
            {
                (*a).to_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket

/// What a raw socket read produced.
#[derive(Debug)]
pub enum Frame {
    /// A text frame holding JSON.
    Json(Value),
    /// A text frame that is not JSON.
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: code (1005 when none was given) and reason.
    Close(u16, String),
    /// Nothing within the timeout.
    Timeout,
    /// The connection ended without a close frame, or failed.
    Gone(String),
}

/// A blocking WebSocket with a chosen sub-protocol, for frames no client library would send.
pub struct RawWs {
    ws: tungstenite::WebSocket<TcpStream>,
    /// The sub-protocol the server selected.
    pub protocol: Option<String>,
}

impl RawWs {
    /// Connects with sub-protocol `protocol`; panics on failure.
    pub fn connect(url: &str, protocol: &str) -> RawWs {
        RawWs::try_connect(url, &[protocol], &[])
            .unwrap_or_else(|e| panic!("WebSocket to {url} ({protocol}): {e}"))
    }

    /// Connects offering `protocols` (none when empty) with extra request headers. A refused
    /// upgrade is `Err(tungstenite::Error::Http(response))`; see [`upgrade_status`].
    pub fn try_connect(
        url: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<RawWs, Box<tungstenite::Error>> {
        use tungstenite::client::IntoClientRequest;
        use tungstenite::http::HeaderValue;

        let mut request = url.into_client_request()?;
        let invalid = |what: &str| {
            tungstenite::Error::Io(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()))
        };
        if !protocols.is_empty() {
            let value = HeaderValue::from_str(&protocols.join(", "))
                .map_err(|_| invalid("bad sub-protocol"))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("bad header name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| invalid("bad header value"))?;
            request.headers_mut().insert(name, value);
        }
        let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let io = |e: io::Error| Box::new(tungstenite::Error::Io(e));
        let stream = TcpStream::connect((host.as_str(), port)).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let (ws, response) = tungstenite::client::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => invalid("handshake timed out"),
        })?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(RawWs { ws, protocol })
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws
            .send(tungstenite::Message::text(text))
            .unwrap_or_else(|e| panic!("sending {text:?}: {e}"));
    }

    pub fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string());
    }

    /// The next data or close frame within `timeout` (WebSocket pings and pongs are skipped).
    pub fn recv(&mut self, timeout: Duration) -> Frame {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Frame::Timeout;
            }
            if let Err(e) = self.ws.get_mut().set_read_timeout(Some(left)) {
                return Frame::Gone(e.to_string());
            }
            match self.ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    return match serde_json::from_str(text.as_str()) {
                        Ok(v) => Frame::Json(v),
                        Err(_) => Frame::Text(text.as_str().to_owned()),
                    }
                }
                Ok(tungstenite::Message::Binary(b)) => return Frame::Binary(b.to_vec()),
                Ok(tungstenite::Message::Close(frame)) => {
                    return match frame {
                        Some(f) => Frame::Close(u16::from(f.code), f.reason.as_str().to_owned()),
                        None => Frame::Close(1005, String::new()),
                    }
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Frame::Timeout;
                    }
                }
                Err(e) => return Frame::Gone(e.to_string()),
            }
        }
    }

    /// The next frame, which must be JSON.
    pub fn recv_json(&mut self, timeout: Duration) -> Value {
        match self.recv(timeout) {
            Frame::Json(v) => v,
            other => panic!("expected a JSON frame within {timeout:?}, got {other:?}"),
        }
    }

    /// Reads until the close frame and returns its code and reason, plus the JSON frames read on
    /// the way. Panics if the socket stays open past `timeout` or ends without a close frame.
    pub fn expect_close(&mut self, timeout: Duration) -> (u16, String, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Frame::Close(code, reason) => return (code, reason, seen),
                Frame::Json(v) => seen.push(v),
                Frame::Text(t) => seen.push(Value::String(t)),
                Frame::Binary(_) => {}
                other => panic!(
                    "expected a close frame within {timeout:?}, got {other:?} after {}",
                    Value::Array(seen)
                ),
            }
        }
    }
}

/// The HTTP status of a refused upgrade, if that is what `err` is.
pub fn upgrade_status(err: &tungstenite::Error) -> Option<u16> {
    match err {
        tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// Kilobytes of a /proc/<pid>/status field (VmRSS, VmHWM: the peak resident set).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
