//! Deploying swarms to a fleet through NATS (`docs/scale-out.md`,
//! "Deploying"), with a real `nats-server`, real `chassis serve
//! --deployments` workers and the real `chassis deploy`: a deployment
//! reaches every worker, a new version swaps in under load with every
//! task answered once, a rollback and an undeploy reach every worker, a
//! worker started later serves the current version, labels keep a swarm
//! off a worker; and every bad bundle (tampered, untrusted, broken, too
//! large, stale) is refused by every worker, which keeps serving what it
//! had.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{Nats, Server, audit_text, root, scratch};
use crate::queue::results;
use chassis::TaskRequest;
use chassis::serve::queue::deploy::{self, Action, Manifest, client};
use chassis::serve::queue::trust::{Trust, WorkerKey};
use chassis::serve::queue::{Queue, ResultStatus, Streams};
use serde_json::{Value, json};

fn write_key(dir: &Path, name: &str, seed: u8) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let key = WorkerKey::from_seed([seed; 32]);
    let (private, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    std::fs::write(&private, key.to_file_text().as_bytes()).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&public, key.public_file_text()).unwrap();
    (private, public)
}

/// The deployer's key, the stranger's, and the workers' signing key.
const DEPLOYER: u8 = 51;
const STRANGER: u8 = 52;
const WORKER: u8 = 53;

/// A contract `NAME.toml` in `dir` for `swarm` at `version`, running
/// `wasm` (a file of `target/swarms/`), with `more` TOML after it.
fn contract(dir: &Path, name: &str, swarm: &str, version: &str, wasm: &str, more: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "swarm_id = {swarm:?}\nversion = {version:?}\nwasm_module = {:?}\n\
             [resource_limits]\nmax_concurrent_tasks = 4\ntask_timeout_seconds = 5.0\n{more}",
            root().join("target/swarms").join(wasm)
        ),
    )
    .unwrap();
    path
}

/// The workers' admin token.
const ADMIN_TOKEN: &str = "deploy-test-admin-token";

const GRANTS: &str = "[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n";

