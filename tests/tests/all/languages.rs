//! The analyzer written in Rust, in Python, in JavaScript, in TypeScript,
//! in C and in AssemblyScript, run through
//! the same host on the same inputs, must give identical results: the same
//! output JSON for every success and the same task-error variant for every
//! refusal.
//!
//! The Python and JavaScript helper modules (`guest-sdk/python`,
//! `guest-sdk/js`) turn a payload into a dict or object, a return value into
//! the JSON result, and an uncaught exception into a failed task that
//! carries its message instead of a trap.

use chassis::{Chassis, GuestError, TaskOutcome, TaskRequest, TaskStatus};
use chassis_tests::{Host, TestHost, guests, root};
use serde_json::{Value, json};

/// The implementations to compare: the Rust swarm first (the reference).
const ANALYZERS: &[&str] = &[
    guests::ANALYZER,
    guests::ANALYZER_PY,
    guests::ANALYZER_JS,
    guests::ANALYZER_TS,
    guests::ANALYZER_C,
    guests::ANALYZER_AS,
];

/// A host with the example contracts of `guests` loaded. The Python and
/// JavaScript components are large: their compiled form is kept between runs.
async fn host_with_examples(guests: &[&str]) -> Host {
    let cache = root().join("target/tmp/languages-cache");
    guests
        .iter()
        .fold(
            TestHost::new().config(|c| c.with_cache_dir(cache)),
            |host, guest| host.example(guest),
        )
        .build()
        .await
}

const SOURCES: &[&str] = &[
    "",
    "\n",
    "a",
    "a\n",
    "a\n\n",
    "a\r\nb\r\n",
    "a\rb\r",
    "\r\n\r\n",
    "  \t\n\u{b}\u{c}\n\u{1c}x\u{1f}\n\u{a0}\u{3000}\n\u{feff}x\n",
    // Rust trims U+0085 but not U+001C..U+001F or U+FEFF.
    "\u{1c}\n\u{1f}# c\n\u{85}\n\u{feff}\n\u{1c}password\u{1d}\n\u{85}// c\u{85}\n",
    "# comment\n\nimport os\n  # indented\nprint(os.name)  # trailing\n",
    "/* a\n b\n*/\nfn main() {} /* open\nstill\n*/ let x = 1;\n// x\n",
    "/*/ x\n*/y\n",
    "x /* a */ y /* b\nc */ d\n",
    "/* a */ code\n/* b */ // c\n/* c */\n",
    "code // not /* a block\nnext\n",
    "let s = \"/* not a comment */\";\n",
    "héllo wörld ✓ 😀\nдлинная строка\n",
    "q = \"SELECT * FROM t WHERE id=\" + id\nq2 = \"select a from b where c = ?\"\nq3 = \"SELECT $1 WHERE\"\n",
    "PASSWORD = 'hunter2'\napi_SECRET = 1\nİ secret and password\n",
    "    password    \t\n",
];

const LANGUAGES: &[&str] = &[
    "python",
    "PY",
    "rust",
    "Rs",
    "javascript",
    "js",
    "go",
    "golang",
    "typescript",
    "TS",
    "cobol",
    "",
];

const JSON_TEXTS: &[&str] = &[
    "{}",
    "[1,2]",
    "\"s\"",
    "1.5e3",
    "true",
    "null",
    " \n{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\\ud83d\\ude00\"}\n",
    "-0",
    "1e308",
    "123456789012345678901234567890",
    "",
    " ",
    "{",
    "[1,",
    "[1,]",
    "{\"a\":1,}",
    "{\"a\" 1}",
    "{\"a\":1,",
    "{1:2}",
    "tru",
    "nul",
    "01",
    "1.",
    "1e",
    "-",
    "\"abc",
    "\"\\x\"",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ud800\\u0041\"",
    "\"\\u12\"",
    "\"a\u{1}b\"",
    "1e400",
    "-1e400",
    "1e-400",
    "[1] 2",
    "NaN",
    "{\"a\":1}}",
    "[1 2]",
    "é{",
    "\n\n  }",
    "[\n  1,\n  ]\n",
    "{\"a\":\n\n}",
];

/// Every (task, payload) the analyzers are compared on.
fn cases() -> Vec<(&'static str, Value)> {
    let mut cases = Vec::new();
    for source in SOURCES {
        for language in LANGUAGES {
            cases.push((
                "analyze_code",
                json!({"language": language, "source": source}),
            ));
        }
        cases.push(("count_lines", json!({ "source": source })));
        cases.push(("check_security", json!({ "source": source })));
        cases.push(("parse_json", json!({ "text": source })));
    }
    for text in JSON_TEXTS {
        cases.push(("parse_json", json!({ "text": text })));
    }
    let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let deep_bad = format!("{}{}", "[".repeat(128), "]".repeat(128));
    cases.push(("parse_json", json!({ "text": deep_ok })));
    cases.push(("parse_json", json!({ "text": deep_bad })));
    // Payloads that are not what the task expects.
    for payload in [
        json!({}),
        json!({"source": 1}),
        json!({"source": null}),
        json!({"source": "x", "extra": 1}),
        json!({"extra": 1}),
        json!(["x"]),
        json!(["x", "y"]),
        json!([]),
        json!([1]),
        json!("x"),
        json!(42),
        json!(null),
    ] {
        cases.push(("count_lines", payload.clone()));
        cases.push(("check_security", payload.clone()));
        cases.push(("parse_json", payload));
    }
    cases.push(("analyze_code", json!(["rs", "fn f() {}"])));
    cases.push(("analyze_code", json!({"source": "x"})));
    cases.push(("analyze_code", json!({"language": "python"})));
    cases
}

