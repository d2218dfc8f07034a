//! Deploying swarms to the fleet (`docs/scale-out.md`, "Deploying"):
//! signed bundles in the JetStream object store [`BUNDLES_BUCKET`] and one
//! signed entry per swarm in the key-value bucket [`DEPLOYMENTS_BUCKET`].
//!
//! Data flow: `chassis deploy` ([`client`]) uploads the component once
//! per digest as `c-<sha256>`, then the bundle — a [`Manifest`] naming
//! the swarm, its contract text and the component's digest, signed by the
//! deployer — as `b-<sha256 of the stored signed document>`, and writes the swarm's
//! [`Deployment`] (bundle digest, version, generation, deployer), signed
//! too, with a compare-and-set on the entry's revision. Every worker that
//! serves deployments (`follow`) watches the bucket: it checks the
//! entry's signature against the deployer keys it trusts, fetches the
//! bundle, checks its digest and signature, then the component's digest,
//! and loads it through the host's replace path. A rollback is a new entry
//! pointing at an earlier bundle; an undeploy a signed entry without one.
//! Each worker's heartbeat says what it did with each entry (by the
//! entry's revision), and [`convergence`] compares that with the bucket.
//!
//! Everything read from NATS is anyone's on the server to write: it is
//! bounded before it is read, verified before it is believed, and
//! escaped before it is kept or shown.

pub mod client;
mod convergence;
pub(crate) mod follow;

pub use convergence::{Convergence, Current, convergence, current};

use async_nats::jetstream::{self, kv, object_store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::QueueError;
use super::trust::{DeployerKeys, Disbelief, Signed, WorkerKey};

/// The object store of bundles and components.
pub const BUNDLES_BUCKET: &str = "chassis_bundles";
/// The key-value bucket of deployments, one entry per swarm.
pub const DEPLOYMENTS_BUCKET: &str = "chassis_deployments";
/// The manifest's `format`.
pub const BUNDLE_FORMAT: &str = "chassis-bundle-v1";
/// The most a bundle document (its manifest, with the contract) may be.
pub const MAX_BUNDLE_DOC_BYTES: u64 = 1024 * 1024;
/// The most a contract in a bundle may be.
pub const MAX_CONTRACT_BYTES: usize = 256 * 1024;
/// The most a deployment entry may be.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Entries kept per swarm: the versions a rollback can go back to.
pub const HISTORY: i64 = 16;

/// The object holding a component of this SHA-256 (hex).
pub fn component_object(sha256: &str) -> String {
    format!("c-{sha256}")
}

/// The object holding the bundle of this SHA-256 (hex).
pub fn bundle_object(sha256: &str) -> String {
    format!("b-{sha256}")
}

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The first 12 characters of a digest or key, escaped: for messages
/// (what it abbreviates may come from anyone on the NATS server).
pub fn short(digest: &str) -> String {
    crate::text::escape(&digest.chars().take(12).collect::<String>(), 48)
}

/// What a bundle is: the swarm's contract and the digest of its
/// component. Serialized once; those bytes are hashed (the bundle's
/// digest) and signed, never serialized again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The swarm, as its contract names it.
    pub swarm_id: String,
    /// The contract's version.
    pub version: String,
    /// The contract's TOML text (its `wasm_module` is not used).
    pub contract: String,
    /// The component's SHA-256, in hex.
    pub component_sha256: String,
    /// The component's size in bytes.
    pub component_bytes: u64,
    /// When it was built, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// A body (a manifest or a deployment's JSON, as a string: the exact
/// bytes signed) with its signer and signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDoc {
    /// The signed JSON.
    pub body: String,
    /// The signer's public key (64 hex digits).
    pub signer: String,
    /// The signature (base64).
    pub signature: String,
}

impl SignedDoc {
    /// `body` signed by `key` for `context`.
    pub fn sign(key: &WorkerKey, kind: Signed, context: &str, body: String) -> Self {
        let (signer, signature) = key.sign_detached(kind, context, body.as_bytes());
        Self {
            body,
            signer,
            signature,
        }
    }

