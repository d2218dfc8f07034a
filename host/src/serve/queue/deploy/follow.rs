//! A worker's side of deployments (`nats.deployments`): it brings the
//! swarms it serves from the fleet in step with the deployments bucket.
//!
//! Data flow: [`Deployments::first_sync`] (in `Service::load`, before any
//! task is taken) opens a watch that delivers each swarm's newest entry,
//! then every change, and applies the entries there are now; then
//! [`Deployments::follow`] (started with the fleet) applies each change as
//! it comes, reopening the watch if it ends. Applying an entry: verify it
//! (signature, trusted deployer, key, generation); for an undeploy or a
//! swarm a local contract file serves, record a `deployment` audit event
//! (`placed: false`) and act; otherwise fetch and verify the bundle,
//! record the `deployment` event, check placement, fetch and verify the
//! component, then load it beside the old version and swap it in, as a
//! file reload does. A refusal is recorded
//! as `deployment_refused` and the old version keeps serving; NATS failing
//! mid-way is retried. The state of each swarm goes into the heartbeat and
//! `/readyz`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{kv, object_store};
use futures_util::StreamExt;

use super::{Action, FetchError, Refusal, RefusalKind, fetch, fetch_component, verify_entry};
use crate::serve::Service;
use crate::serve::queue::QueueError;
use crate::serve::queue::trust::DeployerKeys;
use crate::serve::queue::workers::DeploymentState;

/// How long the first sync may take before the worker starts without it
/// (the follower goes on trying).
const FIRST_SYNC_LIMIT: Duration = Duration::from_secs(120);

/// The deployments this worker follows, and what it did with each.
pub(crate) struct Deployments {
    store: kv::Store,
    bundles: object_store::ObjectStore,
    keys: DeployerKeys,
    labels: Vec<String>,
    max_bytes: u64,
    /// By swarm id.
    state: Mutex<BTreeMap<String, DeploymentState>>,
    /// The watch the first sync opened, for the follower to go on with.
    watch: tokio::sync::Mutex<Option<kv::Watch>>,
    synced: AtomicBool,
}

impl Deployments {
    /// Open the buckets (made if they do not exist) and read the trusted
    /// deployer keys.
    pub(crate) async fn open(
        jetstream: &async_nats::jetstream::Context,
        nats: &crate::serve::config::NatsSettings,
    ) -> Result<Self, QueueError> {
        let keys = DeployerKeys::from_files(&nats.trusted_deployers)
            .map_err(|e| QueueError::Auth(format!("nats.trusted_deployers: {e}")))?;
        let (store, bundles) = super::buckets(jetstream, nats.replicas).await?;
        Ok(Self {
            store,
            bundles,
            keys,
            labels: nats.labels.clone(),
            max_bytes: nats.max_bundle_bytes,
            state: Mutex::default(),
            watch: tokio::sync::Mutex::default(),
            synced: AtomicBool::new(false),
        })
    }

    /// This worker's labels.
    pub(crate) fn labels(&self) -> &[String] {
        &self.labels
    }

    /// What it did with each swarm's newest entry.
    pub(crate) fn states(&self) -> Vec<DeploymentState> {
        self.state
            .lock()
            .expect("deployments lock")
            .values()
            .cloned()
            .collect()
    }

    /// Whether the first sync is done.
    pub(crate) fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The bundle `swarm_id` is served from here, if a deployment loaded it.
    pub(crate) fn serving(&self, swarm_id: &str) -> Option<String> {
        self.state
            .lock()
            .expect("deployments lock")
            .get(swarm_id)
            .and_then(|s| s.serving.clone())
    }

    /// The contracts of the current deployments this worker would serve
    /// (verified; components not fetched): what the host is sized for.
    pub(crate) async fn contracts(&self) -> Vec<crate::ServiceContract> {
        let Ok(current) = super::current(&self.store, Some(&self.keys)).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in current {
            let d = &c.deployment;
            let (Some(bundle), serde_json::Value::Bool(true)) = (&d.bundle, &c.verified) else {
                continue;
            };
            if let Ok(bundle) = fetch(&self.bundles, &self.keys, &d.swarm_id, bundle).await
                && bundle.contract.placement.admits(&self.labels)
            {
                out.push(bundle.contract);
            }
        }
        out
    }

