//! `chassis`: validate contracts, inspect components and run swarm tasks
//! from the command line.
//!
//! Output meant for programs (task results, `--json`) goes to stdout; logs,
//! including the swarm's own log lines, go to stderr, coloured only on a
//! terminal and without `NO_COLOR`. On failure the command prints one
//! `error: ...` line to stderr (guest text in it escaped) and exits with
//! status 1. A closed stdout (`chassis ... | head`) ends the command quietly
//! with status 141, as a shell reports SIGPIPE.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chassis::{Chassis, ChassisConfig, SecretStore, ServiceContract, TaskRequest};
use clap::{Parser, Subcommand};

/// Write `text` and a newline to stdout; a closed stdout becomes an
/// [`StdoutClosed`] error that `main` turns into a quiet exit.
fn out(text: impl std::fmt::Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(e).context("writing to stdout")
            }
        })
}

/// stdout was closed by the reader.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
struct StdoutClosed;

/// JSON for stdout: pretty, with the characters a terminal acts on escaped.
fn json_out(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    out(chassis::text::json_for_terminal(&text))
}

/// `value` as one line of JSON on stdout (escaped for a terminal).
fn json_line(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string(value)?;
    out(chassis::text::json_for_terminal(&text))
}

/// Longest `error:` line printed, in bytes.
const MAX_ERROR_LINE_BYTES: usize = 16 * 1024;

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

    /// Largest component file read, in MiB.
    #[arg(long, global = true, default_value_t = 256, value_name = "MIB")]
    max_component_mb: u64,

    #[command(subcommand)]
    command: Command,
}

/// How to sign in to a NATS server: at most one of a creds file, an nkey
/// seed file, a user (with a password) or a token; secrets from files or
/// environment variables only. See docs/scale-out.md, "Security".
#[derive(clap::Args, Debug, Default, Clone)]
struct NatsAuthArgs {
    /// A NATS credentials file (user JWT and nkey seed).
    #[arg(long, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[arg(long, value_name = "FILE")]
    nats_nkey: Option<PathBuf>,
    /// A NATS user name (with --nats-password-file or --nats-password-env).
    #[arg(long, value_name = "USER")]
    nats_user: Option<String>,
    /// A file holding the user's password.
    #[arg(long, value_name = "FILE")]
    nats_password_file: Option<PathBuf>,
    /// An environment variable holding the user's password.
    #[arg(long, value_name = "VAR")]
    nats_password_env: Option<String>,
    /// A file holding a NATS token.
    #[arg(long, value_name = "FILE")]
    nats_token_file: Option<PathBuf>,
    /// An environment variable holding a NATS token.
    #[arg(long, value_name = "VAR")]
    nats_token_env: Option<String>,
    /// CA certificates (PEM) for a tls:// server; requires TLS.
    #[arg(long, value_name = "FILE")]
    nats_ca: Option<PathBuf>,
    /// A client certificate (PEM) for servers that verify clients.
    #[arg(long, value_name = "FILE", requires = "nats_key")]
    nats_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "nats_cert")]
    nats_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// Whether any flag was given.
    fn given(&self) -> bool {
        self.nats_creds.is_some()
            || self.nats_nkey.is_some()
            || self.nats_user.is_some()
            || self.nats_password_file.is_some()
            || self.nats_password_env.is_some()
            || self.nats_token_file.is_some()
            || self.nats_token_env.is_some()
            || self.nats_ca.is_some()
            || self.nats_cert.is_some()
    }

    /// As the library takes them, checked.
    fn auth(self) -> Result<chassis::serve::config::NatsAuth> {
        let auth = chassis::serve::config::NatsAuth {
            creds_file: self.nats_creds,
            nkey_file: self.nats_nkey,
            user: self.nats_user,
            password_file: self.nats_password_file,
            password_env: self.nats_password_env,
            token_file: self.nats_token_file,
            token_env: self.nats_token_env,
            tls_ca_file: self.nats_ca,
            tls_cert_file: self.nats_cert,
            tls_key_file: self.nats_key,
        };
        auth.check()
            .map_err(|e| anyhow::anyhow!("NATS credentials: {e}"))?;
        Ok(auth)
    }
}

/// Whose signatures a reader of the queue believes.
#[derive(clap::Args, Debug, Default, Clone)]
struct TrustArgs {
    /// A trusted worker's public key file (`chassis keygen` writes it;
    /// repeat for each worker). Results and mirrored audit records signed
    /// by no such key are refused. For `audit verify --nats`, give the key
    /// of that --worker alone.
    #[arg(long, value_name = "FILE")]
    worker_key: Vec<PathBuf>,
    /// Believe unsigned results and records: only on a NATS server no one
    /// else can publish to (any of its clients could forge them).
    #[arg(long, conflicts_with = "worker_key")]
    insecure_unsigned: bool,
}

