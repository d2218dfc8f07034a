//! `chassis serve`: the long-running host. It loads every contract it is
//! given once, keeps the swarms loaded, and runs their tasks over HTTP
//! (axum), with live metrics, health and readiness.
//!
//! Data flow: [`Service::new`] reads the contracts (files, or directories
//! of `*.toml`), sizes one [`Chassis`] for all of them, opens the audit log
//! and, with `--nats`, the queue. [`Service::load`] loads each contract,
//! several at a time — one that fails is recorded, audited by the host, and
//! listed by `/readyz`, and the others still serve — and carries SLO and
//! reputation state over from the audit log (read once); until it is done,
//! tasks are refused as `loading`. [`Service::start`] is the two in turn.
//! [`Service::serve`] answers HTTP requests (`listen.rs` accepts, `http.rs`
//! routes; status codes in `docs/serve.md`; the status page at `/` is
//! `status/`), may run while [`Service::load`] does, and watches the
//! contract files, reloading a swarm whose files change (`reload.rs`),
//! until its shutdown signal; it lets in-flight requests finish within the
//! grace period, and closes the audit log.

pub mod config;
mod http;
mod listen;
#[cfg(feature = "nats")]
pub mod queue;
mod reload;
mod status;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::audit::AuditLog;
use crate::{Chassis, ChassisConfig, Replacement, SecretStore, ServiceContract};

pub use config::{AuditConfig, ConfigError, QueueSettings, ServeConfig};

