//! `chassis fleet`: the live workers of a NATS queue, from their
//! heartbeats.

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
            auth,
        } = self;
        fleet(&nats, &auth.auth()?, json, all).await
    }
}

/// `chassis fleet`: the workers' heartbeats, as a table or JSON.
async fn fleet(
    url: &str,
    auth: &crate::serve::config::NatsAuth,
    json: bool,
    all: bool,
) -> Result<()> {
    use crate::serve::queue::{Queue, workers};
    let queue = Queue::open_as(url, auth).await?;
    let now = workers::now_ms();
    let entries: Vec<_> = queue
        .workers()
        .await?
        .into_iter()
        .filter(|w| all || w.live_at(now))
        .collect();
    if json {
        return json_out(&serde_json::json!({ "workers": entries }));
    }
    if entries.is_empty() {
        return out("no live workers");
    }
    let shown = |text: &str| crate::text::escape(text, 128);
    for worker in &entries {
        let seen = now.saturating_sub(worker.last_seen_ms) as f64 / 1000.0;
        let state = if worker.live_at(now) { "live" } else { "gone" };
        let signer = worker
            .signer
            .as_deref()
            .map_or_else(|| "unsigned".to_string(), |k| format!("key {}", shown(k)));
        out(format_args!(
            "{} ({state}, seen {seen:.1} s ago, {signer})",
            shown(&worker.worker)
        ))?;
        for swarm in &worker.swarms {
            let quarantined = if swarm.quarantined {
                ", quarantined"
            } else {
                ""
            };
            out(format_args!(
                "  {} {}: {}/{} slots free{quarantined}",
                shown(&swarm.swarm_id),
                shown(&swarm.version),
                swarm.free_slots,
                swarm.slots
            ))?;
        }
    }
    Ok(())
}