impl TrustArgs {
    fn trust(&self) -> Result<chassis::serve::queue::trust::Trust> {
        use chassis::serve::queue::trust::Trust;
        if self.insecure_unsigned {
            return Ok(Trust::InsecureUnsigned);
        }
        if self.worker_key.is_empty() {
            bail!(
                "give the public key of each worker whose results you believe (--worker-key FILE, written by `chassis keygen`), or --insecure-unsigned on a NATS server no one else can publish to"
            );
        }
        Ok(Trust::from_files(&self.worker_key)?)
    }
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: prints "OK: N records" and the chain head
    /// (SEQ:HASH of the last record), or the first bad record and why, and
    /// exits with 1. Cutting records off the end leaves a valid chain: keep
    /// the printed head elsewhere and pass it to --expect-head to detect that.
    Verify {
        /// The audit log: its directory of segments (or an older single-file log).
        file: PathBuf,
        /// A head printed by an earlier verify (SEQ:HASH): the log must still
        /// hold that record with that hash.
        #[arg(long, value_name = "SEQ:HASH", conflicts_with = "nats")]
        expect_head: Option<chassis::audit::Head>,
        /// Take the expected head from the audit mirror of a task queue: the
        /// last record of --worker that NATS holds (docs/scale-out.md).
        #[arg(long, value_name = "URL", requires = "worker")]
        nats: Option<String>,
        /// The worker whose mirrored head to check against (with --nats).
        #[arg(long, requires = "nats")]
        worker: Option<String>,
        #[command(flatten)]
        auth: NatsAuthArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Print records (JSON lines), filtered.
    Show {
        /// The audit log: its directory of segments (or an older single-file log).
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

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Check contract files, and that each one's component loads under it
    /// (it is a component, exports the task interface, imports only what
    /// the contract grants, answers describe); print each contract with its
    /// defaults filled in.
    Validate {
        /// Contract files (TOML).
        #[arg(required = true)]
        contracts: Vec<PathBuf>,
        /// Print only "OK" lines, not the contracts.
        #[arg(long)]
        brief: bool,
        /// Check the contracts only, not their components.
        #[arg(long)]
        contract_only: bool,
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
    /// swarm ended quarantined. Reads the log from its newest checkpoint
    /// (the chain checked from there; `chassis audit verify` checks all of
    /// it), or with --full from its start, or --from/--to a range.
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
        /// Replay the whole log from its start instead of starting from its
        /// newest checkpoint (same figures, read the long way).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        full: bool,
        /// Only the records from this one on (a record number, as `audit
        /// show` prints them): the figures of that range alone.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Only the records up to this one (included).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
    },
    /// Release a quarantined swarm: records a `released` event in the audit
    /// log, so the next `chassis run --audit` of that swarm runs again; or,
    /// with --nats, releases it on every `chassis serve --nats` worker.
    Release {
        /// The audit log holding the swarm's history.
        #[arg(long, required_unless_present = "nats", conflicts_with = "nats")]
        audit: Option<PathBuf>,
        /// Release the swarm on every worker of this NATS server's fleet.
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// The swarm's contract (with --nats, a contract or the swarm id).
        contract: PathBuf,
        #[command(flatten)]
        auth: NatsAuthArgs,
    },
    /// Run the long-running host: load every contract, serve tasks,
    /// swarm state, health and metrics over HTTP until SIGTERM or SIGINT.
    ///
    /// Routes and status codes: docs/serve.md. Listens at once and prints
    /// the address on stderr, then loads the contracts (several at a time,
    /// each load logged; /readyz says how far) and prints "ready"; open the
    /// address in a browser for the status page (swarms, SLOs, reputation,
    /// the audit trail; read-only).
    #[command(
        after_help = "Example:\n  chassis serve config/\n  curl -s localhost:7878/v1/swarms/hello-world/tasks \\\n    -d '{\"task_type\":\"hello\",\"payload\":{\"name\":\"Ada\"}}'"
    )]
    Serve {
        /// The service's configuration file (TOML; every field has a default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen on this address instead (e.g. 127.0.0.1:0 for any free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Do not watch the contract files: a changed contract or component
        /// is not reloaded (the default is to reload it; see `watch` in
        /// docs/serve.md).
        #[arg(long)]
        no_watch: bool,
        /// Also take tasks from this NATS JetStream server as a worker
        /// (e.g. nats://127.0.0.1:4222; several comma-separated). See
        /// docs/scale-out.md.
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// This worker's name in its results (default: the host name).
        #[arg(long, requires = "nats")]
        worker_id: Option<String>,
        /// This worker's signing key file (`chassis keygen`): its results
        /// and mirrored audit records are signed with it (nats.signing_key).
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
        #[command(flatten)]
        auth: NatsAuthArgs,
        /// Contract files, or directories of contracts (`*.toml`), added to
        /// the configuration's.
        contracts: Vec<PathBuf>,
    },
    /// Put tasks on the NATS JetStream queue that `chassis serve --nats`
    /// workers take them from, and (with --wait) print their results.
    ///
    /// Prints each task id, or with --wait each result, as one JSON line.
    /// Resubmitting a task id within the queue's duplicate window is a
    /// no-op. Exits with status 1 if a task could not be submitted, or, with
    /// --wait, if a result did not come or did not succeed.
    #[command(
        after_help = "Examples:\n  chassis submit --nats nats://127.0.0.1:4222 --swarm hello-world \\\n    --task hello --payload '{\"name\":\"Ada\"}' --wait\n  chassis submit --nats nats://127.0.0.1:4222 --swarm hello-world --file tasks.jsonl"
    )]
    Submit {
        /// The NATS server (several comma-separated).
        #[arg(long, value_name = "URL")]
        nats: String,
        /// The swarm the tasks are for.
        #[arg(long)]
        swarm: String,
        /// Task type (for one task).
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        task: Option<String>,
        /// Task payload as JSON (for one task).
        #[arg(long, default_value = "{}")]
        payload: String,
        /// The task's id (for one task; generated if not given).
        #[arg(long)]
        task_id: Option<String>,
        /// Tasks from a JSON-lines file (`-` for stdin): one
        /// `{"task_type", "payload", "task_id"?}` per line.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Wait for each result and print it.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait for each result with --wait.
        #[arg(long, default_value_t = 60.0, requires = "wait")]
        timeout: f64,
        /// Submit even when no live worker serves the swarm (one about to
        /// be started or deployed); by default that is refused at once.
        #[arg(long)]
        allow_unserved: bool,
        #[command(flatten)]
        auth: NatsAuthArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// The fleet of a NATS queue: the live workers (from their heartbeats),
    /// the swarms each serves with version and free slots, and each
    /// worker's signing key.
    #[command(after_help = "Example:\n  chassis fleet --nats nats://127.0.0.1:4222")]
    Fleet {
        /// The NATS server (several comma-separated).
        #[arg(long, value_name = "URL")]
        nats: String,
        /// Print the workers as JSON.
        #[arg(long)]
        json: bool,
        /// List workers whose heartbeats stopped too (marked gone).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        auth: NatsAuthArgs,
    },
    /// Make an Ed25519 signing key for a worker: NAME.key (the secret, mode
    /// 600; give it to the worker as nats.signing_key or --signing-key) and
    /// NAME.pub (give it to clients: --worker-key). Refuses to overwrite.
    Keygen {
        /// The path and base name of the two files (e.g. keys/worker-a).
        name: PathBuf,
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
        fsync: chassis::audit::FsyncPolicy,
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
    },
}

