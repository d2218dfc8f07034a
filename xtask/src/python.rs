//! Python swarms: directories under `swarms/` with a `pyproject.toml` that
//! has a `[tool.chassis]` table (`world`, `module`). They are built with
//! componentize-py, installed at a pinned version into a project-local
//! virtual environment (`target/tools/python`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

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

/// The pinned componentize-py, installed into `target/tools/python` if missing.
pub fn componentize_py(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/tools/python");
    let tool = venv.join("bin/componentize-py");
    let wanted = format!("componentize-py {COMPONENTIZE_PY_VERSION}");
    let installed = Command::new(&tool)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == wanted)
        .unwrap_or(false);
    if installed {
        return Ok(tool);
    }
    let by_hand = format!(
        "to install it by hand: python3 -m venv {0} && {0}/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION}",
        venv.display()
    );
    crate::util::step(&format!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} from PyPI into {}",
        venv.display()
    ));
    let python = std::env::var_os("CHASSIS_PYTHON").unwrap_or_else(|| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => bail!(
            "`{} -m venv {}` failed ({s}); on Debian the venv module is in the python3-venv package. The Python swarms need componentize-py; {by_hand}",
            python.to_string_lossy(),
            venv.display()
        ),
        Err(e) => bail!(
            "Python 3 ({}) could not be run ({e}); the Python swarms need it for componentize-py. Install Python 3.10 or later (or set CHASSIS_PYTHON to one), then {by_hand}",
            python.to_string_lossy()
        ),
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
        .status()
        .context("running pip from the new virtual environment")?;
    if !status.success() {
        bail!(
            "pip could not install componentize-py=={COMPONENTIZE_PY_VERSION} from PyPI ({status}); check that https://pypi.org is reachable, or {by_hand}"
        );
    }
    Ok(tool)
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
