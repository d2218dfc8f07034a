//! Replacing a loaded swarm with a new version (`Chassis::replace`): new
//! tasks go to the new version at once, a task already running finishes on
//! the old one, the swarm's health carries over, and a broken new version is
//! refused while the old one keeps serving.

use std::time::Duration;

use chassis::{Error, Event, TaskRequest};
use chassis::{LoadError, TaskError};
use chassis_tests::{Host, TestHost, component, contract, guests};
use serde_json::json;

/// One contract both versions fit: the bench probe (credentials, clocks)
/// and hello-world (stdout).
const SWAP: &str = "swarm_id = \"swap\"\n\
    [resource_limits]\nmax_concurrent_tasks = 4\n\
    [security]\nscoped_credentials = [\"bench_token\"]\n\
    wasi_capabilities = [\"wasi:io/streams\", \"wasi:clocks/monotonic-clock\", \"wasi:clocks/wall-clock\"]\n";

async fn probe_as_swap() -> Host {
    TestHost::new()
        .memory_sink()
        .component(guests::BENCH_PROBE, SWAP)
        .build()
        .await
}

async fn hello(chassis: &Host) -> serde_json::Value {
    chassis
        .execute_task("swap", TaskRequest::new("hello", json!({"name": "new"})))
        .await
        .unwrap()
        .output
}

#[tokio::test]
async fn new_tasks_go_to_the_new_version_while_a_running_task_finishes_on_the_old() {
    let chassis = probe_as_swap().await;
    let old = chassis.describe("swap").unwrap();
    let noop = chassis
        .execute_task("swap", TaskRequest::new("noop", json!({})))
        .await
        .unwrap();
    assert!(noop.is_success());

    // A task that holds the old version for a while.
    let running = {
        let chassis = (*chassis).clone();
        tokio::spawn(async move {
            chassis
                .execute_task("swap", TaskRequest::new("hold", json!({"ms": 1500})))
                .await
        })
    };
    while chassis.resource_usage("swap").unwrap().tasks_running == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let new = chassis
        .replace_bytes(&component(guests::HELLO_WORLD), contract(SWAP))
        .await
        .unwrap();
    assert_eq!(new.previous.as_ref().unwrap().digest, old.digest);
    let new = new.info;
    assert_eq!(new.task_types, ["hello", "echo", "add"]);
    assert_ne!(new.digest, old.digest);
    assert_eq!(new.digest.len(), 64);
    assert_eq!(chassis.describe("swap").unwrap().digest, new.digest);
    // The new version answers while the old one still runs its task.
    assert_eq!(hello(&chassis).await, json!({"greeting": "Hello, new!"}));
    assert_eq!(chassis.resource_usage("swap").unwrap().tasks_running, 1);

    let held = running.await.unwrap().unwrap();
    assert!(held.is_success(), "{held:?}");
    assert!(held.output["spins"].as_u64().unwrap() > 0);
    // The old version's task types are gone.
    let gone = chassis
        .execute_task("swap", TaskRequest::new("hold", json!({"ms": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, Error::Task(TaskError::TaskNotExported { .. })),
        "{gone:?}"
    );

    // One swarm across both versions: its SLO window counts every task
    // that ran (noop, hold, hello; the refused task type is not counted).
    let report = chassis.slo_report("swap").unwrap();
    assert_eq!(report.slo.tasks, 3, "{report:?}");
    let replaced: Vec<_> = chassis
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ModuleReplaced {
                swarm_id,
                digest,
                previous_digest,
                task_types,
                ..
            } => Some((swarm_id, digest, previous_digest, task_types)),
            _ => None,
        })
        .collect();
    assert_eq!(
        replaced,
        [(
            "swap".to_string(),
            new.digest.clone(),
            old.digest.clone(),
            new.task_types.clone()
        )]
    );
}

