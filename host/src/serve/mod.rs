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
//! tasks are refused as `loading`; with `nats.deployments`, the swarms
//! deployed to the fleet are loaded then too (`queue/deploy/`).
//! [`Service::start`] is the two in turn.
//! [`Service::serve`] answers HTTP requests (`listen.rs` accepts, `http.rs`
//! routes; status codes in `docs/serve.md`; the status page at `/` is
//! `status/`), may run while [`Service::load`] does, and watches the
//! contract files, reloading a swarm whose files change (`reload.rs`),
//! until its shutdown signal; it lets in-flight requests finish within the
//! grace period, and closes the audit log.

mod api;
mod audit;
pub mod config;
mod fleet;
mod http;
mod listen;
#[cfg(feature = "nats")]
pub mod queue;
mod reload;
mod status;
mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::{Chassis, ChassisConfig, Replacement, SecretStore, ServiceContract};

pub use config::{AuditConfig, ConfigError, ServeConfig};

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

/// The running service: the host, composed with its parts — the contract
/// files and their watcher (`reload.rs`), the audit log (`audit.rs`), the
/// object store (`store.rs`), the metrics and status page's observers
/// (`status/`) and the fleet (`fleet.rs`) — each opened from its own
/// section of the configuration, adding what it needs to the host, and
/// started and stopped with the server.
pub struct Service {
    chassis: Chassis,
    config: ServeConfig,
    /// The admin routes' bearer token; `None` turns them off.
    admin_token: Option<crate::Secret>,
    /// The contract files, what each loaded and the first load's progress.
    contracts: reload::Contracts,
    /// The audit log, if there is one.
    audit: audit::Audit,
    /// The metrics and the status page's recent window, fed by the host.
    observers: status::Observers,
    /// The NATS task queue and fleet (nothing without one).
    fleet: fleet::Fleet,
    /// The address [`Service::serve`] listens on (before it does, or for an
    /// embedder's own listener: `listen` of the configuration).
    bound: std::sync::OnceLock<std::net::SocketAddr>,
    /// Set when the grace period is over and running tasks are being
    /// stopped: a queued task stopped so is handed back, not answered.
    interrupted: std::sync::atomic::AtomicBool,
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
        let contracts = reload::Contracts::open(&config.contracts)?;
        // Sized for the contracts that parse; one that does not is reported
        // by its load, like any other refusal.
        let parsed = contracts.parse_all();
        // Local files first (the secrets, the audit log): a bad path is
        // refused before anything is made on a NATS server.
        let mut host = host_config(&config, &parsed)?;
        let audit = audit::Audit::open(&config, &parsed)?;
        let fleet = fleet::Fleet::connect(&config).await?;
        widen(&mut host, &fleet.deployed_contracts().await);
        let store = store::Store::open(&config, &fleet, &parsed).await?;
        let observers = status::Observers::default();
        host = store.configure(host);
        host = observers.configure(host);
        host = fleet.configure(host);
        host = audit.configure(host);
        let chassis = Chassis::with_config(host)?;
        Ok(Self {
            chassis,
            config,
            admin_token,
            contracts,
            audit,
            observers,
            fleet,
            bound: std::sync::OnceLock::new(),
            interrupted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The first load: every contract, several at a time (up to the
    /// cores), each one's progress logged; then the swarms' history is
    /// restored from the audit log, and tasks are taken.
    pub async fn load(&self) -> Result<(), ServeError> {
        let changes = self.contracts.first_load(&self.chassis).await;
        self.fleet.first_deployments(self).await;
        self.audit.restore(&self.chassis, &changes.loaded).await?;
        self.contracts.progress.finish();
        // The fleet learns what this worker serves now, not a heartbeat
        // later: a submitter that saw it ready finds its swarms.
        self.fleet.beat(&self.chassis, &self.config).await;
        Ok(())
    }

    /// Whether the first load is still under way (tasks are refused).
    pub fn loading(&self) -> bool {
        !self.contracts.progress.finished()
    }

    /// The first load's progress: contracts tried and in all.
    pub fn load_progress(&self) -> (usize, usize) {
        self.contracts.progress.counts()
    }

    /// Bring the loaded swarms in step with the contract files now (what
    /// the watcher does after a change).
    pub async fn reload(&self) {
        let changes = self.contracts.files.reconcile(&self.chassis).await;
        if changes.is_empty() {
            return;
        }
        tracing::info!(target: "chassis::serve", "reload: loaded {:?}, replaced {:?}, unloaded {:?}", changes.loaded, changes.replaced, changes.unloaded);
        if let Err(e) = self.audit.restore(&self.chassis, &changes.loaded).await {
            tracing::error!(target: "chassis::serve", "restoring the history of {:?}: {e}", changes.loaded);
        }
        self.fleet.beat(&self.chassis, &self.config).await;
    }

    /// After a deployment loaded, replaced or unloaded a swarm: the
    /// history of those `loaded` anew is restored from the audit log, and
    /// the fleet learns what this worker serves now.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) async fn after_deployment(&self, loaded: &[String]) {
        if let Err(e) = self.audit.restore(&self.chassis, loaded).await {
            tracing::error!(target: "chassis::serve", "restoring the history of {loaded:?}: {e}");
        }
        self.fleet.beat(&self.chassis, &self.config).await;
    }

    /// Load (or replace) a swarm from a contract file outside the watched
    /// ones: what the admin route does.
    /// A swarm served from a watched contract file is refused
    /// ([`LoadError::Watched`](crate::LoadError::Watched)): the file decides its version, and a
    /// load from elsewhere would be undone at its next change; so is one
    /// served from a deployment to the fleet
    /// ([`LoadError::Deployed`](crate::LoadError::Deployed)).
    pub async fn load_or_replace(&self, contract: &Path) -> Result<Replacement, crate::Error> {
        let swarm_id = ServiceContract::from_file(contract)?.swarm_id;
        if let Some(bundle) = self.fleet.deployed_bundle(&swarm_id) {
            return Err(crate::Error::Load(crate::LoadError::Deployed {
                swarm_id,
                bundle,
            }));
        }
        if let Some(file) = self.contracts.files.file_of(&swarm_id).await
            && self.config.watch
        {
            return Err(crate::Error::Load(crate::LoadError::Watched {
                swarm_id,
                file,
            }));
        }
        let loaded = self.chassis.replace(contract).await?;
        if loaded.previous.is_none()
            && let Err(e) = self
                .audit
                .restore(&self.chassis, std::slice::from_ref(&loaded.info.swarm_id))
                .await
        {
            tracing::error!(target: "chassis::serve", "restoring the history of {}: {e}", loaded.info.swarm_id);
        }
        Ok(loaded)
    }

    /// The host.
    pub fn chassis(&self) -> &Chassis {
        &self.chassis
    }

    /// The contract files whose latest version did not load, and why.
    pub fn failed(&self) -> Vec<LoadFailure> {
        self.contracts.files.failed()
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
        let fleet = self.fleet.start(&self, worker_stop);
        let limits = listen::Limits {
            header_read_timeout: self.config.request_read_timeout,
            max_connections: self.config.max_connections,
            max_connections_per_address: self.config.max_connections_per_address,
            response_write_timeout: self.config.response_write_timeout,
            response_idle_timeout: self.config.response_idle_timeout,
            send_buffer_bytes: self.config.send_buffer_bytes,
        };
        let server = listen::serve(listener, self.router(), limits, async move {
            shutdown.await;
            tracing::info!(target: "chassis::serve", "shutting down: no new connections or queued tasks; in-flight tasks may finish");
            let _ = stop_worker.send(true);
            let _ = stopping_tx.send(());
        });
        // Done when HTTP has drained and the fleet's worker has finished
        // what it took.
        let drained = async {
            server.await;
            if let Some(fleet) = &fleet {
                fleet.finish().await;
            }
        };
        let grace = self.config.shutdown_grace;
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
                if let Some(fleet) = &fleet {
                    fleet.drain_for_a_while().await;
                }
                Ok(())
            }
        };
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(path) = self.audit.close()? {
            self.fleet.mirror_the_rest(&path, &self.config).await;
        }
        result
    }
}

