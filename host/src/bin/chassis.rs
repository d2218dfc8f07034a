//! `chassis`: validate contracts, inspect components and run swarm tasks
//! from the command line.
//!
//! Output meant for programs (task results, `--json`) goes to stdout; logs,
//! including the swarm's own log lines, go to stderr. On failure the command
//! prints one `error: ...` line to stderr and exits with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chassis::{Chassis, ChassisConfig, SecretStore, ServiceContract, TaskRequest};
use clap::{Parser, Subcommand};

/// Run untrusted WebAssembly components ("swarms") under service contracts.
#[derive(Parser)]
#[command(name = "chassis", version, about, long_about = None)]
struct Cli {
    /// Log filter for stderr (tracing syntax, e.g. `debug` or `warn,swarm=info`).
    /// Overridden by the CHASSIS_LOG environment variable.
    #[arg(long, global = true, default_value = "warn,swarm=info,chassis=info")]
    log: String,

    /// Only print errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: prints "OK: N records", or the first bad record
    /// and why, and exits with 1.
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
    },
    /// Print records (JSON lines), filtered.
    Show {
        /// The audit log (JSON lines).
        file: PathBuf,
        /// Only this swarm.
        #[arg(long)]
        swarm: Option<String>,
        /// Only operations containing this text (e.g. task_failed, credential, http_proxy).
        #[arg(long)]
        operation: Option<String>,
        /// Only records at or after this time (RFC 3339 UTC, e.g. 2026-11-21T12:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only records before this time (RFC 3339 UTC).
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Check one or more contract files and print each with its defaults filled in.
    Validate {
        /// Contract files (TOML).
        #[arg(required = true)]
        contracts: Vec<PathBuf>,
        /// Print only "OK" lines, not the contracts.
        #[arg(long)]
        brief: bool,
    },
    /// Print a component's imports and exports as WIT.
    Inspect {
        /// A component (.wasm).
        component: PathBuf,
    },
    /// Verify or read an audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// SLO compliance and reputation per swarm, rebuilt from an audit log.
    ///
    /// Prints, for each contract's swarm: p95 latency, error rate and
    /// availability against the contract's targets with a pass/fail mark,
    /// and the reputation score. Exits with 1 if any target is missed or any
    /// swarm ended quarantined.
    Report {
        /// The audit log to read.
        #[arg(long)]
        audit: PathBuf,
        /// The swarms' contracts (for their targets and reputation settings).
        #[arg(required = true)]
        contracts: Vec<PathBuf>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a quarantined swarm: records a `released` event in the audit
    /// log, so the next `chassis run --audit` of that swarm runs again.
    Release {
        /// The audit log holding the swarm's history.
        #[arg(long)]
        audit: PathBuf,
        /// The swarm's contract.
        contract: PathBuf,
    },
    /// Load a swarm from its contract and run one task.
    ///
    /// Prints the task's output JSON on stdout (or the whole outcome with --json).
    /// Exits with status 1 if the swarm could not be loaded, the task was refused
    /// or stopped, or the swarm reported an error.
    #[command(
        after_help = "Example:\n  chassis run config/analyzer.toml --task analyze_code \\\n    --payload '{\"language\":\"python\",\"source\":\"# hi\\nprint(1)\\n\"}'"
    )]
    Run {
        /// The swarm's contract (TOML); its wasm_module is relative to this file.
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
        /// Task id (default: generated).
        #[arg(long)]
        task_id: Option<String>,
        /// Secrets file (TOML, one table per swarm id, mode 600); see the
        /// `chassis::secrets` docs. CHASSIS_SECRET__<SWARM>__<KEY> variables
        /// are read too.
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
        fsync: chassis::audit::FsyncPolicy,
        /// Print the whole outcome (status, output, timing, usage) and the
        /// swarm's resource usage as JSON.
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
    },
}

