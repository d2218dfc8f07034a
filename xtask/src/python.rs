//! Python swarms: directories under `swarms/` with a `pyproject.toml` that
//! has a `[tool.chassis]` table (`world`, `module`). They are built with
//! componentize-py, installed at a pinned version into a project-local
//! virtual environment (`target/tools/componentize-py-VERSION`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::script::{self, ScriptSwarm};

/// The componentize-py release the Python swarms are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Every Python swarm under `swarms/`.
pub fn swarms(root: &Path) -> Result<Vec<ScriptSwarm>> {
    script::find(root, "pyproject.toml", |manifest, text| {
        let Some(table) = text.split("[tool.chassis]").nth(1) else {
            return Ok(None);
        };
        let table = table.to_string();
        let manifest = manifest.to_path_buf();
        Ok(Some(Box::new(move |key: &str| {
            table
                .lines()
                .take_while(|l| !l.trim_start().starts_with('['))
                .find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
                })
                .with_context(|| format!("{}: [tool.chassis] has no `{key}`", manifest.display()))
        })))
    })
}

/// The pinned componentize-py, installed into `target/tools/` if missing.
pub fn componentize_py(root: &Path) -> Result<PathBuf> {
    crate::tools::COMPONENTIZE_PY.ensure(root)
}

/// Where the Python helper module `chassis_swarm` lives, relative to the root.
pub const HELPER_DIR: &str = "guest-sdk/python";

/// Build each Python swarm into `target/swarms/<name>.wasm` (dashes become
/// underscores), unless it is newer than its sources, the helper module, the
/// WIT and the tool. The helper's directory is a second module path, so a
/// swarm can `import chassis_swarm`.
pub fn build(root: &Path, swarms: &[ScriptSwarm]) -> Result<()> {
    if swarms.is_empty() {
        return Ok(());
    }
    let tool = componentize_py(root)?;
    let helper = root.join(HELPER_DIR);
    script::build(
        root,
        swarms,
        &tool,
        "componentize-py",
        &[helper.as_path()],
        |wit, out, swarm| {
            let mut cmd = Command::new(&tool);
            cmd.arg("-d")
                .arg(wit)
                .args(["-w", &swarm.world, "componentize", "--stub-wasi", "-p"])
                .arg(&swarm.dir)
                .arg("-p")
                .arg(&helper)
                .arg(&swarm.module)
                .arg("-o")
                .arg(out);
            cmd
        },
    )
}
