//! Text a guest produces — error messages, log lines, stdout and stderr —
//! is hostile input: escaped so it cannot rewrite a terminal or forge a
//! line, bounded so it cannot bloat the audit log, and cleaned of the
//! swarm's own secret values before the host shows or stores it. Each
//! hostile task runs beside a well-behaved swarm, which must stay correct.

use chassis::TaskError;
use chassis::audit::{FsyncPolicy, verify};
use chassis::{Chassis, Error, Event, GuestError, TaskOutcome, TaskRequest, TaskStatus};
use chassis_tests::{Host, TestHost, TestServer, capture_logs, greet, guests, scratch_dir};
use serde_json::{Value, json};

const MISBEHAVE: &str = "swarm_id = \"misbehave\"
[resource_limits]
max_memory_mb = 64
task_timeout_seconds = 20
[security]
wasi_capabilities = [\"wasi:io/streams\"]
";

const SECRET: &str = "sk-live-0123456789abcdef";

/// A host with hello-world (the bystander), recording events in memory and
/// in an audit log of its own, `name`.
fn host(name: &str) -> TestHost {
    let audit = scratch_dir(&format!("guest-text-{name}")).join("audit.jsonl");
    TestHost::new()
        .memory_sink()
        .audit(audit, FsyncPolicy::Never)
        .example(guests::HELLO_WORLD)
}

/// Run a hostile task and a bystander's greetings at the same time.
async fn beside(
    chassis: &Chassis,
    swarm: &str,
    task: &str,
    payload: Value,
) -> Result<TaskOutcome, Error> {
    let hostile = chassis.execute_task(swarm, TaskRequest::new(task, payload));
    let bystander = async {
        for i in 0..5 {
            greet(chassis, &format!("by-{i}")).await;
            tokio::task::yield_now().await;
        }
    };
    let (result, ()) = tokio::join!(hostile, bystander);
    result
}

/// The text and records of the host's audit log, after closing it.
fn records(host: &Host) -> (String, Vec<Value>) {
    host.audit_log().close().unwrap();
    verify(host.audit_path()).unwrap();
    let text = chassis_tests::audit_text(host.audit_path());
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, records)
}

/// No character that moves the cursor, breaks a line or reorders text.
#[track_caller]
fn assert_inert(text: &str) {
    assert!(
        !text.chars().any(chassis::text::is_unsafe),
        "unsafe character in {text:?}"
    );
}

#[tokio::test]
async fn forged_terminal_text_is_escaped_in_errors_logs_and_the_audit_log() {
    let (logs, _guard) = capture_logs();
    let chassis = host("forge")
        .component(guests::MISBEHAVE, MISBEHAVE)
        .build()
        .await;
    let o = beside(&chassis, "misbehave", "forge", json!({}))
        .await
        .unwrap();
    assert_eq!(o.status, TaskStatus::Failed);
    let Some(GuestError::Failed(message)) = &o.error else {
        panic!("{o:?}");
    };
    assert_inert(message);
    assert!(
        message.starts_with("boom\\r\\u{1b}[2K\\u{1b}[32mOK"),
        "{message}"
    );
    assert!(message.contains("\\u{2028}\\u{202e}"), "{message}");
    assert_inert(&o.error.as_ref().unwrap().to_string());
    // The guest's log line: one line, escaped.
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("[misbehave] boom"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_inert(line);
    assert!(line.contains("\\u{202e}txet desrever"), "{line}");
    // The task's audit record holds the escaped text.
    let (_, records) = records(&chassis);
    let failed = records
        .iter()
        .find(|r| r["operation"] == "task_failed" && r["swarm_id"] == "misbehave")
        .unwrap();
    let error = failed["params"]["error"].as_str().unwrap();
    assert_inert(error);
    assert_eq!(failed["params"]["guest_error"], "failed");
}

#[tokio::test]
async fn a_huge_guest_error_is_cut_in_the_outcome_and_the_audit_record() {
    let chassis = host("huge-error")
        .component(guests::MISBEHAVE, MISBEHAVE)
        .build()
        .await;
    let o = beside(&chassis, "misbehave", "huge_error", json!({"mib": 3}))
        .await
        .unwrap();
    let message = o.error.as_ref().unwrap().message();
    let cap = chassis::caps::MAX_ERROR_MESSAGE_BYTES;
    assert!(message.len() <= cap + 64, "{} bytes", message.len());
    assert!(
        message.ends_with("[truncated, 3145728 bytes]"),
        "{}",
        &message[cap - 8..]
    );
    let (text, _) = records(&chassis);
    let longest = text.lines().map(str::len).max().unwrap();
    assert!(longest < 2 * cap, "an audit record of {longest} bytes");
}

#[tokio::test]
async fn a_trap_keeps_only_a_bounded_stderr_tail_when_stderr_is_not_forwarded() {
    // No wasi:io/streams: stderr is captured for the trap message only.
    let chassis = host("stderr-tail")
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"misbehave\"\n[resource_limits]\nmax_memory_mb = 64\ntask_timeout_seconds = 20\n",
        )
        .build()
        .await;
    let err = beside(&chassis, "misbehave", "stderr_flood", json!({"mib": 4}))
        .await
        .unwrap_err();
    let Error::Task(TaskError::Trap { ref message, .. }) = err else {
        panic!("{err}");
    };
    assert!(message.contains("last words before the abort"), "{message}");
    assert!(message.len() < 4096, "{} bytes", message.len());
    chassis.audit_log().close().unwrap();
}

