//! `chassis-soak --chassis BIN [--tasks N] [--minutes M] [--clients C]`:
//! run `chassis serve` under a long mixed load and check it against its
//! audit log (see `chassis_fuzz::soak`). With `--cluster`, the worker
//! fleet on a three-node NATS cluster that loses nodes under a steady load
//! (`chassis_fuzz::fleet::cluster`). Run through `cargo xtask soak`, which
//! builds both in release mode; `cargo xtask test` runs a short one of
//! each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use chassis_fuzz::fleet::cluster;
use chassis_fuzz::soak::{self, Options, RSS_GROWTH_PERCENT, RSS_SLACK_KIB, WARM_UP_PERCENT};
use clap::Parser;

/// Soak `chassis serve` with a mixed load and check what it recorded.
#[derive(Parser)]
#[command(name = "chassis-soak")]
struct Args {
    /// The `chassis` binary to serve with.
    #[arg(long)]
    chassis: PathBuf,
    /// Tasks to send (1,000,000; with --cluster, ten minutes' worth at
    /// --rate).
    #[arg(long)]
    tasks: Option<u64>,
    /// Stop sending after this many minutes, whatever the count.
    #[arg(long)]
    minutes: Option<f64>,
    /// Clients sending at once.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Where the run's files go (emptied first; target/soak, or
    /// target/soak-cluster with --cluster).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run worker processes on a three-node NATS JetStream cluster
    /// instead, killing and freezing its nodes under load.
    #[arg(long)]
    cluster: bool,
    /// With --cluster: tasks submitted a second.
    #[arg(long, default_value_t = 300.0, requires = "cluster")]
    rate: f64,
    /// With --cluster: worker processes.
    #[arg(long, default_value_t = 2, requires = "cluster")]
    workers: usize,
    /// With --cluster: seconds between rounds of events (a node killed and
    /// started again, another frozen and resumed).
    #[arg(long, default_value_t = 60.0, requires = "cluster")]
    cycle_seconds: f64,
    /// With --cluster: seconds a node stays frozen (SIGSTOP).
    #[arg(long, default_value_t = 15.0, requires = "cluster")]
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
    if args.cluster {
        return cluster(args, root).await;
    }
    let tasks = args.tasks.unwrap_or(1_000_000);
    if tasks == 0 || args.clients == 0 {
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
        clients: args.clients,
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

/// `--cluster`: the fleet on a NATS cluster that loses nodes.
async fn cluster(args: Args, root: PathBuf) -> Result<bool> {
    let positive = |value: f64, flag: &str| {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            bail!("{flag} must be a positive number")
        }
    };
    let rate = positive(args.rate, "--rate")?;
    let cycle = positive(args.cycle_seconds, "--cycle-seconds")?;
    let freeze = positive(args.freeze_seconds, "--freeze-seconds")?;
    if args.workers < 2 {
        bail!("--workers must be at least 2 (one worker's node is killed, another's frozen)");
    }
    // Ten minutes' worth unless told: --tasks, --minutes, or the fewer of both.
    let by_time = |minutes: f64| (rate * minutes * 60.0).ceil() as u64;
    let tasks = match (args.tasks, args.minutes) {
        (Some(tasks), None) => tasks,
        (tasks, Some(minutes)) => {
            let minutes = positive(minutes, "--minutes")?;
            tasks.unwrap_or(u64::MAX).min(by_time(minutes))
        }
        (None, None) => by_time(10.0),
    };
    if tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let options = cluster::Options {
        chassis: args.chassis,
        out: root.join(args.out.unwrap_or_else(|| "target/soak-cluster".into())),
        root,
        tasks,
        rate,
        workers: args.workers,
        cycle: Duration::from_secs_f64(cycle),
        freeze: Duration::from_secs_f64(freeze),
    };
    let r = cluster::run(&options).await?;
    println!(
        "cluster soak: {} tasks in {:.1} s ({:.0} results a second) through {} workers on three NATS nodes",
        r.tasks, r.seconds, r.per_second, options.workers
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
    println!("  results by worker: {:?}", r.by_worker);
    println!(
        "  after the last event, every worker answered within {}: {:?}",
        r.all_working_after
            .map_or("(not all)".to_string(), |s| format!("{s:.1} s")),
        r.after_by_worker
    );
    println!(
        "  delivered more than once: {}; run more than once (one result each): {}",
        r.redelivered, r.ran_again
    );
    println!(
        "  results stream: {} messages, last sequence {}",
        r.results_stream.0, r.results_stream.1
    );
    println!("  report and curve: {}", options.out.display());
    if r.failures.is_empty() {
        println!("cluster soak: every check passed");
        return Ok(true);
    }
    for failure in &r.failures {
        println!("  FAILED: {failure}");
    }
    Ok(false)
}