/// Where swarms' objects are kept when no storage directory is given.
fn default_storage_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("CHASSIS_STORAGE_DIR") {
        return Some(dir.into());
    }
    if let Some(dir) = var("XDG_DATA_HOME") {
        return Some(PathBuf::from(dir).join("chassis/storage"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".local/share/chassis/storage"))
}

/// The object store for `dir` (or the default one).
fn open_store(dir: Option<PathBuf>) -> Result<std::sync::Arc<dyn chassis::storage::Store>> {
    let dir = dir
        .or_else(default_storage_dir)
        .context("no storage directory: give --storage-dir (or set CHASSIS_STORAGE_DIR or HOME)")?;
    Ok(std::sync::Arc::new(
        chassis::storage::files::FileStore::open(&dir)?,
    ))
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
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let max_component_bytes = cli.max_component_mb.saturating_mul(1024 * 1024);
    match run(cli.command, max_component_bytes).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<StdoutClosed>() => ExitCode::from(141),
        Err(e) => {
            let mut line = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
            }
            // Error texts carry guest text (escaped by the host already) and
            // file names: escape the line once more, as one terminal line.
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                chassis::text::escape(&line, MAX_ERROR_LINE_BYTES)
            );
            ExitCode::FAILURE
        }
    }
}

/// Write `recorder`'s metrics of `chassis` to the `--metrics` file, if any.
fn write_metrics(
    file: Option<std::fs::File>,
    path: &Option<PathBuf>,
    recorder: Option<&chassis::metrics::Metrics>,
    chassis: &Chassis,
) -> Result<()> {
    if let (Some(mut file), Some(path), Some(recorder)) = (file, path, recorder) {
        file.write_all(recorder.render(chassis).as_bytes())
            .with_context(|| format!("metrics file {}", path.display()))?;
    }
    Ok(())
}