/// A contract that did not load at startup, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadFailure {
    /// The contract file.
    pub contract: PathBuf,
    /// Why it did not load.
    pub error: String,
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host refused its set-up.
    #[error(transparent)]
    Host(#[from] crate::Error),
    /// A file or directory it was pointed at.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The audit log.
    #[error("audit log {path}: {reason}")]
    Audit {
        /// The log file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The secrets file.
    #[error("secrets file {path}: {reason}")]
    Secrets {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The NATS task queue.
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    /// The object store's directory.
    #[error(transparent)]
    Storage(#[from] crate::storage::files::OpenError),
    /// The shared object store (`nats.shared_storage`) could not be opened.
    #[error("the shared object store: {0}")]
    SharedStorage(crate::storage::StoreError),
    /// The contract files could not be watched.
    #[error("watching the contract files: {0}")]
    Watch(String),
}

/// The running service: the host, its audit log and what did not load.
pub struct Service {
    chassis: Chassis,
    audit: Option<Arc<AuditLog>>,
    /// The contract files and what each loaded.
    files: reload::Files,
    config: ServeConfig,
    /// The admin routes' bearer token; `None` turns them off.
    admin_token: Option<crate::Secret>,
    /// Fed by the host's events; rendered at `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// Each swarm's latest tasks and reputation moves, for the status page.
    recent: Arc<status::Recent>,
    /// Turns at reading the audit log's end for `/v1/audit`: one at a time.
    audit_reads: Arc<tokio::sync::Semaphore>,
    /// The address [`Service::serve`] listens on (before it does, or for an
    /// embedder's own listener: `listen` of the configuration).
    bound: std::sync::OnceLock<std::net::SocketAddr>,
    /// Set when the grace period is over and running tasks are being
    /// stopped: a queued task stopped so is handed back, not answered.
    interrupted: std::sync::atomic::AtomicBool,
    /// The task queue this server also takes tasks from.
    #[cfg(feature = "nats")]
    queue: Option<queue::Queue>,
    /// The host's quarantines and releases, for the fleet's bucket.
    #[cfg(feature = "nats")]
    fleet_changes:
        std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<queue::fleet::Change>>>,
    /// The first load's progress: until it is whole and restored, tasks
    /// are refused (503 `loading`) and `/readyz` says how far it is.
    progress: Arc<reload::Progress>,
    /// The bucket of worker heartbeats (with a queue).
    #[cfg(feature = "nats")]
    heartbeats: Option<async_nats::jetstream::kv::Store>,
    /// The live workers as last read for `/v1/fleet`, and when: read at
    /// most once a second, one reader at a time, however many ask.
    #[cfg(feature = "nats")]
    fleet_view:
        tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<queue::workers::WorkerEntry>>)>>,
}

impl Service {
    /// Load every contract of `config` into a host sized for them: the
    /// service set up ([`Service::new`]) and loaded ([`Service::load`]).
    pub async fn start(config: ServeConfig) -> Result<Self, ServeError> {
        let service = Self::new(config).await?;
        service.load().await?;
        Ok(service)
    }

    /// Set up the host for `config`'s contracts (sized for them), the audit
    /// log, the store and the queue, loading no swarm yet: it can serve
    /// (`/healthz`, and `/readyz` saying it is loading) while
    /// [`Service::load`] runs.
    pub async fn new(config: ServeConfig) -> Result<Self, ServeError> {
        // A configuration built in code, not read from a file, is checked
        // here, before any duration of it is used.
        config.check().map_err(|reason| {
            ServeError::Config(ConfigError::Invalid {
                path: "the configuration".into(),
                reason,
            })
        })?;
        let admin_token = config.admin_token().map_err(|reason| {
            ServeError::Config(ConfigError::Invalid {
                path: "admin".into(),
                reason,
            })
        })?;
        for root in &config.contracts {
            std::fs::metadata(root).map_err(|source| ServeError::Io {
                path: root.clone(),
                source,
            })?;
        }
        let files = reload::Files::new(config.contracts.clone());
        // Sized for the contracts that parse; one that does not is reported
        // by its load below, like any other refusal.
        let files_now = contract_files(&config.contracts)?;
        let parsed: Vec<ServiceContract> = files_now
            .iter()
            .filter_map(|p| ServiceContract::from_file(p).ok())
            .collect();
        // Room for these contracts, and for what the admin routes load later.
        let mut host = ChassisConfig::sized_for(&parsed);
        let room = crate::PoolConfig::default();
        host.pool = host.pool.map(|pool| crate::PoolConfig {
            instances: pool.instances.max(room.instances),
            max_memory_mb: pool.max_memory_mb.max(room.max_memory_mb),
        });
        host.queue = config.queue.to_host();
        if let Some(path) = &config.secrets {
            let secrets = SecretStore::from_file(path).map_err(|e| ServeError::Secrets {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            host = host.with_secrets(secrets);
        }
        if let Some(dir) = &config.cache_dir {
            host = host.with_cache_dir(dir);
        }
        // Local files first: a bad audit path is refused before anything
        // is made on a NATS server.
        let audit = match &config.audit.path {
            Some(path) => {
                let audit_error = |reason: String| ServeError::Audit {
                    path: path.clone(),
                    reason,
                };
                let mut options = config.audit.options().map_err(audit_error)?;
                options.worker = config.worker_id();
                // The swarms of a log written before records named their
                // settings are judged by the contracts being loaded.
                options.contracts = parsed
                    .iter()
                    .map(|c| (c.swarm_id.clone(), c.health_settings()))
                    .collect();
                let log =
                    AuditLog::open_with(path, options).map_err(|e| audit_error(e.to_string()))?;
                Some(log)
            }
            None => None,
        };
        #[cfg(feature = "nats")]
        let queue = match &config.nats {
            Some(nats) => Some(
                queue::Queue::connect_as(
                    &nats.url,
                    &nats.auth,
                    &queue::Streams {
                        replicas: nats.replicas,
                        duplicate_window: std::time::Duration::from_secs_f64(
                            nats.duplicate_window_seconds,
                        ),
                        results_max_age: std::time::Duration::from_secs_f64(
                            nats.results_max_age_seconds,
                        ),
                    },
                )
                .await?
                .signing_with(worker_key(nats)?),
            ),
            None => None,
        };
        #[cfg(feature = "nats")]
        let heartbeats = match (&queue, &config.nats) {
            (Some(queue), Some(nats)) => Some(
                queue::workers::bucket(
                    &queue.jetstream,
                    &queue::Streams {
                        replicas: nats.replicas,
                        ..Default::default()
                    },
                    std::time::Duration::from_secs_f64(nats.heartbeat_seconds),
                )
                .await?,
            ),
            _ => None,
        };
        #[cfg(not(feature = "nats"))]
        if config.nats.is_some() {
            return Err(ServeError::Config(ConfigError::Invalid {
                path: "nats".into(),
                reason: "this build of chassis has no NATS support (the `nats` feature)".into(),
            }));
        }
        // Only a swarm granted storage needs a store: without one, the
        // others serve, and such a swarm is refused at load (`/readyz`
        // lists it) with the reason in the log.
        let needs_store = parsed
            .iter()
            .any(|c| c.storage.access != crate::contract::StorageAccess::None);
        // With a queue, objects are kept where every worker sees them.
        #[cfg(feature = "nats")]
        if let (Some(queue), Some(nats)) = (&queue, &config.nats)
            && nats.shared_storage
        {
            match crate::storage::nats::NatsStore::open(&queue.jetstream, nats.replicas).await {
                Ok(store) => {
                    tracing::info!(target: "chassis::serve", "swarms' objects are kept in the NATS bucket {} (nats.shared_storage){}", crate::storage::nats::BUCKET, if config.storage_dir.is_some() { "; storage_dir is not used" } else { "" });
                    host = host.with_store(Arc::new(store));
                }
                Err(e) if !needs_store => {
                    tracing::warn!(target: "chassis::serve", "the shared object store: {e}; serving without an object store");
                }
                Err(e) => return Err(ServeError::SharedStorage(e)),
            }
        }
        if let Some(dir) = config
            .storage_dir
            .as_ref()
            .filter(|_| !config.shares_store())
        {
            match crate::storage::files::FileStore::open(dir) {
                Ok(store) => host = host.with_store(Arc::new(store)),
                Err(e) if !needs_store => {
                    tracing::warn!(target: "chassis::serve", "{e}; serving without an object store");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let metrics = Arc::new(crate::metrics::Metrics::new());
        host = host.with_event_sink(metrics.clone());
        let recent = Arc::new(status::Recent::default());
        host = host.with_event_sink(recent.clone());
        #[cfg(feature = "nats")]
        let fleet_changes = if config.nats.is_some() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            host = host.with_event_sink(queue::fleet::sink(tx));
            Some(rx)
        } else {
            None
        };
        // The audit log is the last sink: the host hands the last one each
        // event to keep, so the log's queue takes it without a copy.
        if let Some(log) = &audit {
            host = host.with_event_sink(log.clone());
        }
        let chassis = Chassis::with_config(host)?;
        let service = Self {
            chassis,
            audit,
            files,
            config,
            admin_token,
            metrics,
            recent,
            audit_reads: Arc::new(tokio::sync::Semaphore::new(1)),
            bound: std::sync::OnceLock::new(),
            interrupted: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "nats")]
            queue,
            #[cfg(feature = "nats")]
            fleet_changes: std::sync::Mutex::new(fleet_changes),
            // How many there are is known before the load starts: a
            // `/readyz` asked at once says "loading 0 of N".
            progress: Arc::new(reload::Progress::expecting(files_now.len())),
            #[cfg(feature = "nats")]
            heartbeats,
            #[cfg(feature = "nats")]
            fleet_view: tokio::sync::Mutex::new(None),
        };
        Ok(service)
    }

    /// The first load: every contract, several at a time (up to the
    /// cores), each one's progress logged; then the swarms' history is
    /// restored from the audit log, and tasks are taken.
    pub async fn load(&self) -> Result<(), ServeError> {
        let changes = self
            .files
            .reconcile_with(&self.chassis, Some(&self.progress))
            .await;
        self.restore(&changes.loaded).await?;
        self.progress.finish();
        // The fleet learns what this worker serves now, not a heartbeat
        // later: a submitter that saw it ready finds its swarms.
        #[cfg(feature = "nats")]
        self.beat().await;
        Ok(())
    }

    /// The fleet's live workers (with a queue; `None` without one), read
    /// from the heartbeats at most once a second.
    #[cfg(feature = "nats")]
    pub async fn live_workers(
        &self,
    ) -> Option<Result<Arc<Vec<queue::workers::WorkerEntry>>, queue::QueueError>> {
        let queue = self.queue.as_ref()?;
        let mut view = self.fleet_view.lock().await;
        if let Some((at, workers)) = view.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return Some(Ok(workers.clone()));
        }
        let now = queue::workers::now_ms();
        Some(queue.workers().await.map(|all| {
            let live: Arc<Vec<_>> = Arc::new(all.into_iter().filter(|w| w.live_at(now)).collect());
            *view = Some((std::time::Instant::now(), live.clone()));
            live
        }))
    }

    /// Write this worker's heartbeat now (with a queue).
    #[cfg(feature = "nats")]
    async fn beat(&self) {
        let (Some(store), Some(nats), Some(id)) =
            (&self.heartbeats, &self.config.nats, self.config.worker_id())
        else {
            return;
        };
        let signer = self
            .queue
            .as_ref()
            .and_then(|q| q.signer.as_ref())
            .map(|k| k.public_hex());
        let interval = std::time::Duration::from_secs_f64(nats.heartbeat_seconds);
        if let Err(e) = queue::workers::beat(store, &self.chassis, &id, signer, interval).await {
            tracing::warn!(target: "chassis::queue", "writing this worker's heartbeat: {e}");
        }
    }

    /// Whether the first load is still under way (tasks are refused).
    pub fn loading(&self) -> bool {
        !self.progress.finished()
    }

    /// The first load's progress: contracts tried and in all.
    pub fn load_progress(&self) -> (usize, usize) {
        self.progress.counts()
    }

    /// Carry SLO figures, reputation and quarantine over from the audit
    /// log to swarms just loaded: the log's writer holds every swarm's
    /// state as a replay of the log gives it (restored from its newest
    /// checkpoint when it was opened, and kept since), so nothing is read.
    async fn restore(&self, loaded: &[String]) -> Result<(), ServeError> {
        let Some(log) = &self.audit else {
            return Ok(());
        };
        for id in loaded {
            let (writer, swarm) = (log.clone(), id.clone());
            let history = tokio::task::spawn_blocking(move || writer.history(&swarm))
                .await
                .map_err(|e| ServeError::Audit {
                    path: log.path().to_path_buf(),
                    reason: e.to_string(),
                })?;
            if let Some(history) = history {
                self.chassis.restore_history(history)?;
            }
        }
        Ok(())
    }

    /// Bring the loaded swarms in step with the contract files now (what
    /// the watcher does after a change).
    pub async fn reload(&self) {
        let changes = self.files.reconcile(&self.chassis).await;
        if !(changes.loaded.is_empty()
            && changes.replaced.is_empty()
            && changes.unloaded.is_empty())
        {
            tracing::info!(target: "chassis::serve", "reload: loaded {:?}, replaced {:?}, unloaded {:?}", changes.loaded, changes.replaced, changes.unloaded);
        }
        if let Err(e) = self.restore(&changes.loaded).await {
            tracing::error!(target: "chassis::serve", "restoring the history of {:?}: {e}", changes.loaded);
        }
        #[cfg(feature = "nats")]
        if !(changes.loaded.is_empty()
            && changes.replaced.is_empty()
            && changes.unloaded.is_empty())
        {
            self.beat().await;
        }
    }

    /// Load (or replace) a swarm from a contract file outside the watched
    /// ones: what the admin route does.
    /// A swarm served from a watched contract file is refused
    /// ([`crate::Error::Watched`]): the file decides its version, and a
    /// load from elsewhere would be undone at its next change.
    pub async fn load_or_replace(&self, contract: &Path) -> Result<Replacement, crate::Error> {
        let swarm_id = ServiceContract::from_file(contract)?.swarm_id;
        if let Some(file) = self.files.file_of(&swarm_id).await
            && self.config.watch
        {
            return Err(crate::Error::Watched { swarm_id, file });
        }
        let loaded = self.chassis.replace(contract).await?;
        if loaded.previous.is_none()
            && let Err(e) = self
                .restore(std::slice::from_ref(&loaded.info.swarm_id))
                .await
        {
            tracing::error!(target: "chassis::serve", "restoring the history of {}: {e}", loaded.info.swarm_id);
        }
        Ok(loaded)
    }

    /// Record an event the service itself decides (a queued task given
    /// up) in the audit log and the metrics, as the host records its own.
    #[cfg(feature = "nats")]
    pub(crate) fn record(&self, event: &crate::Event) {
        use crate::EventSink;
        if let Some(log) = &self.audit {
            log.record(event);
        }
        self.metrics.record(event);
    }

    /// Whether running tasks are being stopped at the end of the grace
    /// period.
    #[cfg(feature = "nats")]
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The host.
    pub fn chassis(&self) -> &Chassis {
        &self.chassis
    }

    /// The contract files whose latest version did not load, and why.
    pub fn failed(&self) -> Vec<LoadFailure> {
        self.files.failed()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// The HTTP routes, for embedding in another axum application.
    ///
    /// Requests are answered only for the host names `allowed_hosts`
    /// admits, judged by the configuration's `listen` address (loopback or
    /// not) unless [`Service::serve`] runs on a listener of its own.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        http::router(self.clone())
    }

    /// Whether the server listens on a loopback address: the one
    /// [`Service::serve`] was given, or the configuration's.
    pub(crate) fn on_loopback(&self) -> bool {
        self.bound
            .get()
            .copied()
            .unwrap_or(self.config.listen)
            .ip()
            .is_loopback()
    }

    /// Answer HTTP on `listener` until `shutdown` resolves; then stop
    /// accepting, let in-flight requests finish within the grace period,
    /// and close the audit log (a final fsync).
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if let Ok(address) = listener.local_addr() {
            let _ = self.bound.set(address);
        }
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
        let (stop_worker, worker_stop) = tokio::sync::watch::channel(false);
        let watcher = if self.config.watch && !self.config.contracts.is_empty() {
            Some(
                reload::watch(self.clone())
                    .await
                    .map_err(|e| ServeError::Watch(e.to_string()))?,
            )
        } else {
            None
        };
        #[cfg(feature = "nats")]
        let worker = self.start_worker(worker_stop);
        #[cfg(not(feature = "nats"))]
        drop(worker_stop);
        let limits = listen::Limits {
            header_read_timeout: self.config.request_read_timeout(),
            max_connections: self.config.max_connections,
            max_connections_per_address: self.config.max_connections_per_address,
            response_write_timeout: self.config.response_write_timeout(),
            response_idle_timeout: self.config.response_idle_timeout(),
            send_buffer_bytes: self.config.send_buffer_bytes,
        };
        let server = listen::serve(listener, self.router(), limits, async move {
            shutdown.await;
            tracing::info!(target: "chassis::serve", "shutting down: no new connections or queued tasks; in-flight tasks may finish");
            let _ = stop_worker.send(true);
            let _ = stopping_tx.send(());
        });
        // Done when HTTP has drained and the worker has finished what it
        // took.
        #[cfg(feature = "nats")]
        let (worker, worker_run) = match worker {
            Some((worker, run)) => (Some(worker), Some(run)),
            None => (None, None),
        };
        let drained = async {
            server.await;
            #[cfg(feature = "nats")]
            if let (Some(worker), Some(run)) = (&worker, worker_run) {
                // The pull loops stop first; then what they took ends.
                let _ = run.await;
                worker.drain().await;
            }
        };
        let grace = self.config.shutdown_grace();
        let result = tokio::select! {
            () = drained => Ok(()),
            () = async move {
                if stopping.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(target: "chassis::serve", "the grace period of {:.1} s is over; stopping what still runs as timeouts", grace.as_secs_f64());
                // Each running task ends at its next epoch tick and writes
                // its terminal record; then the responses go out (and
                // queued tasks are handed back).
                self.interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                self.chassis.interrupt_all();
                tokio::time::sleep(crate::caps::EPOCH_TICK * 5 + crate::caps::HOST_SLACK).await;
                #[cfg(feature = "nats")]
                if let Some(worker) = &worker {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), worker.drain()).await;
                }
                Ok(())
            }
        };
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(log) = &self.audit {
            log.close().map_err(|e| ServeError::Audit {
                path: log.path().to_path_buf(),
                reason: e.to_string(),
            })?;
            #[cfg(feature = "nats")]
            self.mirror_the_rest(log.path()).await;
        }
        result
    }
}

