//! IF.chassis: run untrusted WebAssembly components ("swarms") under
//! per-swarm service contracts.
//!
//! A swarm is a component that exports `infrafabric:chassis/task` (see the
//! WIT package in `wit/`). Each comes with a [`ServiceContract`] (TOML) that
//! bounds what it may use. The data path of one task:
//!
//! ```text
//! Chassis::execute_task(swarm_id, request)
//!   -> registry      the loaded swarm: contract + InstancePre         (registry)
//!   -> admission     a slot among max_concurrent_tasks, or a bounded
//!                    wait, or Overloaded                               (limits)
//!   -> store         fresh Store from the pool: WASI per contract,
//!                    memory limiter, hostcall cap, fuel, epoch
//!                    callback for deadline + CPU share                 (runner, wasi)
//!   -> guest         task.execute(request)                             (bindings)
//!        <- imports  log / credentials / http-proxy, scoped to the
//!                    calling swarm and its call rate                   (imports, state)
//!   -> TaskOutcome   status + output JSON + time + usage, or a typed
//!                    Error; events to the configured sinks             (outcome, events)
//! ```
//!
//! Loading checks the component before any of its code runs: it must be a
//! component (not a core module), export the task interface, and import
//! nothing its contract does not grant ([`imports::policy`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), chassis::Error> {
//! use chassis::{Chassis, TaskRequest};
//! let chassis = Chassis::new()?;
//! chassis.load("config/hello-world.toml").await?;
//! let outcome = chassis
//!     .execute_task("hello-world", TaskRequest::new("hello", serde_json::json!({"name": "Ada"})))
//!     .await?;
//! println!("{}", outcome.output);
//! # Ok(()) }
//! ```

pub mod audit;
pub mod bindings;
pub mod cache;
mod config;
pub mod contract;
mod engine;
mod error;
pub mod events;
pub mod files;
pub mod imports;
pub mod inspect;
pub mod limits;
mod outcome;
mod registry;
pub mod report;
pub mod reputation;
mod runner;
pub mod secrets;
pub mod slo;
mod state;
pub mod text;
pub mod wasi;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use config::{ChassisConfig, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_COMPONENT_BYTES, PoolConfig};
pub use contract::{ContractError, ServiceContract};
pub use engine::{EPOCH_TICK, MAX_WASM_STACK};
pub use error::{Error, ErrorKind, ImportRefusal};
pub use events::{Event, EventSink, MemorySink};
pub use limits::{LimitKind, QueueConfig};
pub use outcome::{GuestError, TaskOutcome, TaskRequest, TaskStatus, TaskUsage};
pub use registry::{SwarmInfo, TASK_INTERFACE};
pub use runner::HOST_SLACK;
pub use secrets::{Secret, SecretStore, SecretsError};
pub use state::HostState;

/// The host: loads swarms and runs their tasks. Cheap to clone; clones share
/// the engine and the loaded swarms, and may run tasks concurrently.
#[derive(Clone)]
pub struct Chassis {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    registry: registry::Registry,
    config: ChassisConfig,
    events: events::Events,
    cache: Option<cache::ComponentCache>,
    /// The HTTP proxy's TLS client, shared by every swarm.
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
}

/// A swarm's SLOs against its contract and its reputation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloReport {
    /// The swarm.
    pub swarm_id: String,
    /// Latency percentiles, error rate, availability, throughput, compliance.
    pub slo: slo::SloFigures,
    /// The reputation score and what it is made of.
    pub reputation: reputation::Reputation,
}

/// A swarm's resource usage, as `get_resource_usage` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmUsage {
    /// The swarm.
    pub swarm_id: String,
    /// CPU used by its tasks since the previous report (or since load), in
    /// percent of one core.
    pub cpu_percent: f64,
    /// Linear memory of its running instances, in MiB.
    pub memory_mb: f64,
    /// Tasks running now.
    pub tasks_running: usize,
    /// Tasks waiting for a slot now.
    pub tasks_queued: usize,
    /// Tasks finished since load.
    pub tasks_completed: u64,
    /// Import calls refused for rate since load.
    pub rate_limited_calls: u64,
    /// Log lines dropped for rate since load.
    pub dropped_log_lines: u64,
}

impl std::fmt::Display for SwarmUsage {
    /// One line: `hello-world: cpu 0.5 %, memory 1.1 MiB, …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: cpu {:.1} %, memory {:.1} MiB, {} running, {} queued, {} completed, {} refused calls, {} dropped log lines",
            self.swarm_id,
            self.cpu_percent,
            self.memory_mb,
            self.tasks_running,
            self.tasks_queued,
            self.tasks_completed,
            self.rate_limited_calls,
            self.dropped_log_lines
        )
    }
}

