//! [`FileStore`]: objects as files under a data directory.
//!
//! Layout: `DIR/<namespace>/<h>.obj` per object, where `<h>` is the
//! SHA-256 of its name in hex: the name's text never becomes a path; and
//! `DIR/<namespace>/.lock`, held by the store that first uses the
//! namespace, so two hosts never write one namespace (the second is
//! answered `unavailable`; the lock is `flock`'s, so the directory must be
//! on a local filesystem). Directories are made mode 0700 and files 0600,
//! and a directory its group or others may write is refused. A file holds
//! a header (`CHSOBJ1\n`, the name's length as two bytes, little-endian,
//! and the name) and then the object's bytes.
//!
//! A write goes to `<h>.tmp`, is flushed to disk (fsync), renamed over
//! `<h>.obj` and the directory flushed: after a crash the object is its old
//! version or its new one, never part of either. A `.tmp` left by a crash
//! is removed when the namespace is next opened. Each namespace's index
//! (names, sizes, times) is read from its directory once, then kept in
//! memory beside its usage; its lock serializes the namespace's writes, so
//! the quota holds however many tasks write at once. Reading one
//! namespace's directory holds up no other namespace.
//!
//! Failures carry the paths for the host's log ([`StoreError::Unavailable`]
//! is what the import shows the guest, without them).

use std::collections::{BTreeMap, HashMap};

use std::fs::{self, File};
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::{ObjectInfo, Page, Quota, Store, StoreError, StoreFuture, Usage, after_write, names};

/// The start of every object file.
const MAGIC: &[u8; 8] = b"CHSOBJ1\n";

/// Why a data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It could not be read.
    #[error("storage directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its group or others may write it.
    #[error(
        "storage directory {path} is writable by its group or others (mode {mode:o}): make it the host user's only (chmod 700)"
    )]
    Insecure {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

/// Objects as files under one directory (see the module's documentation).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Each namespace used so far, read on its first use.
    spaces: Mutex<HashMap<String, Arc<Mutex<Option<Space>>>>>,
}

/// One namespace, once read.
struct Space {
    dir: PathBuf,
    index: BTreeMap<String, ObjectInfo>,
    usage: Usage,
    /// Held while the store lives: the namespace's lock.
    _lock: File,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// A store in the data directory `dir`, made (mode 0700) when a
    /// namespace is first used; an existing `dir` that others may write is
    /// refused.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        match crate::files::writable_by_others(&dir) {
            Ok(None) => {}
            Ok(Some(mode)) => return Err(OpenError::Insecure { path: dir, mode }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OpenError::Io { path: dir, source }),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                spaces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Run `op` on `namespace` on a blocking thread.
    fn with<'a, T: Send + 'static>(
        &'a self,
        namespace: &str,
        op: impl FnOnce(&mut Space) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let inner = self.inner.clone();
        let namespace = namespace.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let slot = inner.slot(&namespace)?;
                let mut space = slot.lock().unwrap_or_else(|p| p.into_inner());
                if space.is_none() {
                    *space = Some(Space::read(&inner.dir, &namespace)?);
                }
                op(space.as_mut().expect("read above"))
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("the store's thread failed: {e}")))?
        })
    }
}

