//! (a) Latency of a trivial task: `bench-probe`'s `noop` through
//! `Chassis::execute_task_text` (every limit, an audit log file, SLO
//! tracking) vs bare wasmtime (a fresh store from an `InstancePre`, the
//! pooling allocator, one call). Both sides take the payload as JSON text
//! and give the output as text, as `chassis serve` does; what a `Value`
//! payload adds is figure (d)'s "Value in and out". Goal: ratio ≤ 1.2.

use std::time::Instant;

use anyhow::Result;

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};
use crate::setup::ours_text;

/// Trivial tasks per round (divided by the run's scale).
const TASKS: u32 = 400;

/// µs per task, each side.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (a) trivial task latency");
    let s = run.setup;
    let tasks = TASKS / run.scale;
    let (o, b) = rounds(
        run.rounds,
        move || async move {
            let t = Instant::now();
            for _ in 0..tasks {
                ours_text(&s.chassis, "bench-probe", "noop", "{}").await?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(tasks))
        },
        move || async move {
            let t = Instant::now();
            for _ in 0..tasks {
                s.bare_probe.run("noop", "{}").await?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(tasks))
        },
    )
    .await?;
    Ok(vec![figure(
        "a_task_latency",
        "(a) trivial task, latency",
        "µs",
        "bare wasmtime: fresh store from InstancePre, pooling, one call",
        &o,
        &b,
        Some(Goal::AtMost(1.2)),
    )])
}
