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
//!   [`TaskError::Guest`]), or classify with [`TaskEnd::of`].
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
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod commands;
mod config;
pub mod contract;
mod engine;
mod error;
mod events;
mod files;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod governor;
mod health;
mod imports;
pub mod inspect;
mod limits;
pub mod metrics;
mod outcome;
mod registry;
pub mod replay;
pub mod report;
mod reputation;
mod runner;
mod seconds;
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
pub use config::{ChassisConfig, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_COMPONENT_BYTES, PoolConfig};
pub use contract::{ContractBuilder, ContractError, ServiceContract};
pub use error::{
    Error, ErrorKind, GuestError, GuestErrorKind, ImportRefusal, LoadError, RouteError, TaskError,
};
pub use events::{Event, EventSink, EventSinks, MemorySink};
pub use governor::RoutingConfig;
pub use governor::route::Candidate;
pub use governor::throttle::{CircuitState, ThrottleView};
pub use imports::log::{GuestLine, GuestLogSink, LogLevel};
pub use limits::{BudgetKind, BudgetView, LimitKind, QueueConfig};
pub use outcome::{
    MAX_TASK_ID_BYTES, Output, Payload, TaskEnd, TaskInput, TaskOutcome, TaskRequest, TaskStatus,
    TaskUsage, task_id_problem,
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
    /// Capability routing's draws.
    draws: governor::Draws,
}

/// Where a task addressed to a capability goes ([`Chassis::route`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The capability (bounded and escaped).
    pub capability: String,
    /// The swarm chosen.
    pub swarm_id: String,
    /// How many candidates could be chosen.
    pub eligible: u32,
    /// The draw that chose (in `[0, 1)`).
    pub draw: f64,
    /// Every swarm that declares the capability and serves the task type,
    /// with its standing.
    pub candidates: Vec<Candidate>,
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

/// A swarm's resource usage, as `get_resource_usage` reports it: counters
/// since the swarm was loaded, which only grow (a replacing version carries
/// on its predecessor's), figures of now, and two rates.
///
/// Reading it changes nothing: the rates [`Chassis::resource_usage`] gives
/// are averages since load, the same for every reader. A reader that wants
/// them over the time since its own previous look keeps a [`UsageMeter`],
/// or computes them from the counters (`cpu_seconds`, `network_bytes_*`)
/// on its own clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmUsage {
    /// The swarm.
    pub swarm_id: String,
    /// Seconds since it was loaded: the span the counters cover.
    pub uptime_seconds: f64,
    /// CPU time its tasks used since load, in seconds: a counter, added to
    /// as each task ends.
    pub cpu_seconds: f64,
    /// CPU in percent of one core: since load here, since the reader's
    /// previous sample from a [`UsageMeter`]. Not capped at 100: a swarm
    /// with N tasks running at once can use up to N cores.
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
    /// Body bytes its tasks sent through the HTTP proxy (its only way to
    /// the network) since load.
    pub network_bytes_out: u64,
    /// Body bytes its tasks received through the HTTP proxy since load.
    pub network_bytes_in: u64,
    /// Both directions, in megabits (10⁶ bits) per second, over the same
    /// span as `cpu_percent` (the unit of `max_network_bandwidth_mbps`).
    pub network_mbps: f64,
    /// Each budget of its contract's `[budget]`: what the current period
    /// spent of it and when it renews (empty without budgets).
    pub budgets: Vec<BudgetView>,
    /// What the governor's throttle does to it now: the slots that may be
    /// taken, the circuit.
    pub throttle: ThrottleView,
}

impl std::fmt::Display for SwarmUsage {
    /// One line: `hello-world: cpu 0.5 % (0.012 s), memory 1.1 MiB, …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: cpu {:.1} % ({:.3} s), memory {:.1} MiB, network {:.3} Mbit/s ({} B out, {} B in), {} running, {} queued, {} completed, {} refused calls, {} dropped log lines",
            self.swarm_id,
            self.cpu_percent,
            self.cpu_seconds,
            self.memory_mb,
            self.network_mbps,
            self.network_bytes_out,
            self.network_bytes_in,
            self.tasks_running,
            self.tasks_queued,
            self.tasks_completed,
            self.rate_limited_calls,
            self.dropped_log_lines
        )
    }
}

/// CPU in percent of one core and network in megabits per second, for
/// `cpu_seconds` and `bytes` used over `seconds` (nothing over no time).
fn usage_rates(cpu_seconds: f64, bytes: u64, seconds: f64) -> (f64, f64) {
    if seconds <= 0.0 {
        return (0.0, 0.0);
    }
    (
        cpu_seconds.max(0.0) / seconds * 100.0,
        bytes as f64 * 8.0 / 1e6 / seconds,
    )
}

