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
use std::process::ExitCode;

use chassis::commands::{
    Global, MAX_ERROR_LINE_BYTES, StdoutClosed, audit, build, deploy, fleet, inspect, keygen, new,
    optimize, release, report, run, serve, submit, testing, validate,
};
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

    /// Largest component file read, in MiB.
    #[arg(long, global = true, default_value_t = 256, value_name = "MIB")]
    max_component_mb: u64,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Check contract files, and that each one's component loads under it
    /// (it is a component, exports the task interface, imports only what
    /// the contract grants, answers describe); print each contract with its
    /// defaults filled in.
    Validate(validate::ValidateCommand),
    /// Print a component's imports and exports as WIT.
    Inspect(inspect::InspectCommand),
    /// Verify or read an audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// SLO compliance and reputation per swarm, rebuilt from an audit log.
    ///
    /// Prints, for each contract's swarm: p95 latency, error rate and
    /// availability against the contract's targets with a pass/fail mark,
    /// and the reputation score. Exits with 1 if any target is missed or any
    /// swarm ended quarantined. Reads the log from its newest checkpoint
    /// (the chain checked from there; `chassis audit verify` checks all of
    /// it), or with --full from its start, or --from/--to a range.
    Report(report::ReportCommand),
    /// Release a quarantined swarm: records a `released` event in the audit
    /// log, so the next `chassis run --audit` of that swarm runs again; or,
    /// with --nats, releases it on every `chassis serve --nats` worker.
    Release(release::ReleaseCommand),
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
    Serve(serve::ServeCommand),
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
    Submit(submit::SubmitCommand),
    /// The fleet of a NATS queue: the live workers (from their heartbeats),
    /// the swarms each serves with version and free slots, and each
    /// worker's signing key.
    #[command(after_help = "Example:\n  chassis fleet --nats nats://127.0.0.1:4222")]
    Fleet(fleet::FleetCommand),
    /// Deploy a swarm to every worker of a NATS fleet that serves
    /// deployments: its contract and component go into the fleet's object
    /// store as a bundle signed with --key (once per digest), and the
    /// swarm's entry in the deployments bucket points at it. Workers check
    /// the signature against their nats.trusted_deployers and the digests
    /// against the bytes, then load it beside the old version and swap it
    /// in. --rollback goes back to an earlier bundle.
    #[command(after_help = "Examples:
  chassis keygen deployer
  chassis deploy ./greeter --nats nats://127.0.0.1:4222 --key deployer.key --wait
  chassis deploy --rollback greeter --nats nats://127.0.0.1:4222 --key deployer.key

Workers: chassis serve --nats URL --deployments --deployer-key deployer.pub")]
    Deploy(deploy::DeployCommand),
    /// Stop serving a deployed swarm on every worker of the fleet: a signed
    /// entry without a bundle; each worker unloads it (running tasks
    /// finish).
    #[command(after_help = "Example:
  chassis undeploy greeter --nats nats://127.0.0.1:4222 --key deployer.key --wait")]
    Undeploy(deploy::UndeployCommand),
    /// Make an Ed25519 signing key for a worker or a deployer: NAME.key
    /// (the secret, mode 600; a worker's nats.signing_key or --signing-key,
    /// or a deployer's `chassis deploy --key`) and NAME.pub (for those who
    /// believe it: clients' --worker-key, or workers' --deployer-key).
    /// Refuses to overwrite.
    Keygen(keygen::KeygenCommand),
    /// Make a directory holding a working swarm: its source with one
    /// example task, the language's project file, a contract granting the
    /// least that runs the example, a test file (tests.toml), a .gitignore
    /// and a README. Writes over nothing: the directory must not exist.
    #[command(
        after_help = "Example:\n  chassis new greeter\n  cd greeter\n  chassis build\n  chassis test\n  chassis run . --task hello --payload '{\"name\": \"Ada\"}'"
    )]
    New(new::NewCommand),
    /// Build the swarm project in DIR (default: here) into a component with
    /// the language's own tools, then load it under its contract as a load
    /// is checked (exports, each import against the grants, task types);
    /// print its path, size and task types.
    Build(build::BuildCommand),
    /// Run Binaryen's wasm-opt (-Os) over each core module of a component
    /// built anywhere, keeping the rest of it byte for byte; validate the
    /// result and print its path. Binaryen is installed on first use
    /// (needs Node.js); docs/performance.md says what it gains per language.
    #[command(
        after_help = "Example:\n  chassis optimize target/greeter.wasm -o target/greeter.opt.wasm"
    )]
    Optimize(optimize::OptimizeCommand),
    /// Build the swarm project in DIR (default: here), then run each case of
    /// its tests.toml through the host under the contract; print a diff for
    /// each failure. Exits with status 1 if any case fails.
    Test(testing::TestCommand),
    /// Load a swarm from its contract and run one task.
    ///
    /// Prints the task's output JSON on stdout (or the whole outcome with --json).
    /// Exits with status 1 if the swarm could not be loaded, the task was refused
    /// or stopped, or the swarm reported an error.
    #[command(
        after_help = "Example:\n  chassis run config/analyzer.toml --task analyze_code \\\n    --payload '{\"language\":\"python\",\"source\":\"# hi\\nprint(1)\\n\"}'"
    )]
    Run(run::RunCommand),
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
    let global = Global {
        max_component_bytes: cli.max_component_mb.saturating_mul(1024 * 1024),
    };
    let result = match cli.command {
        Command::Validate(command) => command.execute(&global).await,
        Command::Inspect(command) => command.execute(&global).await,
        Command::Audit(command) => command.execute().await,
        Command::Report(command) => command.execute().await,
        Command::Release(command) => command.execute().await,
        Command::Serve(command) => command.execute().await,
        Command::Submit(command) => command.execute().await,
        Command::Fleet(command) => command.execute().await,
        Command::Deploy(command) => command.execute().await,
        Command::Undeploy(command) => command.execute().await,
        Command::Keygen(command) => command.execute().await,
        Command::New(command) => command.execute().await,
        Command::Build(command) => command.execute(&global).await,
        Command::Optimize(command) => command.execute().await,
        Command::Test(command) => command.execute(&global).await,
        Command::Run(command) => command.execute(&global).await,
    };
    match result {
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