    /// Apply every entry there is now, before tasks are taken; keep the
    /// watch for [`Deployments::follow`].
    pub(crate) async fn first_sync(&self, service: &Service) {
        let sync = async {
            let newest = newest_revision(&self.store).await?;
            let mut watch = self
                .store
                .watch_with_history(">")
                .await
                .map_err(|e| e.to_string())?;
            if newest > 0 {
                while let Some(entry) = watch.next().await {
                    let entry = entry.map_err(|e| e.to_string())?;
                    let (revision, current) = (entry.revision, entry.seen_current);
                    self.apply_retrying(service, &entry).await;
                    if revision >= newest || current {
                        break;
                    }
                }
            }
            *self.watch.lock().await = Some(watch);
            Ok::<(), String>(())
        };
        match tokio::time::timeout(FIRST_SYNC_LIMIT, sync).await {
            Ok(Ok(())) => {
                tracing::info!(target: "chassis::queue", "deployments: in step with the bucket ({} swarms)", self.state.lock().expect("deployments lock").len());
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "chassis::queue", "deployments: reading the bucket: {e}; following it from now on")
            }
            Err(_) => {
                tracing::warn!(target: "chassis::queue", "deployments: not in step with the bucket after {} s; following it from now on", FIRST_SYNC_LIMIT.as_secs())
            }
        }
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Apply each change to the bucket as it comes, until `stop`; a watch
    /// that ends is opened again (what it delivers again is skipped).
    pub(crate) async fn follow(
        &self,
        service: &Service,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        while service.loading() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => return,
            }
        }
        let mut watch = self.watch.lock().await.take();
        loop {
            let mut current = match watch.take() {
                Some(w) => w,
                None => match self.store.watch_with_history(">").await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(target: "chassis::queue", "deployments: watching the bucket: {e}; trying again in 1 s");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            _ = stop.changed() => return,
                        }
                    }
                },
            };
            loop {
                let next = tokio::select! {
                    next = current.next() => next,
                    _ = stop.changed() => return,
                };
                match next {
                    Some(Ok(entry)) => self.apply_retrying(service, &entry).await,
                    Some(Err(e)) => {
                        tracing::warn!(target: "chassis::queue", "deployments: the watch failed: {e}; opening it again");
                        break;
                    }
                    None => break,
                }
            }
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// [`Deployments::apply`], tried again while NATS fails (1 s, doubling
    /// to 30 s), for as long as no newer entry of the swarm is there.
    async fn apply_retrying(&self, service: &Service, entry: &kv::Entry) {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.apply(service, entry).await {
                Ok(loaded) => {
                    service.after_deployment(&loaded).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(target: "chassis::queue", swarm = %crate::text::escape(&entry.key, 80), "deployments: {e}; trying again in {} s", wait.as_secs());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                    if let Ok(Some(newer)) = self.store.entry(&entry.key).await
                        && newer.revision > entry.revision
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Bring one swarm in step with its entry; the swarms it loaded anew
    /// (their history is restored). An error is NATS failing (worth trying
    /// again); a refusal is recorded and kept in the state.
    async fn apply(&self, service: &Service, entry: &kv::Entry) -> Result<Vec<String>, String> {
        let key = crate::text::escape(&entry.key, 80);
        let prior = self
            .state
            .lock()
            .expect("deployments lock")
            .get(&key)
            .cloned();
        if prior.as_ref().is_some_and(|p| p.revision >= entry.revision) {
            return Ok(Vec::new());
        }
        if entry.operation != kv::Operation::Put {
            tracing::warn!(target: "chassis::queue", swarm = %key, "deployments: the entry was deleted or purged, which no deployer signs: ignored (an undeploy is `chassis undeploy`)");
            return Ok(Vec::new());
        }
        let generation = prior.as_ref().map_or(0, |p| p.generation);
        let deployment = match verify_entry(&entry.key, &entry.value, &self.keys) {
            Ok(d) if d.generation <= generation => {
                let refusal = Refusal::new(
                    RefusalKind::Stale,
                    format!(
                        "generation {} is not newer than generation {generation}, applied here: an old entry written again",
                        d.generation
                    ),
                );
                self.refuse(service, &key, entry.revision, d.bundle, refusal);
                return Ok(Vec::new());
            }
            Ok(d) => d,
            Err(refusal) => {
                self.refuse(service, &key, entry.revision, None, refusal);
                return Ok(Vec::new());
            }
        };
        let event = |placed: bool, component: Option<&str>| crate::Event::Deployment {
            swarm_id: key.clone(),
            action: deployment.action.as_str().to_string(),
            bundle: deployment.bundle.clone(),
            version: deployment
                .version
                .as_deref()
                .map(|v| crate::text::escape(v, 64)),
            component: component.map(|c| crate::text::escape(c, 64)),
            deployer: deployment.deployer.clone(),
            generation: deployment.generation,
            placed,
        };
        let ours = prior.as_ref().and_then(|p| p.serving.clone());
        let state =
            |state: &str, serving: Option<String>, reason: Option<String>| DeploymentState {
                swarm_id: key.clone(),
                revision: entry.revision,
                generation: deployment.generation,
                serving,
                state: state.to_string(),
                kind: None,
                reason,
            };
        let Some(digest) = deployment
            .bundle
            .clone()
            .filter(|_| deployment.action != Action::Undeploy)
        else {
            service.record(&event(false, None));
            if ours.is_some() {
                let _ = service.chassis.unload(&key);
            }
            self.set(state("undeployed", None, None));
            return Ok(Vec::new());
        };
        if let Some(file) = service.contracts.files.file_of(&key).await {
            service.record(&event(false, None));
            let reason = format!(
                "the contract file {} on this worker serves {key}: a local file wins over a deployment",
                file.display()
            );
            service.record(&crate::Event::DeploymentRefused {
                swarm_id: key.clone(),
                bundle: Some(digest),
                kind: RefusalKind::LocalFile.as_str().to_string(),
                reason: crate::text::escape(&reason, 512),
            });
            // A version a deployment loaded before the file came goes on
            // serving until the worker restarts: the state says so.
            self.set(state("shadowed", ours, Some(reason)));
            return Ok(Vec::new());
        }
        let bundle = match fetch(&self.bundles, &self.keys, &key, &digest).await {
            Ok(bundle) if Some(&bundle.manifest.version) != deployment.version.as_ref() => {
                let refusal = Refusal::new(
                    RefusalKind::Mismatch,
                    "the entry's version is not its bundle's",
                );
                self.refuse(service, &key, entry.revision, Some(digest), refusal);
                return Ok(Vec::new());
            }
            Ok(bundle) => bundle,
            Err(FetchError::Transport(e)) => return Err(e),
            Err(FetchError::Refused(refusal)) => {
                self.refuse(service, &key, entry.revision, Some(digest), refusal);
                return Ok(Vec::new());
            }
        };
        let placed = bundle.contract.placement.admits(&self.labels);
        service.record(&event(placed, Some(&bundle.manifest.component_sha256)));
        if !placed {
            if ours.is_some() {
                let _ = service.chassis.unload(&key);
            }
            let reason = format!(
                "it needs the labels {:?}; this worker has {:?}",
                bundle.contract.placement.labels, self.labels
            );
            self.set(state("not_placed", None, Some(reason)));
            return Ok(Vec::new());
        }
        if ours.as_deref() == Some(digest.as_str())
            && service.chassis.list().iter().any(|s| s.swarm_id == key)
        {
            self.set(state("serving", ours, None));
            return Ok(Vec::new());
        }
        let component = match fetch_component(&self.bundles, &bundle.manifest, self.max_bytes).await
        {
            Ok(component) => component,
            Err(FetchError::Transport(e)) => return Err(e),
            Err(FetchError::Refused(refusal)) => {
                self.refuse(service, &key, entry.revision, Some(digest), refusal);
                return Ok(Vec::new());
            }
        };
        let origin = format!("deployment {}", super::short(&digest));
        match service
            .chassis
            .replace_bytes_from(&component, bundle.contract, origin)
            .await
        {
            Ok(replacement) => {
                self.set(state("serving", Some(digest), None));
                Ok(if replacement.previous.is_none() {
                    vec![key.clone()]
                } else {
                    Vec::new()
                })
            }
            Err(e) => {
                let refusal = Refusal::new(RefusalKind::Load, e.to_string());
                self.refuse(service, &key, entry.revision, Some(digest), refusal);
                Ok(Vec::new())
            }
        }
    }

    fn set(&self, state: DeploymentState) {
        self.state
            .lock()
            .expect("deployments lock")
            .insert(state.swarm_id.clone(), state);
    }

    /// Record a refusal of entry `revision` of `swarm_id` and keep it in
    /// the state; what is served does not change.
    fn refuse(
        &self,
        service: &Service,
        swarm_id: &str,
        revision: u64,
        bundle: Option<String>,
        refusal: Refusal,
    ) {
        tracing::warn!(target: "chassis::queue", swarm = swarm_id, "deployment refused: {refusal}");
        service.record(&crate::Event::DeploymentRefused {
            swarm_id: swarm_id.to_string(),
            bundle,
            kind: refusal.kind.as_str().to_string(),
            reason: refusal.reason.clone(),
        });
        let mut state = self.state.lock().expect("deployments lock");
        let prior = state.get(swarm_id).cloned();
        state.insert(
            swarm_id.to_string(),
            DeploymentState {
                swarm_id: swarm_id.to_string(),
                revision,
                generation: prior.as_ref().map_or(0, |p| p.generation),
                serving: prior.and_then(|p| p.serving),
                state: "refused".to_string(),
                kind: Some(refusal.kind.as_str().to_string()),
                reason: Some(refusal.reason),
            },
        );
    }
}

/// The newest revision in the bucket now (0: empty), read from the
/// server, not from a cache.
async fn newest_revision(store: &kv::Store) -> Result<u64, String> {
    let mut stream = store.stream.clone();
    let info = stream.info().await.map_err(|e| e.to_string())?;
    Ok(info.state.last_sequence)
}