fn unavailable(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

fn hashed(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

/// A file's modification time, milliseconds since the Unix epoch.
fn mtime_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Flush a directory's entries to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes of an object file's header for a name of `len` bytes.
fn header_bytes(len: usize) -> u64 {
    (MAGIC.len() + 2 + len) as u64
}

impl Inner {
    /// The namespace's slot (its lock, and its state once read): the
    /// store-wide lock is held only to find or add it.
    fn slot(&self, namespace: &str) -> Result<Arc<Mutex<Option<Space>>>, StoreError> {
        // Namespaces are swarm ids; anything else must not become a path.
        if names::check(namespace).is_err() || namespace.contains('/') {
            return Err(StoreError::Unavailable(format!(
                "{namespace:?} is not a namespace"
            )));
        }
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        Ok(spaces.entry(namespace.to_string()).or_default().clone())
    }
}

impl Space {
    /// Make (mode 0700), lock and read a namespace's directory under
    /// `root`: its objects' names from their headers, sizes and times;
    /// leftover `.tmp` files removed; anything else left alone.
    fn read(root: &Path, namespace: &str) -> Result<Self, StoreError> {
        let dir = root.join(namespace);
        let made = !dir.exists();
        crate::files::create_private_dir(&dir).map_err(|e| unavailable("making", &dir, e))?;
        for d in [root, dir.as_path()] {
            match crate::files::writable_by_others(d) {
                Ok(None) => {}
                Ok(Some(mode)) => {
                    return Err(unavailable(
                        "using",
                        d,
                        format!("writable by its group or others (mode {mode:o})"),
                    ));
                }
                Err(e) => return Err(unavailable("reading", d, e)),
            }
        }
        if made {
            // The new directory's entry, on disk before its first object.
            sync_dir(root).map_err(|e| unavailable("flushing", root, e))?;
        }
        let lock_path = dir.join(".lock");
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| unavailable("opening", &lock_path, e))?
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Unavailable(format!(
                    "{} is in use by another store (its .lock is held): give each host its own storage directory",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(unavailable("locking", &lock_path, e));
            }
        }
        let mut index = BTreeMap::new();
        let mut usage = Usage::default();
        let entries = fs::read_dir(&dir).map_err(|e| unavailable("reading", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| unavailable("reading", &dir, e))?;
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => {
                    fs::remove_file(&path).map_err(|e| unavailable("removing", &path, e))?;
                }
                Some("obj") => {
                    let Some((name, info)) = read_header(&path)? else {
                        tracing::warn!(target: "chassis::storage", "{} is not an object file of this store; left alone", path.display());
                        continue;
                    };
                    usage.bytes = usage.bytes.saturating_add(info.size);
                    usage.objects = usage.objects.saturating_add(1);
                    index.insert(name, info);
                }
                _ => {}
            }
        }
        Ok(Space {
            dir,
            index,
            usage,
            _lock: lock,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.obj", hashed(name)))
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.index.contains_key(name) {
            return Ok(None);
        }
        let path = self.path(name);
        // Never more than the largest object: a file put there by someone
        // else is refused, not read whole.
        let limit = super::MAX_OBJECT_BYTES + header_bytes(name.len());
        let mut bytes = crate::files::read_bounded(&path, limit)
            .map_err(|e| unavailable("reading", &path, e))?;
        let start = header_len(&bytes, name)
            .ok_or_else(|| unavailable("reading", &path, "not the object's file"))?;
        bytes.drain(..start);
        Ok(Some(bytes))
    }

    fn set(&mut self, name: &str, value: &[u8], quota: Quota) -> Result<(), StoreError> {
        if names::check(name).is_err() {
            return Err(StoreError::Unavailable(format!(
                "{:?} is not an object name",
                crate::text::escape(name, 300)
            )));
        }
        let old = self.index.get(name).map(|info| info.size);
        let after = after_write(self.usage, old, value.len() as u64, quota)?;
        let path = self.path(name);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = crate::files::create_private_file(&tmp)?;
            let mut header = Vec::with_capacity(MAGIC.len() + 2 + name.len());
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&(name.len() as u16).to_le_bytes());
            header.extend_from_slice(name.as_bytes());
            file.write_all(&header)?;
            file.write_all(value)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(unavailable("writing", &path, e));
        }
        // The new version is in place: the index follows it, whatever the
        // directory's flush says.
        let modified_ms = fs::metadata(&path).map_or(0, |m| mtime_ms(&m));
        self.index.insert(
            name.to_string(),
            ObjectInfo {
                size: value.len() as u64,
                modified_ms,
            },
        );
        self.usage = after;
        sync_dir(&self.dir).map_err(|e| unavailable("flushing", &self.dir, e))
    }

    fn delete(&mut self, name: &str) -> Result<bool, StoreError> {
        let Some(info) = self.index.get(name).copied() else {
            return Ok(false);
        };
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Gone already: removed all the same.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("removing", &path, e)),
        }
        self.index.remove(name);
        self.usage.bytes = self.usage.bytes.saturating_sub(info.size);
        self.usage.objects = self.usage.objects.saturating_sub(1);
        sync_dir(&self.dir).map_err(|e| unavailable("flushing", &self.dir, e))?;
        Ok(true)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Page {
        let start = super::list_start(prefix, after).map(str::to_string);
        let names = self
            .index
            .range::<String, _>((start, Bound::Unbounded))
            .map(|(name, _)| name);
        super::page_of(names, prefix, limit)
    }
}

