//! The host library's typed errors.
//!
//! Each variant names what was wrong (the file or swarm, the import and the
//! contract field, the task type) so the CLI can print it on one line.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contract::ContractError;

/// One import a contract does not permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRefusal {
    /// The import, as the component names it (e.g. `wasi:filesystem/types@0.2.6`).
    pub import: String,
    /// The contract field that decides it (`(none)` when nothing can grant it).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

fn describe_refusals(refusals: &[ImportRefusal]) -> String {
    let parts: Vec<String> = refusals
        .iter()
        .map(|r| {
            format!(
                "import `{}` is not permitted by the contract: {}: {}",
                r.import, r.field, r.reason
            )
        })
        .collect();
    parts.join("; ")
}

/// A `task-error` returned by a swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum GuestError {
    /// The swarm does not serve this task type.
    #[error("unknown task type: {0}")]
    UnknownTaskType(String),
    /// The payload was not what the task expects.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The task failed.
    #[error("failed: {0}")]
    Failed(String),
}

/// The variant of a [`GuestError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestErrorKind {
    /// `unknown-task-type`: the caller's mistake.
    UnknownTaskType,
    /// `invalid-payload`: the caller's mistake.
    InvalidPayload,
    /// `failed`: the swarm's own failure.
    Failed,
}

impl GuestErrorKind {
    /// Stable name: `unknown_task_type`, `invalid_payload` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestErrorKind::UnknownTaskType => "unknown_task_type",
            GuestErrorKind::InvalidPayload => "invalid_payload",
            GuestErrorKind::Failed => "failed",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::UnknownTaskType, Self::InvalidPayload, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for GuestErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GuestError {
    /// Which variant it is.
    pub fn kind(&self) -> GuestErrorKind {
        match self {
            GuestError::UnknownTaskType(_) => GuestErrorKind::UnknownTaskType,
            GuestError::InvalidPayload(_) => GuestErrorKind::InvalidPayload,
            GuestError::Failed(_) => GuestErrorKind::Failed,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            GuestError::UnknownTaskType(m)
            | GuestError::InvalidPayload(m)
            | GuestError::Failed(m) => m,
        }
    }
}

/// Everything the host library can refuse or fail with: a load refused
/// ([`LoadError`]), a task refused or ended by the host ([`TaskError`]),
/// or what either can meet (a swarm not loaded, an instance that would not
/// start, an audit log that cannot record, the engine, the cache). What an
/// error means to a caller — its [`ErrorKind`], HTTP status and whether a
/// retry elsewhere can help — is [`Error::kind`], from one table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading (or replacing) a swarm was refused.
    #[error(transparent)]
    Load(#[from] LoadError),

    /// A task was refused, or ended by the host.
    #[error(transparent)]
    Task(#[from] TaskError),

    /// No swarm with this id is loaded.
    #[error("swarm {0:?} is not loaded")]
    NotLoaded(String),

    /// Instantiating the component (or asking it what it serves) failed.
    #[error("swarm {swarm_id:?}: could not be started: {reason}")]
    Instantiate {
        /// The swarm.
        swarm_id: String,
        /// What went wrong.
        reason: String,
    },

    /// An event sink (the audit log) cannot record, so nothing new may run.
    #[error("{reason}: the host refuses new loads and tasks until its audit log works")]
    AuditUnavailable {
        /// What the sink reported.
        reason: String,
    },

    /// The engine could not be configured.
    #[error("engine configuration failed: {0}")]
    Engine(String),

    /// The component cache directory cannot be used.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),

    /// A task addressed to a capability found no swarm to run it.
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Why a task addressed to a capability found no swarm.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No loaded swarm declares the capability and serves the task type.
    #[error(
        "no loaded swarm declares capability {capability:?} and serves task type {task_type:?}{}",
        if declared_by.is_empty() { String::new() } else { format!(" (it is declared by {}, which do not serve that task type)", declared_by.join(", ")) }
    )]
    NotServed {
        /// The capability (bounded and escaped).
        capability: String,
        /// The task type (bounded and escaped).
        task_type: String,
        /// The swarms that declare it but serve other task types.
        declared_by: Vec<String>,
    },
    /// Every swarm that could run it is left out now.
    #[error(
        "no swarm can be chosen for capability {capability:?} and task type {task_type:?} now: {}",
        excluded.iter().map(|(s, why)| format!("{s}: {why}")).collect::<Vec<_>>().join("; ")
    )]
    NoneEligible {
        /// The capability (bounded and escaped).
        capability: String,
        /// The task type (bounded and escaped).
        task_type: String,
        /// Each candidate and why it was left out.
        excluded: Vec<(String, String)>,
    },
}

