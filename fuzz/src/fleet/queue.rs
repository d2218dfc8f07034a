//! A soak through the queue (`chassis-soak --nats`, `cargo xtask soak
//! --nats`): a million tasks put on the queue by `chassis submit` and run
//! by several workers, one of which is killed (SIGKILL) and started again
//! every so often.
//!
//! Data flow: [`run`] starts one `nats-server` (with a monitoring port) and
//! the workers, their audit logs under `fsync = "always"` (the policy under
//! which a killed worker loses no record of a task it answered). Submitters (threads) take the next chunk of task numbers,
//! write it as a JSON-lines file and run `chassis submit --file` on it,
//! which must exit 0; until every chunk is in. Meanwhile a killer kills
//! one of the workers after the first in turn every [`Options::kill_every`]
//! and starts it again on its audit log (until the last chunk is in), and a sampler reads the first
//! worker's resident memory and open descriptors from `/proc` every
//! second (it is never killed: its curve is the one that must stay flat),
//! with the results stream's size. Then the checks every fleet proof ends
//! with ([`super::check_results`], [`super::stop_and_verify`]) and this
//! soak's own: the live workers' `/metrics` show nothing pending or in
//! flight; no more tasks were delivered again, nor ran again, than the
//! kills can explain (each kill loses at most the tasks in the killed
//! worker's slots); the first worker's memory in the run's second half
//! stays within [`RSS_GROWTH_PERCENT`] plus [`RSS_SLACK_KIB`] of its first
//! half after a warm-up of [`WARM_UP_PERCENT`], and its descriptors within
//! [`FD_SLACK`]. The figures go to `report.json`, the curve to
//! `curve.csv`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chassis_test_support::cluster::NatsCluster;

use super::{Checked, Fleet, SLOTS, Setting, Worker, check_results, stop_and_verify, task_id};
use crate::soak::{RSS_GROWTH_PERCENT, RSS_SLACK_KIB, WARM_UP_PERCENT};

/// How far the first worker's open descriptors may rise in the second
/// half above the most of the first.
pub const FD_SLACK: u64 = 8;

/// The workers killed, and when (seconds since the load began).
type Kills = Vec<(String, f64)>;

/// Tasks per `chassis submit` run.
pub const CHUNK: u64 = 10_000;

/// What a queue soak is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where it runs, how many tasks, how many workers.
    pub setting: Setting,
    /// `chassis submit` processes at once.
    pub submitters: usize,
    /// Time between kills.
    pub kill_every: Duration,
}

/// One sample of the first worker.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since the load began.
    pub seconds: f64,
    /// Results in the stream.
    pub results: u64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// What a run found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Tasks submitted.
    pub tasks: u64,
    /// Seconds from the first submission to the last result.
    pub seconds: f64,
    /// Results a second over that time.
    pub per_second: f64,
    /// Workers killed and started again, and when (seconds).
    pub kills: Vec<(String, f64)>,
    /// The queue's counters at the end, summed over the workers (each
    /// since its last start): redeliveries.
    pub redeliveries_counted: u64,
    /// The first worker's most resident memory in the first half after the
    /// warm-up, and in the second half, KiB.
    pub rss_kib: (u64, u64),
    /// Its most open descriptors in the same halves.
    pub fds: (u64, u64),
    /// What the checks found.
    pub checked: Checked,
}

