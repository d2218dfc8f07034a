//! Tasks addressed to a capability (`docs/governor.md`): the governor
//! chooses among the loaded swarms that declare it and serve the task
//! type, leaving out the quarantined, those under their selection
//! threshold and those out of budget; the draw follows reputation and a
//! seed repeats it; a refusal says why each candidate was left out.

use chassis::{ChassisConfig, Error, ErrorKind, RouteError, RoutingConfig, TaskRequest};
use chassis_tests::{TestHost, guests};
use serde_json::json;

/// hello-world as `id`, declaring `demo:hello`, with `more` TOML after.
fn hello(id: &str, more: &str) -> String {
    format!(
        "swarm_id = \"{id}\"\ncapabilities = [\"demo:hello\"]\n\
         [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n{more}"
    )
}

/// A host whose draws start from `seed`, recording events.
fn seeded(seed: u64) -> TestHost {
    TestHost::new().memory_sink().config(|c| ChassisConfig {
        routing: RoutingConfig {
            seed: Some(seed),
            ..Default::default()
        },
        ..c
    })
}

#[tokio::test]
async fn only_eligible_swarms_are_chosen_and_a_refusal_says_why() {
    let chassis = seeded(1)
        .component(guests::HELLO_WORLD, hello("quarantined", ""))
        .component(
            guests::HELLO_WORLD,
            hello("unproven", "[reputation]\nselection_threshold = 0.9\n"),
        )
        .component(guests::HELLO_WORLD, hello("spent", "[budget]\ntasks = 1\n"))
        .component(guests::HELLO_WORLD, hello("chosen", ""))
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"other-tasks\"\ncapabilities = [\"demo:hello\"]\n",
        )
        .build()
        .await;
    chassis.quarantine("quarantined", "test").unwrap();
    chassis
        .execute_task("spent", TaskRequest::new("hello", json!({"name": "x"})))
        .await
        .unwrap();
    for i in 0..30 {
        let outcome = chassis
            .execute_capability(
                "demo:hello",
                TaskRequest::new("hello", json!({"name": format!("n{i}")})),
            )
            .await
            .unwrap();
        assert_eq!(outcome.swarm_id, "chosen");
        assert_eq!(outcome.output["greeting"], format!("Hello, n{i}!"));
    }
    // Every choice is on record.
    let routed = chassis
        .events()
        .into_iter()
        .filter(
            |e| matches!(e, chassis::Event::TaskRouted { swarm_id, .. } if swarm_id == "chosen"),
        )
        .count();
    assert_eq!(routed, 30);

    // A task type no declaring swarm serves, and an unknown capability.
    let e = chassis.route("demo:hello", "no_such_task").unwrap_err();
    assert!(
        matches!(&e, Error::Route(RouteError::NotServed { declared_by, .. }) if declared_by.len() == 5),
        "{e}"
    );
    assert_eq!(
        (e.kind(), e.http_status()),
        (ErrorKind::NoCapableSwarm, 404)
    );
    let e = chassis.route("demo:nobody", "hello").unwrap_err();
    assert!(
        e.to_string()
            .contains("no loaded swarm declares capability \"demo:nobody\"")
    );

    // With the last one out too, none is eligible, and each says why.
    chassis.quarantine("chosen", "test").unwrap();
    let e = chassis.route("demo:hello", "hello").unwrap_err();
    assert_eq!(
        (e.kind(), e.http_status()),
        (ErrorKind::NoEligibleSwarm, 503)
    );
    let text = e.to_string();
    for why in [
        "quarantined: quarantined",
        "unproven: reputation 0.500 is under its selection threshold 0.900",
        "spent: its budget for the period is spent",
        "chosen: quarantined",
    ] {
        assert!(text.contains(why), "{text} lacks {why:?}");
    }
}

/// Among eligible swarms with free slots the draw is weighted by score,
/// and the same seed makes the same choices.
#[tokio::test]
async fn choices_follow_the_scores_and_repeat_under_a_seed() {
    let build = |seed| async move {
        seeded(seed)
            .component(
                guests::HELLO_WORLD,
                hello("high", "[reputation]\ninitial_score = 0.9\n"),
            )
            .component(
                guests::HELLO_WORLD,
                hello("low", "[reputation]\ninitial_score = 0.6\n"),
            )
            .build()
            .await
    };
    let choices = |chassis: &chassis::Chassis| -> Vec<String> {
        (0..2000)
            .map(|_| chassis.route("demo:hello", "hello").unwrap().swarm_id)
            .collect()
    };
    let (a, b) = (build(7).await, build(7).await);
    let first = choices(&a);
    assert_eq!(first, choices(&b), "the same seed chose differently");
    let high = first.iter().filter(|s| *s == "high").count() as f64 / 2000.0;
    assert!(
        (0.57..0.63).contains(&high),
        "high chosen {high:.3} of the time, not 0.6"
    );
    assert_ne!(first, choices(&build(8).await.chassis));
}

/// A swarm whose reputation falls under its selection threshold stops
/// being chosen, and is chosen again once its own tasks have brought its
/// score back over it.
#[tokio::test]
async fn a_failing_swarm_stops_being_chosen_and_is_chosen_again_after_it_recovers() {
    let misbehave = |id: &str| {
        format!(
            "swarm_id = \"{id}\"\ncapabilities = [\"testing:burn\"]\n\
             [resource_limits]\nmax_memory_mb = 16\ntask_timeout_seconds = 10\n\
             [reputation]\nselection_threshold = 0.45\nmax_failure_rate_percent = 100\n"
        )
    };
    let chassis = seeded(3)
        .component(guests::MISBEHAVE, misbehave("steady"))
        .component(guests::MISBEHAVE, misbehave("failing"))
        .build()
        .await;
    let score = |id: &str| chassis.slo_report(id).unwrap().reputation.score;
    let burn = || TaskRequest::new("burn", json!({"rounds": 1000}));
    let chosen = |n: usize| {
        let chassis = chassis.chassis.clone();
        async move {
            let mut names = Vec::new();
            for _ in 0..n {
                let outcome = chassis
                    .execute_capability("testing:burn", burn())
                    .await
                    .unwrap();
                names.push(outcome.swarm_id);
            }
            names
        }
    };
    assert!(chosen(40).await.iter().any(|s| s == "failing"));
    // Memory-limit hits sink its score under 0.45.
    let mut hits = 0;
    while score("failing") >= 0.45 {
        let e = chassis
            .execute_task("failing", TaskRequest::new("memory_bomb", json!({})))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Memory);
        hits += 1;
        assert!(hits < 50, "the score stays at {}", score("failing"));
    }
    assert!(
        chosen(40).await.iter().all(|s| s == "steady"),
        "a swarm under its threshold was chosen"
    );
    // Its own good tasks, addressed to it by name, bring it back.
    let mut good = 0;
    while score("failing") < 0.45 {
        chassis.execute_task("failing", burn()).await.unwrap();
        good += 1;
        assert!(good < 500, "the score stays at {}", score("failing"));
    }
    assert!(chosen(40).await.iter().any(|s| s == "failing"));
}
