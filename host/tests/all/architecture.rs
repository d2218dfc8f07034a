//! The module rules of `ARCHITECTURE.md`, checked on the source: no two
//! modules of the `chassis` crate use each other, and nothing under
//! `imports/` uses `state` (the store's data type is wired to the
//! capabilities in `state.rs`, not the other way round).
//!
//! A module is a file (`x.rs`, or `x/mod.rs` for `x`); a use is any
//! `crate::path` outside comments and `#[cfg(test)] mod tests`, resolved to
//! the longest module path it names, with the names `lib.rs` re-exports
//! resolved to their modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("host/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `imports/log.rs` -> `imports::log`; `audit/mod.rs` -> `audit`;
/// `contract/tests.rs` (a test file) -> `None`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("mod") => {
            parts.pop();
        }
        Some("tests") if parts.len() > 1 => return None,
        _ => {}
    }
    Some(parts.join("::"))
}

/// The code of a file: no comment lines, no unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in `code`, including those in
/// `use crate::{a::x, b}` groups.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            out.extend(
                group[..end]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            );
        } else {
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            out.push(rest[..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// Names `lib.rs` re-exports (`pub use module::{A, B}`), and their modules.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest: String = rest.split_whitespace().collect();
        if let Some((module, names)) = rest.split_once("::{") {
            for name in names.trim_end_matches('}').split(',') {
                if !name.is_empty() {
                    out.insert(name.to_string(), module.to_string());
                }
            }
        } else if let Some((module, name)) = rest.rsplit_once("::") {
            out.insert(name.to_string(), module.to_string());
        }
    }
    out
}

/// Module -> the modules it uses.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexported = reexports(&lib);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .filter_map(|f| Some((module_of(&src, f)?, f.clone())))
        .filter(|(m, _)| m != "lib")
        .collect();
    let resolve = |path: &str| -> Option<String> {
        let mut segs: Vec<&str> = path.split("::").collect();
        let expanded;
        if let Some(module) = segs.first().and_then(|s| reexported.get(*s)) {
            expanded = module.clone();
            segs = expanded.split("::").collect();
        }
        (1..=segs.len())
            .rev()
            .map(|n| segs[..n].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut out = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("source file");
        let used: BTreeSet<String> = crate_paths(&code(&text))
            .iter()
            .filter_map(|p| resolve(p))
            // A module's own children and parent are its own business.
            .filter(|t| {
                t != module
                    && !t.starts_with(&format!("{module}::"))
                    && !module.starts_with(&format!("{t}::"))
            })
            .collect();
        out.insert(module.clone(), used);
    }
    out
}

#[test]
fn no_two_modules_use_each_other() {
    let uses = uses();
    assert!(uses.contains_key("runner") && uses.contains_key("imports::log"));
    let mut cycles = Vec::new();
    for (a, used) in &uses {
        for b in used {
            if a < b && uses.get(b).is_some_and(|u| u.contains(a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(cycles.is_empty(), "modules that use each other: {cycles:?}");
}

#[test]
fn no_capability_uses_the_store_state() {
    let uses = uses();
    let offenders: Vec<&String> = uses
        .iter()
        .filter(|(m, used)| m.starts_with("imports") && used.contains("state"))
        .map(|(m, _)| m)
        .collect();
    assert!(offenders.is_empty(), "{offenders:?} use crate::state");
    // The wiring goes the other way.
    assert!(uses["state"].contains("imports::log"));
}

#[test]
fn paths_are_resolved_through_reexports_and_groups() {
    let paths = crate_paths("use crate::{error::Error, state};\nlet x = crate::limits::MAX;");
    assert_eq!(paths, ["error::Error", "state", "limits::MAX"]);
    let map = reexports("pub use error::{Error, ErrorKind};\npub use state::HostState;");
    assert_eq!(map["ErrorKind"], "error");
    assert_eq!(map["HostState"], "state");
    assert_eq!(
        code("a\n// crate::x\n#[cfg(test)]\nmod tests { crate::y }"),
        "a"
    );
}

/// The source files whose code (what comes before their tests) may run
/// over [`MAX_FILE_LINES`], each one cohesive thing: `ARCHITECTURE.md`
/// names them and says why.
const LONG_FILES: &[&str] = &["error.rs", "contract/mod.rs", "serve/config.rs", "lib.rs"];

/// About where a source file is better split.
const MAX_FILE_LINES: usize = 600;

/// No file of the host is over about 600 lines of code (its tests apart)
/// but the ones `ARCHITECTURE.md` names as one cohesive thing; and each of
/// those is named there.
#[test]
fn no_source_file_is_long_unless_architecture_says_why() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.lines().take_while(|l| *l != "#[cfg(test)]").count();
        let name = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if code > MAX_FILE_LINES && !LONG_FILES.contains(&name.as_str()) {
            long.push(format!("{name}: {code} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "split these, or say in ARCHITECTURE.md why not: {long:?}"
    );
    let architecture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .unwrap();
    let section = architecture
        .split("## Long files")
        .nth(1)
        .expect("ARCHITECTURE.md has a section `## Long files`");
    for name in LONG_FILES {
        assert!(
            section.contains(&format!("`{name}`")),
            "ARCHITECTURE.md's `## Long files` does not name {name}"
        );
    }
}

/// The Rust SDK carries the WIT it binds, so that it builds as a
/// dependency from anywhere (`cargo package -p chassis-sdk`): a copy of
/// the package in `wit/`, kept identical to it.
#[test]
fn the_sdk_binds_the_same_wit_as_the_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let package = std::fs::read_to_string(root.join("wit/chassis.wit")).unwrap();
    let sdk = std::fs::read_to_string(root.join("guest-sdk/wit/chassis.wit")).unwrap();
    assert!(
        package == sdk,
        "guest-sdk/wit/chassis.wit differs from wit/chassis.wit: copy wit/chassis.wit over it"
    );
}

/// `cargo xtask` installs componentize-py and componentize-js at the
/// versions `chassis build` pins, into the directories it names after them
/// (the tests point `CHASSIS_TOOLS_DIR` at `target/tools/`): the pins must
/// agree, or the tests would install each tool twice and the examples be
/// built by another version than the authors' swarms.
#[test]
fn xtask_pins_the_tools_chassis_build_pins() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let tools = read("host/src/commands/tools.rs");
    let pinned = |name: &str| -> String {
        let at = tools
            .find(&format!("name: \"{name}\""))
            .unwrap_or_else(|| panic!("tools.rs pins no {name}"));
        let rest = &tools[at..];
        let version = &rest[rest.find("version: \"").unwrap() + 10..];
        version[..version.find('"').unwrap()].to_string()
    };
    for (name, file, constant) in [
        (
            "componentize-py",
            "xtask/src/python.rs",
            "COMPONENTIZE_PY_VERSION",
        ),
        (
            "componentize-js",
            "xtask/src/js.rs",
            "COMPONENTIZE_JS_VERSION",
        ),
    ] {
        let version = pinned(name);
        let line = format!("pub const {constant}: &str = \"{version}\";");
        assert!(
            read(file).contains(&line),
            "{file} does not pin {name} {version} as chassis build does ({line})"
        );
    }
    assert!(
        read("xtask/src/tools.rs").contains(&format!(
            "venv: \"componentize-py-{}\"",
            pinned("componentize-py")
        )),
        "xtask/src/tools.rs names componentize-py's directory after another version"
    );
}
