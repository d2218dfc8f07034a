//! The deployer's side (`chassis deploy`, `--rollback`, `chassis
//! undeploy`): publish a bundle once per digest, then write the swarm's
//! signed entry with a compare-and-set on its revision, so two deployers
//! at once cannot both win.

use async_nats::jetstream::{self, kv, object_store};
use futures_util::StreamExt;

use super::{
    Action, BUNDLE_FORMAT, Deployment, MAX_CONTRACT_BYTES, Manifest, SignedDoc, bundle_object,
    component_object, entry_context, exists, sha256_hex, valid_key,
};
use crate::serve::queue::trust::{Signed, WorkerKey};
use crate::serve::queue::{QueueError, workers::now_ms};

/// Why a deployment was not made.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Talking to NATS.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The contract or component is not deployable.
    #[error("{0}")]
    Invalid(String),
    /// Someone else changed the swarm's entry meanwhile.
    #[error(
        "the deployment of {0:?} was changed by someone else meanwhile; nothing was written (run it again)"
    )]
    Conflict(String),
    /// No earlier bundle to roll back to.
    #[error("{0}")]
    NoRollback(String),
}

/// The deployments bucket and the bundle store, made if they do not exist.
pub async fn open(
    url: &str,
    auth: &crate::serve::config::NatsAuth,
    replicas: usize,
) -> Result<(kv::Store, object_store::ObjectStore), QueueError> {
    let jetstream = jetstream::new(crate::serve::queue::connect(url, auth, "chassis").await?);
    super::buckets(&jetstream, replicas).await
}

/// What [`publish`] put in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The bundle's SHA-256.
    pub bundle: String,
    /// The component's SHA-256.
    pub component: String,
    /// The swarm.
    pub swarm_id: String,
    /// The contract's version.
    pub version: String,
    /// Whether the component was uploaded now (not there already).
    pub component_uploaded: bool,
    /// Whether the bundle was uploaded now.
    pub bundle_uploaded: bool,
}

/// Put the bundle of `contract_text` and `component` in the store, each
/// object only when it is not there yet (a `put` of an existing name
/// would rewrite it under readers), signed by `key`.
pub async fn publish(
    store: &object_store::ObjectStore,
    key: &WorkerKey,
    contract_text: &str,
    component: &[u8],
) -> Result<Published, DeployError> {
    if contract_text.len() > MAX_CONTRACT_BYTES {
        return Err(DeployError::Invalid(format!(
            "the contract is {} bytes, over {MAX_CONTRACT_BYTES}",
            contract_text.len()
        )));
    }
    // A worker parses it again; a deployer may publish one that does not
    // parse only through `publish_manifest`.
    let contract = crate::ServiceContract::from_toml(contract_text, "the contract")
        .map_err(|e| DeployError::Invalid(e.to_string()))?;
    let manifest = Manifest {
        format: BUNDLE_FORMAT.to_string(),
        swarm_id: contract.swarm_id.clone(),
        version: contract.version.clone(),
        contract: contract_text.to_string(),
        component_sha256: sha256_hex(component),
        component_bytes: component.len() as u64,
        created_at_ms: now_ms(),
    };
    publish_manifest(store, key, &manifest, component).await
}

/// [`publish`] of a manifest as given (tests make bundles a worker must
/// refuse with it).
pub async fn publish_manifest(
    store: &object_store::ObjectStore,
    key: &WorkerKey,
    manifest: &Manifest,
    component: &[u8],
) -> Result<Published, DeployError> {
    valid_key(&manifest.swarm_id).map_err(DeployError::Invalid)?;
    let component_uploaded = put_once(
        store,
        &component_object(&manifest.component_sha256),
        component,
    )
    .await?;
    let body = serde_json::to_string(manifest)
        .map_err(|e| DeployError::Invalid(format!("the manifest: {e}")))?;
    let doc = SignedDoc::sign(key, Signed::Bundle, &manifest.swarm_id, body);
    let bytes =
        serde_json::to_vec(&doc).map_err(|e| DeployError::Invalid(format!("the bundle: {e}")))?;
    let bundle = sha256_hex(&bytes);
    let bundle_uploaded = put_once(store, &bundle_object(&bundle), &bytes).await?;
    Ok(Published {
        bundle,
        component: manifest.component_sha256.clone(),
        swarm_id: manifest.swarm_id.clone(),
        version: manifest.version.clone(),
        component_uploaded,
        bundle_uploaded,
    })
}

/// Put `bytes` as `name` unless it is there; whether it was put.
async fn put_once(
    store: &object_store::ObjectStore,
    name: &str,
    bytes: &[u8],
) -> Result<bool, QueueError> {
    if exists(store, name)
        .await
        .map_err(QueueError::JetStream)?
        .is_some()
    {
        return Ok(false);
    }
    let mut reader = bytes;
    store
        .put(name, &mut reader)
        .await
        .map_err(|e| QueueError::JetStream(format!("uploading {name}: {e}")))?;
    Ok(true)
}

