//! JavaScript swarms: directories under `swarms/` with a `package.json`
//! that has a `chassis` object (`world`, `module`). They are built with
//! componentize-js, installed at a pinned version into a project-local
//! `node_modules` (`target/tools/componentize-js-VERSION`, as `chassis
//! build` lays out its tools), with every WASI feature disabled. Swarm
//! projects in TypeScript (a `tsconfig.json`) and AssemblyScript are not
//! these: see [`crate::projects`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::script::{self, ScriptSwarm};

/// The componentize-js release the JavaScript swarms are built with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// Every JavaScript swarm under `swarms/`.
pub fn swarms(root: &Path) -> Result<Vec<ScriptSwarm>> {
    script::find(root, "package.json", |manifest, text| {
        let json: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("{}: not valid JSON", manifest.display()))?;
        let Some(chassis) = json.get("chassis").cloned() else {
            return Ok(None);
        };
        // TypeScript and AssemblyScript projects: `chassis build` builds them.
        if manifest.with_file_name("tsconfig.json").exists()
            || chassis["language"] == "assemblyscript"
        {
            return Ok(None);
        }
        let manifest = manifest.to_path_buf();
        Ok(Some(Box::new(move |key: &str| {
            chassis
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .with_context(|| format!("{}: chassis has no string `{key}`", manifest.display()))
        })))
    })
}

/// The pinned componentize-js, installed into `target/tools/` if missing.
pub fn componentize_js(root: &Path) -> Result<PathBuf> {
    let prefix = root
        .join("target/tools")
        .join(format!("componentize-js-{COMPONENTIZE_JS_VERSION}"));
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
    crate::util::step(&format!(
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

/// Where the JavaScript helper module `chassis-swarm.js` lives, relative to the root.
pub const HELPER_DIR: &str = "guest-sdk/js";

/// Build each JavaScript swarm into `target/swarms/<name>.wasm` (dashes
/// become underscores), unless it is newer than its sources, the helper
/// module, the WIT and the tool.
///
/// A swarm imports the helper by relative path
/// (`../../guest-sdk/js/chassis-swarm.js`); componentize-js needs no bundling
/// for that. It loads the module graph at build time, while Wizer
/// pre-initializes the engine, with the working directory mapped as `/`
/// when the source lies under it: hence the root as working directory, so
/// that every file of the repository, the helper included, can be imported.
pub fn build(root: &Path, swarms: &[ScriptSwarm]) -> Result<()> {
    if swarms.is_empty() {
        return Ok(());
    }
    let tool = componentize_js(root)?;
    let helper = root.join(HELPER_DIR);
    script::build(
        root,
        swarms,
        &tool,
        "componentize-js",
        &[helper.as_path()],
        |wit, out, swarm| {
            let mut cmd = Command::new(&tool);
            cmd.current_dir(root)
                .arg(swarm.dir.join(&swarm.module))
                .arg("--wit")
                .arg(wit)
                .args(["-n", &swarm.world, "-o"])
                .arg(out)
                .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
            cmd
        },
    )
}
