//! The audit log through the real host: a hash-chained file that catches
//! every kind of tampering, survives a crash mid-write, cannot be forged
//! through guest-controlled text, and holds exactly one terminal record per
//! task under concurrent load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis::TaskError;
use chassis::audit::{AuditError, AuditLog, FsyncPolicy, verify};
use chassis::{Error, TaskRequest};
use chassis_tests::{
    TestHost, TestServer, audit_segment, audit_text, component, contract, guests, scratch_dir,
};
use serde_json::{Value, json};

/// A path for a new audit log, in a fresh directory of its own.
fn temp_log(name: &str) -> PathBuf {
    scratch_dir(&format!("audit-{name}")).join("audit.jsonl")
}

fn lines(path: &Path) -> Vec<String> {
    audit_text(path).lines().map(str::to_string).collect()
}

/// Write `lines` as the log's one segment.
fn write_lines(path: &Path, lines: &[String]) {
    let segments = chassis::audit::segments(path).unwrap();
    assert_eq!(segments.len(), 1, "a log of one segment");
    std::fs::write(&segments[0].path, lines.join("\n") + "\n").unwrap();
}

/// A log of a short session: load, three tasks (one refused), unload.
async fn session(path: &Path) -> u64 {
    let chassis = TestHost::new()
        .audit(path, FsyncPolicy::Always)
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("hello", json!({"name": "a"})).with_id("t1"),
        )
        .await
        .unwrap();
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("echo", json!([1])).with_id("t2"),
        )
        .await
        .unwrap();
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("nope", json!({})).with_id("t3"),
        )
        .await
        .unwrap_err();
    chassis.unload("hello-world").unwrap();
    chassis.audit_log().close().unwrap();
    verify(path).unwrap().records
}

#[tokio::test]
async fn a_session_is_recorded_in_order_and_verifies() {
    let path = temp_log("session");
    let count = session(&path).await;
    let records: Vec<Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(count as usize, records.len());
    let ops: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["task_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("module_loaded", "-"),
            ("task_start", "t1"),
            ("task_complete", "t1"),
            ("reputation_changed", "t1"),
            ("task_start", "t2"),
            ("task_complete", "t2"),
            ("reputation_changed", "t2"),
            ("task_failed", "t3"),
            ("module_unloaded", "-"),
            // The checkpoint written at close: its marker, the swarm's state.
            ("checkpoint", "-"),
            ("checkpoint_swarm", "-"),
        ]
    );
    let first = &records[0];
    assert_eq!(first["seq"], json!(1));
    assert_eq!(first["component"], json!("IF.chassis"));
    assert_eq!(first["swarm_id"], json!("hello-world"));
    assert_eq!(first["prev_hash"], json!(chassis::audit::GENESIS));
    assert_eq!(records[1]["prev_hash"], first["hash"]);
    let failed = records
        .iter()
        .find(|r| r["operation"] == "task_failed")
        .unwrap();
    assert_eq!(failed["params"]["kind"], json!("task_not_exported"));
    // Reputation changes follow the task that caused them.
    let rep = records
        .iter()
        .position(|r| r["operation"] == "reputation_changed")
        .unwrap();
    assert_eq!(records[rep - 1]["operation"], json!("task_complete"));
}

