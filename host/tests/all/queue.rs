//! Scale-out over NATS JetStream with real processes: a real `nats-server`
//! (installed by `cargo xtask build` under `target/tools/nats/`) on an
//! ephemeral 127.0.0.1 port with a temporary store, several `chassis serve
//! --nats` workers, and the client library. What `docs/scale-out.md`
//! promises: every task has exactly one result, even when a worker is
//! killed mid-run; a guest's fault is a final result, not a redelivery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Nats, Server, root, scratch};
use chassis::TaskRequest;
use chassis::serve::queue::trust::{Trust, WorkerKey};
use chassis::serve::queue::{Queue, QueueResult, ResultStatus, Streams};
use serde_json::json;

/// One test at a time: each starts a NATS server and several worker
/// processes, and their timing (a worker killed while it holds a task)
/// should not depend on how many others run beside it.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The signing key the test workers share.
fn test_key() -> WorkerKey {
    WorkerKey::from_seed([42; 32])
}

/// The test workers' key files in `dir`: the secret one (mode 600) and
/// the public one.
fn key_files(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (private, public) = (dir.join("worker.key"), dir.join("worker.pub"));
    if !private.exists() {
        let key = test_key();
        std::fs::write(&private, key.to_file_text().as_bytes()).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&public, key.public_file_text()).unwrap();
    }
    (private, public)
}

/// Believe the test workers' results.
fn trusted() -> Trust {
    Trust::Workers(vec![test_key().public()])
}

/// A worker's configuration: its audit log, its signing key, and a short
/// acknowledgement slack so a killed worker's tasks come back within
/// seconds.
fn worker_config(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let audit = dir.join(format!("{name}-audit.jsonl"));
    let config = dir.join(format!("{name}.toml"));
    let (key, _) = key_files(dir);
    std::fs::write(
        &config,
        format!(
            "shutdown_grace_seconds = 5.0\nwatch = false\n\
             [audit]\npath = {audit:?}\nfsync = \"always\"\nsegment_max_bytes = 16384\n\
             [nats]\nack_slack_seconds = 1.0\nmax_deliveries = 3\nheartbeat_seconds = 0.5\n\
             signing_key = {key:?}\n"
        ),
    )
    .unwrap();
    (config, audit)
}

/// Two swarms with short timeouts: hello-world, and the bench probe, whose
/// `hold` task keeps a slot busy for a while.
fn contracts(dir: &Path) -> Vec<PathBuf> {
    let swarms = root().join("target/swarms");
    let hello = dir.join("hello.toml");
    std::fs::write(
        &hello,
        format!(
            "swarm_id = \"hello\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_concurrent_tasks = 4\ntask_timeout_seconds = 2.0\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
            swarms.join("hello_world.wasm")
        ),
    )
    .unwrap();
    let probe = dir.join("probe.toml");
    std::fs::write(
        &probe,
        format!(
            "swarm_id = \"probe\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_concurrent_tasks = 4\ntask_timeout_seconds = 5.0\n\
             [security]\nscoped_credentials = [\"bench_token\"]\n\
             wasi_capabilities = [\"wasi:clocks/monotonic-clock\", \"wasi:clocks/wall-clock\"]\n",
            swarms.join("bench_probe.wasm")
        ),
    )
    .unwrap();
    let misbehave = dir.join("misbehave.toml");
    std::fs::write(
        &misbehave,
        format!(
            "swarm_id = \"misbehave\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_concurrent_tasks = 2\ntask_timeout_seconds = 2.0\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
            swarms.join("misbehave.wasm")
        ),
    )
    .unwrap();
    // Quarantined by a single failure: a window of one task.
    let fragile = dir.join("fragile.toml");
    std::fs::write(
        &fragile,
        format!(
            "swarm_id = \"fragile\"\nwasm_module = {:?}\n\
             [resource_limits]\ntask_timeout_seconds = 2.0\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [reputation]\nfailure_window = 1\nmax_failure_rate_percent = 10\n",
            swarms.join("misbehave.wasm")
        ),
    )
    .unwrap();
    let notes = dir.join("notes.toml");
    std::fs::write(
        &notes,
        format!(
            "swarm_id = \"notes\"\nwasm_module = {:?}\n\
             [resource_limits]\ntask_timeout_seconds = 5.0\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [storage]\naccess = \"read_write\"\n",
            swarms.join("notes.wasm")
        ),
    )
    .unwrap();
    vec![hello, probe, misbehave, fragile, notes]
}

fn start_worker(dir: &Path, nats: &Nats, name: &str) -> (Server, PathBuf) {
    start_worker_with(dir, nats, name, "")
}

/// Worker `name` on `nats` serving `contract` only.
fn start_worker_on(dir: &Path, nats: &Nats, name: &str, contract: &Path) -> Server {
    let (config, _) = worker_config(dir, name);
    Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--nats",
        &nats.url,
        "--worker-id",
        name,
        contract.to_str().unwrap(),
    ])
}

/// [`start_worker`] with `more` added to its `[nats]` table.
fn start_worker_with(dir: &Path, nats: &Nats, name: &str, more: &str) -> (Server, PathBuf) {
    let (config, audit) = worker_config(dir, name);
    if !more.is_empty() {
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("{text}{more}\n")).unwrap();
    }
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--nats".to_string(),
        nats.url.clone(),
        "--worker-id".to_string(),
        name.to_string(),
    ];
    args.extend(contracts(dir).iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(&args), audit)
}

