//! `chassis-bench --child MODE ROOT`: one measurement in this fresh process,
//! printed on stdout as a single number. The benchmark starts itself this
//! way for figure (f) (`loaded-ours`, `loaded-bare`, `running-ours`,
//! `running-bare`: KiB per copy); `profile` is not a figure but a loop of
//! trivial tasks to run under a profiler
//! (`perf record -g chassis-bench --child profile <root>`), µs per task.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chassis::{Chassis, ChassisConfig};

use crate::figures::f_memory;
use crate::setup::{ours, swarm};

/// Trivial tasks in the `profile` loop.
const PROFILE_TASKS: u32 = 20_000;

/// Measure `mode` against the workspace at `root` and print the figure.
pub fn run(mode: &str, root: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let per_copy = runtime.block_on(async move {
        match mode {
            "loaded-ours" => f_memory::loaded_ours(root).await,
            "loaded-bare" => f_memory::loaded_bare(root),
            "running-ours" => f_memory::running_ours(root).await,
            "running-bare" => f_memory::running_bare(root).await,
            "profile" => profile(root).await,
            other => bail!("unknown child mode {other:?}"),
        }
    })?;
    println!("{per_copy}");
    Ok(())
}

/// 20,000 trivial tasks through the chassis with an audit log; µs per task.
async fn profile(root: &Path) -> Result<f64> {
    let (contract, bytes) = swarm(root, "bench-probe")?;
    let audit = chassis::audit::AuditLog::open(
        root.join("target/bench/profile-audit.jsonl"),
        chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
    )?;
    let config = ChassisConfig::sized_for([&contract]).with_event_sink(audit.clone());
    let chassis = Chassis::with_config(config)?;
    chassis.load_bytes(&bytes, contract).await?;
    let noop = serde_json::json!({});
    let t = Instant::now();
    for _ in 0..PROFILE_TASKS {
        ours(&chassis, "bench-probe", "noop", &noop).await?;
    }
    let per_task = t.elapsed().as_secs_f64() * 1e6 / f64::from(PROFILE_TASKS);
    audit.close()?;
    Ok(per_task)
}
