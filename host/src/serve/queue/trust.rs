//! The fleet's trust model (`docs/scale-out.md`, "Security"): who may
//! connect to NATS and as what ([`NatsAuth`]: credentials and TLS, the
//! server's permissions do the rest), and who may answer a task
//! ([`WorkerKey`], [`Trust`]: workers sign each result and mirrored audit
//! record with Ed25519; readers verify against the worker keys they trust).
//!
//! Data flow: a worker signs `DOMAIN \n subject \n payload` and sends the
//! signature and its public key as the message's headers
//! [`SIGNER_HEADER`] and [`SIGNATURE_HEADER`]; the payload is unchanged. A
//! reader checks that the signer is one of its trusted keys and that the
//! signature holds for the subject it read the message from, so a result
//! signed for one task cannot stand for another. NATS credentials keep
//! strangers off the server; signatures keep a client that holds stolen
//! credentials, or a misconfigured server, from answering for a worker.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

use super::QueueError;

/// The header holding the signer's public key (64 hex digits).
pub const SIGNER_HEADER: &str = "Chassis-Signer";
/// The header holding the signature (base64).
pub const SIGNATURE_HEADER: &str = "Chassis-Signature";

/// What a signature covers, by kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// A task's result on `chassis.results.*`.
    Result,
    /// A mirrored audit record on `chassis.audit.*`.
    AuditRecord,
    /// A swarm bundle's manifest (`chassis deploy`), for its swarm id.
    Bundle,
    /// A swarm's deployment entry, for its key in the deployments bucket.
    Deployment,
}

impl Signed {
    fn domain(self) -> &'static [u8] {
        match self {
            Signed::Result => b"chassis-result-v1",
            Signed::AuditRecord => b"chassis-audit-v1",
            Signed::Bundle => b"chassis-bundle-v1",
            Signed::Deployment => b"chassis-deployment-v1",
        }
    }

    fn message(self, subject: &str, payload: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(payload.len() + subject.len() + 20);
        message.extend_from_slice(self.domain());
        message.push(b'\n');
        message.extend_from_slice(subject.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(payload);
        message
    }
}

/// Largest key or credentials file read, in bytes.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

pub use crate::serve::config::NatsAuth;

/// Connecting with [`NatsAuth`]'s credentials.
impl NatsAuth {
    /// Connection options carrying these credentials (read now).
    pub(crate) fn options(&self) -> Result<async_nats::ConnectOptions, QueueError> {
        self.check().map_err(QueueError::Auth)?;
        let mut options = async_nats::ConnectOptions::new().name("chassis");
        if let Some(path) = &self.creds_file {
            let text = secret_text(path, "creds_file")?;
            options = async_nats::ConnectOptions::with_credentials(&text)
                .map_err(|e| QueueError::Auth(format!("creds_file {}: {e}", path.display())))?
                .name("chassis");
        }
        if let Some(path) = &self.nkey_file {
            let seed = secret_text(path, "nkey_file")?;
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(user) = &self.user {
            let password = from_file_or_env(
                self.password_file.as_deref(),
                self.password_env.as_deref(),
                "password",
            )?;
            options = options.user_and_password(user.clone(), password.to_string());
        }
        if self.token_file.is_some() || self.token_env.is_some() {
            let token = from_file_or_env(
                self.token_file.as_deref(),
                self.token_env.as_deref(),
                "token",
            )?;
            options = options.token(token.to_string());
        }
        if let Some(ca) = &self.tls_ca_file {
            regular(ca, "tls_ca_file")?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            regular(cert, "tls_cert_file")?;
            regular(key, "tls_key_file")?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }
}

/// A file the NATS client will read itself: it must be a regular file.
fn regular(path: &Path, field: &str) -> Result<(), QueueError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(QueueError::Auth(format!(
            "{field} {}: not a regular file",
            path.display()
        ))),
        Err(e) => Err(QueueError::Auth(format!("{field} {}: {e}", path.display()))),
    }
}

