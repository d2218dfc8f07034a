//! `chassis run`: one swarm loaded from its contract and one task (or
//! `--repeat N`) run, with its audit log, metrics and usage as asked.

use super::*;

/// `chassis run`'s arguments.
#[derive(clap::Args)]
pub struct RunCommand {
    /// The swarm's contract (TOML; its wasm_module is relative to this
    /// file), or a swarm project's directory (its contract, NAME.toml).
    contract: PathBuf,
    /// Task type (one the swarm serves; see the error for the list).
    #[arg(long)]
    task: String,
    /// Task payload as JSON.
    #[arg(long, default_value = "{}", conflicts_with = "payload_file")]
    payload: String,
    /// Read the payload JSON from a file (`-` for stdin).
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// Task id (default: generated, unique across runs).
    #[arg(long)]
    task_id: Option<String>,
    /// Run the task N times, one after another (ids ID-1 to ID-N with
    /// --task-id): each output (or, with --json, each outcome) is one
    /// JSON line on stdout, and a summary with the swarm's SLO figures
    /// and reputation goes to stderr. Exits with 1 if any task failed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Secrets file (TOML, one table per swarm id, mode 600); see
    /// docs/security.md, "Credential scoping". CHASSIS_SECRET__<SWARM>__<KEY>
    /// variables are read too.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Append every event of the run to this audit log (created if missing,
    /// verified and continued if present). The swarm's reputation and
    /// quarantine are restored from the log's history first.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Write the swarm's metrics (Prometheus text format) to this file after the task.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// When the audit log is fsynced: always, never, every:N or interval:MS.
    #[arg(long, default_value = "always")]
    fsync: crate::audit::FsyncPolicy,
    /// Print the whole outcome (status, output, timing, usage), the
    /// swarm's resource usage and its reputation as JSON; when the host
    /// stops or refuses the task, the error (kind, message) instead of
    /// the outcome.
    #[arg(long)]
    json: bool,
    /// Print the task's usage (wall, CPU, throttled time, peak memory,
    /// host calls) and the swarm's (CPU %, memory, tasks running and
    /// queued, refused calls, dropped log lines) on stderr, also when
    /// the task fails.
    #[arg(long)]
    usage: bool,
    /// Keep compiled components here (default: $CHASSIS_CACHE_DIR, else
    /// $XDG_CACHE_HOME/chassis, else ~/.cache/chassis). A later run of
    /// the same component skips compiling.
    #[arg(long, conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile the component without reading or writing the cache.
    #[arg(long)]
    no_cache: bool,
    /// Keep the swarm's objects (a contract with `[storage]`) here
    /// (default: $CHASSIS_STORAGE_DIR, else $XDG_DATA_HOME/chassis/storage,
    /// else ~/.local/share/chassis/storage). They outlive the run.
    #[arg(long)]
    storage_dir: Option<PathBuf>,
}

