//! The guest constants of `chassis_tests::guests` against the swarms:
//! every swarm `cargo xtask build` builds (its index,
//! `target/swarms/index.json`) has a constant and every constant a swarm,
//! every directory under `swarms/` that holds a swarm is in that index,
//! each constant is named after its file stem, and every guest runs in at
//! least one test (a source scan of `tests/tests/` and of the load cases).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chassis_tests::{guests, root};

/// What `cargo xtask build` built: (component file stem, source directory
/// relative to the root).
fn index() -> Vec<(String, PathBuf)> {
    let path = root().join("target/swarms/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the swarms first with `cargo xtask build`",
            path.display()
        )
    });
    let index: serde_json::Value = serde_json::from_str(&text).unwrap();
    index
        .as_array()
        .expect("the index is a list")
        .iter()
        .map(|s| {
            let file = s["component"].as_str().expect("component");
            let stem = file.strip_suffix(".wasm").expect("a .wasm file");
            (
                stem.to_string(),
                PathBuf::from(s["dir"].as_str().expect("dir")),
            )
        })
        .collect()
}

/// Every directory of `swarms/` and `swarms/hostile/` that holds a swarm's
/// manifest (Cargo.toml, pyproject.toml or package.json), relative to the
/// root; shared code a swarm uses (a directory inside a swarm's) is not one.
fn swarm_dirs() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    for group in ["swarms", "swarms/hostile"] {
        for entry in std::fs::read_dir(root().join(group)).unwrap() {
            let dir = entry.unwrap().path();
            let is_swarm = ["Cargo.toml", "pyproject.toml", "package.json"]
                .iter()
                .any(|m| dir.join(m).is_file());
            if is_swarm {
                found.insert(dir.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    found
}

#[test]
fn every_swarm_has_a_guest_constant_and_every_constant_a_swarm() {
    let index = index();
    // Every swarm directory was built: none is left out of the build.
    let built_dirs: BTreeSet<PathBuf> = index.iter().map(|(_, d)| d.clone()).collect();
    let dirs = swarm_dirs();
    let unbuilt: Vec<&PathBuf> = dirs.difference(&built_dirs).collect();
    assert!(
        unbuilt.is_empty(),
        "swarm directories that `cargo xtask build` does not build: {unbuilt:?}"
    );
    let swarms: BTreeSet<String> = index.iter().map(|(s, _)| s.clone()).collect();
    // All three languages are there: the index sees the swarms at all.
    for guest in [guests::HELLO_WORLD, guests::HELLO_PY, guests::HELLO_JS] {
        assert!(swarms.contains(guest), "{guest} not in {swarms:?}");
    }
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
