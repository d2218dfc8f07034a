//! The fleet proofs: `chassis serve --nats` workers as real processes on a
//! real NATS JetStream, a client putting tasks on the queue at a steady
//! rate, and the checks that what `docs/scale-out.md` promises held.
//!
//! Data flow: [`Fleet::set_up`] writes the swarm's contract, a signing key
//! the workers share and each worker's configuration under the output
//! directory. [`Fleet::start_worker`] starts a worker (its stderr to
//! `<name>.log`) and waits for its "ready" line. [`submit`] puts tasks
//! `<prefix>-<n>` on the queue, paced, with the client's own retries;
//! [`collect`] waits for each result and checks it: signed by the fleet's
//! key, a success whose greeting names the task. At the end each worker
//! is stopped with SIGTERM and its audit log checked by `chassis audit
//! verify`, alone and against the records it mirrored to NATS
//! ([`Fleet::verify_audit`]); [`terminal_records`] counts each task's
//! terminal records over every log. The scenarios are the modules below.

pub mod cluster;
pub mod queue;
pub mod rolling;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chassis::TaskRequest;
use chassis::serve::queue::trust::{Trust, WorkerKey};
use chassis::serve::queue::{
    Queue, QueueResult, RESULTS_STREAM, ResultStatus, Streams, TASKS_STREAM,
};
use chassis_test_support::cluster::NatsCluster;
use serde_json::json;

/// The swarm every fleet proof runs: hello-world, as `hello`.
pub const SWARM: &str = "hello";
/// Its slots on each worker, unless a proof changes them.
pub const SLOTS: u32 = 8;

/// What every fleet proof is given.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The `chassis` binary.
    pub chassis: PathBuf,
    /// The workspace root.
    pub root: PathBuf,
    /// Where the run's files go (emptied first).
    pub out: PathBuf,
    /// Tasks.
    pub tasks: u64,
    /// Worker processes.
    pub workers: usize,
}

/// A fleet's shared files and where its workers find NATS.
pub struct Fleet {
    /// The `chassis` binary.
    pub chassis: PathBuf,
    /// The workspace root.
    pub root: PathBuf,
    /// Where the run's files go.
    pub out: PathBuf,
    /// The NATS URLs (comma-separated).
    pub urls: String,
    /// Stream replicas.
    pub replicas: usize,
    /// The workers' audit `fsync` policy (the service's default,
    /// `interval:1000`, unless set).
    pub fsync: String,
    contract: PathBuf,
    key: PathBuf,
    public_key: PathBuf,
}

/// A worker process.
pub struct Worker {
    /// Its worker id.
    pub name: String,
    /// Its audit log.
    pub audit: PathBuf,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    child: Option<Child>,
}

/// The signing key of the fleet's workers.
fn fleet_key() -> WorkerKey {
    WorkerKey::from_seed([7; 32])
}

impl Fleet {
    /// Write the contract, the key files and the cache directory under
    /// `out` (which must exist).
    pub fn set_up(
        chassis: &Path,
        root: &Path,
        out: &Path,
        urls: String,
        replicas: usize,
    ) -> Result<Fleet> {
        use std::os::unix::fs::PermissionsExt;
        let wasm = root.join("target/swarms/hello_world.wasm");
        if !wasm.exists() {
            bail!(
                "{} is missing: run `cargo xtask build` first",
                wasm.display()
            );
        }
        let contract = out.join("hello.toml");
        std::fs::write(
            &contract,
            format!(
                "swarm_id = \"{SWARM}\"\nwasm_module = {wasm:?}\n\
                 [resource_limits]\nmax_concurrent_tasks = {SLOTS}\ntask_timeout_seconds = 5.0\n\
                 [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n"
            ),
        )?;
        let (key, public_key) = (out.join("worker.key"), out.join("worker.pub"));
        std::fs::write(&key, fleet_key().to_file_text().as_bytes())?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(&public_key, fleet_key().public_file_text())?;
        Ok(Fleet {
            chassis: chassis.to_path_buf(),
            root: root.to_path_buf(),
            out: out.to_path_buf(),
            urls,
            replicas,
            fsync: "interval:1000".to_string(),
            contract,
            key,
            public_key,
        })
    }

    /// Start worker `name` and wait until it is ready (its swarm loaded,
    /// taking tasks).
    pub fn start_worker(&self, name: &str) -> Result<Worker> {
        self.start_worker_with(name, SLOTS)
    }

