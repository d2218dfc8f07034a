//! `cargo xtask`: the project's build, test and demo commands.
//!
//! - `build`: compile every Rust swarm under `swarms/` to a wasm32-wasip2
//!   component and copy it to `target/swarms/<name>.wasm`, where the
//!   contracts in `config/` point; adds the rustup target when missing. Then
//!   build the Python swarms with componentize-py ([`python`]).
//! - `test`: `build`, then every test (unit, end-to-end, doc), a `--quick`
//!   smoke run of the benchmark (debug build), the demo, a check that the
//!   library without its `cli` feature pulls in no CLI crate, then
//!   `clippy -D warnings` and `fmt --check`.
//! - `demo`: `build`, then the guardian-council walkthrough.
//! - `bench`: `build`, then the side-by-side benchmarks (`bench/`) in release
//!   mode; a table on stdout and `target/bench/results.json`.
//!
//! Cargo is always the one running xtask (`$CARGO`), and one target dir is shared.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod js;
mod python;
mod script;

const WASM_TARGET: &str = "wasm32-wasip2";

/// The Cargo profile swarms are built with (release, plus LTO).
const SWARM_PROFILE: &str = "swarm";

const HELP: &str = "\
cargo xtask <command>

Commands:
  build   Build every swarm in swarms/ (Rust; Python with componentize-py; JavaScript with
          componentize-js) into target/swarms/
  test    build, then run every test, a benchmark smoke run, the demo, clippy (-D warnings)
          and rustfmt --check
  demo    build the Rust swarms, then run the guardian-council example (load contract, load
          swarm, vote; needs no Python or Node)
  bench   build, then measure the host against bare wasmtime and native code (release
          build; the first run compiles the host in release mode, several minutes)

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

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("build") => build(&root),
        Some("test") => test(&root, args[1..].iter().any(|a| a == "--no-lint")),
        Some("demo") => demo(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}

/// The workspace's metadata from `cargo metadata` (members only), run
/// where xtask was started: the checkout the user is in, wherever it is.
fn metadata() -> Result<serde_json::Value> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")
}

/// The root of the workspace xtask was started in.
fn workspace_root() -> Result<PathBuf> {
    let meta = metadata()?;
    let root = meta["workspace_root"]
        .as_str()
        .context("cargo metadata gave no workspace_root")?;
    Ok(PathBuf::from(root))
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn run_cmd(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Make sure the wasm32-wasip2 standard library is installed.
fn ensure_wasm_target() -> Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).exists() {
        return Ok(());
    }
    step(&format!("installing the {WASM_TARGET} target with rustup"));
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!(
            "`rustup target add {WASM_TARGET}` failed ({s}); install the target for the toolchain in {} by hand",
            sysroot.display()
        ),
        Err(e) => bail!(
            "the {WASM_TARGET} target is missing and rustup could not be run ({e}); \
             install rustup (https://rustup.rs) or add the {WASM_TARGET} standard library to {} by hand",
            sysroot.display()
        ),
    }
}

/// The Rust swarm packages: the workspace members under `swarms/` that
/// build a `cdylib`, by `cargo metadata`. A directory under `swarms/` (or
/// `swarms/hostile/`) with a Cargo.toml that is not a member is an error
/// that says how to fix it, rather than a swarm silently left unbuilt.
fn swarm_packages(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let meta = metadata()?;
    let swarms_dir = root.join("swarms");
    let mut found = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let Some(dir) = manifest.parent() else {
            continue;
        };
        let cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            });
        if cdylib && dir.starts_with(&swarms_dir) {
            let name = package["name"].as_str().unwrap_or_default().to_string();
            found.push((name, dir.to_path_buf()));
        }
    }
    for group in [swarms_dir.clone(), swarms_dir.join("hostile")] {
        let Ok(entries) = std::fs::read_dir(&group) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("Cargo.toml").is_file() && !found.iter().any(|(_, d)| *d == dir) {
                let member = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
                bail!(
                    "{member} has a Cargo.toml but is not a workspace member that builds a cdylib: \
                     add \"{member}\" to [workspace] members in Cargo.toml, with \
                     crate-type = [\"cdylib\"] under [lib] in its Cargo.toml"
                );
            }
        }
    }
    found.sort();
    Ok(found)
}

