//! Warm instances (`[instances] tasks_per_instance`, `docs/warm-instances.md`):
//! what crosses from one task to the next on a warm instance, and what
//! never does. The hostile guest `misbehave`'s `remember` task keeps each
//! message in a static and returns what earlier tasks left there: the
//! most a warm instance can carry. Each test breaks the instance in one
//! way and checks that the next task gets a fresh one, with nothing to give.

use chassis::{Chassis, ChassisConfig, Event, ServiceContract, TaskRequest, TaskStatus};
use chassis_tests::{TestHost, capture_logs, guests, root};
use serde_json::{Value, json};

/// `misbehave` as swarm `warm`, with a short timeout, `extra` resource
/// limits and `tasks_per_instance` (1: the default, left out).
fn misbehave(extra: &str, tasks_per_instance: u32) -> String {
    let instances = if tasks_per_instance == 1 {
        String::new()
    } else {
        format!("[instances]\ntasks_per_instance = {tasks_per_instance}\n")
    };
    format!(
        "swarm_id = \"warm\"\n\
         [resource_limits]\nmax_memory_mb = 16\ntask_timeout_seconds = 1\nmax_concurrent_tasks = 2\n{extra}\
         {instances}"
    )
}

fn contract(tasks_per_instance: u32) -> ServiceContract {
    chassis_tests::contract(&misbehave("", tasks_per_instance))
}

