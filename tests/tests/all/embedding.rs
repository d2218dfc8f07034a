//! The embedder's API over real swarms: payloads and outputs as JSON text,
//! the typed call, one `match` on how a task ended, and log lines to an
//! embedder's sink instead of `tracing`.

use std::sync::{Arc, Mutex};

use chassis::TaskError;
use chassis::{Error, GuestErrorKind, GuestLine, GuestLogSink, TaskEnd, TaskOutcome, TaskRequest};
use chassis_tests::{Host, TestHost, guests};
use serde_json::json;

const PROBE: &str = "swarm_id = \"probe\"\n[security]\nwasi_capabilities = [\
    \"wasi:io/streams\", \"wasi:clocks/wall-clock\", \"wasi:clocks/monotonic-clock\"]\n";

/// A host with the sandbox probe loaded as `probe`: its `payload` task
/// answers the payload's text as the guest received it.
async fn probe() -> Host {
    TestHost::new()
        .component(guests::SANDBOX_PROBE, PROBE)
        .build()
        .await
}

#[tokio::test]
async fn a_payload_given_as_text_reaches_the_guest_unchanged() {
    let chassis = probe().await;
    // Spacing, key order, a duplicate key and number spellings that a
    // parse into a tree and a print would all change.
    let text = "{ \"b\" : 1.50,\n \"a\": [1e2, -0.0], \"b\": 2 }";
    let request = TaskRequest::from_text("payload", text).unwrap();
    assert_eq!(request.payload.as_str(), text);
    let o = chassis.execute_task("probe", request).await.unwrap();
    assert_eq!(o.output, json!({ "raw": text }));
    // Text that is not one JSON document is refused before any task.
    let err = TaskRequest::from_text("payload", "{\"a\": 1} trailing").unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
}

