//! `chassis deploy` and `chassis undeploy`: a swarm's signed bundle put in
//! the fleet's NATS object store and its entry set in the deployments
//! bucket, for every worker that serves deployments to load
//! (`docs/scale-out.md`, "Deploying"); `--wait` follows the workers'
//! heartbeats until the fleet has converged on it.

use std::time::{Duration, Instant};

use super::*;
use crate::serve::queue::deploy::{self, Action, client};

/// `chassis deploy`'s arguments.
#[derive(clap::Args)]
pub struct DeployCommand {
    /// A contract file, or a swarm project's directory (its contract and
    /// the component it names, built by `chassis build`).
    #[arg(
        value_name = "CONTRACT|PROJECT",
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    path: Option<PathBuf>,
    /// Deploy SWARM's previous bundle again (or the one --to names), from
    /// the bucket's history.
    #[arg(long, value_name = "SWARM")]
    rollback: Option<String>,
    /// With --rollback: the version, or the bundle's digest (at least 8
    /// hex digits), to go back to.
    #[arg(long, requires = "rollback", value_name = "VERSION|DIGEST")]
    to: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `chassis undeploy`'s arguments.
#[derive(clap::Args)]
pub struct UndeployCommand {
    /// The swarm id, or its contract file or project directory.
    #[arg(value_name = "SWARM|CONTRACT|PROJECT")]
    swarm: String,
    #[command(flatten)]
    target: Target,
}

/// Where a deployment goes and who signs it.
#[derive(clap::Args)]
struct Target {
    /// The NATS server (several comma-separated).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The deployer's signing key file (`chassis keygen`): workers serve
    /// only what a key in their nats.trusted_deployers signed.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Wait until every live worker that serves deployments has applied
    /// it, at most SECONDS (30 when none is given); exit with status 1 if
    /// one refused it or time ran out.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
    wait: Option<f64>,
    /// Replicas of the buckets when this makes them (3 on a three-node
    /// cluster); buckets that exist are left as they are.
    #[arg(long, default_value_t = 1, value_name = "N")]
    replicas: usize,
    /// Print the deployment (and, with --wait, the fleet's convergence) as
    /// JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    auth: NatsAuthArgs,
}

impl DeployCommand {
    /// Deploy, or roll back.
    pub async fn execute(mut self) -> Result<()> {
        let key = signing_key(&self.target.key)?;
        let auth = self.target.auth.take().auth()?;
        let (store, bundles) = client::open(&self.target.nats, &auth, self.target.replicas).await?;
        let (action, swarm_id, bundle, version, note) = match (&self.path, &self.rollback) {
            (Some(path), _) => {
                let (text, component) = bundle_parts(path)?;
                let published = client::publish(&bundles, &key, &text, &component).await?;
                let uploaded = |yes: bool| if yes { "uploaded" } else { "already there" };
                let note = format!(
                    "component {}… ({} bytes, {})",
                    deploy::short(&published.component),
                    component.len(),
                    uploaded(published.component_uploaded)
                );
                (
                    Action::Deploy,
                    published.swarm_id,
                    published.bundle,
                    published.version,
                    note,
                )
            }
            (None, Some(swarm_id)) => {
                let (bundle, version) =
                    client::rollback_target(&store, &bundles, swarm_id, self.to.as_deref()).await?;
                (
                    Action::Rollback,
                    swarm_id.clone(),
                    bundle,
                    version,
                    "back to an earlier bundle".to_string(),
                )
            }
            (None, None) => bail!("give a contract or project to deploy, or --rollback SWARM"),
        };
        let (deployment, revision) = client::set(
            &store,
            &key,
            &swarm_id,
            action,
            Some((bundle.clone(), version.clone())),
        )
        .await?;
        let done = match action {
            Action::Rollback => "rolled back",
            _ => "deployed",
        };
        if !self.target.json {
            out(format_args!(
                "{done} {} {}: bundle {}…, {note}, generation {}",
                crate::text::escape(&swarm_id, 80),
                crate::text::escape(&version, 64),
                deploy::short(&bundle),
                deployment.generation
            ))?;
        }
        finish(&self.target, &auth, &store, &deployment, revision).await
    }
}

impl UndeployCommand {
    /// Undeploy.
    pub async fn execute(mut self) -> Result<()> {
        let key = signing_key(&self.target.key)?;
        let auth = self.target.auth.take().auth()?;
        // A path names a contract or project; a bare name is a swarm id.
        let is_path = self.swarm.contains(std::path::MAIN_SEPARATOR)
            || self.swarm.ends_with(".toml")
            || self.swarm == ".";
        let swarm_id = if is_path {
            let contract = project::contract_of(Path::new(&self.swarm))?;
            ServiceContract::from_file(&contract)?.swarm_id
        } else {
            self.swarm.clone()
        };
        let (store, _) = client::open(&self.target.nats, &auth, self.target.replicas).await?;
        let current = deploy::current(&store, None).await?;
        match current.iter().find(|c| c.deployment.swarm_id == swarm_id) {
            None => bail!(
                "swarm {:?} is not deployed to this fleet (chassis fleet --nats URL lists what is)",
                crate::text::escape(&swarm_id, 80)
            ),
            Some(c) if c.deployment.action == Action::Undeploy => bail!(
                "swarm {:?} is undeployed already (generation {})",
                crate::text::escape(&swarm_id, 80),
                c.deployment.generation
            ),
            Some(_) => {}
        }
        let (deployment, revision) =
            client::set(&store, &key, &swarm_id, Action::Undeploy, None).await?;
        if !self.target.json {
            out(format_args!(
                "undeployed {}: generation {}",
                crate::text::escape(&swarm_id, 80),
                deployment.generation
            ))?;
        }
        finish(&self.target, &auth, &store, &deployment, revision).await
    }
}

/// The deployer's key, named in the error when it cannot be read.
fn signing_key(path: &Path) -> Result<crate::serve::queue::trust::WorkerKey> {
    crate::serve::queue::trust::WorkerKey::from_file(path)
        .with_context(|| "the deployer's key (--key; `chassis keygen NAME` makes one)".to_string())
}

/// The contract's text and the component's bytes of a contract file or
/// project, checked as far as the deployer can: the contract parses, the
/// component is one (not a core module) and the swarm id can be a key.
fn bundle_parts(path: &Path) -> Result<(String, Vec<u8>)> {
    let contract_path = project::contract_of(path)?;
    let text = crate::files::read_bounded_text(&contract_path, deploy::MAX_CONTRACT_BYTES as u64)
        .with_context(|| format!("reading the contract {}", contract_path.display()))?;
    let contract = ServiceContract::from_toml(&text, &contract_path.display().to_string())?;
    deploy::valid_key(&contract.swarm_id).map_err(anyhow::Error::msg)?;
    let module = crate::registry::module_path(&contract, &contract_path)?;
    let component = crate::files::read_bounded(&module, crate::DEFAULT_MAX_COMPONENT_BYTES)
        .with_context(|| {
            format!(
                "reading the component {} (is the swarm built? `chassis build`)",
                module.display()
            )
        })?;
    crate::inspect::require_component(&component, &module.display().to_string())?;
    Ok((text, component))
}

/// Print the deployment as JSON, and with `--wait` follow the fleet until
/// it has converged on it.
async fn finish(
    target: &Target,
    auth: &crate::serve::config::NatsAuth,
    store: &async_nats::jetstream::kv::Store,
    deployment: &deploy::Deployment,
    revision: u64,
) -> Result<()> {
    let Some(seconds) = target.wait else {
        if target.json {
            json_out(&serde_json::json!({ "deployment": deployment, "revision": revision }))?;
        }
        return Ok(());
    };
    if !(seconds.is_finite() && (0.0..=3600.0).contains(&seconds)) {
        bail!("--wait {seconds}: from 0 to 3600 seconds");
    }
    let queue = crate::serve::queue::Queue::open_as(&target.nats, auth)
        .await
        .context("waiting for the workers")?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let swarm_id = &deployment.swarm_id;
    let view = loop {
        let now = crate::serve::queue::workers::now_ms();
        let live: Vec<_> = queue
            .workers()
            .await?
            .into_iter()
            .filter(|w| w.live_at(now))
            .collect();
        let current: Vec<_> = deploy::current(store, None)
            .await?
            .into_iter()
            .filter(|c| &c.deployment.swarm_id == swarm_id)
            .collect();
        if current.first().is_some_and(|c| c.revision != revision) {
            bail!(
                "swarm {:?} was deployed again by someone else while waiting",
                crate::text::escape(swarm_id, 80)
            );
        }
        let view = deploy::convergence(&current, &live).pop();
        let settled = view.as_ref().is_some_and(|v| {
            v.converged || v.followers == 0 || (v.pending.is_empty() && !v.refused.is_empty())
        });
        if settled || Instant::now() >= deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(view) = view else {
        bail!("the deployment of {swarm_id:?} is not in the bucket")
    };
    if target.json {
        json_out(&serde_json::json!({
            "deployment": deployment,
            "revision": revision,
            "convergence": view,
        }))?;
    } else if view.converged {
        out(describe(&view))?;
    }
    if !view.converged {
        bail!(
            "the fleet has not converged on {}: {}",
            crate::text::escape(swarm_id, 80),
            describe(&view)
        );
    }
    Ok(())
}

/// One line on how far the fleet is with a deployment.
pub(crate) fn describe(view: &deploy::Convergence) -> String {
    let names = |workers: &[String]| {
        workers
            .iter()
            .map(|w| crate::text::escape(w, 64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !view.serving.is_empty() {
        parts.push(format!("serving on {}", names(&view.serving)));
    }
    if !view.undeployed.is_empty() {
        parts.push(format!("unloaded on {}", names(&view.undeployed)));
    }
    if !view.not_placed.is_empty() {
        parts.push(format!("not placed on {}", names(&view.not_placed)));
    }
    if !view.shadowed.is_empty() {
        parts.push(format!(
            "a local contract file takes its place on {}",
            names(&view.shadowed)
        ));
    }
    for (worker, reason) in &view.refused {
        parts.push(format!(
            "refused on {}: {}",
            crate::text::escape(worker, 64),
            crate::text::escape(reason, 512)
        ));
    }
    if !view.pending.is_empty() {
        parts.push(format!("pending on {}", names(&view.pending)));
    }
    let state = if view.converged {
        "converged"
    } else {
        "not converged"
    };
    if view.followers == 0 {
        parts.push(
            "no live worker serves deployments (start workers with --deployments)".to_string(),
        );
    }
    format!("{state}: {}", parts.join("; "))
}
