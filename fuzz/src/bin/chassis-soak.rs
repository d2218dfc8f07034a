//! `chassis-soak --chassis BIN [--tasks N] [--minutes M] [--clients C]`:
//! run `chassis serve` under a long mixed load and check it against its
//! audit log (see `chassis_fuzz::soak`). The worker fleet instead
//! (`chassis_fuzz::fleet`): with `--cluster`, on a three-node NATS cluster
//! that loses nodes under a steady load; with `--nats`, a million tasks
//! through `chassis submit` while workers are killed; with `--rolling`, a
//! rolling restart of the workers under load. Run through `cargo xtask
//! soak`, which builds both in release mode; `cargo xtask test` runs a
//! short one of each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use chassis_fuzz::fleet::{Checked, Setting, cluster, queue, rolling};
use chassis_fuzz::soak::{self, Options, RSS_GROWTH_PERCENT, RSS_SLACK_KIB, WARM_UP_PERCENT};
use clap::Parser;

/// Soak `chassis serve` with a mixed load and check what it recorded.
#[derive(Parser)]
#[command(name = "chassis-soak")]
struct Args {
    /// The `chassis` binary to serve with.
    #[arg(long)]
    chassis: PathBuf,
    /// Tasks to send (1,000,000; with --cluster ten minutes' worth at
    /// --rate, with --rolling two minutes' worth).
    #[arg(long)]
    tasks: Option<u64>,
    /// Stop sending after this many minutes, whatever the count.
    #[arg(long)]
    minutes: Option<f64>,
    /// Clients sending at once (with --nats: `chassis submit` processes,
    /// 4 by default).
    #[arg(long)]
    clients: Option<usize>,
    /// Where the run's files go (emptied first; target/soak, or
    /// target/soak-cluster, -nats or -rolling).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The worker fleet on a three-node NATS JetStream cluster instead,
    /// killing and freezing its nodes under a steady load.
    #[arg(long, conflicts_with_all = ["nats", "rolling"])]
    cluster: bool,
    /// The worker fleet on one NATS server instead: every task put on the
    /// queue by `chassis submit`, a worker killed and started again every
    /// --cycle-seconds (30).
    #[arg(long, conflicts_with = "rolling")]
    nats: bool,
    /// A rolling restart instead: each worker in turn gets SIGTERM and
    /// starts again with a new configuration, one every --cycle-seconds
    /// (10), under a steady load.
    #[arg(long)]
    rolling: bool,
    /// With --cluster or --rolling: tasks submitted a second.
    #[arg(long, default_value_t = 300.0)]
    rate: f64,
    /// With --cluster, --nats or --rolling: worker processes (2 on a
    /// cluster, 3 otherwise).
    #[arg(long)]
    workers: Option<usize>,
    /// With --cluster, --nats or --rolling: seconds between events (a
    /// round of node failures: 60; a worker killed: 30; a worker
    /// restarted: 10).
    #[arg(long)]
    cycle_seconds: Option<f64>,
    /// With --cluster: seconds a node stays frozen (SIGSTOP); from 20 s
    /// on, a worker connected to it must move to another node meanwhile.
    #[arg(long, default_value_t = 25.0)]
    freeze_seconds: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chassis-soak: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main() -> Result<bool> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ lives in the workspace")
        .to_path_buf();
    if args.cluster || args.nats || args.rolling {
        return fleet(args, root).await;
    }
    let tasks = args.tasks.unwrap_or(1_000_000);
    let clients = args.clients.unwrap_or(16);
    if tasks == 0 || clients == 0 {
        bail!("--tasks and --clients must be at least 1");
    }
    let max_time = match args.minutes {
        Some(m) if !(m.is_finite() && m > 0.0) => bail!("--minutes must be a positive number"),
        Some(m) => Some(Duration::from_secs_f64(m * 60.0)),
        None => None,
    };
    let options = Options {
        chassis: args.chassis,
        out: root.join(args.out.unwrap_or_else(|| "target/soak".into())),
        root,
        tasks,
        max_time,
        clients,
    };
    let r = soak::run(&options).await?;
    println!(
        "soak: {} tasks in {:.1} s ({:.0} a second), every one answered",
        r.tasks, r.seconds, r.per_second
    );
    println!("  HTTP statuses: {:?}", r.statuses);
    println!("  endings (audit log):");
    for (key, n) in &r.outcomes {
        println!("    {key} {n}");
    }
    println!(
        "  audit log: {} records, {:.1} MiB, the chain verifies",
        r.records,
        r.log_bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  resident memory: at most {} MiB in the first half after the {WARM_UP_PERCENT}% warm-up, {} MiB in the second, {} MiB at the end (bound: +{RSS_GROWTH_PERCENT}% + {} MiB)",
        r.rss_first_kib / 1024,
        r.rss_second_kib / 1024,
        r.rss_end_kib / 1024,
        RSS_SLACK_KIB / 1024
    );
    println!(
        "  open descriptors: {} before the load, {} after it",
        r.fds_before, r.fds_after
    );
    println!(
        "  restart on the log: ready in {:.2} s (goal: under 2 s), peak resident {} MiB (bound {} MiB), from the checkpoint covering record {}, {} records replayed",
        r.restart_ready_seconds,
        r.restart_peak_kib / 1024,
        soak::RESTART_PEAK_MIB,
        r.restart_checkpoint
            .map_or("(none)".to_string(), |c| c.to_string()),
        r.restart_replayed
    );
    println!(
        "  restart as after a crash (the log without its closing checkpoint): ready in {:.2} s, peak resident {} MiB, from the checkpoint covering record {}, {} records replayed",
        r.crash_restart_ready_seconds,
        r.crash_restart_peak_kib / 1024,
        r.crash_restart_checkpoint
            .map_or("(none)".to_string(), |c| c.to_string()),
        r.crash_restart_replayed
    );
    println!("  report and curve: {}", options.out.display());
    if r.failures.is_empty() {
        println!("soak: every check passed");
        return Ok(true);
    }
    for failure in &r.failures {
        println!("  FAILED: {failure}");
    }
    Ok(false)
}

