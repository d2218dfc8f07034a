//! IF.chassis: run untrusted WebAssembly components ("swarms") under
//! per-swarm service contracts.
//!
//! A swarm is a component that exports `infrafabric:chassis/task` (see the
//! WIT package in `wit/`). Each comes with a [`ServiceContract`] (TOML, or
//! built in code with [`ServiceContract::builder`]) that bounds what it may
//! use. The data path of one task (`ARCHITECTURE.md` has the code map):
//!
//! ```text
//! Chassis::execute_task(swarm_id, request)
//!   -> registry      the loaded swarm: contract + InstancePre
//!   -> admission     a slot among max_concurrent_tasks, or a bounded
//!                    wait, or Overloaded
//!   -> store         fresh Store from the pool: WASI per contract,
//!                    memory limiter, hostcall cap, fuel, epoch
//!                    callback for deadline + CPU share
//!   -> guest         task.execute(request), the payload's JSON text as given
//!        <- imports  log / credentials / http-proxy, each scoped to the
//!                    calling swarm, its call rate and its budgets
//!   -> TaskOutcome   status + output + time + usage, or a typed Error;
//!                    events to the configured sinks; SLOs and reputation
//! ```
//!
//! Loading checks the component before any of its code runs: it must be a
//! component (not a core module), export the task interface, and import
//! nothing its contract does not grant.
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
//!
//! # For embedders
//!
//! - **How a task ended.** [`Chassis::execute_task`] is `Ok` whenever the
//!   swarm answered — with its output, or with its own error (`status`
//!   failed), plus what the task used — and `Err` when the host refused or
//!   stopped the task. The swarm's own error is a normal answer because it
//!   is one: it has usage, it is audited as the swarm's, and a caller often
//!   shows it rather than retries. For one `match` over every ending, chain
//!   [`TaskOutcome::into_result`] (the swarm's error becomes
//!   [`Error::Guest`]), or classify with [`TaskEnd::of`].
//! - **Text in, text out.** A caller that already holds JSON text (an HTTP
//!   body, a queue message) builds the request with
//!   [`TaskRequest::from_text`] — the text is checked to be JSON and handed
//!   to the guest as it is — and can take the output as text with
//!   [`Chassis::execute_task_text`]. [`TaskRequest::new`] takes a `Value`.
//! - **Typed calls.** [`Chassis::call`] prints an input type as the
//!   payload and reads the output as an output type.
//! - **Guest logs.** Swarms' log lines go to `tracing` (target `swarm`), or
//!   to a [`GuestLogSink`] host-wide ([`ChassisConfig::with_log_sink`]) or
//!   per swarm ([`Chassis::set_log_sink`]).
//! - **Driving components yourself.** [`Chassis::swarm_pre`] and
//!   [`Chassis::new_store`] give the checked, pre-linked component and a
//!   store bound by its contract, for the generated [`bindings`]
//!   (`host/examples/drive_bindings.rs`).
//! - **No CLI baggage.** With `default-features = false` the crate pulls in
//!   neither clap nor tracing-subscriber, which only the command line uses.

#![warn(unreachable_pub)]