/// The name and the object's size and time from an object file's header;
/// `None` when it is not one of this store's (bad header, a name that is
/// not an object name, or a file name that is not its name's hash).
fn read_header(path: &Path) -> Result<Option<(String, ObjectInfo)>, StoreError> {
    let mut file = File::open(path).map_err(|e| unavailable("reading", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| unavailable("reading", path, e))?;
    let mut head = [0u8; 10];
    if file.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
        return Ok(None);
    }
    let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
    if len > names::MAX_NAME_BYTES {
        return Ok(None);
    }
    let mut name = vec![0u8; len];
    if file.read_exact(&mut name).is_err() {
        return Ok(None);
    }
    let Ok(name) = String::from_utf8(name) else {
        return Ok(None);
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if names::check(&name).is_err() || stem != hashed(&name) {
        return Ok(None);
    }
    let size = meta.len().saturating_sub(header_bytes(len));
    Ok(Some((
        name,
        ObjectInfo {
            size,
            modified_ms: mtime_ms(&meta),
        },
    )))
}

/// Where an object file's bytes start, if its header names `name`.
fn header_len(bytes: &[u8], name: &str) -> Option<usize> {
    let len = usize::from(u16::from_le_bytes([*bytes.get(8)?, *bytes.get(9)?]));
    (bytes.starts_with(MAGIC) && bytes.get(10..10 + len)? == name.as_bytes()).then_some(10 + len)
}

impl Store for FileStore {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let name = name.to_string();
        self.with(namespace, move |space| space.get(&name))
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        value: Vec<u8>,
        quota: Quota,
    ) -> StoreFuture<'a, ()> {
        let name = name.to_string();
        self.with(namespace, move |space| space.set(&name, &value, quota))
    }

    fn delete<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, bool> {
        let name = name.to_string();
        self.with(namespace, move |space| space.delete(&name))
    }

    fn stat<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<ObjectInfo>> {
        let name = name.to_string();
        self.with(namespace, move |space| Ok(space.index.get(&name).copied()))
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        let prefix = prefix.to_string();
        let after = after.map(str::to_string);
        self.with(namespace, move |space| {
            Ok(space.list(&prefix, after.as_deref(), limit))
        })
    }

    fn usage<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Usage> {
        self.with(namespace, |space| Ok(space.usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> Quota {
        Quota {
            max_bytes: 1000,
            max_objects: 10,
            max_object_bytes: 500,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chassis-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Objects written, read back, listed in pages, removed; the index and
    /// usage rebuilt from the directory by a store opened again; a
    /// leftover temporary file removed; a second opener refused.
    #[tokio::test]
    async fn objects_round_trip_and_survive_a_reopen() {
        let dir = scratch("round-trip");
        let store = FileStore::open(&dir).unwrap();
        for i in 0..5 {
            let name = format!("docs/{i}");
            store
                .set("s", &name, vec![i as u8; 10 * i], quota())
                .await
                .unwrap();
        }
        store
            .set("s", "other", b"x".to_vec(), quota())
            .await
            .unwrap();
        assert_eq!(store.get("s", "docs/3").await.unwrap(), Some(vec![3; 30]));
        assert_eq!(store.get("s", "nope").await.unwrap(), None);
        // Another store on the same directory: the namespace is taken.
        let second = FileStore::open(&dir).unwrap();
        let taken = second.get("s", "docs/3").await.unwrap_err();
        assert!(taken.to_string().contains("in use by another"), "{taken}");
        drop(second);
        assert_eq!(store.get("t", "docs/3").await.unwrap(), None);
        let page = store.list("s", "docs/", None, 2).await.unwrap();
        assert_eq!(page.keys, ["docs/0", "docs/1"]);
        let page = store
            .list("s", "docs/", page.cursor.as_deref(), 2)
            .await
            .unwrap();
        assert_eq!(page.keys, ["docs/2", "docs/3"]);
        let page = store
            .list("s", "docs/", page.cursor.as_deref(), 2)
            .await
            .unwrap();
        assert_eq!((page.keys, page.cursor), (vec!["docs/4".to_string()], None));
        assert!(store.delete("s", "docs/0").await.unwrap());
        assert!(!store.delete("s", "docs/0").await.unwrap());
        let usage = store.usage("s").await.unwrap();
        assert_eq!(
            usage,
            Usage {
                bytes: 10 + 20 + 30 + 40 + 1,
                objects: 5
            }
        );
        drop(store);
        // A crash's leftover.
        let space = dir.join("s");
        fs::write(space.join(format!("{}.tmp", hashed("docs/1"))), b"half").unwrap();
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.usage("s").await.unwrap(), usage);
        assert_eq!(store.get("s", "docs/4").await.unwrap(), Some(vec![4; 40]));
        let info = store.stat("s", "docs/4").await.unwrap().unwrap();
        assert_eq!(info.size, 40);
        assert!(info.modified_ms > 0);
        assert!(
            fs::read_dir(&space).unwrap().all(|e| !e
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".tmp"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Many writers at once cannot pass the quota together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_stay_within_the_quota() {
        let dir = scratch("concurrent");
        let store = FileStore::open(&dir).unwrap();
        let quota = Quota {
            max_bytes: 1000,
            max_objects: 1000,
            max_object_bytes: 100,
        };
        let writers: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .set("s", &format!("o{i}"), vec![0; 100], quota)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut written = 0;
        for w in writers {
            written += usize::from(w.await.unwrap());
        }
        assert_eq!(written, 10);
        assert_eq!(
            store.usage("s").await.unwrap(),
            Usage {
                bytes: 1000,
                objects: 10
            }
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_namespace_is_never_a_path() {
        let dir = scratch("namespace");
        let store = FileStore::open(&dir).unwrap();
        for bad in ["..", "../x", "a/b", "", "/etc"] {
            assert!(matches!(
                store.get(bad, "n").await,
                Err(StoreError::Unavailable(_))
            ));
        }
        assert!(!dir.exists(), "nothing made for a refused namespace");
    }

    /// What a crash or someone else leaves in a namespace: a torn `.tmp`
    /// beside the old version (the old version stands, the `.tmp` goes), a
    /// file that is not an object of this store, an object file too large
    /// to be one, and an object whose file went missing (deleted all the
    /// same).
    #[tokio::test]
    async fn leftovers_and_foreign_files_are_handled_on_reopen() {
        let dir = scratch("leftovers");
        let store = FileStore::open(&dir).unwrap();
        store
            .set("s", "kept", b"old".to_vec(), quota())
            .await
            .unwrap();
        store
            .set("s", "gone", b"x".to_vec(), quota())
            .await
            .unwrap();
        store.set("s", "big", b"b".to_vec(), quota()).await.unwrap();
        drop(store);
        let space = dir.join("s");
        fs::write(
            space.join(format!("{}.tmp", hashed("kept"))),
            b"CHSOBJ1\n\x04\x00kepnew",
        )
        .unwrap();
        fs::write(
            space.join(format!("{}.obj", hashed("foreign"))),
            b"not an object",
        )
        .unwrap();
        fs::write(space.join("notes.txt"), b"left alone").unwrap();
        // `big` grows past any object, behind the store's back.
        let mut huge = b"CHSOBJ1\n\x03\x00big".to_vec();
        huge.resize(huge.len() + super::super::MAX_OBJECT_BYTES as usize + 1, 0);
        fs::write(space.join(format!("{}.obj", hashed("big"))), &huge).unwrap();

        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.get("s", "kept").await.unwrap(), Some(b"old".to_vec()));
        assert!(!space.join(format!("{}.tmp", hashed("kept"))).exists());
        assert_eq!(store.stat("s", "foreign").await.unwrap(), None);
        assert!(space.join("notes.txt").exists());
        assert!(matches!(
            store.get("s", "big").await,
            Err(StoreError::Unavailable(_))
        ));
        fs::remove_file(space.join(format!("{}.obj", hashed("gone")))).unwrap();
        assert!(store.delete("s", "gone").await.unwrap());
        assert_eq!(store.stat("s", "gone").await.unwrap(), None);
        let page = store.list("s", "", None, 10).await.unwrap();
        assert_eq!(page.keys, ["big", "kept"]);
        assert_eq!(store.usage("s").await.unwrap().objects, 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A data directory others may write is refused; what the store makes
    /// is its user's only.
    #[tokio::test]
    async fn the_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("private");
        let store = FileStore::open(&dir).unwrap();
        store.set("s", "a", b"x".to_vec(), quota()).await.unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("s")), 0o700);
        assert_eq!(
            mode(&dir.join("s").join(format!("{}.obj", hashed("a")))),
            0o600
        );
        drop(store);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            FileStore::open(&dir),
            Err(OpenError::Insecure { mode: 0o777, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