/// Soak the queue, and check it.
pub async fn run(options: &Options) -> Result<Report> {
    let out = &options.setting.out;
    super::fresh_dir(out)?;
    std::fs::create_dir_all(out.join("chunks"))?;
    let nats = NatsCluster::start(&out.join("nats"), 1, Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    // A killed worker must lose no terminal record of a task whose result
    // it published: only `always` waits for the record before the result
    // goes out (docs/audit.md: under the other policies a process crash
    // loses what is still queued).
    let mut fleet = Fleet::set_up(
        &options.setting.chassis,
        &options.setting.root,
        out,
        nats.urls(),
        1,
    )?;
    fleet.fsync = "always".to_string();
    let fleet = Arc::new(fleet);
    let mut workers = Vec::new();
    for i in 1..=options.setting.workers {
        eprintln!("queue soak: starting worker w{i}");
        workers.push(fleet.start_worker(&format!("w{i}"))?);
    }
    let watched = workers[0].pid().expect("w1 runs");
    let monitor = nats.nodes[0].monitor_port;
    eprintln!(
        "queue soak: {} tasks through chassis submit ({} at once, {CHUNK} a run) and {} workers; one killed every {:.0} s",
        options.setting.tasks,
        options.submitters,
        options.setting.workers,
        options.kill_every.as_secs_f64()
    );
    let started = Instant::now();
    let over = Arc::new(AtomicBool::new(false));

    let sampler = {
        let over = over.clone();
        std::thread::spawn(move || {
            let mut curve = Vec::new();
            while !over.load(Ordering::Relaxed) {
                let results = chassis_test_support::cluster::stream_state_at(
                    monitor,
                    chassis::serve::queue::RESULTS_STREAM,
                )
                .and_then(|s| s["messages"].as_u64());
                if let (Some(results), Ok((rss_kib, fds))) = (results, crate::soak::sample(watched))
                {
                    curve.push(Sample {
                        seconds: started.elapsed().as_secs_f64(),
                        results,
                        rss_kib,
                        fds,
                    });
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            curve
        })
    };
    let killing = Arc::new(AtomicBool::new(true));
    let killer = {
        let (killing, fleet) = (killing.clone(), fleet.clone());
        let every = options.kill_every;
        std::thread::spawn(move || -> Result<(Vec<Worker>, Kills)> {
            let mut kills = Vec::new();
            let mut turn = 0;
            'run: loop {
                let due = Instant::now() + every;
                while Instant::now() < due {
                    if !killing.load(Ordering::Relaxed) {
                        break 'run;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let i = 1 + turn % (workers.len() - 1);
                let name = workers[i].name.clone();
                workers[i].kill();
                kills.push((name.clone(), started.elapsed().as_secs_f64()));
                workers[i] = fleet.start_worker(&name)?;
                eprintln!(
                    "queue soak: {:.1} s: killed {name} and started it again",
                    kills.last().map_or(0.0, |k| k.1)
                );
                turn += 1;
            }
            Ok((workers, kills))
        })
    };

    // The submitters: `chassis submit` on one chunk after another.
    let next = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for _ in 0..options.submitters {
        let (next, options, urls) = (next.clone(), options.clone(), fleet.urls.clone());
        submitters.push(std::thread::spawn(move || -> Vec<String> {
            let mut refused = Vec::new();
            loop {
                let first = next.fetch_add(CHUNK, Ordering::Relaxed);
                if first >= options.setting.tasks {
                    return refused;
                }
                let end = (first + CHUNK).min(options.setting.tasks);
                if let Err(e) = submit_chunk(&options, &urls, first, end) {
                    refused.push(format!("tasks {first} to {}: {e:#}", end - 1));
                }
            }
        }));
    }
    let mut submitted = super::Submitted {
        tasks: options.setting.tasks,
        ..Default::default()
    };
    for submitter in submitters {
        submitted
            .refused
            .extend(submitter.join().expect("a submitter does not panic"));
    }
    eprintln!(
        "queue soak: every task submitted in {:.1} s; waiting for the results",
        started.elapsed().as_secs_f64()
    );
    let ids: Vec<String> = (0..options.setting.tasks)
        .map(|n| task_id("queue", n))
        .collect();
    // The kills stop with the submissions: the results are read from a
    // fleet that is whole again.
    killing.store(false, Ordering::Relaxed);
    let (mut workers, kills) = killer.join().expect("the killer does not panic")?;
    let results = async {
        let queue = Arc::new(fleet.queue().await?);
        check_results(&nats, queue, &submitted, &ids).await
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    over.store(true, Ordering::Relaxed);
    let curve = sampler.join().expect("the sampler does not panic");
    let mut checked = results?;

    // The queue's own counters: nothing left pending or in flight.
    let mut redeliveries_counted = 0;
    let client = reqwest::Client::new();
    for worker in &workers {
        let text = client
            .get(format!("{}/metrics", worker.base))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let text = match text {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => {
                checked
                    .failures
                    .push(format!("{}'s /metrics: {e}", worker.name));
                continue;
            }
        };
        for metric in ["chassis_queue_pending", "chassis_queue_in_flight"] {
            let line = format!("{metric}{{swarm=\"hello\"}} 0");
            if !text.lines().any(|l| l == line) {
                checked
                    .failures
                    .push(format!("{}'s /metrics lacks {line:?}", worker.name));
            }
        }
        redeliveries_counted += text
            .lines()
            .filter(|l| l.starts_with("chassis_queue_redeliveries_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    stop_and_verify(&fleet, &mut workers, "queue", &ids, &mut checked)?;

    // What the kills can explain: each loses at most the tasks in the
    // killed worker's slots.
    let explained = kills.len() as u64 * u64::from(SLOTS);
    for (what, n) in [
        ("delivered again", checked.redelivered),
        ("ran more than once", checked.ran_again),
    ] {
        if n > explained {
            checked.failures.push(format!(
                "{n} tasks {what}, more than the {} kills can explain ({explained})",
                kills.len()
            ));
        }
    }

    // The first worker's memory and descriptors stay flat.
    let warm = curve
        .iter()
        .position(|s| s.results * 100 >= options.setting.tasks * WARM_UP_PERCENT)
        .unwrap_or(curve.len());
    let rest = &curve[warm..];
    let (first, second) = rest.split_at(rest.len() / 2);
    let most = |samples: &[Sample], f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
    let rss_kib = (most(first, |s| s.rss_kib), most(second, |s| s.rss_kib));
    let fds = (most(first, |s| s.fds), most(second, |s| s.fds));
    if first.is_empty() || second.is_empty() {
        checked.failures.push(format!(
            "too few samples of w1 after the warm-up ({}) to compare its halves",
            rest.len()
        ));
    } else {
        if rss_kib.1 > rss_kib.0 + rss_kib.0 * RSS_GROWTH_PERCENT / 100 + RSS_SLACK_KIB {
            checked.failures.push(format!(
                "w1's resident memory grew from at most {} KiB to {} KiB",
                rss_kib.0, rss_kib.1
            ));
        }
        if fds.1 > fds.0 + FD_SLACK {
            checked.failures.push(format!(
                "w1's open descriptors grew from at most {} to {}",
                fds.0, fds.1
            ));
        }
    }

    let mut csv = String::from("seconds,results,rss_kib,fds\n");
    for s in &curve {
        csv.push_str(&format!(
            "{:.1},{},{},{}\n",
            s.seconds, s.results, s.rss_kib, s.fds
        ));
    }
    std::fs::write(out.join("curve.csv"), csv)?;
    let report = Report {
        tasks: options.setting.tasks,
        seconds,
        per_second: options.setting.tasks as f64 / seconds,
        kills,
        redeliveries_counted,
        rss_kib,
        fds,
        checked,
    };
    super::write_report(out, &report)?;
    Ok(report)
}

/// Tasks `first..end` into a file, and `chassis submit --file` on it.
fn submit_chunk(options: &Options, urls: &str, first: u64, end: u64) -> Result<()> {
    let file = options.setting.out.join(format!("chunks/{first}.jsonl"));
    let mut text = String::with_capacity(((end - first) * 80) as usize);
    for n in first..end {
        let id = task_id("queue", n);
        text.push_str(&format!(
            "{{\"task_type\":\"hello\",\"payload\":{{\"name\":\"{id}\"}},\"task_id\":\"{id}\"}}\n"
        ));
    }
    std::fs::write(&file, text)?;
    let out = Command::new(&options.setting.chassis)
        .args(["submit", "--quiet", "--nats", urls, "--swarm", super::SWARM])
        .arg("--file")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running chassis submit")?;
    std::fs::remove_file(&file)?;
    if !out.status.success() {
        anyhow::bail!(
            "chassis submit: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