/// Why a swarm was not loaded (or replaced): its contract, its component's
/// bytes, exports and imports against the contract, its `describe` answer,
/// its secrets, or the host's room for it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The contract could not be read or is invalid.
    #[error(transparent)]
    Contract(#[from] ContractError),

    /// A component file could not be read.
    #[error("{}: cannot read component: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A contract loaded from a file has no `wasm_module`.
    #[error("{}: wasm_module: missing; say which component this contract is for", path.display())]
    MissingWasmModule {
        /// The contract file.
        path: PathBuf,
    },

    /// A swarm with this id is already loaded.
    #[error("swarm {0:?} is already loaded; unload it first")]
    AlreadyLoaded(String),

    /// The loaded swarm changed (replaced, unloaded or loaded by another
    /// call) while this replacement was being checked; nothing was swapped.
    #[error(
        "swarm {0:?} changed while its new version was being loaded; nothing was replaced (try again)"
    )]
    ChangedWhileLoading(String),

    /// The swarm is served from a contract file `chassis serve` watches:
    /// that file decides its version, not a load from elsewhere.
    #[error(
        "swarm {swarm_id:?} is served from the watched contract file {}: change that file to replace it",
        file.display()
    )]
    Watched {
        /// The swarm.
        swarm_id: String,
        /// The watched file.
        file: PathBuf,
    },

    /// The swarm is served from a deployment to the fleet (`chassis
    /// deploy`): the deployments bucket decides its version.
    #[error(
        "swarm {swarm_id:?} is served from the fleet's deployment of bundle {bundle}: deploy a new version with `chassis deploy` instead"
    )]
    Deployed {
        /// The swarm.
        swarm_id: String,
        /// The bundle's SHA-256.
        bundle: String,
    },

    /// The bytes are not WebAssembly at all.
    #[error("{origin}: not a valid wasm file: {reason}")]
    NotWasm {
        /// Where the bytes came from.
        origin: String,
        /// What is wrong with them.
        reason: String,
    },

    /// The bytes are a core module, not a component.
    #[error(
        "{origin}: is a core WebAssembly module, but a component is expected \
         (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Where the bytes came from.
        origin: String,
    },

    /// The component failed validation or compilation.
    #[error("{origin}: invalid component: {reason}")]
    InvalidComponent {
        /// Where the bytes came from.
        origin: String,
        /// wasmtime's explanation.
        reason: String,
    },

    /// The component does not export the task interface.
    #[error("{origin}: does not export `{expected}`, so it is not a swarm (it exports: {found})")]
    MissingTaskExport {
        /// Where the bytes came from.
        origin: String,
        /// The interface a swarm must export.
        expected: String,
        /// What it exports instead.
        found: String,
    },

    /// The component imports something its contract does not grant.
    #[error("{origin}: {}", describe_refusals(refusals))]
    ImportNotPermitted {
        /// Where the bytes came from.
        origin: String,
        /// Every refused import, in the component's order.
        refusals: Vec<ImportRefusal>,
    },

    /// The swarm's `describe` answer is not a list of task types the host
    /// accepts: 1 to 256 plain names of at most 64 bytes (`docs/contract.md`).
    #[error("swarm {swarm_id:?}: describe returned bad task types: {reason}")]
    BadTaskTypes {
        /// The swarm.
        swarm_id: String,
        /// What is wrong (bounded, escaped).
        reason: String,
    },

    /// Loading did not finish within the host's load timeout.
    #[error(
        "swarm {swarm_id:?}: loading did not finish within {seconds} s (its describe export did not answer; the host's load timeout, ChassisConfig::load_timeout, or task_timeout_seconds if shorter)"
    )]
    LoadTimeout {
        /// The swarm.
        swarm_id: String,
        /// The limit.
        seconds: f64,
    },

    /// A secret for the swarm cannot be used (a malformed signing key).
    #[error("swarm {swarm_id:?}: secret {key:?}: {reason}")]
    BadSecret {
        /// The swarm.
        swarm_id: String,
        /// The key name (never the value).
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// The contract grants storage, and the host has no object store.
    #[error(
        "swarm {swarm_id:?}: its contract grants storage (storage.access), but this host has no object store (ChassisConfig::with_store; for chassis serve and chassis run, a storage directory)"
    )]
    NoStore {
        /// The swarm.
        swarm_id: String,
    },

    /// The host's instance pool cannot take this contract.
    #[error("swarm {swarm_id:?}: {reason}")]
    PoolTooSmall {
        /// The swarm.
        swarm_id: String,
        /// What does not fit.
        reason: String,
    },
}

