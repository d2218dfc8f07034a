//! `chassis-fuzz TARGET [--time S] [--seed N]`: run a fuzz target for a
//! time budget and report the cases, the slowest case, the process's peak
//! resident memory during the run, and any failure
//! (shrunk, saved under `target/fuzz/<target>/`, to be added to
//! `fuzz/regressions/<target>/` once fixed). Run through `cargo xtask
//! fuzz`, which builds it in release mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chassis_fuzz::{Target, run};
use clap::Parser;
use sha2::{Digest, Sha256};

/// Fuzz the chassis host's parsers and checkers.
#[derive(Parser)]
#[command(name = "chassis-fuzz")]
struct Options {
    /// The target: contract, audit, component, egress, imports, or all.
    target: String,
    /// Seconds to run each target.
    #[arg(long, default_value_t = 60.0)]
    time: f64,
    /// Where the generated cases start (a different seed, different cases).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chassis-fuzz: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<bool> {
    let options = Options::parse();
    if !(options.time.is_finite() && options.time > 0.0) {
        bail!("--time must be a positive number of seconds");
    }
    let targets = if options.target == "all" {
        Target::ALL.to_vec()
    } else {
        vec![Target::from_name(&options.target).with_context(|| {
            format!(
                "no target {:?}: give one of {} or all",
                options.target,
                Target::ALL.map(Target::name).join(", ")
            )
        })?]
    };
    let root = workspace_root();
    let mut clean = true;
    for target in targets {
        eprintln!(
            "==> fuzzing {} for {:.0} s (seed {})",
            target.name(),
            options.time,
            options.seed
        );
        reset_peak_memory();
        let report = run(
            &root,
            target,
            Duration::from_secs_f64(options.time),
            options.seed,
        );
        println!(
            "{}: {} cases in {:.1} s ({:.0} a second), slowest {:.2} ms, peak memory {}, {}",
            target.name(),
            report.cases,
            report.elapsed.as_secs_f64(),
            report.cases as f64 / report.elapsed.as_secs_f64(),
            report.slowest.as_secs_f64() * 1000.0,
            peak_memory().map_or("unknown".to_string(), |kib| format!("{} MiB", kib / 1024)),
            if report.failure.is_some() {
                "FAILED"
            } else {
                "no failure"
            }
        );
        if let Some((reason, input)) = report.failure {
            clean = false;
            let saved = save(&root, target, &input)?;
            println!("  {reason}");
            println!(
                "  smallest failing input ({} bytes): {}",
                input.len(),
                saved.display()
            );
        }
    }
    Ok(clean)
}

/// Start counting the process's peak resident memory afresh (Linux:
/// writing 5 to `/proc/self/clear_refs` resets `VmHWM`).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, KiB.
fn peak_memory() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Keep a failing input under `target/fuzz/<target>/`, named by its hash.
fn save(root: &Path, target: Target, input: &[u8]) -> Result<PathBuf> {
    let dir = root.join("target/fuzz").join(target.name());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "crash-{}",
        &hex::encode(Sha256::digest(input))[..16]
    ));
    std::fs::write(&path, input)?;
    Ok(path)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ lives in the workspace")
        .to_path_buf()
}