fn build(root: &Path) -> Result<()> {
    build_rust(root)?;
    python::build(root, &python::swarms(root)?)?;
    js::build(root, &js::swarms(root)?)
}

/// The Rust swarms only: all the demo needs (no Python or Node tools).
fn build_rust(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let swarms = swarm_packages(root)?;
    step(&format!(
        "building {} swarms for {WASM_TARGET} (profile {SWARM_PROFILE}): {}",
        swarms.len(),
        swarms
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut cmd = cargo();
    cmd.args(["build", "--profile", SWARM_PROFILE, "--target", WASM_TARGET]);
    for (name, _) in &swarms {
        cmd.args(["-p", name]);
    }
    run_cmd(cmd, "building swarms")?;

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let from = target_dir.join(WASM_TARGET).join(SWARM_PROFILE);
    let to = root.join("target/swarms");
    std::fs::create_dir_all(&to)?;
    for (name, _) in &swarms {
        let file = format!("{}.wasm", name.replace('-', "_"));
        let src = from.join(&file);
        let dst = to.join(&file);
        std::fs::copy(&src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        report_size(root, &dst)?;
    }
    Ok(())
}

/// Whether `out` is newer than every file under `inputs` (files or
/// directories); says so when it is.
fn up_to_date(root: &Path, out: &Path, inputs: &[&Path]) -> bool {
    let sources = inputs
        .iter()
        .map(|p| newest(p))
        .max()
        .unwrap_or(std::time::UNIX_EPOCH);
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    let fresh = built.is_some_and(|t| t > sources);
    if fresh {
        eprintln!(
            "    {} (up to date)",
            out.strip_prefix(root).unwrap_or(out).display()
        );
    }
    fresh
}

/// Print a built component's path and size.
fn report_size(root: &Path, out: &Path) -> Result<()> {
    let size = std::fs::metadata(out)?.len();
    eprintln!(
        "    {} ({} KiB)",
        out.strip_prefix(root).unwrap_or(out).display(),
        size / 1024
    );
    Ok(())
}

/// Newest modification time of `path`, or of the files under it.
fn newest(path: &Path) -> std::time::SystemTime {
    let mut latest = std::time::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(path) else {
        // A file, or nothing there.
        return std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(latest);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "__pycache__" || n == "node_modules")
            {
                continue;
            }
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        };
        latest = latest.max(time);
    }
    latest
}

fn test(root: &Path, no_lint: bool) -> Result<()> {
    build(root)?;
    step("running the host, SDK and end-to-end tests");
    // Swarm crates are components: their export names cannot link natively.
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]);
    for (name, _) in swarm_packages(root)? {
        cmd.args(["--exclude", &name]);
    }
    run_cmd(cmd, "cargo test")?;
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
    .arg(root.join("target/bench/smoke.json"));
    run_cmd(cmd, "the benchmark smoke run")?;
    step("the demo: the guardian vote is signed and verifies");
    let out = demo_command().output().context("running the demo")?;
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

fn bench(root: &Path, args: &[String]) -> Result<()> {
    build(root)?;
    step("building the benchmark and the host in release mode");
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "chassis-bench"]);
    run_cmd(cmd, "building the benchmark")?;
    step("benchmarking: ours vs bare wasmtime and native code");
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "chassis-bench", "--"])
        .args(args);
    run_cmd(cmd, "the benchmark")
}

fn demo(root: &Path) -> Result<()> {
    build_rust(root)?;
    step("running the guardian-council example");
    run_cmd(demo_command(), "the demo")
}

/// `cargo run` of the guardian-council example.
fn demo_command() -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "chassis",
        "--example",
        "load_guardian_council",
    ]);
    cmd
}