#[cfg(feature = "nats")]
impl Service {
    /// Set each loaded swarm's queue figures in the metrics, read from NATS
    /// now (at most a second for all).
    pub(crate) async fn queue_figures(&self) {
        let Some(queue) = &self.queue else {
            return;
        };
        let read = async {
            self.metrics.clear_queue_figures();
            for info in self.chassis.list() {
                if let Ok(Some((pending, in_flight))) = queue.figures(&info.swarm_id).await {
                    self.metrics
                        .queue_figures(&info.swarm_id, pending, in_flight);
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
    }

    /// A task taken from the queue had been delivered before.
    pub(crate) fn redelivered(&self, swarm_id: &str) {
        self.metrics.redelivered(swarm_id);
    }

    /// Send the audit log's last records to the mirror once it is closed
    /// (at most a few seconds).
    async fn mirror_the_rest(&self, path: &Path) {
        let (Some(queue), Some(id)) = (self.queue.clone(), self.config.worker_id()) else {
            return;
        };
        let last = async {
            let mut mirror = queue::mirror::Mirror::start(queue, path.to_path_buf(), id).await?;
            mirror.pass().await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), last).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "chassis::queue", "mirroring the audit log's last records: {e}")
            }
            Err(_) => {
                tracing::warn!(target: "chassis::queue", "mirroring the audit log's last records: no answer from NATS within 5 s")
            }
        }
    }

    /// Start taking tasks from the queue, if there is one, until `stop`.
    fn start_worker(
        self: &Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<(Arc<queue::worker::Worker>, tokio::task::JoinHandle<()>)> {
        let queue = self.queue.clone()?;
        let nats = self.config.nats.as_ref()?;
        if let Some(log) = &self.audit {
            let (queue, path, id) = (
                queue.clone(),
                log.path().to_path_buf(),
                self.config.worker_id()?,
            );
            tokio::spawn(async move {
                loop {
                    match queue::mirror::Mirror::start(queue.clone(), path.clone(), id.clone())
                        .await
                    {
                        Ok(mirror) => return mirror.run().await,
                        Err(e) => {
                            tracing::warn!(target: "chassis::queue", "starting the audit mirror: {e}; trying again in 5 s");
                            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        }
                    }
                }
            });
        }
        let id = self.config.worker_id()?;
        if let Some(changes) = self.fleet_changes.lock().expect("fleet lock").take() {
            queue::fleet::spawn(
                queue.health.clone(),
                self.chassis.clone(),
                id.clone(),
                changes,
            );
        }
        let heartbeat = {
            let (chassis, id) = (self.chassis.clone(), id.clone());
            let interval = std::time::Duration::from_secs_f64(nats.heartbeat_seconds);
            let signer = queue.signer.as_ref().map(|k| k.public_hex());
            let store = self.heartbeats.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Some(store) = store {
                    queue::workers::heartbeat(store, chassis, id, signer, interval, stop).await;
                }
            })
        };
        let worker = Arc::new(queue::worker::Worker::new(
            queue,
            self.clone(),
            id,
            i64::from(nats.max_deliveries),
            std::time::Duration::from_secs_f64(nats.ack_slack_seconds),
        ));
        let run = {
            let worker = worker.clone();
            tokio::spawn(async move {
                worker.run(stop).await;
                // Its entry removed before the process ends.
                let _ = heartbeat.await;
            })
        };
        Some((worker, run))
    }
}

