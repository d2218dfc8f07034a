//! The `storage` import through the `notes` example swarm: objects kept
//! between tasks and across hosts, names that try to leave the namespace
//! refused and recorded, the quota exact at its bound and under concurrent
//! writers, the grant (none, read-only) enforced at load and per call.
//!
//! The suite runs against both stores: files in a directory, and a NATS
//! JetStream bucket on a real `nats-server`, where each host is a worker
//! of its own connection and two of them share the objects and the quota.

use std::path::PathBuf;
use std::sync::Arc;

use chassis::audit::FsyncPolicy;
use chassis::contract::StorageAccess;
use chassis::storage::Store;
use chassis::storage::files::FileStore;
use chassis::storage::nats::NatsStore;
use chassis::{Chassis, Error, Event, ServiceContract, TaskRequest};
use chassis::{LoadError, TaskError};
use chassis_tests::{Nats, TestHost, guests, scratch_dir};
use serde_json::{Value, json};

/// Where a test's hosts keep their objects.
enum Backend {
    /// A `FileStore` directory.
    Files(PathBuf),
    /// A bucket on this server.
    Nats(Nats),
}

impl Backend {
    fn files(dir: PathBuf) -> Self {
        Backend::Files(dir)
    }

    fn nats(dir: &std::path::Path) -> Self {
        Backend::Nats(Nats::start(dir))
    }

    /// A store for one more host: for NATS, a worker's own connection.
    async fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Files(dir) => Arc::new(FileStore::open(dir).unwrap()),
            Backend::Nats(server) => Arc::new(NatsStore::connect(&server.url, 1).await.unwrap()),
        }
    }

    /// A test host on a store of its own.
    async fn host(&self) -> TestHost {
        let store = self.store().await;
        TestHost::new().config(|c| c.with_store(store))
    }
}

/// The notes contract under `id` with this access and quota
/// (`max_total_bytes`, `max_objects`, `max_object_bytes`).
fn notes(id: &str, access: StorageAccess, quota: (u64, u64, u64)) -> ServiceContract {
    ServiceContract::builder(id)
        .wasi_capability("wasi:io/streams")
        .max_concurrent_tasks(8)
        .storage(access)
        .with(|c| {
            c.resource_limits.max_api_calls_per_second = 1000;
            c.storage.max_total_bytes = quota.0;
            c.storage.max_objects = quota.1;
            c.storage.max_object_bytes = quota.2;
            // Refusals are what these tests make: no quarantine for them.
            c.reputation.quarantine_threshold = 0.0;
            c.reputation.max_failure_rate_percent = 100.0;
        })
        .build()
        .unwrap()
}

/// Run a notes task: its output, or its error's message.
async fn run(chassis: &Chassis, swarm: &str, task: &str, payload: Value) -> Result<Value, String> {
    let o = chassis
        .execute_task(swarm, TaskRequest::new(task, payload))
        .await
        .unwrap();
    match o.error {
        None => Ok(o.output),
        Some(e) => Err(e.to_string()),
    }
}

