//! Scoped credentials through real components: each swarm sees only its own
//! scoped values, signing keys never leave the host, and every decision is
//! an event that names the key but never its value.

use chassis::{Chassis, ContractBuilder, Event, ServiceContract, TaskRequest};
use chassis_tests::{TestHost, capture_logs, component, guests};
use serde_json::{Value, json};

const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// The egress guest's contract as `id`: these credentials in scope, and the
/// proxy with no endpoint allowed.
fn egress_contract(id: &str, scoped: &[&str]) -> ContractBuilder {
    scoped.iter().fold(
        ServiceContract::builder(id).proxy_only(Vec::<String>::new()),
        |b, key| b.scoped_credential(*key),
    )
}

async fn steal(chassis: &Chassis, swarm: &str, name: &str) -> Value {
    let o = chassis
        .execute_task(
            swarm,
            TaskRequest::new("steal_credential", json!({ "name": name })),
        )
        .await
        .unwrap();
    assert!(o.is_success(), "{o:?}");
    o.output
}

#[tokio::test]
async fn the_guardian_vote_is_signed_on_the_host_and_verifies() {
    let chassis = TestHost::new()
        .secret(
            "guardian-council",
            "guardian_signing_key",
            format!("ed25519:{SEED_HEX}"),
        )
        .example(guests::GUARDIAN_COUNCIL)
        .build()
        .await;
    let o = chassis
        .execute_task(
            "guardian-council",
            TaskRequest::new(
                "guardian_vote",
                json!({"session": "s-1", "proposal": "Ship it"}),
            ),
        )
        .await
        .unwrap();
    let out = &o.output;
    assert!(out.get("signature_error").is_none(), "{out}");
    // RFC 8032 test key 1: the public key the host derives from the seed.
    assert_eq!(
        out["public_key"],
        json!("ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    );
    let seed: [u8; 32] = hex::decode(SEED_HEX).unwrap().try_into().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let sig = hex::decode(
        out["signature"]
            .as_str()
            .unwrap()
            .trim_start_matches("ed25519:"),
    )
    .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    let message = out["signed_message"].as_str().unwrap();
    assert_eq!(message, "guardian-3|s-1|Ship it|approve");
    key.verify_strict(message.as_bytes(), &sig)
        .expect("signature verifies");
    // A signature over anything else does not.
    assert!(
        key.verify_strict(b"guardian-3|s-1|Ship it|reject", &sig)
            .is_err()
    );
    // The seed itself never reached the guest's output.
    assert!(!out.to_string().contains(SEED_HEX));
}

#[tokio::test]
async fn two_swarms_with_the_same_key_name_see_only_their_own_value() {
    let chassis = TestHost::new()
        .secret("swarm-a", "api_key", "value-of-a")
        .secret("swarm-b", "api_key", "value-of-b")
        .component(guests::EGRESS, egress_contract("swarm-a", &["api_key"]))
        .component(guests::EGRESS, egress_contract("swarm-b", &["api_key"]))
        .build()
        .await;
    assert_eq!(
        steal(&chassis, "swarm-a", "api_key").await,
        json!({"got": "value-of-a"})
    );
    assert_eq!(
        steal(&chassis, "swarm-b", "api_key").await,
        json!({"got": "value-of-b"})
    );
}

#[tokio::test]
async fn unscoped_and_foreign_keys_are_denied_as_security_violations() {
    let chassis = TestHost::new()
        .secret("thief", "api_key", "mine")
        .secret("thief", "unscoped_key", "exists-but-unscoped")
        .secret(
            "guardian-council",
            "guardian_signing_key",
            format!("ed25519:{SEED_HEX}"),
        )
        .memory_sink()
        .component(
            guests::EGRESS,
            egress_contract("thief", &["api_key", "missing_key"]),
        )
        .build()
        .await;

    // Another swarm's key.
    let out = steal(&chassis, "thief", "guardian_signing_key").await;
    let refused = out["refused"].as_str().unwrap();
    assert!(
        refused.contains("Denied") && refused.contains("not in this swarm's scoped_credentials"),
        "{refused}"
    );
    // A key with a value for this swarm, but not in its contract.
    let out = steal(&chassis, "thief", "unscoped_key").await;
    assert!(out["refused"].as_str().unwrap().contains("Denied"), "{out}");
    // In scope but no value anywhere.
    let out = steal(&chassis, "thief", "missing_key").await;
    assert!(
        out["refused"].as_str().unwrap().contains("NotFound"),
        "{out}"
    );
    // In scope with a value.
    assert_eq!(
        steal(&chassis, "thief", "api_key").await,
        json!({"got": "mine"})
    );

    let decisions: Vec<(String, bool, bool)> = chassis
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::CredentialAccess {
                key,
                allowed,
                security_violation,
                ..
            } => Some((key, allowed, security_violation)),
            _ => None,
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("guardian_signing_key".to_string(), false, true),
            ("unscoped_key".to_string(), false, true),
            ("missing_key".to_string(), false, false),
            ("api_key".to_string(), true, false),
        ]
    );
    // No event carries a value.
    let all = serde_json::to_string(&chassis.events()).unwrap();
    for value in ["mine", "exists-but-unscoped", SEED_HEX] {
        assert!(!all.contains(value), "{value} leaked into events");
    }
}