/// Why a task was refused or ended by the host: the task itself (its type,
/// id or payload), a limit of the contract, the guest's fault, its answer,
/// or the swarm's state (busy, quarantined).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task type is not one the swarm lists in `describe`.
    #[error(
        "swarm {swarm_id:?}: task not exported by swarm: {task_type:?} (it serves: {available})"
    )]
    TaskNotExported {
        /// The swarm.
        swarm_id: String,
        /// The requested task type.
        task_type: String,
        /// The task types it does serve.
        available: String,
    },

    /// The task ran past its wall-clock limit.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: timed out after {seconds} s (task_timeout_seconds)"
    )]
    Timeout {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The limit that was hit.
        seconds: f64,
    },

    /// The guest grew its memory (or a table) past its limit.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: memory limit exceeded (max_memory_mb = {limit_mb}): {detail}"
    )]
    MemoryLimit {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The contract's limit.
        limit_mb: u32,
        /// What it asked for.
        detail: String,
    },

    /// The guest grew its memory while the swarm's running tasks together
    /// held all the swarm may (`swarm_limits.max_memory_mb`).
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: the swarm's memory limit exceeded (swarm_limits.max_memory_mb = {limit_mb}, summed over its running tasks): {detail}"
    )]
    SwarmMemoryLimit {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The contract's swarm-wide limit.
        limit_mb: u32,
        /// What it asked for.
        detail: String,
    },

    /// The guest grew a table past the host's table limit.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: table limit exceeded (at most {limit_elements} elements per table, a host limit): {detail}"
    )]
    TableLimit {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The host's limit.
        limit_elements: usize,
        /// What it asked for.
        detail: String,
    },

    /// The guest used up its fuel (`max_fuel`).
    #[error("swarm {swarm_id:?} task {task_id:?}: CPU budget exhausted (max_fuel = {fuel})")]
    CpuBudget {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The budget.
        fuel: u64,
    },

    /// The guest overflowed its wasm stack.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: stack overflow (wasm stack limit {limit_bytes} bytes)"
    )]
    StackOverflow {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The stack limit.
        limit_bytes: usize,
    },

    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    #[error("swarm {swarm_id:?} task {task_id:?}: trapped: {message}")]
    Trap {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The trap, and the guest's own message (its last stderr lines) when it left one.
        message: String,
    },

    /// All of the swarm's slots are busy and its wait queue is full, or
    /// the task waited too long for a slot.
    #[error("swarm {swarm_id:?}: overloaded: {reason}")]
    Overloaded {
        /// The swarm.
        swarm_id: String,
        /// Which of the two.
        reason: String,
    },

    /// One of the swarm's budgets for the period (`[budget]`) is spent: a
    /// new task is refused, and the task that spent the CPU budget is
    /// stopped.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: the swarm's {} budget of {limit} per {period_seconds} s is spent; it renews at {renews_at} (in {} s)",
        budget.as_str(),
        retry_after.as_secs()
    )]
    BudgetExhausted {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Which budget.
        budget: crate::limits::BudgetKind,
        /// Its limit per period, in its unit (seconds, bytes, tasks).
        limit: f64,
        /// The period's length.
        period_seconds: u64,
        /// When it renews (RFC 3339).
        renews_at: String,
        /// How long until then (at least a second).
        retry_after: Duration,
    },

    /// The swarm's circuit is open after a run of failures, or its probe
    /// task is running: the task is refused at once (`docs/governor.md`).
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: refused: {reason} (try again in {:.1} s)",
        retry_after.as_secs_f64()
    )]
    CircuitOpen {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Open or half open, and since what.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },

    /// The guest kept calling imports after being refused for rate.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: rate limited: {refused} import calls refused (max_api_calls_per_second = {rate}); task ended"
    )]
    RateLimited {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Calls refused in the task.
        refused: u64,
        /// The contract's rate.
        rate: u32,
    },

    /// The guest passed the host more data in one call than allowed.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: too much data passed to the host in one call (limit {limit_bytes} bytes)"
    )]
    HostcallTooLarge {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The limit.
        limit_bytes: usize,
    },

    /// The task's output is larger than allowed.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: output of {bytes} bytes is over the {limit_bytes} byte limit"
    )]
    OutputTooLarge {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },

    /// The caller stopped waiting (dropped the task's future, or a client
    /// went away) before the task ended; it was stopped there.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: cancelled: the caller went away before the task ended"
    )]
    Cancelled {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
    },

    /// The caller's task id was refused before the task ran: empty, too
    /// long, or holding a control or bidirectional character.
    #[error("swarm {swarm_id:?}: task id refused: {reason}")]
    InvalidTaskId {
        /// The swarm.
        swarm_id: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The caller's input could not be made a payload ([`crate::Chassis::call`]).
    #[error("swarm {swarm_id:?}: the input cannot be sent as a JSON payload: {reason}")]
    InvalidPayload {
        /// The swarm.
        swarm_id: String,
        /// The serializer's complaint.
        reason: String,
    },

    /// The swarm answered with its own error (a `task-error`). Only
    /// [`crate::TaskOutcome::into_result`] and [`crate::Chassis::call`]
    /// return it: [`crate::Chassis::execute_task`] gives the swarm's
    /// answer, error or not, as a [`crate::TaskOutcome`].
    #[error("swarm {swarm_id:?} task {task_id:?}: {error}")]
    Guest {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// What the swarm said.
        error: GuestError,
    },

    /// The guest reported success but its output is not JSON (or, for
    /// [`crate::Chassis::call`], not the type asked for).
    #[error("swarm {swarm_id:?} task {task_id:?}: output is not valid JSON: {reason}")]
    InvalidOutput {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The JSON parser's complaint.
        reason: String,
    },

    /// The swarm is quarantined: its reputation fell under its threshold,
    /// or too many of its latest tasks failed.
    #[error("swarm {swarm_id:?} is quarantined: {reason}; an operator must release it")]
    Quarantined {
        /// The swarm.
        swarm_id: String,
        /// Its score.
        score: f64,
        /// The contract's threshold.
        threshold: f64,
        /// Why.
        reason: String,
    },
}

