//! What a guest can see of the host: WASI with nothing behind it, scoped
//! logging, and typed denials from the credentials and HTTP proxy imports.

use chassis::TaskRequest;
use chassis_tests::{TestHost, capture_logs, guests};
use serde_json::{Value, json};

const PROBE_CONTRACT: &str = "swarm_id = \"probe\"\n[security]\nwasi_capabilities = [\
    \"wasi:io/streams\", \"wasi:clocks/wall-clock\", \"wasi:clocks/monotonic-clock\"]\n";

async fn probe(contract_text: &str, task: &str, payload: Value) -> Value {
    let chassis = TestHost::new()
        .component(guests::SANDBOX_PROBE, contract_text)
        .build()
        .await;
    let outcome = chassis
        .execute_task("probe", TaskRequest::new(task, payload))
        .await
        .unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    outcome.output
}

#[tokio::test]
async fn guests_see_no_environment_and_no_arguments() {
    let out = probe(PROBE_CONTRACT, "env", json!({})).await;
    assert_eq!(out, json!({"vars": [], "args": []}));
}

#[tokio::test]
async fn a_granted_wall_clock_is_the_real_one() {
    let out = probe(PROBE_CONTRACT, "clock", json!({})).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let seen = out["unix_seconds"].as_u64().unwrap();
    assert!(seen.abs_diff(now) < 60, "guest clock {seen}, host {now}");
}

#[tokio::test]
async fn stdout_and_stderr_go_to_the_scoped_log_when_streams_are_granted() {
    let (logs, _guard) = capture_logs();
    probe(
        PROBE_CONTRACT,
        "stdout",
        json!({"lines": ["first line", "second line"]}),
    )
    .await;
    let text = logs.text();
    assert!(
        text.contains("INFO") && text.contains("[probe] first line"),
        "{text}"
    );
    assert!(text.contains("[probe] second line"), "{text}");
    assert!(
        text.contains("WARN") && text.contains("[probe] err: first line"),
        "{text}"
    );
}

#[tokio::test]
async fn stdout_is_discarded_without_the_streams_capability() {
    let (logs, _guard) = capture_logs();
    let without_streams = PROBE_CONTRACT.replace("\"wasi:io/streams\", ", "");
    let out = probe(
        &without_streams,
        "stdout",
        json!({"lines": ["hidden line"]}),
    )
    .await;
    assert_eq!(out, json!({"printed": 1}));
    assert!(!logs.text().contains("hidden line"), "{}", logs.text());
}

#[tokio::test]
async fn the_log_import_goes_to_tracing_prefixed_with_the_swarm_id() {
    let (logs, _guard) = capture_logs();
    let chassis = TestHost::new().example(guests::HELLO_WORLD).build().await;
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("hello", json!({"name": "Log\nForger"})).with_id("t-log"),
        )
        .await
        .unwrap();
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("[hello-world] greeting"))
        .unwrap_or_else(|| panic!("no log line in {text}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("task=\"t-log\""), "{line}");
    // The newline in the guest's text is escaped, so it cannot start a forged line.
    assert!(line.contains("greeting Log\\nForger"), "{line}");
    assert!(!text.lines().any(|l| l.starts_with("Forger")), "{text}");
}

#[tokio::test]
async fn credential_and_proxy_calls_get_typed_errors() {
    let chassis = TestHost::new()
        .component(
            guests::EGRESS,
            "swarm_id = \"egress\"\n[security]\nscoped_credentials = [\"guardian_signing_key\"]\n\
             network_access = \"proxy_only\"\nallowed_endpoints = [\"http://127.0.0.1:9/\"]\n",
        )
        .build()
        .await;
    let out = chassis
        .execute_task(
            "egress",
            TaskRequest::new("steal_credential", json!({"name": "guardian_signing_key"})),
        )
        .await
        .unwrap()
        .output;
    // In scope, but this host holds no value for it.
    let refused = out["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("CredentialError::NotFound"),
        "{refused}"
    );
    assert!(out.get("got").is_none());

    let out = chassis
        .execute_task(
            "egress",
            TaskRequest::new("exfiltrate", json!({"url": "http://127.0.0.1:9/"})),
        )
        .await
        .unwrap()
        .output;
    // Allowed, but nothing listens on the discard port.
    let refused = out["refused"].as_str().unwrap();
    assert!(refused.starts_with("ProxyError::Network"), "{refused}");
}
