//! `chassis new` as a swarm author uses it, outside this repository: a
//! project made in a temporary directory of its own, built with the
//! language's own tools, and run by `chassis run` under the contract it
//! was made with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{assert_ok, root};

/// A directory outside the repository for one test.
fn outside(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chassis-new-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(
        !dir.starts_with(root()),
        "{} is inside the repository",
        dir.display()
    );
    dir
}

fn chassis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(args)
        .current_dir(dir)
        .env("CHASSIS_LOG", "error")
        .env("CHASSIS_CACHE_DIR", root().join("target/tmp/new-cache"))
        .output()
        .expect("chassis runs")
}

/// Made, built with cargo for wasm32-wasip2 as its README says, and run:
/// the example task answers under the contract it came with.
#[test]
fn a_new_rust_swarm_builds_and_runs_outside_the_repository() {
    let dir = outside("rust");
    let out = chassis(&dir, &["new", "greeter", "--lang", "rust"]);
    assert_ok(&out);
    let project = dir.join("greeter");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "greeter.toml",
        ".gitignore",
        "README.md",
    ] {
        assert!(project.join(file).is_file(), "{file} was not made");
    }
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    let sdk = root().join("guest-sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!("path = {:?}", sdk.display().to_string())),
        "{manifest}"
    );
    // The project's `target` is shared between runs of this test (a link
    // under this repository's target/), so its dependencies build once.
    let shared = root().join("target/outside-projects");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, project.join("target")).unwrap();
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&project)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert_ok(&build);
    let run = chassis(
        &project,
        &[
            "run",
            "greeter.toml",
            "--task",
            "hello",
            "--payload",
            r#"{"name": "Ada"}"#,
        ],
    );
    assert_ok(&run);
    let output: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(output, serde_json::json!({ "greeting": "Hello, Ada!" }));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Into a directory that exists, or with a name that is not a swarm id,
/// nothing is written and the error says why.
#[test]
fn chassis_new_writes_over_nothing_and_refuses_bad_names() {
    let dir = outside("refuse");
    std::fs::create_dir(dir.join("taken")).unwrap();
    std::fs::write(dir.join("taken/notes.txt"), "mine").unwrap();
    let out = chassis(&dir, &["new", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("taken exists") && err.contains("writes over nothing"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.join("taken")).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "something was written into an existing directory"
    );
    for bad in ["Greeter", "../escape", "a_b", ""] {
        let out = chassis(&dir, &["new", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a swarm name"), "{bad}: {err}");
    }
    assert!(!dir.join("escape").exists() && !root().join("escape").exists());
    let out = chassis(&dir, &["new", "elsewhere", "--sdk", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("elsewhere").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