pub mod audit;
pub mod bindings;
mod cache;
pub mod caps;
mod config;
pub mod contract;
mod engine;
mod error;
mod events;
pub mod files;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod imports;
pub mod inspect;
mod limits;
pub mod metrics;
mod outcome;
mod registry;
pub mod report;
mod reputation;
mod runner;
mod secrets;
#[cfg(feature = "serve")]
pub mod serve;
mod slo;
mod state;
pub mod storage;
mod task_types;
pub mod text;
mod wasi;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use cache::{CacheError, CacheUse};
pub use caps::{EPOCH_TICK, HOST_SLACK, MAX_WASM_STACK};
pub use config::{ChassisConfig, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_COMPONENT_BYTES, PoolConfig};
pub use contract::{ContractBuilder, ContractError, ServiceContract};
pub use error::{Error, ErrorKind, GuestError, GuestErrorKind, ImportRefusal};
pub use events::{Event, EventSink, MemorySink};
pub use imports::log::{GuestLine, GuestLogSink, LogLevel};
pub use limits::{LimitKind, QueueConfig};
pub use outcome::{
    MAX_TASK_ID_BYTES, Output, Payload, TaskEnd, TaskOutcome, TaskRequest, TaskStatus, TaskUsage,
    task_id_problem,
};
pub use registry::{Replacement, SwarmInfo, TASK_INTERFACE};
pub use reputation::Reputation;
pub use secrets::{Secret, SecretStore, SecretsError};
pub use slo::{Check as SloCheck, SloFigures};
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
    /// Set by [`Chassis::interrupt_all`].
    stopping: Arc<std::sync::atomic::AtomicBool>,
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
                stopping: Arc::default(),
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

    /// Every loaded swarm, sorted by id.
    pub fn list(&self) -> Vec<SwarmInfo> {
        self.inner.registry.list()
    }

    /// What the host knows about one loaded swarm.
    pub fn describe(&self, swarm_id: &str) -> Result<SwarmInfo, Error> {
        Ok(self.inner.registry.get(swarm_id)?.info.clone())
    }

    /// Run one task on a loaded swarm, in a fresh instance, under its
    /// contract.
    ///
    /// `Ok` whenever the swarm answered, with its output or its own error
    /// (`status` failed, `error` set) and what the task used; `Err` when
    /// the host refused the task or stopped it (a limit, a trap). For one
    /// `match` over every ending, chain [`TaskOutcome::into_result`].
    pub async fn execute_task(
        &self,
        swarm_id: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome, Error> {
        self.execute(swarm_id, request).await
    }

    /// [`Chassis::execute_task`], with the output handed back as the
    /// swarm's JSON text (checked to be JSON, never parsed into a tree):
    /// for callers that pass it on as text (an HTTP body, a queue message).
    pub async fn execute_task_text(
        &self,
        swarm_id: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome<Box<serde_json::value::RawValue>>, Error> {
        self.execute(swarm_id, request).await
    }

    /// A typed call for callers who know a task's shapes: `input` is
    /// printed as the payload, the output read as an `O`.
    ///
    /// Every ending is an `Err` but success: the swarm's own error is
    /// [`Error::Guest`], an output that is not an `O` is
    /// [`Error::InvalidOutput`] (the task itself succeeded and is recorded
    /// so), and the host's refusals are as for [`Chassis::execute_task`].
    ///
    /// ```no_run
    /// # async fn demo(chassis: chassis::Chassis) -> Result<(), chassis::Error> {
    /// #[derive(serde::Serialize)]
    /// struct Add { a: i64, b: i64 }
    /// #[derive(serde::Deserialize)]
    /// struct Sum { sum: i64 }
    /// let sum: Sum = chassis.call("hello-world", "add", &Add { a: 2, b: 3 }).await?;
    /// assert_eq!(sum.sum, 5);
    /// # Ok(()) }
    /// ```
    pub async fn call<I, O>(&self, swarm_id: &str, task_type: &str, input: &I) -> Result<O, Error>
    where
        I: Serialize + ?Sized,
        O: serde::de::DeserializeOwned,
    {
        let payload = Payload::serialize(input).map_err(|e| Error::InvalidPayload {
            swarm_id: swarm_id.to_string(),
            reason: e.to_string(),
        })?;
        let outcome = self
            .execute_task_text(swarm_id, TaskRequest::with_payload(task_type, payload))
            .await?;
        let task_id = outcome.task_id.clone();
        let text = outcome.into_result()?;
        serde_json::from_str(text.get()).map_err(|e| Error::InvalidOutput {
            swarm_id: swarm_id.to_string(),
            task_id,
            reason: format!("not the type asked for: {e}"),
        })
    }

    async fn execute<O: outcome::Output>(
        &self,
        swarm_id: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome<O>, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        if let Some(reason) = request.id_problem() {
            return Err(Error::InvalidTaskId {
                swarm_id: swarm_id.to_string(),
                reason,
            });
        }
        let ready = runner::Ready {
            runtime: &swarm.runtime,
            pre: &swarm.pre,
            task_types: &swarm.info.task_types,
        };
        runner::execute(&self.inner.engine, ready, request).await
    }

    /// The loaded swarm `swarm_id`, checked and pre-linked with the
    /// chassis's imports: for embedders who drive a component themselves
    /// through the generated [`bindings`]. Instantiate it in a store from
    /// [`Chassis::new_store`].
    pub fn swarm_pre(&self, swarm_id: &str) -> Result<bindings::SwarmPre<HostState>, Error> {
        Ok(self.inner.registry.get(swarm_id)?.pre.clone())
    }

    /// A fresh store for one task `task_id` of the loaded swarm
    /// `swarm_id`, bound by its contract as [`Chassis::execute_task`]'s
    /// are: memory limiter, host-call byte cap, fuel, the task's deadline
    /// and CPU share, WASI and the chassis imports scoped to the swarm,
    /// its call rate and log budget, its credentials. Refused, as a task
    /// is, while the swarm is quarantined or an event sink (the audit log)
    /// has failed.
    ///
    /// The caller drives the instance ([`Chassis::swarm_pre`]): no
    /// admission slot is taken and the task's own ending is not recorded
    /// (no task event, no SLO figure). What the guest does through the
    /// imports is, as in any task: credential and proxy decisions are
    /// events, and a request outside the contract costs reputation. The
    /// count of repeated credential grants (`Event::CredentialRepeated`) is
    /// raised when the store is dropped.
    pub fn new_store(
        &self,
        swarm_id: &str,
        task_id: &str,
    ) -> Result<wasmtime::Store<HostState>, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let rt = &swarm.runtime;
        if let Some(reason) = outcome::task_id_problem(task_id) {
            return Err(Error::InvalidTaskId {
                swarm_id: swarm_id.to_string(),
                reason,
            });
        }
        runner::may_run(rt)?;
        Ok(runner::new_store(
            &self.inner.engine,
            rt,
            &task_id.into(),
            &Default::default(),
            imports::scope::Phase::Task,
            rt.contract.task_timeout(),
        ))
    }

    /// A swarm's SLO figures against its contract, and its reputation.
    pub fn slo_report(&self, swarm_id: &str) -> Result<SloReport, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let rt = &swarm.runtime;
        let health = rt.health.lock();
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
            let mut health = rt.health.lock();
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

    /// Quarantine a loaded swarm now, for `reason` (an operator's decision,
    /// or another host's, passed on): its tasks are refused until it is
    /// [released](Chassis::release). Recorded as a `quarantined` event.
    /// A swarm already quarantined stays as it is.
    pub fn quarantine(
        &self,
        swarm_id: &str,
        reason: &str,
    ) -> Result<reputation::Reputation, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let health = &swarm.runtime.health;
        let change = {
            let mut state = health.lock();
            if state.reputation.quarantined {
                return Ok(state.reputation.clone());
            }
            state.reputation.quarantine(reason.to_string())
        };
        health.report(change, "");
        Ok(health.lock().reputation.clone())
    }

    /// Set a loaded swarm's reputation (for example one rebuilt from an audit
    /// log with [`report::replay`]); a quarantined one is refused from now on.
    pub fn restore_reputation(
        &self,
        swarm_id: &str,
        reputation: reputation::Reputation,
    ) -> Result<(), Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        swarm.runtime.health.lock().reputation = reputation;
        Ok(())
    }

    /// Continue a loaded swarm from its audit history (see
    /// [`report::history`]): its SLO figures and reputation (quarantine and
    /// the failure guard's window included) become what the log says, so
    /// what this host reports next chains on from the log's last record.
    pub fn restore_history(&self, history: report::History) -> Result<(), Error> {
        let swarm = self.inner.registry.get(&history.swarm_id)?;
        let (slo, reputation) = history.resume();
        let mut health = swarm.runtime.health.lock();
        health.slo = slo;
        health.reputation = reputation;
        Ok(())
    }

    /// For a host that is stopping: every running task (and any started
    /// from now on) ends at its next epoch tick, within [`EPOCH_TICK`], as
    /// a timeout, with its terminal event; a task waiting in a host call
    /// ends when the call returns (within the task's deadline).
    pub fn interrupt_all(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Why an event sink (the audit log) can no longer record, if one
    /// failed: while it has, the host refuses loads and tasks.
    pub fn event_sink_failure(&self) -> Option<String> {
        self.inner.events.failure()
    }

    /// Send `swarm_id`'s log lines (log import, stdout, stderr) to `sink`,
    /// or, with `None`, back to where [`ChassisConfig::log_sink`] sends
    /// every swarm's (`tracing` by default).
    pub fn set_log_sink(
        &self,
        swarm_id: &str,
        sink: Option<Arc<dyn GuestLogSink>>,
    ) -> Result<(), Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        swarm
            .runtime
            .log
            .set_sink(sink.or_else(|| self.inner.config.log_sink.clone()));
        Ok(())
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