/// A host for one contract, with the component cache as the flags say, and
/// an object store (in `storage_dir`, or the default one) when the
/// contract grants storage.
fn host_for(
    contract: &ServiceContract,
    max_component_bytes: u64,
    sinks: Vec<std::sync::Arc<dyn chassis::EventSink>>,
    secrets: Option<SecretStore>,
    cache: (bool, Option<PathBuf>),
    storage_dir: Option<PathBuf>,
) -> Result<Chassis> {
    let mut config =
        ChassisConfig::sized_for([contract]).with_max_component_bytes(max_component_bytes);
    if contract.storage.access != chassis::contract::StorageAccess::None {
        config = config.with_store(open_store(storage_dir)?);
    }
    if let Some(secrets) = secrets {
        config = config.with_secrets(secrets);
    }
    for sink in sinks {
        config = config.with_event_sink(sink);
    }
    // An explicit --cache-dir must work; the default one is best effort.
    Ok(match cache {
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
    })
}

/// Open the audit log at `path` (the error names it as the audit log),
/// judging `contract`'s swarm by it where the log's records do not say.
fn open_audit(
    path: &Path,
    fsync: chassis::audit::FsyncPolicy,
    contract: Option<&ServiceContract>,
) -> Result<std::sync::Arc<chassis::audit::AuditLog>> {
    let mut options = chassis::audit::AuditOptions::new(fsync);
    options.contracts = contract
        .map(|c| (c.swarm_id.clone(), c.health_settings()))
        .into_iter()
        .collect();
    chassis::audit::AuditLog::open_with(path, options).context("audit log")
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
        && let Some(reason) = chassis::task_id_problem(&format!("{id}-{repeat}"))
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
                chassis::text::escape(&id, 256),
                chassis::text::escape(&why, MAX_ERROR_LINE_BYTES)
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

/// `chassis serve`: start the service, listen, serve until a signal.
/// `chassis serve`'s flags (besides the contracts).
struct ServeOptions {
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    no_watch: bool,
    nats: Option<String>,
    worker_id: Option<String>,
    signing_key: Option<PathBuf>,
    auth: NatsAuthArgs,
}

async fn serve(options: ServeOptions, contracts: Vec<PathBuf>) -> Result<()> {
    use chassis::serve::{ServeConfig, Service};
    let mut config = match &options.config {
        Some(path) => ServeConfig::from_file(path)?,
        None => ServeConfig::default(),
    };
    config.contracts.extend(contracts);
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    if options.no_watch {
        config.watch = false;
    }
    if let Some(url) = options.nats {
        let nats = config.nats.get_or_insert_with(Default::default);
        nats.url = url;
    }
    if let (Some(id), Some(nats)) = (options.worker_id, config.nats.as_mut()) {
        nats.worker_id = Some(id);
    }
    let flags_for_nats = options.signing_key.is_some() || options.auth.given();
    match config.nats.as_mut() {
        Some(nats) => {
            if let Some(key) = options.signing_key {
                nats.signing_key = Some(key);
            }
            if options.auth.given() {
                if nats.auth != Default::default() {
                    bail!(
                        "NATS credentials are in the configuration's [nats.auth] and on the command line: give them in one place"
                    );
                }
                nats.auth = options.auth.auth()?;
            }
        }
        None if flags_for_nats => {
            bail!(
                "--signing-key and the --nats-* credentials are for a worker: give --nats URL too (or [nats] in --config)"
            )
        }
        None => {}
    }
    if config.cache_dir.is_none() {
        // The per-user cache `chassis run` uses: restarts skip Cranelift.
        config.cache_dir = default_cache_dir();
    }
    if config.storage_dir.is_none() && !config.shares_store() {
        // The per-user store `chassis run` uses: objects outlive a restart.
        config.storage_dir = default_storage_dir();
    }
    if config.contracts.is_empty() {
        bail!(
            "no contracts to serve: name contract files or directories (e.g. `chassis serve config/`) or list them in --config"
        );
    }
    let address = config.listen;
    let service = std::sync::Arc::new(Service::new(config).await?);
    // Listen first: /healthz answers at once, /readyz says how far the
    // loading is, and tasks are refused (503 loading) until it is done.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let bound = listener.local_addr()?;
    // Always printed, --quiet or not: scripts wait for these lines.
    eprintln!("chassis serve: listening on http://{bound} (loading its swarms)");
    if service.config().status_page {
        eprintln!("chassis serve: status page at http://{bound}/");
    }
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let loader = {
        let service = service.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match service.load().await {
                Ok(()) => {
                    let loaded = service.chassis().list().len();
                    let failed = service.failed().len();
                    eprintln!(
                        "chassis serve: ready ({loaded} swarms loaded, {failed} failed, in {:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                    Ok(())
                }
                Err(e) => {
                    let _ = failed_tx.send(());
                    Err(e)
                }
            }
        })
    };
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            Ok(()) = failed_rx => {}
        }
    };
    service.serve(listener, shutdown).await?;
    if loader.is_finished() {
        loader.await??;
    } else {
        loader.abort();
    }
    eprintln!("chassis serve: stopped");
    Ok(())
}

