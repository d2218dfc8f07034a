//! `chassis inspect`: a component's imports and exports as WIT.

use super::*;

/// `chassis inspect`'s arguments.
#[derive(clap::Args)]
pub struct InspectCommand {
    /// A component (.wasm).
    component: PathBuf,
}

impl InspectCommand {
    /// Print the component's world.
    pub async fn execute(self, global: &Global) -> Result<()> {
        let max_component_bytes = global.max_component_bytes;
        let Self { component } = self;
        let bytes = crate::files::read_bounded(&component, max_component_bytes)
            .with_context(|| format!("{}: cannot read component", component.display()))?;
        let wit = crate::inspect::component_wit(&bytes, &component.display().to_string())?;
        out(wit.trim_end())
    }
}
