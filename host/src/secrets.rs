//! Where secret values come from, per swarm: a secrets file and the
//! environment. Values live in zeroizing memory and are redacted in `Debug`
//! and `Display`; only key names ever reach logs, errors and events.
//!
//! Secrets file (TOML), one table per swarm id:
//!
//! ```toml
//! [guardian-council]
//! guardian_signing_key = "ed25519:9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
//! h323_gatekeeper_api_key = "s3cr3t"
//! ```
//!
//! The file must not be readable by group or others (`chmod 600`).
//!
//! Environment: `CHASSIS_SECRET__<SWARM>__<KEY>=value`, where `<SWARM>` and
//! `<KEY>` are the swarm id and key name in upper case with `-` and `.`
//! written as `_` (e.g. `CHASSIS_SECRET__GUARDIAN_COUNCIL__GUARDIAN_SIGNING_KEY`).
//! The environment wins over the file.
//!
//! A value `ed25519:<64 hex digits>` is an Ed25519 signing key (the 32-byte
//! seed): `sign` and `public-key` use it; `get` refuses to hand it out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Prefix of environment variables holding secrets.
pub const ENV_PREFIX: &str = "CHASSIS_SECRET__";

/// A secret value. Never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value, for the host's own use (signing, header injection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The Ed25519 signing key this secret holds, if it is one.
    pub fn signing_key(&self) -> Option<Result<ed25519_dalek::SigningKey, String>> {
        let hex_seed = self.0.strip_prefix("ed25519:")?;
        let mut seed = Zeroizing::new([0u8; 32]);
        Some(
            hex::decode_to_slice(hex_seed.trim(), seed.as_mut())
                .map(|()| ed25519_dalek::SigningKey::from_bytes(&seed))
                .map_err(|_| "an ed25519: key must be 64 hex digits (a 32-byte seed)".to_string()),
        )
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why secrets could not be loaded. Never contains a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file could not be read.
    #[error("{}: cannot read secrets file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error("{}: secrets file is readable by group or others (mode {mode:o}); run `chmod 600 {}`", path.display(), path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not valid.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the table or key, never a value).
        message: String,
    },
}

/// Secret values per swarm.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    swarms: HashMap<String, HashMap<String, Secret>>,
}

/// Upper case with `-` and `.` as `_`: how ids and keys appear in variable names.
fn env_name(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

impl SecretStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one secret (for embedders and tests).
    pub fn insert(&mut self, swarm_id: &str, key: &str, value: Secret) {
        self.swarms
            .entry(swarm_id.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    /// Load a secrets file, refusing one readable by group or others.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SecretsError> {
        let path = path.as_ref();
        let io = |source| SecretsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretsError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let invalid = |message: String| SecretsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        // Parse without echoing text: toml's messages can quote the input.
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            invalid(format!("not valid TOML (line {line})"))
        })?;
        let mut store = Self::new();
        for (swarm_id, keys) in table {
            let toml::Value::Table(keys) = keys else {
                return Err(invalid(format!(
                    "`{swarm_id}` must be a table of key = \"value\" for that swarm"
                )));
            };
            for (key, value) in keys {
                let toml::Value::String(value) = value else {
                    return Err(invalid(format!(
                        "[{swarm_id}] {key}: value must be a string"
                    )));
                };
                store.insert(&swarm_id, &key, Secret::new(value));
            }
        }
        Ok(store)
    }

    /// Add the secrets named in the environment for the given swarms and keys
    /// (see the module docs for the naming scheme).
    pub fn add_env<'a>(&mut self, wanted: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (swarm_id, key) in wanted {
            let var = format!("{ENV_PREFIX}{}__{}", env_name(swarm_id), env_name(key));
            if let Ok(value) = std::env::var(&var) {
                self.insert(swarm_id, key, Secret::new(value));
            }
        }
    }

    /// The secret `key` of `swarm_id`.
    pub fn get(&self, swarm_id: &str, key: &str) -> Option<&Secret> {
        self.swarms.get(swarm_id)?.get(key)
    }

    /// Names (never values) of the keys held for `swarm_id`.
    pub fn keys(&self, swarm_id: &str) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .swarms
            .get(swarm_id)
            .map(|k| k.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chassis-secrets-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn values_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
        let mut store = SecretStore::new();
        store.insert("a", "k", s);
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[test]
    fn file_is_loaded_per_swarm() {
        let dir = tmp();
        let p = write(&dir, "ok.toml", "[a]\nk = \"v1\"\n[b]\nk = \"v2\"\n", 0o600);
        let store = SecretStore::from_file(&p).unwrap();
        assert_eq!(store.get("a", "k").unwrap().expose(), "v1");
        assert_eq!(store.get("b", "k").unwrap().expose(), "v2");
        assert!(store.get("c", "k").is_none());
        assert_eq!(store.keys("a"), vec!["k"]);
    }

    #[test]
    fn a_file_readable_by_others_is_refused() {
        let dir = tmp();
        let p = write(&dir, "open.toml", "[a]\nk = \"v\"\n", 0o644);
        let err = SecretStore::from_file(&p).unwrap_err();
        assert!(matches!(err, SecretsError::Permissions { mode: 0o644, .. }));
        assert!(
            err.to_string().contains("readable by group or others"),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let p = write(&dir, "group.toml", "[a]\nk = \"v\"\n", 0o640);
        assert!(SecretStore::from_file(&p).is_err());
    }

    #[test]
    fn invalid_files_never_echo_values() {
        let dir = tmp();
        let p = write(&dir, "bad.toml", "[a]\nk = \"topsecret\nx", 0o600);
        let err = SecretStore::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("not valid TOML"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
        let p = write(&dir, "num.toml", "[a]\nk = 12345\n", 0o600);
        let err = SecretStore::from_file(&p).unwrap_err().to_string();
        assert!(
            err.contains("[a] k: value must be a string") && !err.contains("12345"),
            "{err}"
        );
    }

    #[test]
    fn environment_names_map_ids_and_keys() {
        assert_eq!(env_name("guardian-council"), "GUARDIAN_COUNCIL");
        assert_eq!(env_name("api.key-2"), "API_KEY_2");
        // SAFETY-free: a unique variable name for this test.
        let var = "CHASSIS_SECRET__ENV_TEST_SWARM__TOKEN_1";
        // Tests in this module do not read this variable concurrently.
        unsafe_env_set(var, "from-env");
        let mut store = SecretStore::new();
        store.add_env([("env-test.swarm", "token-1"), ("env-test.swarm", "absent")]);
        assert_eq!(
            store.get("env-test.swarm", "token-1").unwrap().expose(),
            "from-env"
        );
        assert!(store.get("env-test.swarm", "absent").is_none());
    }

    #[allow(unsafe_code)]
    fn unsafe_env_set(k: &str, v: &str) {
        // SAFETY: only this test touches this variable.
        unsafe { std::env::set_var(k, v) }
    }

    #[test]
    fn signing_keys_parse() {
        let s =
            Secret::new("ed25519:9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = s.signing_key().unwrap().unwrap();
        // RFC 8032 test 1 public key.
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert!(Secret::new("plain").signing_key().is_none());
        assert!(Secret::new("ed25519:zz").signing_key().unwrap().is_err());
    }
}