/// `--cluster`, `--nats`, `--rolling`: the worker fleet.
async fn fleet(args: Args, root: PathBuf) -> Result<bool> {
    let positive = |value: f64, flag: &str| {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            bail!("{flag} must be a positive number")
        }
    };
    let rate = positive(args.rate, "--rate")?;
    let workers = args.workers.unwrap_or(if args.cluster { 2 } else { 3 });
    if workers < 2 {
        bail!(
            "--workers must be at least 2 (one is killed, restarted or cut off while another works)"
        );
    }
    let default_cycle = match (args.cluster, args.nats) {
        (true, _) => 60.0,
        (_, true) => 30.0,
        _ => 10.0,
    };
    let cycle = Duration::from_secs_f64(positive(
        args.cycle_seconds.unwrap_or(default_cycle),
        "--cycle-seconds",
    )?);
    // By count, by time at --rate, or the fewer of both.
    let by_time = |minutes: f64| (rate * minutes * 60.0).ceil() as u64;
    let tasks = match (args.tasks, args.minutes) {
        (Some(tasks), None) => tasks,
        (tasks, Some(minutes)) => {
            let minutes = positive(minutes, "--minutes")?;
            tasks.unwrap_or(u64::MAX).min(by_time(minutes))
        }
        (None, None) if args.nats => 1_000_000,
        (None, None) if args.cluster => by_time(10.0),
        (None, None) => by_time(2.0),
    };
    if tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let (mode, default_out) = match (args.cluster, args.nats) {
        (true, _) => ("cluster", "target/soak-cluster"),
        (_, true) => ("nats", "target/soak-nats"),
        _ => ("rolling", "target/soak-rolling"),
    };
    let setting = Setting {
        out: root.join(args.out.unwrap_or_else(|| default_out.into())),
        chassis: args.chassis,
        root,
        tasks,
        workers,
    };
    let failures = match mode {
        "cluster" => {
            let options = cluster::Options {
                setting,
                rate,
                cycle,
                freeze: Duration::from_secs_f64(positive(args.freeze_seconds, "--freeze-seconds")?),
            };
            let r = cluster::run(&options).await?;
            print_cluster(&r, &options);
            r.checked.failures
        }
        "nats" => {
            let options = queue::Options {
                setting,
                submitters: args.clients.unwrap_or(4).max(1),
                kill_every: cycle,
            };
            let r = queue::run(&options).await?;
            println!(
                "queue soak: {} tasks through chassis submit in {:.1} s ({:.0} a second), {} workers",
                r.tasks, r.seconds, r.per_second, options.setting.workers
            );
            println!(
                "  workers killed and started again: {} ({:?})",
                r.kills.len(),
                r.kills
                    .iter()
                    .map(|(w, at)| format!("{w} at {at:.0} s"))
                    .collect::<Vec<_>>()
            );
            print_checked(&r.checked);
            println!(
                "  redeliveries counted by the live workers: {}",
                r.redeliveries_counted
            );
            println!(
                "  w1 (never killed): resident memory at most {} MiB in the first half after the warm-up, {} MiB in the second; open descriptors {} and {}",
                r.rss_kib.0 / 1024,
                r.rss_kib.1 / 1024,
                r.fds.0,
                r.fds.1
            );
            println!("  report and curve: {}", options.setting.out.display());
            r.checked.failures
        }
        _ => {
            let options = rolling::Options {
                setting,
                rate,
                every: cycle,
            };
            let r = rolling::run(&options).await?;
            println!(
                "rolling restart: {} tasks in {:.1} s ({:.0} a second), {} workers restarted {} times in all",
                r.tasks,
                r.seconds,
                r.per_second,
                options.setting.workers,
                r.restarts.len()
            );
            for restart in &r.restarts {
                println!(
                    "  {:>7.1} s  {} drained in {:.2} s, ready again in {:.2} s with {} slots",
                    restart.at, restart.worker, restart.drained_in, restart.ready_in, restart.slots
                );
            }
            print_checked(&r.checked);
            println!("  report: {}", options.setting.out.display());
            r.checked.failures
        }
    };
    Ok(verdict(&format!("{mode} soak"), &failures))
}

