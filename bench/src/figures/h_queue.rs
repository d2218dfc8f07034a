//! (h) The queue path: trivial tasks (`bench-probe`'s `noop`) submitted to
//! a real `nats-server` (JetStream, file storage) and taken by one, two and
//! three `chassis serve --nats` worker processes on this machine (each
//! with its audit log, mirrored to NATS), against the same tasks through
//! `Chassis::execute_task_text` in-process by two workers. A round submits
//! a fixed number of tasks from 64 concurrent submitters (enough that
//! submitting never holds the worker back) and ends when
//! the last result is published (followed by a subscription, not by
//! looking each one up); the figure is tasks per second. Beside each, the
//! machine's CPU time per task: what `nats-server`, the workers and this
//! process (the submitters) used over the round (`/proc/<pid>/stat`), per
//! task, against the CPU time per task of the in-process rounds, and
//! printed split between the three (where a miss is to be looked for).
//! Goals, one
//! worker: at least 10,000 tasks/s and at most 100 µs of machine time per
//! task. With more workers no goal: on two cores every process shares the
//! same cores, so more workers mostly add contention; the design scales
//! with machines, each worker pulling only what its slots can take.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chassis::TaskRequest;
use chassis::serve::queue::{Queue, Streams};
use futures_util::StreamExt;

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};
use crate::setup::in_process_noops;

/// Tasks per round (divided by the run's scale).
const TASKS: u32 = 3000;

/// Concurrent submitters.
const SUBMITTERS: u32 = 64;

/// A child process, killed when dropped.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Queue throughput with 1, 2 and 3 workers, each against in-process.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (h) trivial tasks through the NATS queue vs in-process");
    let dir = run.bench_dir.join("queue");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let nats = nats_server(&dir)?;
    let url = nats.url.clone();
    let queue = Queue::connect(&url, &Streams::default()).await?;
    let chassis = run.setup.chassis.clone();
    let tasks = TASKS / run.scale;
    let mut figures = Vec::new();
    let mut workers: Vec<Process> = Vec::new();
    let mut round = 0u32;
    for n in 1..=3 {
        while workers.len() < n {
            workers.push(worker(run.root, &dir, &url, workers.len() + 1)?);
        }
        // Whose CPU time is the queue's: the server, the workers, and this
        // process (the submitters and the results subscription).
        let pids: Rc<Vec<u32>> = Rc::new(
            std::iter::once(nats.child.id())
                .chain(workers.iter().map(|w| w.0.id()))
                .chain([std::process::id()])
                .collect(),
        );
        let (queue_cpu, own_cpu, split) = (
            Rc::new(RefCell::new(Vec::new())),
            Rc::new(RefCell::new(Vec::new())),
            Rc::new(RefCell::new(Vec::new())),
        );
        let through_queue = || {
            round += 1;
            let (queue, prefix) = (queue.clone(), format!("q{n}-{round}"));
            let (pids, spent, split) = (pids.clone(), queue_cpu.clone(), split.clone());
            async move {
                let before = cpu_times(&pids)?;
                let rate = queue_round(&queue, &prefix, tasks).await?;
                let used: Vec<f64> = cpu_times(&pids)?
                    .iter()
                    .zip(&before)
                    .map(|(after, before)| per_task(*after - *before, tasks))
                    .collect();
                spent.borrow_mut().push(used.iter().sum());
                split.borrow_mut().push(used);
                Ok(rate)
            }
        };
        let in_process = || {
            let (chassis, spent) = (chassis.clone(), own_cpu.clone());
            async move {
                let me = std::process::id();
                let before = cpu_time(me)?;
                let rate = in_process_noops(chassis, tasks / 2).await?;
                spent
                    .borrow_mut()
                    .push(per_task(cpu_time(me)? - before, tasks));
                Ok(rate)
            }
        };
        let (o, b) = rounds(run.rounds, through_queue, in_process).await?;
        print_split(&split.borrow()[1..]);
        let workers_named = format!("{n} worker{}", if n == 1 { "" } else { "s" });
        figures.push(figure(
            &format!("h_queue_{n}"),
            &format!("(h) trivial tasks through the queue, {workers_named}"),
            "tasks/s",
            "execute_task_text in-process, 2 workers",
            &o,
            &b,
            (n == 1).then_some(Goal::OursAtLeast(10_000.0)),
        ));
        // The first of each is the warm-up round's.
        let (o, b) = (
            queue_cpu.borrow()[1..].to_vec(),
            own_cpu.borrow()[1..].to_vec(),
        );
        figures.push(figure(
            &format!("h_queue_cpu_{n}"),
            &format!("(h) machine CPU per queued task, {workers_named}"),
            "µs",
            "CPU per task in-process, 2 workers",
            &o,
            &b,
            (n == 1).then_some(Goal::OursAtMost(100.0)),
        ));
    }
    Ok(figures)
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// Print the median CPU per task of `nats-server`, the workers and the
/// submitters over the measured rounds (each row: the server, each worker,
/// this process).
fn print_split(rounds: &[Vec<f64>]) {
    let median = |of: &dyn Fn(&[f64]) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(|r| of(r)).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let server = median(&|r| r[0]);
    let workers = median(&|r| r[1..r.len() - 1].iter().sum());
    let submitters = median(&|r| r[r.len() - 1]);
    eprintln!(
        "    CPU per task: nats-server {server:.0} µs, workers {workers:.0} µs, submitters {submitters:.0} µs"
    );
}

