//! What the Python and JavaScript swarms share: finding them (a directory
//! under `swarms/` whose manifest has a chassis section naming the `world`
//! and the `module`), and building each with its language's componentize
//! tool into `target/swarms/<name>.wasm` unless it is newer than its
//! sources, the WIT and the tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// A swarm written in Python or JavaScript.
pub struct ScriptSwarm {
    /// Directory name, e.g. `analyzer-py`.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The WIT world it targets.
    pub world: String,
    /// Its entry module.
    pub module: String,
}

/// Every directory under `swarms/` holding `manifest` with a chassis
/// section. `section(path, text)` reads the manifest: `Ok(None)` when it has
/// no chassis section, otherwise a reader of that section's string fields.
pub fn find(
    root: &Path,
    manifest: &str,
    section: impl Fn(&Path, &str) -> Result<Option<Box<dyn Fn(&str) -> Result<String>>>>,
) -> Result<Vec<ScriptSwarm>> {
    let mut found = Vec::new();
    let swarms = root.join("swarms");
    for entry in
        std::fs::read_dir(&swarms).with_context(|| format!("reading {}", swarms.display()))?
    {
        let dir = entry?.path();
        let path = dir.join(manifest);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let Some(field) = section(&path, &text)? else {
            continue;
        };
        found.push(ScriptSwarm {
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

/// Build each swarm that is not up to date with `tool` (named `tool_name`
/// in progress lines), running `command(wit, out, swarm)`. `helpers` are
/// further inputs of every swarm (the language's helper module): a change
/// there rebuilds them all.
pub fn build(
    root: &Path,
    swarms: &[ScriptSwarm],
    tool: &Path,
    tool_name: &str,
    helpers: &[&Path],
    command: impl Fn(&Path, &Path, &ScriptSwarm) -> Command,
) -> Result<()> {
    let wit = root.join("wit");
    for swarm in swarms {
        let out = root
            .join("target/swarms")
            .join(crate::build::component_file(&swarm.name));
        let mut inputs: Vec<&Path> = vec![swarm.dir.as_path(), wit.as_path(), tool];
        inputs.extend_from_slice(helpers);
        if crate::util::up_to_date(root, &out, &inputs) {
            continue;
        }
        crate::util::step(&format!(
            "building {} with {tool_name} (world {})",
            swarm.name, swarm.world
        ));
        crate::util::run_cmd(
            command(&wit, &out, swarm),
            &format!("{tool_name} for {}", swarm.name),
        )?;
        crate::util::report_size(root, &out)?;
    }
    Ok(())
}
