//! Throttling that recovers (`docs/governor.md`): the governor halves a
//! swarm's concurrency when a window of its tasks misses the SLO targets
//! and gives back a slot per window that meets them; a run of failures
//! opens the circuit, which refuses at once, lets one probe through after
//! the cool-down and closes when the probe succeeds; a swarm whose circuit
//! keeps opening on probation is quarantined. The hostile `hog` guest is
//! made slow (`burn`) or failing (`fail`) task by task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chassis::{Chassis, CircuitState, Error, ErrorKind, Event, TaskError, TaskRequest};
use chassis_tests::{TestHost, guests};
use serde_json::json;

/// Rounds of `burn` that take tens of milliseconds or more.
const SLOW: u64 = 400_000_000;
/// Rounds that take microseconds.
const FAST: u64 = 1000;

fn request(task_type: &str, rounds: u64) -> TaskRequest {
    TaskRequest::new(task_type, json!({ "rounds": rounds }))
}

/// Run `n` tasks of `swarm` at once; returns the most that ran together
/// as the host counted them.
async fn batch(chassis: &Chassis, swarm: &str, task_type: &str, rounds: u64, n: usize) -> usize {
    let running = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (chassis, running, swarm) = (chassis.clone(), running.clone(), swarm.to_string());
        tokio::spawn(async move {
            let mut peak = 0;
            while running.load(Ordering::Acquire) {
                peak = peak.max(chassis.resource_usage(&swarm).unwrap().tasks_running);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            peak
        })
    };
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (chassis, swarm, task_type) =
                (chassis.clone(), swarm.to_string(), task_type.to_string());
            tokio::spawn(async move {
                chassis
                    .execute_task(&swarm, request(&task_type, rounds))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert_eq!(outcome.is_success(), task_type == "burn", "{outcome:?}");
    }
    running.store(false, Ordering::Release);
    watcher.await.unwrap()
}

/// The concurrency changes raised for `swarm`: (from, to, reason).
fn changes(events: &[Event], swarm: &str) -> Vec<(u32, u32, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ConcurrencyChanged {
                swarm_id,
                from,
                to,
                reason,
                ..
            } if swarm_id == swarm => Some((*from, *to, reason.clone())),
            _ => None,
        })
        .collect()
}

