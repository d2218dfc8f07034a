//! `cargo xtask build`: compile every Rust swarm under `swarms/` to a
//! wasm32-wasip2 component (profile `swarm`) and copy it to
//! `target/swarms/<name>.wasm`, where the contracts in `config/` point,
//! adding the rustup target when it is missing; then build the Python
//! swarms with componentize-py ([`crate::python`]) and the JavaScript ones
//! with componentize-js ([`crate::js`]), and the TypeScript, C, C++ and
//! AssemblyScript swarm projects with `chassis build` ([`crate::projects`]);
//! last, write the list of what was
//! built (name, language, directory, component file) to
//! `target/swarms/index.json`, which the tests check their guests against.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, metadata, report_size, run_cmd, step};
use crate::{js, projects, python};

/// The target Rust swarms are compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The Cargo profile swarms are built with (release, plus LTO).
pub const SWARM_PROFILE: &str = "swarm";

/// Every swarm: Rust, then Python, JavaScript, then the projects `chassis
/// build` builds (TypeScript, C, C++, AssemblyScript); then the index of
/// what was built, `target/swarms/index.json`.
pub fn run(root: &Path) -> Result<()> {
    // The scale-out tests and `chassis serve --nats` on this machine.
    crate::tools::NATS_SERVER.ensure(root)?;
    let rust_swarms = rust(root)?;
    let python_swarms = python::swarms(root)?;
    python::build(root, &python_swarms)?;
    let js_swarms = js::swarms(root)?;
    js::build(root, &js_swarms)?;
    let projects = projects::swarms(root)?;
    projects::build(root, &projects)?;
    let mut index = Vec::new();
    for (language, swarms) in [
        ("rust", rust_swarms),
        ("python", script_dirs(&python_swarms)),
        ("javascript", script_dirs(&js_swarms)),
    ]
    .into_iter()
    .chain(
        projects
            .into_iter()
            .map(|p| (p.language, vec![(p.name, p.dir)])),
    ) {
        for (name, dir) in swarms {
            index.push(serde_json::json!({
                "name": name,
                "language": language,
                "dir": dir.strip_prefix(root).unwrap_or(&dir),
                "component": component_file(&name),
            }));
        }
    }
    let path = root.join("target/swarms/index.json");
    std::fs::write(&path, serde_json::to_string_pretty(&index)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn script_dirs(swarms: &[crate::script::ScriptSwarm]) -> Vec<(String, PathBuf)> {
    swarms
        .iter()
        .map(|s| (s.name.clone(), s.dir.clone()))
        .collect()
}

/// The file a swarm named `name` is built into, in `target/swarms/`.
pub fn component_file(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

/// The Rust swarms only: all the demo needs (no Python or Node tools).
/// Returns each swarm's package name and directory.
pub fn rust(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    ensure_wasm_target()?;
    let swarms = swarm_packages(root)?;
    step(&format!(
        "building {} swarms for {WASM_TARGET} (profile {SWARM_PROFILE}): {}",
        swarms.len(),
        swarms
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut cmd = cargo();
    cmd.args(["build", "--profile", SWARM_PROFILE, "--target", WASM_TARGET]);
    for (name, _) in &swarms {
        cmd.args(["-p", name]);
    }
    run_cmd(cmd, "building swarms")?;

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let from = target_dir.join(WASM_TARGET).join(SWARM_PROFILE);
    let to = root.join("target/swarms");
    std::fs::create_dir_all(&to)?;
    for (name, _) in &swarms {
        let file = component_file(name);
        let src = from.join(&file);
        let dst = to.join(&file);
        std::fs::copy(&src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        report_size(root, &dst)?;
    }
    Ok(swarms)
}

/// Make sure the wasm32-wasip2 standard library is installed.
fn ensure_wasm_target() -> Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).exists() {
        return Ok(());
    }
    step(&format!("installing the {WASM_TARGET} target with rustup"));
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!(
            "`rustup target add {WASM_TARGET}` failed ({s}); install the target for the toolchain in {} by hand",
            sysroot.display()
        ),
        Err(e) => bail!(
            "the {WASM_TARGET} target is missing and rustup could not be run ({e}); \
             install rustup (https://rustup.rs) or add the {WASM_TARGET} standard library to {} by hand",
            sysroot.display()
        ),
    }
}

/// The Rust swarm packages: the workspace members under `swarms/` that
/// build a `cdylib`, by `cargo metadata`. A directory under `swarms/` (or
/// `swarms/hostile/`) with a Cargo.toml that is not a member is an error
/// that says how to fix it, rather than a swarm silently left unbuilt.
pub fn swarm_packages(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let meta = metadata()?;
    let swarms_dir = root.join("swarms");
    let mut found = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let Some(dir) = manifest.parent() else {
            continue;
        };
        let cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            });
        if cdylib && dir.starts_with(&swarms_dir) {
            let name = package["name"].as_str().unwrap_or_default().to_string();
            found.push((name, dir.to_path_buf()));
        }
    }
    for group in [swarms_dir.clone(), swarms_dir.join("hostile")] {
        let Ok(entries) = std::fs::read_dir(&group) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("Cargo.toml").is_file() && !found.iter().any(|(_, d)| *d == dir) {
                let member = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
                bail!(
                    "{member} has a Cargo.toml but is not a workspace member that builds a cdylib: \
                     add \"{member}\" to [workspace] members in Cargo.toml, with \
                     crate-type = [\"cdylib\"] under [lib] in its Cargo.toml"
                );
            }
        }
    }
    found.sort();
    Ok(found)
}
