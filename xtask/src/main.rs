//! `cargo xtask`: the project's build, test, demo and benchmark commands.
//!
//! This file reads the command line and hands over to one module per
//! command:
//!
//! - [`build`]: every swarm under `swarms/` into `target/swarms/` (Rust;
//!   Python and JavaScript through [`python`], [`js`] and [`script`];
//!   TypeScript, C, C++ and AssemblyScript projects through [`projects`],
//!   with `chassis build`);
//! - [`test`](mod@test): `build`, then every test, a benchmark smoke run,
//!   the demo, the embedder dependency check, clippy and rustfmt;
//! - [`demo`]: the Rust swarms, then the guardian-council walkthrough;
//! - [`bench`](mod@bench): `build`, then the side-by-side benchmarks in
//!   release mode;
//! - `fuzz`: the property-based fuzzer (`fuzz/`) in release mode;
//! - `soak`: `chassis serve` under a long mixed load, checked against its
//!   audit log (`fuzz/src/soak.rs`), or the worker fleet
//!   (`fuzz/src/fleet/`: `--cluster`, a three-node NATS cluster losing
//!   nodes; `--nats`, a million tasks through `chassis submit` while
//!   workers are killed; `--rolling`, a rolling restart), in release mode.
//!
//! [`tools`] installs the pinned programs from PyPI (componentize-py,
//! nats-server) under `target/tools/`. [`util`] holds what they share: running cargo and other programs,
//! progress lines, `cargo metadata`, file freshness. Cargo is always the one
//! running xtask (`$CARGO`), and one target dir is shared.

use anyhow::{Result, bail};

mod bench;
mod build;
mod demo;
mod js;
mod projects;
mod python;
mod script;
mod test;
mod tools;
mod util;

const HELP: &str = "\
cargo xtask <command>

Commands:
  build   Build every swarm in swarms/ (Rust; Python with componentize-py; JavaScript with
          componentize-js; TypeScript, C, C++ and AssemblyScript projects with chassis build)
          into target/swarms/
  test    build, then run every test, a benchmark smoke run, the demo, clippy (-D warnings)
          and rustfmt --check
  demo    build the Rust swarms, then run the guardian-council example (load contract, load
          swarm, vote; needs no Python or Node)
  bench   build, then measure the host against bare wasmtime and native code (release
          build; the first run compiles the host in release mode, several minutes)
  fuzz    TARGET [--time S] [--seed N]: drive a target (contract, audit, component, egress,
          imports, or all) with generated input for S seconds (default 60; release build);
          docs/reliability.md
  soak    [--tasks N] [--minutes M] [--clients C]: build, then run `chassis serve` under a mixed
          load of N tasks (default 1,000,000) and check every task's audit record, /metrics
          against the log, memory and file descriptors (release build); docs/reliability.md
          --cluster [--minutes M] [--rate R] [--workers W] [--cycle-seconds S]
          [--freeze-seconds F]: instead, workers on a three-node NATS cluster under a steady
          load (default 10 minutes at 300 tasks/s), a node killed and another frozen every
          cycle; checks one result per task, the audit logs and their mirrors
          --nats [--tasks N] [--workers W] [--clients C] [--cycle-seconds S]: instead, N tasks
          (default 1,000,000) through chassis submit and W workers (3), one killed and started
          again every S seconds (30); also checks the queue's counters, memory and descriptors
          --rolling [--minutes M] [--rate R] [--workers W] [--cycle-seconds S]: instead, each
          worker in turn restarted (SIGTERM, then a new configuration) every S seconds (10)
          under a steady load; checks nothing is lost and nothing runs twice

Options for test:
  --no-lint   skip clippy and rustfmt

Options for bench (passed on to chassis-bench):
  --rounds N  measured rounds per figure (default 9)
  --out FILE  results file (default target/bench/results.json)
  --only LIST only these figures, by letter (e.g. --only ad)
  --quick     a short smoke run; its figures are not for quoting
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// `cargo xtask fuzz`: the fuzzer in release mode, with the arguments.
fn fuzz(args: &[String]) -> Result<()> {
    if args.is_empty() {
        bail!(
            "name a target: cargo xtask fuzz contract|audit|component|egress|imports|all [--time S] [--seed N]"
        );
    }
    util::step("fuzzing (release build of chassis-fuzz)");
    util::run_cmd(fuzz_command(args, true), "the fuzz run")
}

/// The command that runs the fuzzer with `args`, built in release mode or
/// not.
pub(crate) fn fuzz_command(args: &[String], release: bool) -> std::process::Command {
    let mut cmd = util::cargo();
    cmd.args(["run", "--quiet"]);
    if release {
        cmd.arg("--release");
    }
    cmd.args(["-p", "chassis-fuzz", "--bin", "chassis-fuzz", "--"])
        .args(args);
    cmd
}

/// `cargo xtask soak`: build, then the soak of a release `chassis serve`.
fn soak(root: &std::path::Path, args: &[String]) -> Result<()> {
    build::run(root)?;
    util::step("building chassis and the soak (release)");
    let mut cmd = util::cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "chassis",
        "--bin",
        "chassis",
        "-p",
        "chassis-fuzz",
        "--bin",
        "chassis-soak",
    ]);
    util::run_cmd(cmd, "the release build")?;
    let has = |flag: &str| args.iter().any(|a| a == flag);
    util::step(if has("--cluster") {
        "soaking the worker fleet on a three-node NATS cluster"
    } else if has("--nats") {
        "soaking the worker fleet through the queue"
    } else if has("--rolling") {
        "restarting the worker fleet, one worker at a time, under load"
    } else {
        "soaking chassis serve"
    });
    let mut cmd = std::process::Command::new(root.join("target/release/chassis-soak"));
    cmd.arg("--chassis")
        .arg(root.join("target/release/chassis"))
        .args(args);
    util::run_cmd(cmd, "the soak")
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = util::workspace_root()?;
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("build") => build::run(&root),
        Some("test") => test::run(&root, args[1..].iter().any(|a| a == "--no-lint")),
        Some("demo") => demo::run(&root),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("soak") => soak(&root, &args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}