/// Run `remember` with `message`: how many tasks the instance ran before,
/// and what they left.
async fn remember(host: &Chassis, message: &str) -> (u32, Vec<String>) {
    let o = host
        .execute_task(
            "warm",
            TaskRequest::new("remember", json!({ "message": message })),
        )
        .await
        .unwrap();
    assert!(o.is_success(), "{o:?}");
    let before = serde_json::from_value(o.output["before"].clone()).unwrap();
    (o.usage.instance_prior_tasks, before)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_task_gets_a_fresh_instance_by_default() {
    let host = TestHost::new()
        .component(guests::MISBEHAVE, misbehave("", 1))
        .build()
        .await;
    for message in ["a", "b", "c"] {
        assert_eq!(remember(&host, message).await, (0, vec![]));
    }
}

#[tokio::test]
async fn a_warm_instance_runs_its_swarms_next_tasks_up_to_tasks_per_instance() {
    let host = TestHost::new()
        .component(guests::MISBEHAVE, misbehave("", 3))
        .build()
        .await;
    assert_eq!(remember(&host, "a").await, (0, vec![]));
    assert_eq!(remember(&host, "b").await, (1, strings(&["a"])));
    assert_eq!(remember(&host, "c").await, (2, strings(&["a", "b"])));
    // Its third task was its last: the next one starts from nothing.
    assert_eq!(remember(&host, "d").await, (0, vec![]));
    assert_eq!(remember(&host, "e").await, (1, strings(&["d"])));
}

/// Each way a task can end other than cleanly, with the error it gets.
#[tokio::test]
async fn an_instance_whose_task_did_not_end_cleanly_is_never_reused() {
    let host = TestHost::new()
        .component(guests::MISBEHAVE, misbehave("", 100))
        .build()
        .await;
    let endings = [
        ("trap", json!({}), "trap"),
        ("panic", json!({"message": "m"}), "trap"),
        ("memory_bomb", json!({}), "memory"),
        ("spin", json!({}), "timeout"),
        ("recurse", json!({}), "stack_overflow"),
        ("huge_output", json!({"mib": 3}), "too_large"),
        ("huge_error", json!({"mib": 0}), "guest_error"),
    ];
    for (task, payload, kind) in endings {
        let (_, left) = remember(&host, "before").await;
        assert!(left.is_empty() || left.iter().all(|m| m == "before"));
        assert!(remember(&host, "secret").await.0 > 0, "{task}: not warm");
        let ended = host
            .execute_task("warm", TaskRequest::new(task, payload))
            .await;
        let got = match &ended {
            Ok(o) => {
                assert_eq!(o.status, TaskStatus::Failed, "{task}: {o:?}");
                "guest_error".to_string()
            }
            Err(e) => e.kind().as_str().to_string(),
        };
        assert_eq!(got, kind, "{task}: {ended:?}");
        assert_eq!(
            remember(&host, "after").await,
            (0, vec![]),
            "after {task}, the next task ran on an instance that had run before"
        );
        // Start the next round from a fresh instance.
        host.replace_bytes(&chassis_tests::component(guests::MISBEHAVE), contract(100))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_instance_that_holds_a_host_resource_is_not_reused() {
    let host = TestHost::new()
        .component(guests::MISBEHAVE, misbehave("", 100))
        .build()
        .await;
    remember(&host, "a").await;
    assert_eq!(remember(&host, "b").await.0, 1);
    // Printing takes a stdout stream that the guest's libc keeps: a
    // stream bound to the task that took it.
    let o = host
        .execute_task("warm", TaskRequest::new("print_flood", json!({"lines": 1})))
        .await
        .unwrap();
    assert!(o.is_success(), "{o:?}");
    assert_eq!(o.usage.instance_prior_tasks, 2);
    assert_eq!(remember(&host, "c").await, (0, vec![]));
}

#[tokio::test]
async fn replacing_or_unloading_a_swarm_drops_its_warm_instances() {
    let host = TestHost::new()
        .component(guests::MISBEHAVE, misbehave("", 100))
        .build()
        .await;
    let bytes = chassis_tests::component(guests::MISBEHAVE);
    remember(&host, "a").await;
    assert_eq!(remember(&host, "b").await, (1, strings(&["a"])));
    host.replace_bytes(&bytes, contract(100)).await.unwrap();
    assert_eq!(remember(&host, "c").await, (0, vec![]));
    host.unload("warm").unwrap();
    host.load_bytes(&bytes, contract(100)).await.unwrap();
    assert_eq!(remember(&host, "d").await, (0, vec![]));
}

/// A task whose caller stopped waiting (the future dropped mid-run) takes
/// its instance with it.
#[tokio::test]
async fn an_instance_whose_task_was_cancelled_is_never_reused() {
    let host = TestHost::new()
        .component(guests::MISBEHAVE, misbehave("", 100))
        .build()
        .await;
    remember(&host, "a").await;
    assert_eq!(remember(&host, "b").await, (1, strings(&["a"])));
    let burn = host.execute_task(
        "warm",
        TaskRequest::new("burn", json!({"rounds": 1_000_000_000u64})),
    );
    let cancelled = tokio::time::timeout(std::time::Duration::from_millis(100), burn).await;
    assert!(cancelled.is_err(), "the task ended before it was cancelled");
    assert_eq!(remember(&host, "c").await, (0, vec![]));
}

/// A task that showed its secret (a security event, though it succeeded)
/// ends its instance's life.
#[tokio::test]
async fn an_instance_that_leaked_a_secret_is_not_reused() {
    let host = TestHost::new()
        .secret("leaky", "api_key", "sk-live-warm-0123456789")
        .component(
            guests::LEAKY,
            "swarm_id = \"leaky\"\n[security]\nscoped_credentials = [\"api_key\"]\n\
             [reputation]\ninitial_score = 1.0\nquarantine_threshold = 0.05\n\
             [instances]\ntasks_per_instance = 100\n",
        )
        .build()
        .await;
    for _ in 0..2 {
        let o = host
            .execute_task("leaky", TaskRequest::new("log", json!({})))
            .await
            .unwrap();
        assert!(o.is_success(), "{o:?}");
        assert_eq!(o.usage.security_violations, 1);
        assert_eq!(
            o.usage.instance_prior_tasks, 0,
            "ran on the instance that leaked"
        );
    }
}

/// A task never runs on an instance another task is running on: while
/// the warm one is busy, a task running beside it gets a fresh one.
#[tokio::test]
async fn tasks_running_at_once_never_share_an_instance() {
    let text = misbehave("max_cpu_percent = 50\n", 100)
        .replace("task_timeout_seconds = 1\n", "task_timeout_seconds = 30\n");
    let host = TestHost::new()
        .component(guests::MISBEHAVE, text)
        .build()
        .await;
    assert_eq!(remember(&host, "a").await, (0, vec![]));
    // Long enough to reach an epoch tick, where it yields to the task
    // beside it.
    let burn = host.execute_task(
        "warm",
        TaskRequest::new("burn", json!({"rounds": 30_000_000})),
    );
    let (burnt, beside) = tokio::join!(burn, remember(&host, "b"));
    let burnt = burnt.unwrap();
    assert!(burnt.is_success(), "{burnt:?}");
    assert_eq!(burnt.usage.instance_prior_tasks, 1);
    assert_eq!(beside, (0, vec![]), "it ran on the busy instance");
    // Both went back warm; the last one back is taken first.
    assert_eq!(remember(&host, "c").await, (2, strings(&["a"])));
    assert_eq!(remember(&host, "d").await, (3, strings(&["a", "c"])));
}

/// A task on a warm instance is held to its own limits and counted on
/// its own: full fuel, its own host calls, its own log lines.
#[tokio::test]
async fn a_task_on_a_warm_instance_gets_its_own_limits_and_accounting() {
    const FUEL: u64 = 20_000_000;
    let (logs, _guard) = capture_logs();
    let host = TestHost::new()
        .config(|c| ChassisConfig {
            fuel_metering: true,
            ..c
        })
        .component(
            guests::MISBEHAVE,
            misbehave(&format!("max_fuel = {FUEL}\n"), 100),
        )
        .build()
        .await;
    let burn = |rounds: u64| {
        host.execute_task("warm", TaskRequest::new("burn", json!({"rounds": rounds})))
    };
    let probe = burn(10_000).await.unwrap();
    let per_round = probe.usage.fuel_consumed.unwrap() as f64 / 10_000.0;
    // Each of these takes about 60% of the task's fuel: together they
    // would run out, so each must start with the full amount.
    let rounds = (0.6 * FUEL as f64 / per_round) as u64;
    for n in 1..=3 {
        let o = burn(rounds).await.unwrap();
        assert!(o.is_success(), "{o:?}");
        assert_eq!(o.usage.instance_prior_tasks, n);
        let used = o.usage.fuel_consumed.unwrap();
        assert!(used < FUEL && used > FUEL / 2, "{used}");
    }
    let log = |lines: u64, id: &str| {
        host.execute_task(
            "warm",
            TaskRequest::new("log_flood", json!({"lines": lines})).with_id(id),
        )
    };
    let first = log(3, "first-logger").await.unwrap();
    let second = log(2, "second-logger").await.unwrap();
    assert_eq!(
        second.usage.instance_prior_tasks,
        first.usage.instance_prior_tasks + 1
    );
    assert_eq!((first.usage.host_calls, second.usage.host_calls), (3, 2));
    let text = logs.text();
    let lines_of = |id: &str| text.lines().filter(|l| l.contains(id)).count();
    assert!(lines_of("second-logger") >= 2, "{text}");
    assert!(lines_of("first-logger") >= 3, "{text}");
}

/// A request outside the contract ends the instance's life: a credential
/// out of scope, here. A credential in scope is granted to each task on
/// its own record, under its own task id.
#[tokio::test]
async fn an_instance_that_asked_for_more_than_its_contract_is_not_reused() {
    let host = TestHost::new()
        .secret("thief", "api_key", "value")
        .secret("thief", "root_password", "hunter2")
        .component(
            guests::EGRESS,
            ServiceContract::builder("thief")
                .proxy_only(Vec::<String>::new())
                .scoped_credential("api_key")
                .tasks_per_instance(100),
        )
        .memory_sink()
        .build()
        .await;
    let steal = |name: &str, id: &str| {
        host.execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({ "name": name })).with_id(id),
        )
    };
    let one = steal("api_key", "grant-1").await.unwrap();
    let two = steal("api_key", "grant-2").await.unwrap();
    assert_eq!(two.usage.instance_prior_tasks, 1);
    assert_eq!(one.output, two.output);
    let grants: Vec<String> = host
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::CredentialAccess {
                task_id, allowed, ..
            } if allowed => Some(task_id),
            _ => None,
        })
        .collect();
    assert_eq!(grants, strings(&["grant-1", "grant-2"]));
    let refused = steal("root_password", "over").await.unwrap();
    assert_eq!(refused.usage.security_violations, 1);
    assert_eq!(refused.usage.instance_prior_tasks, 2);
    let after = steal("api_key", "after").await.unwrap();
    assert_eq!(after.usage.instance_prior_tasks, 0);
}

