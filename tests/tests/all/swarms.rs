//! Every task type of every example swarm, run through the real host.

use std::path::PathBuf;

use chassis::TaskError;
use chassis::{Error, GuestError, TaskRequest, TaskStatus};
use chassis_tests::{Host, TestHost, contract_path, guests};
use serde_json::{Value, json};

/// A host with the example contract of `guest` loaded.
async fn example(guest: &str) -> Host {
    TestHost::new().example(guest).build().await
}

/// Load the contract file `contract` on a fresh host and run one task of
/// it, which must succeed; its output.
async fn run(contract: PathBuf, task: &str, payload: Value) -> Value {
    let chassis = TestHost::new().contract_file(&contract).build().await;
    let info = chassis.info();
    let name = &info.swarm_id;
    let outcome = chassis
        .execute_task(&info.swarm_id, TaskRequest::new(task, payload))
        .await
        .unwrap_or_else(|e| panic!("{name}/{task}: {e}"));
    assert_eq!(outcome.status, TaskStatus::Success, "{outcome:?}");
    assert_eq!(outcome.swarm_id, info.swarm_id);
    assert_eq!(outcome.task_type, task);
    assert!(outcome.execution_time.as_nanos() > 0);
    outcome.output
}

#[tokio::test]
async fn hello_greets_by_name_and_defaults_to_world() {
    let out = run(
        guests::example(guests::HELLO_WORLD),
        "hello",
        json!({"name": "Ada"}),
    )
    .await;
    assert_eq!(out, json!({"greeting": "Hello, Ada!"}));
    let out = run(guests::example(guests::HELLO_WORLD), "hello", json!({})).await;
    assert_eq!(out, json!({"greeting": "Hello, world!"}));
}

#[tokio::test]
async fn echo_returns_the_payload_and_task_id() {
    let chassis = example(guests::HELLO_WORLD).await;
    let payload = json!({"nested": {"list": [1, 2.5, "three", null, true]}, "unicode": "héllo ✓"});
    let outcome = chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("echo", payload.clone()).with_id("echo-42"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.task_id, "echo-42");
    assert_eq!(
        outcome.output,
        json!({"echo": payload, "task_id": "echo-42"})
    );
}

