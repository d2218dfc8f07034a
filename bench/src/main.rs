//! `chassis-bench`: the chassis host measured side by side with a baseline,
//! in one run. `cargo xtask bench` builds the swarms and runs this in release
//! mode.
//!
//! Each figure is measured in interleaved rounds (ours, baseline, ours, …)
//! after a warm-up; the table shows each side's median with its range over
//! the rounds, and the ratio of the medians (ours / baseline). The figures,
//! one module each under [`figures`]:
//!
//! - (a) latency of a trivial task through `Chassis::execute_task` (every
//!   limit, an audit log file, SLO tracking) vs bare wasmtime (fresh store
//!   from an `InstancePre`, pooling allocator, one call) — see [`bare`];
//! - (b) throughput with two workers, ours vs bare wasmtime;
//! - (c) one import call (log, credentials.get) vs a bare host function;
//! - (d) the analyzer over 1 MiB of source vs the same Rust function
//!   compiled natively, and epoch interruption on vs off; the C analyzer vs
//!   the same C compiled natively;
//! - (e) loading a component from the cache vs compiling it;
//! - (f) resident memory per loaded swarm and per running instance, each
//!   measured in a fresh child process ([`child`]);
//! - (g) a trivial task in a Python, JavaScript, C, C++ and AssemblyScript
//!   swarm vs the same component in bare wasmtime;
//! - (h) a trivial task over `chassis serve`'s HTTP API vs in-process, and
//!   through the NATS queue;
//! - (i) storage operations;
//! - (j) each language's analyzer after `wasm-opt` vs as built: size,
//!   compile, cache load, a trivial and a CPU-bound task.
//!
//! [`setup`] loads the components into both hosts; [`measure`] holds the
//! rounds, the statistics, the table and the machine's description. Results
//! go to stdout as a table and to a JSON file (`--out`).

mod bare;
mod child;
mod figures;
mod measure;
mod setup;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;

use crate::setup::Setup;

/// Measured rounds per figure without `--rounds`.
const DEFAULT_ROUNDS: usize = 9;
/// Measured rounds per figure with `--quick` and without `--rounds`.
const QUICK_ROUNDS: usize = 3;

/// chassis-bench: the chassis host vs bare wasmtime and native code
#[derive(Parser)]
#[command(
    name = "chassis-bench",
    args_override_self = true,
    after_help = "Run through `cargo xtask bench`, which builds the components first."
)]
struct Options {
    /// Measured rounds per figure (default 9, or 3 with --quick; each side,
    /// interleaved)
    #[arg(long, value_name = "N", value_parser = parse_rounds)]
    rounds: Option<usize>,
    /// Write the results as JSON (default target/bench/results.json)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Measure only these figures, by letter (e.g. `--only ad`)
    #[arg(long, value_name = "LIST", value_parser = parse_only)]
    only: Option<String>,
    /// 3 rounds and shorter loops (a smoke run, not for quoting)
    #[arg(long)]
    quick: bool,
    /// One measurement in this process, printed: loaded-ours, loaded-bare,
    /// running-ours, running-bare (figure (f) runs these), profile (a loop
    /// of trivial tasks for a profiler) or profile-credential (a loop of
    /// credentials.get calls)
    #[arg(long, num_args = 2, value_names = ["MODE", "ROOT"])]
    child: Option<Vec<String>>,
}

impl Options {
    /// Measured rounds per figure.
    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick {
            QUICK_ROUNDS
        } else {
            DEFAULT_ROUNDS
        })
    }

    /// Whether to measure this figure.
    fn wants(&self, figure: char) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(figure))
    }
}

/// `--rounds`: a number of at least 1.
fn parse_rounds(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "needs a number of at least 1".to_string())
}

/// `--only`: figure letters.
fn parse_only(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.chars().all(|c| figures::LETTERS.contains(c)) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "needs figure letters among {}, e.g. `--only ab`",
            figures::LETTERS
        ))
    }
}

fn main() {
    let options = Options::parse();
    if let Err(e) = real_main(&options) {
        eprintln!("chassis-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(options: &Options) -> Result<()> {
    if let Some([mode, root]) = options.child.as_deref() {
        return child::run(mode, Path::new(root));
    }
    let root = workspace_root();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(&root, options))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ lives in the workspace")
        .to_path_buf()
}

/// Set up, measure the figures asked for, print the table, write the JSON.
async fn run(root: &Path, options: &Options) -> Result<()> {
    let bench_dir = root.join("target/bench");
    std::fs::create_dir_all(&bench_dir)?;
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| bench_dir.join("results.json"));
    let n = options.rounds();
    eprintln!("==> setting up (loading the components into the chassis and into bare wasmtime)");
    let setup = Setup::new(root, &bench_dir).await?;
    let run = figures::Run {
        root,
        bench_dir: &bench_dir,
        rounds: n,
        scale: if options.quick { 4 } else { 1 },
        setup: &setup,
    };
    let figures = figures::measure(&run, |f| options.wants(f)).await?;
    setup.audit.close()?;
    let audit_records = chassis::audit::verify(setup.audit.path())?.records;
    eprintln!("    audit log of the run: {audit_records} records, verify OK");

    measure::print_table(&figures);
    let results = serde_json::json!({
        "date": chassis::audit::rfc3339(std::time::SystemTime::now()),
        "machine": measure::machine(),
        "rounds": n,
        "quick": options.quick,
        "figures": figures,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("\nresults: {}", out.display());
    Ok(())
}
