//! Reverse proxies in front of walcast: Debian's nginx and HAProxy, started on a free port with
//! the configurations of docs/deploy.md (only the ports changed), killed on drop.
//!
//! Both run in the foreground as the current user, with every file they write inside their
//! temporary directory, so the tests work as root in CI and unprivileged on a workstation.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, http_request, repo_root, TempDir};

/// How long a proxy may take to answer through to walcast after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where walcast and the proxy listen in docs/deploy.md's configurations.
const DOC_UPSTREAM: &str = "127.0.0.1:8080";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Nginx,
    Haproxy,
}

impl ProxyKind {
    pub const ALL: [ProxyKind; 2] = [ProxyKind::Nginx, ProxyKind::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "haproxy",
        }
    }

    /// The configuration's block in docs/deploy.md: the name after `<!-- begin: `.
    fn doc_block(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx walcast.conf",
            ProxyKind::Haproxy => "haproxy.cfg",
        }
    }

    /// The documented line that makes the proxy send `Authorization: Bearer SERVICE_TOKEN`,
    /// commented out as the docs show it.
    fn auth_line(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "# proxy_set_header Authorization \"Bearer SERVICE_TOKEN\";",
            ProxyKind::Haproxy => {
                "# http-request set-header Authorization \"Bearer SERVICE_TOKEN\""
            }
        }
    }

    /// The documented listen line, and what it becomes for `port`.
    fn listen_line(self, port: u16) -> (&'static str, String) {
        match self {
            ProxyKind::Nginx => ("listen 80;", format!("listen 127.0.0.1:{port};")),
            ProxyKind::Haproxy => ("bind :80", format!("bind 127.0.0.1:{port}")),
        }
    }
}

/// A proxy process on a free port of 127.0.0.1, killed on drop.
pub struct Proxy {
    child: Option<Child>,
    kind: ProxyKind,
    port: u16,
    /// What the process wrote to stdout and stderr (HAProxy logs there).
    output: PathBuf,
    /// Holds the configuration, logs and temporary files; kept on disk when a test fails.
    dir: TempDir,
}

impl Proxy {
    /// `kind` with docs/deploy.md's configuration in front of walcast on `upstream_port`, and,
    /// when `service_token` is given, its documented line that sets `Authorization: Bearer`
    /// uncommented with that token. Returns once a request through it reaches walcast.
    pub fn start(kind: ProxyKind, upstream_port: u16, service_token: Option<&str>) -> Proxy {
        let port = free_port();
        let mut config = deploy_doc_block(kind.doc_block());
        config = replace_once(&config, DOC_UPSTREAM, &format!("127.0.0.1:{upstream_port}"));
        let (listen, ours) = kind.listen_line(port);
        config = replace_once(&config, listen, &ours);
        if let Some(token) = service_token {
            let line = kind.auth_line();
            let active = line
                .trim_start_matches("# ")
                .replace("SERVICE_TOKEN", token);
            config = replace_once(&config, line, &active);
        }
        let dir = TempDir::new(kind.name());
        let output = dir.path().join("output.log");
        let mut proxy = Proxy {
            child: None,
            kind,
            port,
            output,
            dir,
        };
        let cmd = match kind {
            ProxyKind::Nginx => proxy.nginx_command(&config),
            ProxyKind::Haproxy => proxy.haproxy_command(&config),
        };
        proxy.spawn(cmd);
        proxy.wait_through(START_TIMEOUT);
        proxy
    }

