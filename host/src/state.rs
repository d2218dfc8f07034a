//! What the host keeps per loaded swarm ([`SwarmRuntime`]) and per task
//! ([`HostState`], the data of the task's `Store`), and how the two are
//! wired to the imports.
//!
//! A `SwarmRuntime` is built once at load: the swarm's counters, admission
//! slots and health, the scope its capabilities share, and each
//! capability's own state (`imports::{log, credentials, http_proxy,
//! storage}`). A
//! `HostState` is built for each task and dropped with the task's store, so
//! nothing a guest does outlives its task — unless the contract keeps
//! instances warm (`[instances]`), when a clean instance's state is made
//! the next task's own ([`HostState::next_task`]); it hands each capability
//! its per-task view. This module depends on `imports/`, never the other way.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::contract::ServiceContract;
use crate::error::Error;
use crate::events::Events;
use crate::governor::throttle::Throttle;
use crate::health::SwarmHealth;
use crate::imports::credentials::{CredentialsHost, CredentialsState};
use crate::imports::http_proxy::{ProxyHost, ProxyState};
use crate::imports::log::{GuestLogSink, LogHost, LogState};
use crate::imports::scope::{Phase, Scoped, SwarmScope, TaskScope, TaskShared};
use crate::imports::storage::{StorageHost, StorageState};
use crate::limits::{
    Admission, CpuGovernor, CpuMark, LogBudget, PeriodBudget, QueueConfig, SwarmCounters,
    TaskLimiter,
};
use crate::secrets::SecretStore;

/// What the host hands every swarm it loads.
pub(crate) struct HostParts<'a> {
    pub(crate) queue: QueueConfig,
    pub(crate) events: &'a Events,
    pub(crate) secrets: &'a SecretStore,
    pub(crate) tls: &'a Arc<tokio_rustls::rustls::ClientConfig>,
    pub(crate) log_sink: Option<&'a Arc<dyn GuestLogSink>>,
    pub(crate) store: Option<&'a Arc<dyn crate::storage::Store>>,
    pub(crate) stopping: &'a Arc<AtomicBool>,
}

/// What a loaded swarm's tasks share.
pub(crate) struct SwarmRuntime {
    pub(crate) contract: Arc<ServiceContract>,
    pub(crate) counters: Arc<SwarmCounters>,
    /// Shared with the version it replaced when both have the same
    /// `max_concurrent_tasks`: the bound holds across a swap.
    pub(crate) admission: Arc<Admission>,
    /// The governor's throttle over `admission` (shared with it).
    pub(crate) throttle: Arc<Throttle>,
    pub(crate) events: Events,
    /// When the swarm was loaded (a replacement carries on its
    /// predecessor's, as it does its counters): the span its usage
    /// counters cover.
    pub(crate) loaded_at: Instant,
    /// Its SLO figures and reputation.
    pub(crate) health: Arc<SwarmHealth>,
    /// What every capability shares: identity, call rate, violations.
    pub(crate) scope: SwarmScope,
    /// The capabilities, each with its own per-swarm state.
    pub(crate) log: LogState,
    pub(crate) credentials: CredentialsState,
    pub(crate) proxy: ProxyState,
    pub(crate) storage: StorageState,
    /// Its budgets for the period (`[budget]`), if it has any; what a
    /// previous version spent carries on.
    pub(crate) budget: Option<Arc<PeriodBudget>>,
    /// Set when the host stops: running tasks end at their next epoch tick.
    pub(crate) stopping: Arc<AtomicBool>,
}

