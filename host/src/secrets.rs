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
//! Environment: `CHASSIS_SECRET__<SWARM>__<KEY>=value`, where `<SWARM>` is
//! the swarm id in upper case with `-` written as `_`, and `<KEY>` the key
//! name in upper case (e.g.
//! `CHASSIS_SECRET__GUARDIAN_COUNCIL__GUARDIAN_SIGNING_KEY`). The environment
//! wins over the file. So that no two swarms can ever read the same variable,
//! the environment serves only ids made of lowercase letters and digits in
//! words joined by single `-` (`guardian-council`), and key names made of
//! lowercase letters and digits in words joined by single `_`
//! (`guardian_signing_key`): for those the variable name maps back to exactly
//! one id and key. Other ids and keys take their values from the file only.
//!
//! A value `ed25519:<64 hex digits>` is an Ed25519 signing key (the 32-byte
//! seed): `sign` and `public-key` use it; `get` refuses to hand it out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Prefix of environment variables holding secrets.
pub(crate) const ENV_PREFIX: &str = "CHASSIS_SECRET__";

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

/// Lowercase letters and digits in words joined by single `sep`.
fn is_words(s: &str, sep: char) -> bool {
    !s.is_empty()
        && s.split(sep).all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The variable that holds `key` of `swarm_id`, when both have the shapes
/// the environment serves (see the module docs). The mapping is one to one:
/// ids never contain `_`, so the first `__` after the prefix ends the id, and
/// neither part has doubled, leading or trailing separators or upper case.
pub(crate) fn env_var_name(swarm_id: &str, key: &str) -> Option<String> {
    (is_words(swarm_id, '-') && is_words(key, '_')).then(|| {
        format!(
            "{ENV_PREFIX}{}__{}",
            swarm_id.to_ascii_uppercase().replace('-', "_"),
            key.to_ascii_uppercase()
        )
    })
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
        let text = Zeroizing::new(
            crate::files::read_bounded_text(path, crate::files::MAX_SECRETS_BYTES).map_err(io)?,
        );
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
    /// (see the module docs for the naming scheme). Pairs whose id or key the
    /// environment does not serve are skipped.
    pub fn add_env<'a>(&mut self, wanted: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (swarm_id, key) in wanted {
            let Some(var) = env_var_name(swarm_id, key) else {
                continue;
            };
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

/// Shortest secret value the host looks for in guest text: shorter values
/// would match ordinary words.
pub(crate) const MIN_REDACTED_LEN: usize = 4;

/// Finds a swarm's secret values, and their common encodings, in text the
/// swarm produces (log lines, stdout/stderr, error messages) and replaces
/// them with `[REDACTED:<key>]`.
///
/// For each value it looks for: the value itself, its hex encoding (lower
/// and upper case), and its base64 encoding (standard and URL-safe alphabet,
/// without padding and without the last, partial character, so the value
/// is found also inside a longer encoded message that starts with it).
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// (encoded form, key), longest first.
    needles: Vec<(Zeroizing<String>, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.needles.len())
    }
}

