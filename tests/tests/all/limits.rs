//! Every resource limit of a contract against a guest written to break it.
//! Each hostile run checks the error kind, that a well-behaved swarm running
//! at the same time completes correctly, and that the host serves normal
//! tasks right after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use chassis::TaskError;
use chassis::{
    Chassis, ChassisConfig, Error, ErrorKind, Event, LimitKind, PoolConfig, QueueConfig,
    TaskOutcome, TaskRequest,
};
use chassis_tests::{Host, TestHost, component, contract, greet, guests, wat_swarm};
use serde_json::{Value, json};

const HOSTILE: &str = "swarm_id = \"misbehave\"
[resource_limits]
max_memory_mb = 32
task_timeout_seconds = 1
max_cpu_percent = 100
max_concurrent_tasks = 2
max_api_calls_per_second = 50
[security]
wasi_capabilities = [\"wasi:io/streams\"]
";

/// A host that records events, with the bystanders (hello-world and
/// bench-probe) loaded.
fn with_bystanders() -> TestHost {
    TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .example(guests::BENCH_PROBE)
}

/// [`with_bystanders`], and the hostile `guest` loaded under `contract_text`.
fn host_with(guest: &str, contract_text: &str) -> TestHost {
    with_bystanders().component(guest, contract_text)
}

/// A well-behaved task that stays busy for `ms` of wall time.
async fn hold(chassis: &Chassis, ms: u64) {
    let o = chassis
        .execute_task("bench-probe", TaskRequest::new("hold", json!({ "ms": ms })))
        .await
        .unwrap_or_else(|e| panic!("bystander failed: {e}"));
    assert!(o.output["spins"].as_u64().unwrap() > 0, "{:?}", o.output);
}

/// Well-behaved tasks, back to back, until `done`: 50 ms holds and greetings
/// in turn. Returns when each one ran; any failure fails the test.
fn bystanders(
    chassis: &Chassis,
    done: Arc<AtomicBool>,
    warm: Arc<Notify>,
) -> JoinHandle<Vec<Span>> {
    let chassis = chassis.clone();
    tokio::spawn(async move {
        let mut spans = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let start = Instant::now();
            if spans.len() % 2 == 0 {
                hold(&chassis, 50).await;
            } else {
                greet(&chassis, &format!("bystander-{}", spans.len())).await;
            }
            spans.push((start, Instant::now()));
            if spans.len() == 1 {
                warm.notify_one();
            }
        }
        spans
    })
}

type Span = (Instant, Instant);

/// How many of `spans` overlap `[from, to]`.
fn overlapping(spans: &[Span], from: Instant, to: Instant) -> usize {
    spans.iter().filter(|(s, e)| *s < to && *e > from).count()
}

/// Run a hostile task while well-behaved swarms keep serving beside it,
/// check that at least one of their tasks ran while the hostile one did and
/// completed correctly, then that the host still serves. Returns the hostile
/// task's result.
async fn hostile(
    chassis: &Chassis,
    swarm_id: &str,
    task: &str,
    payload: Value,
) -> Result<TaskOutcome, Error> {
    let done = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(Notify::new());
    let bystander = bystanders(chassis, done.clone(), warm.clone());
    warm.notified().await;
    // Start while a bystander task is inside the host, so that even a
    // hostile task of a millisecond has one beside it.
    while chassis.resource_usage("bench-probe").unwrap().tasks_running == 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let from = Instant::now();
    let result = chassis
        .execute_task(swarm_id, TaskRequest::new(task, payload))
        .await;
    let to = Instant::now();
    done.store(true, Ordering::Relaxed);
    let spans = bystander.await.expect("bystander task");
    assert!(
        overlapping(&spans, from, to) >= 1,
        "no well-behaved task ran beside the hostile one ({} ran in all)",
        spans.len()
    );
    greet(chassis, "after").await;
    result
}