/// What every fleet proof's checks found.
fn print_checked(c: &Checked) {
    println!("  results by worker: {:?}", c.by_worker);
    println!(
        "  delivered more than once: {}; run more than once (one result each): {}",
        c.redelivered, c.ran_again
    );
    println!(
        "  results stream: {} messages, last sequence {}",
        c.results_stream.0, c.results_stream.1
    );
}

/// The cluster run's figures.
fn print_cluster(r: &cluster::Report, options: &cluster::Options) {
    println!(
        "cluster soak: {} tasks in {:.1} s ({:.0} results a second) through {} workers on three NATS nodes",
        r.tasks, r.seconds, r.per_second, options.setting.workers
    );
    for e in &r.events {
        let healthy = e.healthy_after.map_or(String::new(), |h| {
            format!(", cluster healthy after {h:.1} s")
        });
        let worker = match (&e.worker, e.worker_moved_after, &e.moved_to) {
            (Some(w), Some(after), Some(to)) => {
                format!(" (worker {w}'s node; it was on {to} {after:.1} s later)")
            }
            (Some(w), _, _) => format!(" (worker {w}'s node; it stayed on it)"),
            _ => String::new(),
        };
        println!(
            "  {:>7.1} s  {} {}{worker}{healthy}; longest pause in results after it: {:.1} s",
            e.at, e.what, e.node, e.longest_pause
        );
    }
    println!(
        "  after the last event, every worker answered within {}: {:?}",
        r.all_working_after
            .map_or("(not all)".to_string(), |s| format!("{s:.1} s")),
        r.after_by_worker
    );
    print_checked(&r.checked);
    println!("  report and curve: {}", options.setting.out.display());
}

/// Print the failed checks; whether there were none.
fn verdict(what: &str, failures: &[String]) -> bool {
    if failures.is_empty() {
        println!("{what}: every check passed");
        return true;
    }
    for failure in failures {
        println!("  FAILED: {failure}");
    }
    false
}