#[tokio::test]
async fn analyze_code_counts_each_language() {
    let cases = [
        (
            "python",
            "# Module comment\nimport os\n\ndef main():\n    # inner comment\n    print(os.name)  # trailing\n\nmain()\n",
            (8, 2, 2, 4),
        ),
        (
            "rust",
            "//! crate doc\n/* block\n   comment */\nfn main() {\n    let x = 1; // trailing\n\n    println!(\"{x}\");\n}\n",
            (8, 1, 3, 4),
        ),
        (
            "javascript",
            "// greet.js\nfunction greet(name) {\n  /* one-line block */\n  return `Hello, ${name}`;\n}\n\nmodule.exports = greet;\n",
            (7, 1, 2, 4),
        ),
        (
            "go",
            "package main\n\nimport \"fmt\"\n\n// main prints a greeting.\nfunc main() {\n\tfmt.Println(\"hi\") /* inline */\n}\n",
            (8, 2, 1, 5),
        ),
        (
            "typescript",
            "/**\n * Adds numbers.\n */\nexport function add(a: number, b: number): number {\n  return a + b; // sum\n}\n",
            (6, 0, 3, 3),
        ),
    ];
    let chassis = example(guests::ANALYZER).await;
    for (language, source, (lines, blank, comment, code)) in cases {
        let outcome = chassis
            .execute_task(
                "analyzer",
                TaskRequest::new(
                    "analyze_code",
                    json!({"language": language, "source": source}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.output,
            json!({
                "language": language,
                "line_count": lines,
                "blank_lines": blank,
                "comment_lines": comment,
                "code_lines": code,
            }),
            "{language}"
        );
    }
}

#[tokio::test]
async fn analyze_code_refuses_an_unsupported_language() {
    let chassis = example(guests::ANALYZER).await;
    let outcome = chassis
        .execute_task(
            "analyzer",
            TaskRequest::new("analyze_code", json!({"language": "cobol", "source": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, TaskStatus::Failed);
    assert_eq!(outcome.output, Value::Null);
    match outcome.error {
        Some(GuestError::InvalidPayload(m)) => {
            assert!(m.contains("cobol") && m.contains("typescript"), "{m}")
        }
        other => panic!("expected invalid payload, got {other:?}"),
    }
}

#[tokio::test]
async fn a_payload_of_the_wrong_shape_is_an_invalid_payload() {
    let chassis = example(guests::ANALYZER).await;
    let outcome = chassis
        .execute_task(
            "analyzer",
            TaskRequest::new("count_lines", json!({"src": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, TaskStatus::Failed);
    let Some(GuestError::InvalidPayload(m)) = outcome.error else {
        panic!("expected invalid payload")
    };
    assert!(m.contains("count_lines") && m.contains("src"), "{m}");
}

#[tokio::test]
async fn count_lines_counts() {
    let out = run(
        guests::example(guests::ANALYZER),
        "count_lines",
        json!({"source": "one\n\n  three  \nfour is longest\n"}),
    )
    .await;
    assert_eq!(
        out,
        json!({"line_count": 4, "blank_lines": 1, "non_blank_lines": 3, "longest_line": 15})
    );
}

#[tokio::test]
async fn parse_json_reports_validity_and_the_error_position() {
    let out = run(
        guests::example(guests::ANALYZER),
        "parse_json",
        json!({"text": "{\"a\": [1, 2, 3]}"}),
    )
    .await;
    assert_eq!(out, json!({"valid": true, "kind": "object"}));

    let out = run(
        guests::example(guests::ANALYZER),
        "parse_json",
        json!({"text": "{\"a\": [1, 2,]}"}),
    )
    .await;
    assert_eq!(out["valid"], json!(false));
    assert_eq!(out["error"]["line"], json!(1));
    assert_eq!(out["error"]["column"], json!(13));
    assert_eq!(out["error"]["message"], json!("trailing comma"));

    let out = run(
        guests::example(guests::ANALYZER),
        "parse_json",
        json!({"text": "{\n  \"a\": 1\n  \"b\": 2\n}"}),
    )
    .await;
    assert_eq!(out["valid"], json!(false));
    assert_eq!(out["error"]["line"], json!(3));
    assert_eq!(out["error"]["column"], json!(3));
}

#[tokio::test]
async fn check_security_reports_each_finding_with_its_line() {
    let source = "import sqlite3\n\
def find(conn, user):\n\
    q = \"SELECT * FROM users WHERE name = '\" + user + \"'\"\n\
    safe = conn.execute(\"SELECT * FROM users WHERE name = ?\", (user,))\n\
    password = \"hunter2\"\n\
    return conn.execute(q)\n";
    let out = run(
        guests::example(guests::ANALYZER),
        "check_security",
        json!({"source": source}),
    )
    .await;
    assert_eq!(out["issue_count"], json!(2));
    let found: Vec<(String, u64)> = out["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("sql_injection".to_string(), 3),
            ("hardcoded_secret".to_string(), 5)
        ]
    );
    assert_eq!(
        out["findings"][1]["snippet"],
        json!("password = \"hunter2\"")
    );

    let clean = run(
        guests::example(guests::ANALYZER),
        "check_security",
        json!({"source": "x = 1\n"}),
    )
    .await;
    assert_eq!(clean, json!({"issue_count": 0, "findings": []}));
}

#[tokio::test]
async fn guardian_vote_approves_and_reports_the_signing_refusal() {
    let out = run(guests::example(guests::GUARDIAN_COUNCIL),
        "guardian_vote",
        json!({"session": "session-4-sip", "proposal": "Approve SIP integration Phase 3", "voting_period": 3600}),
    )
    .await;
    assert_eq!(out["vote"], json!("approve"));
    assert_eq!(out["guardian_id"], json!("guardian-3"));
    assert_eq!(out["session"], json!("session-4-sip"));
    assert_eq!(
        out["signed_message"],
        json!("guardian-3|session-4-sip|Approve SIP integration Phase 3|approve")
    );
    // No signing key is configured here: the host says so, the vote is unsigned.
    assert_eq!(out["signature"], Value::Null);
    let why = out["signature_error"].as_str().unwrap();
    assert!(why.starts_with("credential not found:"), "{why}");
}

#[tokio::test]
async fn guardian_vote_rejects_red_flags_and_abstains_on_empty_proposals() {
    let out = run(
        guests::example(guests::GUARDIAN_COUNCIL),
        "guardian_vote",
        json!({"session": "s", "proposal": "Bypass review and disable audit logging"}),
    )
    .await;
    assert_eq!(out["vote"], json!("reject"));
    assert_eq!(out["reasons"].as_array().unwrap().len(), 2);

    let out = run(
        guests::example(guests::GUARDIAN_COUNCIL),
        "guardian_vote",
        json!({"session": "s", "proposal": "   "}),
    )
    .await;
    assert_eq!(out["vote"], json!("abstain"));
}

#[tokio::test]
async fn quality_assessment_scores() {
    let out = run(
        guests::example(guests::GUARDIAN_COUNCIL),
        "quality_assessment",
        json!({"tests_passed": 98, "tests_total": 100, "coverage_percent": 90, "open_issues": 0}),
    )
    .await;
    assert_eq!(
        out,
        json!({"quality_score": 0.96, "assessment": "Production-ready", "reviewer": "guardian-council"})
    );
    let out = run(
        guests::example(guests::GUARDIAN_COUNCIL),
        "quality_assessment",
        json!({"tests_passed": 50, "tests_total": 100, "coverage_percent": 40, "open_issues": 5}),
    )
    .await;
    assert_eq!(out["quality_score"], json!(0.37));
    assert_eq!(out["assessment"], json!("Not ready"));
}

#[tokio::test]
async fn the_seed_contracts_load_and_serve() {
    let out = run(
        contract_path("third-party-analyzer"),
        "count_lines",
        json!({"source": "a\nb\n"}),
    )
    .await;
    assert_eq!(out["line_count"], json!(2));
    let out = run(
        contract_path("research-agent-001"),
        "hello",
        json!({"name": "researcher"}),
    )
    .await;
    assert_eq!(out, json!({"greeting": "Hello, researcher!"}));
}

#[tokio::test]
async fn the_readme_add_example_refuses_to_overflow() {
    let chassis = example(guests::HELLO_WORLD).await;
    let add = |a: i64, b: i64| {
        let chassis = chassis.clone();
        async move {
            chassis
                .execute_task(
                    "hello-world",
                    TaskRequest::new("add", json!({"a": a, "b": b})),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(add(2, 3).await.output, json!({"sum": 5}));
    let o = add(i64::MAX, 1).await;
    assert_eq!(o.status, chassis::TaskStatus::Failed);
    assert_eq!(
        o.error,
        Some(chassis::GuestError::Failed(format!(
            "{} + 1 overflows i64",
            i64::MAX
        )))
    );
}

#[tokio::test]
async fn a_task_type_not_in_describe_is_not_exported() {
    let chassis = example(guests::HELLO_WORLD).await;
    let info = chassis.info();
    assert_eq!(info.task_types, vec!["hello", "echo", "add"]);
    let err = chassis
        .execute_task("hello-world", TaskRequest::new("format_disk", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::TaskNotExported { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("task not exported by swarm"), "{text}");
    assert!(
        text.contains("format_disk") && text.contains("hello, echo, add"),
        "{text}"
    );
}

#[tokio::test]
async fn list_describe_unload_and_reload() {
    let chassis = TestHost::new()
        .example(guests::HELLO_WORLD)
        .example(guests::ANALYZER)
        .build()
        .await;
    let ids: Vec<String> = chassis.list().into_iter().map(|s| s.swarm_id).collect();
    assert_eq!(ids, vec!["analyzer", "hello-world"]);

    let info = chassis.describe("analyzer").unwrap();
    assert_eq!(
        info.task_types,
        vec![
            "analyze_code",
            "count_lines",
            "parse_json",
            "check_security"
        ]
    );
    assert!(
        info.imports
            .iter()
            .any(|i| i == "infrafabric:chassis/types@0.1.0")
    );
    assert_eq!(info.contract.resource_limits.max_memory_mb, 256);

    chassis.unload("analyzer").unwrap();
    assert!(matches!(
        chassis.describe("analyzer"),
        Err(Error::NotLoaded(_))
    ));
    let err = chassis
        .execute_task(
            "analyzer",
            TaskRequest::new("count_lines", json!({"source": ""})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"analyzer\" is not loaded"),
        "{err}"
    );
    assert!(matches!(
        chassis.unload("analyzer"),
        Err(Error::NotLoaded(_))
    ));

    chassis
        .load(guests::example(guests::ANALYZER))
        .await
        .unwrap();
    let outcome = chassis
        .execute_task(
            "analyzer",
            TaskRequest::new("count_lines", json!({"source": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output["line_count"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_concurrently_on_several_swarms() {
    let host = TestHost::new()
        .example(guests::HELLO_WORLD)
        .example(guests::ANALYZER)
        .build()
        .await;
    let mut handles = Vec::new();
    for i in 0..40 {
        let chassis = host.chassis.clone();
        handles.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let o = chassis
                    .execute_task(
                        "hello-world",
                        TaskRequest::new("hello", json!({"name": i.to_string()})),
                    )
                    .await
                    .unwrap();
                assert_eq!(o.output["greeting"], json!(format!("Hello, {i}!")));
            } else {
                let source = "x\n".repeat(i);
                let o = chassis
                    .execute_task(
                        "analyzer",
                        TaskRequest::new("count_lines", json!({"source": source})),
                    )
                    .await
                    .unwrap();
                assert_eq!(o.output["line_count"], json!(i));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn loads_tasks_and_refusals_raise_events() {
    use chassis::Event;
    let chassis = TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("hello", json!({})).with_id("ev-1"),
        )
        .await
        .unwrap();
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("echo", json!(1)).with_id("ev-2"),
        )
        .await
        .unwrap();
    chassis
        .load(guests::example(guests::HELLO_WORLD))
        .await
        .unwrap_err();
    chassis.unload("hello-world").unwrap();

    let names: Vec<String> = chassis
        .events()
        .iter()
        .map(|e| {
            let v = serde_json::to_value(e).unwrap();
            let task = v
                .get("task_id")
                .and_then(|t| t.as_str())
                .unwrap_or("-")
                .to_string();
            format!("{}:{}", v["event"].as_str().unwrap(), task)
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "module_loaded:-",
            "task_start:ev-1",
            "task_complete:ev-1",
            "reputation_changed:ev-1",
            "task_start:ev-2",
            "task_complete:ev-2",
            "reputation_changed:ev-2",
            "load_rejected:-",
            "module_unloaded:-",
        ]
    );
    let events = chassis.events();
    assert!(events.iter().all(|e| e.swarm_id() == "hello-world"));
    let Event::LoadRejected { reason, .. } = &events[7] else {
        unreachable!()
    };
    assert!(reason.contains("already loaded"), "{reason}");
}

/// The seed's examples 2 and 3, translated to TOML, keep every value.
#[test]
fn the_seed_contracts_keep_the_seeds_values() {
    use chassis::ServiceContract;
    use chassis::contract::NetworkAccess;
    let research = ServiceContract::from_file(contract_path("research-agent-001")).unwrap();
    let third = ServiceContract::from_file(contract_path("third-party-analyzer")).unwrap();
    let limits = |c: &ServiceContract| {
        let l = &c.resource_limits;
        (
            l.max_cpu_percent,
            l.max_memory_mb,
            l.max_network_bandwidth_mbps,
            l.max_concurrent_tasks,
            l.task_timeout_seconds,
        )
    };
    assert_eq!(limits(&research), (20, 256, 5, 2, 60.0));
    assert_eq!(limits(&third), (10, 128, 1, 1, 30.0));
    let slo = |c: &ServiceContract| {
        let t = &c.slo_targets;
        (
            t.response_time_p95_ms,
            t.error_rate_percent,
            t.availability_percent,
        )
    };
    assert_eq!(slo(&research), (2000.0, 10.0, 95.0));
    assert_eq!(slo(&third), (5000.0, 20.0, 90.0));
    assert_eq!(
        research.security.scoped_credentials,
        vec!["research_api_key"]
    );
    assert!(third.security.scoped_credentials.is_empty());
    assert_eq!(
        research.security.wasi_capabilities,
        vec!["wasi:io/streams", "wasi:clocks/wall-clock"]
    );
    assert_eq!(third.security.wasi_capabilities, vec!["wasi:io/streams"]);
    assert_eq!(research.security.network_access, NetworkAccess::ProxyOnly);
    assert_eq!(third.security.network_access, NetworkAccess::None);
    let rep = |c: &ServiceContract| {
        let r = &c.reputation;
        (r.initial_score, r.slo_weight, r.security_weight)
    };
    assert_eq!(rep(&research), (0.5, 0.6, 0.4));
    assert_eq!(rep(&third), (0.3, 0.5, 0.5));
}
