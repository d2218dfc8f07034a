//! `chassis serve` as a real process on an ephemeral 127.0.0.1 port, with
//! a real HTTP client: the routes, how host errors map to statuses, a
//! bystander beside a hostile guest, and a graceful stop on SIGTERM that
//! leaves a verified audit log with one terminal record per task.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Server, fragile_contract, root, scratch};
use serde_json::{Value, json};

/// A contract for the hostile `misbehave` guest, short limits.
fn hostile_contract(dir: &Path) -> PathBuf {
    hostile_contract_with(dir, 0.5)
}

/// The same with a task timeout of `timeout` seconds.
fn hostile_contract_with(dir: &Path, timeout: f64) -> PathBuf {
    let path = dir.join("misbehave.toml");
    std::fs::write(
        &path,
        format!(
            "swarm_id = \"misbehave\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_memory_mb = 16\ntask_timeout_seconds = {timeout:?}\nmax_concurrent_tasks = 2\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
            root().join("target/swarms/misbehave.wasm"),
        ),
    )
    .unwrap();
    path
}

/// POST a task; the status and the JSON body.
async fn task(client: &reqwest::Client, server: &Server, swarm: &str, body: &str) -> (u16, Value) {
    let response = client
        .post(server.url(&format!("/v1/swarms/{swarm}/tasks")))
        .body(body.to_string())
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> (u16, String) {
    let response = client.get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn every_route_answers_and_host_errors_map_to_their_statuses() {
    let dir = scratch("routes");
    let hostile = hostile_contract(&dir);
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "swarm_id = \"broken\"\nwasm_module = \"missing.wasm\"\n",
    )
    .unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(&config, "max_body_bytes = 4096\n").unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "config/hello-world.toml",
        hostile.to_str().unwrap(),
        broken.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();

    // A task, its payload passed as the client wrote it.
    let (status, body) = task(
        &c,
        &server,
        "hello-world",
        r#"{"task_type": "hello", "payload": {"name": "Ada"}, "task_id": "http-1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["task_id"], "http-1");
    assert_eq!(body["output"], json!({"greeting": "Hello, Ada!"}));
    assert!(body["usage"]["wall_ms"].as_f64().unwrap() > 0.0);
    // The swarm's own error is a normal answer.
    let (status, body) = task(
        &c,
        &server,
        "hello-world",
        &format!(
            r#"{{"task_type": "add", "payload": {{"a": {}, "b": 1}}}}"#,
            i64::MAX
        ),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("failed")),
        "{body}"
    );
    assert_eq!(body["error"]["kind"], "failed");
    // The host's refusals: unknown swarm or task type, a hostile guest
    // stopped by its limits, and bodies that are not tasks.
    let cases = [
        ("nope", "hello", 404, "registry"),
        ("hello-world", "nope", 422, "task_not_exported"),
        ("misbehave", "spin", 504, "timeout"),
        ("misbehave", "memory_bomb", 500, "memory"),
        ("misbehave", "trap", 500, "trap"),
    ];
    let mut requests: Vec<(&str, String, u16, &str)> = cases
        .iter()
        .map(|&(swarm, task_type, status, kind)| {
            let body = format!(r#"{{"task_type": "{task_type}", "payload": {{}}}}"#);
            (swarm, body, status, kind)
        })
        .collect();
    for bad in [
        r#"{"task_type": "hello", "payload": "#,
        r#"{"payload": {}}"#,
    ] {
        requests.push(("hello-world", bad.to_string(), 400, "invalid_request"));
    }
    for (swarm, request, want_status, want_kind) in requests {
        let (status, body) = task(&c, &server, swarm, &request).await;
        assert_eq!(status, want_status, "{swarm} {request}: {body}");
        assert_eq!(
            body["error"]["kind"], want_kind,
            "{swarm} {request}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // A body over max_body_bytes is refused before it is read whole.
    let big = format!(
        r#"{{"task_type": "echo", "payload": "{}"}}"#,
        "x".repeat(8192)
    );
    let (status, body) = task(&c, &server, "hello-world", &big).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );

    // Swarms, one swarm, an unknown one.
    let (status, text) = get(&c, &server, "/v1/swarms").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = list["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["swarm_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hello-world", "misbehave"]);
    let (status, text) = get(&c, &server, "/v1/swarms/hello-world").await;
    assert_eq!(status, 200);
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(one["task_types"], json!(["hello", "echo", "add"]));
    assert!(one["slo"]["tasks"].as_u64().unwrap() >= 2, "{one}");
    assert_eq!(one["quarantined"], false);
    assert!(one["reputation"]["score"].as_f64().is_some());
    assert_eq!(get(&c, &server, "/v1/swarms/nope").await.0, 404);
    assert_eq!(get(&c, &server, "/no/such/route").await.0, 404);

    // Alive; ready, with the contract that did not load named.
    assert_eq!(
        get(&c, &server, "/healthz").await,
        (200, "ok\n".to_string())
    );
    let (status, text) = get(&c, &server, "/readyz").await;
    assert_eq!(status, 200, "{text}");
    let ready: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ready["loaded"], json!(["hello-world", "misbehave"]));
    let failed = ready["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{ready}");
    assert!(
        failed[0]["contract"]
            .as_str()
            .unwrap()
            .ends_with("broken.toml")
    );
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("missing.wasm"),
        "{ready}"
    );

    // Metrics with their types: counters by outcome and limit, a latency
    // histogram, gauges.
    let (status, text) = get(&c, &server, "/metrics").await;
    assert_eq!(status, 200);
    for want in [
        "# TYPE chassis_tasks counter",
        r#"chassis_tasks_total{swarm="hello-world",outcome="success"} 1"#,
        r#"chassis_tasks_total{swarm="hello-world",outcome="guest_error"} 1"#,
        r#"chassis_tasks_total{swarm="misbehave",outcome="timeout"} 1"#,
        r#"chassis_limit_violations_total{swarm="misbehave",limit="memory"} 1"#,
        "# TYPE chassis_task_duration_seconds histogram",
        r#"chassis_task_duration_seconds_bucket{le="+Inf",swarm="hello-world"} 2"#,
        r#"chassis_tasks_in_flight{swarm="hello-world"} 0"#,
        r#"chassis_quarantined{swarm="misbehave"} 0"#,
        "# EOF",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_bystander_stays_correct_over_http_while_a_hostile_guest_misbehaves() {
    let dir = scratch("bystander");
    let hostile = hostile_contract(&dir);
    let server = Server::start(&["config/hello-world.toml", hostile.to_str().unwrap()]);
    let c = reqwest::Client::new();
    let attacks = ["spin", "memory_bomb", "log_flood", "trap"];
    let mut hostile_tasks = Vec::new();
    for round in 0..3 {
        for attack in attacks {
            let c = c.clone();
            let url = server.url("/v1/swarms/misbehave/tasks");
            let body = format!(
                r#"{{"task_type": "{attack}", "payload": {{"lines": 100000}}, "task_id": "{attack}-{round}"}}"#
            );
            hostile_tasks.push(tokio::spawn(async move {
                c.post(url)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        for i in 0..5 {
            let name = format!("Ada{round}{i}");
            let (status, body) = task(
                &c,
                &server,
                "hello-world",
                &format!(r#"{{"task_type": "hello", "payload": {{"name": "{name}"}}}}"#),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["output"]["greeting"], format!("Hello, {name}!"));
        }
    }
    for t in hostile_tasks {
        // Each hostile task got an answer (refused, stopped or done): the
        // server held.
        let status = t.await.unwrap().expect("the server answered");
        assert!(matches!(status, 200 | 429 | 500 | 503 | 504), "{status}");
    }
    assert_eq!(get(&c, &server, "/healthz").await.0, 200);
}

#[tokio::test]
async fn sigterm_stops_the_server_with_a_verified_audit_log() {
    let dir = scratch("sigterm");
    let audit = dir.join("audit.jsonl");
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "shutdown_grace_seconds = 5\n[audit]\npath = {:?}\nfsync = \"interval:100\"\n",
            audit
        ),
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "config/hello-world.toml",
    ]);
    let c = reqwest::Client::new();
    let n = 20;
    for i in 0..n {
        let (status, _) = task(
            &c,
            &server,
            "hello-world",
            &format!(
                r#"{{"task_type": "add", "payload": {{"a": {i}, "b": 1}}, "task_id": "t{i}"}}"#
            ),
        )
        .await;
        assert_eq!(status, 200);
    }
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let verified = chassis::audit::verify(&audit).expect("the audit log verifies");
    assert!(verified.records > 0);
    let records = chassis::audit::events(&audit).unwrap();
    let terminal = |id: &str| {
        records
            .iter()
            .filter(|r| {
                matches!(&r.event,
                    chassis::Event::TaskComplete { task_id, .. }
                    | chassis::Event::TaskFailed { task_id, .. } if task_id == id)
            })
            .count()
    };
    for i in 0..n {
        assert_eq!(terminal(&format!("t{i}")), 1, "task t{i}");
    }
}

/// Every terminal record (`task_complete`, `task_failed`) of `task`, as
/// (kind, error) pairs.
fn endings(audit: &Path, task: &str) -> Vec<String> {
    chassis::audit::events(audit)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            chassis::Event::TaskComplete { task_id, .. } if task_id == task => {
                Some("success".to_string())
            }
            chassis::Event::TaskFailed { task_id, kind, .. } if task_id == task => Some(kind),
            _ => None,
        })
        .collect()
}

fn audited_config(dir: &Path, grace: f64) -> (PathBuf, PathBuf) {
    let audit = dir.join("audit.jsonl");
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "shutdown_grace_seconds = {grace:?}\n[audit]\npath = {audit:?}\nfsync = \"always\"\n"
        ),
    )
    .unwrap();
    (config, audit)
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_task_and_frees_the_slot() {
    let dir = scratch("disconnect");
    let hostile = hostile_contract_with(&dir, 30.0);
    let (config, audit) = audited_config(&dir, 5.0);
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        hostile.to_str().unwrap(),
    ]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let gone = impatient
        .post(server.url("/v1/swarms/misbehave/tasks"))
        .body(r#"{"task_type": "spin", "payload": {}, "task_id": "left"}"#)
        .send()
        .await;
    assert!(gone.is_err(), "the spin answered: {gone:?}");
    // The slot is freed long before the task's 30 s timeout.
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = get(&c, &server, "/v1/swarms/misbehave").await;
        let swarm: Value = serde_json::from_str(&text).unwrap();
        if swarm["usage"]["tasks_running"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the task still runs: {swarm}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert_eq!(endings(&audit, "left"), ["cancelled"]);
}

#[tokio::test]
async fn sigterm_ends_tasks_past_the_grace_period_as_timeouts() {
    let dir = scratch("grace");
    let hostile = hostile_contract_with(&dir, 60.0);
    let (config, audit) = audited_config(&dir, 1.0);
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        hostile.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();
    let url = server.url("/v1/swarms/misbehave/tasks");
    let running = tokio::spawn(async move {
        c.post(url)
            .body(r#"{"task_type": "spin", "payload": {}, "task_id": "long"}"#)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    // Well within the task's 60 s: the grace period, then the stop.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(running.await.unwrap().unwrap(), 504);
    assert_eq!(endings(&audit, "long"), ["timeout"]);
    chassis::audit::verify(&audit).expect("the audit log verifies");
}

#[tokio::test]
async fn admin_routes_need_the_token_and_are_off_without_one() {
    let dir = scratch("admin");
    let hostile = hostile_contract(&dir);
    let c = reqwest::Client::new();
    // No token configured: the admin routes do not exist.
    let server = Server::start(&["config/hello-world.toml"]);
    let response = c
        .post(server.url("/v1/admin/swarms"))
        .body(format!(r#"{{"contract": {hostile:?}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    drop(server);

    let token = "a-long-enough-admin-token";
    let config = dir.join("serve.toml");
    std::fs::write(&config, "[admin]\ntoken_env = \"TEST_CHASSIS_ADMIN\"\n").unwrap();
    let server = Server::start_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "config/hello-world.toml",
        ],
        &[("TEST_CHASSIS_ADMIN", token)],
    );
    let load = |bearer: Option<&str>| {
        let mut request = c
            .post(server.url("/v1/admin/swarms"))
            .body(format!(r#"{{"contract": {hostile:?}}}"#));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    for bearer in [None, Some("wrong-token-of-some-length")] {
        let response = load(bearer).await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{bearer:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    // Nothing was loaded by the refused requests.
    assert_eq!(get(&c, &server, "/v1/swarms/misbehave").await.0, 404);
    let response = load(Some(token)).await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let loaded: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(loaded["swarm_id"], "misbehave", "{loaded}");
    let (status, body) = task(
        &c,
        &server,
        "misbehave",
        r#"{"task_type": "burn", "payload": {"rounds": 10}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Loading it again replaces it with the new version (here the same
    // build): 200, not 201.
    let response = load(Some(token)).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let replaced: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(replaced["digest"], loaded["digest"], "{replaced}");
    // Release answers with the reputation; unload ends its service.
    let response = c
        .post(server.url("/v1/admin/swarms/hello-world/release"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = c
        .delete(server.url("/v1/admin/swarms/misbehave"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, _) = task(
        &c,
        &server,
        "misbehave",
        r#"{"task_type": "burn", "payload": {}}"#,
    )
    .await;
    assert_eq!(status, 404);
    // A swarm served from a watched file is the file's: the route refuses
    // to replace it, naming the file, and the file's version serves on.
    let copy = dir.join("hello-copy.toml");
    let text = std::fs::read_to_string(root().join("config/hello-world.toml"))
        .unwrap()
        .replace("../target", root().join("target").to_str().unwrap())
        .replace("version = \"1.0\"", "version = \"9.9\"");
    std::fs::write(&copy, text).unwrap();
    let response = c
        .post(server.url("/v1/admin/swarms"))
        .bearer_auth(token)
        .body(format!(r#"{{"contract": {copy:?}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
    let refused: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("watched contract file") && message.contains("hello-world.toml"),
        "{refused}"
    );
    let summary: Value =
        serde_json::from_str(&get(&c, &server, "/v1/swarms/hello-world").await.1).unwrap();
    assert_eq!(summary["version"], "1.0", "{summary}");
}

/// Poll `GET path` until `done` holds for its status and body, at most 120 s.
async fn wait_for(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    what: &str,
    done: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get(client, server, path).await;
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Put `bytes` at `path` the way a deployment does: a temporary file
/// renamed over the old one.
fn put_file(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[tokio::test]
async fn hot_reload_swaps_a_component_under_load_and_refuses_a_broken_one() {
    let dir = scratch("reload");
    let (config, audit) = audited_config(&dir, 5.0);
    let contracts = dir.join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    let component = contracts.join("swarm.wasm");
    let swarms = root().join("target/swarms");
    std::fs::copy(swarms.join("hello_world.wasm"), &component).unwrap();
    let contract = contracts.join("swap.toml");
    std::fs::write(
        &contract,
        "swarm_id = \"swap\"\nwasm_module = \"swarm.wasm\"\n\
         [resource_limits]\nmax_concurrent_tasks = 4\ntask_timeout_seconds = 30\n\
         [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        contracts.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();
    let summary = |body: &str| serde_json::from_str::<Value>(body).unwrap();
    let first = summary(&get(&c, &server, "/v1/swarms/swap").await.1);
    assert_eq!(first["task_types"], json!(["hello", "echo", "add"]));

    // Two clients stream `hello` tasks through every change below.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let (c, url, stop, sent) = (
                c.clone(),
                server.url("/v1/swarms/swap/tasks"),
                stop.clone(),
                sent.clone(),
            );
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let response = c
                        .post(&url)
                        .body(r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#)
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    answers.push((status, response.text().await.unwrap()));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                answers
            })
        })
        .collect();

    // A new component (the JavaScript hello swarm) renamed into place.
    put_file(
        &component,
        &std::fs::read(swarms.join("hello_js.wasm")).unwrap(),
    );
    let body = wait_for(
        &c,
        &server,
        "/v1/swarms/swap",
        "the new version",
        |_, body| summary(body)["digest"] != first["digest"],
    )
    .await;
    assert_eq!(summary(&body)["task_types"], json!(["hello", "fail"]));
    let second = summary(&body);
    let at_swap = sent.load(Ordering::Relaxed);

    // A broken one written in place: refused, listed by /readyz, and the
    // version before keeps serving.
    std::fs::write(&component, b"\0asm not really").unwrap();
    let ready = wait_for(&c, &server, "/readyz", "the refusal", |_, body| {
        body.contains("swap.toml")
    })
    .await;
    assert!(ready.contains("not a valid wasm file"), "{ready}");
    let now = summary(&get(&c, &server, "/v1/swarms/swap").await.1);
    assert_eq!(now["digest"], second["digest"]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for stream in streams {
        for (status, body) in stream.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                summary(&body)["output"]["greeting"],
                "Hello, Ada!",
                "{body}"
            );
            answered += 1;
        }
    }
    // Tasks were answered before the swap, and by the new version after it.
    assert!(
        at_swap > 0 && answered > at_swap,
        "{at_swap} then {answered}"
    );

    // A contract file that goes away unloads its swarm.
    std::fs::remove_file(&contract).unwrap();
    wait_for(&c, &server, "/v1/swarms/swap", "the unload", |status, _| {
        status == 404
    })
    .await;
    assert_eq!(server.terminate(Duration::from_secs(30)).code(), Some(0));
    let operations = records(&audit)
        .into_iter()
        .filter(|r| r["swarm_id"] == "swap")
        .map(|r| r["operation"].as_str().unwrap().to_string())
        .filter(|op| op.starts_with("module") || op == "load_rejected")
        .collect::<Vec<_>>();
    assert_eq!(
        operations,
        [
            "module_loaded",
            "module_replaced",
            "load_rejected",
            "module_unloaded"
        ]
    );
}

/// Every record of an audit log.
fn records(audit: &Path) -> Vec<Value> {
    crate::common::audit_text(audit)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_full_queue_is_429_with_retry_after_and_a_quarantined_swarm_is_503() {
    let dir = scratch("refusals");
    let hostile = hostile_contract(&dir);
    let fragile = fragile_contract(&dir);
    let config = dir.join("serve.toml");
    std::fs::write(&config, "[queue]\nmax_queued = 0\n").unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        hostile.to_str().unwrap(),
        fragile.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();

    // Two slots, no queue: of four spinning tasks sent at once, two run
    // (to their 0.5 s timeout) and the others are refused at once.
    let spins: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(
                c.post(server.url("/v1/swarms/misbehave/tasks"))
                    .body(r#"{"task_type": "spin", "payload": {}}"#)
                    .send(),
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for spin in spins {
        let response = spin.await.unwrap().unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            assert_eq!(body["error"]["kind"], "overloaded", "{body}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [429, 429, 504, 504]);

    // Two traps in a window of two: quarantined, and the next task is 503.
    for (task_type, expected) in [("trap", 500), ("trap", 500), ("burn", 503)] {
        let body = format!(r#"{{"task_type": "{task_type}", "payload": {{}}}}"#);
        let (status, body) = task(&c, &server, "fragile", &body).await;
        assert_eq!(status, expected, "{task_type}: {body}");
    }
    let (_, body) = task(
        &c,
        &server,
        "fragile",
        r#"{"task_type": "burn", "payload": {}}"#,
    )
    .await;
    assert_eq!(body["error"]["kind"], "quarantined", "{body}");
    let summary: Value =
        serde_json::from_str(&get(&c, &server, "/v1/swarms/fragile").await.1).unwrap();
    assert_eq!(summary["quarantined"], true);
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_request_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = scratch("slow");
    let config = dir.join("serve.toml");
    std::fs::write(&config, "request_read_timeout_seconds = 1.0\n").unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "config/hello-world.toml",
    ]);
    let address = server.base.trim_start_matches("http://").to_string();

    // Headers that never end: the connection is closed.
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /v1/swarms/hello-world/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection is still open after 20 s");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A body that trickles in, a byte every 0.3 s: one deadline for the
    // whole body, so 408 about a second after the headers, not never.
    let slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = slow.into_split();
    writer
        .write_all(
            b"POST /v1/swarms/hello-world/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), reader.read(&mut buf))
        .await
        .expect("an answer before the body is done")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    trickle.abort();

    // Meanwhile and after, others are served.
    let (status, _) = task(
        &reqwest::Client::new(),
        &server,
        "hello-world",
        r#"{"task_type": "hello", "payload": {}}"#,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_contract_refused_for_a_taken_swarm_id_loads_once_the_id_is_free() {
    let dir = scratch("taken");
    let contracts = dir.join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    let text = format!(
        "swarm_id = \"dup\"\nwasm_module = {:?}\n[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
        root().join("target/swarms/hello_world.wasm")
    );
    std::fs::write(contracts.join("a.toml"), &text).unwrap();
    std::fs::write(contracts.join("b.toml"), &text).unwrap();
    let server = Server::start(&[contracts.to_str().unwrap()]);
    let c = reqwest::Client::new();
    let ready: Value = serde_json::from_str(&get(&c, &server, "/readyz").await.1).unwrap();
    let failed = ready["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{ready}");
    assert!(failed[0]["contract"].as_str().unwrap().ends_with("b.toml"));
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("already loaded")
    );

    // a.toml goes: its swarm is unloaded, and b.toml, unchanged, loads.
    std::fs::remove_file(contracts.join("a.toml")).unwrap();
    wait_for(&c, &server, "/readyz", "b.toml loaded", |_, body| {
        body.contains("\"failed\":[]") && body.contains("\"dup\"")
    })
    .await;
    let (status, body) = task(
        &c,
        &server,
        "dup",
        r#"{"task_type": "hello", "payload": {}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The status page in a real browser (headless Chromium) against a server
/// with a healthy swarm and a hostile one: both rows, the hostile one red
/// and quarantined, its audit records listed, and the guest's markup and
/// control characters shown as text, not run. The screenshot is kept as
/// `target/status-page/status.png`.
#[tokio::test]
async fn the_status_page_shows_the_swarms_and_escapes_guest_text_in_a_browser() {
    let dir = scratch("status-page");
    let Some(browser) = crate::common::browser::Browser::find(&dir) else {
        return;
    };
    let (config, audit) = audited_config(&dir, 5.0);
    let fragile = fragile_contract(&dir);
    // A component file whose name holds markup and raw control characters:
    // the host records its path as it is, so only the page escapes it.
    let odd_name = "hello\u{1b}[31m<b>odd\u{202e}.wasm";
    std::fs::copy(
        root().join("target/swarms/hello_world.wasm"),
        dir.join(odd_name),
    )
    .unwrap();
    let healthy = dir.join("hello-world.toml");
    // In TOML, as its escapes.
    let component = dir
        .join(odd_name)
        .display()
        .to_string()
        .replace('\u{1b}', "\\u001B")
        .replace('\u{202e}', "\\u202E");
    std::fs::write(
        &healthy,
        format!(
            "swarm_id = \"hello-world\"\nwasm_module = \"{component}\"\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n"
        ),
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        healthy.to_str().unwrap(),
        fragile.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let (status, body) = task(
            &c,
            &server,
            "hello-world",
            r#"{"task_type": "hello", "payload": {"name": "ops"}}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // Guest text with markup that would run if it were parsed, and control
    // and bidirectional characters; then a second trap: quarantined.
    let markup = "<img src=x onerror=\"document.title='pwned'\"><script>document.body.id='pwned'</script>\u{1b}[31mred\u{202e}evil";
    let body = json!({"task_type": "panic", "payload": {"message": markup}}).to_string();
    assert_eq!(task(&c, &server, "fragile", &body).await.0, 500);
    let trap = r#"{"task_type": "trap", "payload": {}}"#;
    assert_eq!(task(&c, &server, "fragile", trap).await.0, 500);
    // A caller's task id is recorded and shown as it is: one with markup
    // and control characters is refused before anything is recorded.
    let before = chassis::audit::verify(&audit).unwrap().records;
    let (status, body) = task(
        &c,
        &server,
        "hello-world",
        &json!({"task_type": "hello", "payload": {}, "task_id": "<b>id</b>\u{7}"}).to_string(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["kind"], "invalid_payload", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\\u{7}"),
        "{body}"
    );
    assert_eq!(chassis::audit::verify(&audit).unwrap().records, before);
    assert!(!crate::common::audit_text(&audit).contains("<b>id</b>"));

    // The JSON the page reads: the newest records first, the head the
    // log's own, filtered by swarm; all records or the notable ones.
    let (status, text) = get(&c, &server, "/v1/audit?swarm_id=fragile&limit=5").await;
    assert_eq!(status, 200, "{text}");
    let trail: Value = serde_json::from_str(&text).unwrap();
    let verified = chassis::audit::verify(&audit).unwrap();
    assert_eq!(trail["head"]["seq"], verified.records, "{trail}");
    assert_eq!(trail["head"]["hash"], verified.head.as_str(), "{trail}");
    assert_eq!(
        (trail["healthy"].clone(), trail["chain"].clone()),
        (json!(true), json!("linked"))
    );
    let records = trail["records"].as_array().unwrap();
    assert!(!records.is_empty() && records.len() <= 5, "{trail}");
    assert!(
        records.iter().all(|r| r["swarm_id"] == "fragile"),
        "{trail}"
    );
    assert_eq!(records[0]["operation"], "quarantined", "{trail}");
    assert!(
        records
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() > w[1]["seq"].as_u64())
    );
    let ops = |q: &str| {
        let c = c.clone();
        let url = server.url(&format!("/v1/audit?limit=500{q}"));
        async move {
            let text = c.get(url).send().await.unwrap().text().await.unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            v["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["operation"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(!ops("").await.contains(&"task_start".to_string()));
    assert!(
        ops("&operations=all")
            .await
            .contains(&"task_start".to_string())
    );
    assert_eq!(get(&c, &server, "/v1/audit?operations=some").await.0, 400);
    assert_eq!(get(&c, &server, "/v1/audit?colour=red").await.0, 400);

    // The page and its assets: embedded, with a policy that runs no inline
    // script and loads nothing from elsewhere.
    let page = c.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in ["/status.js", "/status.css"] {
        assert_eq!(get(&c, &server, asset).await.0, 200, "{asset}");
    }

    // In the browser.
    let url = server.url("/");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let dom = browser.dom(&url, 5000);
            let shot = root().join("target/status-page/status.png");
            std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
            browser.screenshot(&url, 5000, &shot, 1400, 1000);
            dom
        }
    })
    .await
    .unwrap();
    let element = crate::common::browser::element;
    assert!(
        dom.contains("<body data-state=\"live\""),
        "the page never rendered:\n{dom}"
    );
    assert!(dom.contains("<title>IF.chassis status</title>"), "{dom}");
    let healthy_row = element(&dom, "tr", "data-swarm=\"hello-world\"");
    assert!(healthy_row.contains("class=\"swarm ok\""), "{healthy_row}");
    assert!(healthy_row.contains(">serving<"), "{healthy_row}");
    assert!(healthy_row.contains(">3 tasks<"), "{healthy_row}");
    let hostile_row = element(&dom, "tr", "data-swarm=\"fragile\"");
    assert!(
        hostile_row.contains("class=\"swarm bad quarantined\""),
        "{hostile_row}"
    );
    assert!(hostile_row.contains(">quarantined<"), "{hostile_row}");
    assert!(
        hostile_row.contains("max_failure_rate_percent"),
        "{hostile_row}"
    );
    let summary = element(&dom, "dl", "id=\"audit-summary\"");
    assert!(summary.contains("data-healthy=\"true\""), "{summary}");
    assert!(summary.contains(&verified.head), "{summary}");
    let event = element(&dom, "tr", "data-operation=\"quarantined\"");
    assert!(event.contains(">fragile<"), "{event}");
    // The guest's text is there, as text: markup escaped by the
    // serializer, the control and bidirectional characters as escapes.
    let failed = element(&dom, "tr", "hostile panic");
    assert!(
        failed.contains("&lt;img src=x onerror=\"document.title='pwned'\"&gt;&lt;script&gt;"),
        "{failed}"
    );
    assert!(failed.contains(r"\u{1b}[31mred\u{202e}evil"), "{failed}");
    // The component's path, recorded raw: escaped by the page itself.
    let loaded = element(&dom, "tr", "&lt;b&gt;odd");
    assert!(
        loaded.contains("data-operation=\"module_loaded\""),
        "{loaded}"
    );
    assert!(
        loaded.contains(r"hello\u{1b}[31m&lt;b&gt;odd\u{202e}.wasm"),
        "{loaded}"
    );
    assert!(
        !dom.contains("<img") && !dom.contains("<script>document"),
        "{dom}"
    );
    assert!(
        !dom.contains("pwned\"") && !dom.contains("id=\"pwned"),
        "{dom}"
    );
    assert!(!dom.contains('\u{1b}') && !dom.contains('\u{202e}') && !dom.contains("<b>"));
}

/// A server of the hello-world example under the configuration `config`.
fn hello_world_with(test: &str, config: &str) -> Server {
    let dir = scratch(test);
    let file = dir.join("serve.toml");
    std::fs::write(&file, config).unwrap();
    let healthy = root().join("config/hello-world.toml");
    Server::start(&[
        "--config",
        file.to_str().unwrap(),
        healthy.to_str().unwrap(),
    ])
}

/// `status_page = false` leaves the page and the audit trail out (404);
/// the other routes serve as before.
#[tokio::test]
async fn the_status_page_can_be_turned_off() {
    let server = hello_world_with("status-off", "status_page = false\n");
    let c = reqwest::Client::new();
    for path in ["/", "/status.js", "/v1/audit"] {
        assert_eq!(get(&c, &server, path).await.0, 404, "{path}");
    }
    assert_eq!(get(&c, &server, "/v1/swarms").await.0, 200);
}

/// On loopback the server answers only for localhost and IP addresses (and
/// the names in `allowed_hosts`): a page that points a domain of its own at
/// 127.0.0.1 (DNS rebinding) cannot read the status page or run tasks.
#[tokio::test]
async fn a_request_for_another_host_name_is_refused_on_loopback() {
    let server = hello_world_with("hosts", "allowed_hosts = [\"chassis.internal\"]\n");
    let c = reqwest::Client::new();
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let with_host = |path: &str, host: &str| {
        c.get(server.url(path))
            .header("host", format!("{host}:{port}"))
            .send()
    };
    for path in ["/", "/v1/audit", "/v1/swarms", "/metrics"] {
        let refused = with_host(path, "rebound.example").await.unwrap();
        assert_eq!(refused.status(), 403, "{path}");
        let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["kind"], "host_not_allowed", "{body}");
        for host in ["localhost", "127.0.0.1", "chassis.internal"] {
            let ok = with_host(path, host).await.unwrap();
            assert_eq!(ok.status(), 200, "{path} {host}");
        }
    }
    let task = c
        .post(server.url("/v1/swarms/hello-world/tasks"))
        .header("host", "rebound.example")
        .body(r#"{"task_type": "hello", "payload": {}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(task.status(), 403);
}

/// Open `count` connections from 127.0.0.1, each with a tiny receive
/// buffer, each sending one task whose answer (an echo of about 1.5 MiB)
/// is far larger than the socket can hold, and never reading it.
async fn non_readers(server: &Server, count: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let body = format!(
        r#"{{"task_type": "echo", "payload": {{"blob": "{}"}}}}"#,
        "x".repeat(1536 * 1024)
    );
    let request = format!(
        "POST /v1/swarms/hello-world/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut held = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(address)).await
        else {
            // In the backlog, not accepted: it holds nothing of the server.
            continue;
        };
        // A refused connection may be closed before all is sent.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(request.as_bytes()))
            .await;
        held.push(stream);
    }
    held
}

/// A hello task from 127.0.0.2, a client address of its own.
async fn from_another_address(server: &Server) -> Result<u16, String> {
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    other
        .post(server.url("/v1/swarms/hello-world/tasks"))
        .body(r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// More non-reading clients from one address than the server takes
/// connections at all: the address holds only its share (the rest are
/// answered 503 and closed), and a client from another address is served
/// at once, though no answer of theirs ever times out here.
#[tokio::test]
async fn clients_that_never_read_from_one_address_cannot_take_every_slot() {
    let server = hello_world_with(
        "non-readers-cap",
        "max_connections = 16\nmax_connections_per_address = 8\nrequest_read_timeout_seconds = 600\n\
         response_write_timeout_seconds = 600\nresponse_idle_timeout_seconds = 600\n",
    );
    let held = non_readers(&server, 24).await;
    // Let their tasks run and their answers fill the sockets.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let status = from_another_address(&server).await;
    assert_eq!(status, Ok(200), "after {:?}", started.elapsed());
    // Those over the cap were told why.
    let mut refused = 0;
    for mut stream in held {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut head)).await
            && String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert!(refused >= 8, "{refused} of the 24 were refused with 503");
}

/// When every connection is held by clients that do not read, they are
/// cut off once their answers go untaken for `response_idle_timeout_seconds`,
/// and a waiting client is then served.
#[tokio::test]
async fn clients_that_never_read_are_cut_off_and_free_their_slots() {
    let server = hello_world_with(
        "non-readers-idle",
        "max_connections = 8\nmax_connections_per_address = 8\nrequest_read_timeout_seconds = 600\n\
         response_write_timeout_seconds = 30\nresponse_idle_timeout_seconds = 1\n",
    );
    let held = non_readers(&server, 8).await;
    assert_eq!(held.len(), 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let status = from_another_address(&server).await;
    assert_eq!(status, Ok(200), "after {:?}", started.elapsed());
    // Every held connection is cut off once its answer has gone untaken
    // for a second: read now, each ends well short of 1.5 MiB.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (n, mut stream) in held.into_iter().enumerate() {
        use tokio::io::AsyncReadExt;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(
            answer.len() < 1536 * 1024,
            "connection {n}: the whole answer ({} bytes) was still there",
            answer.len()
        );
    }
}

/// A contract for the bench probe, whose `hold` task stays busy for `ms`
/// of wall time; a task timeout of 30 s.
fn probe_contract(dir: &Path) -> PathBuf {
    let path = dir.join("probe.toml");
    std::fs::write(
        &path,
        format!(
            "swarm_id = \"probe\"\nwasm_module = {:?}\n\
             [resource_limits]\ntask_timeout_seconds = 30.0\n\
             [security]\nscoped_credentials = [\"bench_token\"]\n\
             wasi_capabilities = [\"wasi:clocks/monotonic-clock\", \"wasi:clocks/wall-clock\"]\n",
            root().join("target/swarms/bench_probe.wasm"),
        ),
    )
    .unwrap();
    path
}

/// A task still running at SIGTERM that ends within the grace period is
/// answered as usual (200 with its output) and recorded once, as a
/// success; then the server exits 0.
#[tokio::test]
async fn sigterm_lets_a_running_task_that_ends_within_the_grace_period_answer() {
    let dir = scratch("grace-finish");
    let probe = probe_contract(&dir);
    let (config, audit) = audited_config(&dir, 10.0);
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        probe.to_str().unwrap(),
    ]);
    let c = reqwest::Client::new();
    wait_for(&c, &server, "/readyz", "ready", |status, _| status == 200).await;
    let running = tokio::spawn({
        let (c, url) = (c.clone(), server.url("/v1/swarms/probe/tasks"));
        async move {
            let response = c
                .post(url)
                .body(r#"{"task_type": "hold", "payload": {"ms": 2000}, "task_id": "finishing"}"#)
                .send()
                .await
                .expect("the task is answered");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    });
    wait_for(
        &c,
        &server,
        "/v1/swarms/probe",
        "the task running",
        |_, body| serde_json::from_str::<Value>(body).unwrap()["usage"]["tasks_running"] == 1,
    )
    .await;
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let (code, text) = running.await.unwrap();
    assert_eq!(code, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["task_id"], "finishing", "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert!(
        body["output"]["spins"].as_u64().is_some_and(|n| n > 0),
        "{body}"
    );
    // It ran its whole time, past the signal.
    assert!(
        body["execution_time_ms"].as_f64().unwrap() >= 2000.0,
        "{body}"
    );
    assert_eq!(endings(&audit, "finishing"), ["success"]);
    chassis::audit::verify(&audit).expect("the audit log verifies");
}

/// A contract for the hostile `import-fuzz` guest, whose `calls` task makes
/// the import calls it is given, whatever each is answered: one credential
/// or proxy call a second.
fn one_call_a_second_contract(dir: &Path) -> PathBuf {
    let path = dir.join("caller.toml");
    std::fs::write(
        &path,
        format!(
            "swarm_id = \"caller\"\nwasm_module = {:?}\n\
             [resource_limits]\nmax_api_calls_per_second = 1\n\
             [security]\nscoped_credentials = [\"api_token\"]\n\
             wasi_capabilities = [\"wasi:io/streams\"]\n\
             network_access = \"proxy_only\"\nallowed_endpoints = [\"https://api.example.com\"]\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
            root().join("target/swarms/import_fuzz.wasm"),
        ),
    )
    .unwrap();
    path
}

/// Over HTTP, a call over `max_api_calls_per_second` is refused to the
/// guest and the task goes on (200); a task that keeps calling after ten
/// seconds' worth of refusals (at least 100) is ended, and answered 429
/// `rate_limited` with `Retry-After: 1`.
#[tokio::test]
async fn a_task_that_keeps_calling_over_its_rate_is_answered_429_rate_limited() {
    let dir = scratch("rate-limited");
    let contract = one_call_a_second_contract(&dir);
    let server = Server::start(&[contract.to_str().unwrap()]);
    let c = reqwest::Client::new();
    wait_for(&c, &server, "/readyz", "ready", |status, _| status == 200).await;
    let calls = |n: usize| {
        json!({"task_type": "calls", "payload": vec![json!({"get": "api_token"}); n]}).to_string()
    };
    // A few calls: those over the rate are refused one by one.
    let (status, body) = task(&c, &server, "caller", &calls(3)).await;
    assert_eq!(status, 200, "{body}");
    let answers = body["output"].as_array().unwrap();
    assert!(
        answers[1..].iter().all(|a| a["error"]
            .as_str()
            .is_some_and(|e| e.contains("rate limited"))),
        "{body}"
    );
    assert_eq!(body["usage"]["rate_limited_calls"], 2, "{body}");
    // Calls until a task is ended for its rate.
    let mut answered = Vec::new();
    let (headers, body) = loop {
        let response = c
            .post(server.url("/v1/swarms/caller/tasks"))
            .body(calls(300))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        if status == 429 {
            break (headers, body);
        }
        answered.push((status, body));
        assert!(answered.len() < 5, "no 429: {answered:?}");
    };
    assert_eq!(body["error"]["kind"], "rate_limited", "{body}");
    assert_eq!(body["error"]["limit"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_api_calls_per_second"),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "1");
}

/// [`Server::start`], with SIGXFSZ ignored (through `sh`, whose `trap ''`
/// an `exec` keeps): a write past the server's file-size limit then fails
/// with `EFBIG` rather than killing it.
fn start_ignoring_sigxfsz(dir: &Path, args: &[&str]) -> Server {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_chassis"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(root())
        .env("CHASSIS_LOG", "warn")
        .env("CHASSIS_STORAGE_DIR", dir.join("storage"))
        .env("CHASSIS_CACHE_DIR", root().join("target/tmp/serve-cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("chassis serve starts");
    let stderr = child.stderr.take().unwrap();
    // From here a panic drops it, killing its process group.
    let mut server = Server {
        child,
        base: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    });
    server.base = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("chassis serve listens");
    server
}

/// `/readyz` answers 503 while the audit log cannot record, and 200 before.
/// The log fails for real, while the server runs: its file-size limit
/// (`RLIMIT_FSIZE`, set on the running process with `prlimit`) is lowered
/// to just past the log's size, so a later write fails with `EFBIG` as it
/// would on a full disk. Unlike mounting a small file system, this needs
/// no privilege, so it runs as root and as any CI user.
#[tokio::test]
async fn readyz_answers_503_while_the_audit_log_cannot_record() {
    let dir = scratch("audit-failed");
    let (config, audit) = audited_config(&dir, 5.0);
    let server = start_ignoring_sigxfsz(
        &dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "config/hello-world.toml",
        ],
    );
    let c = reqwest::Client::new();
    let text = wait_for(&c, &server, "/readyz", "ready", |status, _| status == 200).await;
    let ready: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ready["audit"], "ok", "{ready}");

    let limit = std::fs::metadata(&audit).unwrap().len() + 4096;
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &server.child.id().to_string()])
        .arg(format!("--fsize={limit}"))
        .output()
        .expect("prlimit (util-linux) runs");
    crate::common::assert_ok(&out);
    // Tasks until the log can no longer record one.
    let hello = r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#;
    let mut answered = 0;
    let (status, body) = loop {
        let (status, body) = task(&c, &server, "hello-world", hello).await;
        if status != 200 {
            break (status, body);
        }
        answered += 1;
        assert!(answered < 1000, "the log never failed");
    };
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (503, Some("audit")),
        "{body}"
    );

    let (status, text) = get(&c, &server, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    let ready: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ready["ready"], false, "{ready}");
    // The swarm is still loaded: the log alone makes it not ready.
    assert_eq!(ready["loaded"], json!(["hello-world"]), "{ready}");
    assert!(
        ready["audit"]
            .as_str()
            .is_some_and(|a| a.contains("File too large")),
        "{ready}"
    );
    // Alive all the same.
    assert_eq!(get(&c, &server, "/healthz").await.0, 200);
}

/// The process group of process `pid` (`/proc/PID/stat`).
fn process_group_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's name, in parentheses: state, parent, group.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[2].parse().unwrap()
}

/// A test that panics while its server runs leaves nothing behind: the
/// server leads a process group of its own, and the helper's `Drop`, run
/// as the panic unwinds, kills that whole group (here the server and
/// another process put in its group).
#[test]
fn a_panicking_test_leaves_no_process_of_its_servers_group_behind() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let server = Server::start(&["config/hello-world.toml"]);
        let pid = server.child.id();
        let group = process_group_of(pid);
        let other = std::process::Command::new("sleep")
            .arg("600")
            .process_group(group as i32)
            .spawn()
            .unwrap();
        tx.send((pid, group, other)).unwrap();
        panic!("a test failing while its server runs (on purpose)");
    });
    assert!(test.join().is_err());
    let (pid, group, mut other) = rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = other.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = other.kill();
            let _ = other.wait();
            panic!("the other process of the server's group still runs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(group, pid, "the server leads a process group of its own");
    assert_ne!(group, process_group_of(std::process::id()));
    assert_eq!(status.signal(), Some(9), "{status}");
    // Killed and reaped.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the server still runs"
    );
}

/// `chassis serve` listens before it loads: while a swarm whose `describe`
/// never returns holds the load (up to the host's 10 s load timeout),
/// `/healthz` answers at once, `/readyz` is 503 saying how far the loading
/// is, and tasks are refused with 503 `loading`; each load is logged, and
/// once the load is whole the server says it is ready and serves.
#[tokio::test]
async fn the_server_listens_at_once_and_is_ready_once_its_swarms_are_loaded() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = scratch("loading");
    let slow = dir.join("slow.toml");
    std::fs::write(
        &slow,
        format!(
            "swarm_id = \"slow-load\"\nwasm_module = {:?}\n[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
            root().join("target/swarms/slow_load.wasm")
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-watch"])
        .arg(&slow)
        .arg(root().join("config/hello-world.toml"))
        .current_dir(root())
        .env("CHASSIS_LOG", "info")
        .env("CHASSIS_CACHE_DIR", root().join("target/tmp/serve-cache"))
        .env("CHASSIS_STORAGE_DIR", dir.join("storage"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut server = Server {
        child,
        base: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let next_line = |lines: &mut Vec<String>, what: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no {what} line: {lines:#?}"));
        lines.push(line.clone());
        if line.contains(what) {
            return line;
        }
    };
    let listening = next_line(&mut lines, "listening on ");
    server.base = listening
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let c = reqwest::Client::new();
    let (status, body) = get(&c, &server, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(&c, &server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    let loading = ready["loading"].as_str().unwrap_or_default().to_string();
    assert!(
        loading.starts_with("loading ") && loading.ends_with(" of 2"),
        "{ready}"
    );
    let (status, body) = task(
        &c,
        &server,
        "hello-world",
        r#"{"task_type": "hello", "payload": {}}"#,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (503, &json!("loading")),
        "{body}"
    );
    // Each load is counted as it ends: hello-world's while slow-load is
    // still held.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (_, body) = get(&c, &server, "/readyz").await;
        let ready: Value = serde_json::from_str(&body).unwrap();
        if ready["loading"] == "loading 1 of 2" {
            assert_eq!(ready["loaded"], json!(["hello-world"]), "{ready}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never counted one of two: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The load ends (slow-load refused at its timeout), and it serves.
    let ready_line = next_line(&mut lines, "chassis serve: ready");
    assert!(
        ready_line.contains("1 swarms loaded, 1 failed"),
        "{ready_line}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the load timeout held it"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("loaded hello-world (") && l.contains(" of 2,")),
        "{lines:#?}"
    );
    let (status, _) = get(&c, &server, "/readyz").await;
    assert_eq!(status, 200);
    let (status, body) = task(
        &c,
        &server,
        "hello-world",
        r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `/v1/swarms` (which the status page polls) and `/metrics` read a swarm's
/// usage without resetting it for each other: CPU time is a counter and a
/// read changes nothing.
#[tokio::test]
async fn the_status_page_and_metrics_do_not_reset_each_others_usage() {
    let server = Server::start(&["config/hello-world.toml"]);
    let c = reqwest::Client::new();
    let (status, body) = task(
        &c,
        &server,
        "hello-world",
        r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, text) = get(&c, &server, "/v1/swarms/hello-world").await;
    let first: Value = serde_json::from_str::<Value>(&text).unwrap()["usage"].clone();
    let (status, metrics) = get(&c, &server, "/metrics").await;
    assert_eq!(status, 200);
    let (_, text) = get(&c, &server, "/v1/swarms").await;
    let second: Value = serde_json::from_str::<Value>(&text).unwrap()["swarms"][0]["usage"].clone();
    let cpu = first["cpu_seconds"].as_f64().unwrap();
    assert!(cpu > 0.0, "{first}");
    assert_eq!(second["cpu_seconds"].as_f64(), Some(cpu), "{second}");
    for usage in [&first, &second] {
        assert!(
            usage["cpu_percent"].as_f64().unwrap() > 0.0,
            "{first} then {second}"
        );
    }
    assert!(
        metrics.contains("# TYPE chassis_cpu_seconds counter\n"),
        "{metrics}"
    );
    let exported: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"chassis_cpu_seconds_total{swarm="hello-world"} "#))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!((exported - cpu).abs() < 1e-9, "{exported} vs {cpu}");
    for counter in ["chassis_refused_calls", "chassis_dropped_log_lines"] {
        assert!(
            metrics.contains(&format!("# TYPE {counter} counter\n"))
                && metrics.contains(&format!("{counter}_total{{swarm=\"hello-world\"}} 0\n")),
            "{counter}: {metrics}"
        );
    }
}

/// A spent budget is 429 `budget_exhausted` whose `Retry-After` is the
/// seconds until the period renews (not the one second of a busy swarm),
/// and `/v1/swarms/{id}` shows what the period spent.
#[tokio::test]
async fn a_spent_budget_is_429_with_retry_after_until_it_renews() {
    let dir = scratch("budget");
    let contract = dir.join("budgeted.toml");
    std::fs::write(
        &contract,
        format!(
            "swarm_id = \"budgeted\"\nwasm_module = {:?}\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [budget]\nperiod_seconds = 86400\ntasks = 1\n",
            root().join("target/swarms/hello_world.wasm"),
        ),
    )
    .unwrap();
    let server = Server::start(&[contract.to_str().unwrap()]);
    let c = reqwest::Client::new();
    let task = || {
        c.post(server.url("/v1/swarms/budgeted/tasks"))
            .body(r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#)
            .send()
    };
    assert_eq!(task().await.unwrap().status(), 200);
    let response = task().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = 86_400 - now % 86_400;
    assert!(
        retry_after.abs_diff(left) <= 2,
        "Retry-After {retry_after}, the day ends in {left} s"
    );
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["kind"], "budget_exhausted", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks budget of 1 per 86400 s is spent"),
        "{body}"
    );
    let swarm: Value =
        serde_json::from_str(&get(&c, &server, "/v1/swarms/budgeted").await.1).unwrap();
    let budget = &swarm["usage"]["budgets"][0];
    assert_eq!(
        (&budget["budget"], &budget["spent"], &budget["limit"]),
        (&json!("tasks"), &json!(1.0), &json!(1.0)),
        "{swarm}"
    );
    let metrics = crate::common::metrics(&server).await;
    assert!(
        metrics.contains("chassis_budget_spent{swarm=\"budgeted\",budget=\"tasks\"} 1.0")
            && metrics.contains("chassis_budget_limit{swarm=\"budgeted\",budget=\"tasks\"} 1.0"),
        "{metrics}"
    );
    // The status page says the budget is spent (in a real browser).
    if let Some(browser) = crate::common::browser::Browser::find(&dir) {
        let url = server.url("/");
        let dom = tokio::task::spawn_blocking(move || browser.dom(&url, 5000))
            .await
            .unwrap();
        let line = crate::common::browser::element(&dom, "div", "data-budget=\"tasks\"");
        assert!(
            line.contains("budget spent") && line.contains("tasks: 0 of 1 left, renews in"),
            "{line}"
        );
    }
}

/// `POST /v1/capabilities/{capability}/tasks` runs the task on a swarm the
/// governor chooses and names it (the outcome and `Chassis-Swarm`);
/// `GET /v1/capabilities` lists who declares what and whether each can be
/// chosen; an unknown capability is 404 `no_capable_swarm`, and none
/// eligible 503 `no_eligible_swarm` saying why.
#[tokio::test]
async fn a_task_addressed_to_a_capability_names_the_swarm_that_ran_it() {
    let dir = scratch("capabilities");
    let contract = |id: &str, capabilities: &str, more: &str| {
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "swarm_id = \"{id}\"\nwasm_module = {:?}\ncapabilities = [{capabilities}]\n\
                 [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n{more}",
                root().join("target/swarms/hello_world.wasm"),
            ),
        )
        .unwrap();
        path
    };
    let a = contract("hello-a", "\"demo:hello\"", "");
    let b = contract(
        "hello-b",
        "\"demo:hello\", \"demo:strict\"",
        "[reputation]\nselection_threshold = 0.95\n",
    );
    let server = Server::start(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    let c = reqwest::Client::new();
    let post = |capability: &str| {
        c.post(server.url(&format!("/v1/capabilities/{capability}/tasks")))
            .body(r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#)
            .send()
    };
    let response = post("demo:hello").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["chassis-swarm"], "hello-a");
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["swarm_id"], "hello-a", "{body}");
    assert_eq!(body["output"]["greeting"], "Hello, Ada!");
    // The colon may come percent-encoded.
    assert_eq!(post("demo%3Ahello").await.unwrap().status(), 200);

    let list: Value = serde_json::from_str(&get(&c, &server, "/v1/capabilities").await.1).unwrap();
    let hello = &list["capabilities"][0];
    assert_eq!(hello["capability"], "demo:hello", "{list}");
    let swarms = hello["swarms"].as_array().unwrap();
    assert_eq!(swarms.len(), 2, "{list}");
    assert_eq!(
        (&swarms[0]["swarm_id"], &swarms[0]["eligible"]),
        (&json!("hello-a"), &json!(true))
    );
    assert_eq!(swarms[1]["eligible"], false);
    assert!(
        swarms[1]["excluded"]
            .as_str()
            .unwrap()
            .contains("selection threshold 0.950"),
        "{list}"
    );

    let response = post("demo:nobody").await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["kind"], "no_capable_swarm", "{body}");
    let response = c
        .post(server.url("/v1/capabilities/demo:hello/tasks"))
        .body(r#"{"task_type": "add", "payload": {"a": 1, "b": 2}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Only hello-b declares demo:strict, and it is under its threshold.
    let response = post("demo:strict").await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["kind"], "no_eligible_swarm", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hello-b: reputation 0.500 is under its selection threshold 0.950"),
        "{body}"
    );
    // Each choice is counted.
    let metrics = get(&c, &server, "/metrics").await.1;
    assert!(
        metrics
            .lines()
            .any(|l| l
                == "chassis_tasks_routed_total{swarm=\"hello-a\",capability=\"demo:hello\"} 3"),
        "{metrics}"
    );
}
