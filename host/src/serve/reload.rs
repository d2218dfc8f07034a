//! The contract files `chassis serve` was given, what each loaded, and hot
//! reload: keeping the loaded swarms in step with the files.
//!
//! [`Files::reconcile`] compares every contract file (directories are
//! listed again each time) with what it saw last, by a stamp: the
//! contract's SHA-256 and the size, modification time and inode of the
//! component it names. A new file is loaded; a changed one is loaded beside
//! its running version and swapped in (`Chassis::replace`: in-flight tasks
//! finish on the old version); a file that is gone unloads its swarm (new
//! tasks are refused at once, running ones finish). A version that fails to
//! load is recorded (audited by the host as `load_rejected`, listed by
//! `/readyz`) and the version before it keeps serving; the same broken
//! files are not tried again until they change. Startup is the first
//! reconcile.
//!
//! [`watch`] runs a reconcile whenever something changes in a directory
//! holding a contract or a component (the `notify` crate), once the changes
//! have settled for [`SETTLE`] (at most [`MAX_SETTLE`] after the first).
//! A load that failed for a reason outside its files (its swarm id taken by
//! another file, the pool full, the audit log down) is tried again at each
//! reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use super::{LoadFailure, ServeError, Service};
use crate::{Chassis, ErrorKind, ServiceContract};

/// How long the files must be quiet before a reload: a component being
/// copied in raises many events, and one reload follows them.
pub(super) const SETTLE: Duration = Duration::from_millis(300);

/// The longest a reload waits for the files to settle.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// Contract files larger than this are not read for their stamp (the
/// contract parser refuses them with its own error).
const MAX_CONTRACT_BYTES: u64 = 1024 * 1024;

/// What a contract file and its component looked like when last read.
#[derive(Debug, Clone, PartialEq)]
struct Stamp {
    contract: Option<[u8; 32]>,
    component: Option<(u64, Option<SystemTime>, u64)>,
}

impl Stamp {
    fn of(path: &Path, contract: Option<&ServiceContract>) -> Self {
        let digest = crate::files::read_bounded(path, MAX_CONTRACT_BYTES)
            .ok()
            .map(|bytes| Sha256::digest(&bytes).into());
        let component = contract
            .and_then(|c| crate::registry::module_path(c, path).ok())
            .and_then(|module| std::fs::metadata(module).ok())
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.len(), m.modified().ok(), m.ino())
            });
        Self {
            contract: digest,
            component,
        }
    }
}

/// One contract file: the swarm it serves (if any) and its stamp.
#[derive(Debug)]
struct Seen {
    swarm_id: Option<String>,
    stamp: Stamp,
    /// Its last load failed for a reason outside its files (its swarm id
    /// taken by another file, the pool full, the audit log down): tried
    /// again at every reconcile, changed or not.
    retry: bool,
}

/// What one reconcile changed.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Swarms loaded for the first time (their history is restored).
    pub(super) loaded: Vec<String>,
    /// Swarms replaced by a new version.
    pub(super) replaced: Vec<String>,
    /// Swarms unloaded because their contract file went away.
    pub(super) unloaded: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub(super) fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.replaced.is_empty() && self.unloaded.is_empty()
    }
}

/// The service's contracts part: the files and directories of the
/// configuration's `contracts`, what each loaded, and the first load's
/// progress. Its watcher is [`watch`], started with the server.
pub(super) struct Contracts {
    /// The contract files and what each loaded.
    pub(super) files: Files,
    /// The first load's progress: until it is whole and restored, tasks
    /// are refused (503 `loading`) and `/readyz` says how far it is.
    pub(super) progress: Arc<Progress>,
    /// The contract files there were when the service was set up.
    listed: Vec<PathBuf>,
}