impl Redactor {
    /// A redactor for these (key, value) pairs.
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a Secret)>) -> Self {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let mut needles: Vec<(Zeroizing<String>, String)> = Vec::new();
        for (key, secret) in secrets {
            let value = secret.expose();
            let mut forms = vec![value.to_string()];
            if let Some(seed) = value.strip_prefix("ed25519:") {
                forms.push(seed.trim().to_string());
            }
            let bytes = value.as_bytes();
            forms.push(hex::encode(bytes));
            forms.push(hex::encode_upper(bytes));
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let mut b64 = engine.encode(bytes);
                if bytes.len() % 3 != 0 {
                    b64.pop();
                }
                forms.push(b64);
            }
            for form in forms {
                if form.len() >= MIN_REDACTED_LEN && !needles.iter().any(|(n, _)| **n == form) {
                    needles.push((Zeroizing::new(form), key.to_string()));
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
        Self { needles }
    }

    /// `text` with every secret form replaced, and the keys found (sorted,
    /// each once; empty when the text holds no secret).
    pub(crate) fn redact<'t>(&self, text: &'t str) -> (std::borrow::Cow<'t, str>, Vec<String>) {
        let mut found: Vec<String> = Vec::new();
        let mut out = std::borrow::Cow::Borrowed(text);
        for (needle, key) in &self.needles {
            if out.contains(needle.as_str()) {
                out = std::borrow::Cow::Owned(
                    out.replace(needle.as_str(), &format!("[REDACTED:{key}]")),
                );
                if !found.contains(key) {
                    found.push(key.clone());
                }
            }
        }
        found.sort();
        (out, found)
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
    fn a_redactor_finds_values_and_their_encodings() {
        let secret = Secret::new("sk-live-12345");
        let r = Redactor::new([("api_key", &secret), ("short", &Secret::new("ab"))]);
        let hex = hex::encode("sk-live-12345");
        let texts = [
            "token sk-live-12345 end".to_string(),
            format!("hex {hex}"),
            format!("HEX {}", hex.to_uppercase()),
            "b64 c2stbGl2ZS0xMjM0NQ".to_string(),
            // Inside a longer base64 message that starts with the secret.
            "b64 c2stbGl2ZS0xMjM0NS1hbmQtbW9yZQ==".to_string(),
        ];
        for text in &texts {
            let (clean, keys) = r.redact(text);
            assert_eq!(keys, vec!["api_key".to_string()], "{text}");
            assert!(clean.contains("[REDACTED:api_key]"), "{clean}");
            assert!(
                !clean.contains("sk-live") && !clean.contains(&hex),
                "{clean}"
            );
        }
        // Too-short values are not looked for; clean text is not copied.
        let (clean, keys) = r.redact("ab abc");
        assert!(keys.is_empty());
        assert!(matches!(clean, std::borrow::Cow::Borrowed(_)));
        assert!(!format!("{r:?}").contains("sk-live"));
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
        assert_eq!(
            env_var_name("guardian-council", "guardian_signing_key").unwrap(),
            "CHASSIS_SECRET__GUARDIAN_COUNCIL__GUARDIAN_SIGNING_KEY"
        );
        assert_eq!(
            env_var_name("agent-007", "key2").unwrap(),
            "CHASSIS_SECRET__AGENT_007__KEY2"
        );
        // A unique variable name for this test.
        unsafe_env_set("CHASSIS_SECRET__ENV_TEST_SWARM__TOKEN_1", "from-env");
        let mut store = SecretStore::new();
        store.add_env([("env-test-swarm", "token_1"), ("env-test-swarm", "absent")]);
        assert_eq!(
            store.get("env-test-swarm", "token_1").unwrap().expose(),
            "from-env"
        );
        assert!(store.get("env-test-swarm", "absent").is_none());
    }

    #[test]
    fn no_two_swarms_or_keys_share_a_variable() {
        // Ids and keys that would fold onto another's variable get none.
        for (id, key) in [
            ("team_a", "k"),
            ("team.a", "k"),
            ("team--a", "k"),
            ("team-", "k"),
            ("a", "b__c"),
            ("a", "_b"),
            ("a", "b-c"),
            ("a", "b.c"),
            ("a", "Key"),
            ("A", "k"),
        ] {
            assert_eq!(env_var_name(id, key), None, "{id} {key}");
        }
        // Every served pair maps to a distinct name.
        let ids = ["a", "a-b", "ab", "a-b-c", "a-bc", "ab-c", "a1"];
        let keys = ["k", "k_2", "k2", "a_b", "b", "b_c"];
        let mut seen = std::collections::HashMap::new();
        for id in ids {
            for key in keys {
                let name = env_var_name(id, key).unwrap();
                if let Some(prev) = seen.insert(name.clone(), (id, key)) {
                    panic!("{name} serves both {prev:?} and {:?}", (id, key));
                }
            }
        }
        // A swarm whose id folds onto another's does not read its variable.
        unsafe_env_set("CHASSIS_SECRET__FOLD_TEAM_A__TOKEN", "team-a's");
        let mut store = SecretStore::new();
        store.add_env([
            ("fold-team-a", "token"),
            ("fold-team_a", "token"),
            ("fold.team-a", "token"),
        ]);
        assert_eq!(
            store.get("fold-team-a", "token").unwrap().expose(),
            "team-a's"
        );
        assert!(store.get("fold-team_a", "token").is_none());
        assert!(store.get("fold.team-a", "token").is_none());
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