/// Where compiled components go when `--cache-dir` is not given.
fn default_cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("CHASSIS_CACHE_DIR") {
        return Some(dir.into());
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("chassis"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache/chassis"))
}

fn init_logging(cli: &Cli) {
    let filter = std::env::var("CHASSIS_LOG").unwrap_or_else(|_| {
        if cli.quiet {
            "error".to_string()
        } else {
            cli.log.clone()
        }
    });
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,swarm=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut line = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
            }
            eprintln!("error: {}", line.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Validate { contracts, brief } => {
            let mut failed = 0;
            for path in &contracts {
                match ServiceContract::from_file(path) {
                    Ok(c) => {
                        println!("OK: {} ({})", path.display(), c.swarm_id);
                        if !brief {
                            println!("{}", c.to_toml());
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} contracts are invalid", contracts.len());
            }
            Ok(())
        }
        Command::Inspect { component } => {
            let bytes = std::fs::read(&component)
                .with_context(|| format!("{}: cannot read component", component.display()))?;
            let wit = chassis::inspect::component_wit(&bytes, &component.display().to_string())?;
            print!("{wit}");
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { file }) => {
            let v = chassis::audit::verify(&file)?;
            if v.partial_tail_bytes > 0 {
                println!(
                    "OK: {} records ({} bytes of a partial last record ignored)",
                    v.records, v.partial_tail_bytes
                );
            } else {
                println!("OK: {} records", v.records);
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Show {
            file,
            swarm,
            operation,
            since,
            until,
        }) => {
            let time = |flag: &str, value: Option<String>| -> Result<Option<i64>> {
                value
                    .map(|v| {
                        chassis::audit::parse_rfc3339(&v).with_context(|| {
                            format!(
                                "--{flag} {v:?}: expected RFC 3339 UTC like 2026-11-21T12:00:00Z"
                            )
                        })
                    })
                    .transpose()
            };
            let filter = chassis::audit::Filter {
                swarm_id: swarm,
                operation,
                since_micros: time("since", since)?,
                until_micros: time("until", until)?,
            };
            for record in chassis::audit::read(&file, &filter)? {
                println!("{record}");
            }
            Ok(())
        }
        Command::Release { audit, contract } => {
            let contract = ServiceContract::from_file(&contract)?;
            chassis::audit::verify(&audit)?;
            let records = chassis::audit::read(&audit, &chassis::audit::Filter::default())?;
            let mut reputation = chassis::report::replay(&records, &contract).reputation;
            if !reputation.quarantined {
                bail!("swarm {:?} is not quarantined", contract.swarm_id);
            }
            reputation.release();
            let log = chassis::audit::AuditLog::open(&audit, chassis::audit::FsyncPolicy::Always)?;
            chassis::EventSink::record(
                &*log,
                &chassis::Event::Released {
                    swarm_id: contract.swarm_id.clone(),
                    score: reputation.score,
                },
            );
            log.close()?;
            println!(
                "released {:?}: reputation back to {:.2}",
                contract.swarm_id, reputation.score
            );
            Ok(())
        }
        Command::Report {
            audit,
            contracts,
            json,
        } => {
            chassis::audit::verify(&audit)?;
            let records = chassis::audit::read(&audit, &chassis::audit::Filter::default())?;
            let mut all_pass = true;
            let mut reports = Vec::new();
            for path in &contracts {
                let contract = ServiceContract::from_file(path)?;
                let report = chassis::report::replay(&records, &contract);
                all_pass &= report.slo.compliance.iter().all(|c| c.compliant)
                    && !report.reputation.quarantined;
                reports.push(report);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in &reports {
                    let s = &r.slo;
                    println!("{} ({} tasks, {} failed)", r.swarm_id, s.tasks, s.failed);
                    for c in &s.compliance {
                        let mark = if c.compliant { "PASS" } else { "FAIL" };
                        let unit = if c.metric == "response_time" {
                            " ms p95"
                        } else {
                            " %"
                        };
                        println!(
                            "  {mark} {:<13} {:>10.2}{unit} (target {})",
                            c.metric, c.actual, c.target
                        );
                    }
                    println!(
                        "  reputation {:.2} (SLO {:.2}, security {:.2}){}",
                        r.reputation.score,
                        r.reputation.slo_compliance,
                        r.reputation.security_compliance,
                        if r.reputation.quarantined {
                            ", QUARANTINED"
                        } else {
                            ""
                        }
                    );
                }
            }
            if !all_pass {
                bail!("not every swarm meets its SLO targets");
            }
            Ok(())
        }
        Command::Run {
            contract,
            task,
            payload,
            payload_file,
            task_id,
            secrets,
            audit,
            metrics,
            fsync,
            json,
            usage: show_usage,
            cache_dir,
            no_cache,
        } => {
            let payload_text = match payload_file {
                Some(p) if p.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())
                    .context("reading payload from stdin")?,
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("{}: cannot read payload", p.display()))?,
                None => payload,
            };
            let payload: serde_json::Value =
                serde_json::from_str(&payload_text).context("--payload is not valid JSON")?;
            // Size the host for this one contract.
            let parsed = match ServiceContract::from_file(&contract) {
                Ok(parsed) => parsed,
                Err(e) => {
                    // The refusal is audited like any other load rejection.
                    if let Some(path) = &audit {
                        let log = chassis::audit::AuditLog::open(path, fsync)?;
                        chassis::EventSink::record(
                            &*log,
                            &chassis::Event::LoadRejected {
                                swarm_id: String::new(),
                                reason: e.to_string(),
                            },
                        );
                        log.close()?;
                    }
                    return Err(e.into());
                }
            };
            let mut config = ChassisConfig::sized_for([&parsed]);
            if let Some(path) = secrets {
                config = config.with_secrets(SecretStore::from_file(path)?);
            }
            let audit_log = match audit {
                Some(path) => {
                    let log = chassis::audit::AuditLog::open(&path, fsync)?;
                    config = config.with_event_sink(log.clone());
                    Some(log)
                }
                None => None,
            };
            // An explicit --cache-dir must work; the default one is best effort.
            let chassis = match (no_cache, cache_dir) {
                (true, _) => Chassis::with_config(config)?,
                (false, Some(dir)) => Chassis::with_config(config.with_cache_dir(dir))?,
                (false, None) => match default_cache_dir() {
                    Some(dir) => match Chassis::with_config(config.clone().with_cache_dir(&dir)) {
                        Ok(chassis) => chassis,
                        Err(e) => {
                            tracing::warn!(target: "chassis", "{e}; compiling without a cache");
                            Chassis::with_config(config)?
                        }
                    },
                    None => Chassis::with_config(config)?,
                },
            };
            let info = chassis.load(&contract).await?;
            tracing::debug!(
                target: "chassis",
                "loaded in {:.1} ms (component cache: {})",
                info.load_ms,
                info.cache.as_str()
            );
            if let Some(log) = &audit_log {
                // Reputation and quarantine carry over from earlier runs.
                let records = chassis::audit::read(log.path(), &chassis::audit::Filter::default())?;
                let history = chassis::report::replay(&records, &parsed);
                chassis.restore_reputation(&info.swarm_id, history.reputation)?;
            }
            let mut request = TaskRequest::new(task, payload);
            if let Some(id) = task_id {
                request = request.with_id(id);
            }
            let result = chassis.execute_task(&info.swarm_id, request).await;
            let usage = chassis.resource_usage(&info.swarm_id)?;
            if show_usage {
                if let Ok(outcome) = &result {
                    eprintln!("task usage: {}", outcome.usage);
                }
                eprintln!("swarm usage: {usage}");
            }
            let outcome = result?;
            if json {
                let mut whole = serde_json::to_value(&outcome)?;
                whole["swarm_usage"] = serde_json::to_value(&usage)?;
                println!("{}", serde_json::to_string_pretty(&whole)?);
            } else if outcome.is_success() {
                println!("{}", serde_json::to_string_pretty(&outcome.output)?);
            }
            tracing::info!(target: "chassis", "usage: {}", outcome.usage);
            if let Some(path) = metrics {
                std::fs::write(&path, chassis.render_metrics())
                    .with_context(|| format!("{}: cannot write metrics", path.display()))?;
            }
            if let Some(log) = &audit_log {
                log.close()?;
            }
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
}
