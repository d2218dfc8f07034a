//! The soak: `chassis serve` as a real process under a long mixed load over
//! its HTTP API, then checked against its own audit log.
//!
//! Data flow: [`run`] writes three contracts and a `serve.toml` (audit log
//! on) under the output directory and starts the given `chassis` binary on
//! an ephemeral 127.0.0.1 port. Clients send tasks numbered `soak-0`,
//! `soak-1`, … from a fixed mix ([`Mix`]): successes, guest errors, unknown
//! task types, traps, memory and stack limits, timeouts, import calls
//! refused for rate, and (from the swarms' small slot counts and wait
//! queues) overloaded refusals. While they run, the server's resident
//! memory and open file descriptors are sampled from `/proc`. At the end
//! the server's `/metrics` is read, the server is stopped with SIGTERM and
//! its log is checked: the chain verifies; every task sent has exactly one
//! terminal record; the per-swarm task and limit counters in `/metrics`
//! equal the log's; resident memory does not grow after the warm-up (the
//! most of the run's second half stays within [`RSS_GROWTH_PERCENT`], plus
//! [`RSS_SLACK_KIB`], of the most of its first half after the warm-up);
//! and the file descriptors are back to what they were before the load.
//! Then the service is restarted twice: on a copy of the log as a crash
//! just before the stop would have left it (without the checkpoint the
//! stop wrote), and on the log as it is. For each, the time to ready and
//! the peak resident memory are reported (the memory bounded by
//! [`RESTART_PEAK_MIB`]), with the checkpoint it restored from and the
//! records it replayed. The
//! figures and the curve go to `report.json` and `curve.csv` in the
//! output directory.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The share of the tasks counted as warm-up, in percent.
pub const WARM_UP_PERCENT: u64 = 10;
/// How far the most resident memory of the run's second half may rise
/// above the most of its first half after the warm-up, in percent …
pub const RSS_GROWTH_PERCENT: u64 = 10;
/// … plus this much, in KiB, for the allocator's rounding.
pub const RSS_SLACK_KIB: u64 = 16 * 1024;

/// What a soak run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `chassis` binary.
    pub chassis: PathBuf,
    /// The workspace root (contracts, built swarms).
    pub root: PathBuf,
    /// Where the run's files go (emptied first).
    pub out: PathBuf,
    /// Tasks to send.
    pub tasks: u64,
    /// Stop sending after this long, whatever the count.
    pub max_time: Option<Duration>,
    /// Clients sending at once.
    pub clients: usize,
}

/// One kind of task in the mix.
struct Kind {
    swarm: &'static str,
    task_type: &'static str,
    payload: &'static str,
    /// Its share, in tasks per thousand.
    per_mille: u64,
}

/// The mix, in the order its shares are laid out over each thousand tasks.
struct Mix(&'static [Kind]);

const MIX: Mix = Mix(&[
    Kind {
        swarm: "hello-world",
        task_type: "hello",
        payload: r#"{"name": "soak"}"#,
        per_mille: 700,
    },
    Kind {
        swarm: "hello-world",
        task_type: "add",
        payload: r#"{"a": 9223372036854775807, "b": 1}"#,
        per_mille: 50,
    },
    Kind {
        swarm: "hello-world",
        task_type: "nope",
        payload: "{}",
        per_mille: 10,
    },
    Kind {
        swarm: "probe",
        task_type: "noop",
        payload: "{}",
        per_mille: 100,
    },
    Kind {
        swarm: "probe",
        task_type: "credential",
        payload: r#"{"n": 3, "name": "bench_token"}"#,
        per_mille: 80,
    },
    Kind {
        swarm: "hostile",
        task_type: "trap",
        payload: "{}",
        per_mille: 20,
    },
    Kind {
        swarm: "hostile",
        task_type: "memory_bomb",
        payload: "{}",
        per_mille: 15,
    },
    Kind {
        swarm: "hostile",
        task_type: "spin",
        payload: "{}",
        per_mille: 2,
    },
    Kind {
        swarm: "hostile",
        task_type: "recurse",
        payload: "{}",
        per_mille: 13,
    },
    Kind {
        swarm: "hostile",
        task_type: "burn",
        payload: r#"{"rounds": 1000}"#,
        per_mille: 10,
    },
]);

impl Mix {
    /// The kind of task number `i`: spread over each thousand so that every
    /// kind turns up early and often.
    fn kind(&self, i: u64) -> &'static Kind {
        // A fixed permutation of 0..1000 (7 is prime to 1000).
        let slot = (i * 7) % 1000;
        let mut at = 0;
        for kind in self.0 {
            at += kind.per_mille;
            if slot < at {
                return kind;
            }
        }
        unreachable!("the shares add up to 1000")
    }
}