impl From<ContractError> for Error {
    fn from(e: ContractError) -> Self {
        Error::Load(LoadError::Contract(e))
    }
}

/// Declares [`ErrorKind`] from one table: each kind's name (as events, the
/// audit log and HTTP answers write it), its HTTP status, and whether the
/// same task may succeed on another host (a queue's worker hands it back
/// rather than answer it).
macro_rules! error_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal, $status:literal, $elsewhere:literal;)*) => {
        /// The kind of an [`Error`], for matching, events and the audit log.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)*
        }

        /// Written as its name, [`ErrorKind::as_str`].
        impl serde::Serialize for ErrorKind {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ErrorKind {
            /// Every kind.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// Stable name (snake case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $name,)*
                }
            }

            /// The HTTP status `chassis serve` answers an error of this kind
            /// with ([`Error::http_status`] refines it for one error).
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorKind::$kind => $status,)*
                }
            }

            /// Whether the task may succeed elsewhere (another worker, or
            /// this one later): the host's state refused it, not the task.
            pub fn retry_elsewhere(self) -> bool {
                match self {
                    $(ErrorKind::$kind => $elsewhere,)*
                }
            }
        }
    };
}

error_kinds! {
    /// The contract is invalid or unreadable.
    Contract => "contract", 422, false;
    /// A file could not be read.
    Io => "io", 422, false;
    /// The bytes are not wasm, are a core module, or are an invalid component.
    InvalidComponent => "invalid_component", 422, false;
    /// The component does not fit its contract (exports, imports, pool).
    NotPermitted => "not_permitted", 422, false;
    /// The swarm is already loaded / not loaded.
    Registry => "registry", 404, true;
    /// The task type is not served.
    TaskNotExported => "task_not_exported", 422, false;
    /// `task_timeout_seconds`.
    Timeout => "timeout", 504, false;
    /// `max_memory_mb` or table growth.
    Memory => "memory", 500, false;
    /// `max_fuel`.
    CpuBudget => "cpu_budget", 500, false;
    /// The wasm stack.
    StackOverflow => "stack_overflow", 500, false;
    /// A trap with the guest's message.
    Trap => "trap", 500, false;
    /// `max_concurrent_tasks` and the queue.
    Overloaded => "overloaded", 429, true;
    /// `max_api_calls_per_second`.
    RateLimited => "rate_limited", 429, false;
    /// A budget per period (`[budget]`) is spent until the next period.
    BudgetExhausted => "budget_exhausted", 429, true;
    /// Output or hostcall size caps.
    TooLarge => "too_large", 500, false;
    /// Output not JSON (or not the type asked for).
    InvalidOutput => "invalid_output", 500, false;
    /// The swarm answered with its own error.
    Guest => "guest_error", 500, false;
    /// The caller's input is not a JSON payload, or its task id is refused.
    InvalidPayload => "invalid_payload", 400, false;
    /// The caller went away before the task ended (nginx's 499: nobody
    /// reads the answer).
    Cancelled => "cancelled", 499, true;
    /// Starting the component failed (this host's instance pool, not the
    /// task).
    Instantiate => "instantiate", 500, true;
    /// The swarm is quarantined.
    Quarantined => "quarantined", 503, true;
    /// The swarm's circuit is open (or its probe is running).
    CircuitOpen => "circuit_open", 503, true;
    /// Host set-up.
    Engine => "engine", 500, false;
    /// The audit log cannot record.
    Audit => "audit", 503, true;
    /// No loaded swarm declares the capability and serves the task type.
    NoCapableSwarm => "no_capable_swarm", 404, false;
    /// Every swarm that serves the capability is left out now
    /// (quarantined, under its selection threshold, out of budget).
    NoEligibleSwarm => "no_eligible_swarm", 503, true;
}

