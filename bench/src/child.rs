//! `chassis-bench --child MODE ROOT`: one measurement in this fresh process,
//! printed on stdout as a single number. The benchmark starts itself this
//! way for figure (f) (`loaded-ours`, `loaded-bare`, `running-ours`,
//! `running-bare`: KiB per copy); `profile` is not a figure but a loop of
//! trivial tasks to run under a profiler
//! (`perf record -g chassis-bench --child profile <root>`), µs per task, and
//! `profile-credential` a loop of `credentials.get` calls, µs per call;
//! `profile-bare` the `profile` loop on bare wasmtime, for a profile to
//! set beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chassis::{Chassis, ChassisConfig};

use crate::figures::f_memory;
use crate::setup::{ours, swarm};

/// Tasks in the `profile` loops.
const PROFILE_TASKS: u32 = 200_000;

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
            "profile" => profile(root, "noop", serde_json::json!({}), 1).await,
            "profile-credential" => {
                let payload = serde_json::json!({ "n": 2000, "name": "bench_token" });
                profile(root, "credential", payload, 2000).await
            }
            "profile-bare" => profile_bare(root).await,
            other => bail!("unknown child mode {other:?}"),
        }
    })?;
    println!("{per_copy}");
    Ok(())
}

/// 200,000 tasks of `bench-probe` (`task`, `payload`) through the chassis
/// with an audit log; µs per task, or per import call where a task makes
/// `calls` of them (2,000 `credentials.get` for `profile-credential`, which
/// runs a tenth as many tasks).
async fn profile(root: &Path, task: &str, payload: serde_json::Value, calls: u32) -> Result<f64> {
    let (contract, bytes) = swarm(root, "bench-probe")?;
    let log = root.join("target/bench/profile-audit.jsonl");
    let _ = std::fs::remove_dir_all(&log);
    let audit = chassis::audit::AuditLog::open(
        &log,
        chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
    )?;
    let mut secrets = chassis::SecretStore::new();
    secrets.insert(
        "bench-probe",
        "bench_token",
        chassis::Secret::new(crate::setup::BENCH_TOKEN),
    );
    let config = ChassisConfig::sized_for([&contract])
        .with_secrets(secrets)
        .with_audit_log(audit.clone());
    let chassis = Chassis::with_config(config)?;
    chassis.load_bytes(&bytes, contract).await?;
    let tasks = if calls > 1 {
        PROFILE_TASKS / 10
    } else {
        PROFILE_TASKS
    };
    let t = Instant::now();
    for _ in 0..tasks {
        ours(&chassis, "bench-probe", task, &payload).await?;
    }
    let per_task = t.elapsed().as_secs_f64() * 1e6 / f64::from(tasks * calls);
    audit.close()?;
    Ok(per_task)
}

/// The `profile` loop on bare wasmtime (figure (a)'s baseline): µs per task.
async fn profile_bare(root: &Path) -> Result<f64> {
    let (_, bytes) = swarm(root, "bench-probe")?;
    let host = crate::bare::BareHost::new(crate::bare::Epoch::Off, crate::setup::BARE_POOL)?;
    let probe = host.load(&bytes)?;
    let t = Instant::now();
    for _ in 0..PROFILE_TASKS {
        probe.run("noop", "{}").await?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(PROFILE_TASKS))
}
