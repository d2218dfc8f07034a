//! (b) Throughput: two tokio workers calling `bench-probe`'s `noop` through
//! `Chassis::execute_task_text` (payload and output as text, as in (a)) for
//! a window, vs two workers on bare wasmtime.
//! Goal: ratio ≥ 0.8. Measured again with a host that has no audit log, to
//! show what the log costs under full load, and with an audit log that
//! keeps no state and writes no checkpoints, to show what checkpoints cost
//! (no goal for either).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};
use crate::setup::ours_text;

/// How long each round's workers run, in ms (divided by the run's scale).
const WINDOW_MS: u32 = 400;

/// Tasks per second, each side.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (b) throughput, two workers");
    let s = run.setup;
    let window = Duration::from_millis(u64::from(WINDOW_MS / run.scale));
    let bare = || {
        let probe = s.bare_probe.clone();
        throughput(window, move || {
            let probe = probe.clone();
            async move { probe.run("noop", "{}").await.map(drop) }
        })
    };
    let mut figures = Vec::new();
    for (host, name, what, goal) in [
        (
            &s.chassis,
            "b_throughput",
            "(b) trivial tasks, 2 workers",
            Some(Goal::AtLeast(0.8)),
        ),
        (
            &s.chassis_no_audit,
            "b_throughput_no_audit",
            "(b) same, no audit log",
            None,
        ),
        (
            &s.chassis_no_checkpoints,
            "b_throughput_no_checkpoints",
            "(b) same, audit log without checkpoints",
            None,
        ),
    ] {
        let ours_side = || {
            let chassis = host.clone();
            throughput(window, move || {
                let chassis = chassis.clone();
                async move { ours_text(&chassis, "bench-probe", "noop", "{}").await }
            })
        };
        let (o, b) = rounds(run.rounds, ours_side, bare).await?;
        figures.push(figure(
            name,
            what,
            "tasks/s",
            "bare wasmtime, 2 workers",
            &o,
            &b,
            goal,
        ));
    }
    Ok(figures)
}

/// Tasks per second from two workers calling `task` until `window` ends.
async fn throughput<F, Fut>(window: Duration, task: F) -> Result<f64>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let end = start + window;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let task = task.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < end {
                    task().await?;
                    done += 1;
                }
                Ok::<_, anyhow::Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