    /// nginx in the foreground as one process (`master_process off`: no workers switching to
    /// another user), the docs' file included in an `http` block whose paths are all ours.
    fn nginx_command(&self, site: &str) -> Command {
        let dir = self.dir.path();
        let site_path = self.dir.write("walcast.conf", site);
        let p = |name: &str| quoted(&dir.join(name));
        let mut temp_paths = String::new();
        let built = nginx_build_options();
        for (directive, module) in [
            ("client_body_temp_path", None),
            ("proxy_temp_path", None),
            ("fastcgi_temp_path", Some("fastcgi")),
            ("uwsgi_temp_path", Some("uwsgi")),
            ("scgi_temp_path", Some("scgi")),
        ] {
            // A module left out of the build has no directive to set (nor a path to create).
            if module.is_some_and(|m| built.contains(&format!("--without-http_{m}_module"))) {
                continue;
            }
            temp_paths.push_str(&format!("    {directive} {};\n", p(directive)));
        }
        let main = format!(
            "master_process off;\n\
             worker_processes 1;\n\
             error_log {} info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n    access_log {};\n{temp_paths}    include {};\n}}\n",
            p("error.log"),
            p("access.log"),
            quoted(&site_path),
        );
        let conf = self.dir.write("nginx.conf", &main);
        let mut cmd = Command::new(find_binary("nginx", "WALCAST_NGINX"));
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(conf)
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                quoted(&dir.join("nginx.pid"))
            ));
        cmd
    }

    /// HAProxy in the foreground (`-db`), the docs' file as its whole configuration.
    fn haproxy_command(&self, config: &str) -> Command {
        let path = self.dir.write("haproxy.cfg", config);
        let mut cmd = Command::new(find_binary("haproxy", "WALCAST_HAPROXY"));
        cmd.arg("-db").arg("-f").arg(path);
        cmd
    }

    fn spawn(&mut self, mut cmd: Command) {
        let out = File::create(&self.output)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.output.display()));
        let err = out.try_clone().expect("cloning the log file handle");
        let child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.kind.name()));
        self.child = Some(child);
    }

    /// Waits until `GET /healthz` through the proxy answers 200 from walcast.
    fn wait_through(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} exited ({status}) at start\n{}",
                    self.kind.name(),
                    self.log_tail(40)
                );
            }
            let last = match http_request(self.port, "GET", "/healthz", &[], None) {
                Ok(resp) if resp.status == 200 && resp.text() == "ok" => return,
                Ok(resp) => format!("{} {}", resp.status, resp.text()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "{} did not pass GET /healthz through within {timeout:?} (last: {last})\n{}",
                    self.kind.name(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:PORT{path}` through the proxy.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("polling the proxy process")
    }

    /// Everything the proxy logged: its output, and nginx's error log.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for name in ["output.log", "error.log"] {
            if let Ok(bytes) = fs::read(self.dir.path().join(name)) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        text
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- {} log tail ({}) ---\n{tail}\n--- end of log ---",
            self.kind.name(),
            self.dir.path().display()
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // One process each (nginx without a master, HAProxy without master-worker): nothing
            // is left behind. Already exited is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The code block between `<!-- begin: NAME` and `<!-- end: NAME -->` in docs/deploy.md,
/// without its fences.
pub fn deploy_doc_block(name: &str) -> String {
    let path = repo_root().join("docs/deploy.md");
    let doc =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let begin = format!("<!-- begin: {name}");
    let end = format!("<!-- end: {name} -->");
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/deploy.md has no `{begin}` marker"));
    let rest = &doc[start..];
    let stop = rest
        .find(&end)
        .unwrap_or_else(|| panic!("docs/deploy.md has no `{end}` marker after `{begin}`"));
    let block: Vec<&str> = rest[..stop].lines().skip(1).collect();
    let fences: Vec<usize> = block
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("```"))
        .map(|(i, _)| i)
        .collect();
    let [open, close] = fences[..] else {
        panic!("docs/deploy.md: `{name}` must hold exactly one fenced code block");
    };
    block[open + 1..close].join("\n") + "\n"
}

/// `text` with the one occurrence of `from` replaced; panics when it occurs zero or several
/// times, so a change to the docs cannot go unnoticed by the test that uses them.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    assert_eq!(
        n, 1,
        "expected `{from}` exactly once in the configuration, found it {n} times:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// `nginx -V` output: the configure options of the installed build.
fn nginx_build_options() -> String {
    let out = Command::new(find_binary("nginx", "WALCAST_NGINX"))
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("running nginx -V: {e}"));
    // nginx prints its version and options on stderr.
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// `$env_var`, else `name` on PATH or in the sbin directories (outside a non-root PATH).
/// Panics with install instructions: the tests never skip.
pub fn find_binary(name: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/usr/local/sbin", "/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed (nor named by ${env_var}): the reverse-proxy tests run Debian's \
         package (`apt-get install nginx haproxy`, as .ci/run does)"
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A path as a double-quoted nginx string.
fn quoted(path: &Path) -> String {
    format!(
        "\"{}\"",
        path.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}
