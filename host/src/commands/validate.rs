//! `chassis validate`: contract files checked, and each one's component
//! loaded under it in a host of its own.

use super::*;

/// `chassis validate`'s arguments.
#[derive(clap::Args)]
pub struct ValidateCommand {
    /// Contract files (TOML).
    #[arg(required = true)]
    contracts: Vec<PathBuf>,
    /// Print only "OK" lines, not the contracts.
    #[arg(long)]
    brief: bool,
    /// Check the contracts only, not their components.
    #[arg(long)]
    contract_only: bool,
}

impl ValidateCommand {
    /// Check each contract, and load its component.
    pub async fn execute(self, global: &Global) -> Result<()> {
        let max_component_bytes = global.max_component_bytes;
        let Self {
            contracts,
            brief,
            contract_only,
        } = self;
        let mut failed = 0;
        for path in &contracts {
            let contract = match ServiceContract::from_file(path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!(
                        "error: {}",
                        crate::text::escape(&e.to_string(), MAX_ERROR_LINE_BYTES)
                    );
                    failed += 1;
                    continue;
                }
            };
            let checked = if contract_only {
                Ok(String::new())
            } else {
                // Load it for real, in a host of its own, then let it go.
                match host_for(
                    &contract,
                    max_component_bytes,
                    crate::EventSinks::default(),
                    None,
                    (false, None),
                    None,
                ) {
                    Ok(chassis) => chassis
                        .load(path)
                        .await
                        .map(|info| {
                            format!(
                                "; component {} serves {}",
                                info.origin,
                                info.task_types.join(", ")
                            )
                        })
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                }
            };
            match checked {
                Ok(what) => {
                    out(format_args!(
                        "OK: {} ({}){what}",
                        path.display(),
                        contract.swarm_id
                    ))?;
                    if !brief {
                        out(contract.to_toml())?;
                    }
                }
                Err(e) => {
                    eprintln!(
                        "error: {}",
                        crate::text::escape(&format!("{e:#}"), MAX_ERROR_LINE_BYTES)
                    );
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            bail!("{failed} of {} contracts are invalid", contracts.len());
        }
        Ok(())
    }
}