impl ErrorKind {
    /// The kind named `name` ([`ErrorKind::as_str`]), as events and the
    /// audit log write it.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl Error {
    /// The HTTP status `chassis serve` answers this error with: its kind's
    /// ([`ErrorKind::http_status`]), but 409 for a swarm that is loaded
    /// already, changed while it loaded, or is a watched file's.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Load(
                LoadError::AlreadyLoaded(_)
                | LoadError::ChangedWhileLoading(_)
                | LoadError::Watched { .. }
                | LoadError::Deployed { .. },
            ) => 409,
            _ => self.kind().http_status(),
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Load(e) => e.kind(),
            Error::Task(e) => e.kind(),
            Error::NotLoaded(_) => ErrorKind::Registry,
            Error::Cache(_) => ErrorKind::Io,
            Error::Instantiate { .. } => ErrorKind::Instantiate,
            Error::Engine(_) => ErrorKind::Engine,
            Error::AuditUnavailable { .. } => ErrorKind::Audit,
            Error::Route(RouteError::NotServed { .. }) => ErrorKind::NoCapableSwarm,
            Error::Route(RouteError::NoneEligible { .. }) => ErrorKind::NoEligibleSwarm,
        }
    }

    /// The resource limit this error reports, if it is one.
    pub fn limit(&self) -> Option<crate::limits::LimitKind> {
        match self {
            Error::Task(e) => e.limit(),
            _ => None,
        }
    }

    /// When trying again may succeed, for an error that knows (a spent
    /// budget: when it renews).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Task(
                TaskError::BudgetExhausted { retry_after, .. }
                | TaskError::CircuitOpen { retry_after, .. },
            ) => Some(*retry_after),
            _ => None,
        }
    }
}