    /// The same, with the swarm's `max_concurrent_tasks` at `slots` in the
    /// worker's own copy of the contract (a new configuration).
    pub fn start_worker_with(&self, name: &str, slots: u32) -> Result<Worker> {
        let contract = self.out.join(format!("hello-{name}.toml"));
        let text = std::fs::read_to_string(&self.contract)?;
        std::fs::write(
            &contract,
            text.replace(
                &format!("max_concurrent_tasks = {SLOTS}"),
                &format!("max_concurrent_tasks = {slots}"),
            ),
        )?;
        let audit = self.out.join(format!("{name}-audit.jsonl"));
        let config = self.out.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "watch = false\nshutdown_grace_seconds = 10.0\n\
                 [audit]\npath = {audit:?}\nfsync = {:?}\n\
                 [nats]\nreplicas = {}\nack_slack_seconds = 2.0\nheartbeat_seconds = 1.0\n\
                 max_deliveries = 20\nsigning_key = {:?}\n",
                self.fsync, self.replicas, self.key
            ),
        )?;
        let log_path = self.out.join(format!("{name}.log"));
        let skip = std::fs::metadata(&log_path).map_or(0, |m| m.len()) as usize;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut child = Command::new(&self.chassis)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .args(["--nats", &self.urls, "--worker-id", name])
            .arg(&contract)
            .current_dir(&self.root)
            .env("CHASSIS_LOG", "warn,async_nats=info")
            .env("CHASSIS_CACHE_DIR", self.out.join("cache"))
            .env("CHASSIS_STORAGE_DIR", self.out.join("storage"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.chassis.display()))?;
        // It listens first and says it is ready once its swarm is loaded;
        // the log may hold an earlier run of the same worker.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let text = std::fs::read(&log_path)?;
            let fresh = String::from_utf8_lossy(&text[skip.min(text.len())..]);
            let mut base = None;
            for line in fresh.lines() {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    base = rest.split_whitespace().next().map(str::to_string);
                } else if line.starts_with("chassis serve: ready")
                    && let Some(base) = base.take()
                {
                    return Ok(Worker {
                        name: name.to_string(),
                        audit,
                        base,
                        child: Some(child),
                    });
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "worker {name} exited ({status}) before it was ready: see {}",
                    log_path.display()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                bail!(
                    "worker {name} was not ready within 300 s: see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client of the queue that believes the fleet's results.
    pub async fn queue(&self) -> Result<Queue> {
        let streams = Streams {
            replicas: self.replicas,
            ..Streams::default()
        };
        Ok(Queue::connect(&self.urls, &streams)
            .await?
            .trusting(Trust::Workers(vec![fleet_key().public()])))
    }

    /// `chassis audit verify` of `worker`'s log, alone and against the
    /// head it mirrored to NATS; the checks that failed.
    pub fn verify_audit(&self, worker: &Worker) -> Vec<String> {
        let mut failures = Vec::new();
        let runs = [
            vec!["audit".to_string(), "verify".to_string()],
            vec![
                "audit".to_string(),
                "verify".to_string(),
                "--nats".to_string(),
                self.urls.clone(),
                "--worker".to_string(),
                worker.name.clone(),
                "--worker-key".to_string(),
                self.public_key.display().to_string(),
            ],
        ];
        for args in runs {
            let what = if args.len() > 2 {
                "against its mirror"
            } else {
                "alone"
            };
            match Command::new(&self.chassis)
                .args(&args)
                .arg(&worker.audit)
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => failures.push(format!(
                    "{}'s audit log does not verify {what}: {}",
                    worker.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => failures.push(format!("running chassis audit verify: {e}")),
            }
        }
        failures
    }
}

impl Worker {
    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill it (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait (at most `within`) for a clean exit.
    pub fn terminate(&mut self, within: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("worker {} is not running", self.name);
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("worker {} exited with {status} after SIGTERM", self.name);
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "worker {} did not stop within {within:?} of SIGTERM",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Empty `out` (made if missing) for a run's files.
pub(crate) fn fresh_dir(out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("making {}", out.display()))
}

/// `report` as `out/report.json`.
pub(crate) fn write_report(out: &Path, report: &impl serde::Serialize) -> Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )
    .with_context(|| format!("writing {}", out.join("report.json").display()))
}

/// Task `n` of a run whose ids start with `prefix`.
pub fn task_id(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n}")
}

/// What [`submit`] did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Tasks on the queue.
    pub tasks: u64,
    /// Tasks the client gave up on (after its own retries), with why.
    pub refused: Vec<String>,
}