/// A secret from a file, bounded.
fn secret_text(path: &Path, field: &str) -> Result<Zeroizing<String>, QueueError> {
    crate::files::read_bounded_text(path, MAX_KEY_FILE_BYTES)
        .map(Zeroizing::new)
        .map_err(|e| QueueError::Auth(format!("{field} {}: {e}", path.display())))
}

/// A password or token from a file or an environment variable.
fn from_file_or_env(
    file: Option<&Path>,
    env: Option<&str>,
    what: &str,
) -> Result<Zeroizing<String>, QueueError> {
    let value =
        match (file, env) {
            (Some(path), _) => secret_text(path, &format!("{what}_file"))?,
            (None, Some(var)) => Zeroizing::new(std::env::var(var).map_err(|_| {
                QueueError::Auth(format!("{what}_env: the variable {var} is not set"))
            })?),
            (None, None) => return Err(QueueError::Auth(format!("no {what} given"))),
        };
    let trimmed = Zeroizing::new(value.trim().to_string());
    if trimmed.is_empty() {
        return Err(QueueError::Auth(format!("the {what} is empty")));
    }
    Ok(trimmed)
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A private key readable by others.
    #[error(
        "{path}: a signing key must not be readable by group or others (mode {mode:o}); chmod 600 it"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Not a key of the expected shape.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The prefix of a signing key file's one line.
const PRIVATE_PREFIX: &str = "ed25519:";
/// The prefix of a public key file's one line.
const PUBLIC_PREFIX: &str = "ed25519-public:";

/// A worker's signing key: what makes its results believed.
pub struct WorkerKey(SigningKey);

impl std::fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerKey({})", self.public_hex())
    }
}

impl WorkerKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom_seed(&mut seed)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// From its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Read a key file (`ed25519:<64 hex digits>`), refusing one that group
    /// or others may read.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = Zeroizing::new(
            crate::files::read_bounded_text(path, MAX_KEY_FILE_BYTES).map_err(read)?,
        );
        let invalid = || KeyError::Invalid {
            path: path.to_path_buf(),
            reason: format!("not a signing key: one line `{PRIVATE_PREFIX}<64 hex digits>`"),
        };
        let hex_seed = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(invalid)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_seed, seed.as_mut_slice()).map_err(|_| invalid())?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The key file's text (secret).
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{PRIVATE_PREFIX}{}\n",
            hex::encode(self.0.to_bytes())
        ))
    }

    /// The public key file's text.
    pub fn public_file_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}\n", self.public_hex())
    }

    /// The public key, 64 hex digits.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().as_bytes())
    }

    /// The public key.
    pub fn public(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The headers that sign `payload` published on `subject`.
    pub fn sign(&self, kind: Signed, subject: &str, payload: &[u8]) -> [(&'static str, String); 2] {
        let (signer, signature) = self.sign_detached(kind, subject, payload);
        [(SIGNER_HEADER, signer), (SIGNATURE_HEADER, signature)]
    }

    /// The signer (64 hex digits) and the signature (base64) of `payload`
    /// for `context` (a subject, a swarm id, a key): for a message that
    /// carries them itself rather than in headers.
    pub fn sign_detached(&self, kind: Signed, context: &str, payload: &[u8]) -> (String, String) {
        use base64::Engine;
        let signature = self.0.sign(&kind.message(context, payload));
        (
            self.public_hex(),
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        )
    }
}

/// Check a detached signature: `signer` is one of `keys` (by its 64 hex
/// digits; `whose` names them in the error) and `signature` (base64)
/// holds for `payload` and `context`. The signer is shown bounded and
/// escaped.
fn verify_detached<'k>(
    keys: &'k [VerifyingKey],
    kind: Signed,
    context: &str,
    (signer, signature): (&str, &str),
    payload: &[u8],
    whose: &str,
) -> Result<&'k VerifyingKey, Disbelief> {
    let shown = crate::text::escape(signer, 80);
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(signer, &mut bytes)
        .map_err(|_| Disbelief::Untrusted(format!("its signer {shown:?} is not a public key")))?;
    let key = keys
        .iter()
        .find(|k| k.as_bytes() == &bytes)
        .ok_or_else(|| {
            Disbelief::Untrusted(format!("its signer {shown} is not a trusted {whose} key"))
        })?;
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or_else(|| Disbelief::Signature("its signature is malformed".to_string()))?;
    key.verify(&kind.message(context, payload), &signature)
        .map_err(|_| {
            Disbelief::Signature(format!(
                "its signature by {shown} does not match its content"
            ))
        })?;
    Ok(key)
}