/// One reader's view of the usage rates: [`UsageMeter::sample`] gives a
/// swarm's [`SwarmUsage`] with `cpu_percent` and `network_mbps` over the
/// time since this meter's previous sample of it (since load the first
/// time, or when the swarm was loaded again in between). Each reader keeps
/// its own, so readers never reset each other's figures.
///
/// ```no_run
/// # fn f(chassis: chassis::Chassis) -> Result<(), chassis::Error> {
/// let mut meter = chassis::UsageMeter::new();
/// meter.sample(&chassis, "hello-world")?; // since load
/// std::thread::sleep(std::time::Duration::from_secs(10));
/// let usage = meter.sample(&chassis, "hello-world")?; // the last 10 s
/// println!("{:.1} % CPU", usage.cpu_percent);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct UsageMeter {
    previous: std::collections::HashMap<String, UsageMark>,
}

/// What a meter keeps of its previous sample of a swarm.
#[derive(Debug, Clone, Copy)]
struct UsageMark {
    loaded_at: Instant,
    at: Instant,
    cpu_seconds: f64,
    bytes: u64,
}

impl UsageMeter {
    /// A meter that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `swarm_id`'s usage now, its rates over the time since this meter's
    /// previous sample of it.
    pub fn sample(&mut self, chassis: &Chassis, swarm_id: &str) -> Result<SwarmUsage, Error> {
        let (mut usage, mark) = chassis.usage_sample(swarm_id)?;
        let previous = self.previous.insert(swarm_id.to_string(), mark);
        // Another load since (or no sample before): the since-load figures
        // cover the right span already.
        if let Some(p) = previous.filter(|p| p.loaded_at == mark.loaded_at) {
            (usage.cpu_percent, usage.network_mbps) = usage_rates(
                mark.cpu_seconds - p.cpu_seconds,
                mark.bytes.saturating_sub(p.bytes),
                mark.at.saturating_duration_since(p.at).as_secs_f64(),
            );
        }
        Ok(usage)
    }