/// One sample of the server process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Tasks answered so far.
    pub tasks: u64,
    /// Seconds since the load began.
    pub seconds: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// What a run found.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Tasks sent, all answered.
    pub tasks: u64,
    /// How long the load ran, seconds.
    pub seconds: f64,
    /// Tasks per second.
    pub per_second: f64,
    /// HTTP statuses and how often each came.
    pub statuses: BTreeMap<u16, u64>,
    /// Task endings by swarm and outcome, from the audit log.
    pub outcomes: BTreeMap<String, u64>,
    /// Records in the log.
    pub records: u64,
    /// The log's size, bytes.
    pub log_bytes: u64,
    /// The most resident memory in the first half after the warm-up, KiB.
    pub rss_first_kib: u64,
    /// The most in the second half, the end included, KiB.
    pub rss_second_kib: u64,
    /// At the end, the load over, KiB.
    pub rss_end_kib: u64,
    /// Open descriptors before the load and after it.
    pub fds_before: u64,
    /// After the load, its connections closed.
    pub fds_after: u64,
    /// The restart on the log the load left: seconds from starting the
    /// process to its "ready" line (every swarm loaded and restored).
    pub restart_ready_seconds: f64,
    /// The restart's peak resident memory (`VmHWM`), KiB.
    pub restart_peak_kib: u64,
    /// The record the checkpoint the restart restored from covers.
    pub restart_checkpoint: Option<u64>,
    /// Records the restart replayed after that checkpoint.
    pub restart_replayed: u64,
    /// The same for a restart as after a crash (the log without the
    /// checkpoint the clean stop wrote).
    pub crash_restart_ready_seconds: f64,
    /// Its peak resident memory, KiB.
    pub crash_restart_peak_kib: u64,
    /// The record its checkpoint covers.
    pub crash_restart_checkpoint: Option<u64>,
    /// Records it replayed.
    pub crash_restart_replayed: u64,
    /// Checks that failed (empty: the run passed).
    pub failures: Vec<String>,
}