impl LoadError {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Contract(_)
            | LoadError::MissingWasmModule { .. }
            | LoadError::NoStore { .. }
            | LoadError::BadSecret { .. } => ErrorKind::Contract,
            LoadError::Io { .. } => ErrorKind::Io,
            LoadError::NotWasm { .. }
            | LoadError::CoreModule { .. }
            | LoadError::InvalidComponent { .. }
            | LoadError::BadTaskTypes { .. } => ErrorKind::InvalidComponent,
            LoadError::LoadTimeout { .. } => ErrorKind::Instantiate,
            LoadError::MissingTaskExport { .. }
            | LoadError::ImportNotPermitted { .. }
            | LoadError::PoolTooSmall { .. } => ErrorKind::NotPermitted,
            LoadError::AlreadyLoaded(_)
            | LoadError::ChangedWhileLoading(_)
            | LoadError::Watched { .. }
            | LoadError::Deployed { .. } => ErrorKind::Registry,
        }
    }
}

impl TaskError {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TaskError::TaskNotExported { .. } => ErrorKind::TaskNotExported,
            TaskError::Timeout { .. } => ErrorKind::Timeout,
            TaskError::MemoryLimit { .. }
            | TaskError::SwarmMemoryLimit { .. }
            | TaskError::TableLimit { .. } => ErrorKind::Memory,
            TaskError::CpuBudget { .. } => ErrorKind::CpuBudget,
            TaskError::StackOverflow { .. } => ErrorKind::StackOverflow,
            TaskError::Trap { .. } => ErrorKind::Trap,
            TaskError::Overloaded { .. } => ErrorKind::Overloaded,
            TaskError::BudgetExhausted { .. } => ErrorKind::BudgetExhausted,
            TaskError::RateLimited { .. } => ErrorKind::RateLimited,
            TaskError::HostcallTooLarge { .. } | TaskError::OutputTooLarge { .. } => {
                ErrorKind::TooLarge
            }
            TaskError::InvalidOutput { .. } => ErrorKind::InvalidOutput,
            TaskError::Guest { .. } => ErrorKind::Guest,
            TaskError::InvalidPayload { .. } | TaskError::InvalidTaskId { .. } => {
                ErrorKind::InvalidPayload
            }
            TaskError::Cancelled { .. } => ErrorKind::Cancelled,
            TaskError::Quarantined { .. } => ErrorKind::Quarantined,
            TaskError::CircuitOpen { .. } => ErrorKind::CircuitOpen,
        }
    }

    /// The resource limit this error reports, if it is one.
    pub fn limit(&self) -> Option<crate::limits::LimitKind> {
        use crate::limits::LimitKind;
        Some(match self {
            TaskError::Timeout { .. } => LimitKind::Timeout,
            TaskError::MemoryLimit { .. }
            | TaskError::SwarmMemoryLimit { .. }
            | TaskError::TableLimit { .. } => LimitKind::Memory,
            TaskError::CpuBudget { .. } => LimitKind::CpuBudget,
            TaskError::StackOverflow { .. } => LimitKind::StackOverflow,
            TaskError::Overloaded { .. } => LimitKind::Overloaded,
            TaskError::RateLimited { .. } => LimitKind::RateLimited,
            TaskError::OutputTooLarge { .. } => LimitKind::OutputSize,
            TaskError::HostcallTooLarge { .. } => LimitKind::HostcallSize,
            _ => return None,
        })
    }
}