/// Put tasks `first..end` on the queue at about `rate` a second, from
/// `clients` submitters at once; stops early once `stop` says so.
pub async fn submit(
    queue: Arc<Queue>,
    prefix: &str,
    first: u64,
    end: u64,
    rate: f64,
    clients: u64,
    stop: impl Fn() -> bool + Send + Sync + 'static,
) -> Submitted {
    let stop = Arc::new(stop);
    let started = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (queue, stop, prefix) = (queue.clone(), stop.clone(), prefix.to_string());
        set.spawn(async move {
            let mut done = Submitted::default();
            let mut n = first + client;
            while n < end && !stop() {
                // Task n is due at (n - first) / rate seconds.
                let due = started + Duration::from_secs_f64((n - first) as f64 / rate);
                tokio::time::sleep_until(due).await;
                let id = task_id(&prefix, n);
                let request = TaskRequest::new("hello", json!({ "name": id })).with_id(&id);
                match queue.submit(SWARM, request).await {
                    Ok(_) => done.tasks += 1,
                    Err(e) => done.refused.push(format!("{id}: {e}")),
                }
                n += clients;
            }
            done
        });
    }
    let mut all = Submitted::default();
    while let Some(done) = set.join_next().await {
        let done = done.expect("a submitter does not panic");
        all.tasks += done.tasks;
        all.refused.extend(done.refused);
    }
    all
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Results by task id.
    pub results: HashMap<String, QueueResult>,
    /// Results missing or wrong, with why.
    pub failures: Vec<String>,
}

/// Wait for the result of each of `ids` (all within `timeout`), from
/// `readers` at once, and check each: a success whose greeting names the
/// task.
pub async fn collect(
    queue: Arc<Queue>,
    ids: Vec<String>,
    timeout: Duration,
    readers: usize,
) -> Collected {
    let deadline = Instant::now() + timeout;
    let ids = Arc::new(ids);
    let mut set = tokio::task::JoinSet::new();
    for reader in 0..readers {
        let (queue, ids) = (queue.clone(), ids.clone());
        set.spawn(async move {
            let mut found = Collected::default();
            for id in ids.iter().skip(reader).step_by(readers) {
                let left = deadline.saturating_duration_since(Instant::now());
                match queue.wait(id, left.max(Duration::from_millis(1))).await {
                    Ok(result) => {
                        let greeting = result
                            .outcome
                            .as_ref()
                            .and_then(|o| o.output["greeting"].as_str().map(str::to_string));
                        if result.status != ResultStatus::Success
                            || greeting.as_deref() != Some(format!("Hello, {id}!").as_str())
                        {
                            found
                                .failures
                                .push(format!("{id}: wrong result {result:?}"));
                        }
                        found.results.insert(id.clone(), result);
                    }
                    Err(e) => found.failures.push(format!("{id}: {e}")),
                }
            }
            found
        });
    }
    let mut all = Collected::default();
    while let Some(found) = set.join_next().await {
        let found = found.expect("a reader does not panic");
        all.results.extend(found.results);
        all.failures.extend(found.failures);
    }
    all
}

