//! A worker fleet on a three-node JetStream cluster that loses nodes under
//! a steady load (`chassis-soak --cluster`, `cargo xtask soak --cluster`).
//!
//! Data flow: [`run`] starts three `nats-server` nodes on 127.0.0.1 with
//! routes between them ([`NatsCluster`]) and at once the workers (each
//! given every node's URL, streams with three replicas; they wait for
//! JetStream to have a leader), and a client that puts tasks
//! on the queue at a steady rate. While the load runs, a schedule repeats
//! every cycle ([`Options::cycle`]): the node a worker is connected to is
//! killed (SIGKILL), later started again on its store; then the node
//! another worker is connected to is frozen (SIGSTOP) for
//! [`Options::freeze`] and resumed. A sampler reads the results stream's
//! size from the nodes' monitoring ports every 200 ms: the curve
//! (`curve.csv`) shows how long results stopped around each event. After
//! the load and the last event, batches of tasks go on until every worker
//! has answered one of them: none stopped for good. Then the checks: every task submitted has exactly
//! one result (the results stream has one message per task and none was
//! ever replaced: its last sequence is its message count), each a success
//! naming its task, signed by the fleet's key; the task stream is empty;
//! every task has a terminal record in some worker's audit log, and at
//! most 1% more than one (no worker dies here: a task runs again only
//! when its result could not be published in time); each
//! worker stops cleanly on SIGTERM, and its log verifies alone and against
//! the head it mirrored to NATS. The figures go to `report.json`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use chassis_test_support::cluster::NatsCluster;

use super::{Checked, Fleet, Setting, check_results, collect, stop_and_verify, submit, task_id};

/// What a cluster run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where it runs, how many tasks, how many workers.
    pub setting: Setting,
    /// Tasks a second.
    pub rate: f64,
    /// One round of events: a node killed and started again, another
    /// frozen and resumed. A load shorter than this has one round, spread
    /// over the load.
    pub cycle: Duration,
    /// How long a node stays frozen.
    pub freeze: Duration,
}

/// A freeze at least this long is noticed by a worker connected to the
/// frozen node: two pings unanswered and the third due (12 s), then a
/// connection attempt that may try the frozen node first (its socket
/// accepts, its server never answers: the client's 5 s connection
/// timeout) before another, and 3 s to spare.
pub const FREEZE_NOTICED: Duration =
    Duration::from_secs(3 * chassis::serve::queue::PING_INTERVAL.as_secs() + 5 + 3);

/// Tasks in each batch after the last event.
pub const BATCH: u64 = 50;
/// How long after the last event every worker must have answered a task.
pub const GO_ON_WITHIN: Duration = Duration::from_secs(60);

/// One event of the schedule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// `kill`, `restart`, `freeze` or `resume`.
    pub what: &'static str,
    /// The node's name.
    pub node: String,
    /// The worker whose connection chose the node (kill, freeze; none
    /// when no node said where that worker was, and a node was chosen in
    /// turn).
    pub worker: Option<String>,
    /// Seconds since the load began.
    pub at: f64,
    /// For `restart` and `resume`: seconds until every node was healthy.
    pub healthy_after: Option<f64>,
    /// The longest time no new result came while tasks waited, from this
    /// event to the next, seconds.
    pub longest_pause: f64,
    /// For `kill` and `freeze`: seconds until the worker connected to the
    /// node was connected to another (by the nodes' `/connz`), if it was
    /// while the node was down or frozen.
    pub worker_moved_after: Option<f64>,
    /// The node it moved to.
    pub moved_to: Option<String>,
}

/// What a run found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Tasks submitted, the batches after the last event included.
    pub tasks: u64,
    /// Seconds from the first submission to the last result.
    pub seconds: f64,
    /// Results a second over that time.
    pub per_second: f64,
    /// The events, in order.
    pub events: Vec<Event>,
    /// Results by worker in the batches after the last event.
    pub after_by_worker: BTreeMap<String, u64>,
    /// Seconds from the last event until every worker had answered one of
    /// those.
    pub all_working_after: Option<f64>,
    /// What the checks found.
    pub checked: Checked,
}