/// CPU time (user and system) each of the processes `pids` has used so
/// far.
fn cpu_times(pids: &[u32]) -> Result<Vec<Duration>> {
    pids.iter().map(|pid| cpu_time(*pid)).collect()
}

/// CPU time (user and system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The fields after the command name (which may hold spaces and
    // parentheses): the state is field 3, utime and stime 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .with_context(|| format!("{path}: no command name"))?
        .1
        .split_whitespace()
        .collect();
    let mut ticks = 0u64;
    for field in [11, 12] {
        ticks += fields
            .get(field)
            .with_context(|| format!("{path}: too few fields"))?
            .parse::<u64>()
            .with_context(|| format!("{path}: field {}", field + 3))?;
    }
    Ok(Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS))
}

/// µs of `spent` per task of `tasks`.
fn per_task(spent: Duration, tasks: u32) -> f64 {
    spent.as_secs_f64() * 1e6 / f64::from(tasks)
}

/// Submit `tasks` noop tasks and wait until each has its result; tasks per
/// second over the whole round.
async fn queue_round(queue: &Queue, prefix: &str, tasks: u32) -> Result<f64> {
    let mut results = queue.subscribe_results().await?;
    let start = Instant::now();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let (queue, prefix) = (queue.clone(), prefix.to_string());
            tokio::spawn(async move {
                let mut i = s;
                while i < tasks {
                    let request =
                        TaskRequest::from_text("noop", "{}")?.with_id(format!("{prefix}-{i}"));
                    queue.submit("bench-probe", request).await?;
                    i += SUBMITTERS;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for s in submitters {
        s.await??;
    }
    let mut seen = HashSet::new();
    let deadline = Duration::from_secs(120);
    while seen.len() < tasks as usize {
        let message = tokio::time::timeout(deadline, results.next())
            .await
            .context("no result for two minutes")?
            .context("the results subscription ended")?;
        let result: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let id = result["task_id"].as_str().unwrap_or_default();
        if id.starts_with(prefix) {
            if result["status"] != "success" {
                bail!("a queued task failed: {result}");
            }
            seen.insert(id.to_string());
        }
    }
    Ok(f64::from(tasks) / start.elapsed().as_secs_f64())
}

/// `nats-server` with JetStream on a free port, storing under `dir`.
pub(crate) fn nats_server(dir: &Path) -> Result<chassis_test_support::Nats> {
    chassis_test_support::Nats::try_start(dir, -1, None, &[]).map_err(anyhow::Error::msg)
}

/// The `chassis` binary built beside this one.
pub(crate) fn chassis_binary() -> Result<PathBuf> {
    chassis_test_support::find_chassis_binary().ok_or_else(|| {
        anyhow::anyhow!(
            "no chassis binary beside the bench: build it with `cargo build{} -p chassis`",
            if cfg!(debug_assertions) {
                ""
            } else {
                " --release"
            }
        )
    })
}

/// Worker `n`: `chassis serve --nats` with the bench probe and an audit
/// log, started and listening.
fn worker(root: &Path, dir: &Path, url: &str, n: usize) -> Result<Process> {
    use std::io::{BufRead, BufReader};
    let config = dir.join(format!("worker-{n}.toml"));
    std::fs::write(
        &config,
        format!(
            "watch = false\n[audit]\npath = {:?}\n",
            dir.join(format!("worker-{n}-audit.jsonl"))
        ),
    )?;
    let mut child = Command::new(chassis_binary()?)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--nats", url])
        .args(["--worker-id", &format!("bench-{n}")])
        .arg("--config")
        .arg(&config)
        .arg(root.join("config/bench-probe.toml"))
        .env("CHASSIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a chassis serve worker")?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let process = Process(child);
    for line in lines.by_ref() {
        // Ready once its swarms are loaded (it listens before).
        if line?.starts_with("chassis serve: ready") {
            // Keep draining stderr so the worker never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return Ok(process);
        }
    }
    bail!("worker {n} stopped before it listened")
}