    /// Forget `swarm_id` (unloaded, say): its next sample starts afresh.
    pub fn forget(&mut self, swarm_id: &str) {
        self.previous.remove(swarm_id);
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
        let config_seed = config.routing.seed;
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
                draws: governor::Draws::new(config_seed),
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

    /// Run `request` on a swarm chosen for `capability` ([`Chassis::route`]);
    /// the outcome's `swarm_id` names the one that ran it.
    pub async fn execute_capability(
        &self,
        capability: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome, Error> {
        let route = self.routed(capability, &request)?;
        self.execute(&route.swarm_id, request).await
    }

    /// [`Chassis::execute_capability`], with the output as the swarm's
    /// JSON text (as [`Chassis::execute_task_text`]).
    pub async fn execute_capability_text(
        &self,
        capability: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome<Box<serde_json::value::RawValue>>, Error> {
        let route = self.routed(capability, &request)?;
        self.execute(&route.swarm_id, request).await
    }

    /// Choose for `request` and record the choice (`task_routed`).
    fn routed(&self, capability: &str, request: &TaskRequest) -> Result<Route, Error> {
        let route = self.route(capability, &request.task_type)?;
        self.inner.events.emit(|| Event::TaskRouted {
            swarm_id: route.swarm_id.clone(),
            task_id: request.task_id.clone(),
            capability: route.capability.clone(),
            eligible: route.eligible,
            draw: route.draw,
        });
        Ok(route)
    }

    /// Choose the swarm a task of `task_type` addressed to `capability`
    /// would run on now, running nothing: among the loaded swarms that
    /// declare the capability and serve the task type, those neither
    /// quarantined, nor under their selection threshold, nor out of budget,
    /// weighted by reputation among those with a free slot
    /// (`docs/governor.md`).
    pub fn route(&self, capability: &str, task_type: &str) -> Result<Route, Error> {
        let capability = crate::text::escape(capability, 128);
        let task_type = crate::text::escape(task_type, 64);
        let candidates = self.candidates(&capability, Some(&task_type));
        if candidates.is_empty() {
            let declared_by = self
                .candidates(&capability, None)
                .into_iter()
                .map(|c| c.swarm_id)
                .collect();
            return Err(Error::Route(RouteError::NotServed {
                capability,
                task_type,
                declared_by,
            }));
        }
        let draw = self.inner.draws.next();
        match governor::route::choose(&candidates, draw) {
            Ok(i) => Ok(Route {
                swarm_id: candidates[i].swarm_id.clone(),
                eligible: candidates.iter().filter(|c| c.excluded().is_none()).count() as u32,
                draw,
                capability,
                candidates,
            }),
            Err(excluded) => Err(Error::Route(RouteError::NoneEligible {
                capability,
                task_type,
                excluded,
            })),
        }
    }

    /// The loaded swarms that declare `capability` (and serve `task_type`,
    /// when given), with their standing now, by swarm id.
    pub fn candidates(&self, capability: &str, task_type: Option<&str>) -> Vec<Candidate> {
        let host_threshold = self.inner.config.routing.selection_threshold;
        // Read from each swarm's live state, not through the reports: this
        // runs for every task addressed to a capability.
        let mut all: Vec<Candidate> = self
            .inner
            .registry
            .loaded()
            .iter()
            .filter(|s| s.info.contract.capabilities.iter().any(|c| c == capability))
            .filter(|s| task_type.is_none_or(|t| s.info.task_types.iter().any(|x| x == t)))
            .map(|s| standing_of(s, host_threshold))
            .collect();
        all.sort_by(|a, b| a.swarm_id.cmp(&b.swarm_id));
        all
    }

    /// A loaded swarm's standing for capability routing now: its score,
    /// selection threshold, quarantine, budget, circuit and free slots.
    pub fn standing(&self, swarm_id: &str) -> Result<Candidate, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        Ok(standing_of(
            &swarm,
            self.inner.config.routing.selection_threshold,
        ))
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
    /// [`TaskError::Guest`], an output that is not an `O` is
    /// [`TaskError::InvalidOutput`] (the task itself succeeded and is recorded
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
        let payload = Payload::serialize(input).map_err(|e| {
            Error::Task(TaskError::InvalidPayload {
                swarm_id: swarm_id.to_string(),
                reason: e.to_string(),
            })
        })?;
        let outcome = self
            .execute_task_text(swarm_id, TaskRequest::with_payload(task_type, payload))
            .await?;
        let task_id = outcome.task_id.clone();
        let text = outcome.into_result()?;
        serde_json::from_str(text.get()).map_err(|e| {
            Error::Task(TaskError::InvalidOutput {
                swarm_id: swarm_id.to_string(),
                task_id,
                reason: format!("not the type asked for: {e}"),
            })
        })
    }

    async fn execute<O: outcome::Output>(
        &self,
        swarm_id: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome<O>, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        check_task_id(swarm_id, &request.task_id)?;
        let ready = runner::Ready {
            runtime: &swarm.runtime,
            pre: &swarm.pre,
            task_types: &swarm.info.task_types,
            warm: &swarm.warm,
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
        check_task_id(swarm_id, task_id)?;
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

    /// Whether a budget of the swarm's `[budget]` is spent for the period
    /// (its new tasks are refused until it renews); `false` for a swarm
    /// without budgets or not loaded.
    pub fn budget_spent(&self, swarm_id: &str) -> bool {
        self.inner
            .registry
            .get(swarm_id)
            .is_ok_and(|swarm| swarm.runtime.budget_spent())
    }

    /// Whether the swarm's circuit refuses tasks now: open after a run of
    /// failures and cooling down, or half open with its probe task
    /// running (`docs/governor.md`); `false` for a swarm not loaded.
    pub fn circuit_open(&self, swarm_id: &str) -> bool {
        self.inner
            .registry
            .get(swarm_id)
            .is_ok_and(|swarm| swarm.runtime.throttle.refusing())
    }

    /// Whether the swarm's new tasks would be refused now for what it is
    /// rather than for what they ask: quarantined, a budget spent, or its
    /// circuit open. A queue worker takes none of its tasks meanwhile.
    /// `true` for a swarm not loaded.
    pub fn holding_back(&self, swarm_id: &str) -> bool {
        self.inner
            .registry
            .get(swarm_id)
            .map_or(true, |swarm| swarm.runtime.holding_back())
    }

    /// How many of the swarm's tasks may run at once now: its
    /// `max_concurrent_tasks`, or less while the governor throttles it; one
    /// when its circuit waits for a probe task, none while the circuit
    /// refuses or the swarm is not loaded.
    pub fn concurrency(&self, swarm_id: &str) -> usize {
        self.inner
            .registry
            .get(swarm_id)
            .map_or(0, |swarm| swarm.runtime.throttle.takeable() as usize)
    }

    /// Release a quarantined swarm: its tasks run again, its score goes back
    /// to its `initial_score`. Raises a `Released` event. A swarm that is
    /// not quarantined is left as it is (its score is not reset).
    pub fn release(&self, swarm_id: &str) -> Result<reputation::Reputation, Error> {
        Ok(self.inner.registry.get(swarm_id)?.runtime.health.release())
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
        Ok(self
            .inner
            .registry
            .get(swarm_id)?
            .runtime
            .health
            .quarantine(reason))
    }

    /// Set a loaded swarm's reputation (for example one rebuilt from an audit
    /// log with [`report::replay`]); a quarantined one is refused from now on.
    pub fn restore_reputation(
        &self,
        swarm_id: &str,
        reputation: reputation::Reputation,
    ) -> Result<(), Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        swarm.runtime.health.restore(None, reputation);
        Ok(())
    }

    /// Continue a loaded swarm from its audit history (see
    /// [`report::history`]): its SLO figures and reputation (quarantine and
    /// the failure guard's window included) become what the log says, so
    /// what this host reports next chains on from the log's last record.
    pub fn restore_history(&self, history: report::History) -> Result<(), Error> {
        let swarm = self.inner.registry.get(&history.swarm_id)?;
        let (slo, reputation) = history.resume();
        swarm.runtime.health.restore(Some(slo), reputation);
        Ok(())
    }

    /// For a host that is stopping: every running task (and any started
    /// from now on) ends at its next epoch tick, within [`caps::EPOCH_TICK`], as
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

    /// A swarm's current resource usage: counters since it was loaded,
    /// `cpu_percent` and `network_mbps` averaged over that time. Reading it
    /// changes nothing; for rates since a reader's own previous look, see
    /// [`UsageMeter`].
    pub fn resource_usage(&self, swarm_id: &str) -> Result<SwarmUsage, Error> {
        Ok(self.usage_sample(swarm_id)?.0)
    }

    /// [`Chassis::resource_usage`], and what a [`UsageMeter`] keeps of it.
    fn usage_sample(&self, swarm_id: &str) -> Result<(SwarmUsage, UsageMark), Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        let rt = &swarm.runtime;
        let c = &rt.counters;
        let traffic = rt.proxy.traffic();
        let at = Instant::now();
        let uptime = at.saturating_duration_since(rt.loaded_at).as_secs_f64();
        let cpu_seconds = c.cpu_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let network_bytes_out = traffic.bytes_out.load(Ordering::Relaxed);
        let network_bytes_in = traffic.bytes_in.load(Ordering::Relaxed);
        let bytes = network_bytes_out.saturating_add(network_bytes_in);
        let (cpu_percent, network_mbps) = usage_rates(cpu_seconds, bytes, uptime);
        let usage = SwarmUsage {
            swarm_id: swarm_id.to_string(),
            uptime_seconds: uptime,
            cpu_seconds,
            cpu_percent,
            memory_mb: c.memory_bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0),
            tasks_running: c.running.load(Ordering::Relaxed),
            tasks_queued: c.queued.load(Ordering::Relaxed),
            tasks_completed: c.completed.load(Ordering::Relaxed),
            rate_limited_calls: c.rate_limited_calls.load(Ordering::Relaxed),
            dropped_log_lines: c.dropped_log_lines.load(Ordering::Relaxed),
            network_bytes_out,
            network_bytes_in,
            network_mbps,
            budgets: rt
                .budget
                .as_ref()
                .map(|b| b.view(std::time::SystemTime::now()))
                .unwrap_or_default(),
            throttle: rt.throttle.view(),
        };
        let mark = UsageMark {
            loaded_at: rt.loaded_at,
            at,
            cpu_seconds,
            bytes,
        };
        Ok((usage, mark))
    }
}

/// `swarm`'s standing for capability routing now, its selection threshold
/// the contract's or else `host_threshold` (never under its quarantine
/// threshold).
fn standing_of(swarm: &registry::LoadedSwarm, host_threshold: f64) -> Candidate {
    let rt = &swarm.runtime;
    let reputation = &swarm.info.contract.reputation;
    let (score, quarantined) = {
        let health = rt.health.lock();
        (health.reputation.score, health.reputation.quarantined)
    };
    let running = u32::try_from(rt.counters.running.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
    Candidate {
        swarm_id: swarm.info.swarm_id.clone(),
        score,
        selection_threshold: reputation
            .selection_threshold
            .unwrap_or(host_threshold.max(reputation.quarantine_threshold)),
        quarantined,
        budget_spent: rt.budget_spent(),
        circuit_open: rt.throttle.refusing(),
        free_slots: rt.admission.limit().saturating_sub(running),
    }
}

/// A task id the host takes, or the error refusing it (for a task run
/// by the host and a store an embedder drives alike).
fn check_task_id(swarm_id: &str, task_id: &str) -> Result<(), Error> {
    match outcome::task_id_problem(task_id) {
        Some(reason) => Err(Error::Task(TaskError::InvalidTaskId {
            swarm_id: swarm_id.to_string(),
            reason,
        })),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::usage_rates;

    #[test]
    fn usage_rates_are_not_capped_at_one_core() {
        // Three tasks busy for a whole second each, in one second.
        let (cpu, _) = usage_rates(3.0, 0, 1.0);
        assert!((cpu - 300.0).abs() < 1e-9, "{cpu}");
        // 2.5 MB each way in 10 s: 4 Mbit/s.
        let (_, mbps) = usage_rates(0.0, 5_000_000, 10.0);
        assert!((mbps - 4.0).abs() < 1e-9, "{mbps}");
        assert_eq!(usage_rates(1.0, 1, 0.0), (0.0, 0.0));
    }
}
