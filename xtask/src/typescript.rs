//! TypeScript swarms: swarm projects under `swarms/` with a
//! `tsconfig.json`, laid out as `chassis new --lang typescript` makes them.
//! They are built by the `chassis` command itself (`chassis build DIR`:
//! jco's declarations of the WIT, `tsc`, componentize-js, then the load
//! check under the project's contract), with its tools in `target/tools/`,
//! and the component copied to `target/swarms/<name>.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::{cargo, report_size, run_cmd, step, up_to_date};

/// Every TypeScript swarm project under `swarms/`: its package name and
/// directory.
pub fn swarms(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let swarms = root.join("swarms");
    for entry in
        std::fs::read_dir(&swarms).with_context(|| format!("reading {}", swarms.display()))?
    {
        let dir = entry?.path();
        if !dir.join("tsconfig.json").is_file() {
            continue;
        }
        let manifest = dir.join("package.json");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", manifest.display()))?;
        let name = json["name"]
            .as_str()
            .with_context(|| format!("{}: no \"name\"", manifest.display()))?;
        found.push((name.to_string(), dir));
    }
    found.sort();
    Ok(found)
}

/// Build each TypeScript swarm with `chassis build`, unless its component
/// is newer than the project, the `chassis` binary and the SDK.
pub fn build(root: &Path, swarms: &[(String, PathBuf)]) -> Result<()> {
    if swarms.is_empty() {
        return Ok(());
    }
    step("building the chassis command, which builds the TypeScript swarms");
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", "chassis", "--bin", "chassis"]);
    run_cmd(cmd, "building chassis")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let chassis = target_dir.join("debug/chassis");
    let sdk = root.join("guest-sdk/js");
    let wit = root.join("wit");
    for (name, dir) in swarms {
        let out = root
            .join("target/swarms")
            .join(crate::build::component_file(name));
        // What `chassis build` writes into the project comes before the
        // copy: the project itself is an input.
        let inputs = [
            dir.as_path(),
            sdk.as_path(),
            wit.as_path(),
            chassis.as_path(),
        ];
        if up_to_date(root, &out, &inputs) {
            continue;
        }
        step(&format!("building {name} with chassis build"));
        let mut cmd = std::process::Command::new(&chassis);
        cmd.arg("build")
            .arg(dir)
            .env("CHASSIS_TOOLS_DIR", root.join("target/tools"))
            .env("CHASSIS_CACHE_DIR", root.join("target/tmp/xtask-cache"))
            .env("CHASSIS_LOG", "warn");
        run_cmd(cmd, &format!("chassis build {}", dir.display()))?;
        let built = dir.join("target").join(format!("{name}.wasm"));
        std::fs::create_dir_all(root.join("target/swarms"))?;
        std::fs::copy(&built, &out)
            .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
        report_size(root, &out)?;
    }
    Ok(())
}
