//! What the bucket asks for against what the workers did: each swarm's
//! current entry ([`current`]) and, from the workers' heartbeats, how far
//! the fleet is with it ([`convergence`]), for `chassis fleet`, `chassis
//! deploy --wait`, `/v1/fleet` and the status page.

use async_nats::jetstream::kv;
use serde::Serialize;

use super::{Action, Deployment, SignedDoc, verify_entry};
use crate::serve::queue::QueueError;
use crate::serve::queue::trust::DeployerKeys;
use crate::serve::queue::workers::{DeploymentState, WorkerEntry};

/// One swarm's current deployment, as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Current {
    /// The entry's revision in the bucket.
    pub revision: u64,
    /// The entry (read, not verified, unless `verified` says so).
    pub deployment: Deployment,
    /// `true` when checked against the deployer keys given, `false` when
    /// none were given; a refusal's text when the check failed.
    pub verified: serde_json::Value,
}

/// Every swarm's current entry, by swarm id; `keys` (when given) checks
/// each one.
pub async fn current(
    store: &kv::Store,
    keys: Option<&DeployerKeys>,
) -> Result<Vec<Current>, QueueError> {
    use futures_util::StreamExt;
    let mut names = Vec::new();
    let mut listed = store.keys().await.map_err(QueueError::js)?;
    while let Some(key) = listed.next().await {
        names.push(key.map_err(QueueError::js)?);
        if names.len() >= 10_000 {
            break;
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let Some(entry) = store.entry(&name).await.map_err(QueueError::js)? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let Ok(doc) = serde_json::from_slice::<SignedDoc>(&entry.value) else {
            continue;
        };
        let Ok(deployment) = serde_json::from_str::<Deployment>(&doc.body) else {
            continue;
        };
        let verified = match keys {
            None => serde_json::Value::Bool(false),
            Some(keys) => match verify_entry(&name, &entry.value, keys) {
                Ok(_) => serde_json::Value::Bool(true),
                Err(e) => serde_json::Value::String(e.to_string()),
            },
        };
        out.push(Current {
            revision: entry.revision,
            deployment,
            verified,
        });
    }
    Ok(out)
}

/// How far the live workers that serve deployments are with one swarm's
/// current entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Convergence {
    /// The swarm.
    pub swarm_id: String,
    /// What the entry asks for.
    pub action: Action,
    /// Its bundle (none for an undeploy).
    pub bundle: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// Its generation.
    pub generation: u64,
    /// The entry's revision in the bucket.
    pub revision: u64,
    /// Its deployer.
    pub deployer: String,
    /// Workers serving the entry's bundle.
    pub serving: Vec<String>,
    /// Workers whose labels keep it off them.
    pub not_placed: Vec<String>,
    /// Workers where a local contract file takes its place.
    pub shadowed: Vec<String>,
    /// Workers that applied an undeploy.
    pub undeployed: Vec<String>,
    /// Workers that refused it, with why.
    pub refused: Vec<(String, String)>,
    /// Workers that have not applied it yet.
    pub pending: Vec<String>,
    /// At least one live worker follows deployments, every one has
    /// applied it, none refused it, and it is served somewhere (an
    /// undeploy: served nowhere).
    pub converged: bool,
    /// How many live workers follow deployments.
    pub followers: usize,
}

/// Compare the bucket's entries with the workers' heartbeats (only those
/// that follow deployments count).
pub fn convergence(current: &[Current], live: &[WorkerEntry]) -> Vec<Convergence> {
    current
        .iter()
        .map(|c| {
            let d = &c.deployment;
            let mut view = Convergence {
                swarm_id: d.swarm_id.clone(),
                action: d.action,
                bundle: d.bundle.clone(),
                version: d.version.clone(),
                generation: d.generation,
                revision: c.revision,
                deployer: d.deployer.clone(),
                serving: Vec::new(),
                not_placed: Vec::new(),
                shadowed: Vec::new(),
                undeployed: Vec::new(),
                refused: Vec::new(),
                pending: Vec::new(),
                converged: false,
                followers: 0,
            };
            for worker in live.iter().filter(|w| w.deployments.is_some()) {
                view.followers += 1;
                let name = worker.worker.clone();
                let state: Option<&DeploymentState> = worker
                    .deployments
                    .iter()
                    .flatten()
                    .find(|s| s.swarm_id == d.swarm_id);
                match state {
                    Some(s) if s.revision >= c.revision => match s.state.as_str() {
                        "serving" if s.serving == d.bundle => view.serving.push(name),
                        "not_placed" => view.not_placed.push(name),
                        "shadowed" => view.shadowed.push(name),
                        "undeployed" if d.action == Action::Undeploy => view.undeployed.push(name),
                        _ => {
                            let reason = s.reason.as_deref().unwrap_or("no reason given");
                            let why = match &s.kind {
                                Some(kind) => format!("{kind}: {reason}"),
                                None => format!("{}: {reason}", s.state),
                            };
                            view.refused.push((name, why))
                        }
                    },
                    _ => view.pending.push(name),
                }
            }
            view.converged = view.followers > 0
                && view.pending.is_empty()
                && view.refused.is_empty()
                && (d.action == Action::Undeploy) == view.serving.is_empty();
            view
        })
        .collect()
}