#[tokio::test]
async fn a_swarm_that_leaks_its_secret_is_redacted_and_counted() {
    let (logs, _guard) = capture_logs();
    let chassis = host("leaky")
        .secret("leaky", "api_key", SECRET)
        .component(
            guests::LEAKY,
            "swarm_id = \"leaky\"\n[resource_limits]\ntask_timeout_seconds = 20\n\
             [security]\nscoped_credentials = [\"api_key\"]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [reputation]\ninitial_score = 1.0\nquarantine_threshold = 0.05\n",
        )
        .build()
        .await;
    let hex = hex::encode(SECRET);
    let leaked = |text: &str| {
        text.contains(SECRET)
            || text.contains(&hex)
            || text.contains(&hex.to_uppercase())
            || text.contains("c2stbGl2ZS0wMTIzNDU2Nzg5YWJjZGVm")
    };
    // Log lines (raw, hex, HEX, base64) and stdout/stderr.
    for task in ["log", "print"] {
        let o = beside(&chassis, "leaky", task, json!({})).await.unwrap();
        assert_eq!(o.status, TaskStatus::Success, "{o:?}");
        assert_eq!(o.usage.security_violations, 1, "{task}: {:?}", o.usage);
    }
    // An error message holding it (inside a longer base64 text).
    let o = beside(&chassis, "leaky", "fail", json!({})).await.unwrap();
    let message = o.error.as_ref().unwrap().message().to_string();
    assert!(
        message.contains("[REDACTED:api_key]") && !leaked(&message),
        "{message}"
    );
    // A panic: the trap message carries the stderr tail.
    let err = beside(&chassis, "leaky", "panic", json!({}))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("[REDACTED:api_key]") && !leaked(&text),
        "{text}"
    );
    let logged = logs.text();
    assert!(!leaked(&logged), "{logged}");
    assert!(
        logged.matches("[REDACTED:api_key]").count() >= 6,
        "{logged}"
    );
    // Every leak is a security event naming the key and where it was found.
    let channels: Vec<(String, bool)> = chassis
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::SecretRedacted {
                swarm_id,
                keys,
                channel,
                security_violation,
                ..
            } if swarm_id == "leaky" && keys == &["api_key".to_string()] => {
                Some((channel.clone(), *security_violation))
            }
            _ => None,
        })
        .collect();
    for channel in ["log", "stdout", "stderr", "error", "trap_message"] {
        assert!(
            channels.iter().any(|(c, _)| c == channel),
            "{channel}: {channels:?}"
        );
    }
    // One violation per task, whatever the number of leaks in it.
    assert_eq!(
        channels.iter().filter(|(_, v)| *v).count(),
        4,
        "{channels:?}"
    );
    let reputation = chassis.slo_report("leaky").unwrap().reputation;
    assert!(reputation.security_compliance < 0.5, "{reputation:?}");
    let (text, records) = records(&chassis);
    assert!(!leaked(&text), "a secret reached the audit log");
    assert!(
        records
            .iter()
            .any(|r| r["operation"] == "secret_redacted"
                && r["params"]["security_violation"] == true)
    );
}