/// How many terminal records (`task_complete`, `task_failed`) each task
/// has over all of `logs`, for tasks whose id starts with `prefix-`.
pub fn terminal_records(logs: &[&Path], prefix: &str) -> Result<HashMap<String, u64>> {
    let mut counts = HashMap::new();
    let prefix = format!("{prefix}-");
    for log in logs {
        for segment in chassis::audit::segments(log)? {
            let file = std::fs::File::open(&segment.path)?;
            for line in BufReader::with_capacity(1 << 20, file).lines() {
                let line = line?;
                if !(line.contains("\"task_complete\"") || line.contains("\"task_failed\"")) {
                    continue;
                }
                let record: serde_json::Value = serde_json::from_str(&line)?;
                if let Some(id) = record["task_id"].as_str()
                    && id.starts_with(&prefix)
                    && matches!(
                        record["operation"].as_str(),
                        Some("task_complete" | "task_failed")
                    )
                {
                    *counts.entry(id.to_string()).or_default() += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// What the checks every fleet proof ends with found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Checked {
    /// Results by worker.
    pub by_worker: BTreeMap<String, u64>,
    /// Results delivered more than once before they were answered.
    pub redelivered: u64,
    /// Tasks with more than one terminal audit record over all the logs.
    pub ran_again: u64,
    /// The results stream at the end: messages, last sequence.
    pub results_stream: (u64, u64),
    /// Checks that failed.
    pub failures: Vec<String>,
}

impl Checked {
    /// Note up to ten of `problems`, then how many there were.
    fn note(&mut self, what: &str, problems: &[String]) {
        self.failures
            .extend(problems.iter().take(10).map(|p| format!("{what}: {p}")));
        if problems.len() > 10 {
            self.failures
                .push(format!("{} {what} in all", problems.len()));
        }
    }
}

/// The first half of the checks: every submitted task `ids` has its
/// result, a success naming it, signed by the fleet's key; on every node
/// the results stream holds exactly one message per task and never
/// replaced one (its last sequence is its message count: the stream is the
/// run's own), and the task stream is empty (within 30 s: a task whose
/// acknowledgement was lost waits out its acknowledgement wait).
pub async fn check_results(
    cluster: &NatsCluster,
    queue: Arc<Queue>,
    submitted: &Submitted,
    ids: &[String],
) -> Result<Checked> {
    let mut checked = Checked::default();
    checked.note("not submitted", &submitted.refused);
    let within = Duration::from_secs(300).max(Duration::from_millis(ids.len() as u64));
    let found = collect(queue, ids.to_vec(), within, 16).await;
    checked.note("result missing or wrong", &found.failures);
    for result in found.results.values() {
        *checked.by_worker.entry(result.worker.clone()).or_default() += 1;
        if result.deliveries > 1 {
            checked.redelivered += 1;
        }
    }
    cluster
        .wait_healthy(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let expected = ids.len() as u64;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let state = cluster.stream_state(i, RESULTS_STREAM);
        let figure = |key: &str| state.as_ref().and_then(|s| s[key].as_u64()).unwrap_or(0);
        let (messages, last) = (figure("messages"), figure("last_seq"));
        if i == 0 {
            checked.results_stream = (messages, last);
        }
        if (messages, last) != (expected, expected) {
            checked.failures.push(format!(
                "node {}: the results stream holds {messages} results up to sequence {last}, not {expected} and {expected}",
                node.name
            ));
        }
        // A task whose acknowledgement was lost (a worker killed, a leader
        // changed) stays until its acknowledgement wait ends; it is then
        // delivered again, found answered, and acknowledged.
        let asked = Instant::now();
        let waiting = loop {
            let waiting = cluster
                .stream_state(i, TASKS_STREAM)
                .and_then(|s| s["messages"].as_u64());
            if waiting == Some(0) || asked.elapsed() > Duration::from_secs(30) {
                break waiting;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if waiting != Some(0) {
            checked.failures.push(format!(
                "node {}: {waiting:?} tasks left in the task stream",
                node.name
            ));
        }
    }
    Ok(checked)
}

/// The second half: each worker stops cleanly on SIGTERM; its audit log
/// verifies alone and against the head it mirrored; every task of `ids`
/// ended in some log (`ran_again` counts those that ended more than once).
pub fn stop_and_verify(
    fleet: &Fleet,
    workers: &mut [Worker],
    prefix: &str,
    ids: &[String],
    checked: &mut Checked,
) -> Result<()> {
    for worker in workers.iter_mut() {
        if let Err(e) = worker.terminate(Duration::from_secs(60)) {
            checked.failures.push(e.to_string());
        }
    }
    for worker in workers.iter() {
        checked.failures.extend(fleet.verify_audit(worker));
    }
    let logs: Vec<&Path> = workers.iter().map(|w| w.audit.as_path()).collect();
    let terminal = terminal_records(&logs, prefix)?;
    let unrecorded: Vec<&String> = ids
        .iter()
        .filter(|id| !terminal.contains_key(*id))
        .collect();
    if !unrecorded.is_empty() {
        checked.failures.push(format!(
            "{} tasks have no terminal record in any worker's audit log (the first: {:?})",
            unrecorded.len(),
            &unrecorded[..unrecorded.len().min(3)]
        ));
    }
    checked.ran_again = terminal.values().filter(|&&n| n > 1).count() as u64;
    Ok(())
}
