//! Starting, stopping and restarting nats-server processes.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{find_server, NatsError};

const HOST: &str = "127.0.0.1";
/// How long a node may take to report healthy (a cluster elects its meta leader first; a
/// restarted replica catches up), generous for a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const LOG_TAIL_BYTES: usize = 4000;

/// Ports of one node.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    monitor: u16,
    /// The route port, for cluster members.
    route: Option<u16>,
}

/// One nats-server process with JetStream and its own store directory.
pub struct NatsServer {
    binary: PathBuf,
    name: String,
    /// Holds `store/` and `nats.log`; removed on drop.
    dir: TempDir,
    ports: Ports,
    /// `(cluster name, route urls of every member)` for cluster members.
    routes: Option<(String, Vec<String>)>,
    child: Option<Child>,
    /// Started with `-js` (every node but [`NatsServer::start_without_jetstream`]'s).
    jetstream: bool,
}

impl NatsServer {
    /// Starts a single node on free ports with a fresh store.
    pub fn start() -> Result<NatsServer, NatsError> {
        on_free_ports(|| {
            let mut server = NatsServer::prepare("walcast-nats".into(), None)?;
            server.launch()?;
            server.wait_healthy()?;
            Ok(server)
        })
    }

    /// Starts a single node without JetStream, for what clients do on a plain NATS server.
    pub fn start_without_jetstream() -> Result<NatsServer, NatsError> {
        on_free_ports(|| {
            let mut server = NatsServer::prepare("walcast-nats-core".into(), None)?;
            server.jetstream = false;
            server.launch()?;
            server.wait_healthy()?;
            Ok(server)
        })
    }

    fn prepare(name: String, route: Option<u16>) -> Result<NatsServer, NatsError> {
        let binary = find_server()?;
        let dir = tempfile::Builder::new()
            .prefix("walcast-nats-")
            .tempdir()
            .map_err(|e| NatsError::io("creating a temporary directory for nats-server", e))?;
        Ok(NatsServer {
            binary,
            name,
            dir,
            ports: Ports {
                client: free_port()?,
                monitor: free_port()?,
                route,
            },
            routes: None,
            child: None,
            jetstream: true,
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{HOST}:{}", self.ports.client)
    }

    pub fn port(&self) -> u16 {
        self.ports.client
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JetStream store directory, kept across [`NatsServer::restart`].
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the process (SIGKILL: nothing is flushed that the server did not sync itself).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts it again on the same ports with the same store.
    pub fn restart(&mut self) -> Result<(), NatsError> {
        self.kill();
        self.launch()?;
        self.wait_healthy()
    }

    /// Starts the process again after [`NatsServer::kill`] (no-op when it runs).
    pub fn start_again(&mut self) -> Result<(), NatsError> {
        if self.is_running() {
            return Ok(());
        }
        self.launch()?;
        self.wait_healthy()
    }

    fn launch(&mut self) -> Result<(), NatsError> {
        let mut cmd = Command::new(&self.binary);
        if self.jetstream {
            cmd.arg("-js");
        }
        cmd.args(["-a", HOST])
            .args(["-p", &self.ports.client.to_string()])
            .args(["-m", &self.ports.monitor.to_string()])
            .args(["-n", &self.name])
            .arg("-sd")
            .arg(self.store_dir())
            .arg("-l")
            .arg(self.log_path());
        if let (Some(route), Some((cluster, routes))) = (self.ports.route, &self.routes) {
            cmd.args(["--cluster_name", cluster])
                .args(["--cluster", &format!("nats://{HOST}:{route}")])
                .args(["--routes", &routes.join(",")]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| NatsError::io(format!("spawning {}", self.binary.display()), e))?;
        tracing::debug!(name = %self.name, url = %self.url(), "nats-server started");
        self.child = Some(child);
        Ok(())
    }

    /// Polls `/healthz` (JetStream ready) on the monitoring port.
    fn wait_healthy(&mut self) -> Result<(), NatsError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(self.start_error(format!("exited with {status}")));
            }
            if healthz(self.ports.monitor) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.start_error(format!("not healthy after {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_error(&self, reason: String) -> NatsError {
        NatsError::Start {
            name: self.name.clone(),
            reason,
            log: self.log_path(),
            log_tail: log_tail(&self.log_path()),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several nodes on one machine joined by routes: a JetStream cluster.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes (3 for a replicated stream) and waits until all are healthy.
    pub fn start(size: usize) -> Result<NatsCluster, NatsError> {
        on_free_ports(|| NatsCluster::start_once(size))
    }

    fn start_once(size: usize) -> Result<NatsCluster, NatsError> {
        let mut nodes = (0..size)
            .map(|i| NatsServer::prepare(format!("walcast-nats-{i}"), Some(free_port()?)))
            .collect::<Result<Vec<_>, _>>()?;
        let routes: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.ports.route)
            .map(|p| format!("nats://{HOST}:{p}"))
            .collect();
        for node in &mut nodes {
            node.routes = Some(("walcast".into(), routes.clone()));
            node.launch()?;
        }
        // Health needs a meta leader, which needs the others: launch all before waiting.
        for node in &mut nodes {
            node.wait_healthy()?;
        }
        Ok(NatsCluster { nodes })
    }

    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// A node, to kill or restart it.
    pub fn node_mut(&mut self, index: usize) -> Option<&mut NatsServer> {
        self.nodes.get_mut(index)
    }

    /// Every client url, comma-separated, as clients take a server list.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Starts a server again on new ports when another process bound one of its ports between
/// [`free_port`] picking it and the server binding it (tests run side by side).
fn on_free_ports<T>(mut start: impl FnMut() -> Result<T, NatsError>) -> Result<T, NatsError> {
    const TRIES: usize = 5;
    let mut tries = 1;
    loop {
        match start() {
            Err(e) if e.is_port_conflict() && tries < TRIES => tries += 1,
            started => return started,
        }
    }
}

fn free_port() -> Result<u16, NatsError> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| NatsError::io("finding a free TCP port on 127.0.0.1", e))
}

/// True when `GET /healthz` answers 200.
fn healthz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((HOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.0\r\nHost: {HOST}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
        }
        Err(e) => format!("(no log: {e})"),
    }
}
