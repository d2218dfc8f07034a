//! Scale-out over NATS JetStream with real processes: a real `nats-server`
//! (installed by `cargo xtask build` under `target/tools/nats/`) on an
//! ephemeral 127.0.0.1 port with a temporary store, several `chassis serve
//! --nats` workers, and the client library. What `docs/scale-out.md`
//! promises: every task has exactly one result, even when a worker is
//! killed mid-run; a guest's fault is a final result, not a redelivery.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chassis::TaskRequest;
use chassis::serve::queue::{Queue, QueueResult, ResultStatus, Streams};
use common::{Nats, Server, root, scratch};
use serde_json::json;

/// One test at a time: each starts a NATS server and several worker
/// processes, and their timing (a worker killed while it holds a task)
/// should not depend on how many others run beside it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A worker's configuration: its audit log, and a short acknowledgement
/// slack so a killed worker's tasks come back within seconds.
fn worker_config(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let audit = dir.join(format!("{name}-audit.jsonl"));
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "shutdown_grace_seconds = 5.0\nwatch = false\n\
             [audit]\npath = {audit:?}\nfsync = \"always\"\n\
             [nats]\nack_slack_seconds = 1.0\nmax_deliveries = 3\n"
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
async fn results(queue: &Queue, ids: &[String], timeout: Duration) -> HashMap<String, QueueResult> {
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
        .unwrap();

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
            .arg(audit)
            .output()
            .unwrap()
    };
    // The queue's figures: nothing left waiting, and the redeliveries the
    // survivors took.
    let workers: Vec<(Server, PathBuf)> = workers.collect();
    let mut redelivered = 0;
    for (server, _) in &workers {
        let text = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every record names its worker, and the mirror holds the log's head.
        let text = std::fs::read_to_string(&audit).unwrap();
        assert!(
            text.lines()
                .all(|l| l.contains(&format!("\"worker\":\"{name}\"")))
        );
        let out = against_mirror(&audit, name);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        survivors.push((audit, name, text));
    }
    // A log cut short is caught against the mirror's head.
    let (audit, name, text) = &survivors[0];
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(audit, lines[..lines.len() - 3].join("\n") + "\n").unwrap();
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_fault_is_one_final_result_and_a_dying_task_is_abandoned() {
    let _serial = SERIAL.lock().await;
    let dir = scratch("queue-faults");
    let nats = Nats::start(&dir);
    let (worker, audit) = start_worker(&dir, &nats, "w1");
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap();

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
    let records = std::fs::read_to_string(&audit).unwrap();
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
    let records = std::fs::read_to_string(&last_audit).unwrap();
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
        .unwrap();

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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        .unwrap();
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
        .unwrap();
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        .unwrap();
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
    let client = async_nats::connect(&nats.url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "once-again");
    let body =
        serde_json::to_vec(&TaskRequest::new("hello", json!({"name": "twice"})).with_id("once"))
            .unwrap();
    jetstream
        .publish_with_headers("chassis.tasks.hello", headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    // It is taken and acknowledged: nothing is left waiting ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.figures("hello").await.unwrap() != Some((0, 0)) {
        assert!(Instant::now() < deadline, "still queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... without running: one start in the audit log, the first result kept.
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let records = std::fs::read_to_string(&audit).unwrap();
    let starts = records
        .lines()
        .filter(|l| l.contains("\"task_start\"") && l.contains("\"task_id\":\"once\""))
        .count();
    assert_eq!(starts, 1, "{records}");
    let kept = queue.result("once").await.unwrap().unwrap();
    assert_eq!(kept.outcome.unwrap().output["greeting"], "Hello, once!");
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
        .unwrap();
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
    let records = std::fs::read_to_string(&audit).unwrap();
    assert!(!records.contains("<b>"), "{records}");
}