impl Contracts {
    /// The contract files of `roots`: each must exist, and each directory
    /// be readable.
    pub(super) fn open(roots: &[PathBuf]) -> Result<Self, ServeError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServeError::Io { path, source }
        };
        let mut listed = Vec::new();
        for root in roots {
            if std::fs::metadata(root).map_err(io(root))?.is_dir() {
                listed.extend(list_toml(root).map_err(io(root))?);
            } else {
                listed.push(root.clone());
            }
        }
        Ok(Self {
            files: Files::new(roots.to_vec()),
            // How many there are is known before the load starts: a
            // `/readyz` asked at once says "loading 0 of N".
            progress: Arc::new(Progress::expecting(listed.len())),
            listed,
        })
    }

    /// The contracts of the files listed that parse (what the host is
    /// sized for).
    pub(super) fn parse_all(&self) -> Vec<ServiceContract> {
        self.listed
            .iter()
            .filter_map(|p| ServiceContract::from_file(p).ok())
            .collect()
    }

    /// The first load: every contract, several at a time, counted in the
    /// progress.
    pub(super) async fn first_load(&self, chassis: &Chassis) -> Changes {
        self.files
            .reconcile_with(chassis, Some(&self.progress))
            .await
    }
}

/// Load (or, `same`, replace) the swarm of the contract at `path`,
/// counting and logging it in `progress`.
async fn load_one(
    chassis: &Chassis,
    path: &Path,
    same: bool,
    progress: Option<&Progress>,
) -> Result<crate::SwarmInfo, crate::Error> {
    let started = std::time::Instant::now();
    let result = if same {
        chassis.replace(path).await.map(|r| r.info)
    } else {
        chassis.load(path).await
    };
    if let Some(progress) = progress {
        let (done, total) = progress.one_more();
        let took = started.elapsed().as_secs_f64();
        match &result {
            Ok(info) => {
                tracing::info!(target: "chassis::serve", "loaded {} ({done} of {total}, {took:.1} s)", info.swarm_id);
            }
            Err(_) => {
                tracing::info!(target: "chassis::serve", "{}: not loaded ({done} of {total}, {took:.1} s)", path.display());
            }
        }
    }
    result
}

/// How far the first load is: contracts tried of all, and whether it is
/// whole (loaded and restored).
#[derive(Debug, Default)]
pub(super) struct Progress {
    done: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
    finished: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// A load of `total` contracts, not begun.
    pub(super) fn expecting(total: usize) -> Self {
        let progress = Self::default();
        progress
            .total
            .store(total, std::sync::atomic::Ordering::SeqCst);
        progress
    }

    fn begin(&self, total: usize) {
        use std::sync::atomic::Ordering;
        self.total.store(total, Ordering::SeqCst);
        self.done.store(0, Ordering::SeqCst);
        tracing::info!(target: "chassis::serve", "loading {total} contracts");
    }

    /// One more tried: (tried, in all).
    fn one_more(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        (done, self.total.load(Ordering::SeqCst))
    }