/// The server under test.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(options: &Options, config: &Path) -> Result<Server> {
        let mut child = Command::new(&options.chassis)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .current_dir(&options.root)
            .env("CHASSIS_LOG", "warn")
            .env("CHASSIS_SECRET__PROBE__BENCH_TOKEN", "soak-token")
            .env("CHASSIS_CACHE_DIR", options.out.join("cache"))
            .env("CHASSIS_STORAGE_DIR", options.out.join("storage"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", options.chassis.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // It listens first and is ready once its swarms are loaded.
            let mut sent = false;
            let mut base = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                    base = Some(rest.split_whitespace().next().unwrap_or("").to_string());
                } else if !sent
                    && line.starts_with("chassis serve: ready")
                    && let Some(base) = base.take()
                {
                    let _ = tx.send(Ok(base));
                    sent = true;
                } else if !sent {
                    let _ = tx.send(Err(line));
                } else {
                    eprintln!("  chassis: {line}");
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(300)) {
                Ok(Ok(base)) => return Ok(Server { child, base }),
                Ok(Err(line)) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    bail!(
                        "chassis serve did not start listening:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and wait for the exit.
    fn stop(mut self) -> Result<()> {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("chassis serve exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("chassis serve did not stop within 60 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (KiB) and open descriptors of process `pid`.
pub(crate) fn sample(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok((rss, fds))
}

/// Write the contracts and the server's configuration; the config's path.
fn set_up(options: &Options) -> Result<PathBuf> {
    let out = &options.out;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    std::fs::create_dir_all(out)?;
    let swarms = options.root.join("target/swarms");
    for wasm in ["hello_world.wasm", "bench_probe.wasm", "misbehave.wasm"] {
        if !swarms.join(wasm).exists() {
            bail!(
                "{} is missing: run `cargo xtask build` first",
                swarms.join(wasm).display()
            );
        }
    }
    let never_quarantined =
        "[reputation]\nquarantine_threshold = 0.0\nmax_failure_rate_percent = 100\n";
    let contracts = [
        (
            "hello-world.toml",
            format!(
                "swarm_id = \"hello-world\"\nwasm_module = {:?}\n\
                 [resource_limits]\nmax_concurrent_tasks = 8\n\
                 [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n{never_quarantined}",
                swarms.join("hello_world.wasm")
            ),
        ),
        (
            "probe.toml",
            format!(
                "swarm_id = \"probe\"\nwasm_module = {:?}\n\
                 [resource_limits]\nmax_concurrent_tasks = 4\nmax_api_calls_per_second = 200\n\
                 [security]\nscoped_credentials = [\"bench_token\"]\n\
                 wasi_capabilities = [\"wasi:clocks/monotonic-clock\", \"wasi:clocks/wall-clock\"]\n{never_quarantined}",
                swarms.join("bench_probe.wasm")
            ),
        ),
        (
            "hostile.toml",
            format!(
                "swarm_id = \"hostile\"\nwasm_module = {:?}\n\
                 [resource_limits]\nmax_memory_mb = 16\ntask_timeout_seconds = 0.1\nmax_concurrent_tasks = 2\n\
                 [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n{never_quarantined}",
                swarms.join("misbehave.wasm")
            ),
        ),
    ];
    let dir = out.join("contracts");
    std::fs::create_dir_all(&dir)?;
    for (name, text) in contracts {
        std::fs::write(dir.join(name), text)?;
    }
    let config = out.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "contracts = [{:?}]\nwatch = false\n\
             [audit]\npath = {:?}\n\
             [queue]\nmax_queued = 8\nmax_wait_seconds = 0.5\n",
            dir,
            out.join("audit")
        ),
    )?;
    Ok(config)
}

/// Counters of `/metrics` by name and labels: `name{a="x",b="y"}` → value.
fn counters(text: &str, name: &str) -> HashMap<String, u64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((
                key[name.len()..].to_string(),
                value.parse::<f64>().ok()? as u64,
            ))
        })
        .collect()
}