/// A Python swarm on a warm instance answers as on a fresh one; a failed
/// task (an uncaught exception) ends its instance.
#[tokio::test]
async fn a_warm_python_instance_answers_as_a_fresh_one() {
    let cache = root().join("target/tmp/languages-cache");
    let contract = |id: &str, tasks: u32| {
        ServiceContract::builder(id)
            .max_memory_mb(64)
            .tasks_per_instance(tasks)
    };
    let host = TestHost::new()
        .config(|c| c.with_cache_dir(cache))
        .component(guests::HELLO_PY, contract("fresh", 1))
        .component(guests::HELLO_PY, contract("warm", 10))
        .build()
        .await;
    let hello = |swarm: &'static str, name: &str| {
        host.execute_task(swarm, TaskRequest::new("hello", json!({ "name": name })))
    };
    for (n, name) in ["ada", "grace", "edsger"].into_iter().enumerate() {
        let fresh = hello("fresh", name).await.unwrap();
        let warm = hello("warm", name).await.unwrap();
        assert_eq!(fresh.output, warm.output);
        assert_eq!(
            warm.output["greeting"],
            Value::from(format!("Hello, {name}!"))
        );
        assert_eq!(warm.usage.instance_prior_tasks, n as u32);
    }
    let failed = host
        .execute_task("warm", TaskRequest::new("fail", json!({})))
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.usage.instance_prior_tasks, 3);
    assert_eq!(
        hello("warm", "x").await.unwrap().usage.instance_prior_tasks,
        0
    );
}
