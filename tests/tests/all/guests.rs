//! The guest constants of `chassis_tests::guests` against the swarms:
//! every swarm under `swarms/` has a constant and every constant a swarm
//! (by the file name `cargo xtask build` gives its component), each
//! constant is named after its file stem, and every guest runs in at least
//! one test (a source scan of `tests/tests/` and of the load cases).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use chassis_tests::{guests, root};

/// The file stem `cargo xtask build` gives the component of a swarm named
/// `name` (a package or directory name): `target/swarms/<stem>.wasm`.
fn stem(name: &str) -> String {
    name.replace('-', "_")
}

/// The Rust swarms, found as xtask finds them: the workspace members under
/// `swarms/` that build a `cdylib`, by `cargo metadata`.
fn rust_swarms() -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let swarms = root().join("swarms");
    let mut found = BTreeSet::new();
    for package in meta["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
        let cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            });
        if cdylib && manifest.starts_with(&swarms) {
            found.insert(stem(package["name"].as_str().unwrap()));
        }
    }
    found
}

/// The Python and JavaScript swarms, found as xtask finds them: a directory
/// of `swarms/` with a `pyproject.toml` that has a `[tool.chassis]` table,
/// or a `package.json` with a `chassis` object.
fn script_swarms() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("swarms")).unwrap() {
        let dir = entry.unwrap().path();
        let python = std::fs::read_to_string(dir.join("pyproject.toml"))
            .is_ok_and(|text| text.contains("[tool.chassis]"));
        let javascript = std::fs::read_to_string(dir.join("package.json")).is_ok_and(|text| {
            serde_json::from_str::<serde_json::Value>(&text)
                .is_ok_and(|json| json.get("chassis").is_some())
        });
        if python || javascript {
            found.insert(stem(&dir.file_name().unwrap().to_string_lossy()));
        }
    }
    found
}

#[test]
fn every_swarm_has_a_guest_constant_and_every_constant_a_swarm() {
    let rust = rust_swarms();
    let scripts = script_swarms();
    // Both kinds are there: the scans see the swarms at all.
    assert!(rust.contains(guests::HELLO_WORLD), "{rust:?}");
    assert!(scripts.contains(guests::HELLO_PY), "{scripts:?}");
    let swarms: BTreeSet<String> = rust.union(&scripts).cloned().collect();
    let constants: BTreeSet<String> = guests::ALL.iter().map(|g| g.to_string()).collect();
    assert_eq!(
        constants.len(),
        guests::ALL.len(),
        "a guest is listed twice in guests::ALL"
    );
    let without_constant: Vec<&String> = swarms.difference(&constants).collect();
    let without_swarm: Vec<&String> = constants.difference(&swarms).collect();
    assert!(
        without_constant.is_empty(),
        "swarms without a constant in chassis_tests::guests (and guests::ALL): {without_constant:?}"
    );
    assert!(
        without_swarm.is_empty(),
        "constants in chassis_tests::guests with no swarm under swarms/: {without_swarm:?}"
    );
    // Each constant is named after its file stem, and its component is built.
    let lib = std::fs::read_to_string(root().join("tests/src/lib.rs")).unwrap();
    for guest in guests::ALL {
        let declaration = format!("pub const {}: &str = \"{guest}\";", guest.to_uppercase());
        assert!(
            lib.contains(&declaration),
            "no `{declaration}` in tests/src/lib.rs"
        );
        assert!(
            guests::path(guest).is_file(),
            "{} is missing; build the swarms with `cargo xtask build`",
            guests::path(guest).display()
        );
    }
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Whether `source` names `guests::<constant>` (and not merely a longer
/// constant that starts the same).
fn names_constant(source: &str, constant: &str) -> bool {
    let needle = format!("guests::{constant}");
    source.match_indices(&needle).any(|(i, _)| {
        !source[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn every_guest_runs_in_a_test() {
    let this_file = root().join("tests/tests/all/guests.rs");
    let sources: String = rust_files(&root().join("tests/tests"))
        .into_iter()
        .filter(|p| *p != this_file)
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    // A load case names its guest in a `component` file.
    let cases: BTreeSet<String> = std::fs::read_dir(root().join("tests/cases/load"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("component")).ok())
        .map(|text| text.trim().to_string())
        .collect();
    let unused: Vec<&&str> = guests::ALL
        .iter()
        .filter(|g| !names_constant(&sources, &g.to_uppercase()) && !cases.contains(**g))
        .collect();
    assert!(
        unused.is_empty(),
        "guests that no test in tests/tests/ (as `guests::NAME`) or load case runs: {unused:?}"
    );
    assert!(!names_constant("guests::HELLO_WORLDS", "HELLO_WORLD"));
}