/// Run the soak; the report (failed checks listed in it).
pub async fn run(options: &Options) -> Result<Report> {
    let config = set_up(options)?;
    let server = Server::start(options, &config)?;
    let pid = server.pid();
    let base = server.base.clone();
    eprintln!(
        "soak: chassis serve (pid {pid}) on {base}, {} tasks, {} clients",
        options.tasks, options.clients
    );
    let http = reqwest::Client::new();
    let ready: Value = serde_json::from_str(
        &http
            .get(format!("{base}/readyz"))
            .send()
            .await?
            .text()
            .await?,
    )?;
    if ready["loaded"].as_array().map_or(0, Vec::len) != 3 {
        bail!("not every swarm of the soak loaded: {ready}");
    }
    let (_, fds_before) = sample(pid)?;

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(BTreeMap::<u16, u64>::new()));
    let transport_errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let deadline = options.max_time.map(|t| started + t);
    let clients: Vec<_> = (0..options.clients)
        .map(|_| {
            let (next, done, statuses, errors) = (
                next.clone(),
                done.clone(),
                statuses.clone(),
                transport_errors.clone(),
            );
            let (http, base, total) = (http.clone(), base.clone(), options.tasks);
            tokio::spawn(async move {
                let mut mine = BTreeMap::<u16, u64>::new();
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let kind = MIX.kind(i);
                    let body = format!(
                        r#"{{"task_type": "{}", "payload": {}, "task_id": "soak-{i}"}}"#,
                        kind.task_type, kind.payload
                    );
                    let url = format!("{base}/v1/swarms/{}/tasks", kind.swarm);
                    match http.post(&url).body(body).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            // Read to the end so the connection is reused.
                            let _ = response.bytes().await;
                            *mine.entry(status).or_default() += 1;
                        }
                        Err(e) => errors.lock().unwrap().push(format!("soak-{i}: {e}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                let mut all = statuses.lock().unwrap();
                for (status, n) in mine {
                    *all.entry(status).or_default() += n;
                }
            })
        })
        .collect();

    // Sample while the clients run: every 1% of the tasks (and at most
    // every second), with a progress line every 10%.
    let mut curve = Vec::new();
    let step = (options.tasks / 100).max(1);
    let mut next_sample = 0;
    let mut next_line = 0;
    loop {
        let n = done.load(Ordering::Relaxed);
        let finished = clients.iter().all(|c| c.is_finished());
        if n >= next_sample || finished {
            let (rss_kib, fds) = sample(pid)?;
            let seconds = started.elapsed().as_secs_f64();
            curve.push(Sample {
                tasks: n,
                seconds,
                rss_kib,
                fds,
            });
            next_sample = n + step;
            if n >= next_line || finished {
                eprintln!(
                    "soak: {n}/{} tasks, {:.0} s, {:.0} a second, rss {} MiB, {fds} fds",
                    options.tasks,
                    seconds,
                    n as f64 / seconds.max(1e-9),
                    rss_kib / 1024
                );
                next_line = n + step * 10;
            }
        }
        if finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in clients {
        client.await?;
    }
    let sent = next.load(Ordering::Relaxed).min(options.tasks);
    let seconds = started.elapsed().as_secs_f64();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    drop(http);
    // The clients' connections closed: descriptors back to where they were.
    let mut fds_after = u64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = sample(pid)?.1;
        if fds_after <= fds_before {
            break;
        }
    }
    let (rss_end_kib, _) = sample(pid)?;
    server.stop()?;

    let mut failures = Vec::new();
    let errors = std::mem::take(&mut *transport_errors.lock().unwrap());
    if !errors.is_empty() {
        failures.push(format!(
            "{} tasks got no answer, the first: {}",
            errors.len(),
            errors[0]
        ));
    }
    let log = options.out.join("audit");
    let verified = match chassis::audit::verify(&log) {
        Ok(v) => v,
        Err(e) => bail!("the audit log does not verify: {e}"),
    };
    // The restart after a crash: the same log without the checkpoint the
    // clean stop wrote, so the records after the newest segment's own
    // checkpoint are replayed; then the restart on the log as it is.
    let crashed = crash_copy(&log, &options.out.join("audit-crashed"))?;
    let crash_config = options.out.join("serve-crashed.toml");
    std::fs::write(
        &crash_config,
        std::fs::read_to_string(&config)?
            .replace(&format!("path = {log:?}"), &format!("path = {crashed:?}")),
    )?;
    let crash_restart = restart(options, &crash_config, &mut failures).await?;
    let restart = restart(options, &config, &mut failures).await?;
    let (outcomes, limits, terminal_failures) = read_log(&log, sent)?;
    failures.extend(terminal_failures);

    // /metrics against the log.
    for (family, from_log) in [
        ("chassis_tasks_total", &outcomes),
        ("chassis_limit_violations_total", &limits),
    ] {
        let from_metrics = counters(&metrics, family);
        let keys: std::collections::BTreeSet<&String> =
            from_metrics.keys().chain(from_log.keys()).collect();
        for key in keys {
            let (m, l) = (
                from_metrics.get(key).copied().unwrap_or(0),
                from_log.get(key).copied().unwrap_or(0),
            );
            if m != l {
                failures.push(format!(
                    "{family}{key}: /metrics says {m}, the audit log {l}"
                ));
            }
        }
    }

    // Memory after the warm-up: the highest of the run's second half
    // against the highest of its first (tasks in flight come and go, so
    // peaks are compared with peaks); and descriptors.
    let warm_up = sent * WARM_UP_PERCENT / 100;
    let middle = warm_up + (sent - warm_up) / 2;
    let peak = |range: std::ops::Range<u64>| {
        curve
            .iter()
            .filter(|s| range.contains(&s.tasks))
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(0)
    };
    let rss_first_kib = peak(warm_up..middle);
    let rss_second_kib = peak(middle..u64::MAX).max(rss_end_kib);
    let bound = rss_first_kib + rss_first_kib * RSS_GROWTH_PERCENT / 100 + RSS_SLACK_KIB;
    if rss_second_kib > bound {
        failures.push(format!(
            "resident memory grew: at most {} MiB in the first half after the warm-up, {} MiB in the second, bound {} MiB",
            rss_first_kib / 1024,
            rss_second_kib / 1024,
            bound / 1024
        ));
    }
    if fds_after > fds_before {
        failures.push(format!(
            "open file descriptors: {fds_before} before the load, {fds_after} after it"
        ));
    }

    let report = Report {
        tasks: sent,
        seconds,
        per_second: sent as f64 / seconds,
        statuses: std::mem::take(&mut *statuses.lock().unwrap()),
        outcomes: outcomes.into_iter().collect(),
        records: verified.records,
        log_bytes: chassis::audit::segments(&log)?
            .iter()
            .map(|s| std::fs::metadata(&s.path).map(|m| m.len()))
            .sum::<std::io::Result<u64>>()?,
        rss_first_kib,
        rss_second_kib,
        rss_end_kib,
        fds_before,
        fds_after,
        restart_ready_seconds: restart.0,
        restart_peak_kib: restart.1,
        restart_checkpoint: restart.2,
        restart_replayed: restart.3,
        crash_restart_ready_seconds: crash_restart.0,
        crash_restart_peak_kib: crash_restart.1,
        crash_restart_checkpoint: crash_restart.2,
        crash_restart_replayed: crash_restart.3,
        failures,
    };
    std::fs::write(
        options.out.join("report.json"),
        serde_json::to_string_pretty(&json!({ "report": report, "curve": curve }))?,
    )?;
    let mut csv = String::from("tasks,seconds,rss_kib,fds\n");
    for s in &curve {
        csv.push_str(&format!(
            "{},{:.2},{},{}\n",
            s.tasks, s.seconds, s.rss_kib, s.fds
        ));
    }
    std::fs::write(options.out.join("curve.csv"), csv)?;
    Ok(report)
}