impl SwarmRuntime {
    /// Build the state of a swarm being loaded under `contract`. A new
    /// version replacing `previous` carries on its counters (the proxy's
    /// byte counters and the load time with them), its health
    /// (SLO window, reputation, quarantine: the swarm is the same one) and
    /// its log sink, and its admission slots and throttle when
    /// `max_concurrent_tasks` is unchanged; everything else starts fresh.
    /// The health and the throttle take the new contract's settings only
    /// when the new version is swapped in (`registry.rs`).
    pub(crate) fn new(
        contract: Arc<ServiceContract>,
        host: HostParts<'_>,
        previous: Option<&SwarmRuntime>,
    ) -> Result<Self, Error> {
        let HostParts {
            queue,
            events,
            secrets,
            tls,
            log_sink,
            store,
            stopping,
        } = host;
        let events = events.clone();
        let credentials = CredentialsState::new(&contract, secrets)?;
        let storage = StorageState::new(&contract, store)?;
        let limits = &contract.resource_limits;
        let budget =
            PeriodBudget::new(&contract.budget, previous.and_then(|p| p.budget.as_deref()))
                .map(Arc::new);
        let (counters, health, log_sink) = match previous {
            Some(previous) => (
                previous.counters.clone(),
                previous.health.clone(),
                previous.log.sink(),
            ),
            None => (
                Arc::new(SwarmCounters::default()),
                Arc::new(SwarmHealth::new(&contract, events.clone())),
                log_sink.cloned(),
            ),
        };
        let (admission, throttle) = match previous {
            Some(p)
                if p.contract.resource_limits.max_concurrent_tasks
                    == limits.max_concurrent_tasks =>
            {
                (p.admission.clone(), p.throttle.clone())
            }
            _ => {
                let admission = Arc::new(Admission::new(
                    limits.max_concurrent_tasks,
                    queue,
                    counters.clone(),
                ));
                let throttle = Arc::new(Throttle::new(
                    &contract,
                    admission.clone(),
                    events.clone(),
                    health.clone(),
                ));
                (admission, throttle)
            }
        };
        Ok(Self {
            scope: SwarmScope::new(
                &contract.swarm_id,
                limits.max_api_calls_per_second,
                events.clone(),
                counters.clone(),
                credentials.redactor(),
                health.clone(),
            ),
            admission,
            throttle,
            loaded_at: previous.map_or_else(Instant::now, |p| p.loaded_at),
            log: LogState::new(
                LogBudget::new(
                    limits.max_log_lines_per_second,
                    limits.max_log_bytes_per_second,
                ),
                log_sink,
            ),
            proxy: ProxyState::new(
                &contract,
                tls.clone(),
                previous
                    .map(|p| p.proxy.traffic().clone())
                    .unwrap_or_default(),
                budget.clone(),
            ),
            budget,
            storage,
            credentials,
            health,
            stopping: stopping.clone(),
            counters,
            events,
            contract,
        })
    }

    pub(crate) fn swarm_id(&self) -> &str {
        &self.contract.swarm_id
    }

    /// Whether a budget of its `[budget]` is spent for the period now.
    pub(crate) fn budget_spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| b.check(std::time::SystemTime::now()).is_err())
    }

    /// Whether its new tasks are refused for what it is: quarantined, a
    /// budget spent, or its circuit refusing.
    pub(crate) fn holding_back(&self) -> bool {
        self.health.lock().reputation.quarantined || self.budget_spent() || self.throttle.refusing()
    }
}

/// The data of one task's `Store`: the task's scope, its WASI context and
/// its limits. Built for each task (`runner/`) and dropped with the
/// store, so nothing a guest does outlives its task; on a warm instance
/// (`[instances]`) made anew for each task by `HostState::next_task`.
pub struct HostState {
    pub(crate) swarm: Arc<SwarmRuntime>,
    pub(crate) task: TaskScope,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: TaskLimiter,
    pub(crate) governor: CpuGovernor,
    /// Where the task's current run began (for its CPU time).
    pub(crate) cpu_mark: CpuMark,
    /// The task's CPU time charged to the swarm's CPU budget so far.
    pub(crate) budget_charged: std::time::Duration,
    pub(crate) deadline: Instant,
}

impl HostState {
    /// A task's CPU governor under `contract`, starting `now`: its own
    /// share of a core, and the swarm's, if it has one.
    pub(crate) fn governor(
        contract: &ServiceContract,
        counters: &Arc<SwarmCounters>,
        now: Instant,
    ) -> CpuGovernor {
        CpuGovernor::new(contract.resource_limits.max_cpu_percent, now)
            .with_swarm_share(contract.swarm_limits.max_cpu_percent, counters.clone())
    }