    /// Parse `bytes` (at most `max` of them) and check the signature for
    /// `context` against `keys`.
    pub fn verified(
        bytes: &[u8],
        max: usize,
        keys: &DeployerKeys,
        kind: Signed,
        context: &str,
    ) -> Result<Self, Refusal> {
        if bytes.len() > max {
            return Err(Refusal::new(
                RefusalKind::TooLarge,
                format!("{} bytes, over {max}", bytes.len()),
            ));
        }
        let doc: Self = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::new(RefusalKind::Malformed, e.to_string()))?;
        keys.verify(
            kind,
            context,
            &doc.signer,
            &doc.signature,
            doc.body.as_bytes(),
        )
        .map_err(|e| match e {
            Disbelief::Untrusted(reason) => Refusal::new(RefusalKind::UntrustedKey, reason),
            Disbelief::Signature(reason) => Refusal::new(RefusalKind::Signature, reason),
        })?;
        Ok(doc)
    }
}

/// What a deployment entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Serve this bundle.
    Deploy,
    /// Serve this earlier bundle again.
    Rollback,
    /// Serve the swarm nowhere.
    Undeploy,
}

impl Action {
    /// Its name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Undeploy => "undeploy",
        }
    }
}

/// One swarm's entry in [`DEPLOYMENTS_BUCKET`] (the body of a
/// [`SignedDoc`] signed for the key `chassis_deployments.<swarm_id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The swarm: the entry's key.
    pub swarm_id: String,
    /// What it asks for.
    pub action: Action,
    /// The bundle's SHA-256 (none for an undeploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The bundle's contract version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The bundle it takes the place of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// One more than the entry it replaced: workers refuse an entry older
    /// than one they applied.
    pub generation: u64,
    /// When it was written, by the deployer's clock, in milliseconds since
    /// the Unix epoch.
    pub deployed_at_ms: u64,
    /// The deployer's public key (64 hex digits): the entry's signer.
    pub deployer: String,
}

/// The context a deployment entry is signed for.
pub fn entry_context(swarm_id: &str) -> String {
    format!("{DEPLOYMENTS_BUCKET}.{swarm_id}")
}

/// Check that a swarm id can be a key of [`DEPLOYMENTS_BUCKET`] (and a
/// NATS subject token): no empty token, no trailing dot.
pub fn valid_key(swarm_id: &str) -> Result<(), String> {
    if swarm_id.is_empty()
        || swarm_id.ends_with('.')
        || swarm_id.contains("..")
        || !swarm_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "swarm id {:?} cannot be deployed: it must not end with '.' or hold '..' (it names a NATS key)",
            crate::text::escape(swarm_id, 80)
        ));
    }
    Ok(())
}

/// Why a worker refused a deployment (the audit's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The signature does not hold.
    Signature,
    /// The signer is not a trusted deployer.
    UntrustedKey,
    /// The bytes do not match the digest that names them.
    Digest,
    /// Over a configured bound.
    TooLarge,
    /// The contract does not parse or validate.
    Contract,
    /// The host refused the component (its load checks).
    Load,
    /// Older than a deployment this worker applied.
    Stale,
    /// Not what an entry or a bundle is.
    Malformed,
    /// Its parts name different swarms or versions.
    Mismatch,
    /// The bundle or component is not in the object store.
    Missing,
    /// A contract file on this worker's disk serves the swarm.
    LocalFile,
}

impl RefusalKind {
    /// Its name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Signature => "signature",
            RefusalKind::UntrustedKey => "untrusted_key",
            RefusalKind::Digest => "digest",
            RefusalKind::TooLarge => "too_large",
            RefusalKind::Contract => "contract",
            RefusalKind::Load => "load",
            RefusalKind::Stale => "stale",
            RefusalKind::Malformed => "malformed",
            RefusalKind::Mismatch => "mismatch",
            RefusalKind::Missing => "missing",
            RefusalKind::LocalFile => "local_file",
        }
    }
}