/// A copy of the log at `log` in `to` as a crash just before the clean
/// stop would have left it: without the checkpoint the stop wrote at the
/// end of the last segment (the closed segments are linked, not copied).
fn crash_copy(log: &Path, to: &Path) -> Result<PathBuf> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    let segments = chassis::audit::segments(log)?;
    let (last, closed) = segments.split_last().context("a log without segments")?;
    for s in closed {
        std::fs::hard_link(&s.path, to.join(s.path.file_name().unwrap_or_default()))?;
    }
    let text = std::fs::read_to_string(&last.path)?;
    let marker = "{\"component\":\"IF.chassis\",\"operation\":\"checkpoint\",";
    let cut = match text.rfind(marker) {
        Some(at) if at > 0 => at,
        _ => text.len(),
    };
    std::fs::write(
        to.join(last.path.file_name().unwrap_or_default()),
        &text[..cut],
    )?;
    Ok(to.to_path_buf())
}

/// Most resident memory a restart may take, whatever the log's length.
pub const RESTART_PEAK_MIB: u64 = 100;

/// Restart the service on the log the load left and stop it again: the
/// seconds to ready, its peak resident memory (KiB), and what it restored
/// (the checkpoint's covered record, the records replayed). A restart
/// over [`RESTART_PEAK_MIB`] is a failure.
async fn restart(
    options: &Options,
    config: &Path,
    failures: &mut Vec<String>,
) -> Result<(f64, u64, Option<u64>, u64)> {
    let started = Instant::now();
    let server = Server::start(options, config)?;
    let ready = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    let audit: Value = serde_json::from_str(
        &reqwest::get(format!("{}/v1/audit?limit=1", server.base))
            .await?
            .text()
            .await?,
    )?;
    server.stop()?;
    let restored = &audit["restored"];
    let checkpoint = restored["checkpoint"].as_u64();
    let replayed = restored["replayed"].as_u64().unwrap_or(0);
    eprintln!(
        "soak: restarted on the log in {ready:.2} s, peak resident {} MiB, from the checkpoint covering record {}, {replayed} records replayed",
        peak_kib / 1024,
        checkpoint.map_or("(none)".to_string(), |c| c.to_string())
    );
    if peak_kib > RESTART_PEAK_MIB * 1024 {
        failures.push(format!(
            "the restart on the log took {} MiB of resident memory, over {RESTART_PEAK_MIB} MiB",
            peak_kib / 1024
        ));
    }
    Ok((ready, peak_kib, checkpoint, replayed))
}