    /// Contracts tried, and in all.
    pub(super) fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.done.load(Ordering::SeqCst),
            self.total.load(Ordering::SeqCst),
        )
    }

    pub(super) fn finish(&self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn finished(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The contract files and what they loaded.
pub(super) struct Files {
    roots: Vec<PathBuf>,
    seen: tokio::sync::Mutex<BTreeMap<PathBuf, Seen>>,
    failed: Mutex<BTreeMap<PathBuf, String>>,
}

impl Files {
    /// The files and directories of the configuration's `contracts`.
    pub(super) fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            seen: tokio::sync::Mutex::default(),
            failed: Mutex::default(),
        }
    }

    /// The contract files whose latest version did not load, and why.
    pub(super) fn failed(&self) -> Vec<LoadFailure> {
        self.failed
            .lock()
            .expect("failures lock")
            .iter()
            .map(|(contract, error)| LoadFailure {
                contract: contract.clone(),
                error: error.clone(),
            })
            .collect()
    }

    /// Every contract file now: the files named, and each directory's
    /// `*.toml` files in name order. A directory that cannot be listed is a
    /// failure of its own.
    fn contract_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for root in &self.roots {
            if !root.is_dir() {
                files.push(root.clone());
                continue;
            }
            match list_toml(root) {
                Ok(found) => {
                    self.forget_failure(root);
                    files.extend(found);
                }
                Err(e) => self.fail(root, format!("cannot list the directory: {e}")),
            }
        }
        files
    }

    fn fail(&self, path: &Path, error: String) {
        self.failed
            .lock()
            .expect("failures lock")
            .insert(path.to_path_buf(), error);
    }

    fn forget_failure(&self, path: &Path) {
        self.failed.lock().expect("failures lock").remove(path);
    }

    /// Bring the loaded swarms in step with the files (see the module doc).
    pub(super) async fn reconcile(&self, chassis: &Chassis) -> Changes {
        self.reconcile_with(chassis, None).await
    }

    /// The same, counting each load in `progress` (the first load).
    /// Loads run several at a time, up to the cores: the first file of each
    /// swarm id at once, then any other file naming an id already tried,
    /// one by one in name order (so which of two files claiming an id wins
    /// does not depend on timing).
    pub(super) async fn reconcile_with(
        &self,
        chassis: &Chassis,
        progress: Option<&Arc<Progress>>,
    ) -> Changes {
        let mut seen = self.seen.lock().await;
        let mut changes = Changes::default();
        let files = self.contract_files();
        let gone: Vec<PathBuf> = seen
            .keys()
            .filter(|p| !files.contains(p))
            .cloned()
            .collect();
        for path in gone {
            self.forget_failure(&path);
            let Some(id) = seen.remove(&path).and_then(|s| s.swarm_id) else {
                continue;
            };
            if chassis.unload(&id).is_ok() {
                tracing::info!(target: "chassis::serve", "{}: removed; unloaded {id} (running tasks finish)", path.display());
                changes.unloaded.push(id);
            }
        }
        // What to load: each changed file, with what it serves now.
        let mut work = Vec::new();
        for path in files {
            let contract = ServiceContract::from_file(&path).ok();
            let stamp = Stamp::of(&path, contract.as_ref());
            let before = seen.get(&path);
            if before.is_some_and(|s| s.stamp == stamp && !s.retry) {
                continue;
            }
            let serving = before.and_then(|s| s.swarm_id.clone());
            // The same swarm: a new version in its place. Another id (or
            // none yet): a load, refused if that id is taken.
            let same =
                serving.is_some() && serving == contract.as_ref().map(|c| c.swarm_id.clone());
            let id = contract.map(|c| c.swarm_id);
            work.push((path, stamp, serving, same, id));
        }
        let total = work.len();
        if let Some(progress) = progress {
            progress.begin(total);
        }
        // The first file of each id, at once, a few at a time.
        let mut claimed = BTreeSet::new();
        let (first, rest): (Vec<_>, Vec<_>) = work
            .into_iter()
            .partition(|(_, _, _, _, id)| id.as_ref().is_none_or(|id| claimed.insert(id.clone())));
        let width = std::thread::available_parallelism().map_or(2, |n| n.get());
        let permits = Arc::new(tokio::sync::Semaphore::new(width));
        let mut running = Vec::with_capacity(first.len());
        for (path, stamp, serving, same, _) in first {
            let (chassis, permits, p) = (chassis.clone(), permits.clone(), path.clone());
            let progress = progress.cloned();
            let handle = tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                load_one(&chassis, &p, same, progress.as_deref()).await
            });
            running.push((path, stamp, serving, same, handle));
        }
        let mut results = Vec::with_capacity(total);
        for (path, stamp, serving, same, handle) in running {
            let result = handle
                .await
                .unwrap_or_else(|e| Err(crate::Error::Engine(format!("the load stopped: {e}"))));
            results.push((path, stamp, serving, same, result));
        }
        // Then the files naming an id already tried, one by one.
        for (path, stamp, serving, same, _) in rest {
            let result = load_one(chassis, &path, same, progress.map(|p| &**p)).await;
            results.push((path, stamp, serving, same, result));
        }
        for (path, stamp, serving, same, result) in results {
            let mut retry = false;
            let now = match result {
                Ok(info) => {
                    self.forget_failure(&path);
                    // The host logs the load or the replacement itself.
                    if same {
                        changes.replaced.push(info.swarm_id.clone());
                    } else {
                        if let Some(old) = &serving
                            && chassis.unload(old).is_ok()
                        {
                            changes.unloaded.push(old.clone());
                        }
                        changes.loaded.push(info.swarm_id.clone());
                    }
                    Some(info.swarm_id)
                }
                Err(e) => {
                    match &serving {
                        Some(id) => {
                            tracing::error!(target: "chassis::serve", "{}: the new version is refused; {id} keeps serving the one before: {e}", path.display())
                        }
                        None => {
                            tracing::error!(target: "chassis::serve", "{}: not loaded: {e}", path.display())
                        }
                    }
                    retry = matches!(e.kind(), ErrorKind::Registry | ErrorKind::Audit)
                        || matches!(e, crate::Error::Load(crate::LoadError::PoolTooSmall { .. }));
                    self.fail(&path, e.to_string());
                    serving
                }
            };
            seen.insert(
                path,
                Seen {
                    swarm_id: now,
                    stamp,
                    retry,
                },
            );
        }
        changes
    }

    /// The contract file `swarm_id` is served from, if one of these.
    pub(super) async fn file_of(&self, swarm_id: &str) -> Option<PathBuf> {
        self.seen
            .lock()
            .await
            .iter()
            .find(|(_, seen)| seen.swarm_id.as_deref() == Some(swarm_id))
            .map(|(path, _)| path.clone())
    }

    /// The directories to watch: each directory of contracts and its
    /// parent, the directory of each contract file named, and the
    /// directory of each component a contract names.
    pub(super) async fn directories(&self) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        for root in &self.roots {
            if root.is_dir() {
                dirs.insert(root.clone());
            }
            // The parent too: a root deleted and made again raises an
            // event there, and its new directory is watched again.
            if let Some(parent) = root.parent() {
                dirs.insert(parent_or_dot(parent));
            }
        }
        for path in self.seen.lock().await.keys() {
            let module = ServiceContract::from_file(path)
                .ok()
                .and_then(|c| crate::registry::module_path(&c, path).ok());
            if let Some(parent) = module.as_deref().and_then(Path::parent) {
                dirs.insert(parent_or_dot(parent));
            }
        }
        dirs.retain(|d| d.is_dir());
        dirs
    }
}

