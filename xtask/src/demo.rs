//! `cargo xtask demo`: build the Rust swarms (no Python or Node needed),
//! then the host and the guardian-council example (`host/examples/`), with
//! cargo's progress shown, then run it: load the contract, load the swarm,
//! hold a signed vote.
//!
//! Nothing here is coloured but by the programs themselves: cargo colours
//! a terminal only, and the example's log lines are coloured only when its
//! stderr is a terminal and `NO_COLOR` is unset or empty.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::build;
use crate::util::{cargo, run_cmd, step};

/// The example the demo runs.
const EXAMPLE: &str = "load_guardian_council";

/// Build the Rust swarms and the example, then run it.
pub fn run(root: &Path) -> Result<()> {
    build::rust(root)?;
    step(&format!(
        "building the host and the {EXAMPLE} example (debug; the first build compiles \
         wasmtime and takes several minutes)"
    ));
    run_cmd(build_command(), "building the example")?;
    step("running the guardian-council example");
    run_cmd(command(), "the demo")
}

/// `cargo build` of the example, its progress on stderr.
fn build_command() -> Command {
    let mut cmd = cargo();
    cmd.args(["build", "-p", "chassis", "--example", EXAMPLE]);
    cmd
}

/// `cargo run` of the guardian-council example (quiet: built already by
/// [`run`], or by the tests before `cargo xtask test` runs it).
pub fn command() -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "chassis", "--example", EXAMPLE]);
    cmd
}