/// Endings per `{swarm,outcome}` and limits per `{swarm,limit}` (keyed as
/// `/metrics` labels them), and the failed checks of "every task sent has
/// exactly one terminal record".
type LogCounts = (HashMap<String, u64>, HashMap<String, u64>, Vec<String>);

/// Read the log, segment by segment, a line at a time (it can be
/// gigabytes).
fn read_log(log: &Path, sent: u64) -> Result<LogCounts> {
    let mut outcomes = HashMap::new();
    let mut limits = HashMap::new();
    let mut terminal = vec![0u8; sent as usize];
    let mut strays = 0u64;
    let mut lines = Vec::new();
    for segment in chassis::audit::segments(log)? {
        let file = std::fs::File::open(&segment.path)?;
        lines.push(BufReader::with_capacity(1 << 20, file).lines());
    }
    for line in lines.into_iter().flatten() {
        let record: Value = serde_json::from_str(&line?)?;
        let swarm = record["swarm_id"].as_str().unwrap_or_default();
        let outcome = match record["operation"].as_str().unwrap_or_default() {
            "task_complete" => "success",
            "task_failed" => record["params"]["kind"].as_str().unwrap_or("?"),
            "resource_limit_exceeded" => {
                let limit = record["params"]["limit"].as_str().unwrap_or("?");
                *limits
                    .entry(format!("{{swarm=\"{swarm}\",limit=\"{limit}\"}}"))
                    .or_default() += 1;
                continue;
            }
            _ => continue,
        };
        *outcomes
            .entry(format!("{{swarm=\"{swarm}\",outcome=\"{outcome}\"}}"))
            .or_default() += 1;
        let index = record["task_id"]
            .as_str()
            .and_then(|id| id.strip_prefix("soak-"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n < terminal.len());
        match index {
            Some(n) => terminal[n] = terminal[n].saturating_add(1),
            None => strays += 1,
        }
    }
    let mut failures = Vec::new();
    let missing: Vec<usize> = (0..terminal.len()).filter(|&i| terminal[i] == 0).collect();
    let doubled: Vec<usize> = (0..terminal.len()).filter(|&i| terminal[i] > 1).collect();
    if !missing.is_empty() {
        failures.push(format!(
            "{} tasks have no terminal record, the first soak-{}",
            missing.len(),
            missing[0]
        ));
    }
    if !doubled.is_empty() {
        failures.push(format!(
            "{} tasks have more than one terminal record, the first soak-{}",
            doubled.len(),
            doubled[0]
        ));
    }
    if strays > 0 {
        failures.push(format!("{strays} terminal records for tasks never sent"));
    }
    Ok((outcomes, limits, failures))
}
