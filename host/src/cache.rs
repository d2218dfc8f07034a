//! The precompiled-component cache: compiled machine code on disk, so the
//! second load of a component skips Cranelift.
//!
//! ```text
//! load(bytes) -> key = SHA-256(bytes) + SHA-256(engine configuration)
//!   -> <dir>/<key>.cwasm exists?
//!        yes -> header names this key, payload digest ok, wasmtime accepts
//!               it -> Component
//!               (anything wrong: recompile and replace the file)
//!        no  -> compile, write <dir>/.<key>.<pid>.<n>.tmp, rename to <key>.cwasm
//! ```
//!
//! An entry is only trusted when its header names the same component digest
//! and engine configuration as its file name (an entry copied or renamed
//! from another component does not pass), its payload's SHA-256 matches the
//! digest in its header, and wasmtime itself accepts it (it refuses an
//! artifact of another version or engine configuration). A corrupt,
//! truncated or foreign file is therefore recompiled, never loaded. The directory must not be writable by
//! group or others (someone who can write it could plant machine code), and
//! files are written whole and renamed into place, so a crash leaves either
//! the old entry or the new one. Failures to read or write the cache never
//! fail a load: the component is compiled as if there were no cache.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every cache entry.
const MAGIC: &[u8; 8] = b"CHASSIS\x01";
/// Header: magic, the component's SHA-256, the engine digest (16 bytes),
/// the payload's SHA-256.
const HEADER_LEN: usize = MAGIC.len() + 32 + 16 + 32;

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory could not be created or read.
    #[error("component cache {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The directory is writable by group or others.
    #[error(
        "component cache {}: directory is writable by group or others (mode {mode:o}); compiled code from it would run in the host, so it must be writable by the host's user only (chmod go-w)",
        path.display()
    )]
    InsecureDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Where a component's compiled code came from on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheUse {
    /// No cache is configured: compiled.
    Off,
    /// Not in the cache: compiled, and stored.
    Miss,
    /// Loaded from the cache without compiling.
    Hit,
    /// The cache entry was corrupt or foreign: compiled, and replaced.
    Replaced,
}

impl CacheUse {
    /// `off`, `miss`, `hit` or `replaced`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Off => "off",
            CacheUse::Miss => "miss",
            CacheUse::Hit => "hit",
            CacheUse::Replaced => "replaced",
        }
    }
}

/// A directory of precompiled components for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct ComponentCache {
    dir: PathBuf,
    engine_digest: [u8; 16],
}

/// Feeds `Hash` output into SHA-256, for a digest that is stable across runs.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// Use (and create, mode 0700) `dir` for components compiled by `engine`.
    pub(crate) fn open(dir: impl Into<PathBuf>, engine: &Engine) -> Result<Self, CacheError> {
        let dir = dir.into();
        let io = |source| CacheError::Io {
            path: dir.clone(),
            source,
        };
        crate::files::create_private_dir(&dir).map_err(io)?;
        check_private(&dir)?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let engine_digest = hasher.0.finalize()[..16].try_into().expect("16 bytes");
        Ok(Self { dir, engine_digest })
    }

    /// The file that holds the compiled form of `bytes`.
    #[cfg(test)]
    fn entry_path(&self, bytes: &[u8]) -> PathBuf {
        self.path_for(&self.key(bytes))
    }

    /// What an entry's header must name: the component, then the engine.
    fn key(&self, bytes: &[u8]) -> [u8; 48] {
        let mut key = [0; 48];
        key[..32].copy_from_slice(&Sha256::digest(bytes));
        key[32..].copy_from_slice(&self.engine_digest);
        key
    }

    fn path_for(&self, key: &[u8; 48]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(&key[..32]),
            hex::encode(&key[32..])
        ))
    }

    /// The compiled component for `bytes`, from the cache or by `compile`.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile: impl FnOnce() -> Result<Component, wasmtime::Error>,
    ) -> Result<(Component, CacheUse), wasmtime::Error> {
        let key = self.key(bytes);
        let path = self.path_for(&key);
        let found = match std::fs::read(&path) {
            Ok(entry) => match open_entry(engine, &key, &entry) {
                Ok(component) => return Ok((component, CacheUse::Hit)),
                Err(reason) => {
                    tracing::warn!(target: "chassis", "component cache: {}: {reason}; recompiling", path.display());
                    true
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(target: "chassis", "component cache: {}: {e}; recompiling", path.display());
                true
            }
        };
        let component = compile()?;
        match component.serialize() {
            Ok(payload) => {
                if let Err(e) = write_entry(&path, &key, &payload) {
                    tracing::warn!(target: "chassis", "component cache: cannot write {}: {e}", path.display());
                }
            }
            Err(e) => {
                tracing::warn!(target: "chassis", "component cache: cannot serialize: {e}")
            }
        }
        Ok((
            component,
            if found {
                CacheUse::Replaced
            } else {
                CacheUse::Miss
            },
        ))
    }
}

/// Check an entry's header and digest, then hand its payload to wasmtime.
fn open_entry(engine: &Engine, key: &[u8; 48], entry: &[u8]) -> Result<Component, String> {
    if entry.len() < HEADER_LEN || &entry[..MAGIC.len()] != MAGIC {
        return Err("not a chassis cache entry".to_string());
    }
    let (named, rest) = entry[MAGIC.len()..].split_at(key.len());
    if named != key {
        return Err("the entry is for another component or engine configuration".to_string());
    }
    let (digest, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err("payload does not match its digest (corrupt or truncated)".to_string());
    }
    deserialize(engine, payload).map_err(|e| format!("wasmtime refused it: {e}"))
}