/// The import-fuzz guest under a contract that scopes `api_token` and
/// allows the test server under `/v1/`.
fn import_fuzz(name: &str, server: &TestServer) -> TestHost {
    host(name).secret("import-fuzz", "api_token", SECRET).component(
        guests::IMPORT_FUZZ,
        format!(
            "swarm_id = \"import-fuzz\"\n[resource_limits]\ntask_timeout_seconds = 20\n\
             max_api_calls_per_second = 1000\n\
             [security]\nscoped_credentials = [\"api_token\"]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             network_access = \"proxy_only\"\nallowed_endpoints = [\"http://127.0.0.1:{}/v1/\"]\n\
             [reputation]\nquarantine_threshold = 0.0\nmax_failure_rate_percent = 100\n",
            server.port
        ),
    )
}

#[tokio::test]
async fn a_secret_or_a_huge_name_in_import_arguments_is_redacted_and_bounded_in_events() {
    let server = TestServer::start();
    let chassis = import_fuzz("import-arguments", &server).build().await;
    let url = format!("http://127.0.0.1:{}/v1/", server.port);
    // A bad header name of 16,000 bytes (under the proxy's header cap),
    // each second byte a control character.
    let huge = "x\u{1}".repeat(8000);
    let calls = [
        ("credential_name", json!({"get": SECRET})),
        ("credential_name", json!({"sign": format!("{SECRET}\n")})),
        (
            "url",
            json!({"fetch": {"method": "GET", "url": format!("{url}{SECRET}/x")}}),
        ),
        (
            "url",
            json!({"fetch": {"method": "GET", "url": format!("{SECRET}://h/")}}),
        ),
        (
            "http_method",
            json!({"fetch": {"method": SECRET, "url": format!("{url}hello")}}),
        ),
        (
            "http_method",
            json!({"fetch": {"method": format!("{SECRET}\n"), "url": format!("{url}hello")}}),
        ),
        (
            "http_header",
            json!({"fetch": {"method": "GET", "url": format!("{url}hello"), "headers": [[format!("{SECRET}:"), "v"]]}}),
        ),
        (
            "",
            json!({"fetch": {"method": "GET", "url": format!("{url}hello"), "headers": [[huge, "v"]]}}),
        ),
    ];
    let leaked = |text: &str| text.contains(SECRET) || text.contains(&hex::encode(SECRET));
    for (channel, call) in calls {
        let before = chassis.events().len();
        let o = beside(&chassis, "import-fuzz", "call", call.clone())
            .await
            .unwrap();
        assert_eq!(o.status, TaskStatus::Success, "{call}: {o:?}");
        let events = &chassis.events()[before..];
        let text = serde_json::to_string(events).unwrap();
        assert!(!leaked(&text), "{call}: {text}");
        assert_inert(&text);
        if !channel.is_empty() {
            assert!(
                events.iter().any(|e| matches!(e,
                    Event::SecretRedacted { channel: c, security_violation: true, .. } if c == channel)),
                "{call}: no {channel} redaction in {text}"
            );
        }
        // Every reason and name an event keeps is bounded.
        for event in events {
            let (Event::HttpProxy {
                reason: Some(text), ..
            }
            | Event::CredentialAccess { key: text, .. }) = event
            else {
                continue;
            };
            assert!(text.len() <= 4096, "{call}: {} bytes: {text}", text.len());
        }
    }
    let (text, _) = records(&chassis);
    assert!(!leaked(&text), "a secret reached the audit log");
    let longest = text.lines().map(str::len).max().unwrap();
    assert!(longest < 8192, "an audit record of {longest} bytes");
}

#[tokio::test]
async fn the_import_fuzz_guest_makes_the_same_calls_for_a_seed() {
    let server = TestServer::start();
    let chassis = import_fuzz("import-fuzz-seed", &server).build().await;
    let payload = json!({
        "seed": 7,
        "calls": 64,
        "allowed": [format!("http://127.0.0.1:{}/v1/", server.port)],
    });
    let mut summaries = Vec::new();
    for _ in 0..2 {
        let o = beside(&chassis, "import-fuzz", "fuzz", payload.clone())
            .await
            .unwrap();
        assert_eq!(o.status, TaskStatus::Success, "{o:?}");
        let calls: Vec<&Value> = ["log", "credentials", "http"]
            .iter()
            .map(|import| &o.output[import]["calls"])
            .collect();
        assert!(calls.iter().all(|c| c.as_u64() > Some(0)), "{}", o.output);
        summaries.push(serde_json::to_string(&calls).unwrap());
    }
    assert_eq!(summaries[0], summaries[1]);
    records(&chassis);
}