#[tokio::test]
async fn a_violation_is_counted_in_the_task_usage() {
    let chassis = TestHost::new()
        .component(guests::EGRESS, egress_contract("thief", &["api_key"]))
        .build()
        .await;
    let o = chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "root_password"})),
        )
        .await
        .unwrap();
    assert_eq!(o.usage.security_violations, 1);
}

#[tokio::test]
async fn signing_keys_are_never_handed_out() {
    let chassis = TestHost::new()
        .secret("signer", "signing", format!("ed25519:{SEED_HEX}"))
        .component(guests::EGRESS, egress_contract("signer", &["signing"]))
        .build()
        .await;
    let out = steal(&chassis, "signer", "signing").await;
    let refused = out["refused"].as_str().unwrap();
    assert!(
        refused.contains("Unsupported") && refused.contains("never leaves the host"),
        "{refused}"
    );
}

#[tokio::test]
async fn secret_values_never_reach_the_log() {
    let (logs, _guard) = capture_logs();
    let chassis = TestHost::new()
        .secret("quiet", "api_key", "do-not-log-me")
        .component(guests::EGRESS, egress_contract("quiet", &["api_key"]))
        .build()
        .await;
    steal(&chassis, "quiet", "api_key").await;
    steal(&chassis, "quiet", "other").await;
    let text = logs.text();
    assert!(text.contains("credential get denied"), "{text}");
    assert!(!text.contains("do-not-log-me"), "{text}");
}

#[tokio::test]
async fn secrets_come_from_the_environment() {
    // Set before the swarm loads; the name is unique to this test.
    set_env(
        "CHASSIS_SECRET__ENV_SWARM__SERVICE_TOKEN",
        "from-the-environment",
    );
    let chassis = TestHost::new()
        .component(
            guests::EGRESS,
            egress_contract("env-swarm", &["service_token"]),
        )
        .build()
        .await;
    assert_eq!(
        steal(&chassis, "env-swarm", "service_token").await,
        json!({"got": "from-the-environment"})
    );
    // `env_swarm` would fold onto the same variable; it never reads it.
    chassis
        .load_bytes(
            &component(guests::EGRESS),
            egress_contract("env_swarm", &["service_token"])
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let out = steal(&chassis, "env_swarm", "service_token").await;
    assert!(
        out["refused"].as_str().unwrap().contains("NotFound"),
        "{out}"
    );
}

#[allow(unsafe_code)]
fn set_env(k: &str, v: &str) {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var(k, v) }
}

