//! The examples in `host/examples/` run, and do what their docs say. They
//! need the components from `cargo xtask build` (which `cargo xtask test`
//! runs first).

use std::path::PathBuf;
use std::process::Command;

/// The built example `name` (cargo builds examples with the tests).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the profile directory");
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn an_embedder_drives_a_swarm_through_the_bindings_under_its_contract() {
    let out = Command::new(example("drive_bindings"))
        .output()
        .expect("the drive_bindings example runs (cargo test builds it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("task types: hello, echo, add"), "{stdout}");
    assert!(
        stdout.contains(r#"output: {"greeting":"Hello, Ada!"}"#),
        "{stdout}"
    );
    // The memory limiter of the swarm's contract refused the growth.
    assert!(
        stdout.contains("stopped: memory limit exceeded")
            && stdout.contains("limit is 16777216 bytes"),
        "{stdout}"
    );
}