#[tokio::test]
async fn an_output_can_be_taken_as_text() {
    let chassis = probe().await;
    let request = TaskRequest::from_text("payload", "[1,2]").unwrap();
    let o = chassis.execute_task_text("probe", request).await.unwrap();
    assert!(o.is_success());
    // The guest's own text, not a re-print of a parsed tree.
    assert_eq!(o.output.get(), r#"{"raw":"[1,2]"}"#);
    let same = chassis
        .execute_task("probe", TaskRequest::from_text("payload", "[1,2]").unwrap())
        .await
        .unwrap();
    assert_eq!(same.output, json!({ "raw": "[1,2]" }));
}

/// `{"sum": n}`, typed.
type Sum = std::collections::BTreeMap<String, i64>;

#[tokio::test]
async fn a_typed_call_gives_the_output_or_one_error_for_every_other_ending() {
    let chassis = TestHost::new().example(guests::HELLO_WORLD).build().await;
    let sum: Sum = chassis
        .call("hello-world", "add", &json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum, Sum::from([("sum".to_string(), 5)]));
    // The swarm's own error.
    let err = chassis
        .call::<_, Sum>("hello-world", "add", &json!({"a": i64::MAX, "b": 1}))
        .await
        .unwrap_err();
    match &err {
        Error::Task(TaskError::Guest { error, .. }) => {
            assert_eq!(error.kind(), GuestErrorKind::Failed);
            assert!(error.message().contains("overflows i64"), "{err}");
        }
        other => panic!("expected the swarm's error, got {other:?}"),
    }
    // An output that is not the type asked for: the task succeeded.
    let err = chassis
        .call::<_, std::collections::BTreeMap<String, Vec<u8>>>(
            "hello-world",
            "hello",
            &json!({"name": "Ada"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Task(TaskError::InvalidOutput { reason, .. }) if reason.contains("not the type asked for")),
        "{err:?}"
    );
    // The host's refusal.
    let err = chassis
        .call::<_, Sum>("hello-world", "nope", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::TaskNotExported { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn one_match_tells_every_ending_apart() {
    let chassis = TestHost::new().example(guests::HELLO_WORLD).build().await;
    let run = |task: &'static str, payload: serde_json::Value| {
        let chassis = chassis.chassis.clone();
        async move {
            chassis
                .execute_task("hello-world", TaskRequest::new(task, payload))
                .await
        }
    };
    let ok = run("add", json!({"a": 1, "b": 1})).await;
    assert_eq!(TaskEnd::of(&ok), TaskEnd::Success);
    assert_eq!(
        ok.and_then(TaskOutcome::into_result).unwrap(),
        json!({"sum": 2})
    );
    let guest = run("add", json!({"a": "x"})).await;
    assert_eq!(
        TaskEnd::of(&guest),
        TaskEnd::GuestError(GuestErrorKind::InvalidPayload)
    );
    assert!(matches!(
        guest.and_then(TaskOutcome::into_result),
        Err(Error::Task(TaskError::Guest { .. }))
    ));
    let refused = run("nope", json!({})).await;
    assert_eq!(
        TaskEnd::of(&refused),
        TaskEnd::Host(chassis::ErrorKind::TaskNotExported)
    );
    // The names the audit log records map back to the same endings.
    assert_eq!(
        TaskEnd::from_names("guest_error", Some("invalid_payload")),
        Some(TaskEnd::GuestError(GuestErrorKind::InvalidPayload))
    );
    assert_eq!(
        TaskEnd::from_names("timeout", None),
        Some(TaskEnd::Host(chassis::ErrorKind::Timeout))
    );
    assert_eq!(TaskEnd::from_names("no_such_kind", None), None);
}

/// Lines an embedder received.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl GuestLogSink for Collect {
    fn line(&self, line: &GuestLine<'_>) {
        self.0.lock().unwrap().push(format!(
            "{} {} {:?} {} {}",
            line.swarm_id, line.task_id, line.level, line.channel, line.text
        ));
    }
}

#[tokio::test]
async fn log_lines_go_to_the_embedders_sink_host_wide_or_per_swarm() {
    let all = Arc::new(Collect::default());
    let sink = all.clone();
    let chassis = TestHost::new()
        .config(move |c| c.with_log_sink(sink))
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    let hello = |id: &'static str| {
        let chassis = chassis.chassis.clone();
        async move {
            chassis
                .execute_task(
                    "hello-world",
                    TaskRequest::new("hello", json!({"name": "Ada\nforged"})).with_id(id),
                )
                .await
                .unwrap()
        }
    };
    hello("t1").await;
    {
        let lines = all.0.lock().unwrap();
        // The log import's line escaped like every guest line; stdout line
        // by line, each one still the swarm's.
        assert!(
            lines.contains(&"hello-world t1 Level::Info log greeting Ada\\nforged".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"hello-world t1 Level::Info stdout Hello, Ada".to_string())
                && lines.contains(&"hello-world t1 Level::Info stdout forged!".to_string()),
            "{lines:?}"
        );
    }
    // One swarm's lines to a sink of its own; the host-wide one no longer
    // gets them.
    let mine = Arc::new(Collect::default());
    chassis
        .set_log_sink("hello-world", Some(mine.clone()))
        .unwrap();
    let before = all.0.lock().unwrap().len();
    hello("t2").await;
    assert_eq!(all.0.lock().unwrap().len(), before);
    assert!(
        mine.0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hello-world t2 Level::Info log")),
        "{:?}",
        mine.0.lock().unwrap()
    );
    // Back to the host-wide sink.
    chassis.set_log_sink("hello-world", None).unwrap();
    hello("t3").await;
    assert!(
        all.0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hello-world t3"))
    );
    assert!(matches!(
        chassis.set_log_sink("nobody", None),
        Err(Error::NotLoaded(_))
    ));
}

#[tokio::test]
async fn a_store_is_refused_for_a_quarantined_swarm_as_a_task_is() {
    let chassis = TestHost::new().example(guests::HELLO_WORLD).build().await;
    assert!(chassis.new_store("hello-world", "s1").is_ok());
    let mut reputation = chassis.slo_report("hello-world").unwrap().reputation;
    reputation.quarantined = true;
    chassis
        .restore_reputation("hello-world", reputation)
        .unwrap();
    assert!(matches!(
        chassis.new_store("hello-world", "s2"),
        Err(Error::Task(TaskError::Quarantined { .. }))
    ));
    assert!(matches!(
        chassis.swarm_pre("nobody"),
        Err(Error::NotLoaded(_))
    ));
}
