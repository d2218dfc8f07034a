//! (h) The HTTP layer: a trivial task (`bench-probe`'s `noop`) sent to
//! `chassis serve`'s `POST /v1/swarms/{id}/tasks` over loopback by two
//! keep-alive client connections, against the same task through
//! `Chassis::execute_task_text` in-process by two workers, on the same
//! host (the service's own, with its audit log and metrics). Each round
//! runs a fixed number of tasks; the figure is tasks per second, and the
//! ratio (HTTP / in-process) shows what the HTTP layer costs. No goal: the
//! anchor is `wasmtime serve`, which sustains tens of thousands of
//! requests per second with the pooling allocator.
//!
//! The service runs in this process, on this runtime, so the client and
//! the server share the machine's two cores as they would on one host.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::Run;
use crate::measure::{Figure, figure, rounds};
use crate::setup::in_process_noops;

/// Tasks per round (divided by the run's scale).
const TASKS: u32 = 4000;

const BODY: &str = r#"{"task_type": "noop", "payload": {}}"#;

/// HTTP vs in-process, tasks per second.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (h) a trivial task over HTTP vs in-process");
    let mut config = chassis::serve::ServeConfig {
        contracts: vec![run.root.join("config/bench-probe.toml")],
        cache_dir: Some(run.bench_dir.join("cache")),
        watch: false,
        ..Default::default()
    };
    config.audit.path = Some(run.bench_dir.join("serve-audit.jsonl"));
    let _ = std::fs::remove_dir_all(run.bench_dir.join("serve-audit.jsonl"));
    let service = Arc::new(chassis::serve::Service::start(config).await?);
    if !service.failed().is_empty() {
        bail!(
            "the service did not load bench-probe: {:?}",
            service.failed()
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://{}/v1/swarms/bench-probe/tasks",
        listener.local_addr()?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    let per_worker = TASKS / run.scale / 2;
    let clients: Vec<reqwest::Client> = (0..2)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .context("an HTTP client")
        })
        .collect::<Result<_>>()?;

    let http = || {
        let (clients, url) = (clients.clone(), url.clone());
        async move {
            let start = Instant::now();
            let workers: Vec<_> = clients
                .into_iter()
                .map(|client| {
                    let url = url.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_worker {
                            let response = client.post(&url).body(BODY).send().await?;
                            let status = response.status();
                            let body = response.bytes().await?;
                            if !status.is_success() {
                                bail!("{status}: {}", String::from_utf8_lossy(&body));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for worker in workers {
                worker.await??;
            }
            Ok(f64::from(per_worker * 2) / start.elapsed().as_secs_f64())
        }
    };
    let in_process = || in_process_noops(service.chassis().clone(), per_worker);
    let (o, b) = rounds(run.rounds, http, in_process).await?;
    let _ = stop.send(());
    server.await??;
    let f = figure(
        "h_http",
        "(h) trivial tasks over HTTP, 2 connections",
        "tasks/s",
        "execute_task_text in-process, 2 workers",
        &o,
        &b,
        None,
    );
    Ok(vec![f])
}