impl Chassis {
    /// A host with the default configuration ([`ChassisConfig::default`]).
    pub fn new() -> Result<Self, Error> {
        Self::with_config(ChassisConfig::default())
    }

    /// A host with `config`.
    pub fn with_config(config: ChassisConfig) -> Result<Self, Error> {
        let engine = engine::engine(&config)?;
        let linker = engine::linker(&engine)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::ComponentCache::open(dir, &engine)?),
            None => None,
        };
        let tls = imports::http_proxy::client::tls_config(&config.extra_root_certificates)
            .map_err(Error::Engine)?;
        engine::start_epoch_ticker(&engine);
        let events = events::Events::new(config.event_sinks.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                registry: registry::Registry::default(),
                config,
                events,
                cache,
                tls,
            }),
        })
    }

    /// The wasmtime engine every swarm runs on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The host's configuration.
    pub fn config(&self) -> &ChassisConfig {
        &self.inner.config
    }

    /// Load the swarm described by a contract file; its `wasm_module` is
    /// resolved relative to the contract file's directory.
    pub async fn load(&self, contract_path: impl AsRef<Path>) -> Result<SwarmInfo, Error> {
        let contract_path = contract_path.as_ref();
        let contract = match ServiceContract::from_file(contract_path) {
            Ok(contract) => contract,
            Err(e) => {
                // No swarm id to name: the record names the file.
                let result = Err(e.into());
                self.note_rejection("", &result);
                return result;
            }
        };
        let swarm_id = contract.swarm_id.clone();
        let result = match registry::module_path(&contract, contract_path) {
            Ok(module) => match files::read_bounded(&module, self.inner.config.max_component_bytes)
            {
                Ok(bytes) => {
                    self.load_from(&bytes, contract, module.display().to_string())
                        .await
                }
                Err(source) => Err(Error::Io {
                    path: module.clone(),
                    source,
                }),
            },
            Err(e) => Err(e),
        };
        self.note_rejection(&swarm_id, &result);
        result
    }

    /// Load a swarm from component bytes and a contract built or parsed by the caller.
    pub async fn load_bytes(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
    ) -> Result<SwarmInfo, Error> {
        let swarm_id = contract.swarm_id.clone();
        let limit = self.inner.config.max_component_bytes;
        let result = match contract.validate() {
            Ok(()) if bytes.len() as u64 > limit => Err(Error::InvalidComponent {
                origin: format!("<bytes for {}>", contract.swarm_id),
                reason: format!(
                    "{} bytes, over the host's limit of {limit} bytes (ChassisConfig::max_component_bytes)",
                    bytes.len()
                ),
            }),
            Ok(()) => {
                let origin = format!("<bytes for {}>", contract.swarm_id);
                self.load_from(bytes, contract, origin).await
            }
            Err(e) => Err(e.into()),
        };
        self.note_rejection(&swarm_id, &result);
        result
    }

    fn note_rejection(&self, swarm_id: &str, result: &Result<SwarmInfo, Error>) {
        if let Err(e) = result {
            self.inner.events.emit(|| Event::LoadRejected {
                swarm_id: swarm_id.to_string(),
                reason: e.to_string(),
            });
        }
    }

    /// Refuse a contract the instance pool cannot serve.
    fn check_pool(&self, contract: &ServiceContract) -> Result<(), Error> {
        let Some(pool) = &self.inner.config.pool else {
            return Ok(());
        };
        let limits = &contract.resource_limits;
        let too_small = |reason: String| Error::PoolTooSmall {
            swarm_id: contract.swarm_id.clone(),
            reason,
        };
        if limits.max_memory_mb > pool.max_memory_mb {
            return Err(too_small(format!(
                "max_memory_mb = {} is more than this host's instance pool allows ({} MiB; raise PoolConfig::max_memory_mb)",
                limits.max_memory_mb, pool.max_memory_mb
            )));
        }
        let reserved = self.inner.registry.reserved_instances();
        let wanted = reserved + u64::from(limits.max_concurrent_tasks) + 1;
        if wanted > u64::from(pool.instances) {
            return Err(too_small(format!(
                "max_concurrent_tasks = {} does not fit: the instance pool has {} slots, {reserved} are reserved by loaded swarms and 1 is kept for loading (raise PoolConfig::instances)",
                limits.max_concurrent_tasks, pool.instances
            )));
        }
        if limits.max_fuel.is_some() && !self.inner.engine.get_consume_fuel() {
            return Err(too_small(
                "resource_limits.max_fuel is set but this host does not meter fuel (ChassisConfig::fuel_metering)".to_string(),
            ));
        }
        Ok(())
    }

    async fn load_from(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
        origin: String,
    ) -> Result<SwarmInfo, Error> {
        if let Some(reason) = self.inner.events.failure() {
            return Err(Error::AuditUnavailable { reason });
        }
        if self.inner.registry.contains(&contract.swarm_id) {
            return Err(Error::AlreadyLoaded(contract.swarm_id));
        }
        self.check_pool(&contract)?;
        let started = Instant::now();
        let (pre, imports, cache) = registry::prepare(
            &self.inner.engine,
            &self.inner.linker,
            self.inner.cache.as_ref(),
            bytes,
            &contract,
            &origin,
        )?;
        let runtime = Arc::new(state::SwarmRuntime::new(
            Arc::new(contract),
            self.inner.config.queue,
            self.inner.events.clone(),
            &self.inner.config.secrets,
            self.inner.tls.clone(),
        )?);
        let task_types = runner::describe(
            &self.inner.engine,
            &pre,
            &runtime,
            self.inner.config.load_timeout,
        )
        .await?;
        let contract = runtime.contract.clone();
        let info = SwarmInfo {
            swarm_id: contract.swarm_id.clone(),
            version: contract.version.clone(),
            origin,
            task_types,
            imports,
            cache,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
            contract,
        };
        self.inner.registry.insert(registry::LoadedSwarm {
            runtime,
            pre,
            info: info.clone(),
        })?;
        tracing::info!(target: "chassis", swarm = %info.swarm_id, "loaded {} ({} task types, {:.1} ms, cache {})", info.origin, info.task_types.len(), info.load_ms, info.cache.as_str());
        self.inner.events.emit(|| Event::ModuleLoaded {
            swarm_id: info.swarm_id.clone(),
            origin: info.origin.clone(),
            task_types: info.task_types.clone(),
        });
        Ok(info)
    }

    /// Unload a swarm. Tasks already running finish; new ones are refused.
    pub fn unload(&self, swarm_id: &str) -> Result<(), Error> {
        self.inner.registry.remove(swarm_id)?;
        tracing::info!(target: "chassis", swarm = swarm_id, "unloaded");
        self.inner.events.emit(|| Event::ModuleUnloaded {
            swarm_id: swarm_id.to_string(),
        });
        Ok(())
    }

    /// Every loaded swarm, sorted by id.
    pub fn list(&self) -> Vec<SwarmInfo> {
        self.inner.registry.list()
    }

    /// What the host knows about one loaded swarm.
    pub fn describe(&self, swarm_id: &str) -> Result<SwarmInfo, Error> {
        Ok(self.inner.registry.get(swarm_id)?.info.clone())
    }

    /// Run one task on a loaded swarm, in a fresh instance, under its contract.
    pub async fn execute_task(
        &self,
        swarm_id: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        runner::execute(&self.inner.engine, &swarm, request).await
    }

    /// A swarm's SLO figures against its contract, and its reputation.
    pub fn slo_report(&self, swarm_id: &str) -> Result<SloReport, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let rt = &swarm.runtime;
        let health = rt.health.lock().expect("health lock");
        Ok(SloReport {
            swarm_id: swarm_id.to_string(),
            slo: health.slo.figures(&rt.contract.slo_targets, Instant::now()),
            reputation: health.reputation.clone(),
        })
    }

    /// Release a quarantined swarm: its tasks run again, its score goes back
    /// to its `initial_score`. Raises a `Released` event. A swarm that is
    /// not quarantined is left as it is (its score is not reset).
    pub fn release(&self, swarm_id: &str) -> Result<reputation::Reputation, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let rt = &swarm.runtime;
        let reputation = {
            let mut health = rt.health.lock().expect("health lock");
            if !health.reputation.quarantined {
                return Ok(health.reputation.clone());
            }
            health.reputation.release();
            health.reputation.clone()
        };
        tracing::info!(target: "chassis", swarm = swarm_id, "released from quarantine");
        rt.events.emit(|| Event::Released {
            swarm_id: swarm_id.to_string(),
            score: reputation.score,
        });
        Ok(reputation)
    }

    /// Set a loaded swarm's reputation (for example one rebuilt from an audit
    /// log with [`report::replay`]); a quarantined one is refused from now on.
    pub fn restore_reputation(
        &self,
        swarm_id: &str,
        reputation: reputation::Reputation,
    ) -> Result<(), Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        swarm.runtime.health.lock().expect("health lock").reputation = reputation;
        Ok(())
    }

    /// Continue a loaded swarm from its audit history (see
    /// [`report::history`]): its SLO figures and reputation (quarantine and
    /// the failure guard's window included) become what the log says, so
    /// what this host reports next chains on from the log's last record.
    pub fn restore_history(&self, history: report::History) -> Result<(), Error> {
        let swarm = self.inner.registry.get(&history.swarm_id)?;
        let (slo, reputation) = history.resume();
        let mut health = swarm.runtime.health.lock().expect("health lock");
        health.slo = slo;
        health.reputation = reputation;
        Ok(())
    }

    /// Every loaded swarm's SLO figures, reputation and usage in the
    /// Prometheus text exposition format (gauges labelled by swarm).
    pub fn render_metrics(&self) -> String {
        type Family = (&'static str, &'static str, Vec<(String, f64)>);
        let mut families: Vec<Family> = vec![
            ("chassis_task_latency_p50_ms", "Median task latency", vec![]),
            (
                "chassis_task_latency_p95_ms",
                "95th percentile task latency",
                vec![],
            ),
            (
                "chassis_task_latency_p99_ms",
                "99th percentile task latency",
                vec![],
            ),
            ("chassis_tasks_total", "Tasks counted for SLOs", vec![]),
            (
                "chassis_tasks_failed_total",
                "Tasks that did not succeed",
                vec![],
            ),
            (
                "chassis_error_rate_percent",
                "Failed tasks, percent",
                vec![],
            ),
            (
                "chassis_availability_percent",
                "Time up since load, percent",
                vec![],
            ),
            (
                "chassis_slo_compliant",
                "1 when every SLO target is met",
                vec![],
            ),
            ("chassis_reputation_score", "Reputation score", vec![]),
            (
                "chassis_quarantined",
                "1 when the swarm is quarantined",
                vec![],
            ),
            (
                "chassis_throughput_rps",
                "Tasks per second since load",
                vec![],
            ),
            ("chassis_tasks_running", "Tasks running now", vec![]),
            (
                "chassis_memory_bytes",
                "Linear memory of running instances",
                vec![],
            ),
        ];
        for info in self.list() {
            let Ok(swarm) = self.inner.registry.get(&info.swarm_id) else {
                continue;
            };
            let Ok(report) = self.slo_report(&info.swarm_id) else {
                continue;
            };
            let c = &swarm.runtime.counters;
            let s = &report.slo;
            let values = [
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.tasks as f64,
                s.failed as f64,
                s.error_rate_percent,
                s.availability_percent,
                f64::from(u8::from(s.compliance.iter().all(|c| c.compliant))),
                report.reputation.score,
                f64::from(u8::from(report.reputation.quarantined)),
                s.throughput_rps,
                c.running.load(Ordering::Relaxed) as f64,
                c.memory_bytes.load(Ordering::Relaxed) as f64,
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.2.push((info.swarm_id.clone(), value));
            }
        }
        let mut out = String::new();
        for (name, help, samples) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (swarm, value) in samples {
                let swarm = swarm.replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!("{name}{{swarm=\"{swarm}\"}} {value}\n"));
            }
        }
        out
    }

    /// A swarm's current resource usage. `cpu_percent` covers the time since
    /// the previous call for this swarm (or since it was loaded).
    pub fn resource_usage(&self, swarm_id: &str) -> Result<SwarmUsage, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let c = &swarm.runtime.counters;
        let now = Instant::now();
        let cpu = c.cpu_nanos.load(Ordering::Relaxed);
        let mut mark = swarm.runtime.usage_mark.lock().expect("usage lock");
        let wall = now.saturating_duration_since(mark.0).as_nanos().max(1) as f64;
        let cpu_percent = (cpu.saturating_sub(mark.1) as f64 / wall * 100.0).min(100.0);
        *mark = (now, cpu);
        Ok(SwarmUsage {
            swarm_id: swarm_id.to_string(),
            cpu_percent,
            memory_mb: c.memory_bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0),
            tasks_running: c.running.load(Ordering::Relaxed),
            tasks_queued: c.queued.load(Ordering::Relaxed),
            tasks_completed: c.completed.load(Ordering::Relaxed),
            rate_limited_calls: c.rate_limited_calls.load(Ordering::Relaxed),
            dropped_log_lines: c.dropped_log_lines.load(Ordering::Relaxed),
        })
    }
}
