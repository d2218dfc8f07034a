//! `cargo xtask bench`: `build`, then the side-by-side benchmarks
//! (`chassis-bench`, in `bench/`) in release mode, with the command's
//! remaining arguments passed on; a table on stdout and
//! `target/bench/results.json`.
//!
//! Figure (h) also sets `wasmtime serve` beside `chassis serve`: this
//! builds the `wasi:http` hello component (`bench/http-hello`) and, once,
//! the `wasmtime` command line at the host's wasmtime version
//! ([`tools::wasmtime_cli`]), and tells the benchmark where they are
//! (`CHASSIS_BENCH_WASMTIME`, `CHASSIS_BENCH_HTTP_HELLO`). Without them
//! that row is skipped with a line that says why.

use std::path::Path;

use anyhow::Result;

use crate::build;
use crate::tools;
use crate::util::{cargo, run_cmd, step};

/// Build everything, then run the benchmark with `args`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    build::run(root)?;
    step("building the benchmark and the host in release mode");
    let mut cmd = cargo();
    // The queue figure runs `chassis serve` worker processes.
    cmd.args(["build", "--release", "-p", "chassis-bench", "-p", "chassis"]);
    run_cmd(cmd, "building the benchmark")?;
    let wasmtime = match tools::wasmtime_cli(root) {
        Ok(path) => Some(path),
        Err(why) => {
            eprintln!("xtask: no wasmtime command line, figure (h) skips `wasmtime serve`: {why}");
            None
        }
    };
    let hello = http_hello(root)?;
    step("benchmarking: ours vs bare wasmtime and native code");
    let mut cmd = cargo();
    if let Some(wasmtime) = wasmtime {
        cmd.env("CHASSIS_BENCH_WASMTIME", wasmtime)
            .env("CHASSIS_BENCH_HTTP_HELLO", hello);
    }
    cmd.args(["run", "--quiet", "--release", "-p", "chassis-bench", "--"])
        .args(args)
        // Figure (j) runs wasm-opt from the tools `chassis build` installs.
        .env("CHASSIS_TOOLS_DIR", root.join("target/tools"));
    run_cmd(cmd, "the benchmark")
}

/// Build the `wasi:http` hello component `wasmtime serve` runs in figure
/// (h), into `target/bench/http_hello.wasm`.
fn http_hello(root: &Path) -> Result<std::path::PathBuf> {
    step("building the wasi:http hello component (figure (h), beside wasmtime serve)");
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--profile",
        build::SWARM_PROFILE,
        "--target",
        build::WASM_TARGET,
        "-p",
        "http-hello",
    ]);
    run_cmd(cmd, "building bench/http-hello")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let built = target_dir
        .join(build::WASM_TARGET)
        .join(build::SWARM_PROFILE)
        .join("http_hello.wasm");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let to = dir.join("http_hello.wasm");
    std::fs::copy(&built, &to)
        .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", built.display(), to.display()))?;
    Ok(to)
}
