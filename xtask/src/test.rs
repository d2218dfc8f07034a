//! `cargo xtask test`: `build`, Chromium for the status page's browser test
//! (installed with apt where missing: `tools::chromium`; where it cannot be,
//! the test skips, and under CI the run fails saying why), the alerting
//! rules in `docs/alerts/` checked and unit-tested with `promtool` (fetched
//! from Debian's `prometheus` package: `tools::promtool`), then every test
//! (unit, end-to-end, doc) with the swarm crates left out, the fuzz command over every target for a
//! second each, a short soak of `chassis serve` and short ones of the
//! worker fleet (on a three-node NATS cluster that loses nodes, through
//! `chassis submit` with workers killed, in a rolling restart), a
//! `--quick` smoke run of the benchmark (debug build), the demo (its
//! vote's signature must verify), a check that
//! the library without its `cli` feature pulls in no CLI crate, that the
//! Rust SDK packages on its own, then
//! `clippy -D warnings` and `fmt --check` (skipped with `--no-lint`).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, run_cmd, step};
use crate::{build, demo};

/// Build, test and check everything; `no_lint` skips clippy and rustfmt.
pub fn run(root: &Path, no_lint: bool) -> Result<()> {
    build::run(root)?;
    step("a headless browser for the status page's test");
    let mut cmd = cargo();
    match crate::tools::chromium() {
        Ok(browser) => {
            eprintln!("xtask: {}", browser.display());
            cmd.env("CHASSIS_CHROMIUM", browser);
        }
        // Under CI a test that does not run is a failure, not a pass.
        Err(why) if crate::util::in_ci() => {
            bail!("CI is set, and the status page's browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("xtask: {why}. The status page's browser test is skipped.");
            cmd.env("CHASSIS_BROWSER_SKIP", why);
        }
    }
    step("the Prometheus alerting rules, checked and unit-tested with promtool");
    match crate::tools::promtool(root) {
        Ok(promtool) => {
            let alerts = root.join("docs/alerts");
            for args in [
                ["check", "rules", "chassis.rules.yml"],
                ["test", "rules", "chassis.rules.test.yml"],
            ] {
                let mut check = std::process::Command::new(&promtool);
                check.args(args).current_dir(&alerts);
                run_cmd(check, &format!("promtool {}", args.join(" ")))?;
            }
        }
        Err(why) if crate::util::in_ci() => {
            bail!("CI is set, and the alerting rules cannot be checked: {why}")
        }
        Err(why) => eprintln!("xtask: {why}. The alerting rules are not checked."),
    }
    step("running the host, SDK and end-to-end tests");
    // Swarm crates are components: their export names cannot link natively.
    cmd.args(["test", "--workspace"]);
    for (name, _) in build::swarm_packages(root)? {
        cmd.args(["--exclude", &name]);
    }
    run_cmd(cmd, "cargo test")?;
    step("cargo xtask fuzz runs every target (debug build, 1 s each)");
    let args = ["all", "--time", "1"].map(String::from);
    run_cmd(crate::fuzz_command(&args, false), "the fuzz command")?;
    step("a short soak of chassis serve (debug build: 5,000 tasks)");
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", "chassis", "--bin", "chassis"]);
    run_cmd(cmd, "building chassis")?;
    short_soak(root, &["--tasks", "5000", "--out", "target/soak-short"])?;
    step("the worker fleet on a NATS cluster losing a node and freezing another (debug build)");
    short_soak(
        root,
        &[
            "--cluster",
            "--tasks",
            "3000",
            "--rate",
            "150",
            "--freeze-seconds",
            "25",
            "--out",
            "target/soak-cluster-short",
        ],
    )?;
    step("20,000 tasks through chassis submit, a worker killed every 5 s (debug build)");
    short_soak(
        root,
        &[
            "--nats",
            "--tasks",
            "20000",
            "--cycle-seconds",
            "5",
            "--out",
            "target/soak-nats-short",
        ],
    )?;
    step("a rolling restart of three workers under load (debug build)");
    short_soak(
        root,
        &[
            "--rolling",
            "--tasks",
            "3000",
            "--rate",
            "150",
            "--cycle-seconds",
            "3",
            "--out",
            "target/soak-rolling-short",
        ],
    )?;
    step("the benchmark runs end to end (--quick, debug build: its figures mean nothing)");
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "chassis-bench",
        "--",
        "--quick",
        "--out",
    ])
    .arg(root.join("target/bench/smoke.json"))
    .env("CHASSIS_TOOLS_DIR", root.join("target/tools"));
    run_cmd(cmd, "the benchmark smoke run")?;
    step("the demo: the guardian vote is signed and verifies");
    let out = demo::command().output().context("running the demo")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() || !text.contains("Signature verified") || !text.contains("verify OK")
    {
        bail!(
            "the demo did not verify the vote's signature ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    step("an embedder's build of the library pulls in none of the CLI's crates");
    embedder_dependencies()?;
    step("the Rust SDK packages as a crate of its own (cargo package -p chassis-sdk)");
    let mut cmd = cargo();
    cmd.args(["package", "--quiet", "-p", "chassis-sdk", "--allow-dirty"]);
    run_cmd(cmd, "cargo package -p chassis-sdk")?;
    if no_lint {
        return Ok(());
    }
    step("clippy (all targets, -D warnings)");
    let mut cmd = cargo();
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run_cmd(cmd, "cargo clippy")?;
    step("an embedder's builds of the library: without NATS, and without the service");
    for features in [&["--features", "serve"][..], &[]] {
        // Warnings are read from the output: a RUSTFLAGS of its own would
        // rebuild every dependency.
        let out = cargo()
            .args(["check", "-p", "chassis", "--no-default-features"])
            .args(features)
            .output()
            .context("running cargo check")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("warning:") {
            bail!(
                "chassis --no-default-features {} does not build cleanly:\n{stderr}",
                features.join(" ")
            );
        }
    }
    step("rustfmt --check");
    let mut cmd = cargo();
    cmd.args(["fmt", "--all", "--check"]);
    run_cmd(cmd, "cargo fmt --check")?;
    eprintln!("\nxtask: all tests and checks passed");
    Ok(())
}

/// The crates only the `chassis` command line needs: an embedder that turns
/// off the default `cli` feature must not get them.
const CLI_ONLY_CRATES: &[&str] = &["clap", "tracing-subscriber"];

/// Check, with `cargo tree`, that `chassis` without default features
/// depends on none of [`CLI_ONLY_CRATES`].
fn embedder_dependencies() -> Result<()> {
    let out = cargo()
        .args([
            "tree",
            "-p",
            "chassis",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .context("running cargo tree")?;
    if !out.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = CLI_ONLY_CRATES
        .iter()
        .copied()
        .filter(|name| {
            tree.lines()
                .any(|l| l.split_whitespace().next() == Some(*name))
        })
        .collect();
    if !found.is_empty() {
        bail!(
            "chassis without its `cli` feature still depends on {}: keep them optional",
            found.join(", ")
        );
    }
    eprintln!(
        "    chassis --no-default-features: none of {}",
        CLI_ONLY_CRATES.join(", ")
    );
    Ok(())
}

/// A short `chassis-soak` run (debug build) with `args`, on the debug
/// `chassis`.
fn short_soak(root: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "chassis-fuzz",
        "--bin",
        "chassis-soak",
        "--",
    ])
    .args(args)
    .arg("--chassis")
    .arg(root.join("target/debug/chassis"));
    run_cmd(cmd, &format!("the short soak {}", args.join(" ")))
}
