//! The examples in `host/examples/` run, and do what their docs say. They
//! need the components from `cargo xtask build` (which `cargo xtask test`
//! runs first) and the examples built (a plain `cargo test` builds them
//! with the tests; with a `--test` filter, `cargo build -p chassis
//! --examples` first).
//!
//! What `cargo xtask demo` shows: the guardian-council example
//! (`host/examples/load_guardian_council.rs`) writes no colour codes where
//! its output is not a terminal (a pipe, a file), nor on a terminal with
//! `NO_COLOR` set; on a terminal without it, its log lines are coloured (so
//! the check does see colour where there is some). The terminal is a pty
//! from util-linux's `script`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

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

/// The built guardian-council example, which must be there.
fn guardian() -> PathBuf {
    let path = example("load_guardian_council");
    assert!(
        path.is_file(),
        "{} is not built: `cargo build -p chassis --example load_guardian_council`",
        path.display()
    );
    path
}

/// The escape byte every ANSI colour code starts with.
const ESC: u8 = 0x1b;

/// The example run to the end, stdin empty; it must succeed and verify its
/// vote.
fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("verify OK"),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The example on a terminal: a pty from `script`, whose output is what
/// the terminal showed (stdout and stderr both).
fn on_a_terminal(no_color: Option<&str>) -> Vec<u8> {
    let exe = guardian().display().to_string().replace('\'', r"'\''");
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &format!("'{exe}'"), "/dev/null"]);
    match no_color {
        Some(value) => cmd.env("NO_COLOR", value),
        None => cmd.env_remove("NO_COLOR"),
    };
    run(cmd, &format!("on a pty, NO_COLOR={no_color:?}")).stdout
}

// One test: the example's runs share its audit log, `target/demo-audit`.
#[test]
fn the_demo_colours_a_terminal_only_and_never_under_no_color() {
    // Into pipes, as `cargo xtask demo > file 2>&1` or CI.
    let mut cmd = Command::new(guardian());
    cmd.env_remove("NO_COLOR");
    let out = run(cmd, "into pipes");
    assert!(
        !out.stderr.is_empty(),
        "the swarm's log line is on stderr: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.contains(&ESC),
            "colour codes in the {name} pipe:\n{}",
            String::from_utf8_lossy(bytes).escape_debug()
        );
    }

    // On a terminal: coloured, unless NO_COLOR is set (an empty value is
    // unset).
    let shown = on_a_terminal(None);
    assert!(
        shown.contains(&ESC),
        "no colour on a terminal:\n{}",
        String::from_utf8_lossy(&shown).escape_debug()
    );
    let shown = on_a_terminal(Some(""));
    assert!(shown.contains(&ESC), "NO_COLOR empty is unset");
    let shown = on_a_terminal(Some("1"));
    assert!(
        !shown.contains(&ESC),
        "colour codes on a terminal under NO_COLOR=1:\n{}",
        String::from_utf8_lossy(&shown).escape_debug()
    );
}