/// The storage events of a host's memory sink.
fn storage_events(events: &[Event]) -> Vec<(String, String, bool, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StorageAccess {
                operation,
                name,
                allowed,
                security_violation,
                ..
            } => Some((
                operation.clone(),
                name.clone(),
                *allowed,
                *security_violation,
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_outlive_the_task_and_the_host() {
    objects_outlive(Backend::files(scratch_dir("storage-keep"))).await;
}

/// On NATS the second host is another worker: it sees the first one's
/// objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_objects_outlive_the_task_and_the_worker() {
    objects_outlive(Backend::nats(&scratch_dir("storage-keep-nats"))).await;
}

async fn objects_outlive(backend: Backend) {
    let host = || async {
        backend
            .host()
            .await
            .memory_sink()
            .contract_file(guests::example(guests::NOTES))
            .build()
            .await
    };
    let chassis = host().await;
    for n in 1..=3 {
        let out = run(&chassis, "notes", "count", json!({"counter": "visits"})).await;
        assert_eq!(out.unwrap()["value"], n);
    }
    let note = json!({"title": "plan", "items": [1, 2, 3]});
    run(
        &chassis,
        "notes",
        "put",
        json!({"name": "docs/plan", "note": note}),
    )
    .await
    .unwrap();
    run(
        &chassis,
        "notes",
        "put",
        json!({"name": "docs/todo", "note": "x"}),
    )
    .await
    .unwrap();
    let listed = run(&chassis, "notes", "list", json!({"prefix": "docs/"})).await;
    assert_eq!(listed.unwrap()["names"], json!(["docs/plan", "docs/todo"]));
    let events = storage_events(&chassis.events());
    assert!(
        events.iter().all(|(_, _, allowed, v)| *allowed && !v),
        "{events:?}"
    );
    assert!(events.contains(&("set".into(), "counters/visits".into(), true, false)));
    drop(chassis);

    // Another host on the same store: the objects are there.
    let chassis = host().await;
    let out = run(&chassis, "notes", "count", json!({"counter": "visits"})).await;
    assert_eq!(out.unwrap()["value"], 4);
    let got = run(&chassis, "notes", "get", json!({"name": "docs/plan"})).await;
    assert_eq!(got.unwrap()["note"], note);
    run(&chassis, "notes", "delete", json!({"name": "docs/plan"}))
        .await
        .unwrap();
    let got = run(&chassis, "notes", "get", json!({"name": "docs/plan"})).await;
    assert_eq!(got.unwrap()["note"], Value::Null);
    let listed = run(&chassis, "notes", "list", json!({"prefix": "docs/"})).await;
    assert_eq!(listed.unwrap()["names"], json!(["docs/todo"]));
    let usage = run(&chassis, "notes", "usage", json!({})).await.unwrap();
    assert_eq!(usage["objects"], 2, "{usage}");
    assert_eq!(usage["max_objects"], 100, "{usage}");
}

/// Every spelling of a way out of the namespace: refused as an invalid
/// name, recorded as a security violation in a real audit log (the name
/// escaped), and the swarm's reputation pays; nothing is written anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_out_of_the_namespace_is_refused_and_audited() {
    let dir = scratch_dir("storage-escape");
    let backend = Backend::files(dir.join("store"));
    every_way_out_is_refused(&backend, &dir).await;
    // Nothing reached the store, nor anywhere else: the test's directory
    // holds the audit log alone.
    let found = walk(&dir);
    let audit = dir.join("audit.jsonl");
    assert!(
        !found.is_empty() && found.iter().all(|f| f.starts_with(&audit)),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_every_way_out_of_the_namespace_is_refused_and_audited() {
    let dir = scratch_dir("storage-escape-nats");
    let backend = Backend::nats(&dir.join("nats"));
    every_way_out_is_refused(&backend, &dir).await;
    // Not one entry was made in the bucket.
    let Backend::Nats(server) = &backend else {
        unreachable!()
    };
    let store = NatsStore::connect(&server.url, 1).await.unwrap();
    assert_eq!(store.entry_count().await.unwrap(), 0);
}

async fn every_way_out_is_refused(backend: &Backend, dir: &std::path::Path) {
    let audit = dir.join("audit.jsonl");
    let chassis = backend
        .host()
        .await
        .memory_sink()
        .audit(&audit, FsyncPolicy::Always)
        .component(
            guests::NOTES,
            notes("notes", StorageAccess::ReadWrite, (1 << 20, 100, 1 << 16)),
        )
        .build()
        .await;
    let ways_out = [
        "../other",
        "..",
        "a/../../b",
        "./x",
        "/etc/passwd",
        "..\\x",
        "a\0b",
        "%2e%2e/x",
        "%2E%2E%2Fx",
        "%252e%252e/x",
        "~/x",
        "c:x",
        "file:///etc/passwd",
        "\u{FF0E}\u{FF0E}/x",
        "a\u{2215}b",
        "../notes2/secret",
    ];
    let before = chassis.slo_report("notes").unwrap().reputation.score;
    for (i, name) in ways_out.iter().enumerate() {
        let (task, payload) = if i % 2 == 0 {
            ("get", json!({"name": name}))
        } else {
            ("put", json!({"name": name, "note": "x"}))
        };
        let refused = run(&chassis, "notes", task, payload).await.unwrap_err();
        assert!(
            refused.contains("storage invalid name")
                && refused.contains("outside the swarm's namespace"),
            "{name:?}: {refused}"
        );
    }
    // Listing under a way out too.
    let refused = run(&chassis, "notes", "list", json!({"prefix": "../"})).await;
    assert!(
        refused
            .unwrap_err()
            .contains("outside the swarm's namespace")
    );

    let events = storage_events(&chassis.events());
    assert_eq!(events.len(), ways_out.len() + 1, "{events:?}");
    assert!(
        events.iter().all(|(_, _, allowed, v)| !allowed && *v),
        "{events:?}"
    );
    let score = chassis.slo_report("notes").unwrap().reputation;
    assert!(
        score.security_compliance < 1.0 && score.score < before,
        "{score:?}"
    );
    // The audit log verifies and holds each refusal with its name escaped.
    chassis.audit_log().close().unwrap();
    chassis::audit::verify(&audit).unwrap();
    let text = chassis_tests::audit_text(&audit);
    let denied: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["operation"] == "storage_denied")
        .collect();
    assert_eq!(denied.len(), ways_out.len() + 1);
    assert!(
        denied
            .iter()
            .all(|r| r["params"]["security_violation"] == true)
    );
    assert!(
        denied.iter().any(|r| r["params"]["name"] == "a\\u{0}b"),
        "{denied:?}"
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The quota holds exactly: a write that lands on a bound passes, one
/// byte or one object more is refused, and a replacement counts only its
/// difference. (A note of a string of n characters is n + 2 bytes of JSON.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_is_hit_exactly_at_the_bound() {
    quota_is_exact(&Backend::files(scratch_dir("storage-quota"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_the_quota_is_hit_exactly_at_the_bound() {
    let backend = Backend::nats(&scratch_dir("storage-quota-nats"));
    quota_is_exact(&backend).await;
    // An object is one message: over the server's max_payload (1 MiB by
    // default, less 1 KiB of framing) it is too large whatever the quota.
    let store = backend.store().await;
    let quota = chassis::storage::Quota {
        max_bytes: 1 << 30,
        max_objects: 10,
        max_object_bytes: 4 << 20,
    };
    let refused = store
        .set("notes", "big", vec![7; 2 << 20], quota)
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        chassis::storage::StoreError::TooLarge {
            size: 2 << 20,
            max: (1 << 20) - 1024
        }
    );
    store
        .set("notes", "fits", vec![7; (1 << 20) - 1024], quota)
        .await
        .unwrap();
    assert_eq!(
        store.get("notes", "fits").await.unwrap().unwrap().len(),
        (1 << 20) - 1024
    );
    // A delete leaves no marker behind: the bucket holds the objects kept
    // (`b`, `c`, `fits`) and the usage entry, nothing of `a`.
    let Backend::Nats(server) = &backend else {
        unreachable!()
    };
    let bucket = NatsStore::connect(&server.url, 1).await.unwrap();
    assert_eq!(bucket.entry_count().await.unwrap(), 4);
}

/// Three writers on two workers grow, shrink, replace and delete the same
/// few objects at once: the objects kept never pass the quota's count, and
/// when they are done the bytes kept are within it and the usage counted
/// is exactly what is kept (no write leaked its reservation or its give-back,
/// none was counted twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_racing_grows_and_shrinks_keep_the_usage_exact() {
    let backend = Backend::nats(&scratch_dir("storage-race-nats"));
    let stores = [backend.store().await, backend.store().await];
    let quota = chassis::storage::Quota {
        max_bytes: 300,
        max_objects: 3,
        max_object_bytes: 150,
    };
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let store = stores[(w % 2) as usize].clone();
            tokio::spawn(async move {
                // A xorshift generator per writer: the writers' names and
                // sizes differ.
                let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(w + 1);
                for _ in 0..60 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let name = ["x", "y", "z", "w"][(x % 4) as usize];
                    if x.is_multiple_of(7) {
                        store.delete("race", name).await.unwrap();
                        continue;
                    }
                    let size = ((x >> 8) % 150) as usize;
                    match store.set("race", name, vec![1; size], quota).await {
                        Ok(()) | Err(chassis::storage::StoreError::Quota { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    let page = store.list("race", "", None, 10).await.unwrap();
                    assert!(page.keys.len() <= 3, "{page:?}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let store = &stores[0];
    let page = store.list("race", "", None, 10).await.unwrap();
    let mut kept = 0;
    for name in &page.keys {
        kept += store.get("race", name).await.unwrap().unwrap().len() as u64;
    }
    assert!(kept <= 300, "{kept} bytes kept");
    assert_eq!(
        store.usage("race").await.unwrap(),
        chassis::storage::Usage {
            bytes: kept,
            objects: page.keys.len() as u64
        }
    );
}

async fn quota_is_exact(backend: &Backend) {
    let chassis = backend
        .host()
        .await
        .component(
            guests::NOTES,
            notes("notes", StorageAccess::ReadWrite, (100, 2, 60)),
        )
        .build()
        .await;
    let put = |name: &str, chars: usize| {
        let payload = json!({"name": name, "note": "x".repeat(chars)});
        let chassis = &chassis;
        async move { run(chassis, "notes", "put", payload).await }
    };
    assert_eq!(put("a", 58).await.unwrap()["bytes"], 60);
    let too_large = put("b", 59).await.unwrap_err();
    assert!(
        too_large.contains("storage object too large") && too_large.contains("61 bytes"),
        "{too_large}"
    );
    assert_eq!(put("b", 38).await.unwrap()["bytes"], 40);
    let objects = put("c", 0).await.unwrap_err();
    assert!(
        objects.contains("storage quota exceeded") && objects.contains("3 objects"),
        "{objects}"
    );
    let bytes = put("b", 39).await.unwrap_err();
    assert!(
        bytes.contains("storage quota exceeded") && bytes.contains("101 bytes"),
        "{bytes}"
    );
    // Replacing within the bound, and room made by a delete.
    put("a", 50).await.unwrap();
    put("b", 46).await.unwrap();
    run(&chassis, "notes", "delete", json!({"name": "a"}))
        .await
        .unwrap();
    put("c", 0).await.unwrap();
    let usage = run(&chassis, "notes", "usage", json!({})).await.unwrap();
    assert_eq!(
        (usage["bytes"].clone(), usage["objects"].clone()),
        (json!(50), json!(2))
    );
}

/// Tasks writing at once cannot pass the quota together: of 24 notes put
/// by 24 concurrent tasks into room for 10, exactly 10 are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_from_several_tasks_stay_within_the_quota() {
    writers_stay_within_the_quota(Backend::files(scratch_dir("storage-concurrent")), 1).await;
}

/// On NATS, the 24 tasks run on two workers at once, 12 each, sharing one
/// namespace: still exactly 10, and each worker lists the same 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_two_workers_writing_at_once_stay_within_the_quota() {
    let backend = Backend::nats(&scratch_dir("storage-concurrent-nats"));
    writers_stay_within_the_quota(backend, 2).await;
}

async fn writers_stay_within_the_quota(backend: Backend, workers: usize) {
    let mut hosts = Vec::new();
    for _ in 0..workers {
        let host = backend
            .host()
            .await
            .config(|c| chassis::ChassisConfig {
                queue: chassis::QueueConfig {
                    max_queued: 64,
                    max_wait: std::time::Duration::from_secs(60),
                },
                ..c
            })
            .component(
                guests::NOTES,
                notes("notes", StorageAccess::ReadWrite, (1 << 20, 10, 1000)),
            )
            .build()
            .await;
        hosts.push(host);
    }
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let chassis = hosts[i % workers].chassis.clone();
            tokio::spawn(async move {
                run(
                    &chassis,
                    "notes",
                    "put",
                    json!({"name": format!("n/{i}"), "note": i}),
                )
                .await
            })
        })
        .collect();
    let mut kept = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => kept += 1,
            Err(e) => assert!(e.contains("storage quota exceeded"), "{e}"),
        }
    }
    assert_eq!(kept, 10);
    let mut lists = Vec::new();
    for host in &hosts {
        let listed = run(host, "notes", "list", json!({"prefix": "n/"}))
            .await
            .unwrap();
        assert_eq!(listed["names"].as_array().unwrap().len(), 10, "{listed}");
        let usage = run(host, "notes", "usage", json!({})).await.unwrap();
        assert_eq!(usage["objects"], 10, "{usage}");
        lists.push(listed);
    }
    assert!(lists.windows(2).all(|w| w[0] == w[1]), "{lists:?}");
}

/// `read_only` reads and refuses every write; no grant refuses the import
/// at load; a grant on a host without a store is refused at load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_is_enforced_at_load_and_on_every_call() {
    let dir = scratch_dir("storage-grant");
    // Something to read, written under read_write.
    let chassis = TestHost::new()
        .store(&dir)
        .component(
            guests::NOTES,
            notes("notes", StorageAccess::ReadWrite, (1 << 20, 100, 1 << 16)),
        )
        .build()
        .await;
    run(&chassis, "notes", "put", json!({"name": "kept", "note": 7}))
        .await
        .unwrap();
    drop(chassis);
    let chassis = TestHost::new()
        .store(&dir)
        .memory_sink()
        .component(
            guests::NOTES,
            notes("notes", StorageAccess::ReadOnly, (1 << 20, 100, 1 << 16)),
        )
        .build()
        .await;
    let got = run(&chassis, "notes", "get", json!({"name": "kept"})).await;
    assert_eq!(got.unwrap()["note"], 7);
    for (task, payload) in [
        ("put", json!({"name": "kept", "note": 8})),
        ("delete", json!({"name": "kept"})),
    ] {
        let refused = run(&chassis, "notes", task, payload).await.unwrap_err();
        assert!(
            refused.contains("storage denied") && refused.contains("read_only"),
            "{refused}"
        );
    }
    let events = storage_events(&chassis.events());
    assert_eq!(
        events
            .iter()
            .map(|e| (e.0.as_str(), e.2))
            .collect::<Vec<_>>(),
        [("get", true), ("set", false), ("delete", false)]
    );
    drop(chassis);

    let refused = TestHost::new()
        .store(&dir)
        .component(
            guests::NOTES,
            notes("notes", StorageAccess::None, (1, 1, 1)),
        )
        .try_build()
        .await
        .err()
        .unwrap();
    let text = refused.to_string();
    assert!(
        matches!(refused, Error::Load(LoadError::ImportNotPermitted { .. }))
            && text.contains("storage.access"),
        "{text}"
    );
    let refused = TestHost::new()
        .component(
            guests::NOTES,
            notes("notes", StorageAccess::ReadWrite, (1, 1, 1)),
        )
        .try_build()
        .await
        .err()
        .unwrap();
    assert!(
        matches!(refused, Error::Load(LoadError::NoStore { .. })),
        "{refused}"
    );
}

/// The notes swarm in Rust, Python and JavaScript (the storage helpers of
/// `guest-sdk/python` and `guest-sdk/js`) run the same script into
/// namespaces of the same quota: the same results, refusals with the same
/// sentence, and the same storage calls recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_python_javascript_and_assemblyscript_helpers_keep_the_same_objects() {
    let dir = scratch_dir("storage-languages");
    let swarms = [
        ("notes", guests::NOTES),
        ("notes-py", guests::NOTES_PY),
        ("notes-js", guests::NOTES_JS),
        ("notes-as", guests::NOTES_AS),
    ];
    let chassis = swarms
        .iter()
        .fold(
            TestHost::new().store(&dir).memory_sink().config(|c| {
                c.with_cache_dir(chassis_tests::root().join("target/tmp/languages-cache"))
            }),
            |host, (id, guest)| {
                let mut contract = notes(id, StorageAccess::ReadWrite, (90, 4, 64));
                contract.resource_limits.task_timeout_seconds = 30.0;
                host.component(guest, contract)
            },
        )
        .build()
        .await;
    let note = json!({"title": "plan", "items": [1, 2.5, "three", null, {"ok": true}]});
    let script = [
        ("count", json!({"counter": "visits"})),
        ("count", json!({"counter": "visits"})),
        ("put", json!({"name": "docs/a", "note": note})),
        ("put", json!({"name": "docs/b", "note": "héllo ✓"})),
        ("get", json!({"name": "docs/a"})),
        ("get", json!({"name": "docs/b"})),
        ("get", json!({"name": "docs/none"})),
        ("list", json!({"prefix": "docs/"})),
        ("usage", json!({})),
        ("put", json!({"name": "../escape", "note": 1})),
        ("get", json!({"name": "/etc/passwd"})),
        ("put", json!({"name": "docs/big", "note": "x".repeat(70)})),
        ("put", json!({"name": "counters/odd", "note": "abc"})),
        ("count", json!({"counter": "odd"})),
        ("put", json!({"name": "docs/c", "note": 3})),
        ("delete", json!({"name": "docs/a"})),
        ("delete", json!({"name": "docs/a"})),
        ("put", json!({"name": "docs/c", "note": "x".repeat(60)})),
        ("put", json!({"name": "docs/d", "note": 3})),
        ("put", json!({"name": "docs/b", "note": "x".repeat(20)})),
        ("list", json!({})),
        ("count", json!({"counter": "visits"})),
        ("usage", json!({})),
        ("stat", json!({"name": "docs/b"})),
        ("stat", json!({"name": "docs/none"})),
        ("page", json!({"limit": 2})),
        (
            "page",
            json!({"prefix": "", "cursor": "counters/visits", "limit": 2}),
        ),
        (
            "page",
            json!({"prefix": "docs/", "cursor": null, "limit": 0}),
        ),
    ];
    for info in &chassis.loaded {
        assert_eq!(
            info.task_types, chassis.loaded[0].task_types,
            "{}",
            info.swarm_id
        );
    }
    let mut runs: Vec<Vec<Value>> = Vec::new();
    for (id, _) in &swarms {
        let mut results = Vec::new();
        for (task, payload) in &script {
            let o = chassis
                .execute_task(id, TaskRequest::new(*task, payload.clone()))
                .await
                .unwrap();
            results.push(match o.error {
                None => json!({"ok": o.output}),
                Some(e) => json!({"error": e.to_string()}),
            });
        }
        runs.push(results);
    }
    // The Rust swarm's run is the reference; it met each case meant.
    let rust = &runs[0];
    assert_eq!(rust[1]["ok"]["value"], 2);
    assert_eq!(rust[4]["ok"]["note"], note);
    assert_eq!(rust[6]["ok"]["note"], Value::Null);
    for (i, want) in [
        (9, "storage invalid name"),
        (10, "storage invalid name"),
        (11, "storage object too large"),
        (13, "counters/odd is not a counter"),
        (14, "5 objects"),
        (18, "5 objects"),
        (19, "97 bytes"),
    ] {
        let error = rust[i]["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "step {i}: {}", rust[i]);
    }
    assert_eq!(rust[17]["ok"]["bytes"], 62);
    assert_eq!(
        rust[23]["ok"],
        json!({"name": "docs/b", "exists": true, "size": 12})
    );
    assert_eq!(
        rust[24]["ok"],
        json!({"name": "docs/none", "exists": false, "size": null})
    );
    assert_eq!(
        rust[25]["ok"],
        json!({"names": ["counters/odd", "counters/visits"], "cursor": "counters/visits"})
    );
    assert_eq!(
        rust[26]["ok"],
        json!({"names": ["docs/b", "docs/c"], "cursor": null})
    );
    assert_eq!(rust[27]["ok"], rust[26]["ok"]);
    assert_eq!(rust[21]["ok"]["value"], 3);
    for ((id, _), run) in swarms.iter().zip(&runs).skip(1) {
        for (step, (got, want)) in run.iter().zip(rust).enumerate() {
            assert_eq!(got, want, "{id}, step {step} ({:?})", script[step]);
        }
    }
    // The helpers make the same calls: the same operations on the same
    // names, each done or refused alike.
    let events = chassis.events();
    let calls = |id: &str| -> Vec<(String, String, bool, bool, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::StorageAccess {
                    swarm_id,
                    operation,
                    name,
                    allowed,
                    security_violation,
                    bytes,
                    ..
                } if swarm_id == id => Some((
                    operation.clone(),
                    name.clone(),
                    *allowed,
                    *security_violation,
                    *bytes,
                )),
                _ => None,
            })
            .collect()
    };
    let reference = calls("notes");
    assert!(reference.len() > script.len(), "{reference:?}");
    for (id, _) in &swarms[1..] {
        assert_eq!(calls(id), reference, "{id}");
    }
}

/// A guest that keeps calling after it is refused for rate: the task is
/// ended (`TaskError::RateLimited`), and every call is recorded, the one that
/// ended it included, with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_calling_over_its_rate_is_ended_and_each_call_recorded() {
    // `keep`: `exists("a")` in a loop, whatever it is answered.
    let wasm = chassis_tests::wat_swarm_in(
        "storing-swarm",
        r#"(module
          (import "infrafabric:chassis/storage@0.1.0" "exists" (func $exists (param i32 i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "keep")
          (data (i32.const 32) "\10\00\00\00\04\00\00\00")
          (data (i32.const 48) "\20\00\00\00\01\00\00\00")
          (data (i32.const 64) "a")
          (global $next (mut i32) (i32.const 1024))
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $next))
            (global.set $next (i32.add (global.get $next) (local.get 3)))
            (local.get $p))
          (func (export "infrafabric:chassis/task@0.1.0#describe") (result i32)
            (i32.const 48))
          (func (export "infrafabric:chassis/task@0.1.0#execute")
            (param i32 i32 i32 i32 i32 i32) (result i32)
            (loop $again
              (call $exists (i32.const 64) (i32.const 1) (i32.const 128))
              (br $again))
            (unreachable)))"#,
    );
    let dir = scratch_dir("storage-rate");
    let mut contract = notes("keeper", StorageAccess::ReadOnly, (1 << 20, 10, 1000));
    contract.resource_limits.max_api_calls_per_second = 2;
    let chassis = TestHost::new()
        .store(&dir)
        .memory_sink()
        .bytes(wasm, contract)
        .build()
        .await;
    let err = chassis
        .execute_task("keeper", TaskRequest::new("keep", json!({})))
        .await
        .unwrap_err();
    let Error::Task(TaskError::RateLimited { refused, rate, .. }) = err else {
        panic!("expected the task ended for rate, got {err}");
    };
    assert_eq!(rate, 2);
    let events: Vec<(bool, Option<String>)> = chassis
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::StorageAccess {
                operation,
                allowed,
                reason,
                ..
            } if operation == "exists" => Some((*allowed, reason.clone())),
            _ => None,
        })
        .collect();
    let allowed = events.iter().filter(|(ok, _)| *ok).count() as u64;
    // Each call is one record: those let through, those refused, and the
    // last, which ended the task.
    assert_eq!(events.len() as u64, allowed + refused, "{events:?}");
    assert!(allowed >= 1 && refused > 100, "{allowed} {refused}");
    assert_eq!(
        events.last().unwrap(),
        &(false, Some("rate-limited: the task was ended".to_string()))
    );
    assert!(
        events[..events.len() - 1]
            .iter()
            .filter(|(ok, _)| !ok)
            .all(|(_, why)| why.as_deref().is_some_and(|w| w.contains("rate-limited"))),
        "{events:?}"
    );
}