/// The circuit's states raised for `swarm`, in order.
fn circuit(events: &[Event], swarm: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CircuitChanged {
                swarm_id, state, ..
            } if swarm_id == swarm => Some(state.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_throttle_lowers_concurrency_in_a_slow_or_failing_phase_and_restores_it() {
    let host = TestHost::new()
        .memory_sink()
        .component(
            guests::HOG,
            "swarm_id = \"slowing\"\n\
             [resource_limits]\nmax_concurrent_tasks = 4\nmax_cpu_percent = 100\ntask_timeout_seconds = 60\n\
             [slo_targets]\nresponse_time_p95_ms = 100\nerror_rate_percent = 10\n\
             [throttle]\nwindow_tasks = 4\ncircuit_failures = 0\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
        )
        .build()
        .await;
    let chassis = host.chassis.clone();
    let concurrency = || {
        chassis
            .resource_usage("slowing")
            .unwrap()
            .throttle
            .concurrency
    };
    assert_eq!(concurrency(), 4);

    // Slow: each window of four halves the slots, down to one.
    batch(&chassis, "slowing", "burn", SLOW, 4).await;
    assert_eq!(concurrency(), 2);
    let peak = batch(&chassis, "slowing", "burn", SLOW, 4).await;
    assert!(peak <= 2, "{peak} ran at once under a limit of 2");
    assert_eq!(concurrency(), 1);
    let peak = batch(&chassis, "slowing", "burn", SLOW, 4).await;
    assert!(peak <= 1, "{peak} ran at once under a limit of 1");
    assert_eq!(concurrency(), 1, "never under min_concurrency");
    let slow = changes(&host.events(), "slowing");
    assert_eq!(
        slow.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
        [(4, 2), (2, 1)],
        "{slow:?}"
    );
    assert!(
        slow[0].2.contains("over response_time_p95_ms = 100"),
        "{}",
        slow[0].2
    );

    // Fast again: a slot back per window that meets the targets (three
    // windows, or a few more on a machine busy enough to miss one).
    let mut windows = 0;
    while concurrency() < 4 {
        windows += 1;
        assert!(windows <= 20, "{:?}", changes(&host.events(), "slowing"));
        batch(&chassis, "slowing", "burn", FAST, 4).await;
    }
    let recovered = changes(&host.events(), "slowing");
    assert_eq!((recovered[2].0, recovered[2].1), (1, 2), "{recovered:?}");
    assert!(recovered.len() >= 5, "{recovered:?}");
    for (from, to, reason) in &recovered[2..] {
        if to > from {
            assert!(
                *to == from + 1 && reason.contains("met the SLO targets"),
                "{reason}"
            );
        }
    }
    let usage = chassis.resource_usage("slowing").unwrap();
    assert_eq!(
        (usage.throttle.max_concurrency, usage.throttle.circuit),
        (4, CircuitState::Closed)
    );

    // Failing: a window of own failures over error_rate_percent halves too.
    batch(&chassis, "slowing", "fail", FAST, 4).await;
    assert_eq!(concurrency(), 2);
    let failing = changes(&host.events(), "slowing");
    assert!(
        failing
            .last()
            .unwrap()
            .2
            .contains("over error_rate_percent = 10"),
        "{failing:?}"
    );
}

/// Run one task of `swarm`: whether it succeeded (`fail` answers with
/// its own error), or why the host refused or stopped it.
async fn one(chassis: &Chassis, swarm: &str, task_type: &str, rounds: u64) -> Result<bool, Error> {
    chassis
        .execute_task(swarm, request(task_type, rounds))
        .await
        .map(|outcome| outcome.is_success())
}

#[tokio::test]
async fn the_circuit_opens_refuses_probes_and_closes() {
    let host = TestHost::new()
        .memory_sink()
        .component(
            guests::HOG,
            "swarm_id = \"flaky\"\n\
             [resource_limits]\nmax_concurrent_tasks = 4\nmax_cpu_percent = 100\n\
             [throttle]\ncircuit_failures = 3\ncool_down_seconds = 0.5\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
        )
        .build()
        .await;
    let chassis = host.chassis.clone();
    for _ in 0..3 {
        assert!(!one(&chassis, "flaky", "fail", FAST).await.unwrap());
    }
    // Open: refused at once, not counted against the swarm.
    let refused = one(&chassis, "flaky", "burn", FAST).await.unwrap_err();
    let Error::Task(TaskError::CircuitOpen {
        retry_after,
        reason,
        ..
    }) = &refused
    else {
        panic!("{refused}")
    };
    assert!(
        *retry_after <= Duration::from_millis(500),
        "{retry_after:?}"
    );
    assert!(reason.contains("open after 3 failures"), "{reason}");
    assert_eq!(
        (refused.kind(), refused.http_status(), refused.retry_after()),
        (ErrorKind::CircuitOpen, 503, Some(*retry_after))
    );
    assert_eq!(chassis.slo_report("flaky").unwrap().slo.tasks, 3);
    assert!(chassis.circuit_open("flaky") && chassis.holding_back("flaky"));
    let usage = chassis.resource_usage("flaky").unwrap();
    assert_eq!(
        (
            usage.throttle.circuit,
            usage.throttle.concurrency,
            usage.throttle.openings
        ),
        (CircuitState::Open, 1, 1)
    );

    // After the cool-down one probe runs; a second task beside it is refused.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let probe = {
        let chassis = chassis.clone();
        tokio::spawn(async move { one(&chassis, "flaky", "fail", SLOW).await })
    };
    while chassis.resource_usage("flaky").unwrap().throttle.circuit != CircuitState::HalfOpen {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let beside = one(&chassis, "flaky", "burn", FAST).await.unwrap_err();
    assert!(
        beside.to_string().contains("its probe task is running"),
        "{beside}"
    );
    // The probe fails: open again, for twice as long.
    assert!(!probe.await.unwrap().unwrap());
    let usage = chassis.resource_usage("flaky").unwrap();
    assert_eq!(
        (usage.throttle.circuit, usage.throttle.openings),
        (CircuitState::Open, 2)
    );
    assert!(
        usage.throttle.probe_in_ms.unwrap() > 500,
        "{:?}",
        usage.throttle
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A probe that succeeds closes it, and tasks run again.
    assert!(one(&chassis, "flaky", "burn", FAST).await.unwrap());
    assert!(!chassis.circuit_open("flaky"));
    for _ in 0..3 {
        assert!(one(&chassis, "flaky", "burn", FAST).await.unwrap());
    }
    let events = host.events();
    assert_eq!(
        circuit(&events, "flaky"),
        ["open", "half_open", "open", "half_open", "closed"]
    );
    let cool_downs: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::CircuitChanged {
                cool_down_seconds: Some(s),
                ..
            } => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(cool_downs, [0.5, 1.0]);
    // Each refusal is on record as the task's ending.
    let refusals = events
        .iter()
        .filter(|e| matches!(e, Event::TaskFailed { kind, .. } if kind == "circuit_open"))
        .count();
    assert_eq!(refusals, 2);
}

#[tokio::test]
async fn a_swarm_whose_circuit_keeps_opening_on_probation_is_quarantined() {
    let host = TestHost::new()
        .memory_sink()
        .component(
            guests::HOG,
            "swarm_id = \"hopeless\"\n\
             [throttle]\ncircuit_failures = 2\ncool_down_seconds = 0.2\nquarantine_after = 1\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
        )
        .build()
        .await;
    let chassis = host.chassis.clone();
    for _ in 0..2 {
        assert!(!one(&chassis, "hopeless", "fail", FAST).await.unwrap());
    }
    assert!(chassis.circuit_open("hopeless"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The probe fails: the second opening quarantines the swarm.
    assert!(!one(&chassis, "hopeless", "fail", FAST).await.unwrap());
    let report = chassis.slo_report("hopeless").unwrap();
    assert!(report.reputation.quarantined);
    let reason = report.reputation.quarantine_reason.unwrap();
    assert!(
        reason.contains("circuit opened 2 times") && reason.contains("quarantine_after = 1"),
        "{reason}"
    );
    let e = one(&chassis, "hopeless", "burn", FAST).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Quarantined, "{e}");
    // An operator's release lets it run again, its circuit closed.
    chassis.release("hopeless").unwrap();
    assert!(one(&chassis, "hopeless", "burn", FAST).await.unwrap());
    assert!(host.events().iter().any(|e| matches!(
        e,
        Event::Quarantined { swarm_id, reason, .. } if swarm_id == "hopeless" && reason.contains("circuit")
    )));
}
