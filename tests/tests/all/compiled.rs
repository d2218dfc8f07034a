//! Swarms in C, C++ and AssemblyScript (projects built by `chassis build`,
//! run by `cargo xtask build`) under the host's limits: a hostile guest in each
//! language stopped with the right error, an import used without its grant
//! refused at load, and the AssemblyScript SDK's canonical-ABI glue, which
//! is hand-written, given hostile lengths, addresses, cases and alignments
//! (each must stop the task, never read outside what it was given) and
//! generated text to carry both ways.

use std::sync::{Arc, Mutex};

use chassis::{Error, ErrorKind, GuestLine, GuestLogSink, TaskError, TaskRequest};
use chassis_tests::{Host, TestHost, TestServer, guests};
use serde_json::{Value, json};

/// The hostile guests' contract: small limits, the proxy open to the test
/// server's `/v1/` (misbehave-as fetches), the credential they ask for
/// granted (or not), and no quarantine (these tests fail tasks on purpose,
/// hundreds of them).
fn hostile(swarm: &str, grant: bool) -> String {
    hostile_with(swarm, grant, 9, &[])
}

/// As [`hostile`], the proxy open to `http://127.0.0.1:{port}/v1/`, and
/// `more` credentials in scope.
fn hostile_with(swarm: &str, grant: bool, port: u16, more: &[&str]) -> String {
    let mut text = format!(
        "swarm_id = \"{swarm}\"
[resource_limits]
max_memory_mb = 32
task_timeout_seconds = 1
max_cpu_percent = 100
max_concurrent_tasks = 2
max_api_calls_per_second = 1000
max_log_lines_per_second = 1000000
[reputation]
quarantine_threshold = 0.0
max_failure_rate_percent = 100
"
    );
    text.push_str(&format!(
        "[security]\nnetwork_access = \"proxy_only\"\nallowed_endpoints = [\"http://127.0.0.1:{port}/v1/\"]\n"
    ));
    if grant {
        let scoped: Vec<String> = std::iter::once("token")
            .chain(more.iter().copied())
            .map(|c| format!("{c:?}"))
            .collect();
        text.push_str(&format!("scoped_credentials = [{}]\n", scoped.join(", ")));
    }
    text
}

/// Log lines the guests wrote.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl GuestLogSink for Lines {
    fn line(&self, line: &GuestLine<'_>) {
        self.0.lock().unwrap().push(line.text.to_string());
    }
}

