//! `cargo xtask demo`: build the Rust swarms (no Python or Node needed),
//! then run the guardian-council example (`host/examples/`): load the
//! contract, load the swarm, hold a signed vote.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::build;
use crate::util::{cargo, run_cmd, step};

/// Build the Rust swarms and run the example.
pub fn run(root: &Path) -> Result<()> {
    build::rust(root)?;
    step("running the guardian-council example");
    run_cmd(command(), "the demo")
}

/// `cargo run` of the guardian-council example.
pub fn command() -> Command {
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