/// A refusal: its kind and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", kind.as_str())]
pub struct Refusal {
    /// What kind.
    pub kind: RefusalKind,
    /// Why, bounded and escaped.
    pub reason: String,
}

impl Refusal {
    /// A refusal; `reason` is bounded and escaped.
    pub fn new(kind: RefusalKind, reason: impl AsRef<str>) -> Self {
        Self {
            kind,
            reason: crate::text::escape(reason.as_ref(), 512),
        }
    }
}

/// Why fetching a bundle failed: it is refused, or NATS did not answer
/// (worth another try).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The bundle is refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Reading from NATS failed.
    #[error("reading from NATS: {0}")]
    Transport(String),
}

/// The two buckets, made (with `replicas`) if they do not exist; as they
/// are if they do.
pub async fn buckets(
    jetstream: &jetstream::Context,
    replicas: usize,
) -> Result<(kv::Store, object_store::ObjectStore), QueueError> {
    let deployments = match jetstream.get_key_value(DEPLOYMENTS_BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => jetstream
            .create_key_value(kv::Config {
                bucket: DEPLOYMENTS_BUCKET.to_string(),
                description: "chassis: the fleet's deployments, one signed entry per swarm"
                    .to_string(),
                history: HISTORY,
                max_value_size: MAX_ENTRY_BYTES as i32,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(QueueError::js),
    }?;
    let bundles = match jetstream.get_object_store(BUNDLES_BUCKET).await {
        Ok(store) => store,
        Err(_) => jetstream
            .create_object_store(object_store::Config {
                bucket: BUNDLES_BUCKET.to_string(),
                description: Some(
                    "chassis: swarm bundles and components, named by their SHA-256".to_string(),
                ),
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(QueueError::js)?,
    };
    Ok((deployments, bundles))
}

/// Whether an object is there (a deleted one is not).
pub(crate) async fn exists(
    store: &object_store::ObjectStore,
    name: &str,
) -> Result<Option<object_store::ObjectInfo>, String> {
    match store.info(name).await {
        Ok(info) if !info.deleted => Ok(Some(info)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Read object `name` whole, refusing one over `max` bytes before and
/// while it is read.
async fn read_object(
    store: &object_store::ObjectStore,
    name: &str,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, FetchError> {
    let info = exists(store, name)
        .await
        .map_err(FetchError::Transport)?
        .ok_or_else(|| {
            Refusal::new(
                RefusalKind::Missing,
                format!("{what} {name} is not in the bucket {BUNDLES_BUCKET}"),
            )
        })?;
    if info.size as u64 > max {
        return Err(Refusal::new(
            RefusalKind::TooLarge,
            format!("{what} is {} bytes, over this worker's {max}", info.size),
        )
        .into());
    }
    let object = store
        .get(name)
        .await
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    let mut bytes = Vec::with_capacity(info.size.min(max as usize));
    object
        .take(max + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| FetchError::Transport(format!("reading {name}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Refusal::new(
            RefusalKind::TooLarge,
            format!("{what} is over this worker's {max} bytes"),
        )
        .into());
    }
    Ok(bytes)
}

/// A bundle fetched and verified: its manifest and its contract parsed.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle's SHA-256.
    pub digest: String,
    /// Who signed it.
    pub builder: String,
    /// What it says.
    pub manifest: Manifest,
    /// Its contract, parsed and validated.
    pub contract: crate::ServiceContract,
}

/// Fetch bundle `digest` of `swarm_id` and check it: its bytes hash to
/// `digest`, a trusted deployer signed it for `swarm_id`, its manifest
/// and contract name that swarm and one version, and its contract parses.
pub async fn fetch(
    store: &object_store::ObjectStore,
    keys: &DeployerKeys,
    swarm_id: &str,
    digest: &str,
) -> Result<Bundle, FetchError> {
    let short = short(digest);
    let bytes = read_object(
        store,
        &bundle_object(digest),
        MAX_BUNDLE_DOC_BYTES,
        "the bundle",
    )
    .await?;
    if sha256_hex(&bytes) != digest {
        return Err(Refusal::new(
            RefusalKind::Digest,
            format!("the bundle's bytes do not hash to {short}…"),
        )
        .into());
    }
    let doc = SignedDoc::verified(&bytes, usize::MAX, keys, Signed::Bundle, swarm_id)?;
    let manifest: Manifest = serde_json::from_str(&doc.body).map_err(|e| {
        Refusal::new(
            RefusalKind::Malformed,
            format!("the bundle's manifest: {e}"),
        )
    })?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(Refusal::new(
            RefusalKind::Malformed,
            format!(
                "the bundle's format is {:?}, not {BUNDLE_FORMAT}",
                manifest.format
            ),
        )
        .into());
    }
    if manifest.contract.len() > MAX_CONTRACT_BYTES {
        return Err(Refusal::new(RefusalKind::TooLarge, "the bundle's contract").into());
    }
    let contract = crate::ServiceContract::from_toml(
        &manifest.contract,
        &format!("the contract of bundle {short}…"),
    )
    .map_err(|e| Refusal::new(RefusalKind::Contract, e.to_string()))?;
    if manifest.swarm_id != swarm_id || contract.swarm_id != swarm_id {
        return Err(Refusal::new(
            RefusalKind::Mismatch,
            format!(
                "the bundle is for {:?} (its contract: {:?}), not {swarm_id:?}",
                manifest.swarm_id, contract.swarm_id
            ),
        )
        .into());
    }
    if manifest.version != contract.version {
        return Err(Refusal::new(
            RefusalKind::Mismatch,
            format!(
                "the manifest's version {:?} is not its contract's {:?}",
                manifest.version, contract.version
            ),
        )
        .into());
    }
    Ok(Bundle {
        digest: digest.to_string(),
        builder: doc.signer,
        manifest,
        contract,
    })
}

/// Fetch the component `manifest` names, refused over `max` bytes, and
/// check it against the digest the manifest signed.
pub async fn fetch_component(
    store: &object_store::ObjectStore,
    manifest: &Manifest,
    max: u64,
) -> Result<Vec<u8>, FetchError> {
    if manifest.component_bytes > max {
        return Err(Refusal::new(
            RefusalKind::TooLarge,
            format!(
                "the component is {} bytes, over this worker's nats.max_bundle_bytes = {max}",
                manifest.component_bytes
            ),
        )
        .into());
    }
    let component = read_object(
        store,
        &component_object(&manifest.component_sha256),
        max,
        "the component",
    )
    .await?;
    if sha256_hex(&component) != manifest.component_sha256 {
        return Err(Refusal::new(
            RefusalKind::Digest,
            format!(
                "the component's bytes do not hash to {}…, the digest its bundle signed",
                short(&manifest.component_sha256)
            ),
        )
        .into());
    }
    Ok(component)
}

/// Read and check a deployment entry's value for `key`: signed by a
/// trusted deployer for that key, naming that swarm, a bundle unless it
/// is an undeploy.
pub fn verify_entry(key: &str, value: &[u8], keys: &DeployerKeys) -> Result<Deployment, Refusal> {
    let doc = SignedDoc::verified(
        value,
        MAX_ENTRY_BYTES,
        keys,
        Signed::Deployment,
        &entry_context(key),
    )?;
    let entry: Deployment = serde_json::from_str(&doc.body)
        .map_err(|e| Refusal::new(RefusalKind::Malformed, format!("the entry: {e}")))?;
    if entry.swarm_id != key || entry.deployer != doc.signer {
        return Err(Refusal::new(
            RefusalKind::Mismatch,
            "the entry's swarm or deployer is not its key's or signer's",
        ));
    }
    let digest_like = |d: &str| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit());
    match (entry.action, &entry.bundle) {
        (Action::Undeploy, None) => Ok(entry),
        (Action::Deploy | Action::Rollback, Some(bundle)) if digest_like(bundle) => Ok(entry),
        _ => Err(Refusal::new(
            RefusalKind::Malformed,
            "the entry's action and bundle do not go together",
        )),
    }
}

#[cfg(test)]
mod tests;