#[tokio::test]
async fn every_kind_of_tampering_is_caught() {
    let path = temp_log("tamper");
    session(&path).await;
    let original = lines(&path);

    let check = |name: &str, tampered: Vec<String>, line: usize, why: &str| {
        // A single-file log, as verify reads it.
        let t = temp_log(name);
        std::fs::write(&t, tampered.join("\n") + "\n").unwrap();
        match verify(&t) {
            Err(AuditError::Bad {
                line: l, reason, ..
            }) => {
                assert_eq!(l, line, "{name}: {reason}");
                assert!(reason.contains(why), "{name}: {reason}");
            }
            other => panic!("{name}: tampering not caught: {other:?}"),
        }
    };

    // An edited field (still valid JSON, hash left as it was).
    let mut edited = original.clone();
    edited[2] = edited[2].replace("\"t1\"", "\"t9\"");
    assert_ne!(edited[2], original[2]);
    check("edited", edited, 3, "a field was edited");

    // A deleted line.
    let mut deleted = original.clone();
    deleted.remove(3);
    check("deleted", deleted, 4, "sequence number");

    // A duplicated line.
    let mut duplicated = original.clone();
    duplicated.insert(3, original[2].clone());
    check("duplicated", duplicated, 4, "sequence number");

    // Two lines swapped.
    let mut reordered = original.clone();
    reordered.swap(3, 4);
    check("reordered", reordered, 4, "sequence number");

    // An inserted, forged record with the right sequence number but not chained.
    let mut inserted = original.clone();
    let mut forged: Value = serde_json::from_str(&original[3]).unwrap();
    forged["operation"] = json!("task_complete");
    forged["prev_hash"] = json!(chassis::audit::GENESIS);
    forged["hash"] = json!(chassis::audit::record_hash(&forged));
    inserted[3] = forged.to_string();
    check("inserted", inserted, 4, "chain is broken");

    // A record really inserted: well formed and chained to the line before
    // it, so the line after it is the one that breaks.
    let mut inserted = original.clone();
    let mut forged: Value = serde_json::from_str(&original[3]).unwrap();
    let before: Value = serde_json::from_str(&original[2]).unwrap();
    forged["operation"] = json!("released");
    forged["prev_hash"] = before["hash"].clone();
    forged.as_object_mut().unwrap().remove("hash");
    forged["hash"] = json!(chassis::audit::record_hash(&forged));
    inserted.insert(3, forged.to_string());
    check("inserted-chained", inserted, 5, "sequence number");

    // Not JSON at all.
    let mut garbage = original.clone();
    garbage[1] = "{oops".to_string();
    check("garbage", garbage, 2, "not a JSON record");
}

#[tokio::test]
async fn guest_controlled_text_cannot_forge_or_break_the_chain() {
    let path = temp_log("forge");
    let chassis = TestHost::new()
        .audit(&path, FsyncPolicy::Never)
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    // An id with a line break is refused before anything is recorded.
    let refused = chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("echo", json!({})).with_id("x\"}\n{\"seq\":3}\n"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            chassis::Error::Task(chassis::TaskError::InvalidTaskId { .. })
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("\\u{a}"), "{refused}");
    // One with quotes and braces is kept, escaped.
    let evil_id = "x\"}{\"seq\":3,\"operation\":\"module_loaded\",\"hash\":\"0\"}";
    chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("echo", json!({})).with_id(evil_id),
        )
        .await
        .unwrap();
    chassis.audit_log().close().unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(
        v.records as usize,
        lines(&path).len(),
        "one line per record"
    );
    let with_id: Vec<Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["task_id"] == json!(evil_id))
        .collect();
    // task_start, task_complete and the reputation change it made, with the
    // id kept, escaped.
    assert_eq!(with_id.len(), 3);
    assert!(
        !lines(&path)
            .iter()
            .any(|l| l.starts_with("{\"seq\":3,\"operation\""))
    );
}

#[tokio::test]
async fn a_crash_mid_write_loses_only_the_partial_record() {
    let path = temp_log("crash");
    let before = session(&path).await;
    // A crash leaves half a record at the end.
    let segment = audit_segment(&path);
    let mut text = std::fs::read_to_string(&segment).unwrap();
    text.push_str("{\"seq\":8,\"ts\":\"2026-11-21T");
    std::fs::write(&segment, &text).unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(v.records, before);
    assert!(v.partial_tail_bytes > 0);
    // Reopening drops the partial line and continues the chain.
    let after = session(&path).await;
    assert_eq!(after, before * 2);
    assert_eq!(verify(&path).unwrap().partial_tail_bytes, 0);
}