/// What a run came to, in a form both languages must agree on.
fn result(outcome: TaskOutcome) -> Value {
    match outcome.error {
        None => json!({ "ok": outcome.output }),
        Some(e) => {
            let kind = serde_json::to_value(&e).expect("guest errors serialize")["kind"].clone();
            json!({ "error": kind })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analyzers_in_every_language_give_identical_results() {
    let chassis = host_with_examples(ANALYZERS).await;
    let names: Vec<&str> = chassis.loaded.iter().map(|i| i.swarm_id.as_str()).collect();
    for info in &chassis.loaded {
        assert_eq!(
            info.task_types, chassis.loaded[0].task_types,
            "{} serves other task types",
            info.swarm_id
        );
    }

    let cases = cases();
    let mut mismatches = Vec::new();
    let (mut successes, mut refusals) = (0, 0);
    for (task, payload) in &cases {
        let mut results = Vec::new();
        for name in &names {
            let outcome = chassis
                .execute_task(name, TaskRequest::new(*task, payload.clone()))
                .await
                .unwrap_or_else(|e| panic!("{name} {task} {payload}: {e}"));
            results.push(result(outcome));
        }
        if results[0].get("ok").is_some() {
            successes += 1;
        } else {
            refusals += 1;
        }
        for (name, r) in names.iter().zip(&results).skip(1) {
            if r != &results[0] {
                mismatches.push(format!(
                    "{task} {payload}\n    {}: {}\n    {name}: {r}",
                    names[0], results[0]
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // The corpus exercises both outcomes, and every parse_json error path.
    assert!(successes > 200 && refusals > 30, "{successes} / {refusals}");
}

/// Run one task that the swarm must answer (a result or a task-error).
async fn run(chassis: &Chassis, name: &str, task: &str, payload: Value) -> TaskOutcome {
    chassis
        .execute_task(name, TaskRequest::new(task, payload.clone()))
        .await
        .unwrap_or_else(|e| panic!("{name} {task} {payload}: {e}"))
}

/// The example swarms written with the helpers: the guest, how the
/// exception that `fail` raises starts its message, and how the traceback
/// names the function that raised it.
const HELPER_SWARMS: &[(&str, &str, &str)] = &[
    (guests::HELLO_PY, "ValueError: boom", "in explode"),
    (guests::HELLO_JS, "Error: boom", "explode@"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_javascript_helpers_report_results_refusals_and_exceptions() {
    let helpers: Vec<&str> = HELPER_SWARMS.iter().map(|(guest, ..)| *guest).collect();
    let chassis = host_with_examples(&helpers).await;
    for (&(_, exception, frame), info) in HELPER_SWARMS.iter().zip(&chassis.loaded) {
        let name = info.swarm_id.as_str();
        assert_eq!(info.task_types, ["hello", "fail"], "{name}");

        // The payload arrives as a dict / object; the returned one is the result.
        let outcome = run(&chassis, name, "hello", json!({"name": "Ada"})).await;
        assert_eq!(outcome.status, TaskStatus::Success, "{name}: {outcome:?}");
        assert_eq!(outcome.output, json!({"greeting": "Hello, Ada!"}), "{name}");
        let outcome = run(&chassis, name, "hello", json!({})).await;
        assert_eq!(
            outcome.output,
            json!({"greeting": "Hello, world!"}),
            "{name}"
        );

        // A refusal raised on purpose keeps its variant and message.
        let outcome = run(&chassis, name, "hello", json!({"name": 5})).await;
        assert_eq!(outcome.status, TaskStatus::Failed, "{name}: {outcome:?}");
        assert_eq!(
            outcome.error,
            Some(GuestError::InvalidPayload(
                "`name` must be a string".to_string()
            )),
            "{name}"
        );
        let outcome = run(&chassis, name, "hello", json!(["Ada"])).await;
        assert_eq!(
            outcome.error,
            Some(GuestError::InvalidPayload("expected an object".to_string())),
            "{name}"
        );

        // An uncaught exception is a failed task with the exception's type,
        // message and innermost frames, not a trap.
        let outcome = run(&chassis, name, "fail", json!({})).await;
        assert_eq!(outcome.status, TaskStatus::Failed, "{name}: {outcome:?}");
        assert_eq!(outcome.output, Value::Null, "{name}");
        let Some(GuestError::Failed(message)) = &outcome.error else {
            panic!("{name}: expected a failed task, got {:?}", outcome.error);
        };
        assert!(message.starts_with(exception), "{name}: {message}");
        assert!(message.contains(frame), "{name}: {message}");
        assert!(message.len() < 1024, "{name}: {} bytes", message.len());

        // The swarm is still healthy: the next task runs as usual.
        let outcome = run(&chassis, name, "hello", json!({"name": "Ada"})).await;
        assert_eq!(outcome.status, TaskStatus::Success, "{name}: {outcome:?}");
    }
}
