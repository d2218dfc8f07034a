//! `chassis release`: a quarantined swarm let out again, in its audit log
//! or on every worker of a NATS fleet.

use super::*;

/// `chassis release`'s arguments.
#[derive(clap::Args)]
pub struct ReleaseCommand {
    /// The audit log holding the swarm's history.
    #[arg(long, required_unless_present = "nats", conflicts_with = "nats")]
    audit: Option<PathBuf>,
    /// Release the swarm on every worker of this NATS server's fleet.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// The swarm's contract (with --nats, a contract or the swarm id).
    contract: PathBuf,
    #[command(flatten)]
    auth: NatsAuthArgs,
}

impl ReleaseCommand {
    /// Release the swarm where the flags say.
    pub async fn execute(self) -> Result<()> {
        match self {
            ReleaseCommand {
                audit: None,
                nats: Some(url),
                contract,
                auth,
            } => {
                let swarm_id = if contract.is_file() {
                    ServiceContract::from_file(&contract)?.swarm_id
                } else {
                    contract.to_string_lossy().into_owned()
                };
                let queue = crate::serve::queue::Queue::open_as(&url, &auth.auth()?).await?;
                crate::serve::queue::fleet::release(&queue, &swarm_id).await?;
                out(format_args!("released {swarm_id:?} on every worker"))
            }
            ReleaseCommand {
                audit, contract, ..
            } => {
                let audit = audit.context("give --audit FILE, or --nats URL")?;
                let contract = ServiceContract::from_file(&contract)?;
                let reputation = crate::report::release(&audit, &contract)?;
                out(format_args!(
                    "released {:?}: reputation back to {:.2}",
                    contract.swarm_id, reputation.score
                ))
            }
        }
    }
}