/// A worker that serves deployments only: no contract files.
fn start_worker(dir: &Path, nats: &Nats, name: &str, labels: &[&str]) -> (Server, PathBuf) {
    let audit = dir.join(format!("{name}-audit"));
    let config = dir.join(format!("{name}.toml"));
    let (worker_key, _) = write_key(dir, "worker", WORKER);
    std::fs::write(
        &config,
        format!(
            "shutdown_grace_seconds = 5.0\n\
             [admin]\ntoken_env = \"CHASSIS_TEST_ADMIN_TOKEN\"\n\
             [audit]\npath = {audit:?}\nfsync = \"always\"\n\
             [nats]\nack_slack_seconds = 2.0\nheartbeat_seconds = 0.5\n\
             signing_key = {worker_key:?}\n\
             deployments = true\ntrusted_deployers = [{:?}]\nlabels = {labels:?}\n\
             max_bundle_bytes = 4194304\n",
            dir.join("deployer.pub")
        ),
    )
    .unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--nats",
        &nats.url,
        "--worker-id",
        name,
    ];
    (
        Server::start_with_env(&args, &[("CHASSIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]),
        audit,
    )
}

fn chassis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(args)
        .env("CHASSIS_LOG", "warn")
        .output()
        .unwrap()
}

/// `chassis deploy ARGS --nats URL --key KEY --wait 30`.
fn deploy_cli(nats: &Nats, key: &Path, args: &[&str]) -> Output {
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    all.extend([
        "--nats",
        &nats.url,
        "--key",
        key.to_str().unwrap(),
        "--wait",
        "30",
    ]);
    chassis(&all)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The version of `swarm` a worker serves (`None`: not loaded there).
async fn served_version(server: &Server, swarm: &str) -> Option<String> {
    let response = reqwest::get(server.url(&format!("/v1/swarms/{swarm}")))
        .await
        .unwrap();
    if response.status() == 404 {
        return None;
    }
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    Some(body["version"].as_str().unwrap().to_string())
}

/// Run a `hello` task over HTTP; the version that answered it.
async fn answered_by(server: &Server, swarm: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url(&format!("/v1/swarms/{swarm}/tasks")))
        .body(r#"{"task_type": "hello", "payload": {"name": "Ada"}}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// `/readyz` of a worker: its `deployments` block.
async fn deployments_of(server: &Server) -> Value {
    let body = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    body["deployments"].clone()
}

/// Wait until every worker serves `swarm` at `version` (`None`: not at
/// all), at most 20 s.
async fn until_version(workers: &[&Server], swarm: &str, version: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for worker in workers {
        loop {
            let now = served_version(worker, swarm).await;
            if now.as_deref() == version {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} serves {swarm} {now:?}, not {version:?}",
                worker.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The refusal `kind` of `swarm`'s entry at `revision` or later on a
/// worker, waited for (at most 20 s).
async fn until_refused(server: &Server, swarm: &str, kind: &str, revision: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let deployments = deployments_of(server).await;
        let state = deployments["swarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["swarm_id"] == swarm)
            .cloned();
        if let Some(state) = state
            && state["kind"] == kind
            && state["revision"].as_u64() >= Some(revision)
        {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "{} has not refused {swarm} as {kind}: {deployments}",
            server.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Point `hello`'s entry at `bundle` (version `version`), signed by the
/// trusted deployer, and wait until every worker refused it as `kind`;
/// each refusal's reason must hold `reason`.
async fn refused_everywhere(
    store: &async_nats::jetstream::kv::Store,
    workers: &[&Server],
    (bundle, version): (String, &str),
    kind: &str,
    reason: &str,
) {
    let (_, revision) = client::set(
        store,
        &WorkerKey::from_seed([DEPLOYER; 32]),
        "hello",
        Action::Deploy,
        Some((bundle, version.into())),
    )
    .await
    .unwrap();
    for worker in workers {
        let state = until_refused(worker, "hello", kind, revision).await;
        assert!(
            state["reason"].as_str().unwrap().contains(reason),
            "{state}"
        );
    }
}

/// Each task's terminal audit records across the workers' logs.
fn terminal_records(audits: &[&Path]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for audit in audits {
        for line in audit_text(audit).lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            if matches!(
                record["operation"].as_str(),
                Some("task_complete" | "task_failed")
            ) {
                *counts
                    .entry(record["task_id"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Deployed before any worker runs, a swarm is served by each worker as it
/// starts; v2 deployed while 1,000 tasks run swaps in on all three with
/// every task answered exactly once, by v1 or v2; a rollback goes back
/// (to the previous bundle, or the version named); a worker started later
/// serves the current version before it says it is ready; labels keep a
/// swarm off the workers without them; an undeploy unloads it everywhere.
/// `chassis fleet` and each worker's audit log say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_reaches_every_worker_and_versions_swap_under_load() {
    let _serial = crate::queue::SERIAL.lock().await;
    let dir = scratch("deploy-flow");
    let nats = Nats::start(&dir);
    let (key, deployer_pub) = write_key(&dir, "deployer", DEPLOYER);
    let v1 = contract(
        &dir,
        "hello-v1",
        "hello",
        "1.0.0",
        "hello_world.wasm",
        GRANTS,
    );
    let v2 = contract(
        &dir,
        "hello-v2",
        "hello",
        "2.0.0",
        "hello_world.wasm",
        GRANTS,
    );
    let gpu = contract(
        &dir,
        "gpu-hello",
        "gpu-hello",
        "1.0.0",
        "hello_world.wasm",
        &format!("{GRANTS}[placement]\nlabels = [\"gpu\"]\n"),
    );

    // Before any worker: the deployer makes the buckets.
    let out = chassis(&[
        "deploy",
        v1.to_str().unwrap(),
        "--nats",
        &nats.url,
        "--key",
        key.to_str().unwrap(),
    ]);
    crate::common::assert_ok(&out);
    assert!(
        text(&out).contains("deployed hello 1.0.0: bundle ")
            && text(&out).contains("uploaded")
            && text(&out).contains("generation 1"),
        "{}",
        text(&out)
    );
    let (w1, a1) = start_worker(&dir, &nats, "w1", &["gpu"]);
    let (w2, a2) = start_worker(&dir, &nats, "w2", &["gpu", "eu"]);
    let (w3, a3) = start_worker(&dir, &nats, "w3", &[]);
    let workers = [&w1, &w2, &w3];
    // Loaded before each said it was ready.
    for worker in workers {
        assert_eq!(
            served_version(worker, "hello").await.as_deref(),
            Some("1.0.0")
        );
    }

    // v2 while 1,000 tasks run.
    let queue = Queue::connect(&nats.url, &Streams::default())
        .await
        .unwrap()
        .trusting(Trust::Workers(vec![
            WorkerKey::from_seed([WORKER; 32]).public(),
        ]));
    let ids: Vec<String> = (0..1000).map(|i| format!("t-{i}")).collect();
    let submitted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let submitter = {
        let (queue, ids, submitted) = (queue.clone(), ids.clone(), submitted.clone());
        tokio::spawn(async move {
            for (i, id) in ids.iter().enumerate() {
                queue
                    .submit(
                        "hello",
                        TaskRequest::new("hello", json!({ "name": format!("n{i}") }))
                            .with_id(id.clone()),
                    )
                    .await
                    .unwrap();
                submitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
        })
    };
    // v1 answers the first tasks.
    let first = queue.wait("t-0", Duration::from_secs(20)).await.unwrap();
    assert_eq!(first.outcome.unwrap().version, "1.0.0");
    while submitted.load(std::sync::atomic::Ordering::SeqCst) < 250 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = {
        let (nats_url, key, v2) = (nats.url.clone(), key.clone(), v2.clone());
        tokio::task::spawn_blocking(move || {
            chassis(&[
                "deploy",
                v2.to_str().unwrap(),
                "--nats",
                &nats_url,
                "--key",
                key.to_str().unwrap(),
                "--wait",
                "30",
            ])
        })
        .await
        .unwrap()
    };
    crate::common::assert_ok(&out);
    let shown = text(&out);
    assert!(
        shown.contains("deployed hello 2.0.0")
            && shown.contains("already there")
            && shown.contains("generation 2")
            && shown.contains("converged: serving on w1, w2, w3"),
        "{shown}"
    );
    submitter.await.unwrap();
    let found = results(&queue, &ids, Duration::from_secs(120)).await;
    let mut by_version: HashMap<String, usize> = HashMap::new();
    for (id, result) in &found {
        assert_eq!(result.status, ResultStatus::Success, "{id}: {result:?}");
        let version = result.outcome.as_ref().unwrap().version.clone();
        *by_version.entry(version).or_insert(0) += 1;
    }
    assert_eq!(by_version.values().sum::<usize>(), 1000);
    assert!(
        by_version.get("1.0.0").is_some_and(|n| *n > 0)
            && by_version.get("2.0.0").is_some_and(|n| *n > 0),
        "{by_version:?}"
    );
    assert_eq!(by_version.len(), 2, "{by_version:?}");
    let records = terminal_records(&[&a1, &a2, &a3]);
    for id in &ids {
        assert_eq!(
            records.get(id),
            Some(&1),
            "task {id} ended {:?} times",
            records.get(id)
        );
    }
    // After the swap, only v2 answers.
    for worker in workers {
        let (status, body) = answered_by(worker, "hello").await;
        assert_eq!(
            (status, body["version"].as_str()),
            (200, Some("2.0.0")),
            "{body}"
        );
    }

    // Rollback: to the previous bundle, then to the version named.
    let out = deploy_cli(&nats, &key, &["--rollback", "hello"]);
    crate::common::assert_ok(&out);
    assert!(
        text(&out).contains("rolled back hello 1.0.0"),
        "{}",
        text(&out)
    );
    until_version(&workers, "hello", Some("1.0.0")).await;
    let out = deploy_cli(&nats, &key, &["--rollback", "hello", "--to", "2.0.0"]);
    crate::common::assert_ok(&out);
    until_version(&workers, "hello", Some("2.0.0")).await;
    let out = deploy_cli(&nats, &key, &["--rollback", "hello", "--to", "9.9.9"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no earlier deployment of \"hello\" has version or bundle \"9.9.9\""),
        "{}",
        text(&out)
    );

    // A worker started now serves the current version from the start.
    let (w4, a4) = start_worker(&dir, &nats, "w4", &[]);
    assert_eq!(served_version(&w4, "hello").await.as_deref(), Some("2.0.0"));

    // Placement: only the workers labelled gpu serve it.
    let out = deploy_cli(&nats, &key, &[gpu.to_str().unwrap()]);
    crate::common::assert_ok(&out);
    assert!(
        text(&out).contains("converged: serving on w1, w2; not placed on w3, w4"),
        "{}",
        text(&out)
    );
    for (worker, serves) in [(&w1, true), (&w2, true), (&w3, false), (&w4, false)] {
        assert_eq!(served_version(worker, "gpu-hello").await.is_some(), serves);
    }

    // A swarm a deployment serves is the deployment's: the admin route
    // does not unload it.
    let response = reqwest::Client::new()
        .delete(w1.url("/v1/admin/swarms/gpu-hello"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("chassis deploy"));
    assert!(served_version(&w1, "gpu-hello").await.is_some());

    // A worker's status page shows the fleet (in a real browser).
    if let Some(browser) = crate::common::browser::Browser::find(&dir) {
        let url = w1.url("/");
        let dom = tokio::task::spawn_blocking(move || browser.dom(&url, 5000))
            .await
            .unwrap();
        let element = crate::common::browser::element;
        let row = element(&dom, "tr", "data-deployment=\"gpu-hello\"");
        assert!(
            row.contains(">converged<") && row.contains("serving on w1, w2; not placed on w3, w4"),
            "{row}"
        );
        let row = element(&dom, "tr", "data-deployment=\"hello\"");
        assert!(
            row.contains(">v2.0.0<") && row.contains("rollback"),
            "{row}"
        );
        let worker = element(&dom, "tr", "data-worker=\"w2\"");
        assert!(
            worker.contains("gpu, eu")
                && worker.contains("deployed ")
                && worker.contains("serves deployments"),
            "{worker}"
        );
    }

    // The fleet's view, from the command line and from a worker.
    let out = chassis(&[
        "fleet",
        "--nats",
        &nats.url,
        "--json",
        "--deployer-key",
        deployer_pub.to_str().unwrap(),
    ]);
    crate::common::assert_ok(&out);
    let fleet: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hello = fleet["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["convergence"]["swarm_id"] == "hello")
        .unwrap();
    assert_eq!(hello["verified"], true, "{fleet}");
    assert_eq!(hello["convergence"]["converged"], true, "{fleet}");
    assert_eq!(hello["convergence"]["version"], "2.0.0");
    let out = chassis(&["fleet", "--nats", &nats.url]);
    let table = text(&out);
    assert!(
        table.contains("hello 2.0.0 bundle ")
            && table.contains("rollback by ")
            && table.contains("unverified): converged: serving on w1, w2, w3, w4")
            && table.contains("labels gpu,eu")
            && table.contains("[deployed "),
        "{table}"
    );
    let body = reqwest::get(w3.url("/v1/fleet"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["swarm_id"] == "gpu-hello" && d["converged"] == true),
        "{body}"
    );

    // Undeploy: unloaded everywhere; nothing serves it.
    let out = chassis(&[
        "undeploy",
        "hello",
        "--nats",
        &nats.url,
        "--key",
        key.to_str().unwrap(),
        "--wait",
        "30",
    ]);
    crate::common::assert_ok(&out);
    assert!(
        text(&out).contains("converged: unloaded on w1, w2, w3, w4"),
        "{}",
        text(&out)
    );
    for worker in [&w1, &w2, &w3, &w4] {
        assert_eq!(served_version(worker, "hello").await, None);
        assert_eq!(answered_by(worker, "hello").await.0, 404);
    }
    let out = chassis(&[
        "submit", "--nats", &nats.url, "--swarm", "hello", "--task", "hello",
    ]);
    assert!(
        text(&out).contains("no live worker serves swarm \"hello\""),
        "{}",
        text(&out)
    );

    // Each worker's audit log: the deployments it applied and what they loaded.
    for audit in [&a1, &a2, &a3] {
        let log = audit_text(audit);
        for needle in [
            "\"operation\":\"deployment\"",
            "\"action\":\"rollback\"",
            "\"action\":\"undeploy\"",
            "\"operation\":\"module_replaced\"",
            "\"operation\":\"module_unloaded\"",
            "\"origin\":\"deployment ",
        ] {
            assert!(log.contains(needle), "{} lacks {needle}", audit.display());
        }
    }
    assert!(audit_text(&a4).contains("\"placed\":false"));
    // The deployment record names the component's digest its bundle signed.
    let hello_world = std::fs::read(root().join("target/swarms/hello_world.wasm")).unwrap();
    let digest = deploy::sha256_hex(&hello_world);
    assert!(
        audit_text(&a1).contains(&format!("\"component\":\"{digest}\"")),
        "no deployment record names component {digest}"
    );
}

/// Every bad deployment is refused by every worker, each for its reason,
/// audited and shown in `/readyz` and `chassis fleet`, and the version
/// they served goes on answering: a bundle signed by an untrusted key, a
/// component whose bytes are not the signed digest, a component that fails
/// the load checks, a bundle document changed in the store, a contract
/// that does not parse, a component over `max_bundle_bytes`, an entry
/// changed after it was signed, and an old signed entry written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_refuses_a_bad_bundle_and_keeps_serving() {
    let _serial = crate::queue::SERIAL.lock().await;
    let dir = scratch("deploy-refusals");
    let nats = Nats::start(&dir);
    let (key, _) = write_key(&dir, "deployer", DEPLOYER);
    let (stranger, _) = write_key(&dir, "stranger", STRANGER);
    let v1 = contract(
        &dir,
        "hello-v1",
        "hello",
        "1.0.0",
        "hello_world.wasm",
        GRANTS,
    );
    let (w1, a1) = start_worker(&dir, &nats, "w1", &[]);
    let (w2, a2) = start_worker(&dir, &nats, "w2", &[]);
    let (w3, a3) = start_worker(&dir, &nats, "w3", &[]);
    let workers = [&w1, &w2, &w3];
    // Ready with nothing deployed yet.
    assert_eq!(deployments_of(&w1).await["synced"], true);
    let out = deploy_cli(&nats, &key, &[v1.to_str().unwrap()]);
    crate::common::assert_ok(&out);
    let still_v1 = || async {
        for worker in workers {
            let (status, body) = answered_by(worker, "hello").await;
            assert_eq!(
                (status, body["version"].as_str()),
                (200, Some("1.0.0")),
                "{body}"
            );
        }
    };
    let (store, bundles) = client::open(&nats.url, &Default::default(), 1)
        .await
        .unwrap();
    let deployer = WorkerKey::from_seed([DEPLOYER; 32]);
    let text_of = |path: &Path| std::fs::read_to_string(path).unwrap();

    // Signed by a key no worker trusts.
    let v2 = contract(
        &dir,
        "hello-v2",
        "hello",
        "2.0.0",
        "hello_world.wasm",
        GRANTS,
    );
    let out = deploy_cli(&nats, &stranger, &[v2.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(": untrusted_key: its signer")
            && text(&out).contains("is not a trusted deployer key"),
        "{}",
        text(&out)
    );
    for worker in workers {
        until_refused(worker, "hello", "untrusted_key", 0).await;
    }
    still_v1().await;

    // A component whose bytes are not those its bundle signed: the
    // object named by the real component's digest holds other bytes.
    let real = std::fs::read(root().join("target/swarms/bench_probe.wasm")).unwrap();
    let other = std::fs::read(root().join("target/swarms/hello_world.wasm")).unwrap();
    let name = deploy::component_object(&deploy::sha256_hex(&real));
    bundles
        .put(name.as_str(), &mut other.as_slice())
        .await
        .unwrap();
    let v3 = contract(
        &dir,
        "hello-v3",
        "hello",
        "3.0.0",
        "bench_probe.wasm",
        GRANTS,
    );
    let published = client::publish(&bundles, &deployer, &text_of(&v3), &real)
        .await
        .unwrap();
    assert!(!published.component_uploaded);
    refused_everywhere(
        &store,
        &workers,
        (published.bundle.clone(), "3.0.0"),
        "digest",
        "the component's bytes do not hash",
    )
    .await;
    still_v1().await;

    // A component the host refuses to load: it imports what its contract
    // does not grant.
    let broken = contract(
        &dir,
        "hello-broken",
        "hello",
        "4.0.0",
        "fs_escape.wasm",
        GRANTS,
    );
    let out = deploy_cli(&nats, &key, &[broken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains(": load: "), "{}", text(&out));
    for worker in workers {
        until_refused(worker, "hello", "load", 0).await;
    }
    still_v1().await;

    // A bundle document changed in the store after it was published.
    let v5 = contract(
        &dir,
        "hello-v5",
        "hello",
        "5.0.0",
        "hello_world.wasm",
        GRANTS,
    );
    let published = client::publish(&bundles, &deployer, &text_of(&v5), &other)
        .await
        .unwrap();
    let forged = text_of(&v5).replace("5.0.0", "5.0.1");
    bundles
        .put(
            deploy::bundle_object(&published.bundle).as_str(),
            &mut forged.as_bytes(),
        )
        .await
        .unwrap();
    refused_everywhere(
        &store,
        &workers,
        (published.bundle.clone(), "5.0.0"),
        "digest",
        "the bundle's bytes do not hash",
    )
    .await;
    still_v1().await;

    // A contract that does not parse, signed all the same.
    let manifest = Manifest {
        format: deploy::BUNDLE_FORMAT.to_string(),
        swarm_id: "hello".into(),
        version: "6.0.0".into(),
        contract: "swarm_id = \"hello\"\nversion = \"6.0.0\"\nbogus_field = 1\n".into(),
        component_sha256: deploy::sha256_hex(&other),
        component_bytes: other.len() as u64,
        created_at_ms: 0,
    };
    let published = client::publish_manifest(&bundles, &deployer, &manifest, &other)
        .await
        .unwrap();
    refused_everywhere(
        &store,
        &workers,
        (published.bundle, "6.0.0"),
        "contract",
        "bogus_field",
    )
    .await;
    still_v1().await;

    // Over the workers' max_bundle_bytes (4 MiB): a 12 MB component.
    let big = contract(&dir, "hello-big", "hello", "7.0.0", "hello_js.wasm", GRANTS);
    let out = deploy_cli(&nats, &key, &[big.to_str().unwrap()]);
    assert!(!out.status.success());
    // The CLI stops at the live workers' refusals (a worker whose
    // heartbeat is late on a loaded machine is left out of its view);
    // every worker refuses it all the same.
    assert!(
        text(&out).contains(": too_large: the component is"),
        "{}",
        text(&out)
    );
    let revision = store.entry("hello").await.unwrap().unwrap().revision;
    for worker in &workers {
        let state = until_refused(worker, "hello", "too_large", revision).await;
        assert!(
            state["reason"]
                .as_str()
                .unwrap()
                .contains("over this worker's nats.max_bundle_bytes = 4194304"),
            "{state}"
        );
    }
    still_v1().await;

    // An entry changed after it was signed: its generation raised, its
    // signature left as it was.
    let current = store.entry("hello").await.unwrap().unwrap();
    let mut doc: Value = serde_json::from_slice(&current.value).unwrap();
    let mut body: Value = serde_json::from_str(doc["body"].as_str().unwrap()).unwrap();
    body["generation"] = json!(body["generation"].as_u64().unwrap() + 100);
    doc["body"] = json!(body.to_string());
    let revision = store
        .put("hello", serde_json::to_vec(&doc).unwrap().into())
        .await
        .unwrap();
    for worker in workers {
        let state = until_refused(worker, "hello", "signature", revision).await;
        assert!(
            state["reason"]
                .as_str()
                .unwrap()
                .contains("does not match its content"),
            "{state}"
        );
    }
    still_v1().await;

    // The first, v1's, signed entry written again by someone who kept it.
    use futures_util::StreamExt;
    let first = store
        .history("hello")
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    let revision = store.put("hello", first.value.clone()).await.unwrap();
    for worker in workers {
        let state = until_refused(worker, "hello", "stale", revision).await;
        assert!(
            state["reason"]
                .as_str()
                .unwrap()
                .contains("generation 1 is not newer"),
            "{state}"
        );
    }
    still_v1().await;

    // What the fleet shows, and what each worker recorded.
    let out = chassis(&["fleet", "--nats", &nats.url]);
    assert!(
        text(&out).contains("not converged: refused on w1: stale: generation 1"),
        "{}",
        text(&out)
    );
    for audit in [&a1, &a2, &a3] {
        let log = audit_text(audit);
        for kind in [
            "untrusted_key",
            "digest",
            "load",
            "contract",
            "too_large",
            "signature",
            "stale",
        ] {
            assert!(
                log.contains(&format!("\"kind\":\"{kind}\"")),
                "{} lacks a {kind} refusal",
                audit.display()
            );
        }
        assert!(log.contains("\"operation\":\"deployment_refused\""));
    }
    for worker in workers {
        assert_eq!(
            reqwest::get(worker.url("/healthz")).await.unwrap().status(),
            200
        );
    }
}