/// The worker's signing key, read from `nats.signing_key`; without one its
/// results go out unsigned, which a warning says.
#[cfg(feature = "nats")]
fn worker_key(
    nats: &config::NatsSettings,
) -> Result<Option<Arc<queue::trust::WorkerKey>>, ServeError> {
    match &nats.signing_key {
        Some(path) => {
            let key = queue::trust::WorkerKey::from_file(path)
                .map_err(|e| queue::QueueError::Auth(format!("nats.signing_key: {e}")))?;
            tracing::info!(target: "chassis::queue", "results and audit records are signed with key {}", key.public_hex());
            Ok(Some(Arc::new(key)))
        }
        None => {
            tracing::warn!(target: "chassis::queue", "no nats.signing_key: this worker's results go out unsigned, and clients that verify (chassis submit --worker-key) refuse them; make one with `chassis keygen`");
            Ok(None)
        }
    }
}

/// Every contract file: the files named, and each directory's `*.toml`
/// files in name order.
fn contract_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ServeError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(reload::list_toml(path).map_err(|source| ServeError::Io {
                path: path.clone(),
                source,
            })?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contract for `id` (the hello-world guest) whose swarm is
    /// quarantined by two failures in a window of two.
    fn contract(dir: &Path, id: &str) -> PathBuf {
        let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/swarms/hello_world.wasm");
        // Built by `cargo xtask build`, which `cargo xtask test` runs first.
        assert!(
            wasm.exists(),
            "{} is missing: run `cargo xtask build`",
            wasm.display()
        );
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "swarm_id = {id:?}\nwasm_module = {wasm:?}\n\
                 [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
                 [reputation]\nfailure_window = 2\nmax_failure_rate_percent = 10\n"
            ),
        )
        .unwrap();
        path
    }

    /// Swarms restored at start and loaded later are all restored from
    /// the state the log's writer keeps: once the service has started,
    /// the log is not read again (here it is gone: the writer goes on
    /// writing to the segment it has open).
    #[tokio::test]
    async fn every_swarm_is_restored_without_reading_the_log_again() {
        let dir = std::env::temp_dir().join(format!("chassis-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let contracts = dir.join("contracts");
        std::fs::create_dir_all(&contracts).unwrap();
        let log = dir.join("audit.jsonl");
        // A past run: two traps for each of a, b and later.
        {
            use crate::EventSink;
            let audit = AuditLog::open(&log, crate::audit::FsyncPolicy::Always).unwrap();
            for swarm in ["a", "b", "later"] {
                for task in ["t1", "t2"] {
                    audit.record(&crate::Event::TaskFailed {
                        swarm_id: swarm.into(),
                        task_id: task.into(),
                        kind: "trap".into(),
                        error: "trap".into(),
                        guest_error: None,
                        wall_ms: 1.0,
                    });
                }
            }
            audit.close().unwrap();
        }
        for id in ["a", "b", "fresh"] {
            contract(&contracts, id);
        }
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let later = contract(&elsewhere, "later");
        let mut config = ServeConfig {
            contracts: vec![contracts],
            watch: false,
            status_page: false,
            ..Default::default()
        };
        config.audit.path = Some(log.clone());
        config.audit.fsync = "always".into();
        let service = Service::start(config).await.unwrap();
        assert!(service.failed().is_empty(), "{:?}", service.failed());
        let quarantined = |id: &str| {
            service
                .chassis()
                .slo_report(id)
                .unwrap()
                .reputation
                .quarantined
        };
        assert!(quarantined("a") && quarantined("b"));
        assert!(!quarantined("fresh"));
        // Loaded after start: restored from the writer's state.
        std::fs::remove_dir_all(&log).unwrap();
        service.load_or_replace(&later).await.unwrap();
        assert!(quarantined("later"), "later was not restored from the log");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