/// Make room in `host` for `more` contracts (the swarms deployed to the
/// fleet): their slots added to the pool, its memory and fuel metering
/// widened to theirs.
fn widen(host: &mut ChassisConfig, more: &[ServiceContract]) {
    if more.is_empty() {
        return;
    }
    let wanted = ChassisConfig::sized_for(more);
    if let (Some(pool), Some(wanted)) = (host.pool.as_mut(), wanted.pool) {
        pool.instances = pool.instances.saturating_add(wanted.instances);
        pool.max_memory_mb = pool.max_memory_mb.max(wanted.max_memory_mb);
    }
    host.fuel_metering |= wanted.fuel_metering;
}

/// The host's own configuration for `config`'s contracts: sized for them
/// and for what the admin routes load later, with the wait queue, the
/// secrets and the component cache.
fn host_config(
    config: &ServeConfig,
    parsed: &[ServiceContract],
) -> Result<ChassisConfig, ServeError> {
    let mut host = ChassisConfig::sized_for(parsed);
    let room = crate::PoolConfig::default();
    host.pool = host.pool.map(|pool| crate::PoolConfig {
        instances: pool.instances.max(room.instances),
        max_memory_mb: pool.max_memory_mb.max(room.max_memory_mb),
    });
    host.queue = config.queue;
    host.routing = config.routing;
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
    Ok(host)
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
            let audit =
                crate::audit::AuditLog::open(&log, crate::audit::FsyncPolicy::Always).unwrap();
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