#[tokio::test]
async fn a_broken_new_version_is_refused_and_the_old_one_keeps_serving() {
    let chassis = probe_as_swap().await;
    let old = chassis.describe("swap").unwrap();
    let mut truncated = component(guests::HELLO_WORLD);
    truncated.truncate(truncated.len() / 2);
    let core_module = wat::parse_str("(module)").unwrap();
    let no_task_export = wat::parse_str("(component)").unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", truncated, SWAP),
        ("core module", core_module, SWAP),
        ("no task export", no_task_export, SWAP),
        // The probe imports credentials, which this contract does not grant.
        (
            "refused import",
            component(guests::BENCH_PROBE),
            "swarm_id = \"swap\"\n",
        ),
    ];
    for (case, bytes, text) in cases {
        let err = chassis
            .replace_bytes(&bytes, contract(text))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Load(LoadError::InvalidComponent { .. })
                    | Error::Load(LoadError::CoreModule { .. })
                    | Error::Load(LoadError::MissingTaskExport { .. })
                    | Error::Load(LoadError::ImportNotPermitted { .. })
            ),
            "{case}: {err:?}"
        );
        let now = chassis.describe("swap").unwrap();
        assert_eq!(now.digest, old.digest, "{case}");
        let o = chassis
            .execute_task("swap", TaskRequest::new("noop", json!({})))
            .await
            .unwrap();
        assert!(o.is_success(), "{case}: {o:?}");
    }
    let rejected = chassis
        .events()
        .iter()
        .filter(|e| matches!(e, Event::LoadRejected { swarm_id, .. } if swarm_id == "swap"))
        .count();
    assert_eq!(rejected, 4);
    assert!(
        !chassis
            .events()
            .iter()
            .any(|e| matches!(e, Event::ModuleReplaced { .. }))
    );
}

#[tokio::test]
async fn a_quarantined_swarm_stays_quarantined_across_a_replacement() {
    let chassis = probe_as_swap().await;
    let mut reputation = chassis.slo_report("swap").unwrap().reputation;
    reputation.quarantined = true;
    chassis.restore_reputation("swap", reputation).unwrap();
    let quarantined = |c: &Host| c.slo_report("swap").unwrap().reputation.quarantined;
    assert!(quarantined(&chassis));
    chassis
        .replace_bytes(&component(guests::HELLO_WORLD), contract(SWAP))
        .await
        .unwrap();
    assert!(quarantined(&chassis));
    let err = chassis
        .execute_task("swap", TaskRequest::new("hello", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::Quarantined { .. })),
        "{err:?}"
    );
    chassis.release("swap").unwrap();
    assert_eq!(hello(&chassis).await, json!({"greeting": "Hello, new!"}));
}

#[tokio::test]
async fn replace_loads_a_swarm_that_is_not_loaded() {
    let chassis = TestHost::new().memory_sink().build().await;
    let loaded = chassis
        .replace(guests::example(guests::HELLO_WORLD))
        .await
        .unwrap();
    assert!(loaded.previous.is_none());
    let info = loaded.info;
    assert_eq!(info.swarm_id, "hello-world");
    assert!(chassis.events().iter().any(
        |e| matches!(e, Event::ModuleLoaded { swarm_id, digest, .. } if swarm_id == "hello-world" && *digest == info.digest)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_unloaded_while_its_replacement_compiles_stays_unloaded() {
    let chassis = probe_as_swap().await;
    let replacing = {
        let chassis = (*chassis).clone();
        tokio::spawn(async move {
            // The analyzer takes a while to compile (no cache here).
            chassis
                .replace_bytes(
                    &component(guests::ANALYZER),
                    contract("swarm_id = \"swap\""),
                )
                .await
        })
    };
    // Started on the other worker at once; its compile takes far longer.
    tokio::time::sleep(Duration::from_millis(50)).await;
    chassis.unload("swap").unwrap();
    let err = replacing.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::ChangedWhileLoading(ref id)) if id == "swap"),
        "{err:?}"
    );
    assert!(matches!(chassis.describe("swap"), Err(Error::NotLoaded(_))));
}

/// A new version's reputation settings judge the record it inherits: one
/// that raises `quarantine_threshold` over the swarm's score quarantines it
/// at once (an event says so, and its tasks are refused), rather than at
/// its next task.
#[tokio::test]
async fn a_new_version_whose_threshold_is_over_the_score_is_quarantined_at_once() {
    let chassis = probe_as_swap().await;
    let strict = format!("{SWAP}[reputation]\nquarantine_threshold = 0.95\n");
    let score = chassis.slo_report("swap").unwrap().reputation.score;
    assert!(score < 0.95, "{score}");
    chassis
        .replace_bytes(&component(guests::BENCH_PROBE), contract(&strict))
        .await
        .unwrap();
    let report = chassis.slo_report("swap").unwrap();
    assert!(report.reputation.quarantined, "{report:?}");
    assert!(chassis.events().iter().any(|e| matches!(e,
        Event::Quarantined { swarm_id, reason, .. } if swarm_id == "swap" && reason.contains("quarantine_threshold"))));
    let refused = chassis
        .execute_task("swap", TaskRequest::new("noop", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Task(TaskError::Quarantined { .. })),
        "{refused}"
    );
}
