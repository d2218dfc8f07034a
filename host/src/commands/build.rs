//! `chassis build [DIR]`: the swarm project in DIR built into a component
//! with the language's own tools, then loaded under its contract as any
//! load is checked (a component, the task export, each import against the
//! grants, the task types); its path, size and task types printed.

use super::project::Project;
use super::*;

/// `chassis build`'s arguments.
#[derive(clap::Args)]
pub struct BuildCommand {
    /// The swarm project (made by `chassis new`).
    #[arg(default_value = ".")]
    dir: PathBuf,

    /// Run Binaryen's `wasm-opt -Os` over each core module of the component
    /// (also `optimize = true` in the project file; see docs/performance.md
    /// for what it gains per language).
    #[arg(long)]
    optimize: bool,
}

impl BuildCommand {
    /// Build and check.
    pub async fn execute(self, global: &Global) -> Result<()> {
        let project = Project::open(&self.dir)?;
        let built = project.build(global, true, self.optimize).await?;
        let size = std::fs::metadata(&built.wasm)?.len();
        writeln!(
            std::io::stdout().lock(),
            "built {}: {} ({:.0} KiB), serves {}; loads under {}",
            built.info.swarm_id,
            built.wasm.display(),
            size as f64 / 1024.0,
            built.info.task_types.join(", "),
            project.contract.display()
        )?;
        Ok(())
    }
}