#[tokio::test]
async fn credentials_and_the_proxy_are_refused_while_a_swarm_is_loading() {
    let (logs, _guard) = capture_logs();
    let host = TestHost::new()
        .secret("early", "api_key", "too-early")
        .component(
            guests::EARLY_BIRD,
            "swarm_id = \"early\"\n[security]\nscoped_credentials = [\"api_key\"]\n\
             network_access = \"proxy_only\"\nallowed_endpoints = [\"http://127.0.0.1:9/\"]\n",
        )
        .build()
        .await;
    let info = host.info();
    // Both refused, as `denied`; the proxy is task-scoped too, even for an
    // allowed endpoint.
    assert_eq!(info.task_types, ["credential-denied", "fetch-denied"]);
    let text = logs.text();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("while loading: Err("))
        .collect();
    assert_eq!(said.len(), 2, "{text}");
    for line in said {
        assert!(line.contains("only available while a task runs"), "{line}");
    }
}

#[tokio::test]
async fn a_task_is_a_task_whatever_its_id() {
    // The loading phase is a property of the call, not of a task id: a task
    // named like the load-time call still gets its credentials.
    let chassis = TestHost::new()
        .secret("named", "api_key", "mine")
        .component(guests::EGRESS, egress_contract("named", &["api_key"]))
        .build()
        .await;
    let o = chassis
        .execute_task(
            "named",
            TaskRequest::new("steal_credential", json!({ "name": "api_key" })).with_id("load"),
        )
        .await
        .unwrap();
    assert_eq!(o.output, json!({"got": "mine"}));
}

#[tokio::test]
async fn one_call_rate_covers_credentials_and_the_proxy_but_not_logging() {
    let chassis = TestHost::new()
        .secret("rated", "bench_token", "t0k")
        .memory_sink()
        .component(
            guests::BENCH_PROBE,
            ServiceContract::builder("rated")
                .max_api_calls_per_second(10)
                .scoped_credential("bench_token")
                .wasi_capability("wasi:clocks/monotonic-clock")
                .wasi_capability("wasi:clocks/wall-clock"),
        )
        .build()
        .await;
    // Ten credential calls use up the second's burst...
    let o = chassis
        .execute_task(
            "rated",
            TaskRequest::new("credential", json!({"n": 10, "name": "bench_token"})),
        )
        .await
        .unwrap();
    assert!(o.is_success(), "{o:?}");
    assert_eq!((o.usage.host_calls, o.usage.rate_limited_calls), (10, 0));
    // ...logging has a budget of its own, so ten lines still go out...
    let o = chassis
        .execute_task("rated", TaskRequest::new("log", json!({"n": 10})))
        .await
        .unwrap();
    assert_eq!(
        (
            o.usage.host_calls,
            o.usage.dropped_log_lines,
            o.usage.rate_limited_calls
        ),
        (10, 0, 0)
    );
    // ...and a credential call right after is refused with a typed error.
    let o = chassis
        .execute_task(
            "rated",
            TaskRequest::new("credential", json!({"n": 1, "name": "bench_token"})),
        )
        .await
        .unwrap();
    let err = o.error.expect("refused").to_string();
    assert!(
        err.contains("CredentialError::RateLimited") && err.contains("max_api_calls_per_second"),
        "{err}"
    );
    assert_eq!(o.usage.rate_limited_calls, 1);
    assert!(chassis.events().iter().any(|e| matches!(e,
        chassis::Event::RateLimited { swarm_id, import, .. } if swarm_id == "rated" && import == "credentials")));
}