/// A store that never answers in time.
struct Stalled;

impl chassis::storage::Store for Stalled {
    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> chassis::storage::StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::pending())
    }
    fn set<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Vec<u8>,
        _: chassis::storage::Quota,
    ) -> chassis::storage::StoreFuture<'a, ()> {
        Box::pin(std::future::pending())
    }
    fn delete<'a>(&'a self, _: &'a str, _: &'a str) -> chassis::storage::StoreFuture<'a, bool> {
        Box::pin(std::future::pending())
    }
    fn stat<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> chassis::storage::StoreFuture<'a, Option<chassis::storage::ObjectInfo>> {
        Box::pin(std::future::pending())
    }
    fn list<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a str>,
        _: usize,
    ) -> chassis::storage::StoreFuture<'a, chassis::storage::Page> {
        Box::pin(std::future::pending())
    }
    fn usage<'a>(
        &'a self,
        _: &'a str,
    ) -> chassis::storage::StoreFuture<'a, chassis::storage::Usage> {
        Box::pin(std::future::pending())
    }
}

/// An embedder's store that does not answer: the call is given up at the
/// task's deadline, recorded as `unavailable` (a write as one that may
/// still be made), and the host goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_answer_is_given_up_at_the_deadline() {
    let contract = ServiceContract::builder("notes")
        .wasi_capability("wasi:io/streams")
        .storage(StorageAccess::ReadWrite)
        .task_timeout_seconds(0.5)
        .with(|c| c.reputation.max_failure_rate_percent = 100.0)
        .build()
        .unwrap();
    let chassis = TestHost::new()
        .config(|c| c.with_store(std::sync::Arc::new(Stalled)))
        .memory_sink()
        .component(guests::NOTES, contract)
        .build()
        .await;
    for (task, payload, expected) in [
        (
            "get",
            json!({"name": "a"}),
            "did not answer within the task's deadline",
        ),
        (
            "put",
            json!({"name": "a", "note": 1}),
            "the write may still be made",
        ),
    ] {
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            chassis.execute_task("notes", TaskRequest::new(task, payload)),
        )
        .await;
        assert!(ended.is_ok(), "{task}: the task hung on the store");
        let events = chassis.events();
        let recorded = events.iter().rev().find_map(|e| match e {
            Event::StorageAccess {
                reason, allowed, ..
            } => Some((reason.clone(), *allowed)),
            _ => None,
        });
        let (reason, allowed) = recorded.unwrap_or_else(|| panic!("{task}: no storage record"));
        let reason = reason.unwrap_or_default();
        assert!(!allowed && reason.contains(expected), "{task}: {reason}");
    }
    // The host serves on.
    assert!(chassis.list().iter().any(|s| s.swarm_id == "notes"));
}