/// Why a signature was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disbelief {
    /// The signer is not a trusted key (or not a key at all).
    #[error("{0}")]
    Untrusted(String),
    /// The signature is malformed or does not hold for the content.
    #[error("{0}")]
    Signature(String),
}

/// The deployers whose bundles and deployments a worker serves
/// (`nats.trusted_deployers`): a type of its own, so a worker's key never
/// stands in for a deployer's.
#[derive(Debug, Clone, Default)]
pub struct DeployerKeys(Vec<VerifyingKey>);

impl DeployerKeys {
    /// These keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self(keys)
    }

    /// The public keys in these files (`ed25519-public:<64 hex>`; a
    /// signing key file's public half is taken too).
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, KeyError> {
        paths
            .iter()
            .map(|p| public_key_file(p))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no deployer is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Check that `signature` by `signer` holds for `payload` and
    /// `context`, and that `signer` is a trusted deployer.
    pub fn verify(
        &self,
        kind: Signed,
        context: &str,
        signer: &str,
        signature: &str,
        payload: &[u8],
    ) -> Result<(), Disbelief> {
        verify_detached(
            &self.0,
            kind,
            context,
            (signer, signature),
            payload,
            "deployer",
        )
        .map(|_| ())
    }
}

/// A random seed from the operating system.
fn getrandom_seed(seed: &mut [u8; 32]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(seed))
        .map_err(|e| format!("reading /dev/urandom: {e}"))
}

/// Whose results and audit records a reader believes.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Nobody chose: reading a result is refused, saying how to choose.
    #[default]
    Unset,
    /// Messages signed by one of these worker keys.
    Workers(Vec<VerifyingKey>),
    /// Every message, signed or not. For a closed test set-up only: any
    /// client of the NATS server can forge what this reader believes.
    InsecureUnsigned,
}