/// Read tasks from a JSON-lines file (`-`: stdin), one
/// `{"task_type", "payload", "task_id"?}` per line; blank lines are skipped.
fn tasks_from_lines(file: &std::path::Path) -> Result<Vec<TaskRequest>> {
    let text = if file.as_os_str() == "-" {
        let bytes = chassis::files::read_limited(std::io::stdin(), MAX_PAYLOAD_BYTES)
            .context("reading tasks from stdin")?;
        String::from_utf8(bytes).context("the tasks on stdin are not UTF-8")?
    } else {
        chassis::files::read_bounded_text(file, MAX_PAYLOAD_BYTES)
            .with_context(|| format!("{}: cannot read tasks", file.display()))?
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        task_type: String,
        payload: chassis::Payload,
        #[serde(default)]
        task_id: Option<String>,
    }
    let mut tasks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a task ({{\"task_type\", \"payload\", \"task_id\"?}})",
                file.display(),
                n + 1
            )
        })?;
        let mut request = TaskRequest::with_payload(line.task_type, line.payload);
        if let Some(id) = line.task_id {
            request = request.with_id(id);
        }
        tasks.push(request);
    }
    Ok(tasks)
}

/// Submit `tasks` to `swarm`'s queue; print each id, or with `wait` each
/// result, as a JSON line.
async fn submit(
    url: &str,
    auth: &chassis::serve::config::NatsAuth,
    swarm: &str,
    tasks: Vec<TaskRequest>,
    wait: Option<std::time::Duration>,
    trust: Option<chassis::serve::queue::trust::Trust>,
    allow_unserved: bool,
) -> Result<()> {
    use chassis::serve::queue::{Queue, ResultStatus};
    let mut queue = Queue::open_as(url, auth).await?;
    if let Some(trust) = trust {
        queue = queue.trusting(trust);
    }
    if !allow_unserved {
        let serving = queue
            .serving(swarm)
            .await
            .context("reading the workers' heartbeats")?;
        if serving.is_empty() {
            let now = chassis::serve::queue::workers::now_ms();
            let live: Vec<String> = queue
                .workers()
                .await?
                .into_iter()
                .filter(|w| w.live_at(now))
                .map(|w| {
                    let swarms: Vec<&str> = w.swarms.iter().map(|s| s.swarm_id.as_str()).collect();
                    format!("{} ({})", w.worker, swarms.join(", "))
                })
                .collect();
            let live = if live.is_empty() {
                "no worker is live".to_string()
            } else {
                format!("live workers: {}", live.join("; "))
            };
            bail!(
                "no live worker serves swarm {:?} ({live}); nothing was submitted. Give --allow-unserved to queue it for a worker yet to come (`chassis fleet` lists them)",
                chassis::text::escape(swarm, 256)
            );
        }
    }
    let mut ids = Vec::with_capacity(tasks.len());
    for request in tasks {
        let id = queue
            .submit(swarm, request)
            .await
            .context("submitting a task")?;
        if wait.is_none() {
            json_line(&serde_json::json!({ "task_id": id, "swarm_id": swarm }))?;
        }
        ids.push(id);
    }
    let Some(timeout) = wait else {
        return Ok(());
    };
    let mut all_succeeded = true;
    for id in ids {
        let result = queue.wait(&id, timeout).await?;
        all_succeeded &= result.status == ResultStatus::Success;
        json_line(&result)?;
    }
    if !all_succeeded {
        bail!("not every task succeeded");
    }
    Ok(())
}