/// The swarm's entry now: its revision and what it says (read, not
/// verified: the workers verify), if it has one.
async fn latest(
    store: &kv::Store,
    swarm_id: &str,
) -> Result<Option<(u64, Option<Deployment>)>, QueueError> {
    let Some(entry) = store.entry(swarm_id).await.map_err(QueueError::js)? else {
        return Ok(None);
    };
    let deployment = (entry.operation == kv::Operation::Put)
        .then(|| serde_json::from_slice::<SignedDoc>(&entry.value).ok())
        .flatten()
        .and_then(|doc| serde_json::from_str::<Deployment>(&doc.body).ok());
    Ok(Some((entry.revision, deployment)))
}

/// Write `swarm_id`'s entry, signed by `key`: `bundle` (its digest and
/// version) to serve, or none to undeploy. Its generation is one more than
/// the entry it replaces, and it is written only if that entry is still
/// the newest.
pub async fn set(
    store: &kv::Store,
    key: &WorkerKey,
    swarm_id: &str,
    action: Action,
    bundle: Option<(String, String)>,
) -> Result<(Deployment, u64), DeployError> {
    valid_key(swarm_id).map_err(DeployError::Invalid)?;
    let latest = latest(store, swarm_id).await?;
    let before = latest.as_ref().and_then(|(_, d)| d.as_ref());
    let (bundle, version) = bundle.unzip();
    let deployment = Deployment {
        swarm_id: swarm_id.to_string(),
        action,
        bundle,
        version,
        previous: before.and_then(|d| d.bundle.clone()),
        generation: before.map_or(0, |d| d.generation).saturating_add(1),
        deployed_at_ms: now_ms(),
        deployer: key.public_hex(),
    };
    let body = serde_json::to_string(&deployment)
        .map_err(|e| DeployError::Invalid(format!("the entry: {e}")))?;
    let doc = SignedDoc::sign(key, Signed::Deployment, &entry_context(swarm_id), body);
    let value =
        serde_json::to_vec(&doc).map_err(|e| DeployError::Invalid(format!("the entry: {e}")))?;
    let revision = match latest {
        Some((revision, _)) => store
            .update(swarm_id, value.into(), revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => {
                    DeployError::Conflict(swarm_id.to_string())
                }
                _ => DeployError::Queue(QueueError::js(e)),
            })?,
        None => store
            .create(swarm_id, value.into())
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => DeployError::Conflict(swarm_id.to_string()),
                _ => DeployError::Queue(QueueError::js(e)),
            })?,
    };
    Ok((deployment, revision))
}

/// The bundle (digest, version) a rollback of `swarm_id` goes back to:
/// the newest earlier one in the bucket's history that differs from the
/// current one, or the one whose version or digest (prefix) is `to`; its
/// bundle must still be in the store.
pub async fn rollback_target(
    store: &kv::Store,
    bundles: &object_store::ObjectStore,
    swarm_id: &str,
    to: Option<&str>,
) -> Result<(String, String), DeployError> {
    valid_key(swarm_id).map_err(DeployError::Invalid)?;
    let mut history = store.history(swarm_id).await.map_err(QueueError::js)?;
    let mut entries = Vec::new();
    while let Some(entry) = history.next().await {
        let entry = entry.map_err(QueueError::js)?;
        let deployment = (entry.operation == kv::Operation::Put)
            .then(|| serde_json::from_slice::<SignedDoc>(&entry.value).ok())
            .flatten()
            .and_then(|doc| serde_json::from_str::<Deployment>(&doc.body).ok());
        entries.push(deployment);
    }
    let current = entries
        .last()
        .cloned()
        .flatten()
        .and_then(|d| d.bundle.clone());
    let earlier = entries.iter().rev().skip(1).flatten().find(|d| {
        let (Some(bundle), Some(version)) = (&d.bundle, &d.version) else {
            return false;
        };
        match to {
            Some(to) => version == to || (to.len() >= 8 && bundle.starts_with(to)),
            None => Some(bundle) != current.as_ref(),
        }
    });
    let Some(Deployment {
        bundle: Some(bundle),
        version: Some(version),
        ..
    }) = earlier
    else {
        return Err(DeployError::NoRollback(match to {
            Some(to) => format!(
                "no earlier deployment of {swarm_id:?} has version or bundle {to:?} in the bucket's history (the last {} entries)",
                super::HISTORY
            ),
            None => format!(
                "no earlier deployment of {swarm_id:?} to roll back to in the bucket's history (the last {} entries)",
                super::HISTORY
            ),
        }));
    };
    if exists(bundles, &bundle_object(bundle))
        .await
        .map_err(QueueError::JetStream)?
        .is_none()
    {
        return Err(DeployError::NoRollback(format!(
            "bundle {bundle} of {swarm_id} {version} is no longer in the bucket {}",
            super::BUNDLES_BUCKET
        )));
    }
    Ok((bundle.clone(), version.clone()))
}