/// An error and its causes on one line, escaped and bounded: wasmtime's
/// messages can quote names from the component.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    crate::text::escape(&parts.join(": ").replace('\n', " "), 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A load's refusal and a task's are told apart by type, and keep
    /// their kind, status and limit through [`Error`].
    #[test]
    fn load_and_task_errors_keep_their_meaning_through_error() {
        let load: Error = LoadError::AlreadyLoaded("s".into()).into();
        assert!(matches!(load, Error::Load(LoadError::AlreadyLoaded(_))));
        assert_eq!(
            (load.kind(), load.http_status()),
            (ErrorKind::Registry, 409)
        );
        let task: Error = TaskError::Timeout {
            swarm_id: "s".into(),
            task_id: "t".into(),
            seconds: 1.0,
        }
        .into();
        assert_eq!(task.kind(), ErrorKind::Timeout);
        assert_eq!(task.limit(), Some(crate::limits::LimitKind::Timeout));
        assert_eq!(task.http_status(), 504);
        let contract = crate::ServiceContract::from_toml("swarm_id = 1", "<inline>").unwrap_err();
        assert!(matches!(
            Error::from(contract),
            Error::Load(LoadError::Contract(_))
        ));
    }

    /// The one table of kinds: each name unique and read back, each status
    /// an error status (the caller's mistakes 4xx, the host's or the
    /// guest's 5xx), and a retry elsewhere only where this host's state
    /// refused the task.
    #[test]
    fn every_kind_has_one_name_one_status_and_one_retry_rule() {
        let mut names = std::collections::HashSet::new();
        for &kind in ErrorKind::ALL {
            assert!(names.insert(kind.as_str()), "{kind:?}");
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
            // Serialized under the same name events and answers use.
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert!((400..600).contains(&kind.http_status()), "{kind:?}");
        }
        assert_eq!(ErrorKind::ALL.len(), 26);
        let status = |k: ErrorKind| k.http_status();
        assert_eq!(status(ErrorKind::InvalidPayload), 400);
        for k in [
            ErrorKind::Contract,
            ErrorKind::TaskNotExported,
            ErrorKind::NotPermitted,
        ] {
            assert_eq!(status(k), 422, "{k:?}");
        }
        for k in [
            ErrorKind::Overloaded,
            ErrorKind::RateLimited,
            ErrorKind::BudgetExhausted,
        ] {
            assert_eq!(status(k), 429, "{k:?}");
        }
        for k in [
            ErrorKind::Quarantined,
            ErrorKind::CircuitOpen,
            ErrorKind::Audit,
        ] {
            assert_eq!(status(k), 503, "{k:?}");
        }
        assert_eq!(status(ErrorKind::Timeout), 504);
        for k in [
            ErrorKind::Trap,
            ErrorKind::Memory,
            ErrorKind::Guest,
            ErrorKind::Engine,
        ] {
            assert_eq!(status(k), 500, "{k:?}");
        }
        let elsewhere: Vec<ErrorKind> = ErrorKind::ALL
            .iter()
            .copied()
            .filter(|k| k.retry_elsewhere())
            .collect();
        assert_eq!(
            elsewhere,
            [
                ErrorKind::Registry,
                ErrorKind::Overloaded,
                ErrorKind::BudgetExhausted,
                ErrorKind::Cancelled,
                ErrorKind::Instantiate,
                ErrorKind::Quarantined,
                ErrorKind::CircuitOpen,
                ErrorKind::Audit,
                ErrorKind::NoEligibleSwarm,
            ]
        );
        // One error refines its kind's status: a conflict, not absent.
        assert_eq!(
            Error::Load(LoadError::AlreadyLoaded("s".into())).http_status(),
            409
        );
        assert_eq!(Error::NotLoaded("s".into()).http_status(), 404);
    }
}
