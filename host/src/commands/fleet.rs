//! `chassis fleet`: the live workers of a NATS queue, from their
//! heartbeats, and how far they are with each swarm deployed to the fleet
//! (`chassis deploy`).

use super::*;

/// `chassis fleet`'s arguments.
#[derive(clap::Args)]
pub struct FleetCommand {
    /// The NATS server (several comma-separated).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// Print the workers as JSON.
    #[arg(long)]
    json: bool,
    /// List workers whose heartbeats stopped too (marked gone).
    #[arg(long)]
    all: bool,
    /// A trusted deployer's public key file: each deployment's signature
    /// is checked against these keys (without one, deployments are shown
    /// unverified). Repeat for each deployer.
    #[arg(long, value_name = "FILE")]
    deployer_key: Vec<PathBuf>,
    #[command(flatten)]
    auth: NatsAuthArgs,
}

impl FleetCommand {
    /// Print the workers.
    pub async fn execute(self) -> Result<()> {
        let Self {
            nats,
            json,
            all,
            deployer_key,
            auth,
        } = self;
        let keys = if deployer_key.is_empty() {
            None
        } else {
            Some(crate::serve::queue::trust::DeployerKeys::from_files(
                &deployer_key,
            )?)
        };
        fleet(&nats, &auth.auth()?, json, all, keys.as_ref()).await
    }
}

/// `chassis fleet`: the workers' heartbeats, as a table or JSON.
async fn fleet(
    url: &str,
    auth: &crate::serve::config::NatsAuth,
    json: bool,
    all: bool,
    keys: Option<&crate::serve::queue::trust::DeployerKeys>,
) -> Result<()> {
    use crate::serve::queue::{Queue, deploy, workers};
    let queue = Queue::open_as(url, auth).await?;
    let now = workers::now_ms();
    let entries: Vec<_> = queue
        .workers()
        .await?
        .into_iter()
        .filter(|w| all || w.live_at(now))
        .collect();
    let current = match queue
        .jetstream
        .get_key_value(deploy::DEPLOYMENTS_BUCKET)
        .await
    {
        Ok(store) => deploy::current(&store, keys).await?,
        Err(_) => Vec::new(),
    };
    let live: Vec<_> = entries.iter().filter(|w| w.live_at(now)).cloned().collect();
    let convergence = deploy::convergence(&current, &live);
    if json {
        return json_out(&serde_json::json!({
            "workers": entries,
            "deployments": current.iter().zip(&convergence).map(|(c, v)| {
                serde_json::json!({ "verified": c.verified, "convergence": v })
            }).collect::<Vec<_>>(),
        }));
    }
    let shown = |text: &str| crate::text::escape(text, 128);
    if !current.is_empty() {
        out("deployments:")?;
        for (c, view) in current.iter().zip(&convergence) {
            let what = match (&view.version, &view.bundle) {
                (Some(version), Some(bundle)) => {
                    format!("{} bundle {}…", shown(version), deploy::short(bundle))
                }
                _ => "undeployed".to_string(),
            };
            let verified = match &c.verified {
                serde_json::Value::Bool(true) => String::new(),
                serde_json::Value::Bool(false) => ", unverified".to_string(),
                other => format!(", NOT VERIFIED: {}", shown(other.as_str().unwrap_or("?"))),
            };
            out(format_args!(
                "  {} {what} (generation {}, {} by {}…{verified}): {}",
                shown(&view.swarm_id),
                view.generation,
                view.action.as_str(),
                deploy::short(&view.deployer),
                super::deploy::describe(view)
            ))?;
        }
    }
    if entries.is_empty() {
        return out("no live workers");
    }
    for worker in &entries {
        let seen = now.saturating_sub(worker.last_seen_ms) as f64 / 1000.0;
        let state = if worker.live_at(now) { "live" } else { "gone" };
        let signer = worker
            .signer
            .as_deref()
            .map_or_else(|| "unsigned".to_string(), |k| format!("key {}", shown(k)));
        let labels = if worker.labels.is_empty() {
            String::new()
        } else {
            format!(
                ", labels {}",
                worker
                    .labels
                    .iter()
                    .map(|l| shown(l))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        out(format_args!(
            "{} ({state}, seen {seen:.1} s ago, {signer}{labels})",
            shown(&worker.worker)
        ))?;
        for swarm in &worker.swarms {
            let quarantined = if swarm.quarantined {
                ", quarantined"
            } else {
                ""
            };
            let deployed = swarm.bundle.as_deref().map_or_else(String::new, |b| {
                format!(" [deployed {}…]", deploy::short(b))
            });
            let capabilities = if swarm.capabilities.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = swarm.capabilities.iter().map(|c| shown(c)).collect();
                let standing = match &swarm.excluded {
                    None => format!("score {:.2}", swarm.score),
                    Some(why) => format!("not chosen: {}", shown(why)),
                };
                format!(", serves {} ({standing})", names.join(", "))
            };
            out(format_args!(
                "  {} {}: {}/{} slots free{quarantined}{deployed}{capabilities}",
                shown(&swarm.swarm_id),
                shown(&swarm.version),
                swarm.free_slots,
                swarm.slots
            ))?;
        }
    }
    Ok(())
}
