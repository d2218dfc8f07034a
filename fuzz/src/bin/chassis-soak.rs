//! `chassis-soak --chassis BIN [--tasks N] [--minutes M] [--clients C]`:
//! run `chassis serve` under a long mixed load and check it against its
//! audit log (see `chassis_fuzz::soak`). Run through `cargo xtask soak`,
//! which builds both in release mode; `cargo xtask test` runs a short one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use chassis_fuzz::soak::{self, Options, RSS_GROWTH_PERCENT, RSS_SLACK_KIB, WARM_UP_PERCENT};
use clap::Parser;

/// Soak `chassis serve` with a mixed load and check what it recorded.
#[derive(Parser)]
#[command(name = "chassis-soak")]
struct Args {
    /// The `chassis` binary to serve with.
    #[arg(long)]
    chassis: PathBuf,
    /// Tasks to send.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// Stop sending after this many minutes, whatever the count.
    #[arg(long)]
    minutes: Option<f64>,
    /// Clients sending at once.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Where the run's files go (emptied first).
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
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
    if args.tasks == 0 || args.clients == 0 {
        bail!("--tasks and --clients must be at least 1");
    }
    let max_time = match args.minutes {
        Some(m) if !(m.is_finite() && m > 0.0) => bail!("--minutes must be a positive number"),
        Some(m) => Some(Duration::from_secs_f64(m * 60.0)),
        None => None,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ lives in the workspace")
        .to_path_buf();
    let options = Options {
        chassis: args.chassis,
        out: root.join(args.out),
        root,
        tasks: args.tasks,
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