/// Wait for every task's result; each must come, within `timeout` in all.
pub(crate) async fn results(
    queue: &Queue,
    ids: &[String],
    timeout: Duration,
) -> HashMap<String, QueueResult> {
    let deadline = Instant::now() + timeout;
    let mut found = HashMap::new();
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = queue
            .wait(id, left.max(Duration::from_millis(1)))
            .await
            .unwrap_or_else(|e| panic!("{e} ({} of {} found)", found.len(), ids.len()));
        found.insert(id.clone(), result);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_has_one_result_when_a_worker_is_killed_mid_run() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-kill");
    let nats = Nats::start(&dir);
    let workers: Vec<(Server, PathBuf)> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| start_worker(&dir, &nats, name))
        .collect();
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());

    let mut ids = Vec::new();
    for i in 0..2000 {
        let request = if i % 2 == 0 {
            TaskRequest::new("hello", json!({ "name": format!("n{i}") }))
        } else {
            TaskRequest::new("hold", json!({ "ms": 2 }))
        };
        let swarm = if i % 2 == 0 { "hello" } else { "probe" };
        ids.push(
            queue
                .submit(swarm, request.with_id(format!("task-{i}")))
                .await
                .unwrap(),
        );
    }
    // A resubmitted task id is dropped by the queue.
    queue
        .submit(
            "hello",
            TaskRequest::new("hello", json!({})).with_id("task-0"),
        )
        .await
        .unwrap();

    // Kill one worker once a part of the tasks is done.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if queue.result("task-600").await.unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut workers = workers.into_iter();
    let (mut killed, killed_audit) = workers.next().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();

    let found = results(&queue, &ids, Duration::from_secs(180)).await;
    assert_eq!(found.len(), 2000);
    for (i, id) in ids.iter().enumerate() {
        let result = &found[id];
        assert_eq!(result.status, ResultStatus::Success, "{id}: {result:?}");
        let output = &result.outcome.as_ref().unwrap().output;
        if i % 2 == 0 {
            assert_eq!(output["greeting"], format!("Hello, n{i}!"), "{id}");
        } else {
            assert!(output["spins"].as_u64().is_some(), "{id}");
        }
    }
    // The killed worker's tasks in hand were delivered again and answered
    // once, by another worker.
    let again: Vec<_> = found.values().filter(|r| r.deliveries > 1).collect();
    assert!(!again.is_empty(), "no task was delivered twice");
    assert!(again.iter().all(|r| r.worker != "w1"), "{again:?}");
    // The survivors did the rest, and every worker took a share.
    let by_worker = found.values().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.worker.clone()).or_insert(0) += 1;
        m
    });
    assert!(by_worker.len() >= 2, "{by_worker:?}");

    // Each audit log verifies: the killed one up to its last whole record.
    let verify = |audit: &Path| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["audit", "verify"])
            .arg(audit)
            .output()
            .unwrap()
    };
    let against_mirror = |audit: &Path, worker: &str| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["audit", "verify", "--nats", &nats.url, "--worker", worker])
            .arg("--worker-key")
            .arg(key_files(&dir).1)
            .arg(audit)
            .output()
            .unwrap()
    };
    // The queue's figures: nothing left waiting, and the redeliveries the
    // survivors took.
    let workers: Vec<(Server, PathBuf)> = workers.collect();
    let mut redelivered = 0;
    for (server, _) in &workers {
        let text = crate::common::metrics(server).await;
        assert!(
            text.contains("chassis_queue_pending{swarm=\"hello\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("chassis_queue_in_flight{swarm=\"probe\"} 0"),
            "{text}"
        );
        redelivered += text
            .lines()
            .filter(|l| l.starts_with("chassis_queue_redeliveries_total"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>();
    }
    // At least the tasks answered on a second delivery; more when the
    // killed worker had published a result but not yet acknowledged its
    // task (that delivery is acknowledged without running).
    assert!(
        redelivered as usize >= again.len(),
        "{redelivered} < {}",
        again.len()
    );
    let mut survivors = Vec::new();
    for ((server, audit), name) in workers.into_iter().zip(["w2", "w3"]) {
        assert_eq!(server.terminate(Duration::from_secs(30)).code(), Some(0));
        let out = verify(&audit);
        crate::common::assert_ok(&out);
        // Every record names its worker, and the mirror holds the log's head.
        let text = crate::common::audit_text(&audit);
        assert!(
            text.lines()
                .all(|l| l.contains(&format!("\"worker\":\"{name}\"")))
        );
        let out = against_mirror(&audit, name);
        crate::common::assert_ok(&out);
        survivors.push((audit, name, text));
    }
    // A log cut short is caught against the mirror's head.
    let (audit, name, text) = &survivors[0];
    // The log spans segments (their checkpoints mirrored like any
    // record); the last three task records go, and what follows them.
    assert!(chassis::audit::segments(audit).unwrap().len() > 2);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tasks: Vec<u64> = records
        .iter()
        .filter(|r| r["operation"].as_str().unwrap().starts_with("task_"))
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    crate::common::cut_audit(audit, tasks[tasks.len() - 4]);
    assert!(
        verify(audit).status.success(),
        "a shorter chain is still a chain"
    );
    let out = against_mirror(audit, name);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cut from its end"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SIGKILL cannot cut a record in half (each is one write, synced).
    let out = verify(&killed_audit);
    crate::common::assert_ok(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_fault_is_one_final_result_and_a_dying_task_is_abandoned() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-faults");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());

    // A trap and a timeout: failed results naming the kind, delivered once.
    let trap = queue
        .submit(
            "misbehave",
            TaskRequest::new("trap", json!({})).with_id("trap-1"),
        )
        .await
        .unwrap();
    let spin = queue
        .submit(
            "misbehave",
            TaskRequest::new("spin", json!({})).with_id("spin-1"),
        )
        .await
        .unwrap();
    for (id, kind) in [(trap, "trap"), (spin, "timeout")] {
        let result = queue.wait(&id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(result.status, ResultStatus::Failed, "{result:?}");
        assert_eq!(result.error.as_ref().unwrap().kind, kind, "{result:?}");
        assert_eq!(result.deliveries, 1);
    }
    // The worker goes on serving.
    let ok = queue
        .submit("hello", TaskRequest::new("hello", json!({"name": "after"})))
        .await
        .unwrap();
    let result = queue.wait(&ok, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Success);
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    // One run each: one terminal record.
    let records = crate::common::audit_text(&audit);
    for id in ["trap-1", "spin-1"] {
        let ends = records
            .lines()
            .filter(|l| {
                l.contains(&format!("\"task_id\":\"{id}\"")) && l.contains("\"task_failed\"")
            })
            .count();
        assert_eq!(ends, 1, "{id}: {records}");
    }

    // A task whose worker dies every time: each worker is killed while it
    // holds it, until the queue gives it up after max_deliveries (3).
    let doomed = queue
        .submit(
            "probe",
            TaskRequest::new("hold", json!({"ms": 60_000})).with_id("doomed"),
        )
        .await
        .unwrap();
    for round in 0..3 {
        let (mut worker, _) = start_worker(&dir, &nats, &format!("d{round}"));
        // Wait until it runs the task, then kill it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = reqwest::get(worker.url("/v1/swarms/probe"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if body.contains("\"tasks_running\":1") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the task never ran: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.child.kill().unwrap();
        worker.child.wait().unwrap();
    }
    let (last, last_audit) = start_worker(&dir, &nats, "d3");
    let result = queue.wait(&doomed, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Abandoned, "{result:?}");
    assert_eq!(result.deliveries, 4);
    assert_eq!(last.terminate(Duration::from_secs(30)).code(), Some(0));
    let records = crate::common::audit_text(&last_audit);
    assert!(records.contains("\"task_abandoned\""), "{records}");
}

/// Whether `server` has `swarm` quarantined now.
async fn quarantined(server: &Server, swarm: &str) -> bool {
    let body = reqwest::get(server.url(&format!("/v1/swarms/{swarm}")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    summary["quarantined"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_on_one_worker_stops_the_swarm_on_all_until_released() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-quarantine");
    let nats = Nats::start(&dir);
    let (w1, _) = start_worker(&dir, &nats, "w1");
    let (w2, _) = start_worker(&dir, &nats, "w2");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());

    // One trap quarantines the swarm on the worker that ran it ...
    let trap = queue
        .submit("fragile", TaskRequest::new("trap", json!({})))
        .await
        .unwrap();
    let result = queue.wait(&trap, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Failed);
    // ... and, through the fleet's bucket, on the other.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(quarantined(&w1, "fragile").await && quarantined(&w2, "fragile").await) {
        assert!(Instant::now() < deadline, "not quarantined on both workers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A task for it waits in the queue: no worker takes it.
    let waiting = queue
        .submit("fragile", TaskRequest::new("burn", json!({"rounds": 10})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(queue.result(&waiting).await.unwrap().is_none());
    // Other swarms are served meanwhile.
    let other = queue
        .submit("hello", TaskRequest::new("hello", json!({})))
        .await
        .unwrap();
    let result = queue.wait(&other, Duration::from_secs(30)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Success);

    // The operator's release reaches every worker; the task runs.
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["release", "--nats", &nats.url, "fragile"])
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
    let result = queue.wait(&waiting, Duration::from_secs(30)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Success, "{result:?}");
    assert!(!quarantined(&w1, "fragile").await && !quarantined(&w2, "fragile").await);
}

/// Workers keep a swarm's objects in the JetStream bucket they share: a
/// counter bumped on one worker, then the other, then the first, counts
/// on from wherever it was last written (each worker's own directory
/// would count 1, 1, 2, 2); a note put through one is read through the
/// other and listed by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_swarms_objects() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-storage");
    let nats = Nats::start(&dir);
    let (w1, _) = start_worker(&dir, &nats, "w1");
    let (w2, _) = start_worker(&dir, &nats, "w2");
    let client = reqwest::Client::new();
    let task = |worker: &Server, body: serde_json::Value| {
        let request = client
            .post(worker.url("/v1/swarms/notes/tasks"))
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("the task is answered");
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "{status}: {text}");
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    for (n, worker) in [&w1, &w2, &w1, &w2].into_iter().enumerate() {
        let out = task(
            worker,
            json!({"task_type": "count", "payload": {"counter": "visits"}}),
        )
        .await;
        assert_eq!(out["output"]["value"], n + 1, "{out}");
    }
    task(
        &w1,
        json!({"task_type": "put", "payload": {"name": "docs/a", "note": {"by": "w1"}}}),
    )
    .await;
    let got = task(
        &w2,
        json!({"task_type": "get", "payload": {"name": "docs/a"}}),
    )
    .await;
    assert_eq!(got["output"]["note"], json!({"by": "w1"}), "{got}");
    for worker in [&w1, &w2] {
        let listed = task(
            worker,
            json!({"task_type": "list", "payload": {"prefix": ""}}),
        )
        .await;
        assert_eq!(
            listed["output"]["names"],
            json!(["counters/visits", "docs/a"]),
            "{listed}"
        );
    }
}

/// With `nats.shared_storage = false` each worker keeps its own objects
/// in its own `storage_dir`: the same counter counts 1, 1, 2, 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shared_storage_each_worker_keeps_its_own_objects() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-own-storage");
    let nats = Nats::start(&dir);
    let workers: Vec<Server> = ["w1", "w2"]
        .iter()
        .map(|name| start_worker_with(&dir, &nats, name, "shared_storage = false").0)
        .collect();
    let client = reqwest::Client::new();
    let mut counted = Vec::new();
    for worker in [&workers[0], &workers[1], &workers[0], &workers[1]] {
        let response = client
            .post(worker.url("/v1/swarms/notes/tasks"))
            .body(r#"{"task_type": "count", "payload": {"counter": "visits"}}"#)
            .send()
            .await
            .expect("the task is answered");
        let out: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        counted.push(out["output"]["value"].clone());
    }
    assert_eq!(counted, [json!(1), json!(1), json!(2), json!(2)]);
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> i32 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    i32::from(listener.local_addr().unwrap().port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_is_lost_when_nats_server_restarts_mid_run() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-restart");
    let port = free_port();
    let mut nats = Nats::start_on(&dir, port);
    let (w1, _) = start_worker(&dir, &nats, "w1");
    let (w2, _) = start_worker(&dir, &nats, "w2");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    let mut ids = Vec::new();
    for i in 0..400 {
        let request = TaskRequest::new("hello", json!({ "name": format!("r{i}") }))
            .with_id(format!("restart-{i}"));
        ids.push(queue.submit("hello", request).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue.result("restart-50").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The server goes down hard and comes back on the same port and store.
    nats.child.kill().unwrap();
    nats.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let nats = Nats::start_on(&dir, port);
    // Submitting again after the restart is safe: the same ids are dropped.
    for i in 300..400 {
        let request = TaskRequest::new("hello", json!({ "name": format!("r{i}") }))
            .with_id(format!("restart-{i}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = queue.submit("hello", request.clone()).await {
            assert!(Instant::now() < deadline, "resubmitting: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let found = results(&queue, &ids, Duration::from_secs(120)).await;
    for (i, id) in ids.iter().enumerate() {
        let result = &found[id];
        assert_eq!(result.status, ResultStatus::Success, "{id}: {result:?}");
        let output = &result.outcome.as_ref().unwrap().output;
        assert_eq!(output["greeting"], format!("Hello, r{i}!"));
    }
    drop((w1, w2, nats));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_holds_more_tasks_than_the_swarm_has_slots() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-slots");
    let nats = Nats::start(&dir);
    let (worker, _) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    let mut ids = Vec::new();
    for _ in 0..24 {
        ids.push(
            queue
                .submit("probe", TaskRequest::new("hold", json!({"ms": 150})))
                .await
                .unwrap(),
        );
    }
    // The probe has 4 slots: never more taken and unacknowledged at once.
    let mut most = 0;
    while queue.result(ids.last().unwrap()).await.unwrap().is_none() {
        if let Some((_, in_flight)) = queue.figures("probe").await.unwrap() {
            assert!(in_flight <= 4, "{in_flight} tasks taken at once");
            most = most.max(in_flight);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most, 4, "the slots were used");
    results(&queue, &ids, Duration::from_secs(60)).await;
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chassis_submit_puts_tasks_on_the_queue_and_waits_for_their_results() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-submit");
    let nats = Nats::start(&dir);
    let (worker, _) = start_worker(&dir, &nats, "w1");
    let submit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["submit", "--nats", &nats.url, "--swarm", "hello"])
            .arg("--worker-key")
            .arg(key_files(&dir).1)
            .args(args)
            .output()
            .unwrap()
    };
    let out = submit(&[
        "--task",
        "hello",
        "--payload",
        r#"{"name": "Ada"}"#,
        "--wait",
    ]);
    crate::common::assert_ok(&out);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "success");
    assert_eq!(result["outcome"]["output"]["greeting"], "Hello, Ada!");

    // Tasks from a JSON-lines file: one line per result, in order.
    let file = dir.join("tasks.jsonl");
    std::fs::write(
        &file,
        "{\"task_type\": \"hello\", \"payload\": {\"name\": \"a\"}, \"task_id\": \"f1\"}\n\n\
         {\"task_type\": \"add\", \"payload\": {\"a\": 9223372036854775807, \"b\": 1}, \"task_id\": \"f2\"}\n",
    )
    .unwrap();
    let out = submit(&["--file", file.to_str().unwrap(), "--wait"]);
    // The second task fails (its sum overflows): status 1, both printed.
    assert!(!out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["task_id"], "f1");
    assert_eq!(lines[0]["status"], "success");
    assert_eq!(lines[1]["task_id"], "f2");
    assert_eq!(lines[1]["status"], "failed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not every task succeeded"));

    // Without --wait: the ids; a bad line is named.
    std::fs::write(&file, "{\"task_type\": \"hello\"}\n").unwrap();
    let out = submit(&["--file", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("payload"), "{err}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_result_exists_is_acknowledged_without_running_again() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-again");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    let id = queue
        .submit(
            "hello",
            TaskRequest::new("hello", json!({"name": "once"})).with_id("once"),
        )
        .await
        .unwrap();
    let first = queue.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(first.status, ResultStatus::Success);

    // The same task again under another message id (as after the
    // duplicate window, or from a submitter that lost its ack).
    let twice = TaskRequest::new("hello", json!({"name": "twice"})).with_id("once");
    publish_by_hand(&nats, "hello", "once-again", &twice).await;
    // It is taken and acknowledged: nothing is left waiting ...
    until_drained(&queue, "hello").await;
    // ... without running: one start in the audit log, the first result kept.
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let records = crate::common::audit_text(&audit);
    assert_eq!(starts(&records, "once"), 1, "{records}");
    let kept = queue.result("once").await.unwrap().unwrap();
    assert_eq!(kept.outcome.unwrap().output["greeting"], "Hello, once!");
}

/// The tasks one pull delivers are looked up together: of several taken
/// at once, those whose results exist are acknowledged without running,
/// and the others run, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_looked_up_together_run_only_those_without_a_result() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-again-many");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    let quick = || json!({"ms": 0});
    let old: Vec<String> = (0..3).map(|i| format!("old-{i}")).collect();
    for id in &old {
        queue
            .submit(
                "probe",
                TaskRequest::new("hold", quick()).with_id(id.as_str()),
            )
            .await
            .unwrap();
    }
    results(&queue, &old, Duration::from_secs(60)).await;
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    // While no worker runs: the three answered tasks again, under other
    // message ids, then two new ones. The worker started next takes the
    // first four in one pull (the probe's slots).
    let new: Vec<String> = (0..2).map(|i| format!("new-{i}")).collect();
    for (n, id) in old.iter().chain(&new).enumerate() {
        let again = TaskRequest::new("hold", quick()).with_id(id.as_str());
        publish_by_hand(&nats, "probe", &format!("again-{n}"), &again).await;
    }
    let (worker, _) = start_worker(&dir, &nats, "w1");
    results(&queue, &new, Duration::from_secs(60)).await;
    until_drained(&queue, "probe").await;
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let records = crate::common::audit_text(&audit);
    for id in old.iter().chain(&new) {
        let started = starts(&records, id);
        assert_eq!(started, 1, "{id} started {started} times:\n{records}");
    }
}

/// Put `request` on `swarm`'s queue by hand, under the message id `msg_id`
/// (as a second submitter, or one after the duplicate window, would).
async fn publish_by_hand(nats: &Nats, swarm: &str, msg_id: &str, request: &TaskRequest) {
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    let body = serde_json::to_vec(request).unwrap();
    jetstream
        .publish_with_headers(format!("chassis.tasks.{swarm}"), headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Wait until nothing of `swarm`'s is waiting or taken and unacknowledged.
async fn until_drained(queue: &Queue, swarm: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.figures(swarm).await.unwrap() != Some((0, 0)) {
        assert!(Instant::now() < deadline, "still queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many `task_start` records of task `id` the audit text holds.
fn starts(records: &str, id: &str) -> usize {
    let id = format!("\"task_id\":\"{id}\"");
    records
        .lines()
        .filter(|l| l.contains("\"task_start\"") && l.contains(&id))
        .count()
}

/// A look-up of several results answers whole when its one direct get is
/// cut short at its byte limit, and when the stream refuses direct gets:
/// what the one answer left out is asked task by task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_up_cut_short_or_refused_is_finished_task_by_task() {
    use chassis::serve::queue::{RESULTS_STREAM, result_subject};
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-look-up");
    let nats = Nats::start(&dir);
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap();
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let answered: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    for id in &answered {
        jetstream
            .publish(result_subject(id), vec![b'x'; 2048].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut asked: Vec<&str> = answered.iter().map(String::as_str).collect();
    asked.extend(["x0", "x1"]);
    let want: std::collections::HashSet<String> = answered.iter().cloned().collect();
    let none = std::collections::HashSet::new();
    // One whole answer; one stopped after its first result; none found.
    assert_eq!(
        queue.results_found_within(&asked, 1 << 20).await.unwrap(),
        want
    );
    assert_eq!(queue.results_found_within(&asked, 1).await.unwrap(), want);
    assert_eq!(
        queue
            .results_found_within(&["x0", "x1"], 1 << 20)
            .await
            .unwrap(),
        none
    );
    // A stream that answers no direct get (as one made elsewhere might).
    let mut results = jetstream.get_stream(RESULTS_STREAM).await.unwrap();
    let mut config = results.info().await.unwrap().config.clone();
    config.allow_direct = false;
    jetstream.update_stream(config).await.unwrap();
    assert_eq!(
        queue.results_found_within(&asked, 1 << 20).await.unwrap(),
        want
    );
    assert_eq!(
        queue.results_found_within(&["x0"], 1 << 20).await.unwrap(),
        none
    );
}

/// A task id the host would not record as it is: `submit` refuses it, and
/// a worker given one anyway (published by hand) answers a failed result
/// without running or recording it, and goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_with_a_refused_id_is_answered_not_run() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-bad-id");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    let bad = "line\nbreak<b>";
    let refused = queue
        .submit("hello", TaskRequest::new("hello", json!({})).with_id(bad))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("\\u{a}"), "{refused}");
    // By hand: no message id (a header cannot hold the line break).
    let client = async_nats::connect(&nats.url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let body = serde_json::to_vec(&TaskRequest::new("hello", json!({})).with_id(bad)).unwrap();
    jetstream
        .publish("chassis.tasks.hello", body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let result = queue.wait(bad, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Failed, "{result:?}");
    let error = result.error.unwrap();
    assert_eq!(error.kind, "invalid_payload", "{error:?}");
    assert!(error.message.contains("task id refused"), "{error:?}");
    let ok = queue
        .submit("hello", TaskRequest::new("hello", json!({"name": "next"})))
        .await
        .unwrap();
    let next = queue.wait(&ok, Duration::from_secs(60)).await.unwrap();
    assert_eq!(next.status, ResultStatus::Success);
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let records = crate::common::audit_text(&audit);
    assert!(!records.contains("<b>"), "{records}");
}

/// A task run again after the duplicate window has passed does not replace
/// its first result, however late the second ends: a result is published
/// only while its subject is empty (`Nats-Expected-Last-Subject-Sequence:
/// 0`), so the second is refused and its task acknowledged. Here the same
/// task id is submitted again once the window (1 s) has passed, while its
/// first run still holds it; both run, and the second ends well past the
/// window after the first's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_result_after_the_duplicate_window_leaves_the_first() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-late-second");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker_with(&dir, &nats, "w1", "duplicate_window_seconds = 1.0");
    let window = Duration::from_secs(1);
    let streams = Streams {
        duplicate_window: window,
        ..Streams::default()
    };
    // Results read as published, signed or not: a closed test set-up.
    let queue = Queue::connect(&nats.url, &streams)
        .await
        .unwrap()
        .trusting(trusted());
    let submitted = Instant::now();
    queue
        .submit(
            "probe",
            TaskRequest::new("hold", json!({"ms": 3000})).with_id("late"),
        )
        .await
        .unwrap();
    tokio::time::sleep_until((submitted + window + Duration::from_millis(500)).into()).await;
    queue
        .submit(
            "probe",
            TaskRequest::new("hold", json!({"ms": 3500})).with_id("late"),
        )
        .await
        .unwrap();
    let first = queue.wait("late", Duration::from_secs(60)).await.unwrap();
    assert_eq!(first.status, ResultStatus::Success, "{first:?}");

    // Both runs end, and both deliveries are acknowledged.
    let records = || crate::common::audit_text(&audit);
    let count = |operation: &str| {
        records()
            .lines()
            .filter(|l| l.contains(operation) && l.contains("\"task_id\":\"late\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("\"task_complete\"") < 2 || queue.figures("probe").await.unwrap() != Some((0, 0)) {
        assert!(
            Instant::now() < deadline,
            "the second run did not end: {}",
            records()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count("\"task_start\""), 2, "{}", records());
    // The first result stands, and it is the only one ever stored.
    let kept = queue.result("late").await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&kept).unwrap(),
        serde_json::to_value(&first).unwrap()
    );
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut results = jetstream
        .get_stream(chassis::serve::queue::RESULTS_STREAM)
        .await
        .unwrap();
    let state = results.info().await.unwrap().state.clone();
    assert_eq!((state.messages, state.last_sequence), (1, 1), "{state:?}");
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
}

/// Wait until a live worker's heartbeat says it serves `swarm`.
async fn until_served(queue: &Queue, swarm: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.serving(swarm).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no heartbeat serves {swarm}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Any client of the NATS server can publish to a result's subject: a
/// result no trusted worker signed is refused by `Queue::wait` and by
/// `chassis submit --wait` (unsigned, or signed by a stranger's key), a
/// reader that chose no keys is told how to, and the worker's own signed
/// results are believed; the audit mirror's records are each checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_not_signed_by_a_trusted_worker_are_refused() {
    use chassis::serve::queue::trust::Signed;
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-forged");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    until_served(&queue, "hello").await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let forged = |task_id: &str| {
        serde_json::to_vec(&json!({
            "task_id": task_id, "swarm_id": "hello", "worker": "w1",
            "status": "success", "outcome": {"status": "success", "output": {"greeting": "forged"}},
            "deliveries": 1
        }))
        .unwrap()
    };
    // Unsigned, before any worker runs the task.
    let subject = chassis::serve::queue::result_subject("forged-1");
    jetstream
        .publish(subject, forged("forged-1").into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Signed, by a key no reader trusts, for a task of its own.
    let stranger = WorkerKey::from_seed([9; 32]);
    let subject = chassis::serve::queue::result_subject("forged-2");
    let body = forged("forged-2");
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in stranger.sign(Signed::Result, &subject, &body) {
        headers.insert(name, value.as_str());
    }
    jetstream
        .publish_with_headers(subject, headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    for (id, why) in [
        ("forged-1", "not signed by a worker"),
        ("forged-2", "not a trusted worker key"),
    ] {
        queue
            .submit("hello", TaskRequest::new("hello", json!({})).with_id(id))
            .await
            .unwrap();
        let e = queue.wait(id, Duration::from_secs(10)).await.unwrap_err();
        assert!(e.to_string().contains(why), "{id}: {e}");
        let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["submit", "--nats", &nats.url, "--swarm", "hello", "--wait"])
            .args(["--task", "hello", "--task-id", id, "--timeout", "10"])
            .arg("--worker-key")
            .arg(key_files(&dir).1)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("forged"));
    }
    // A reader that trusts no one is told what to give.
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["submit", "--nats", &nats.url, "--swarm", "hello", "--wait"])
        .args(["--task", "hello"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--worker-key"),
        "{stderr}"
    );
    // The worker's own results are believed.
    let id = queue
        .submit("hello", TaskRequest::new("hello", json!({"name": "real"})))
        .await
        .unwrap();
    let result = queue.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.outcome.unwrap().output["greeting"], "Hello, real!");
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    // Every mirrored record is signed; a verifier trusting another key
    // refuses the first.
    let verify = |key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["audit", "verify", "--nats", &nats.url, "--worker", "w1"])
            .arg("--worker-key")
            .arg(key)
            .arg(&audit)
            .output()
            .unwrap()
    };
    let out = verify(&key_files(&dir).1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    crate::common::assert_ok(&out);
    assert!(
        stdout.contains("each signed by a trusted worker key"),
        "{stdout}"
    );
    let other = dir.join("other.pub");
    std::fs::write(&other, stranger.public_file_text()).unwrap();
    let out = verify(&other);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mirrored audit record") && stderr.contains("not a trusted worker key"),
        "{stderr}"
    );
}

/// Workers say what they serve: `chassis submit` refuses at once a task
/// for a swarm no live worker serves (and submits it with
/// `--allow-unserved`), `chassis fleet` and `/v1/fleet` list the live
/// workers and their swarms, and a worker that stops leaves the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_refuses_a_swarm_no_live_worker_serves_and_fleet_lists_the_workers() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-fleet");
    let nats = Nats::start(&dir);
    let (worker, _) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    until_served(&queue, "hello").await;
    let chassis = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(args)
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let out = chassis(&[
        "submit",
        "--nats",
        &nats.url,
        "--swarm",
        "nobody-serves",
        "--task",
        "hello",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no live worker serves swarm \"nobody-serves\"")
            && stderr.contains("w1 (")
            && stderr.contains("--allow-unserved"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(8), "not at once");
    assert_eq!(queue.figures("nobody-serves").await.unwrap(), None);
    let out = chassis(&[
        "submit",
        "--nats",
        &nats.url,
        "--swarm",
        "nobody-serves",
        "--task",
        "hello",
        "--allow-unserved",
        "--task-id",
        "early",
    ]);
    crate::common::assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"early\""));

    // The fleet, from the command line and from the worker.
    let out = chassis(&["fleet", "--nats", &nats.url, "--json"]);
    crate::common::assert_ok(&out);
    let fleet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let workers = fleet["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{fleet}");
    assert_eq!(workers[0]["worker"], "w1");
    assert_eq!(workers[0]["signer"], test_key().public_hex());
    let hello = workers[0]["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["swarm_id"] == "hello")
        .unwrap();
    assert_eq!(hello["slots"], 4);
    assert_eq!(hello["free_slots"], 4);
    let out = chassis(&["fleet", "--nats", &nats.url]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("w1 (live") && table.contains("hello 1.0: 4/4 slots free"),
        "{table}"
    );
    let body: serde_json::Value = serde_json::from_str(
        &reqwest::get(worker.url("/v1/fleet"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["workers"][0]["worker"], "w1", "{body}");

    // A worker that stops leaves the list.
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    assert!(queue.serving("hello").await.unwrap().is_empty());
    let out = chassis(&["fleet", "--nats", &nats.url]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no live workers"
    );
}

/// The least-privilege roles of `docs/nats-server.conf`, with nats-server
/// run on that very file: a submitter can submit and read its results, but
/// the server refuses its forged result, quarantine entry, heartbeat and
/// audit record, its attempt to purge the results, and its release; even a
/// worker cannot purge or delete results or audit records; and everything
/// a worker and an operator do works under their roles (tasks, the audit
/// mirror, heartbeats, shared objects, a fleet-wide quarantine, a release,
/// the mirror's verification).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_roles_hold_each_client_to_its_subjects() {
    use chassis::serve::config::NatsAuth;
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-roles");
    let passwords = [
        ("CHASSIS_NATS_WORKER_PASSWORD", "worker-secret-1"),
        ("CHASSIS_NATS_SUBMITTER_PASSWORD", "submitter-secret-2"),
        ("CHASSIS_NATS_OPERATOR_PASSWORD", "operator-secret-3"),
        ("CHASSIS_NATS_DEPLOYER_PASSWORD", "deployer-secret-4"),
    ];
    let nats = Nats::start_with_config(&dir, &root().join("docs/nats-server.conf"), &passwords);
    // This process's clients read their passwords from files.
    let as_user = |user: &str, name: &str| {
        let (_, password) = passwords
            .iter()
            .find(|(v, _)| v.contains(&name.to_uppercase()))
            .unwrap();
        let file = dir.join(format!("{name}.password"));
        std::fs::write(&file, password).unwrap();
        NatsAuth {
            user: Some(user.to_string()),
            password_file: Some(file),
            ..Default::default()
        }
    };
    // The worker signs in as `worker`; without credentials nothing works.
    let refused = Queue::open(&nats.url).await;
    assert!(refused.is_err(), "an anonymous client was let in");
    let (config, audit) = worker_config(&dir, "w1");
    let text = std::fs::read_to_string(&config).unwrap();
    // It serves the fleet's deployments too, signed by the deployer's key.
    let deployer_key = WorkerKey::from_seed([61; 32]);
    let (deployer_private, deployer_public) = (dir.join("deployer.key"), dir.join("deployer.pub"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&deployer_private, deployer_key.to_file_text().as_bytes()).unwrap();
        std::fs::set_permissions(&deployer_private, std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(&deployer_public, deployer_key.public_file_text()).unwrap();
    }
    std::fs::write(
        &config,
        format!(
            "{text}deployments = true\ntrusted_deployers = [{deployer_public:?}]\n\
             [nats.auth]\nuser = \"worker\"\npassword_env = \"CHASSIS_NATS_WORKER_PASSWORD\"\n"
        ),
    )
    .unwrap();
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--nats".to_string(),
        nats.url.clone(),
        "--worker-id".to_string(),
        "w1".to_string(),
    ];
    args.extend(contracts(&dir).iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let worker = Server::start_with_env(&args, &passwords);

    let submitter = as_user("submitter", "submitter");
    let queue = Queue::open_as(&nats.url, &submitter)
        .await
        .unwrap()
        .trusting(trusted());
    until_served(&queue, "hello").await;
    // What a submitter may do.
    let id = queue
        .submit("hello", TaskRequest::new("hello", json!({"name": "role"})))
        .await
        .unwrap();
    let result = queue.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.outcome.unwrap().output["greeting"], "Hello, role!");
    // And through the command line, with the credentials from a variable.
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["submit", "--nats", &nats.url, "--swarm", "hello", "--wait"])
        .args(["--task", "hello", "--payload", r#"{"name": "cli"}"#])
        .args([
            "--nats-user",
            "submitter",
            "--nats-password-env",
            "CHASSIS_NATS_SUBMITTER_PASSWORD",
        ])
        .arg("--worker-key")
        .arg(key_files(&dir).1)
        .envs(passwords)
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello, cli!"));

    // What it may not: each attempt is refused by the server.
    let client = async_nats::ConnectOptions::with_user_and_password(
        "submitter".into(),
        "submitter-secret-2".into(),
    )
    .connect(&nats.url)
    .await
    .unwrap();
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    let forged_id = "forged-by-submitter";
    let attempts = [
        (
            chassis::serve::queue::result_subject(forged_id),
            json!({"task_id": forged_id, "swarm_id": "hello", "worker": "w1", "status": "success", "deliveries": 1}),
        ),
        (
            "$KV.chassis_health.hello".to_string(),
            json!({"quarantined": true, "reason": "forged", "by": "w1"}),
        ),
        (
            "$KV.chassis_workers.ghost".to_string(),
            json!({"worker": "ghost", "heartbeat_seconds": 5.0, "last_seen_ms": 0, "swarms": []}),
        ),
        (
            "chassis.audit.w1".to_string(),
            json!({"seq": 999999, "hash": "00"}),
        ),
        (
            "$KV.chassis_deployments.hello".to_string(),
            json!({"body": "{}", "signer": "00", "signature": "00"}),
        ),
        (
            "$O.chassis_bundles.M.Yi1mb3JnZWQ=".to_string(),
            json!({"name": "b-forged"}),
        ),
    ];
    for (subject, body) in &attempts {
        let published = match js
            .publish(subject.clone(), serde_json::to_vec(body).unwrap().into())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        assert!(!published, "{subject}: the server took it");
    }
    let stream = js.get_stream("CHASSIS_RESULTS").await.unwrap();
    assert!(
        stream.purge().await.is_err(),
        "a submitter purged the results"
    );
    // As the operator sees it: none of it landed.
    let operator = Queue::open_as(&nats.url, &as_user("operator", "operator"))
        .await
        .unwrap()
        .trusting(Trust::InsecureUnsigned);
    assert!(operator.result(forged_id).await.unwrap().is_none());
    assert!(operator.result(&id).await.unwrap().is_some());
    let workers = operator.workers().await.unwrap();
    assert!(workers.iter().all(|w| w.worker != "ghost"), "{workers:?}");
    assert!(!quarantined(&worker, "hello").await);
    let check = chassis::serve::queue::mirror::verify_mirror(&operator, "w1", &trusted())
        .await
        .unwrap();
    assert!(check.head.unwrap().seq < 999999);
    // A deployer deploys under its role, and the worker, under its own,
    // reads the bundle and serves it.
    let contract = dir.join("deployed.toml");
    std::fs::write(
        &contract,
        format!(
            "swarm_id = \"deployed-hello\"\nversion = \"3.1.0\"\nwasm_module = {:?}\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
            root().join("target/swarms/hello_world.wasm")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args([
            "deploy",
            contract.to_str().unwrap(),
            "--nats",
            &nats.url,
            "--wait",
            "30",
        ])
        .arg("--key")
        .arg(&deployer_private)
        .args([
            "--nats-user",
            "deployer",
            "--nats-password-env",
            "CHASSIS_NATS_DEPLOYER_PASSWORD",
        ])
        .envs(passwords)
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("converged: serving on w1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let id = queue
        .submit(
            "deployed-hello",
            TaskRequest::new("hello", json!({"name": "d"})),
        )
        .await
        .unwrap();
    let result = queue.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(result.outcome.unwrap().version, "3.1.0");
    // A deployer cannot submit a task nor write a heartbeat.
    let as_deployer = async_nats::ConnectOptions::with_user_and_password(
        "deployer".into(),
        "deployer-secret-4".into(),
    )
    .connect(&nats.url)
    .await
    .unwrap();
    let mut js = async_nats::jetstream::new(as_deployer);
    js.set_timeout(Duration::from_secs(2));
    for subject in ["chassis.tasks.hello", "$KV.chassis_workers.ghost"] {
        let published = match js.publish(subject, "{}".into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        assert!(!published, "{subject}: the server took it from a deployer");
    }

    // Even a worker cannot remove results or audit records, nor write a
    // deployment or a bundle.
    let as_worker = async_nats::ConnectOptions::with_user_and_password(
        "worker".into(),
        "worker-secret-1".into(),
    )
    .connect(&nats.url)
    .await
    .unwrap();
    let mut js = async_nats::jetstream::new(as_worker);
    js.set_timeout(Duration::from_secs(2));
    for subject in [
        "$KV.chassis_deployments.hello",
        "$O.chassis_bundles.M.Yi1mb3JnZWQ=",
    ] {
        let published = match js.publish(subject, "{}".into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        assert!(!published, "{subject}: the server took it from a worker");
    }
    for name in ["CHASSIS_RESULTS", "CHASSIS_AUDIT"] {
        let stream = js.get_stream(name).await.unwrap();
        assert!(stream.purge().await.is_err(), "a worker purged {name}");
        assert!(
            stream.delete_message(1).await.is_err(),
            "a worker deleted a message of {name}"
        );
        assert!(
            js.delete_stream(name).await.is_err(),
            "a worker deleted {name}"
        );
    }

    // Everything a worker does works under its role: objects kept, listed
    // and deleted in the shared bucket, a quarantine written to the fleet's
    // bucket, and the operator's release taken from it.
    for (task, payload) in [
        ("put", json!({"name": "a", "note": {"text": "kept"}})),
        ("get", json!({"name": "a"})),
        ("list", json!({"prefix": ""})),
        ("delete", json!({"name": "a"})),
    ] {
        let id = queue
            .submit("notes", TaskRequest::new(task, payload))
            .await
            .unwrap();
        let result = queue.wait(&id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(result.status, ResultStatus::Success, "{task}: {result:?}");
        if task == "list" {
            assert_eq!(
                result.outcome.unwrap().output["names"],
                json!(["a"]),
                "{task}"
            );
        }
    }
    let trap = queue
        .submit("fragile", TaskRequest::new("trap", json!({})))
        .await
        .unwrap();
    queue.wait(&trap, Duration::from_secs(60)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !quarantined(&worker, "fragile").await {
        assert!(Instant::now() < deadline, "not quarantined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["release", "--nats", &nats.url, "fragile"])
        .args([
            "--nats-user",
            "operator",
            "--nats-password-env",
            "CHASSIS_NATS_OPERATOR_PASSWORD",
        ])
        .envs(passwords)
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
    let deadline = Instant::now() + Duration::from_secs(10);
    while quarantined(&worker, "fragile").await {
        assert!(
            Instant::now() < deadline,
            "the release did not reach the worker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A submitter cannot release it.
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["release", "--nats", &nats.url, "fragile"])
        .args([
            "--nats-user",
            "submitter",
            "--nats-password-env",
            "CHASSIS_NATS_SUBMITTER_PASSWORD",
        ])
        .envs(passwords)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The worker's audit mirror verifies as the operator reads it.
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["audit", "verify", "--nats", &nats.url, "--worker", "w1"])
        .args([
            "--nats-user",
            "operator",
            "--nats-password-env",
            "CHASSIS_NATS_OPERATOR_PASSWORD",
        ])
        .arg("--worker-key")
        .arg(key_files(&dir).1)
        .arg(&audit)
        .envs(passwords)
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
}

/// A swarm whose slot count changes (its contract reloaded) gets a new
/// pull loop; the old one hands out what it fetched and what its pending
/// pull brings before it ends, so no task is lost to it and waits for a
/// redelivery: every task is answered on its first delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_change_drops_no_fetched_task() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-slots");
    let nats = Nats::start(&dir);
    let (config, _) = worker_config(&dir, "w1");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("watch = false", "watch = true");
    std::fs::write(&config, text).unwrap();
    let probe = dir.join("probe.toml");
    let write_probe = |slots: u32| {
        std::fs::write(
            &probe,
            format!(
                "swarm_id = \"probe\"\nwasm_module = {:?}\n\
                 [resource_limits]\nmax_concurrent_tasks = {slots}\ntask_timeout_seconds = 5.0\n\
                 [security]\nscoped_credentials = [\"bench_token\"]\n\
                 wasi_capabilities = [\"wasi:clocks/monotonic-clock\", \"wasi:clocks/wall-clock\"]\n",
                root().join("target/swarms/bench_probe.wasm")
            ),
        )
        .unwrap();
    };
    write_probe(4);
    let worker = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--nats",
        &nats.url,
        "--worker-id",
        "w1",
        probe.to_str().unwrap(),
    ]);
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    until_served(&queue, "probe").await;
    // Tasks trickle in while the slot count changes under them.
    let mut ids = Vec::new();
    for (round, slots) in [3u32, 2, 4, 1, 3].into_iter().enumerate() {
        for i in 0..10 {
            let request =
                TaskRequest::new("hold", json!({ "ms": 5 })).with_id(format!("slots-{round}-{i}"));
            ids.push(queue.submit("probe", request).await.unwrap());
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        write_probe(slots);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let found = results(&queue, &ids, Duration::from_secs(60)).await;
    for (id, result) in &found {
        assert_eq!(result.status, ResultStatus::Success, "{id}: {result:?}");
        assert_eq!(
            result.deliveries, 1,
            "{id} waited for a redelivery: {result:?}"
        );
    }
    drop(worker);
}

/// A `tls://` NATS server is reached with the CA file it chains to
/// (`nats.auth.tls_ca_file`, `--nats-ca`), and refused without it: the
/// client does not take a certificate it cannot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_is_reached_through_its_ca_file_only() {
    use chassis::serve::config::NatsAuth;
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-tls");
    let (ca, cert, key) = chassis_test_support::TestCa::new().write_pem(&dir);
    let conf = dir.join("tls.conf");
    std::fs::write(
        &conf,
        format!("tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n}}\n"),
    )
    .unwrap();
    let nats = Nats::start_with_config(&dir, &conf, &[]);
    let url = nats.url.replace("nats://", "tls://");
    let with_ca = NatsAuth {
        tls_ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let queue = Queue::connect_as(&url, &with_ca, &Streams::default()).await;
    assert!(queue.is_ok(), "{:?}", queue.err());
    let refused = Queue::connect_as(&url, &NatsAuth::default(), &Streams::default())
        .await
        .err()
        .expect("a server certificate no trusted CA issued is refused");
    assert!(
        refused.to_string().contains("connecting to NATS"),
        "{refused}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["fleet", "--nats", &url, "--nats-ca"])
        .arg(&ca)
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no live workers"
    );
}

/// A server that knows its users by nkey lets in the client whose seed
/// file it is given (`nats.auth.nkey_file`, `--nats-nkey`) and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_user_signs_in_with_its_seed_file() {
    use chassis::serve::config::NatsAuth;
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-nkey");
    let user = nkeys::KeyPair::new_user();
    let seed = dir.join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let conf = dir.join("nkey.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{\n  users = [ {{ nkey: {:?} }} ]\n}}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let nats = Nats::start_with_config(&dir, &conf, &[]);
    let with_seed = NatsAuth {
        nkey_file: Some(seed.clone()),
        ..Default::default()
    };
    let queue = Queue::connect_as(&nats.url, &with_seed, &Streams::default()).await;
    assert!(queue.is_ok(), "{:?}", queue.err());
    let stranger = dir.join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    for auth in [
        NatsAuth::default(),
        NatsAuth {
            nkey_file: Some(stranger),
            ..Default::default()
        },
    ] {
        assert!(
            Queue::open_as(&nats.url, &auth).await.is_err(),
            "let in with {auth:?}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["fleet", "--nats", &nats.url, "--nats-nkey"])
        .arg(&seed)
        .output()
        .unwrap();
    crate::common::assert_ok(&out);
}

/// A server that takes a token lets in the client given it from an
/// environment variable (`nats.auth.token_env`, `--nats-token-env`) or a
/// file (`token_file`, `--nats-token-file`), and no other; the token
/// appears in no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_taken_from_a_variable_or_a_file_never_the_command_line() {
    use chassis::serve::config::NatsAuth;
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-token");
    let token = "a-token-of-the-fleet-0123456789";
    let conf = dir.join("token.conf");
    std::fs::write(
        &conf,
        "authorization {\n  token: $CHASSIS_TEST_NATS_TOKEN\n}\n",
    )
    .unwrap();
    let nats = Nats::start_with_config(&dir, &conf, &[("CHASSIS_TEST_NATS_TOKEN", token)]);
    let file = dir.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let from_file = NatsAuth {
        token_file: Some(file.clone()),
        ..Default::default()
    };
    let queue = Queue::connect_as(&nats.url, &from_file, &Streams::default()).await;
    assert!(queue.is_ok(), "{:?}", queue.err());
    std::fs::write(dir.join("wrong"), "not-the-token").unwrap();
    let wrong = NatsAuth {
        token_file: Some(dir.join("wrong")),
        ..Default::default()
    };
    let e = Queue::open_as(&nats.url, &wrong).await.err().unwrap();
    assert!(!e.to_string().contains("not-the-token"), "{e}");
    let fleet = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["fleet", "--nats", &nats.url])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let out = fleet(
        &["--nats-token-env", "FLEET_TOKEN"],
        &[("FLEET_TOKEN", token)],
    );
    crate::common::assert_ok(&out);
    let out = fleet(&["--nats-token-file", file.to_str().unwrap()], &[]);
    crate::common::assert_ok(&out);
    // Not set, or not given: refused, naming the variable.
    let out = fleet(&["--nats-token-env", "FLEET_TOKEN_UNSET"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("FLEET_TOKEN_UNSET"),
        "{stderr}"
    );
    let out = fleet(&[], &[]);
    assert!(!out.status.success());
    // There is no flag that takes the token itself.
    let out = fleet(&["--nats-token", token], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains(token), "{stderr}");
}

/// `chassis submit --capability`: each task goes to a swarm chosen from
/// the live workers' heartbeats — here `alpha` on w1 and `beta` on w2,
/// both declaring `demo:hello` — weighted by reputation; a swarm under its
/// selection threshold (its heartbeat says why) is not chosen, and a
/// capability nobody serves is refused before anything is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_addressed_to_a_capability_reach_the_workers_that_serve_it() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-capability");
    let nats = Nats::start(&dir);
    let contract = |id: &str, more: &str| {
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "swarm_id = \"{id}\"\nwasm_module = {:?}\ncapabilities = [\"demo:hello\"]\n\
                 [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n{more}",
                root().join("target/swarms/hello_world.wasm")
            ),
        )
        .unwrap();
        path
    };
    let w1 = start_worker_on(&dir, &nats, "w1", &contract("alpha", ""));
    let _w2 = start_worker_on(&dir, &nats, "w2", &contract("beta", ""));
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    until_served(&queue, "alpha").await;
    until_served(&queue, "beta").await;
    // Each worker counts the live workers (what `ChassisFleetWorkerMissing` reads).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = crate::common::metrics(&w1).await;
        if metrics.lines().any(|l| l == "chassis_fleet_workers 2") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let submit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["submit", "--nats", &nats.url, "--task", "hello"])
            .args(args)
            .output()
            .unwrap()
    };
    let chosen = |out: &std::process::Output| -> Vec<String> {
        crate::common::assert_ok(out);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["capability"], "demo:hello", "{v}");
                v["swarm_id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let tasks: String = (0..20)
        .map(|i| format!("{{\"task_type\": \"hello\", \"payload\": {{\"name\": \"n{i}\"}}}}\n"))
        .collect();
    let file = dir.join("tasks.jsonl");
    std::fs::write(&file, &tasks).unwrap();
    let batch = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args(["submit", "--nats", &nats.url, "--capability", "demo:hello"])
            .args(["--seed", seed, "--file", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = chosen(&batch("7"));
    assert_eq!(first.len(), 20);
    assert!(
        first.iter().any(|s| s == "alpha") && first.iter().any(|s| s == "beta"),
        "{first:?}"
    );
    // Each was answered by a worker serving the swarm chosen.
    let ids: Vec<String> = String::from_utf8_lossy(&batch("7").stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["task_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for (id, result) in results(&queue, &ids, Duration::from_secs(60)).await {
        assert_eq!(result.status, ResultStatus::Success, "{id}");
        let expected = if result.swarm_id == "alpha" {
            "w1"
        } else {
            "w2"
        };
        assert_eq!(result.worker, expected);
    }

    // beta asks for a score it cannot have (1.0): restarted so, its
    // heartbeat says so, and the choices leave it out.
    drop(_w2);
    let _w2 = start_worker_on(
        &dir,
        &nats,
        "w2",
        &contract("beta", "[reputation]\nselection_threshold = 1.0\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let workers = queue.workers().await.unwrap();
        let beta = workers
            .iter()
            .flat_map(|w| w.swarms.iter())
            .find(|s| s.swarm_id == "beta");
        if beta.is_some_and(|s| {
            s.excluded
                .as_deref()
                .is_some_and(|e| e.contains("selection threshold 1.000"))
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat says beta is left out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = chosen(&batch("7"));
    assert!(after.iter().all(|s| s == "alpha"), "{after:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["fleet", "--nats", &nats.url])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("serves demo:hello (score ")
            && table.contains("serves demo:hello (not chosen: reputation"),
        "{table}"
    );

    let out = submit(&["--capability", "demo:nobody"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no live worker serves a swarm that declares capability \"demo:nobody\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A worker takes none of a swarm's tasks while its circuit is open: they
/// wait in the stream through the cool-down, the first taken after it is
/// the probe, and none is answered `circuit_open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_takes_no_task_of_a_swarm_whose_circuit_is_open() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-circuit");
    let nats = Nats::start(&dir);
    let contract = dir.join("flaky.toml");
    std::fs::write(
        &contract,
        format!(
            "swarm_id = \"flaky\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_concurrent_tasks = 4\n\
             [throttle]\ncircuit_failures = 2\ncool_down_seconds = 3\nmin_concurrency = 4\n",
            root().join("target/swarms/hog.wasm")
        ),
    )
    .unwrap();
    let _worker = start_worker_on(&dir, &nats, "w1", &contract);
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(trusted());
    until_served(&queue, "flaky").await;
    let submit = |task_type: &'static str, n: usize| {
        let queue = &queue;
        async move {
            let mut ids = Vec::new();
            for _ in 0..n {
                let request = TaskRequest::new(task_type, json!({"rounds": 10}));
                ids.push(queue.submit("flaky", request).await.unwrap());
            }
            ids
        }
    };
    // Two failures in a row open the circuit.
    for id in submit("fail", 2).await {
        let result = queue.wait(&id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(result.status, ResultStatus::Failed, "{result:?}");
    }
    let opened = Instant::now();
    // Four slots stay takeable (`min_concurrency`): only the circuit holds
    // the worker back.
    let ids = submit("burn", 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        assert!(
            queue.result(id).await.unwrap().is_none(),
            "{id} was answered while the circuit was open"
        );
    }
    // Left in the stream: no pull is made while the circuit is open (a
    // pull already waiting when it opened may take one, which is handed
    // back, not answered).
    let (pending, in_flight) = queue.figures("flaky").await.unwrap().unwrap();
    assert!(
        pending + in_flight == 4 && in_flight <= 1,
        "{pending} pending, {in_flight} taken"
    );
    // After the cool-down the probe succeeds and the rest follow.
    for (id, result) in results(&queue, &ids, Duration::from_secs(60)).await {
        assert_eq!(result.status, ResultStatus::Success, "{id}: {result:?}");
        assert!(result.deliveries <= 2, "{id}: {result:?}");
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(3),
        "answered before the cool-down ended"
    );
}
