//! (h) The HTTP layer: a trivial task (`bench-probe`'s `noop`) sent to
//! `chassis serve`'s `POST /v1/swarms/{id}/tasks` over loopback by two
//! keep-alive client connections, against the same task through
//! `Chassis::execute_task_text` in-process by two workers, on the same
//! host (the service's own, with its audit log and metrics). Each round
//! runs a fixed number of tasks; the figure is tasks per second, and the
//! ratio (HTTP / in-process) shows what the HTTP layer costs. Goal: ≥ 0.5.
//!
//! A second row sets the same client, with the same two connections,
//! against `wasmtime serve` running a `wasi:http` hello component
//! (`bench/http-hello`, built with `wasmtime-cli` at the host's wasmtime
//! version by `cargo xtask bench`): the field's own server, a fresh
//! instance per request as ours. Ours does more per request (admission,
//! limits, audit, SLOs); the goal is to be no slower (ratio ≥ 1).
//!
//! The service runs in this process, on this runtime, so the client and
//! the server share the machine's two cores as they would on one host.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};
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
    let http = || over_http(&clients, &url, per_worker);
    let in_process = || in_process_noops(service.chassis().clone(), per_worker);
    let (o, b) = rounds(run.rounds, http, in_process).await?;
    let mut figures = vec![figure(
        "h_http",
        "(h) trivial tasks over HTTP, 2 connections",
        "tasks/s",
        "execute_task_text in-process, 2 workers",
        &o,
        &b,
        Some(Goal::AtLeast(0.5)),
    )];
    match WasmtimeServe::start().await? {
        Some(wasmtime) => {
            let theirs = || over_http(&clients, &wasmtime.url, per_worker);
            let (o, w) = rounds(run.rounds, http, theirs).await?;
            figures.push(figure(
                "h_http_wasmtime_serve",
                "(h) over HTTP, beside wasmtime serve",
                "tasks/s",
                "wasmtime serve, a wasi:http hello, same client",
                &o,
                &w,
                Some(Goal::AtLeast(1.0)),
            ));
        }
        None => eprintln!(
            "    (h) beside wasmtime serve: skipped (run by `cargo xtask bench`, which builds \
             wasmtime-cli and the hello component and sets CHASSIS_BENCH_WASMTIME and \
             CHASSIS_BENCH_HTTP_HELLO)"
        ),
    }
    let _ = stop.send(());
    server.await??;
    Ok(figures)
}

/// Tasks per second: `per_worker` POSTs of [`BODY`] to `url` by each of
/// `clients` (one keep-alive connection each), all at once.
async fn over_http(clients: &[reqwest::Client], url: &str, per_worker: u32) -> Result<f64> {
    let start = Instant::now();
    let workers: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url) = (client.clone(), url.to_string());
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
    Ok(f64::from(per_worker) * clients.len() as f64 / start.elapsed().as_secs_f64())
}

/// `wasmtime serve` running the `wasi:http` hello component (pooling
/// allocator on, as the chassis's), on a port of 127.0.0.1 it chose;
/// killed when dropped.
struct WasmtimeServe {
    _child: tokio::process::Child,
    url: String,
}

impl WasmtimeServe {
    /// Started from `CHASSIS_BENCH_WASMTIME` and
    /// `CHASSIS_BENCH_HTTP_HELLO`; `None` without them.
    async fn start() -> Result<Option<Self>> {
        use tokio::io::AsyncBufReadExt;
        let (Some(wasmtime), Some(component)) = (
            std::env::var_os("CHASSIS_BENCH_WASMTIME"),
            std::env::var_os("CHASSIS_BENCH_HTTP_HELLO"),
        ) else {
            return Ok(None);
        };
        let mut child = tokio::process::Command::new(&wasmtime)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "-O",
                "pooling-allocator=y",
                "-S",
                "cli=y",
            ])
            .arg(&component)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", wasmtime.to_string_lossy()))?;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(at) = line.split("Serving HTTP on ").nth(1) {
                    return Ok(at.trim().to_string());
                }
                eprintln!("    wasmtime serve: {line}");
            }
            bail!("wasmtime serve ended before it served")
        };
        let url = tokio::time::timeout(std::time::Duration::from_secs(60), ready)
            .await
            .context("wasmtime serve did not say where it serves within 60 s")??;
        // Keep reading its stderr so that it never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        eprintln!("    wasmtime serve: serving {url}");
        Ok(Some(Self { _child: child, url }))
    }
}