impl Lines {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A host with `guest` loaded under its hostile contract as `swarm`, and
/// the log lines it writes.
async fn host(guest: &str, swarm: &str) -> (Host, Arc<Lines>) {
    let lines = Arc::new(Lines::default());
    let sink = lines.clone();
    let host = TestHost::new()
        .config(move |c| c.with_log_sink(sink))
        .secret(swarm, "token", "s3cret")
        .component(guest, hostile(swarm, true))
        .build()
        .await;
    (host, lines)
}

async fn fails(host: &Host, swarm: &str, task: &str, payload: Value) -> Error {
    host.execute_task(swarm, TaskRequest::new(task, payload.clone()))
        .await
        .err()
        .unwrap_or_else(|| panic!("{swarm} {task} {payload} was not stopped"))
}

async fn answers(host: &Host, swarm: &str, task: &str, payload: Value) -> Value {
    host.execute_task(swarm, TaskRequest::new(task, payload.clone()))
        .await
        .unwrap_or_else(|e| panic!("{swarm} {task} {payload}: {e}"))
        .output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_c_cpp_and_assemblyscript_guests_are_stopped_with_the_right_error() {
    for (guest, swarm, trap_task) in [
        (guests::MISBEHAVE_C, "misbehave-c", "recurse"),
        (guests::MISBEHAVE_CPP, "misbehave-cpp", "vector_at"),
        (guests::MISBEHAVE_AS, "misbehave-as", "abort"),
    ] {
        let (host, lines) = host(guest, swarm).await;
        let err = fails(&host, swarm, "oob_write", json!({})).await;
        assert_eq!(err.kind(), ErrorKind::Trap, "{swarm}: {err}");
        assert!(err.to_string().contains("out of bounds"), "{swarm}: {err}");

        let err = fails(&host, swarm, "spin", json!({})).await;
        assert!(
            matches!(err, Error::Task(TaskError::Timeout { seconds, .. }) if seconds == 1.0),
            "{swarm}: {err}"
        );

        let err = fails(&host, swarm, "memory_bomb", json!({})).await;
        assert!(
            matches!(
                err,
                Error::Task(TaskError::MemoryLimit { limit_mb: 32, .. })
            ),
            "{swarm}: {err}"
        );

        let err = fails(&host, swarm, trap_task, json!({})).await;
        assert_eq!(err.kind(), ErrorKind::Trap, "{swarm}: {err}");
        if swarm == "misbehave-cpp" {
            // What would have been an exception aborts, and libc++ says why
            // on stderr, which the trap carries.
            assert!(
                err.to_string()
                    .contains("out_of_range was thrown in -fno-exceptions mode"),
                "{err}"
            );
        }

        // The host and the swarm go on: the next task runs on a fresh
        // instance, and the granted credential reaches it.
        assert_eq!(
            answers(&host, swarm, "credential", json!({})).await,
            json!({"length": 6})
        );
        if swarm == "misbehave-as" {
            // AssemblyScript's abort says why in the log before the trap.
            let logged = lines.take();
            assert!(
                logged
                    .iter()
                    .any(|l| l.starts_with("abort: hostile abort from abort at assembly/index.ts")),
                "{logged:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_without_its_grant_is_refused_at_load() {
    for (guest, swarm) in [
        (guests::MISBEHAVE_C, "misbehave-c"),
        (guests::MISBEHAVE_CPP, "misbehave-cpp"),
        (guests::MISBEHAVE_AS, "misbehave-as"),
    ] {
        let err = TestHost::new()
            .component(guest, hostile(swarm, false))
            .try_build()
            .await
            .err()
            .unwrap_or_else(|| panic!("{swarm} loaded without the credentials grant"));
        assert_eq!(err.kind(), ErrorKind::NotPermitted, "{swarm}: {err}");
        assert!(
            err.to_string()
                .contains("infrafabric:chassis/credentials@0.1.0"),
            "{swarm}: {err}"
        );
    }
}

/// A small deterministic generator (xorshift), seeded per test so that a
/// failure names its case and repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A u32 that is often at an edge: 0, near a page end, near 2^32.
    fn edgy(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(16),
            1 => 65536 - self.below(16),
            2 => (1 << 32) - 1 - self.below(16),
            3 => self.below(1 << 20),
            4 => (1 << 31) + self.below(16),
            _ => self.below(1 << 32),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assemblyscript_abi_readers_refuse_what_lies_outside_memory() {
    let swarm = "misbehave-as";
    let (host, lines) = host(guests::MISBEHAVE_AS, swarm).await;
    let seed = std::env::var("CHASSIS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_ab1e_u64);
    let mut rng = Rng(seed);
    // The guest's memory is a few pages at most while these tasks run: 16
    // MiB is far above it, 64 KiB within it.
    let (mut read, mut refused) = (0, 0);
    for case in 0..300 {
        let task = ["lift_string", "lift_bytes"][rng.below(2) as usize];
        let (ptr, len) = match rng.below(3) {
            // Within the first page, at any alignment.
            0 => (rng.below(32768), rng.below(8192)),
            _ => (rng.edgy(), rng.edgy()),
        };
        let units = if task == "lift_string" { 2 } else { 1 };
        let end = ptr + len * units;
        let payload = json!({"ptr": ptr, "len": len});
        let result = host
            .execute_task(swarm, TaskRequest::new(task, payload.clone()))
            .await;
        let misaligned = task == "lift_string" && ptr % 2 == 1;
        if misaligned || end > 16 << 20 {
            let err = result
                .err()
                .unwrap_or_else(|| panic!("case {case} (seed {seed}): {task} {payload} was read"));
            assert_eq!(err.kind(), ErrorKind::Trap, "case {case}: {err}");
            let logged = lines.take();
            let why = if misaligned {
                "canonical ABI: a string at an odd address"
            } else if task == "lift_string" {
                "canonical ABI: a string outside linear memory"
            } else {
                "canonical ABI: a byte list outside linear memory"
            };
            assert!(
                logged.iter().any(|l| l == why),
                "case {case} (seed {seed}) {task} {payload}: {logged:?}"
            );
            refused += 1;
        } else if end <= 1 << 16 {
            let output = result.unwrap_or_else(|e| panic!("case {case} (seed {seed}): {e}"));
            let key = if task == "lift_string" {
                "units"
            } else {
                "bytes"
            };
            assert_eq!(output.output, json!({ key: len }), "case {case}");
            read += 1;
        }
        // Between 64 KiB and 16 MiB it depends on the memory the task has
        // grown: either answer is right.
    }
    assert!(read > 50 && refused > 100, "{read} read, {refused} refused");

    // A case number past the variant's cases, and alignments that are not
    // powers of two up to 16.
    for (ptr, cases) in [(4_u64, 0), (u64::from(u32::MAX), 256)] {
        let err = fails(&host, swarm, "case", json!({"ptr": ptr, "cases": cases})).await;
        assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    }
    assert_eq!(
        answers(&host, swarm, "case", json!({"ptr": 0, "cases": 256})).await["case"]
            .as_u64()
            .map(|c| c < 256),
        Some(true)
    );
    lines.take();
    for align in [0, 3, 6, 32, 1 << 20] {
        let err = fails(&host, swarm, "realloc", json!({"align": align, "size": 8})).await;
        assert_eq!(err.kind(), ErrorKind::Trap, "align {align}: {err}");
        assert!(
            lines
                .take()
                .iter()
                .any(|l| l == &format!("canonical ABI: cabi_realloc with alignment {align}")),
            "align {align}"
        );
    }
    for align in [1, 2, 4, 8, 16] {
        assert_eq!(
            answers(&host, swarm, "realloc", json!({"align": align, "size": 24})).await,
            json!({"aligned": true}),
            "align {align}"
        );
    }
}

/// A generated string: ASCII, escapes and controls, Latin, CJK, astral
/// characters, and now and then a long run.
fn text(rng: &mut Rng) -> String {
    let len = match rng.below(10) {
        0 => 0,
        1 => 2000 + rng.below(30000) as usize,
        _ => rng.below(40) as usize,
    };
    (0..len)
        .map(|_| match rng.below(8) {
            0 => char::from_u32(rng.below(0x20) as u32).unwrap(),
            1 => ['"', '\\', '/', '\u{7f}'][rng.below(4) as usize],
            2 => char::from_u32(0xa0 + rng.below(0x500) as u32).unwrap_or('x'),
            3 => char::from_u32(0x4e00 + rng.below(0x5000) as u32).unwrap_or('x'),
            4 => char::from_u32(0x1_0000 + rng.below(0xf_0000) as u32).unwrap_or('x'),
            5 => char::from_u32(0xe000 + rng.below(0x1000) as u32).unwrap_or('x'),
            _ => char::from_u32(0x20 + rng.below(0x5f) as u32).unwrap(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assemblyscript_string_glue_carries_any_text_both_ways() {
    let swarm = "misbehave-as";
    let (host, _) = host(guests::MISBEHAVE_AS, swarm).await;
    let mut rng = Rng(0x007e_570f_u64);
    for case in 0..150 {
        let mut payload = serde_json::Map::new();
        for _ in 0..rng.below(4) {
            payload.insert(text(&mut rng), Value::String(text(&mut rng)));
        }
        let payload = Value::Object(payload);
        // The guest lifts the payload (UTF-8 to UTF-16 on the way in),
        // parses it, and returns it as a JSON string (UTF-16 to UTF-8 on
        // the way out, through its writer's escaping).
        let output = answers(&host, swarm, "echo", payload.clone()).await;
        let echoed: Value = serde_json::from_str(output["payload"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(echoed, payload, "case {case}");
    }
}

/// The C, C++ and AssemblyScript SDKs as an author meets them (the
/// `chassis new` example with a `fail` task): the payload read strictly,
/// text with escapes and astral characters carried into the output
/// intact, refusals and failures keeping their variant and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_cpp_and_assemblyscript_sdks_read_payloads_and_report_results() {
    use chassis::{GuestError, TaskStatus};
    for guest in [guests::HELLO_C, guests::HELLO_CPP, guests::HELLO_AS] {
        let host = TestHost::new().example(guest).build().await;
        let name = host.info().swarm_id.clone();
        let name = name.as_str();
        assert_eq!(host.info().task_types, ["hello", "fail"], "{name}");
        let run = |payload: Value, task: &'static str| {
            let host = &host;
            async move {
                host.execute_task(name, TaskRequest::new(task, payload.clone()))
                    .await
                    .unwrap_or_else(|e| panic!("{name} {task} {payload}: {e}"))
            }
        };
        let tricky = "Ada \"the\" \\ Lovelace\n\t\u{1}é😀\u{7f}";
        let outcome = run(json!({"name": tricky}), "hello").await;
        assert_eq!(
            outcome.output,
            json!({"greeting": format!("Hello, {tricky}!")}),
            "{name}"
        );
        let outcome = run(json!({}), "hello").await;
        assert_eq!(
            outcome.output,
            json!({"greeting": "Hello, world!"}),
            "{name}"
        );
        for (payload, message) in [
            (json!({"name": 5}), "`name` must be a string".to_string()),
            (json!(["Ada"]), "expected an object".to_string()),
            (
                json!({"name": "Ada", "nom": 1}),
                "unknown field `nom`, expected `name`".to_string(),
            ),
        ] {
            let outcome = run(payload.clone(), "hello").await;
            assert_eq!(outcome.status, TaskStatus::Failed, "{name} {payload}");
            assert_eq!(
                outcome.error,
                Some(GuestError::InvalidPayload(message)),
                "{name} {payload}"
            );
        }
        let outcome = run(json!({}), "fail").await;
        assert_eq!(
            outcome.error,
            Some(GuestError::Failed("boom".to_string())),
            "{name}"
        );
        // And the next task runs as usual.
        let outcome = run(json!({"name": "Ada"}), "hello").await;
        assert_eq!(outcome.status, TaskStatus::Success, "{name}");
    }
}

/// RFC 8032's first test key (its seed).
const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// Each import the AssemblyScript SDK lowers and lifts by hand, through the
/// real host: credentials (a value, a signature, a public key, and each
/// refusal's case), and the HTTP proxy against a real server on 127.0.0.1
/// (a GET, a POST with a body, headers and an injected credential, a
/// denied URL). Storage is `storage.rs`'s notes script, run by `notes-as`
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assemblyscript_imports_answer_and_refuse_as_the_host_says() {
    let server = TestServer::start();
    let swarm = "misbehave-as";
    let lines = Arc::new(Lines::default());
    let sink = lines.clone();
    let host = TestHost::new()
        .config(move |c| c.with_log_sink(sink))
        .secret(swarm, "token", "s3cret")
        .secret(swarm, "signing", format!("ed25519:{SEED_HEX}"))
        .secret(swarm, "big", "x".repeat(64 * 1024))
        .component(
            guests::MISBEHAVE_AS,
            hostile_with(swarm, true, server.port, &["signing", "empty", "big"]),
        )
        .build()
        .await;
    // What the host hands over is freed once read: 300 reads of a 64 KiB
    // credential (128 KiB each as UTF-16, 38 MiB in all) stay within the
    // task's 32 MiB.
    assert_eq!(
        answers(
            &host,
            swarm,
            "credential_loop",
            json!({"name": "big", "n": 300})
        )
        .await,
        json!({"calls": 300, "units": 300 * 64 * 1024})
    );
    // Text with an unpaired surrogate reaches the host with U+FFFD in its
    // place, in the log and in the result, instead of ending the task.
    lines.take();
    assert_eq!(
        answers(&host, swarm, "lone_surrogate", json!({})).await,
        json!({"text": "a\u{fffd}b"})
    );
    assert_eq!(lines.take(), ["lone a\u{fffd}b"]);
    let op = |op: &str, name: &str| json!({"op": op, "name": name});
    let failure = |payload: Value, task: &'static str| {
        let host = &host;
        async move {
            let outcome = host
                .execute_task(swarm, TaskRequest::new(task, payload.clone()))
                .await
                .unwrap_or_else(|e| panic!("{task} {payload}: {e}"));
            match outcome.error {
                Some(chassis::GuestError::Failed(message)) => message,
                other => panic!("{task} {payload}: expected a failed task, got {other:?}"),
            }
        }
    };
    assert_eq!(
        answers(&host, swarm, "credential_op", op("get", "token")).await,
        json!({"value_units": 6, "bytes": 0})
    );
    assert_eq!(
        answers(&host, swarm, "credential_op", op("sign", "signing")).await,
        json!({"value_units": 0, "bytes": 64})
    );
    assert_eq!(
        answers(&host, swarm, "credential_op", op("public_key", "signing")).await,
        json!({"value_units": 0, "bytes": 32})
    );
    for (payload, case) in [
        (op("get", "empty"), "not-found: "),
        (op("get", "elsewhere"), "denied: "),
        (op("sign", "token"), "unsupported: "),
        (op("public_key", "token"), "unsupported: "),
    ] {
        let message = failure(payload.clone(), "credential_op").await;
        assert!(message.starts_with(case), "{payload}: {message}");
    }

    let url = |path: &str| format!("http://127.0.0.1:{}{path}", server.port);
    let got = answers(&host, swarm, "fetch", json!({"url": url("/v1/hello")})).await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["body"], r#"{"hello":"world"}"#, "{got}");
    assert!(
        got["headers"]
            .as_array()
            .is_some_and(|h| h.iter().any(|p| p[0] == "content-length")),
        "{got}"
    );
    let body = "héllo ✓ \"quoted\" 😀";
    let got = answers(
        &host,
        swarm,
        "fetch",
        json!({
            "url": url("/v1/echo"),
            "method": "POST",
            "body": body,
            "credential": "token",
            "headers": {"x-probe": "1", "content-type": "text/plain"},
        }),
    )
    .await;
    assert_eq!(
        got,
        json!({"status": 200, "headers": got["headers"], "body": body})
    );
    let received = server.received();
    let last = received.last().unwrap();
    assert_eq!(last.body, body.as_bytes());
    let header = |name: &str| {
        last.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("authorization"), Some("Bearer s3cret"));
    assert_eq!(header("x-probe"), Some("1"));

    let message = failure(json!({"url": url("/v2/hello")}), "fetch").await;
    assert!(message.starts_with("denied: "), "{message}");
    let message = failure(json!({"url": "not a url"}), "fetch").await;
    assert!(
        message.starts_with("invalid-request: ") || message.starts_with("denied: "),
        "{message}"
    );
    // Nothing the guest asked for was sent anywhere but the test server.
    assert_eq!(server.received().len(), 2);
}