/// `chassis fleet`: the workers' heartbeats, as a table or JSON.
async fn fleet(
    url: &str,
    auth: &chassis::serve::config::NatsAuth,
    json: bool,
    all: bool,
) -> Result<()> {
    use chassis::serve::queue::{Queue, workers};
    let queue = Queue::open_as(url, auth).await?;
    let now = workers::now_ms();
    let entries: Vec<_> = queue
        .workers()
        .await?
        .into_iter()
        .filter(|w| all || w.live_at(now))
        .collect();
    if json {
        return json_out(&serde_json::json!({ "workers": entries }));
    }
    if entries.is_empty() {
        return out("no live workers");
    }
    let shown = |text: &str| chassis::text::escape(text, 128);
    for worker in &entries {
        let seen = now.saturating_sub(worker.last_seen_ms) as f64 / 1000.0;
        let state = if worker.live_at(now) { "live" } else { "gone" };
        let signer = worker
            .signer
            .as_deref()
            .map_or_else(|| "unsigned".to_string(), |k| format!("key {}", shown(k)));
        out(format_args!(
            "{} ({state}, seen {seen:.1} s ago, {signer})",
            shown(&worker.worker)
        ))?;
        for swarm in &worker.swarms {
            let quarantined = if swarm.quarantined {
                ", quarantined"
            } else {
                ""
            };
            out(format_args!(
                "  {} {}: {}/{} slots free{quarantined}",
                shown(&swarm.swarm_id),
                shown(&swarm.version),
                swarm.free_slots,
                swarm.slots
            ))?;
        }
    }
    Ok(())
}

/// `chassis keygen NAME`: NAME.key (mode 600) and NAME.pub, never over
/// existing files.
fn keygen(name: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = chassis::serve::queue::trust::WorkerKey::generate().map_err(anyhow::Error::msg)?;
    let with = |ext: &str| {
        let mut file = name.as_os_str().to_owned();
        file.push(ext);
        PathBuf::from(file)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} exists: not overwritten", path.display());
        }
    }
    let write = |path: &Path, text: &[u8], mode: u32| -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    };
    write(&private, key.to_file_text().as_bytes(), 0o600)?;
    write(&public, key.public_file_text().as_bytes(), 0o644)?;
    out(format_args!(
        "wrote {} (secret: the worker's nats.signing_key) and {} (public: clients' --worker-key)\nkey {}",
        private.display(),
        public.display(),
        key.public_hex()
    ))
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Largest payload read from a file or stdin, in bytes.
const MAX_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;