/// A task that reads the same credential many times: the first grant is
/// recorded as it happens (before the value leaves the host), the rest are
/// counted in one `credential_repeated` record before the task's terminal
/// record; a refused read is recorded every time. Through a real audit log,
/// which verifies and reads back the same events.
#[tokio::test]
async fn repeated_grants_in_a_task_are_one_record_and_a_count_refusals_each_their_own() {
    let dir = chassis_tests::scratch_dir("credential-repeats");
    let log = dir.join("audit.jsonl");
    let chassis = TestHost::new()
        .secret("reader", "bench_token", "t0k")
        .memory_sink()
        .audit(&log, chassis::audit::FsyncPolicy::Always)
        .component(
            guests::BENCH_PROBE,
            ServiceContract::builder("reader")
                .max_api_calls_per_second(1000)
                .scoped_credential("bench_token")
                .wasi_capability("wasi:clocks/monotonic-clock")
                .wasi_capability("wasi:clocks/wall-clock"),
        )
        .build()
        .await;
    let run = |id: &'static str, n: u32, name: &'static str| {
        let chassis = &chassis;
        async move {
            chassis
                .execute_task(
                    "reader",
                    TaskRequest::new("credential", json!({"n": n, "name": name})).with_id(id),
                )
                .await
                .unwrap()
        }
    };
    let o = run("many", 50, "bench_token").await;
    assert_eq!(o.output, json!({"calls": 50, "bytes": 150}), "{o:?}");
    assert_eq!(o.usage.host_calls, 50);
    let o = run("once", 1, "bench_token").await;
    assert!(o.is_success(), "{o:?}");
    // Out of scope: refused at the first call, which ends the task.
    let o = run("refused", 3, "other_token").await;
    assert!(o.error.is_some(), "{o:?}");

    let of_task = |events: &[Event], task: &str| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| {
                let (id, what) = match e {
                    Event::CredentialAccess {
                        task_id,
                        key,
                        allowed,
                        ..
                    } => (task_id, format!("access {key} {allowed}")),
                    Event::CredentialRepeated {
                        task_id,
                        key,
                        operation,
                        repeats,
                        ..
                    } => (task_id, format!("repeated {key} {operation} {repeats}")),
                    Event::TaskComplete { task_id, .. } => (task_id, "complete".to_string()),
                    Event::TaskFailed { task_id, .. } => (task_id, "failed".to_string()),
                    _ => return None,
                };
                (id == task).then_some(what)
            })
            .collect()
    };
    let events = chassis.events();
    assert_eq!(
        of_task(&events, "many"),
        [
            "access bench_token true",
            "repeated bench_token get 49",
            "complete"
        ]
    );
    assert_eq!(
        of_task(&events, "once"),
        ["access bench_token true", "complete"]
    );
    assert_eq!(
        of_task(&events, "refused"),
        ["access other_token false", "failed"]
    );
    // The log holds the same, chained.
    chassis.audit_log().close().unwrap();
    chassis::audit::verify(&log).unwrap();
    let logged: Vec<Event> = chassis::audit::events(&log)
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    for task in ["many", "once", "refused"] {
        assert_eq!(of_task(&logged, task), of_task(&events, task), "{task}");
    }
}

/// Only `get` and `public-key` repeats are counted: each `sign` (of a
/// message the guest chooses) and each credential header the proxy
/// injects (whose request record does not name the credential) is a
/// record of its own, however often the task asks.
#[tokio::test]
async fn signatures_and_injected_headers_are_recorded_every_time() {
    let server = chassis_tests::TestServer::start();
    let allowed = server.url("127.0.0.1", "/v1/");
    let chassis = TestHost::new()
        .secret("counter", "api_token", "tok-value")
        .secret("counter", "signing_key", format!("ed25519:{SEED_HEX}"))
        .memory_sink()
        .component(
            guests::IMPORT_FUZZ,
            ServiceContract::builder("counter")
                .proxy_only(vec![allowed.clone()])
                .max_api_calls_per_second(1000)
                .scoped_credential("api_token")
                .scoped_credential("signing_key")
                .wasi_capability("wasi:io/streams"),
        )
        .build()
        .await;
    let get = json!({"get": "api_token"});
    let public_key = json!({"public_key": "signing_key"});
    let sign = json!({"sign": "signing_key"});
    let inject = json!({"fetch": {"method": "GET", "url": format!("{allowed}hello"), "credential": "api_token"}});
    let calls = json!([
        get, get, get, public_key, public_key, sign, sign, sign, inject, inject
    ]);
    let o = chassis
        .execute_task("counter", TaskRequest::new("calls", calls).with_id("mix"))
        .await
        .unwrap();
    assert!(o.is_success(), "{o:?}");
    let answers = o.output.as_array().unwrap();
    assert_eq!(answers.len(), 10);
    assert!(
        answers.iter().all(|a| a == &json!({"ok": true})),
        "{answers:?}"
    );
    // Both requests went out with the header.
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(
        received.iter().all(|r| r
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "Bearer tok-value")),
        "{received:?}"
    );

    let recorded: Vec<String> = chassis
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::CredentialAccess {
                key,
                operation,
                allowed,
                ..
            } => Some(format!("{operation} {key} {allowed}")),
            Event::CredentialRepeated {
                key,
                operation,
                repeats,
                ..
            } => Some(format!("{operation} {key} again {repeats}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [
            "get api_token true",
            "public-key signing_key true",
            "sign signing_key true",
            "sign signing_key true",
            "sign signing_key true",
            "inject api_token true",
            "inject api_token true",
            "get api_token again 2",
            "public-key signing_key again 1",
        ]
    );
}

