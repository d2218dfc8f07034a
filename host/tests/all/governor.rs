//! The governor's throttle seen from outside (`docs/governor.md`): a swarm
//! whose circuit opened is refused with 503 `circuit_open` and a
//! `Retry-After`; the decision is in the audit log, `/metrics` and the
//! status page; and every series the shipped alerting rules
//! (`docs/alerts/chassis.rules.yml`) read is one `chassis serve` exports.

use serde_json::Value;

use crate::common::{Server, root, scratch};

/// The `chassis_*` names the alerting rules read.
fn names_the_rules_read() -> Vec<String> {
    let rules = std::fs::read_to_string(root().join("docs/alerts/chassis.rules.yml")).unwrap();
    let mut names: Vec<String> = rules
        .match_indices("chassis_")
        .map(|(at, _)| {
            rules[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn an_open_circuit_is_503_with_retry_after_and_shows_everywhere() {
    let dir = scratch("circuit");
    let audit = dir.join("audit.jsonl");
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!("[audit]\npath = {audit:?}\nfsync = \"always\"\n"),
    )
    .unwrap();
    let contract = dir.join("flaky.toml");
    std::fs::write(
        &contract,
        format!(
            "swarm_id = \"flaky\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_concurrent_tasks = 4\n\
             [throttle]\ncircuit_failures = 2\ncool_down_seconds = 30\n\
             [budget]\ntasks = 1000\n",
            root().join("target/swarms/hog.wasm"),
        ),
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        contract.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();
    let task = |task_type: &'static str| {
        c.post(server.url("/v1/swarms/flaky/tasks"))
            .body(format!(
                r#"{{"task_type": "{task_type}", "payload": {{"rounds": 10}}}}"#
            ))
            .send()
    };
    for _ in 0..2 {
        let answer = task("fail").await.unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "failed", "{body}");
    }
    let refused = task("burn").await.unwrap();
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["kind"], "circuit_open", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("its circuit is open after 2 failures"),
        "{body}"
    );

    let swarm: Value = serde_json::from_str(
        &c.get(server.url("/v1/swarms/flaky"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let throttle = &swarm["usage"]["throttle"];
    assert_eq!(
        (
            &throttle["circuit"],
            &throttle["concurrency"],
            &throttle["max_concurrency"]
        ),
        (&Value::from("open"), &Value::from(1), &Value::from(4)),
        "{swarm}"
    );

    let metrics = crate::common::metrics(&server).await;
    for line in [
        "chassis_circuit_open{swarm=\"flaky\"} 1",
        "chassis_concurrency_limit{swarm=\"flaky\"} 1",
        "chassis_circuit_openings_total{swarm=\"flaky\"} 1",
        "chassis_audit_log_up 1",
        "chassis_tasks_total{swarm=\"flaky\",outcome=\"circuit_open\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    // Every series the alerting rules read is exported (promtool's unit
    // tests, run by `cargo xtask test`, use the same names and labels).
    let names = names_the_rules_read();
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "the alerting rules read {name}, which /metrics does not export:\n{metrics}"
        );
    }

    // The status page shows the open circuit (in a real browser).
    if let Some(browser) = crate::common::browser::Browser::find(&dir) {
        let url = server.url("/");
        let dom = tokio::task::spawn_blocking(move || browser.dom(&url, 5000))
            .await
            .unwrap();
        let line = crate::common::browser::element(&dom, "div", "data-circuit=\"open\"");
        assert!(
            line.contains("circuit open") && line.contains("1 opening, probe in"),
            "{line}"
        );
        let throttled =
            crate::common::browser::element(&dom, "div", "data-throttle=\"concurrency\"");
        assert!(throttled.contains("to 1 of 4 slots"), "{throttled}");
    }

    // The decisions are audit records.
    drop(server);
    let records = chassis::audit::events(&audit).unwrap();
    let opened = records.iter().find_map(|r| match &r.event {
        chassis::Event::CircuitChanged {
            state,
            reason,
            cool_down_seconds,
            ..
        } => Some((state.clone(), reason.clone(), *cool_down_seconds)),
        _ => None,
    });
    assert_eq!(
        opened,
        Some((
            "open".to_string(),
            "2 of its tasks failed in a row".to_string(),
            Some(30.0)
        ))
    );
    assert!(records.iter().any(|r| matches!(
        &r.event,
        chassis::Event::ConcurrencyChanged { from: 4, to: 1, .. }
    )));
}