async fn run(command: Command, max_component_bytes: u64) -> Result<()> {
    match command {
        Command::Validate {
            contracts,
            brief,
            contract_only,
        } => {
            let mut failed = 0;
            for path in &contracts {
                let contract = match ServiceContract::from_file(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!(
                            "error: {}",
                            chassis::text::escape(&e.to_string(), MAX_ERROR_LINE_BYTES)
                        );
                        failed += 1;
                        continue;
                    }
                };
                let checked = if contract_only {
                    Ok(String::new())
                } else {
                    // Load it for real, in a host of its own, then let it go.
                    match host_for(
                        &contract,
                        max_component_bytes,
                        Vec::new(),
                        None,
                        (false, None),
                        None,
                    ) {
                        Ok(chassis) => chassis
                            .load(path)
                            .await
                            .map(|info| {
                                format!(
                                    "; component {} serves {}",
                                    info.origin,
                                    info.task_types.join(", ")
                                )
                            })
                            .map_err(anyhow::Error::from),
                        Err(e) => Err(e),
                    }
                };
                match checked {
                    Ok(what) => {
                        out(format_args!(
                            "OK: {} ({}){what}",
                            path.display(),
                            contract.swarm_id
                        ))?;
                        if !brief {
                            out(contract.to_toml())?;
                        }
                    }
                    Err(e) => {
                        eprintln!(
                            "error: {}",
                            chassis::text::escape(&format!("{e:#}"), MAX_ERROR_LINE_BYTES)
                        );
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
            let bytes = chassis::files::read_bounded(&component, max_component_bytes)
                .with_context(|| format!("{}: cannot read component", component.display()))?;
            let wit = chassis::inspect::component_wit(&bytes, &component.display().to_string())?;
            out(wit.trim_end())
        }
        Command::Audit(AuditCommand::Verify {
            file,
            mut expect_head,
            nats,
            worker,
            auth,
            trust,
        }) => {
            if let (Some(url), Some(worker)) = (nats, worker) {
                let trust = trust.trust()?;
                let queue = chassis::serve::queue::Queue::open_as(&url, &auth.auth()?).await?;
                let check =
                    chassis::serve::queue::mirror::verify_mirror(&queue, &worker, &trust).await?;
                let head = check.head.with_context(|| {
                    format!("the audit mirror holds no record of worker {worker:?}")
                })?;
                let signed = if matches!(trust, chassis::serve::queue::trust::Trust::Workers(_)) {
                    "each signed by a trusted worker key"
                } else {
                    "signatures not checked (--insecure-unsigned)"
                };
                out(format_args!(
                    "mirror: {} records of worker {worker:?}, {signed}",
                    check.records
                ))?;
                expect_head = Some(head);
            } else if auth.given() || !trust.worker_key.is_empty() || trust.insecure_unsigned {
                bail!("NATS credentials and worker keys go with --nats URL --worker ID");
            }
            let v = match &expect_head {
                Some(head) => chassis::audit::verify_against(&file, head)?,
                None => chassis::audit::verify(&file)?,
            };
            let partial = if v.partial_tail_bytes > 0 {
                format!(
                    " ({} bytes of a partial last record ignored)",
                    v.partial_tail_bytes
                )
            } else {
                String::new()
            };
            let segments = if v.segments > 1 {
                format!(" in {} segments", v.segments)
            } else {
                String::new()
            };
            let from = match &v.anchor {
                Some(anchor) => format!(
                    ", records {} to {}, from the checkpoint covering record {} (older segments removed by retention)",
                    v.first_seq, v.last_seq, anchor.seq
                ),
                None => String::new(),
            };
            out(format_args!(
                "OK: {} records{segments}{from}{partial}",
                v.records
            ))?;
            let held = match (&expect_head, &v.anchor) {
                (Some(head), Some(anchor)) if head.seq < anchor.seq => {
                    " (the expected head is older than the log's first record: covered by its first checkpoint, not checked by hash)"
                }
                (Some(_), _) => " (holds the expected head)",
                (None, _) => "",
            };
            out(format_args!("head: {}{held}", v.head()))
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
            let mut written = Ok(());
            chassis::audit::for_each(&file, &filter, |record| {
                if written.is_ok() {
                    written = out(chassis::text::json_for_terminal(&record.to_string()));
                }
            })
            .context("audit log")?;
            written
        }
        Command::Release {
            audit: None,
            nats: Some(url),
            contract,
            auth,
        } => {
            let swarm_id = if contract.is_file() {
                ServiceContract::from_file(&contract)?.swarm_id
            } else {
                contract.to_string_lossy().into_owned()
            };
            let queue = chassis::serve::queue::Queue::open_as(&url, &auth.auth()?).await?;
            chassis::serve::queue::fleet::release(&queue, &swarm_id).await?;
            out(format_args!("released {swarm_id:?} on every worker"))
        }
        Command::Release {
            audit, contract, ..
        } => {
            let audit = audit.context("give --audit FILE, or --nats URL")?;
            let contract = ServiceContract::from_file(&contract)?;
            let log = open_audit(&audit, chassis::audit::FsyncPolicy::Always, Some(&contract))?;
            let mut reputation = log
                .history(&contract.swarm_id)
                .map(|h| h.reputation)
                .with_context(|| {
                    format!(
                        "swarm {:?} has no record in the audit log",
                        contract.swarm_id
                    )
                })?;
            if !reputation.quarantined {
                bail!("swarm {:?} is not quarantined", contract.swarm_id);
            }
            reputation.release();
            chassis::EventSink::record(
                &*log,
                &chassis::Event::Released {
                    swarm_id: contract.swarm_id.clone(),
                    score: reputation.score,
                },
            );
            log.close()?;
            out(format_args!(
                "released {:?}: reputation back to {:.2}",
                contract.swarm_id, reputation.score
            ))
        }
        Command::Report {
            audit,
            contracts,
            json,
            full,
            from,
            to,
        } => {
            let contracts = contracts
                .iter()
                .map(ServiceContract::from_file)
                .collect::<Result<Vec<_>, _>>()?;
            let start = match (full, from, to) {
                (true, ..) => chassis::audit::From::Start,
                (false, None, None) => chassis::audit::From::Latest,
                (false, from, to) => {
                    chassis::audit::From::Range(from.unwrap_or(1), to.unwrap_or(u64::MAX))
                }
            };
            let (reports, restored) =
                chassis::report::from_log(&audit, &contracts, start).context("audit log")?;
            let v = &restored.verified;
            let origin = match (&restored.checkpoint, start) {
                (_, chassis::audit::From::Range(a, b)) => {
                    format!("records {a} to {} only", b.min(v.last_seq))
                }
                (Some(head), _) => format!("the checkpoint covering record {}", head.seq),
                (None, _) => "the log's start".to_string(),
            };
            let unchecked = if v.first_seq > 1 {
                " (the records before these are not checked here: `chassis audit verify` checks the whole log)"
            } else {
                ""
            };
            eprintln!(
                "audit log: read records {} to {}: state from {origin}, then {} records replayed{unchecked}",
                v.first_seq, v.last_seq, restored.replayed
            );
            let mut all_pass = true;
            for report in &reports {
                // No tasks: nothing to pass or fail.
                all_pass &=
                    report.slo.tasks == 0 || report.slo.compliance.iter().all(|c| c.compliant);
                all_pass &= !report.reputation.quarantined;
            }
            if json {
                json_out(&reports)?;
            } else {
                for r in &reports {
                    let s = &r.slo;
                    out(format_args!(
                        "{} ({} tasks, {} failed)",
                        r.swarm_id, s.tasks, s.failed
                    ))?;
                    if s.tasks == 0 {
                        out("  NO DATA: no tasks of this swarm in the audit log")?;
                    }
                    for c in s.compliance.iter().filter(|_| s.tasks > 0) {
                        let mark = if c.compliant { "PASS" } else { "FAIL" };
                        let unit = if c.metric == "response_time" {
                            " ms p95"
                        } else {
                            " %"
                        };
                        out(format_args!(
                            "  {mark} {:<13} {:>10.2}{unit} (target {})",
                            c.metric, c.actual, c.target
                        ))?;
                    }
                    let quarantine = match &r.reputation.quarantine_reason {
                        Some(reason) if r.reputation.quarantined => {
                            format!(", QUARANTINED: {reason}")
                        }
                        _ => String::new(),
                    };
                    out(format_args!(
                        "  reputation {:.2} (SLO {:.2}, security {:.2}){quarantine}",
                        r.reputation.score,
                        r.reputation.slo_compliance,
                        r.reputation.security_compliance,
                    ))?;
                }
            }
            if !all_pass {
                bail!("not every swarm meets its SLO targets");
            }
            Ok(())
        }
        Command::Serve {
            config,
            listen,
            no_watch,
            nats,
            worker_id,
            signing_key,
            auth,
            contracts,
        } => {
            let options = ServeOptions {
                config,
                listen,
                no_watch,
                nats,
                worker_id,
                signing_key,
                auth,
            };
            serve(options, contracts).await
        }
        Command::Submit {
            nats,
            swarm,
            task,
            payload,
            task_id,
            file,
            wait,
            timeout,
            allow_unserved,
            auth,
            trust,
        } => {
            let tasks = match (task, file) {
                (Some(task), _) => {
                    let payload = chassis::Payload::from_text(payload)
                        .context("--payload is not valid JSON")?;
                    let mut request = TaskRequest::with_payload(task, payload);
                    if let Some(id) = task_id {
                        request = request.with_id(id);
                    }
                    vec![request]
                }
                (None, Some(file)) => tasks_from_lines(&file)?,
                (None, None) => bail!("give --task (one task) or --file (tasks, one per line)"),
            };
            // Refused before anything is put on the queue.
            let trust = if wait { Some(trust.trust()?) } else { None };
            submit(
                &nats,
                &auth.auth()?,
                &swarm,
                tasks,
                wait.then(|| std::time::Duration::from_secs_f64(timeout)),
                trust,
                allow_unserved,
            )
            .await
        }
        Command::Fleet {
            nats,
            json,
            all,
            auth,
        } => fleet(&nats, &auth.auth()?, json, all).await,
        Command::Keygen { name } => keygen(&name),
        Command::Run {
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
        } => {
            let payload_text = match payload_file {
                Some(p) if p.as_os_str() == "-" => {
                    let bytes = chassis::files::read_limited(std::io::stdin(), MAX_PAYLOAD_BYTES)
                        .context("reading the payload from stdin")?;
                    String::from_utf8(bytes).context("the payload on stdin is not UTF-8")?
                }
                Some(p) => chassis::files::read_bounded_text(&p, MAX_PAYLOAD_BYTES)
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
                        chassis::EventSink::record(
                            &*log,
                            &chassis::Event::LoadRejected {
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
                .map(|_| std::sync::Arc::new(chassis::metrics::Metrics::new()));
            let sinks = audit_log
                .iter()
                .map(|log| log.clone() as std::sync::Arc<dyn chassis::EventSink>)
                .chain(
                    recorder
                        .iter()
                        .map(|m| m.clone() as std::sync::Arc<dyn chassis::EventSink>),
                )
                .collect();
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
}