impl RunCommand {
    /// Load the swarm and run the task.
    pub async fn execute(self, global: &Global) -> Result<()> {
        let max_component_bytes = global.max_component_bytes;
        let Self {
            contract,
            task,
            payload,
            payload_file,
            task_id,
            repeat,
            secrets,
            audit,
            metrics,
            fsync,
            json,
            usage: show_usage,
            cache_dir,
            no_cache,
            storage_dir,
        } = self;
        let contract = super::project::contract_of(&contract)?;
        let payload_text = match payload_file {
            Some(p) if p.as_os_str() == "-" => {
                let bytes = crate::files::read_limited(std::io::stdin(), MAX_PAYLOAD_BYTES)
                    .context("reading the payload from stdin")?;
                String::from_utf8(bytes).context("the payload on stdin is not UTF-8")?
            }
            Some(p) => crate::files::read_bounded_text(&p, MAX_PAYLOAD_BYTES)
                .with_context(|| format!("{}: cannot read payload", p.display()))?,
            None => payload,
        };
        let payload: serde_json::Value =
            serde_json::from_str(&payload_text).context("--payload is not valid JSON")?;
        // Every file the run writes is checked before the task runs.
        let metrics_file = metrics
            .as_ref()
            .map(|path| {
                std::fs::File::create(path)
                    .with_context(|| format!("metrics file {}", path.display()))
            })
            .transpose()?;
        // Size the host for this one contract.
        let parsed = match ServiceContract::from_file(&contract) {
            Ok(parsed) => parsed,
            Err(e) => {
                // The refusal is audited like any other load rejection.
                if let Some(path) = &audit {
                    let log = open_audit(path, fsync, None)?;
                    crate::EventSink::record(
                        &*log,
                        &crate::Event::LoadRejected {
                            swarm_id: String::new(),
                            reason: e.to_string(),
                        },
                    );
                    log.close().context("audit log")?;
                }
                return Err(e.into());
            }
        };
        let secrets = secrets
            .map(|path| SecretStore::from_file(path).context("secrets file"))
            .transpose()?;
        let audit_log = audit
            .map(|path| open_audit(&path, fsync, Some(&parsed)))
            .transpose()?;
        let recorder = metrics_file
            .as_ref()
            .map(|_| std::sync::Arc::new(crate::metrics::Metrics::new()));
        let mut sinks = crate::EventSinks::default();
        if let Some(recorder) = &recorder {
            sinks.observe(recorder.clone());
        }
        if let Some(log) = &audit_log {
            sinks.keep_in(log.clone());
        }
        let chassis = host_for(
            &parsed,
            max_component_bytes,
            sinks,
            secrets,
            (no_cache, cache_dir),
            storage_dir,
        )?;
        let info = chassis.load(&contract).await?;
        tracing::debug!(
            target: "chassis",
            "loaded in {:.1} ms (component cache: {})",
            info.load_ms,
            info.cache.as_str()
        );
        if let Some(log) = &audit_log {
            // SLO figures, reputation and quarantine carry over from
            // earlier runs: the whole state, so the numbers chain (the
            // log's writer restored it from its newest checkpoint).
            if let Some(history) = log.history(&parsed.swarm_id) {
                chassis.restore_history(history)?;
            }
        }
        if repeat > 1 {
            let result = run_many(
                &chassis,
                &info.swarm_id,
                &task,
                &payload,
                task_id,
                repeat,
                json,
            )
            .await;
            write_metrics(metrics_file, &metrics, recorder.as_deref(), &chassis)?;
            if let Some(log) = &audit_log {
                log.close().context("audit log")?;
            }
            return result;
        }
        let mut request = TaskRequest::new(task, payload);
        if let Some(id) = task_id {
            request = request.with_id(id);
        }
        let task_id = request.task_id.clone();
        let result = chassis.execute_task(&info.swarm_id, request).await;
        let usage = chassis.resource_usage(&info.swarm_id)?;
        let reputation = chassis.slo_report(&info.swarm_id)?.reputation;
        if show_usage {
            if let Ok(outcome) = &result {
                eprintln!("task usage: {}", outcome.usage);
            }
            eprintln!("swarm usage: {usage}");
        }
        write_metrics(metrics_file, &metrics, recorder.as_deref(), &chassis)?;
        if let Some(log) = &audit_log {
            log.close().context("audit log")?;
        }
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                if json {
                    json_out(&serde_json::json!({
                        "swarm_id": info.swarm_id,
                        "task_id": task_id,
                        "status": "error",
                        "error": { "kind": e.kind().as_str(), "message": e.to_string() },
                        "swarm_usage": usage,
                        "reputation": reputation,
                    }))?;
                }
                return Err(e.into());
            }
        };
        if json {
            let mut whole = serde_json::to_value(&outcome)?;
            whole["swarm_usage"] = serde_json::to_value(&usage)?;
            whole["reputation"] = serde_json::to_value(&reputation)?;
            json_out(&whole)?;
        } else if outcome.is_success() {
            json_out(&outcome.output)?;
        }
        tracing::info!(target: "chassis", "usage: {}", outcome.usage);
        if let Some(err) = &outcome.error {
            bail!(
                "swarm {:?} task {:?}: {err}",
                outcome.swarm_id,
                outcome.task_id
            );
        }
        Ok(())
    }
}

/// Write `recorder`'s metrics of `chassis` to the `--metrics` file, if any.
fn write_metrics(
    file: Option<std::fs::File>,
    path: &Option<PathBuf>,
    recorder: Option<&crate::metrics::Metrics>,
    chassis: &Chassis,
) -> Result<()> {
    if let (Some(mut file), Some(path), Some(recorder)) = (file, path, recorder) {
        file.write_all(recorder.render(chassis).as_bytes())
            .with_context(|| format!("metrics file {}", path.display()))?;
    }
    Ok(())
}

/// `chassis run --repeat N`: the task N times, one JSON line each on
/// stdout, a summary on stderr; an error if any task failed.
async fn run_many(
    chassis: &Chassis,
    swarm_id: &str,
    task: &str,
    payload: &serde_json::Value,
    task_id: Option<String>,
    repeat: u32,
    json: bool,
) -> Result<()> {
    // The longest id given is checked before the first task runs.
    if let Some(id) = &task_id
        && let Some(reason) = crate::task_id_problem(&format!("{id}-{repeat}"))
    {
        bail!(
            "--task-id {id:?} with --repeat {repeat} (the last task's id ends in -{repeat}): {reason}"
        );
    }
    let mut failed = 0;
    for i in 1..=repeat {
        let mut request = TaskRequest::new(task, payload.clone());
        if let Some(id) = &task_id {
            request = request.with_id(format!("{id}-{i}"));
        }
        let id = request.task_id.clone();
        let why = match chassis.execute_task(swarm_id, request).await {
            Ok(outcome) => {
                if json {
                    out(serde_json::to_string(&outcome)?)?;
                } else if outcome.is_success() {
                    out(serde_json::to_string(&outcome.output)?)?;
                }
                outcome.error.map(|e| e.to_string())
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            failed += 1;
            eprintln!(
                "task {}: {}",
                crate::text::escape(&id, 256),
                crate::text::escape(&why, MAX_ERROR_LINE_BYTES)
            );
        }
    }
    let report = chassis.slo_report(swarm_id)?;
    let slo = &report.slo;
    eprintln!(
        "{repeat} tasks: {} succeeded, {failed} failed; p50 {:.2} ms, p95 {:.2} ms, error rate {:.1} %, availability {:.1} %, reputation {:.3}{}",
        repeat - failed,
        slo.p50_ms,
        slo.p95_ms,
        slo.error_rate_percent,
        slo.availability_percent,
        report.reputation.score,
        if report.reputation.quarantined {
            " (quarantined)"
        } else {
            ""
        }
    );
    if failed > 0 {
        bail!("{failed} of {repeat} tasks failed");
    }
    Ok(())
}