    /// Make this state, kept from a task that ended cleanly, the state of
    /// the next task `task_id`, ending `timeout` from now: everything a
    /// task has of its own is new (its scope and counts, its WASI context
    /// `wasi` with stdout and stderr bound to it, its resource table, its
    /// CPU governor and deadline, its peak memory); the instance's memory
    /// stays, and stays counted as the swarm's. The store's allowances are given back with
    /// [`crate::runner::arm`].
    pub(crate) fn next_task(
        &mut self,
        task_id: &Arc<str>,
        shared: &Arc<TaskShared>,
        wasi: WasiCtx,
        timeout: std::time::Duration,
    ) {
        let now = Instant::now();
        let swarm = self.swarm.clone();
        self.task = TaskScope::new(task_id.clone(), Phase::Task, shared.clone());
        self.wasi = wasi;
        // Empty (an instance holding a host resource is never kept), and
        // new, so that no capacity a guest made it grow carries over.
        self.table = ResourceTable::new();
        self.limiter.next_task();
        self.governor = Self::governor(&swarm.contract, &swarm.counters, now);
        self.cpu_mark = CpuMark::default();
        self.budget_charged = std::time::Duration::ZERO;
        self.deadline = now + timeout;
    }

    /// Record what the task did that is recorded at its end (its repeated
    /// credential grants) and forget it: after each task of a warm
    /// instance, and when a store is dropped.
    pub(crate) fn end_task(&mut self) {
        let (swarm, scoped) = self.scoped();
        swarm.credentials.record_repeats(&scoped);
        self.task.grants.clear();
    }

    /// The swarm's contract.
    pub(crate) fn contract(&self) -> &ServiceContract {
        &self.swarm.contract
    }

    /// The swarm, and who is calling: what every capability's view holds.
    fn scoped(&mut self) -> (&SwarmRuntime, Scoped<'_>) {
        let swarm: &SwarmRuntime = &self.swarm;
        let scoped = Scoped {
            swarm: &swarm.scope,
            task: &mut self.task,
        };
        (swarm, scoped)
    }

    fn log(&mut self) -> LogHost<'_> {
        let (swarm, scoped) = self.scoped();
        LogHost {
            log: &swarm.log,
            scoped,
        }
    }

    fn credentials(&mut self) -> CredentialsHost<'_> {
        let (swarm, scoped) = self.scoped();
        CredentialsHost {
            credentials: &swarm.credentials,
            scoped,
        }
    }

    fn proxy(&mut self) -> ProxyHost<'_> {
        let deadline = self.deadline;
        let swarm: &SwarmRuntime = &self.swarm;
        ProxyHost {
            proxy: &swarm.proxy,
            credentials: &swarm.credentials,
            scoped: Scoped {
                swarm: &swarm.scope,
                task: &mut self.task,
            },
            deadline,
            waiting: &mut self.governor.waiting,
        }
    }

    fn storage(&mut self) -> StorageHost<'_> {
        let deadline = self.deadline;
        let swarm: &SwarmRuntime = &self.swarm;
        StorageHost {
            storage: &swarm.storage,
            scoped: Scoped {
                swarm: &swarm.scope,
                task: &mut self.task,
            },
            deadline,
            waiting: &mut self.governor.waiting,
        }
    }

    /// Add WASI 0.2 (inert unless the contract grants a capability, see
    /// [`crate::wasi`]) and each chassis capability to `linker`.
    pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        crate::bindings::types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
        crate::imports::log::add_to_linker(linker, HostState::log)?;
        crate::imports::credentials::add_to_linker(linker, HostState::credentials)?;
        crate::imports::http_proxy::add_to_linker(linker, HostState::proxy)?;
        crate::imports::storage::add_to_linker(linker, HostState::storage)?;
        Ok(())
    }
}

/// A task's credential grants beyond the first of each are recorded as its
/// store goes: after it ran (or was stopped, or its caller went away) and
/// before its terminal record.
impl Drop for HostState {
    fn drop(&mut self) {
        self.end_task();
    }
}

/// The `types` interface has no functions.
impl crate::bindings::types::Host for HostState {}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
