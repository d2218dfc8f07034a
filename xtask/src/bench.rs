//! `cargo xtask bench`: `build`, then the side-by-side benchmarks
//! (`chassis-bench`, in `bench/`) in release mode, with the command's
//! remaining arguments passed on; a table on stdout and
//! `target/bench/results.json`.

use std::path::Path;

use anyhow::Result;

use crate::build;
use crate::util::{cargo, run_cmd, step};

/// Build everything, then run the benchmark with `args`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    build::run(root)?;
    step("building the benchmark and the host in release mode");
    let mut cmd = cargo();
    // The queue figure runs `chassis serve` worker processes.
    cmd.args(["build", "--release", "-p", "chassis-bench", "-p", "chassis"]);
    run_cmd(cmd, "building the benchmark")?;
    step("benchmarking: ours vs bare wasmtime and native code");
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "chassis-bench", "--"])
        .args(args)
        // Figure (j) runs wasm-opt from the tools `chassis build` installs.
        .env("CHASSIS_TOOLS_DIR", root.join("target/tools"));
    run_cmd(cmd, "the benchmark")
}