/// An event sink that fails (as an audit log on a full disk does) as soon
/// as it has been handed a granted credential.
#[derive(Default)]
struct FailsAtFirstGrant(std::sync::atomic::AtomicBool);

impl chassis::EventSink for FailsAtFirstGrant {
    fn record(&self, event: &Event) {
        if matches!(event, Event::CredentialAccess { allowed: true, .. }) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn failure(&self) -> Option<String> {
        self.0
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| "the test's log is full".to_string())
    }
}

/// A grant whose record could not be written is withheld: the credential
/// header is not sent, a second read of the key in the same task is
/// withheld too (an unrecorded grant is not counted as a first one), and
/// the task is answered as unrecorded.
#[tokio::test]
async fn a_grant_the_log_cannot_record_is_withheld() {
    let server = chassis_tests::TestServer::start();
    let allowed = server.url("127.0.0.1", "/v1/");
    let chassis = TestHost::new()
        .secret("withheld", "api_key", "never-sent")
        .config(|c| c.with_event_sink(std::sync::Arc::new(FailsAtFirstGrant::default())))
        .component(
            guests::EGRESS,
            ServiceContract::builder("withheld")
                .proxy_only(vec![allowed.clone()])
                .scoped_credential("api_key"),
        )
        .build()
        .await;
    let err = chassis
        .execute_task(
            "withheld",
            TaskRequest::new(
                "send_secret",
                json!({"name": "api_key", "url": format!("{allowed}hello")}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, chassis::Error::AuditUnavailable { .. }),
        "{err}"
    );
    assert!(
        server.received().is_empty(),
        "the header went out: {:?}",
        server.received()
    );
    // The same through `get`, twice in one task (import-fuzz's `calls`),
    // on a host whose sink fails at the first grant.
    let chassis = TestHost::new()
        .secret("withheld", "api_token", "never-read")
        .memory_sink()
        .config(|c| c.with_event_sink(std::sync::Arc::new(FailsAtFirstGrant::default())))
        .component(
            guests::IMPORT_FUZZ,
            ServiceContract::builder("withheld")
                .proxy_only(vec![allowed])
                .scoped_credential("api_token")
                .wasi_capability("wasi:io/streams"),
        )
        .build()
        .await;
    let get = json!({"get": "api_token"});
    let err = chassis
        .execute_task("withheld", TaskRequest::new("calls", json!([get, get])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, chassis::Error::AuditUnavailable { .. }),
        "{err}"
    );
    // Both reads were refused: each is a record of its own, none counted.
    let reads: Vec<bool> = chassis
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::CredentialAccess { allowed, .. } => Some(allowed),
            Event::CredentialRepeated { .. } => panic!("an unrecorded grant was counted"),
            _ => None,
        })
        .collect();
    assert_eq!(reads, [true, true], "each read's decision is on record");
}