#[tokio::test]
async fn a_log_that_does_not_verify_is_not_appended_to() {
    let path = temp_log("refuse");
    session(&path).await;
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    let err = AuditLog::open(&path, FsyncPolicy::Always).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_has_exactly_one_terminal_record_under_load() {
    let path = temp_log("load");
    let host = TestHost::new()
        .audit(&path, FsyncPolicy::EveryN(64))
        .example(guests::HELLO_WORLD)
        .example(guests::ANALYZER)
        .component(
            guests::MISBEHAVE,
            // It fails every task on purpose; the failure guard (tested in
            // health.rs) would refuse it part way, depending on scheduling.
            "swarm_id = \"misbehave\"\n[resource_limits]\nmax_concurrent_tasks = 2\nmax_memory_mb = 16\ntask_timeout_seconds = 5\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
        )
        .build()
        .await;
    let total = 1200;
    let mut handles = Vec::new();
    for i in 0..total {
        let chassis = host.chassis.clone();
        handles.push(tokio::spawn(async move {
            let id = format!("load-{i}");
            let (swarm, task, payload) = match i % 6 {
                0 | 1 => ("hello-world", "hello", json!({"name": i.to_string()})),
                2 => ("analyzer", "count_lines", json!({"source": "a\nb\n"})),
                3 => ("misbehave", "trap", json!({})),
                4 => ("misbehave", "panic", json!({"message": "load"})),
                _ => ("hello-world", "no_such_task", json!({})),
            };
            let _ = chassis
                .execute_task(swarm, TaskRequest::new(task, payload).with_id(id))
                .await;
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    host.audit_log().close().unwrap();
    let v = verify(&path).unwrap();
    let mut terminal = std::collections::HashMap::<String, u32>::new();
    for line in lines(&path) {
        let r: Value = serde_json::from_str(&line).unwrap();
        let op = r["operation"].as_str().unwrap();
        if op == "task_complete" || op == "task_failed" {
            *terminal
                .entry(r["task_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(terminal.len(), total, "every task has a terminal record");
    assert!(terminal.values().all(|n| *n == 1), "and only one");
    assert!(v.records as usize > total * 2);
}

#[tokio::test]
async fn the_audit_log_is_an_event_sink_shared_by_clones() {
    // Arc<AuditLog> coerces to the sink type the config takes.
    let path = temp_log("sink");
    let log = AuditLog::open(
        &path,
        FsyncPolicy::Interval(std::time::Duration::from_millis(5)),
    )
    .unwrap();
    let sink: Arc<dyn chassis::EventSink> = log.clone();
    let host = TestHost::new()
        .config(|c| c.with_event_sink(sink))
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    drop(host);
    log.close().unwrap();
    // module_loaded, and the checkpoint written at close (its marker and
    // the swarm's state).
    let ops: Vec<String> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["operation"].to_string())
        .collect();
    assert_eq!(
        ops,
        [
            "\"module_loaded\"",
            "\"checkpoint\"",
            "\"checkpoint_swarm\""
        ]
    );
    assert_eq!(verify(&path).unwrap().records, 3);
}

/// Every kind of event the host raises, through real components, ends up in
/// the file as its own operation, the file verifies, guest-controlled text
/// forges nothing, and no secret value is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_event_reaches_the_file_and_no_secret_does() {
    const SECRET: &str = "s3cr3t-VALUE-never-logged";
    let path = temp_log("every-event");
    let server = TestServer::start();
    // module_loaded (hello-world), then load_rejected (bad bytes; a
    // contract that does not parse).
    let host = TestHost::new()
        .secret("thief", "api_key", SECRET)
        .audit(&path, FsyncPolicy::Always)
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    let chassis = &host.chassis;
    chassis
        .load_bytes(b"not wasm", contract("swarm_id = \"junk\""))
        .await
        .unwrap_err();
    let bad_contract = path.with_extension("bad.toml");
    std::fs::write(&bad_contract, "swarm_id = 7\n").unwrap();
    chassis.load(&bad_contract).await.unwrap_err();

    // Credentials and the proxy: allowed and denied, with a secret injected.
    let endpoint = format!("http://127.0.0.1:{}/v1/", server.port);
    chassis
        .load_bytes(
            &component(guests::EGRESS),
            contract(&format!(
                "swarm_id = \"thief\"\n[security]\nscoped_credentials = [\"api_key\"]\n\
                 network_access = \"proxy_only\"\nallowed_endpoints = [\"{endpoint}\"]\n\
                 [reputation]\nquarantine_threshold = 0.3\n"
            )),
        )
        .await
        .unwrap();
    let run = |swarm: &'static str, task: &'static str, payload: Value| {
        let chassis = chassis.clone();
        async move {
            chassis
                .execute_task(swarm, TaskRequest::new(task, payload))
                .await
        }
    };
    let got = run("thief", "steal_credential", json!({"name": "api_key"})).await;
    assert_eq!(got.unwrap().output, json!({"got": SECRET}));
    let sent = run(
        "thief",
        "send_secret",
        json!({"name": "api_key", "url": format!("{endpoint}hello?token={SECRET}")}),
    )
    .await
    .unwrap();
    assert_eq!(sent.output["status"], json!(200));
    // A URL written to forge a record.
    let evil_url = "http://127.0.0.1:1/\"}\n{\"seq\":1,\"operation\":\"released\"}";
    run("thief", "exfiltrate", json!({ "url": evil_url }))
        .await
        .unwrap();
    // Denied credentials until the swarm is quarantined, then released.
    let mut denials = 0;
    loop {
        match run("thief", "steal_credential", json!({"name": "root"})).await {
            Ok(_) => denials += 1,
            Err(Error::Task(TaskError::Quarantined { .. })) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(denials < 20, "never quarantined");
    }
    chassis.release("thief").unwrap();

    // Limits: a timeout, a log flood, and a panic whose message tries to
    // forge a record.
    chassis
        .load_bytes(
            &component(guests::MISBEHAVE),
            contract(
                "swarm_id = \"misbehave\"\n[resource_limits]\ntask_timeout_seconds = 1\n\
                 max_api_calls_per_second = 50\n[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
            ),
        )
        .await
        .unwrap();
    run("misbehave", "spin", json!({})).await.unwrap_err();
    run("misbehave", "log_flood", json!({"lines": 1_000_000}))
        .await
        .unwrap_err();
    let evil_panic = "\"}\n{\"seq\":2,\"operation\":\"module_loaded\",\"hash\":\"00\"}\n";
    run("misbehave", "panic", json!({ "message": evil_panic }))
        .await
        .unwrap_err();
    chassis.unload("misbehave").unwrap();

    host.audit_log().close().unwrap();
    let v = verify(&path).unwrap();
    let text = audit_text(&path);
    assert_eq!(
        v.records as usize,
        text.lines().count(),
        "one line per record"
    );
    assert!(
        !text.contains(SECRET),
        "a secret value reached the audit log"
    );
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let operations: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    for op in [
        "module_loaded",
        "load_rejected",
        "module_unloaded",
        "task_start",
        "task_complete",
        "task_failed",
        "resource_limit_exceeded",
        "rate_limited",
        "credential_access_allowed",
        "credential_access_denied",
        "http_proxy",
        "http_proxy_denied",
        "slo_violation",
        "reputation_changed",
        "quarantined",
        "released",
    ] {
        assert!(operations.contains(op), "no {op} record in {operations:?}");
    }
    // The forged text is kept, escaped, inside the records it belongs to.
    let denied = records
        .iter()
        .find(|r| r["operation"] == "http_proxy_denied")
        .unwrap();
    assert!(
        denied["params"]["url"]
            .as_str()
            .unwrap()
            .contains("released"),
        "{denied}"
    );
    let panicked = records
        .iter()
        .find(|r| r["operation"] == "task_failed" && r["params"]["kind"] == "trap")
        .unwrap();
    assert!(
        panicked["params"]["error"]
            .as_str()
            .unwrap()
            .contains("module_loaded")
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["operation"] == "module_loaded")
            .count(),
        3,
        "hello-world, thief and misbehave; none forged"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["operation"] == "released")
            .count(),
        1
    );
    // A score moved by a task names that task.
    for r in records
        .iter()
        .filter(|r| r["operation"] == "reputation_changed" || r["operation"] == "quarantined")
    {
        assert!(
            r["task_id"]
                .as_str()
                .is_some_and(|t| t.starts_with("task-")),
            "{r}"
        );
    }
    let limit = records
        .iter()
        .find(|r| r["operation"] == "resource_limit_exceeded")
        .unwrap();
    assert_eq!(limit["params"]["limit"], json!("timeout"));
    let rejected: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "load_rejected")
        .collect();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected[1]["params"]["reason"]
            .as_str()
            .unwrap()
            .contains("bad.toml"),
        "{}",
        rejected[1]
    );

    // With its audit log gone, the host refuses to run anything unrecorded.
    let err = run("hello-world", "hello", json!({"name": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AuditUnavailable { .. }) && err.to_string().contains("is closed"),
        "{err}"
    );
    let err = chassis
        .load(guests::example(guests::ANALYZER))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuditUnavailable { .. }), "{err}");
    assert_eq!(verify(&path).unwrap().records, v.records);
    std::fs::remove_file(&bad_contract).ok();
}

#[tokio::test]
async fn a_log_has_one_writer_at_a_time() {
    let path = temp_log("one-writer");
    let first = AuditLog::open(&path, FsyncPolicy::Never).unwrap();
    let err = AuditLog::open(&path, FsyncPolicy::Never).unwrap_err();
    assert!(matches!(err, AuditError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("open in another writer"), "{err}");
    first.close().unwrap();
    // Once closed, the next writer may continue the chain.
    AuditLog::open(&path, FsyncPolicy::Never)
        .unwrap()
        .close()
        .unwrap();
}
