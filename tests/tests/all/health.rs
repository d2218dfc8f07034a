//! SLOs, reputation and quarantine through the real host.

use chassis::{Error, Event, TaskRequest};
use chassis_tests::{TestHost, contract, guests, scratch_dir};
use serde_json::json;

#[tokio::test]
async fn slo_figures_and_a_violation_on_the_edge() {
    let chassis = TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    for i in 0..5 {
        chassis
            .execute_task(
                "hello-world",
                TaskRequest::new("hello", json!({"name": i.to_string()})),
            )
            .await
            .unwrap();
    }
    // Two guest errors (an unknown payload field): the error rate target (1 %) is missed once.
    for _ in 0..2 {
        let o = chassis
            .execute_task(
                "hello-world",
                TaskRequest::new("hello", json!({"nom": "x"})),
            )
            .await
            .unwrap();
        assert!(!o.is_success());
    }
    // A caller's mistake does not count.
    chassis
        .execute_task("hello-world", TaskRequest::new("nope", json!({})))
        .await
        .unwrap_err();
    let report = chassis.slo_report("hello-world").unwrap();
    let s = &report.slo;
    assert_eq!((s.tasks, s.failed), (7, 2));
    assert!((s.error_rate_percent - 200.0 / 7.0).abs() < 1e-9, "{s:?}");
    assert_eq!(s.availability_percent, 100.0, "guest errors are answers");
    assert!(
        s.p50_ms > 0.0 && s.p50_ms <= s.p95_ms && s.p95_ms <= s.p99_ms,
        "{s:?}"
    );
    let error_rate = s
        .compliance
        .iter()
        .find(|c| c.metric == "error_rate")
        .unwrap();
    assert!(!error_rate.compliant);
    let violations: Vec<Event> = chassis
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::SloViolation { .. }))
        .collect();
    assert_eq!(violations.len(), 1, "once, on the edge: {violations:?}");
    let Event::SloViolation { metric, target, .. } = &violations[0] else {
        unreachable!()
    };
    assert_eq!((metric.as_str(), *target), ("error_rate", 1.0));
    // The reputation follows: the missed error rate costs SLO compliance
    // (0.4 + 0.3 · 0.5 + 0.3 = 0.85), not enough to quarantine.
    let rep = &report.reputation;
    assert!((rep.slo_compliance - 0.85).abs() < 1e-9, "{rep:?}");
    assert!(!rep.quarantined, "{rep:?}");
}

#[tokio::test]
async fn a_task_without_an_answer_takes_the_swarm_down_until_the_next_answer() {
    let chassis = TestHost::new()
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"m\"\n[slo_targets]\navailability_percent = 99.0\n",
        )
        .build()
        .await;
    chassis
        .execute_task("m", TaskRequest::new("trap", json!({})))
        .await
        .unwrap_err();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    chassis
        .execute_task("m", TaskRequest::new("burn", json!({"rounds": 10})))
        .await
        .unwrap();
    let s = chassis.slo_report("m").unwrap().slo;
    assert!(s.availability_percent < 99.0, "{s:?}");
    assert!(s.availability_percent > 0.0, "{s:?}");
}

#[tokio::test]
async fn security_violations_quarantine_a_swarm_until_it_is_released() {
    let chassis = TestHost::new()
        .memory_sink()
        .component(
            guests::EGRESS,
            "swarm_id = \"thief\"\n[security]\nscoped_credentials = [\"api_key\"]\nnetwork_access = \"proxy_only\"\n\
             [reputation]\ninitial_score = 0.3\nslo_weight = 0.5\nsecurity_weight = 0.5\nquarantine_threshold = 0.25\n",
        )
        .build()
        .await;
    // One request outside its scope: 0.3 · 0.8 = 0.24 < 0.25.
    chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "root"})),
        )
        .await
        .unwrap();
    let rep = chassis.slo_report("thief").unwrap().reputation;
    assert!(rep.quarantined, "{rep:?}");
    let err = chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "api_key"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Quarantined { .. }), "{err}");
    assert!(
        err.to_string().contains("is quarantined") && err.to_string().contains("release"),
        "{err}"
    );

    let released = chassis.release("thief").unwrap();
    assert!(!released.quarantined);
    assert_eq!(released.score, 0.3);
    let o = chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "api_key"})),
        )
        .await
        .unwrap();
    assert!(o.is_success());
    // Releasing a swarm that is not quarantined changes nothing.
    let before = chassis.slo_report("thief").unwrap().reputation;
    assert_eq!(chassis.release("thief").unwrap(), before);

    let names: Vec<String> = chassis
        .events()
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|n| n == "quarantined" || n == "released")
        .collect();
    assert_eq!(names, vec!["quarantined", "released"]);
}