/// Turn a verified payload back into a component.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> Result<Component, wasmtime::Error> {
    // SAFETY: `payload` is exactly what `Component::serialize` wrote for this
    // component and engine configuration: the header names both, and the
    // payload's SHA-256 matched the digest stored beside it,
    // in a directory only the host's user can write (checked at open), and
    // wasmtime checks its version and configuration header before use. The
    // bytes were copied into memory, so later changes to the file cannot
    // affect the loaded code.
    unsafe { Component::deserialize(engine, payload) }
}

/// Write an entry whole, then rename it into place.
fn write_entry(path: &Path, key: &[u8; 48], payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("entries live in the cache directory");
    let name = path.file_name().expect("entry file name").to_string_lossy();
    // Unique per write: two loads of one component at once (two contracts
    // naming the same file) each write their own, and the last rename wins.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = crate::files::create_private_file(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(key)?;
        file.write_all(&Sha256::digest(payload))?;
        file.write_all(payload)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn check_private(dir: &Path) -> Result<(), CacheError> {
    match crate::files::writable_by_others(dir) {
        Ok(None) => Ok(()),
        Ok(Some(mode)) => Err(CacheError::InsecureDir {
            path: dir.to_path_buf(),
            mode,
        }),
        Err(source) => Err(CacheError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        Engine::new(&c).unwrap()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chassis-cache-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const EMPTY_COMPONENT: &str = "(component (core module (func (export \"f\"))))";

    fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, wasmtime::Error> {
        Component::new(engine, bytes)
    }

    /// Two loads of one component at once both write the entry (neither
    /// takes the other's temporary file away), and it is a hit after.
    #[test]
    fn two_writes_of_one_entry_at_once_both_succeed() {
        let engine = engine();
        let dir = tmpdir("race");
        let cache = ComponentCache::open(&dir, &engine).unwrap();
        let bytes = wat::parse_str(EMPTY_COMPONENT).unwrap();
        let payload = compile(&engine, &bytes).unwrap().serialize().unwrap();
        let path = dir.join("entry.cwasm");
        let key = [7u8; 48];
        let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| write_entry(&path, &key, &payload)))
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for result in results {
            result.unwrap();
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        drop(cache);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn miss_then_hit_then_corrupt_entry_is_replaced() {
        let engine = engine();
        let dir = tmpdir("cycle");
        let cache = ComponentCache::open(&dir, &engine).unwrap();
        let bytes = wat::parse_str(EMPTY_COMPONENT).unwrap();
        let (_, used) = cache
            .get_or_compile(&engine, &bytes, || compile(&engine, &bytes))
            .unwrap();
        assert_eq!(used, CacheUse::Miss);
        let (_, used) = cache
            .get_or_compile(&engine, &bytes, || panic!("a hit must not compile"))
            .unwrap();
        assert_eq!(used, CacheUse::Hit);

        // Flip one byte of the payload: the digest no longer matches.
        let path = cache.entry_path(&bytes);
        let mut entry = std::fs::read(&path).unwrap();
        let last = entry.len() - 1;
        entry[last] ^= 0xff;
        std::fs::write(&path, &entry).unwrap();
        let (_, used) = cache
            .get_or_compile(&engine, &bytes, || compile(&engine, &bytes))
            .unwrap();
        assert_eq!(used, CacheUse::Replaced);
        let (_, used) = cache
            .get_or_compile(&engine, &bytes, || panic!("the replaced entry must hit"))
            .unwrap();
        assert_eq!(used, CacheUse::Hit);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_from_another_engine_configuration_is_not_loaded() {
        let engine = engine();
        let mut other = wasmtime::Config::new();
        other.wasm_component_model(true).consume_fuel(true);
        let other = Engine::new(&other).unwrap();
        let dir = tmpdir("foreign");
        let cache = ComponentCache::open(&dir, &engine).unwrap();
        let bytes = wat::parse_str(EMPTY_COMPONENT).unwrap();
        // A well-formed entry, digest and all, holding the other engine's code,
        // planted under this engine's name for these bytes.
        let payload = compile(&other, &bytes).unwrap().serialize().unwrap();
        write_entry(&cache.entry_path(&bytes), &cache.key(&bytes), &payload).unwrap();
        let (_, used) = cache
            .get_or_compile(&engine, &bytes, || compile(&engine, &bytes))
            .unwrap();
        assert_eq!(used, CacheUse::Replaced);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_renamed_from_another_component_is_not_loaded() {
        let engine = engine();
        let dir = tmpdir("renamed");
        let cache = ComponentCache::open(&dir, &engine).unwrap();
        let a = wat::parse_str(EMPTY_COMPONENT).unwrap();
        let b = wat::parse_str("(component (core module (func (export \"g\"))))").unwrap();
        cache
            .get_or_compile(&engine, &a, || compile(&engine, &a))
            .unwrap();
        // A whole, valid entry for `a`, put where `b`'s entry belongs.
        std::fs::copy(cache.entry_path(&a), cache.entry_path(&b)).unwrap();
        let (_, used) = cache
            .get_or_compile(&engine, &b, || compile(&engine, &b))
            .unwrap();
        assert_eq!(used, CacheUse::Replaced);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn engines_with_different_configurations_use_different_entries() {
        let engine = engine();
        let mut other = wasmtime::Config::new();
        other.wasm_component_model(true).consume_fuel(true);
        let other = Engine::new(&other).unwrap();
        let dir = tmpdir("keys");
        let a = ComponentCache::open(&dir, &engine).unwrap();
        let b = ComponentCache::open(&dir, &other).unwrap();
        assert_ne!(a.entry_path(b"x"), b.entry_path(b"x"));
        assert_ne!(a.entry_path(b"x"), a.entry_path(b"y"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmpdir("insecure");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ComponentCache::open(&dir, &engine()).unwrap_err();
        assert!(
            matches!(err, CacheError::InsecureDir { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
