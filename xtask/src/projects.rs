//! Swarm projects built by the `chassis` command itself, laid out as
//! `chassis new` makes them: TypeScript (a `tsconfig.json`), C and C++ (a
//! `chassis.toml`) and AssemblyScript (a `package.json` whose `chassis`
//! section says `"language": "assemblyscript"`), under `swarms/` and
//! `swarms/hostile/`. `chassis build DIR` compiles each with its pinned
//! tools, which it installs into `target/tools/` (tsc, jco and
//! componentize-js; zig; asc), then checks the load under the project's
//! contract; the component is copied to `target/swarms/<name>.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::{cargo, report_size, run_cmd, step, up_to_date};

/// A swarm project `chassis build` builds.
pub struct Project {
    /// Its name (the project file's).
    pub name: String,
    /// Its language, as `target/swarms/index.json` names it.
    pub language: &'static str,
    /// Its directory.
    pub dir: PathBuf,
}

/// The project in `dir`, if it is one `chassis build` builds here.
fn project(dir: &Path) -> Result<Option<Project>> {
    let json = |file: &Path| -> Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", file.display()))
    };
    let named = |v: &serde_json::Value, file: &Path| -> Result<String> {
        v.as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: no name", file.display()))
    };
    let package = dir.join("package.json");
    let chassis_toml = dir.join("chassis.toml");
    let found = if dir.join("tsconfig.json").is_file() {
        let manifest = json(&package)?;
        Some((named(&manifest["name"], &package)?, "typescript"))
    } else if chassis_toml.is_file() {
        let text = std::fs::read_to_string(&chassis_toml)
            .with_context(|| format!("reading {}", chassis_toml.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}", chassis_toml.display()))?;
        let swarm = table.get("swarm").and_then(|s| s.as_table());
        let field = |key: &str| -> Result<String> {
            swarm
                .and_then(|s| s.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .with_context(|| format!("{}: no [swarm] {key}", chassis_toml.display()))
        };
        let language = if field("language")? == "cpp" {
            "cpp"
        } else {
            "c"
        };
        Some((field("name")?, language))
    } else if package.is_file() {
        let manifest = json(&package)?;
        (manifest["chassis"]["language"] == "assemblyscript")
            .then(|| named(&manifest["name"], &package).map(|n| (n, "assemblyscript")))
            .transpose()?
    } else {
        None
    };
    Ok(found.map(|(name, language)| Project {
        name,
        language,
        dir: dir.to_path_buf(),
    }))
}

/// Every such project under `swarms/` and `swarms/hostile/`, by name.
pub fn swarms(root: &Path) -> Result<Vec<Project>> {
    let mut found = Vec::new();
    for parent in ["swarms", "swarms/hostile"] {
        let parent = root.join(parent);
        for entry in
            std::fs::read_dir(&parent).with_context(|| format!("reading {}", parent.display()))?
        {
            let dir = entry?.path();
            if dir.is_dir()
                && let Some(project) = project(&dir)?
            {
                found.push(project);
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Build each project with `chassis build`, unless its component is newer
/// than the project, the `chassis` binary and the SDK.
pub fn build(root: &Path, swarms: &[Project]) -> Result<()> {
    if swarms.is_empty() {
        return Ok(());
    }
    step(
        "building the chassis command, which builds the TypeScript, C, C++ and AssemblyScript swarms",
    );
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", "chassis", "--bin", "chassis"]);
    run_cmd(cmd, "building chassis")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let chassis = target_dir.join("debug/chassis");
    let sdk = root.join("guest-sdk");
    let wit = root.join("wit");
    for Project { name, dir, .. } in swarms {
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