/// Run the fleet on a cluster that loses nodes, and check it.
pub async fn run(options: &Options) -> Result<Report> {
    let out = &options.setting.out;
    super::fresh_dir(out)?;
    // The workers start beside the nodes, before JetStream has a leader:
    // they wait for it.
    eprintln!("cluster: starting three nats-server nodes and, at once, the workers");
    let cluster = NatsCluster::launch(&out.join("nats"), 3).map_err(anyhow::Error::msg)?;
    let fleet = Fleet::set_up(
        &options.setting.chassis,
        &options.setting.root,
        out,
        cluster.urls(),
        3,
    )?;
    let mut workers = Vec::new();
    for i in 1..=options.setting.workers {
        workers.push(fleet.start_worker(&format!("w{i}"))?);
        eprintln!("cluster: worker w{i} is ready");
    }
    cluster
        .wait_healthy(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let queue = Arc::new(fleet.queue().await?);
    let names: Vec<String> = workers.iter().map(|w| w.name.clone()).collect();
    let monitors: Vec<u16> = cluster.nodes.iter().map(|n| n.monitor_port).collect();

    let load_seconds = options.setting.tasks as f64 / options.rate;
    let started = Instant::now();
    let load_over = Arc::new(AtomicBool::new(false));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut curve = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Some(count) = results_count(&monitors) {
                    curve.push((started.elapsed().as_secs_f64(), count));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            curve
        })
    };
    let schedule = {
        let (load_over, names) = (load_over.clone(), names.clone());
        let cycle = options.cycle.min(Duration::from_secs_f64(load_seconds));
        let freeze = options.freeze;
        std::thread::spawn(move || events(cluster, &names, started, cycle, freeze, &load_over))
    };
    eprintln!(
        "cluster: {} tasks at {}/s with {} workers; a node killed and one frozen every {:.0} s",
        options.setting.tasks,
        options.rate,
        options.setting.workers,
        options.cycle.as_secs_f64().min(load_seconds)
    );
    let mut submitted = submit(
        queue.clone(),
        "cluster",
        0,
        options.setting.tasks,
        options.rate,
        4,
        || false,
    )
    .await;
    load_over.store(true, Ordering::Relaxed);
    let (cluster, mut events) = schedule.join().expect("the schedule does not panic")?;
    eprintln!("cluster: the load and the events are over; batches until every worker answers");
    let mut after_by_worker = BTreeMap::new();
    let mut end = options.setting.tasks;
    let go_on = Instant::now();
    let mut all_working_after = None;
    while go_on.elapsed() < GO_ON_WITHIN {
        let first = end;
        end += BATCH;
        let batch = submit(queue.clone(), "cluster", first, end, 2000.0, 4, || false).await;
        submitted.tasks += batch.tasks;
        submitted.refused.extend(batch.refused);
        let ids = (first..end).map(|n| task_id("cluster", n)).collect();
        let found = collect(queue.clone(), ids, GO_ON_WITHIN, 4).await;
        for result in found.results.values() {
            *after_by_worker.entry(result.worker.clone()).or_insert(0u64) += 1;
        }
        if names.iter().all(|n| after_by_worker.contains_key(n)) {
            all_working_after = Some(go_on.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids: Vec<String> = (0..end).map(|n| task_id("cluster", n)).collect();
    let mut checked = check_results(&cluster, queue.clone(), &submitted, &ids).await?;
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let curve = sampler.join().expect("the sampler does not panic");
    for name in &names {
        if !after_by_worker.contains_key(name) {
            checked.failures.push(format!(
                "worker {name} answered no task within {GO_ON_WITHIN:?} of the last event"
            ));
        }
    }
    // A worker whose node died or froze moved to another node (a frozen
    // node is noticed by missed pings: only a freeze longer than that can
    // show it).
    for e in &events {
        let long_enough = e.what == "kill" || options.freeze >= FREEZE_NOTICED;
        if long_enough && e.worker.is_some() && e.worker_moved_after.is_none() {
            checked.failures.push(format!(
                "worker {} did not move off its node {} while the node was {} ({:.1} s in)",
                e.worker.as_deref().unwrap_or("?"),
                e.node,
                if e.what == "kill" { "down" } else { "frozen" },
                e.at
            ));
        }
    }
    stop_and_verify(&fleet, &mut workers, "cluster", &ids, &mut checked)?;
    // No worker dies here: a task runs again only when its result could
    // not be published within the worker's patience, or its delivery ran
    // out while its worker was cut off from the consumer's leader.
    if checked.ran_again * 100 > ids.len() as u64 {
        checked.failures.push(format!(
            "{} of {} tasks ran more than once (more than 1%)",
            checked.ran_again,
            ids.len()
        ));
    }
    let mut report = Report {
        tasks: submitted.tasks,
        seconds,
        per_second: ids.len() as f64 / seconds,
        after_by_worker,
        all_working_after,
        checked,
        ..Report::default()
    };

    // How long results stopped after each event, while tasks waited.
    let rate = options.rate;
    let waiting_at = |t: f64| (t * rate).min(options.setting.tasks as f64);
    let ends: Vec<f64> = events
        .iter()
        .skip(1)
        .map(|e| e.at)
        .chain([seconds])
        .collect();
    for (event, end) in events.iter_mut().zip(ends) {
        event.longest_pause = longest_pause(&curve, event.at, end, &waiting_at);
    }
    report.events = events;
    let mut csv = String::from("seconds,results\n");
    for (t, n) in &curve {
        csv.push_str(&format!("{t:.2},{n}\n"));
    }
    std::fs::write(out.join("curve.csv"), csv)?;
    super::write_report(out, &report)?;
    Ok(report)
}

/// The schedule, run on its own thread: rounds of events until the load is
/// over, each round whole (a killed node is started again, a frozen one
/// resumed). Gives the cluster back with what was done.
fn events(
    mut cluster: NatsCluster,
    workers: &[String],
    started: Instant,
    cycle: Duration,
    freeze: Duration,
    load_over: &AtomicBool,
) -> Result<(NatsCluster, Vec<Event>)> {
    let mut done = Vec::new();
    let at = || started.elapsed().as_secs_f64();
    let mut round = 0usize;
    while !load_over.load(Ordering::Relaxed) {
        let begin = started + cycle * round as u32;
        let wait_until = |fraction: f64| {
            let due = begin + cycle.mul_f64(fraction);
            while Instant::now() < due {
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        // The node `worker` is connected to, asked for a few seconds (a
        // node's `/connz` may be slow to answer); when none says, the
        // fallback node, and the event claims no worker.
        let node_of = |cluster: &NatsCluster, worker: &str, fallback: usize| {
            let name = format!("chassis worker {worker}");
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(5) {
                if let Some(i) = cluster.node_of(&name, None) {
                    return (i, true);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (fallback % cluster.nodes.len(), false)
        };
        let event = |what, node: &str, worker: Option<&String>, healthy_after| Event {
            what,
            node: node.to_string(),
            worker: worker.cloned(),
            at: at(),
            healthy_after,
            longest_pause: 0.0,
            worker_moved_after: None,
            moved_to: None,
        };
        // Wait (at most `within`) for `worker`'s connection to show on a
        // node other than `left`.
        let moved = |cluster: &NatsCluster, event: &mut Event, worker: &str, left, within| {
            let from = Instant::now();
            while from.elapsed() < within {
                if let Some(i) = cluster.node_of(&format!("chassis worker {worker}"), Some(left)) {
                    event.worker_moved_after = Some(from.elapsed().as_secs_f64());
                    event.moved_to = Some(cluster.nodes[i].name.clone());
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        // The node one worker is connected to dies, and comes back.
        wait_until(0.1);
        let victim = &workers[round % workers.len()];
        let (killed, found) = node_of(&cluster, victim, round);
        let victim_shown = found.then_some(victim);
        cluster.kill(killed);
        let mut kill = event("kill", &cluster.nodes[killed].name, victim_shown, None);
        eprintln!(
            "cluster: {:.1} s: killed {} (worker {victim}'s node)",
            at(),
            cluster.nodes[killed].name
        );
        if found {
            moved(&cluster, &mut kill, victim, killed, Duration::from_secs(30));
        }
        done.push(kill);
        wait_until(0.3);
        let from = Instant::now();
        cluster
            .restart(killed, Duration::from_secs(120))
            .map_err(anyhow::Error::msg)?;
        let healthy = from.elapsed().as_secs_f64();
        done.push(event(
            "restart",
            &cluster.nodes[killed].name,
            None,
            Some(healthy),
        ));
        eprintln!(
            "cluster: {:.1} s: {} started again, healthy after {healthy:.1} s",
            at(),
            cluster.nodes[killed].name
        );
        // The node another worker is connected to freezes, and resumes.
        wait_until(0.55);
        let other = &workers[(round + 1) % workers.len()];
        let (frozen, found) = node_of(&cluster, other, round + 1);
        let other_shown = found.then_some(other);
        cluster.freeze(frozen);
        let frozen_at = Instant::now();
        let mut stop = event("freeze", &cluster.nodes[frozen].name, other_shown, None);
        eprintln!(
            "cluster: {:.1} s: froze {} (worker {other}'s node)",
            at(),
            cluster.nodes[frozen].name
        );
        if found {
            moved(&cluster, &mut stop, other, frozen, freeze);
        }
        done.push(stop);
        std::thread::sleep(freeze.saturating_sub(frozen_at.elapsed()));
        cluster.resume(frozen);
        let from = Instant::now();
        cluster
            .wait_healthy(Duration::from_secs(120))
            .map_err(anyhow::Error::msg)?;
        let healthy = from.elapsed().as_secs_f64();
        done.push(event(
            "resume",
            &cluster.nodes[frozen].name,
            None,
            Some(healthy),
        ));
        eprintln!(
            "cluster: {:.1} s: resumed {}, healthy after {healthy:.1} s",
            at(),
            cluster.nodes[frozen].name
        );
        round += 1;
    }
    Ok((cluster, done))
}

/// The results stream's size: the most any node answering says.
fn results_count(monitors: &[u16]) -> Option<u64> {
    monitors
        .iter()
        .filter_map(|&port| {
            chassis_test_support::cluster::stream_state_at(
                port,
                chassis::serve::queue::RESULTS_STREAM,
            )
        })
        .filter_map(|s| s["messages"].as_u64())
        .max()
}

/// The longest stretch of `curve` between `from` and `to` in which the
/// count did not grow while fewer results had come than tasks were due
/// (`due(t)` tasks by second `t`, less a second's worth).
fn longest_pause(curve: &[(f64, u64)], from: f64, to: f64, due: &dyn Fn(f64) -> f64) -> f64 {
    let mut longest: f64 = 0.0;
    let mut flat_since: Option<(f64, u64)> = None;
    for &(t, n) in curve.iter().filter(|(t, _)| *t >= from && *t <= to) {
        match flat_since {
            Some((since, count)) if n == count => {
                if (n as f64) < due(since) - due(1.0) {
                    longest = longest.max(t - since);
                }
            }
            _ => flat_since = Some((t, n)),
        }
    }
    longest
}
