//! (k) Capability routing: `bench-probe`'s `noop` addressed to a capability
//! (`Chassis::execute_capability`: the candidates' standing read, one
//! weighted draw, a `task_routed` audit record, then the task) vs the same
//! task addressed to one of the swarms by name, on the same host: four
//! `bench-probe` swarms that declare `testing:probe`, an audit log. The
//! difference is what choosing costs per task. Goal: ratio ≤ 1.2.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chassis::{Chassis, ChassisConfig, TaskRequest};

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};
use crate::setup::{ours, swarm};

/// Tasks per round (divided by the run's scale).
const TASKS: u32 = 400;
/// Swarms that serve the capability.
const SWARMS: usize = 4;

/// µs per task, each side.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (k) capability routing");
    let (contract, bytes) = swarm(run.root, "bench-probe")?;
    let contracts: Vec<_> = (0..SWARMS)
        .map(|i| {
            let mut c = contract.clone();
            c.swarm_id = format!("probe-{i}");
            c.capabilities = vec!["testing:probe".to_string()];
            c
        })
        .collect();
    let path = run.bench_dir.join("audit-routing");
    let _ = std::fs::remove_dir_all(&path);
    let audit = chassis::audit::AuditLog::open(
        &path,
        chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
    )?;
    let chassis = Chassis::with_config(ChassisConfig::sized_for(&contracts).with_audit_log(audit))?;
    for c in contracts {
        chassis.load_bytes(&bytes, c).await?;
    }
    let chassis = &chassis;
    let tasks = TASKS / run.scale;
    let noop = &serde_json::json!({});
    let (o, b) = rounds(
        run.rounds,
        move || async move {
            let t = Instant::now();
            for _ in 0..tasks {
                routed(chassis).await?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(tasks))
        },
        move || async move {
            let t = Instant::now();
            for _ in 0..tasks {
                ours(chassis, "probe-0", "noop", noop).await?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(tasks))
        },
    )
    .await?;
    Ok(vec![figure(
        "k_capability_routing",
        "(k) task addressed to a capability",
        "µs",
        "the same task addressed to one swarm by name, same host",
        &o,
        &b,
        Some(Goal::AtMost(1.2)),
    )])
}

/// One `noop` addressed to `testing:probe`; an error unless it succeeds.
async fn routed(chassis: &Chassis) -> Result<()> {
    let outcome = chassis
        .execute_capability(
            "testing:probe",
            TaskRequest::new("noop", serde_json::json!({})),
        )
        .await?;
    if !outcome.is_success() {
        bail!("{}: {:?}", outcome.swarm_id, outcome.error);
    }
    Ok(())
}