fn limit_events(host: &Host) -> Vec<LimitKind> {
    host.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::LimitExceeded { limit, .. } => Some(limit),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_times_out_within_the_deadline_and_slack() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let before = chassis.slo_report("misbehave").unwrap().reputation.score;
    let started = Instant::now();
    let err = chassis
        .execute_task("misbehave", TaskRequest::new("spin", json!({})))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Task(TaskError::Timeout { seconds, .. }) if seconds == 1.0),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("timed out after 1 s"), "{err}");
    // Deadline 1 s; the epoch check runs every 10 ms. The host-side
    // backstop would end it only at 1 s + HOST_SLACK: this was the epoch.
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1) + chassis::caps::HOST_SLACK,
        "{elapsed:?}"
    );
    assert_eq!(limit_events(&chassis), vec![LimitKind::Timeout]);
    // The violation costs reputation, and the event says so.
    let after = chassis.slo_report("misbehave").unwrap().reputation.score;
    assert!(after < before * 0.95, "{before} -> {after}");
    assert!(chassis.events().iter().any(|e| matches!(e,
        Event::ReputationChanged { swarm_id, to, .. } if swarm_id == "misbehave" && *to == after)));
    // With bystanders running beside it, too.
    let err = hostile(&chassis, "misbehave", "spin", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_in_the_allocator_during_argument_passing_times_out() {
    let text = HOSTILE.replace("misbehave", "alloc-loop");
    let chassis = host_with(guests::ALLOC_LOOP, &text).build().await;
    // A small payload goes through.
    let o = chassis
        .execute_task(
            "alloc-loop",
            TaskRequest::new("size", json!({"x": "small"})),
        )
        .await
        .unwrap();
    assert_eq!(o.output["payload_bytes"], json!(13));
    // A payload over 64 KiB makes cabi_realloc spin before execute starts.
    let big = json!({ "x": "z".repeat(100 * 1024) });
    let started = Instant::now();
    let err = chassis
        .execute_task("alloc-loop", TaskRequest::new("size", big.clone()))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Task(TaskError::Timeout { .. })),
        "{err}"
    );
    // Stopped by the epoch inside the guest's allocator, not the backstop.
    assert!(
        elapsed < Duration::from_secs(1) + chassis::caps::HOST_SLACK,
        "{elapsed:?}"
    );
    let err = hostile(&chassis, "alloc-loop", "size", big)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::Timeout { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let err = hostile(&chassis, "misbehave", "memory_bomb", json!({}))
        .await
        .unwrap_err();
    let Error::Task(TaskError::MemoryLimit {
        limit_mb,
        ref detail,
        ..
    }) = err
    else {
        panic!("expected a memory limit error, got {err}");
    };
    assert_eq!(limit_mb, 32);
    assert!(detail.contains("limit is 33554432 bytes"), "{detail}");
    assert_eq!(limit_events(&chassis), vec![LimitKind::Memory]);
    let usage = chassis.resource_usage("misbehave").unwrap();
    assert_eq!(usage.memory_mb, 0.0, "memory of the dead task is released");
    assert_eq!(usage.tasks_running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_growth_hits_the_limit() {
    let wasm = wat_swarm(
        r#"(module
          (memory (export "memory") 1)
          (table $t 1 funcref)
          (data (i32.const 16) "grow")
          (data (i32.const 32) "\10\00\00\00\04\00\00\00")
          (data (i32.const 48) "\20\00\00\00\01\00\00\00")
          (global $next (mut i32) (i32.const 1024))
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $next))
            (global.set $next (i32.add (global.get $next) (local.get 3)))
            (local.get $p))
          (func (export "infrafabric:chassis/task@0.1.0#describe") (result i32)
            (i32.const 48))
          (func (export "infrafabric:chassis/task@0.1.0#execute")
            (param i32 i32 i32 i32 i32 i32) (result i32)
            (loop $again
              (drop (table.grow $t (ref.null func) (i32.const 10000)))
              (br $again))
            (unreachable)))"#,
    );
    let chassis = with_bystanders()
        .bytes(wasm, "swarm_id = \"tables\"")
        .build()
        .await;
    assert_eq!(chassis.loaded[2].task_types, vec!["grow"]);
    let err = hostile(&chassis, "tables", "grow", json!({}))
        .await
        .unwrap_err();
    let Error::Task(TaskError::TableLimit {
        ref detail,
        limit_elements,
        ..
    }) = err
    else {
        panic!("expected a table limit error, got {err}");
    };
    assert!(detail.contains("table limit exceeded"), "{detail}");
    assert_eq!(limit_elements, chassis::caps::MAX_TABLE_ELEMENTS);
    // It names the host's table limit, not the contract's memory field.
    let text = err.to_string();
    assert!(
        text.contains("table limit exceeded") && !text.contains("max_memory_mb"),
        "{text}"
    );
    assert_eq!(limit_events(&chassis), vec![LimitKind::Memory]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_is_a_stack_overflow() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let err = hostile(&chassis, "misbehave", "recurse", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Task(TaskError::StackOverflow {
                limit_bytes: 524288,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(limit_events(&chassis), vec![LimitKind::StackOverflow]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_output_is_refused() {
    let text = HOSTILE.replace("max_memory_mb = 32", "max_memory_mb = 128");
    let chassis = host_with(guests::MISBEHAVE, &text).build().await;
    let err = hostile(&chassis, "misbehave", "huge_output", json!({"mib": 3}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::OutputTooLarge { limit_bytes, bytes, .. })
            if limit_bytes == chassis::caps::MAX_OUTPUT_BYTES && bytes > 3 << 20),
        "{err}"
    );
    // Past the host-call cap it is refused while being passed to the host.
    let err = chassis
        .execute_task(
            "misbehave",
            TaskRequest::new("huge_output", json!({"mib": 12})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::HostcallTooLarge { .. })),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    // Just under the caps is fine.
    let o = chassis
        .execute_task(
            "misbehave",
            TaskRequest::new("huge_output", json!({"mib": 1})),
        )
        .await
        .unwrap();
    assert_eq!(o.output["data"].as_str().unwrap().len(), 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_log_line_is_more_than_the_hostcall_cap() {
    let text = HOSTILE.replace("max_memory_mb = 32", "max_memory_mb = 64");
    let chassis = host_with(guests::MISBEHAVE, &text).build().await;
    let err = hostile(&chassis, "misbehave", "huge_log", json!({"mib": 6}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::HostcallTooLarge { limit_bytes, .. }) if limit_bytes == chassis::caps::MAX_HOSTCALL_BYTES),
        "{err}"
    );
    assert_eq!(limit_events(&chassis), vec![LimitKind::HostcallSize]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_dropped_and_counted_and_never_ends_the_task() {
    // Logs have their own budget (100 lines a second by default), apart
    // from the call rate (50 here).
    let text = HOSTILE.replace("task_timeout_seconds = 1", "task_timeout_seconds = 20");
    let chassis = host_with(guests::MISBEHAVE, &text).build().await;
    // Under the burst: every line goes out.
    let o = chassis
        .execute_task(
            "misbehave",
            TaskRequest::new("log_flood", json!({"lines": 80})),
        )
        .await
        .unwrap();
    assert_eq!(o.usage.host_calls, 80);
    assert_eq!(o.usage.dropped_log_lines, 0);
    // A flood: the rest is dropped and counted, the task completes, and
    // the call rate is untouched.
    let o = hostile(
        &chassis,
        "misbehave",
        "log_flood",
        json!({"lines": 200_000}),
    )
    .await
    .unwrap();
    assert_eq!(o.output, json!({"logged": 200_000}));
    assert!(o.usage.dropped_log_lines >= 199_000, "{:?}", o.usage);
    assert_eq!(o.usage.host_calls + o.usage.dropped_log_lines, 200_000);
    assert_eq!(o.usage.rate_limited_calls, 0, "{:?}", o.usage);
    let usage = chassis.resource_usage("misbehave").unwrap();
    assert_eq!(usage.dropped_log_lines, o.usage.dropped_log_lines);
    assert_eq!(usage.rate_limited_calls, 0);
    let events = chassis.events();
    let rate_events = events
        .iter()
        .filter(|e| {
            matches!(e, Event::RateLimited { swarm_id, import, .. }
                if swarm_id == "misbehave" && import == "log")
        })
        .count();
    assert_eq!(rate_events, 1, "one for the task that was cut: {events:?}");
    assert!(
        limit_events(&chassis).is_empty(),
        "logging is no limit violation"
    );
    // Bytes count too: with lines to spare, 1 KiB a second lets through
    // about 70 of 200 lines of 15 bytes.
    let text = HOSTILE
        .replace("task_timeout_seconds = 1", "task_timeout_seconds = 20")
        .replace(
            "max_memory_mb = 32",
            "max_memory_mb = 32\nmax_log_lines_per_second = 100000\nmax_log_bytes_per_second = 1024",
        )
        .replace("\"misbehave\"", "\"small-logs\"");
    chassis
        .load_bytes(&component(guests::MISBEHAVE), contract(&text))
        .await
        .unwrap();
    let o = chassis
        .execute_task(
            "small-logs",
            TaskRequest::new("log_flood", json!({"lines": 200})),
        )
        .await
        .unwrap();
    assert!(
        (100..190).contains(&o.usage.dropped_log_lines),
        "{:?}",
        o.usage
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_lines_over_the_rate_are_dropped_and_counted() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let o = hostile(&chassis, "misbehave", "print_flood", json!({"lines": 200}))
        .await
        .unwrap();
    assert_eq!(o.output, json!({"printed": 200}));
    // The log budget is 100 lines a second with a second's burst: the
    // rest is counted.
    assert!(o.usage.dropped_log_lines >= 90, "{:?}", o.usage);
    assert!(o.usage.dropped_log_lines < 200, "{:?}", o.usage);
    assert_eq!(
        chassis
            .resource_usage("misbehave")
            .unwrap()
            .dropped_log_lines,
        o.usage.dropped_log_lines
    );
    assert!(chassis.events().iter().any(|e| matches!(e,
        Event::RateLimited { swarm_id, import, .. } if swarm_id == "misbehave" && import == "stdout")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_carrying_the_guests_message() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let err = hostile(&chassis, "misbehave", "panic", json!({"message": "boom"}))
        .await
        .unwrap_err();
    let Error::Task(TaskError::Trap { ref message, .. }) = err else {
        panic!("expected a trap, got {err}");
    };
    assert!(message.contains("hostile panic: boom"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_trap_is_a_trap() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let err = hostile(&chassis, "misbehave", "trap", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_cannot_start_threads() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let o = hostile(&chassis, "misbehave", "spawn_threads", json!({}))
        .await
        .unwrap();
    let attempts = o.output["spawned"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    for attempt in attempts {
        assert!(
            attempt.as_str().unwrap().contains("Not supported"),
            "{attempt}"
        );
    }
}

/// The hostile swarm here is one that tries to run more at once than its
/// contract allows: six long tasks against `max_concurrent_tasks = 2` and a
/// wait queue of 2, while well-behaved swarms keep serving beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_tasks_run_at_once_than_the_limit_and_the_queue_is_bounded() {
    let queue = QueueConfig {
        max_queued: 2,
        max_wait: Duration::from_secs(30),
    };
    let text = HOSTILE.replace("task_timeout_seconds = 1", "task_timeout_seconds = 20");
    let chassis = host_with(guests::MISBEHAVE, &text)
        .config(|c| ChassisConfig { queue, ..c })
        .build()
        .await;
    let done = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(Notify::new());
    let bystander = bystanders(&chassis, done.clone(), warm.clone());
    warm.notified().await;
    let from = Instant::now();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let chassis = chassis.clone();
        let watching = watching.clone();
        tokio::spawn(async move {
            let (mut running, mut queued, mut memory_mb) = (0, 0, 0.0f64);
            while watching.load(Ordering::Relaxed) {
                let u = chassis.resource_usage("misbehave").unwrap();
                running = running.max(u.tasks_running);
                queued = queued.max(u.tasks_queued);
                memory_mb = memory_mb.max(u.memory_mb);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (running, queued, memory_mb)
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let chassis = chassis.clone();
        tasks.push(tokio::spawn(async move {
            chassis
                .execute_task(
                    "misbehave",
                    TaskRequest::new("burn", json!({"rounds": 300_000_000u64})),
                )
                .await
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(o) => {
                assert!(o.is_success());
                ok += 1;
            }
            Err(e @ Error::Task(TaskError::Overloaded { .. })) => {
                assert!(e.to_string().contains("wait queue of 2 is full"), "{e}");
                overloaded += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let to = Instant::now();
    watching.store(false, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    let (max_running, max_queued, memory_mb) = watcher.await.unwrap();
    let spans = bystander.await.unwrap();
    assert!(
        overlapping(&spans, from, to) >= 2,
        "{} bystander tasks",
        spans.len()
    );
    assert_eq!((ok, overloaded), (4, 2));
    assert_eq!(max_running, 2, "never more than max_concurrent_tasks");
    // The queue was used, and never beyond its bound.
    assert!((1..=2).contains(&max_queued), "{max_queued}");
    // Usage shows the running instances' memory while they run.
    assert!(memory_mb > 0.0, "{memory_mb}");
    let limits = limit_events(&chassis);
    assert_eq!(limits, vec![LimitKind::Overloaded, LimitKind::Overloaded]);
    greet(&chassis, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_waits_too_long_for_a_slot_is_overloaded() {
    let queue = QueueConfig {
        max_queued: 4,
        max_wait: Duration::from_millis(50),
    };
    let text = HOSTILE
        .replace("max_concurrent_tasks = 2", "max_concurrent_tasks = 1")
        .replace("task_timeout_seconds = 1", "task_timeout_seconds = 5");
    let chassis = host_with(guests::MISBEHAVE, &text)
        .config(|c| ChassisConfig { queue, ..c })
        .build()
        .await;
    let busy = {
        let chassis = chassis.clone();
        tokio::spawn(async move {
            chassis
                .execute_task(
                    "misbehave",
                    TaskRequest::new("burn", json!({"rounds": 500_000_000u64})),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = chassis
        .execute_task("misbehave", TaskRequest::new("burn", json!({"rounds": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::Overloaded { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("freed up within"), "{err}");
    assert!(busy.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuel_budget_stops_a_cpu_bound_task() {
    let text = HOSTILE.replace(
        "max_api_calls_per_second = 50",
        "max_api_calls_per_second = 50\nmax_fuel = 5000000",
    );
    let chassis = host_with(guests::MISBEHAVE, &text)
        .config(|c| ChassisConfig {
            fuel_metering: true,
            ..c
        })
        .build()
        .await;
    let small = chassis
        .execute_task(
            "misbehave",
            TaskRequest::new("burn", json!({"rounds": 1000})),
        )
        .await
        .unwrap();
    let used = small.usage.fuel_consumed.expect("fuel is metered");
    assert!(used > 1000 && used < 5_000_000, "{used}");
    let err = hostile(
        &chassis,
        "misbehave",
        "burn",
        json!({"rounds": 100_000_000u64}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Task(TaskError::CpuBudget {
                fuel: 5_000_000,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(limit_events(&chassis), vec![LimitKind::CpuBudget]);
}

#[tokio::test]
async fn a_fuel_budget_needs_a_host_that_meters_fuel() {
    let err = TestHost::new()
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"f\"\n[resource_limits]\nmax_fuel = 10\n",
        )
        .try_build()
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("max_fuel is set but this host does not meter fuel"),
        "{err}"
    );
}

#[tokio::test]
async fn the_pool_refuses_contracts_it_cannot_hold() {
    let chassis = TestHost::new()
        .config(|c| ChassisConfig {
            pool: Some(PoolConfig {
                instances: 6,
                max_memory_mb: 64,
            }),
            ..c
        })
        .build()
        .await;
    let err = chassis
        .load_bytes(
            &component(guests::HELLO_WORLD),
            contract("swarm_id = \"big\"\n[resource_limits]\nmax_memory_mb = 128\n"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max_memory_mb = 128 is more than"),
        "{err}"
    );
    chassis
        .load_bytes(
            &component(guests::HELLO_WORLD),
            contract("swarm_id = \"a\"\n[resource_limits]\nmax_memory_mb = 64\nmax_concurrent_tasks = 4\n"),
        )
        .await
        .unwrap();
    let err = chassis
        .load_bytes(
            &component(guests::HELLO_WORLD),
            contract("swarm_id = \"b\"\n[resource_limits]\nmax_memory_mb = 8\nmax_concurrent_tasks = 2\n"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("4 are reserved by loaded swarms"),
        "{err}"
    );
    // Sized for its contracts, a host takes them.
    let a = contract(
        "swarm_id = \"a\"\n[resource_limits]\nmax_memory_mb = 64\nmax_concurrent_tasks = 4\n",
    );
    let b = contract(
        "swarm_id = \"b\"\n[resource_limits]\nmax_memory_mb = 8\nmax_concurrent_tasks = 2\n",
    );
    let sized = TestHost::new()
        .config(|_| ChassisConfig::sized_for([&a, &b]))
        .component(guests::HELLO_WORLD, a)
        .component(guests::HELLO_WORLD, b)
        .build()
        .await;
    assert_eq!(sized.loaded.len(), 2);
}

#[tokio::test]
async fn outcomes_carry_usage_figures() {
    let chassis = host_with(guests::MISBEHAVE, HOSTILE).build().await;
    let o = chassis
        .execute_task(
            "misbehave",
            TaskRequest::new("burn", json!({"rounds": 10_000_000u64})),
        )
        .await
        .unwrap();
    let u = &o.usage;
    assert!(u.cpu_ms > 0.0 && u.wall_ms >= u.cpu_ms, "{u:?}");
    assert!(u.peak_memory_bytes >= 64 * 1024, "{u:?}");
    assert_eq!(u.fuel_consumed, None);
    let usage = chassis.resource_usage("misbehave").unwrap();
    assert_eq!(usage.tasks_completed, 1);
    assert!(usage.cpu_percent > 0.0, "{usage:?}");
    assert_eq!(usage.tasks_running, 0);
}

/// `[swarm_limits] max_memory_mb`: eight tasks that each hold 40 MiB,
/// within their own 64 MiB, never hold more than their swarm's 128 MiB
/// together — the growth that would pass it is refused as the swarm's
/// memory limit — while the same eight under a contract without the
/// swarm limit all run; a bystander answers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_within_their_own_memory_never_hold_more_than_their_swarm_may() {
    let limits = "[resource_limits]\nmax_memory_mb = 64\nmax_concurrent_tasks = 8\ntask_timeout_seconds = 60\n";
    let chassis = TestHost::new()
        .example(guests::HELLO_WORLD)
        .component(
            guests::HOG,
            format!("swarm_id = \"capped\"\n{limits}[swarm_limits]\nmax_memory_mb = 128\n"),
        )
        .component(guests::HOG, format!("swarm_id = \"free\"\n{limits}"))
        .build()
        .await;
    let hold = json!({"mib": 40, "rounds": 40_000_000u64});
    let run_eight = |id: &'static str| {
        let chassis = chassis.chassis.clone();
        let hold = hold.clone();
        async move {
            let watching = Arc::new(AtomicBool::new(true));
            let watcher = {
                let (chassis, watching) = (chassis.clone(), watching.clone());
                tokio::spawn(async move {
                    let mut peak = 0.0f64;
                    while watching.load(Ordering::Relaxed) {
                        peak = peak.max(chassis.resource_usage(id).unwrap().memory_mb);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    peak
                })
            };
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (chassis, hold) = (chassis.clone(), hold.clone());
                    tokio::spawn(async move {
                        chassis
                            .execute_task(id, TaskRequest::new("hold", hold))
                            .await
                    })
                })
                .collect();
            let mut ends = Vec::new();
            for task in tasks {
                ends.push(task.await.unwrap());
            }
            watching.store(false, Ordering::Relaxed);
            (ends, watcher.await.unwrap())
        }
    };
    let (ends, peak) = run_eight("capped").await;
    let held = ends.iter().filter(|e| e.is_ok()).count();
    let refused: Vec<&Error> = ends.iter().filter_map(|e| e.as_ref().err()).collect();
    for e in &refused {
        assert!(
            matches!(
                e,
                Error::Task(TaskError::SwarmMemoryLimit { limit_mb: 128, .. })
            ),
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::Memory);
        assert!(
            e.to_string().contains("swarm_limits.max_memory_mb = 128"),
            "{e}"
        );
    }
    assert!(
        held >= 1 && !refused.is_empty(),
        "{held} held, {} refused",
        refused.len()
    );
    assert!(peak <= 128.0, "the swarm held {peak} MiB at once");
    assert_eq!(chassis.resource_usage("capped").unwrap().memory_mb, 0.0);

    // Without the swarm's limit the same tasks all run, together over it.
    let (ends, peak) = run_eight("free").await;
    assert!(ends.iter().all(Result::is_ok), "{ends:?}");
    assert!(
        peak > 128.0,
        "the tasks never overlapped ({peak} MiB at most)"
    );
    greet(&chassis, "hello-world").await;
}

/// `[budget] tasks`: eight tasks at once under a budget of five — five
/// run, three are refused as `budget_exhausted` saying when the period
/// renews — and the budget is the swarm's, not each task's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_budget_admits_that_many_tasks_per_period() {
    let chassis = TestHost::new()
        .component(
            guests::HOG,
            "swarm_id = \"budgeted\"\n[resource_limits]\nmax_concurrent_tasks = 8\n\
             [budget]\nperiod_seconds = 3600\ntasks = 5\n",
        )
        .build()
        .await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let chassis = chassis.chassis.clone();
            tokio::spawn(async move {
                chassis
                    .execute_task(
                        "budgeted",
                        TaskRequest::new("burn", json!({"rounds": 1_000_000u64})),
                    )
                    .await
            })
        })
        .collect();
    let mut ran = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ran += 1,
            Err(e) => {
                let Error::Task(TaskError::BudgetExhausted {
                    budget,
                    limit,
                    retry_after,
                    ..
                }) = &e
                else {
                    panic!("{e}")
                };
                assert_eq!((*budget, *limit), (chassis::BudgetKind::Tasks, 5.0));
                assert!(
                    retry_after.as_secs() >= 1 && retry_after.as_secs() <= 3600,
                    "{retry_after:?}"
                );
                assert_eq!(e.kind(), ErrorKind::BudgetExhausted);
                assert_eq!(e.http_status(), 429);
                assert!(e.to_string().contains("renews at"), "{e}");
            }
        }
    }
    assert_eq!(ran, 5);
}

/// `[budget] cpu_seconds`: eight tasks that would each burn for seconds
/// share half a CPU-second: each is stopped once the swarm's budget is
/// spent (not by its deadline), the swarm's CPU time stays within a tick
/// per task of the budget, and the next task is refused at once until the
/// period renews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_budget_stops_the_swarms_tasks_once_spent() {
    let chassis = TestHost::new()
        .component(
            guests::HOG,
            "swarm_id = \"budgeted\"\n[resource_limits]\nmax_concurrent_tasks = 8\n\
             max_cpu_percent = 100\ntask_timeout_seconds = 60\n\
             [budget]\nperiod_seconds = 3600\ncpu_seconds = 0.5\n",
        )
        .build()
        .await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let chassis = chassis.chassis.clone();
            tokio::spawn(async move {
                chassis
                    .execute_task(
                        "budgeted",
                        TaskRequest::new("burn", json!({"rounds": 50_000_000_000u64})),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        let e = task.await.unwrap().unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Task(TaskError::BudgetExhausted {
                    budget: chassis::BudgetKind::CpuSeconds,
                    ..
                })
            ),
            "{e}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the tasks ran to their deadline"
    );
    let used = chassis.resource_usage("budgeted").unwrap().cpu_seconds;
    assert!(
        (0.5..0.8).contains(&used),
        "the swarm used {used} CPU-seconds"
    );
    let refused = chassis
        .execute_task(
            "budgeted",
            TaskRequest::new("burn", json!({"rounds": 1u64})),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::BudgetExhausted);
    assert!(refused.retry_after().unwrap() >= Duration::from_secs(1));
}
