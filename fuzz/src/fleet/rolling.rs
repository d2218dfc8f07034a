//! A rolling restart of the workers under a steady load (`chassis-soak
//! --rolling`, `cargo xtask soak --rolling`): each worker in turn gets
//! SIGTERM, drains, and starts again with a new configuration (its swarm's
//! slots changed), while the others carry the load.
//!
//! Data flow: [`run`] starts one `nats-server` (with a monitoring port) and
//! the workers, and puts tasks on the queue at a steady rate. Every
//! [`Options::every`] the next worker in turn is stopped with SIGTERM (it
//! must exit 0 within a minute; a task it cut off would run again, which
//! the last check catches) and started again with its swarm's
//! `max_concurrent_tasks` switched between 8 and 6, on the same audit log.
//! Then the checks every fleet proof ends with ([`super::check_results`],
//! [`super::stop_and_verify`]), and one of this proof's own: no task ran
//! twice. `docs/scale-out.md` lets a task run again only when a worker's
//! shutdown grace ran out while it ran, and these tasks take a
//! millisecond against a grace of ten seconds. The figures go to
//! `report.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use chassis_test_support::cluster::NatsCluster;

use super::{Checked, Fleet, SLOTS, Setting, check_results, stop_and_verify, submit, task_id};

/// What a rolling-restart run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where it runs, how many tasks, how many workers.
    pub setting: Setting,
    /// Tasks a second.
    pub rate: f64,
    /// Time from one worker's restart to the next one's.
    pub every: Duration,
}

/// One worker restarted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restart {
    /// The worker.
    pub worker: String,
    /// Seconds since the load began, at SIGTERM.
    pub at: f64,
    /// Seconds from SIGTERM to its exit.
    pub drained_in: f64,
    /// Seconds from starting it again to its "ready" line.
    pub ready_in: f64,
    /// Its swarm's slots after the restart.
    pub slots: u32,
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
    /// The restarts, in order.
    pub restarts: Vec<Restart>,
    /// What the checks found.
    pub checked: Checked,
}

/// Restart the workers one by one under load, and check nothing was lost
/// or run twice.
pub async fn run(options: &Options) -> Result<Report> {
    let out = &options.setting.out;
    super::fresh_dir(out)?;
    let nats = NatsCluster::start(&out.join("nats"), 1, Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let fleet = Fleet::set_up(
        &options.setting.chassis,
        &options.setting.root,
        out,
        nats.urls(),
        1,
    )?;
    let mut workers = Vec::new();
    for i in 1..=options.setting.workers {
        eprintln!("rolling: starting worker w{i}");
        workers.push(fleet.start_worker(&format!("w{i}"))?);
    }
    let queue = Arc::new(fleet.queue().await?);
    eprintln!(
        "rolling: {} tasks at {}/s with {} workers; one restarted every {:.0} s",
        options.setting.tasks,
        options.rate,
        options.setting.workers,
        options.every.as_secs_f64()
    );
    let started = Instant::now();
    let load = tokio::spawn(submit(
        queue.clone(),
        "rolling",
        0,
        options.setting.tasks,
        options.rate,
        4,
        || false,
    ));
    let mut restarts = Vec::new();
    let mut failures = Vec::new();
    let mut turn = 0usize;
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() < options.every * (turn as u32 + 1) {
            continue;
        }
        let i = turn % workers.len();
        let slots = if (turn / workers.len()).is_multiple_of(2) {
            6
        } else {
            SLOTS
        };
        let name = workers[i].name.clone();
        let at = started.elapsed().as_secs_f64();
        let stop = Instant::now();
        let worker = &mut workers[i];
        let drained = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(60)));
        if let Err(e) = drained {
            failures.push(format!("restart {}: {e}", turn + 1));
        }
        let drained_in = stop.elapsed().as_secs_f64();
        let begin = Instant::now();
        workers[i] = tokio::task::block_in_place(|| fleet.start_worker_with(&name, slots))?;
        let ready_in = begin.elapsed().as_secs_f64();
        eprintln!(
            "rolling: {at:.1} s: {name} drained in {drained_in:.2} s, ready again in {ready_in:.2} s with {slots} slots"
        );
        restarts.push(Restart {
            worker: name,
            at,
            drained_in,
            ready_in,
            slots,
        });
        turn += 1;
    }
    let submitted = load.await.expect("the load does not panic");
    let ids: Vec<String> = (0..options.setting.tasks)
        .map(|n| task_id("rolling", n))
        .collect();
    let mut checked = check_results(&nats, queue, &submitted, &ids).await?;
    let seconds = started.elapsed().as_secs_f64();
    checked.failures.extend(failures);
    if restarts.len() < options.setting.workers {
        checked.failures.push(format!(
            "only {} restarts in the load's time: not every worker was restarted (a longer load, or a shorter --cycle-seconds)",
            restarts.len()
        ));
    }
    stop_and_verify(&fleet, &mut workers, "rolling", &ids, &mut checked)?;
    if checked.ran_again > 0 {
        checked.failures.push(format!(
            "{} tasks ran more than once, though no shutdown grace ran out",
            checked.ran_again
        ));
    }
    let report = Report {
        tasks: submitted.tasks,
        seconds,
        per_second: ids.len() as f64 / seconds,
        restarts,
        checked,
    };
    super::write_report(out, &report)?;
    Ok(report)
}