fn parent_or_dot(parent: &Path) -> PathBuf {
    if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_path_buf()
    }
}

/// A directory's `*.toml` files, in name order.
pub(super) fn list_toml(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.path();
        if file.extension().is_some_and(|e| e == "toml") && file.is_file() {
            found.push(file);
        }
    }
    found.sort();
    Ok(found)
}

/// Watch the service's contract and component directories and reconcile
/// after each settled burst of changes, until the returned task is aborted.
pub(super) async fn watch(
    service: Arc<Service>,
) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Reads (ours included) change nothing.
            Ok(event)
                if matches!(
                    event.kind,
                    EventKind::Access(
                        notify::event::AccessKind::Open(_)
                            | notify::event::AccessKind::Read
                            | notify::event::AccessKind::Close(
                                notify::event::AccessMode::Read
                                    | notify::event::AccessMode::Execute
                            )
                    )
                ) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!(target: "chassis::serve", "watching the contract files: {e}"),
        }
    })?;
    let mut watching = BTreeSet::new();
    for dir in service.contracts.files.directories().await {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        watching.insert(dir);
    }
    tracing::info!(target: "chassis::serve", "watching {} directories for contract and component changes", watching.len());
    Ok(tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Settle: wait for a quiet spell, but no longer than
            // MAX_SETTLE in all, so steady writes nearby cannot hold a
            // reload off for ever.
            let deadline = tokio::time::Instant::now() + MAX_SETTLE;
            loop {
                let quiet = (tokio::time::Instant::now() + SETTLE).min(deadline);
                match tokio::time::timeout_at(quiet, rx.recv()).await {
                    Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                    Ok(Some(())) | Err(_) => break,
                    Ok(None) => return,
                }
            }
            service.reload().await;
            // Directories deleted since drop their watch (inotify forgot
            // it); the ones there now are watched, again if need be.
            let wanted = service.contracts.files.directories().await;
            watching.retain(|dir| {
                let there = dir.is_dir();
                if !there {
                    let _ = watcher.unwatch(dir);
                }
                there
            });
            for dir in wanted {
                if !watching.contains(&dir) {
                    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            watching.insert(dir);
                        }
                        Err(e) => {
                            tracing::warn!(target: "chassis::serve", "cannot watch {}: {e}", dir.display())
                        }
                    }
                }
            }
        }
    }))
}