impl Trust {
    /// Trust the public keys in these files (`ed25519-public:<64 hex>`,
    /// one per file; a worker's signing key file is taken too).
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            keys.push(public_key_file(path)?);
        }
        Ok(Trust::Workers(keys))
    }

    /// Check a message's signature: signed by a trusted key, for this
    /// subject and payload.
    pub fn verify(
        &self,
        kind: Signed,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: &[u8],
    ) -> Result<(), String> {
        let keys = match self {
            Trust::InsecureUnsigned => return Ok(()),
            Trust::Unset => {
                return Err("no trusted worker keys were given: give the public keys of the workers whose results you believe (chassis submit --worker-key FILE; Trust::Workers), or accept unsigned results knowingly (--insecure-unsigned)".to_string());
            }
            Trust::Workers(keys) => keys,
        };
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let (Some(signer), Some(signature)) = (header(SIGNER_HEADER), header(SIGNATURE_HEADER))
        else {
            return Err("it is not signed by a worker".to_string());
        };
        verify_detached(
            keys,
            kind,
            subject,
            (&signer, &signature),
            payload,
            "worker",
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

/// A public key from a file: `ed25519-public:<64 hex>`, or the worker's own
/// key file (whose public half is taken).
pub fn public_key_file(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = crate::files::read_bounded_text(path, MAX_KEY_FILE_BYTES).map_err(|source| {
        KeyError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let invalid = |reason: &str| KeyError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = text.trim();
    if text.starts_with(PRIVATE_PREFIX) {
        return Ok(WorkerKey::from_file(path)?.public());
    }
    let hex_key = text.strip_prefix(PUBLIC_PREFIX).ok_or_else(|| {
        invalid(&format!(
            "not a public key: one line `{PUBLIC_PREFIX}<64 hex digits>`"
        ))
    })?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes)
        .map_err(|_| invalid("the key is not 64 hex digits"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("not a valid Ed25519 public key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(signed: [(&'static str, String); 2]) -> async_nats::HeaderMap {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in signed {
            map.insert(name, value.as_str());
        }
        map
    }

    /// A signature holds for its subject and payload only, by a trusted key
    /// only; unsigned messages are refused unless the reader chose to take
    /// them.
    #[test]
    fn results_are_believed_only_when_signed_by_a_trusted_worker() {
        let worker = WorkerKey::from_seed([7; 32]);
        let stranger = WorkerKey::from_seed([8; 32]);
        let trust = Trust::Workers(vec![worker.public()]);
        let signed = headers(worker.sign(Signed::Result, "chassis.results.a", b"{}"));
        assert_eq!(
            trust.verify(Signed::Result, "chassis.results.a", Some(&signed), b"{}"),
            Ok(())
        );
        let bad = |subject: &str, payload: &[u8], h: Option<&async_nats::HeaderMap>| {
            trust
                .verify(Signed::Result, subject, h, payload)
                .unwrap_err()
        };
        assert!(bad("chassis.results.b", b"{}", Some(&signed)).contains("does not match"));
        assert!(bad("chassis.results.a", b"{ }", Some(&signed)).contains("does not match"));
        assert!(bad("chassis.results.a", b"{}", None).contains("not signed"));
        let forged = headers(stranger.sign(Signed::Result, "chassis.results.a", b"{}"));
        assert!(bad("chassis.results.a", b"{}", Some(&forged)).contains("not a trusted"));
        // An audit record's signature does not stand for a result.
        let record = headers(worker.sign(Signed::AuditRecord, "chassis.results.a", b"{}"));
        assert!(bad("chassis.results.a", b"{}", Some(&record)).contains("does not match"));
        assert!(
            Trust::Unset
                .verify(Signed::Result, "s", Some(&signed), b"{}")
                .unwrap_err()
                .contains("--worker-key")
        );
        assert!(
            Trust::InsecureUnsigned
                .verify(Signed::Result, "s", None, b"x")
                .is_ok()
        );
    }

    /// Key files round-trip; a private key readable by others is refused.
    #[test]
    fn key_files_round_trip_and_private_ones_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("chassis-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = WorkerKey::generate().unwrap();
        let private = dir.join("w.key");
        let public = dir.join("w.pub");
        std::fs::write(&private, key.to_file_text().as_bytes()).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&public, key.public_file_text()).unwrap();
        assert_eq!(
            WorkerKey::from_file(&private).unwrap().public(),
            key.public()
        );
        assert_eq!(public_key_file(&public).unwrap(), key.public());
        assert_eq!(public_key_file(&private).unwrap(), key.public());
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            WorkerKey::from_file(&private),
            Err(KeyError::Permissions { .. })
        ));
        std::fs::write(&public, "ed25519-public:zz\n").unwrap();
        assert!(public_key_file(&public).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One way of signing in at a time, and secrets never from the fields.
    #[test]
    fn credentials_are_one_way_and_complete() {
        let ok = NatsAuth {
            user: Some("w".into()),
            password_env: Some("P".into()),
            ..Default::default()
        };
        assert!(ok.check().is_ok());
        let two = NatsAuth {
            token_env: Some("T".into()),
            ..ok.clone()
        };
        assert!(two.check().unwrap_err().contains("one of"));
        let no_password = NatsAuth {
            user: Some("w".into()),
            ..Default::default()
        };
        assert!(no_password.check().unwrap_err().contains("go together"));
        let unset = NatsAuth {
            token_env: Some("CHASSIS_TEST_UNSET_NATS_TOKEN".into()),
            ..Default::default()
        };
        let e = unset.options().err().unwrap().to_string();
        assert!(e.contains("CHASSIS_TEST_UNSET_NATS_TOKEN"), "{e}");
    }
}
