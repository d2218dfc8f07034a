//! JavaScript swarms: directories under `swarms/` with a `package.json`
//! that has a `chassis` object (`world`, `module`). They are built with
//! componentize-js, installed at a pinned version into a project-local
//! `node_modules` (`target/tools/node`), with every WASI feature disabled.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The componentize-js release the JavaScript swarms are built with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// A JavaScript swarm to build.
pub struct JsSwarm {
    /// Directory name, e.g. `analyzer-js`.
    pub name: String,
    pub dir: PathBuf,
    pub world: String,
    pub module: String,
}

/// Every JavaScript swarm under `swarms/`.
pub fn swarms(root: &Path) -> Result<Vec<JsSwarm>> {
    let mut found = Vec::new();
    let swarms = root.join("swarms");
    for entry in
        std::fs::read_dir(&swarms).with_context(|| format!("reading {}", swarms.display()))?
    {
        let dir = entry?.path();
        let manifest = dir.join("package.json");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", manifest.display()))?;
        let Some(chassis) = json.get("chassis") else {
            continue;
        };
        let field = |key: &str| -> Result<String> {
            chassis
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .with_context(|| format!("{}: chassis has no string `{key}`", manifest.display()))
        };
        found.push(JsSwarm {
            name: dir
                .file_name()
                .expect("a directory")
                .to_string_lossy()
                .into_owned(),
            world: field("world")?,
            module: field("module")?,
            dir,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The pinned componentize-js, installed into `target/tools/node` if missing.
pub fn componentize_js(root: &Path) -> Result<PathBuf> {
    let prefix = root.join("target/tools/node");
    let package = prefix.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let tool = prefix.join("node_modules/.bin/componentize-js");
    let installed = std::fs::read_to_string(&package)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|p| p["version"] == COMPONENTIZE_JS_VERSION);
    if installed && tool.exists() {
        return Ok(tool);
    }
    let spec = format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}");
    let by_hand = format!(
        "to install it by hand: npm install --prefix {} {spec}",
        prefix.display()
    );
    crate::step(&format!(
        "installing componentize-js {COMPONENTIZE_JS_VERSION} from npm into {}",
        prefix.display()
    ));
    std::fs::create_dir_all(&prefix)?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(&spec)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => bail!(
            "npm could not install {spec} ({s}); check that https://registry.npmjs.org is reachable, or {by_hand}"
        ),
        Err(e) => bail!(
            "npm could not be run ({e}); the JavaScript swarms need Node.js 18 or later with npm for componentize-js. Install them (Debian: apt install nodejs npm), then {by_hand}"
        ),
    }
    if !tool.exists() {
        bail!(
            "{spec} installed, but {} is missing; {by_hand}",
            tool.display()
        );
    }
    Ok(tool)
}

/// Build each JavaScript swarm into `target/swarms/<name>.wasm` (dashes
/// become underscores), unless it is newer than its sources, the WIT and the
/// tool.
pub fn build(root: &Path, swarms: &[JsSwarm]) -> Result<()> {
    if swarms.is_empty() {
        return Ok(());
    }
    let tool = componentize_js(root)?;
    let wit = root.join("wit");
    for swarm in swarms {
        let out = root
            .join("target/swarms")
            .join(format!("{}.wasm", swarm.name.replace('-', "_")));
        if crate::up_to_date(root, &out, &[&swarm.dir, &wit, &tool]) {
            continue;
        }
        crate::step(&format!(
            "building {} with componentize-js (world {})",
            swarm.name, swarm.world
        ));
        let mut cmd = Command::new(&tool);
        cmd.arg(swarm.dir.join(&swarm.module))
            .arg("--wit")
            .arg(&wit)
            .args(["-n", &swarm.world, "-o"])
            .arg(&out)
            .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
        crate::run_cmd(cmd, &format!("componentize-js for {}", swarm.name))?;
        crate::report_size(root, &out)?;
    }
    Ok(())
}