#[tokio::test]
async fn a_swarm_that_always_traps_is_quarantined_within_its_failure_window() {
    let chassis = TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"trapper\"\n[reputation]\nfailure_window = 10\nmax_failure_rate_percent = 50\n",
        )
        .build()
        .await;
    let mut quarantined_at = None;
    for i in 1..=30 {
        // A healthy swarm runs beside it all along, and is never quarantined.
        let o = chassis
            .execute_task(
                "hello-world",
                TaskRequest::new("hello", json!({"name": "h"})),
            )
            .await
            .unwrap();
        assert!(o.is_success());
        match chassis
            .execute_task("trapper", TaskRequest::new("trap", json!({})))
            .await
        {
            Err(Error::Trap { .. }) => {}
            Err(Error::Quarantined { reason, .. }) => {
                assert!(
                    reason.contains("10 of its latest 10 tasks failed"),
                    "{reason}"
                );
                quarantined_at = Some(i);
                break;
            }
            other => panic!("task {i}: {other:?}"),
        }
    }
    // Ten traps fill the window; the eleventh task is refused.
    assert_eq!(quarantined_at, Some(11));
    let rep = chassis.slo_report("trapper").unwrap().reputation;
    assert!(
        rep.quarantined && rep.score > rep.threshold,
        "the score alone would not: {rep:?}"
    );
    assert!(chassis.events().iter().any(|e| matches!(e,
        Event::Quarantined { swarm_id, reason, .. } if swarm_id == "trapper" && reason.contains("max_failure_rate_percent"))));
    let healthy = chassis.slo_report("hello-world").unwrap().reputation;
    assert!(
        !healthy.quarantined && healthy.recent_failures == 0,
        "{healthy:?}"
    );
    // Callers' mistakes do not count against a swarm.
    for _ in 0..30 {
        let o = chassis
            .execute_task("hello-world", TaskRequest::new("add", json!({"a": "x"})))
            .await
            .unwrap();
        assert_eq!(
            o.error.as_ref().map(|e| e.kind().as_str()),
            Some("invalid_payload")
        );
    }
    assert!(
        !chassis
            .slo_report("hello-world")
            .unwrap()
            .reputation
            .quarantined
    );
}

#[tokio::test]
async fn metrics_are_rendered_for_prometheus() {
    let metrics = std::sync::Arc::new(chassis::metrics::Metrics::new());
    let sink = metrics.clone();
    let chassis = TestHost::new()
        .config(move |c| c.with_event_sink(sink))
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    chassis
        .execute_task("hello-world", TaskRequest::new("hello", json!({})))
        .await
        .unwrap();
    let text = metrics.render(&chassis);
    for expected in [
        "# TYPE chassis_reputation_score gauge",
        "# TYPE chassis_tasks counter",
        "# TYPE chassis_task_duration_seconds histogram",
        "chassis_tasks_total{swarm=\"hello-world\",outcome=\"success\"} 1",
        "chassis_task_duration_seconds_count{swarm=\"hello-world\"} 1",
        "chassis_quarantined{swarm=\"hello-world\"} 0",
        "chassis_slo_compliant{swarm=\"hello-world\"} 1",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test]
async fn a_report_rebuilt_from_the_audit_log_matches_the_live_one() {
    use chassis::audit::FsyncPolicy;
    let path = scratch_dir("health-replay").join("audit.jsonl");
    let text = "swarm_id = \"thief\"\n[security]\nscoped_credentials = [\"api_key\"]\nnetwork_access = \"proxy_only\"\n";
    let chassis = TestHost::new()
        .audit(&path, FsyncPolicy::Never)
        .component(guests::EGRESS, text)
        .build()
        .await;
    for name in ["api_key", "root", "api_key", "other", "api_key"] {
        chassis
            .execute_task(
                "thief",
                TaskRequest::new("steal_credential", json!({ "name": name })),
            )
            .await
            .unwrap();
    }
    chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"bad": 1})),
        )
        .await
        .unwrap();
    let live = chassis.slo_report("thief").unwrap();
    chassis.audit_log().close().unwrap();
    let records = chassis::audit::events(&path).unwrap();
    let replayed = chassis::report::replay(&records, &contract(text));
    assert_eq!(
        (replayed.slo.tasks, replayed.slo.failed),
        (live.slo.tasks, live.slo.failed)
    );
    assert_eq!((live.slo.tasks, live.slo.failed), (6, 1));
    assert!((replayed.slo.error_rate_percent - live.slo.error_rate_percent).abs() < 1e-9);
    assert!((replayed.slo.p95_ms - live.slo.p95_ms).abs() <= live.slo.p95_ms * 0.01 + 0.01);
    assert!(
        (replayed.reputation.score - live.reputation.score).abs() < 1e-9,
        "{replayed:?} vs {live:?}"
    );
    assert!(
        (replayed.reputation.security_compliance - 0.64).abs() < 1e-9,
        "two violations"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}
