//! Service contracts: what a swarm may do and how much.
//!
//! A contract is a TOML file (same field names as the seed YAML documents).
//! [`ServiceContract::from_file`] and [`ServiceContract::from_toml`] parse it
//! with unknown fields denied, fill in the documented defaults, then
//! validate every range. Every error names the file, the line and column, and
//! the dotted field path (see [`ContractError`]).
//!
//! This module knows nothing of wasmtime: the host turns a validated contract
//! into store limits, linker decisions and policies elsewhere.
//! `docs/contract.md` is the reference for every field.

mod locate;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use validate::{
    GATED_WASI_CAPABILITIES, KNOWN_CAPABILITY_DOMAINS, KNOWN_WASI_CAPABILITIES, MAX_LABELS,
    MIN_RESPONSE_TIME_MS, MIN_TASK_TIMEOUT_SECONDS, check_label,
};

/// When a contract was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CreatedAt {
    /// A TOML datetime (`created_at = 2025-11-12T00:00:00Z`).
    Datetime(toml::value::Datetime),
    /// Seconds since the Unix epoch (`created_at = 1762905600.0`).
    UnixSeconds(f64),
}

impl<'de> Deserialize<'de> for CreatedAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(d)? {
            toml::Value::Datetime(t) => Ok(CreatedAt::Datetime(t)),
            toml::Value::Integer(n) if n >= 0 => Ok(CreatedAt::UnixSeconds(n as f64)),
            toml::Value::Float(x) if x.is_finite() && x >= 0.0 => Ok(CreatedAt::UnixSeconds(x)),
            other => Err(D::Error::custom(format!(
                "invalid type: {}, expected a TOML datetime or seconds since the Unix epoch",
                other.type_str()
            ))),
        }
    }
}

/// A parsed and validated service contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceContract {
    /// Unique identifier of the swarm (`[a-z0-9][a-z0-9._-]*`, at most 64 bytes).
    pub swarm_id: String,
    /// Path of the component, relative to the contract file. Required when the
    /// contract is loaded from a file; ignored when bytes are given directly.
    #[serde(default)]
    pub wasm_module: Option<PathBuf>,
    /// Contract version, free text.
    #[serde(default = "defaults::version")]
    pub version: String,
    /// When the contract was written (a TOML datetime, or seconds since the
    /// Unix epoch as the seed's `created_at: float` has it), informational.
    #[serde(default)]
    pub created_at: Option<CreatedAt>,
    /// What the swarm can do, as `domain:name` (for example `code-analysis:python`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Hard per-task resource limits.
    #[serde(default)]
    pub resource_limits: ResourceLimits,
    /// Limits on the swarm as a whole, across all its running tasks (none
    /// by default: each task is held to `resource_limits` only).
    #[serde(default, skip_serializing_if = "SwarmLimits::is_unset")]
    pub swarm_limits: SwarmLimits,
    /// What the swarm may spend per period, all its tasks together (none
    /// by default): once a budget is spent, new tasks are refused until it
    /// renews.
    #[serde(default, skip_serializing_if = "Budget::is_unset")]
    pub budget: Budget,
    /// How the governor throttles the swarm when it misses its SLOs and
    /// opens its circuit after a run of failures (`docs/governor.md`).
    #[serde(default, skip_serializing_if = "Throttle::is_default")]
    pub throttle: Throttle,
    /// Service level objectives the swarm is measured against.
    #[serde(default, alias = "slos")]
    pub slo_targets: SloTargets,
    /// What the swarm may reach outside its sandbox.
    #[serde(default)]
    pub security: Security,
    /// Reputation scoring parameters.
    #[serde(default)]
    pub reputation: Reputation,
    /// Objects kept between tasks through the `storage` import: none
    /// unless granted.
    #[serde(default)]
    pub storage: Storage,
    /// Where the swarm may be served when it is deployed to a fleet
    /// (`chassis deploy`): the worker labels it needs.
    #[serde(default, skip_serializing_if = "Placement::is_anywhere")]
    pub placement: Placement,
    /// Whether each task gets a fresh instance (the default) or one that
    /// ran the swarm's earlier tasks (`docs/warm-instances.md`).
    #[serde(default, skip_serializing_if = "Instances::is_fresh")]
    pub instances: Instances,
    /// Free-form information about the swarm (author, language, description...).
    #[serde(default)]
    pub metadata: BTreeMap<String, toml::Value>,
}

/// Hard limits applied to every task of a swarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Share of one CPU core a task may use, in percent (1–100).
    #[serde(default = "defaults::max_cpu_percent")]
    pub max_cpu_percent: u32,
    /// Linear memory a task may use, in MiB (1–4096).
    #[serde(default = "defaults::max_memory_mb")]
    pub max_memory_mb: u32,
    /// Outbound plus inbound HTTP proxy bandwidth, in megabits per second (0–10000).
    #[serde(default = "defaults::max_network_bandwidth_mbps")]
    pub max_network_bandwidth_mbps: u32,
    /// Tasks of this swarm running at once (1–1024).
    #[serde(default = "defaults::max_concurrent_tasks")]
    pub max_concurrent_tasks: u32,
    /// Wall-clock time a task may take, in seconds (0.01 to 86400).
    #[serde(
        default = "defaults::task_timeout_seconds",
        alias = "max_execution_time_seconds"
    )]
    pub task_timeout_seconds: f64,
    /// Credential and HTTP proxy calls per second, together (1–1000000).
    #[serde(default = "defaults::max_api_calls_per_second")]
    pub max_api_calls_per_second: u32,
    /// Log lines per second (log import, stdout and stderr together,
    /// 1–1000000); lines over it are dropped and counted.
    #[serde(default = "defaults::max_log_lines_per_second")]
    pub max_log_lines_per_second: u32,
    /// Log bytes per second (1024–1073741824); lines over it are dropped
    /// and counted.
    #[serde(default = "defaults::max_log_bytes_per_second")]
    pub max_log_bytes_per_second: u32,
    /// Deterministic CPU budget per task in wasm fuel units (about one per
    /// instruction); off when absent. Needs a host with fuel metering on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fuel: Option<u64>,
}

/// Service level objectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloTargets {
    /// 95th percentile task latency, in milliseconds (0.001 to 86400000).
    #[serde(
        default = "defaults::response_time_p95_ms",
        alias = "target_latency_ms"
    )]
    pub response_time_p95_ms: f64,
    /// Share of failed tasks, in percent (0–100).
    #[serde(default = "defaults::error_rate_percent")]
    pub error_rate_percent: f64,
    /// Share of time the swarm is up, in percent (0–100).
    #[serde(
        default = "defaults::availability_percent",
        alias = "target_availability_percent"
    )]
    pub availability_percent: f64,
    /// Expected sustained throughput, in tasks per second (0 or more).
    #[serde(default = "defaults::throughput_rps", alias = "target_throughput_rps")]
    pub throughput_rps: f64,
}

/// What a swarm may reach outside its sandbox. Everything is denied unless listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Names of the credentials the swarm may use.
    #[serde(default)]
    pub scoped_credentials: Vec<String>,
    /// WASI interfaces the swarm gets for real (see `docs/contract.md`).
    #[serde(default)]
    pub wasi_capabilities: Vec<String>,
    /// Filesystem access: only `none` exists.
    #[serde(default)]
    pub filesystem_access: FilesystemAccess,
    /// Network access: `none`, or `proxy_only` through the host's HTTP proxy.
    #[serde(default)]
    pub network_access: NetworkAccess,
    /// URLs (or URL patterns) the HTTP proxy may reach for this swarm.
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
}

/// Filesystem access a swarm may have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilesystemAccess {
    /// No filesystem: nothing is preopened.
    #[default]
    None,
}

/// Network access a swarm may have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkAccess {
    /// No network at all; the `http-proxy` import is refused at load time.
    #[default]
    None,
    /// Outbound HTTP only through the host's proxy, to `allowed_endpoints`.
    ProxyOnly,
}

/// `[swarm_limits]`: what the swarm may use as a whole, summed over its
/// running tasks, as a cgroup bounds a group of processes. Each is off
/// unless given; each must be at least its per-task counterpart in
/// `[resource_limits]` (one task alone may use its own limit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmLimits {
    /// Share of one CPU core all its running tasks together may use, in
    /// percent (1–102400): each task is held to this divided by the tasks
    /// running, or its own `max_cpu_percent` if that is less.
    pub max_cpu_percent: Option<u32>,
    /// Linear memory all its running instances together may hold, in MiB
    /// (1–1048576): growth past it is refused (`memory`).
    pub max_memory_mb: Option<u32>,
}

impl SwarmLimits {
    /// Whether no swarm-wide limit is set.
    pub fn is_unset(&self) -> bool {
        self.max_cpu_percent.is_none() && self.max_memory_mb.is_none()
    }
}

/// `[budget]`: what the swarm may spend per period, summed over all its
/// tasks. Each budget is off unless given. Periods are aligned to Unix time
/// (multiples of `period_seconds` since the epoch); a budget spent refuses
/// new tasks (`budget_exhausted`, 429) until the next period, and a task
/// that spends the CPU budget is stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// The period, in seconds (1–2592000; an hour by default).
    pub period_seconds: u64,
    /// CPU time its tasks may use per period, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Bytes through the HTTP proxy per period, both directions.
    pub network_bytes: Option<u64>,
    /// Tasks it may run per period.
    pub tasks: Option<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            period_seconds: 3600,
            cpu_seconds: None,
            network_bytes: None,
            tasks: None,
        }
    }
}

impl Budget {
    /// Whether no budget is set.
    pub fn is_unset(&self) -> bool {
        self.cpu_seconds.is_none() && self.network_bytes.is_none() && self.tasks.is_none()
    }
}

/// `[throttle]`: throttling that recovers (`docs/governor.md`). The
/// governor measures the swarm over windows of `window_tasks` tasks: a
/// window whose in-slot p95 latency or own-failure rate misses the
/// contract's `slo_targets` halves its concurrency (down to
/// `min_concurrency`), a window that meets them adds one slot back (up to
/// `max_concurrent_tasks`). After `circuit_failures` failures in a row by
/// the swarm's own doing its circuit opens: tasks are refused at once
/// (`circuit_open`, 503 with `Retry-After`) for `cool_down_seconds`, then
/// one probe task decides. A circuit that opens again before a healthy
/// window has passed doubles its cool-down; the opening after
/// `quarantine_after` of them quarantines the swarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// Whether SLO misses lower the concurrency (true).
    pub adaptive: bool,
    /// The fewest slots a throttled swarm keeps (1; at most
    /// `max_concurrent_tasks`).
    pub min_concurrency: u32,
    /// Tasks per measuring window (20; 1–10000).
    pub window_tasks: u32,
    /// Own failures in a row that open the circuit (0: no circuit). When
    /// absent, 5; or 0 when the contract turns the failure guard off
    /// (`reputation.max_failure_rate_percent = 100`: its failures are
    /// expected): [`ServiceContract::circuit_failures`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_failures: Option<u32>,
    /// How long an open circuit refuses before its probe, in seconds (30;
    /// 0.1–86400), doubled for each opening on probation.
    pub cool_down_seconds: f64,
    /// Openings without a healthy window between them before the swarm is
    /// quarantined (3; 0: never).
    pub quarantine_after: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            adaptive: true,
            min_concurrency: 1,
            window_tasks: 20,
            circuit_failures: None,
            cool_down_seconds: 30.0,
            quarantine_after: 3,
        }
    }
}

impl Throttle {
    /// Whether every setting is the default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The cool-down as a span.
    pub fn cool_down(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.cool_down_seconds)
    }
}

/// `[placement]`: the labels a worker of the fleet must have to serve the
/// swarm when it is deployed through NATS (`docs/scale-out.md`,
/// "Deploying"). None: every worker serves it. A contract file a worker
/// is given on its own disk is served wherever it is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Placement {
    /// Labels (`[a-z0-9][a-z0-9._-]*`, at most 64 bytes each, at most 32),
    /// all of which a worker must have.
    pub labels: Vec<String>,
}

impl Placement {
    /// Whether any worker may serve the swarm.
    pub fn is_anywhere(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether a worker with `labels` may serve it.
    pub fn admits(&self, labels: &[String]) -> bool {
        self.labels.iter().all(|l| labels.contains(l))
    }
}

/// `[instances]`: how many tasks one instance of the swarm runs. One (the
/// default): every task gets a fresh instance. More: an instance that
/// ended its task cleanly is kept warm for the swarm's next task, up to
/// this many tasks, so state in its memory crosses from one task to the
/// next (`docs/warm-instances.md` says what crosses and what never does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Instances {
    /// Tasks one instance runs before it is discarded (1–10000; 1: a fresh
    /// instance for every task).
    pub tasks_per_instance: u32,
}

impl Default for Instances {
    fn default() -> Self {
        Self {
            tasks_per_instance: 1,
        }
    }
}

impl Instances {
    /// Whether every task gets a fresh instance.
    pub fn is_fresh(&self) -> bool {
        self.tasks_per_instance <= 1
    }
}

/// The swarm's object store (the `storage` import): whether it may read or
/// write, and its quota. Objects live in the swarm's own namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// `none` (the default: the import is refused at load), `read_only` or
    /// `read_write`.
    pub access: StorageAccess,
    /// Bytes of all the swarm's objects together (10 MiB).
    pub max_total_bytes: u64,
    /// Number of objects (1,000).
    pub max_objects: u64,
    /// Bytes of one object (1 MiB; at most [`crate::caps::MAX_OBJECT_BYTES`]).
    pub max_object_bytes: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            access: StorageAccess::None,
            max_total_bytes: 10 * 1024 * 1024,
            max_objects: 1000,
            max_object_bytes: 1024 * 1024,
        }
    }
}

impl Storage {
    /// The quota the store enforces.
    pub fn quota(&self) -> crate::storage::Quota {
        crate::storage::Quota {
            max_bytes: self.max_total_bytes,
            max_objects: self.max_objects,
            max_object_bytes: self.max_object_bytes,
        }
    }
}

/// What a swarm may do with its object store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageAccess {
    /// No store: the `storage` import is refused at load.
    #[default]
    None,
    /// Read its objects; every write is refused (`denied`).
    ReadOnly,
    /// Read and write within the quota.
    ReadWrite,
}

/// Reputation parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reputation {
    /// Score the swarm starts with (0–1).
    #[serde(default = "defaults::initial_score")]
    pub initial_score: f64,
    /// Weight of SLO compliance in the score (0–1; the two weights sum to 1).
    #[serde(default = "defaults::slo_weight")]
    pub slo_weight: f64,
    /// Weight of security compliance in the score (0–1; the two weights sum to 1).
    #[serde(default = "defaults::security_weight")]
    pub security_weight: f64,
    /// Score under which the host quarantines the swarm (0–1).
    #[serde(default = "defaults::quarantine_threshold")]
    pub quarantine_threshold: f64,
    /// How many of the swarm's latest tasks the failure guard looks at (1–1000).
    #[serde(default = "defaults::failure_window")]
    pub failure_window: u32,
    /// The swarm is quarantined when, over a full `failure_window`, more
    /// than this share of its tasks failed by its own doing, in percent
    /// (0–100; 100 turns the guard off).
    #[serde(default = "defaults::max_failure_rate_percent")]
    pub max_failure_rate_percent: f64,
    /// The score under which capability routing no longer chooses the
    /// swarm (above `quarantine_threshold`, at most 1); the host's
    /// `selection_threshold` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_threshold: Option<f64>,
}

/// What a swarm's SLO figures and reputation are judged by: its
/// contract's `slo_targets` and `reputation`. The host records them with
/// each load, so a replay of the audit log judges every part of a swarm's
/// history by the settings then in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSettings {
    /// SLO targets.
    pub slo_targets: SloTargets,
    /// Reputation settings.
    pub reputation: Reputation,
}

/// Default values, from the seed documents where they give one.
pub mod defaults {
    /// `version`.
    pub fn version() -> String {
        "1.0".to_string()
    }
    /// `resource_limits.max_cpu_percent`: 25 % of one core.
    pub fn max_cpu_percent() -> u32 {
        25
    }
    /// `resource_limits.max_memory_mb`: 256 MiB.
    pub fn max_memory_mb() -> u32 {
        256
    }
    /// `resource_limits.max_network_bandwidth_mbps`: 1 Mbit/s.
    pub fn max_network_bandwidth_mbps() -> u32 {
        1
    }
    /// `resource_limits.max_concurrent_tasks`: one at a time.
    pub fn max_concurrent_tasks() -> u32 {
        1
    }
    /// `resource_limits.task_timeout_seconds`: 300 s (five minutes).
    pub fn task_timeout_seconds() -> f64 {
        300.0
    }
    /// `resource_limits.max_api_calls_per_second`: 10.
    pub fn max_api_calls_per_second() -> u32 {
        10
    }
    /// `resource_limits.max_log_lines_per_second`: 100.
    pub fn max_log_lines_per_second() -> u32 {
        100
    }
    /// `resource_limits.max_log_bytes_per_second`: 64 KiB.
    pub fn max_log_bytes_per_second() -> u32 {
        64 * 1024
    }
    /// `slo_targets.response_time_p95_ms`: 100 ms.
    pub fn response_time_p95_ms() -> f64 {
        100.0
    }
    /// `slo_targets.error_rate_percent`: 1 %.
    pub fn error_rate_percent() -> f64 {
        1.0
    }
    /// `slo_targets.availability_percent`: 99.9 %.
    pub fn availability_percent() -> f64 {
        99.9
    }
    /// `slo_targets.throughput_rps`: 10 tasks per second.
    pub fn throughput_rps() -> f64 {
        10.0
    }
    /// `reputation.initial_score`: 0.5 (untested).
    pub fn initial_score() -> f64 {
        0.5
    }
    /// `reputation.slo_weight`: 0.7.
    pub fn slo_weight() -> f64 {
        0.7
    }
    /// `reputation.security_weight`: 0.3.
    pub fn security_weight() -> f64 {
        0.3
    }
    /// `reputation.quarantine_threshold`: 0.2.
    pub fn quarantine_threshold() -> f64 {
        0.2
    }
    /// `reputation.failure_window`: the latest 20 tasks.
    pub fn failure_window() -> u32 {
        20
    }
    /// `reputation.max_failure_rate_percent`: 50 %.
    pub fn max_failure_rate_percent() -> f64 {
        50.0
    }
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_cpu_percent: defaults::max_cpu_percent(),
            max_memory_mb: defaults::max_memory_mb(),
            max_network_bandwidth_mbps: defaults::max_network_bandwidth_mbps(),
            max_concurrent_tasks: defaults::max_concurrent_tasks(),
            task_timeout_seconds: defaults::task_timeout_seconds(),
            max_api_calls_per_second: defaults::max_api_calls_per_second(),
            max_log_lines_per_second: defaults::max_log_lines_per_second(),
            max_log_bytes_per_second: defaults::max_log_bytes_per_second(),
            max_fuel: None,
        }
    }
}

impl Default for SloTargets {
    fn default() -> Self {
        Self {
            response_time_p95_ms: defaults::response_time_p95_ms(),
            error_rate_percent: defaults::error_rate_percent(),
            availability_percent: defaults::availability_percent(),
            throughput_rps: defaults::throughput_rps(),
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Self {
            scoped_credentials: Vec::new(),
            wasi_capabilities: Vec::new(),
            filesystem_access: FilesystemAccess::None,
            network_access: NetworkAccess::None,
            allowed_endpoints: Vec::new(),
        }
    }
}

impl Default for Reputation {
    fn default() -> Self {
        Self {
            initial_score: defaults::initial_score(),
            slo_weight: defaults::slo_weight(),
            security_weight: defaults::security_weight(),
            quarantine_threshold: defaults::quarantine_threshold(),
            failure_window: defaults::failure_window(),
            max_failure_rate_percent: defaults::max_failure_rate_percent(),
            selection_threshold: None,
        }
    }
}

/// Builds a [`ServiceContract`] in code: [`ServiceContract::builder`].
/// Every setter takes the value as the TOML field of the same name does;
/// [`ContractBuilder::build`] checks every range.
#[derive(Debug, Clone)]
#[must_use]
pub struct ContractBuilder(ServiceContract);

impl ContractBuilder {
    /// `wasm_module`: the component's path.
    pub fn wasm_module(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.wasm_module = Some(path.into());
        self
    }

    /// `resource_limits.max_memory_mb`.
    pub fn max_memory_mb(mut self, mb: u32) -> Self {
        self.0.resource_limits.max_memory_mb = mb;
        self
    }

    /// `resource_limits.max_cpu_percent`.
    pub fn max_cpu_percent(mut self, percent: u32) -> Self {
        self.0.resource_limits.max_cpu_percent = percent;
        self
    }

    /// `resource_limits.task_timeout_seconds`.
    pub fn task_timeout_seconds(mut self, seconds: f64) -> Self {
        self.0.resource_limits.task_timeout_seconds = seconds;
        self
    }

    /// `resource_limits.max_concurrent_tasks`.
    pub fn max_concurrent_tasks(mut self, tasks: u32) -> Self {
        self.0.resource_limits.max_concurrent_tasks = tasks;
        self
    }

    /// `resource_limits.max_api_calls_per_second`.
    pub fn max_api_calls_per_second(mut self, calls: u32) -> Self {
        self.0.resource_limits.max_api_calls_per_second = calls;
        self
    }

    /// Add a name to `security.scoped_credentials`.
    pub fn scoped_credential(mut self, name: impl Into<String>) -> Self {
        self.0.security.scoped_credentials.push(name.into());
        self
    }

    /// Add an interface to `security.wasi_capabilities`.
    pub fn wasi_capability(mut self, capability: impl Into<String>) -> Self {
        self.0.security.wasi_capabilities.push(capability.into());
        self
    }

    /// `security.network_access = "proxy_only"` with these `allowed_endpoints`.
    pub fn proxy_only<S: Into<String>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        self.0.security.network_access = NetworkAccess::ProxyOnly;
        self.0
            .security
            .allowed_endpoints
            .extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// `[storage]`: this access, with the default quota (change it with
    /// [`ContractBuilder::with`]).
    pub fn storage(mut self, access: StorageAccess) -> Self {
        self.0.storage.access = access;
        self
    }

    /// `[instances] tasks_per_instance`: how many tasks one instance runs
    /// (1, the default: a fresh instance per task).
    pub fn tasks_per_instance(mut self, tasks: u32) -> Self {
        self.0.instances.tasks_per_instance = tasks;
        self
    }

    /// Any other field, on the contract as it stands.
    pub fn with(mut self, change: impl FnOnce(&mut ServiceContract)) -> Self {
        change(&mut self.0);
        self
    }

    /// The contract, if every field is in range (the errors of
    /// [`ServiceContract::validate`]).
    pub fn build(self) -> Result<ServiceContract, ContractError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// A contract that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The file could not be read.
    #[error("{}: cannot read contract: {source}", path.display())]
    Io {
        /// The contract file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The contract is not valid TOML, has an unknown field or a wrong type,
    /// or a value is out of range.
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The contract file (or `<contract>` when parsed from a string).
        origin: String,
        /// 1-based line of the offending field (or of the error).
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted path of the field, e.g. `resource_limits.max_cpu_percent`.
        field: String,
        /// What was wrong and what is expected.
        message: String,
    },
}

/// The longest message an `Invalid` error carries, in bytes: a contract's
/// values are echoed in its errors, and a contract may come from anyone
/// the operator takes one from; the error is shown and recorded.
pub const MAX_CONTRACT_ERROR_BYTES: usize = 1024;

impl ContractError {
    /// The error with its field path and message escaped and cut to a
    /// bounded length.
    fn bounded(self) -> Self {
        match self {
            ContractError::Invalid {
                origin,
                line,
                column,
                field,
                message,
            } => ContractError::Invalid {
                origin,
                line,
                column,
                field: crate::text::escape(&field, 256),
                message: crate::text::escape(&message, MAX_CONTRACT_ERROR_BYTES),
            },
            io => io,
        }
    }

    /// The dotted field path this error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ContractError::Invalid { field, .. } => Some(field),
            ContractError::Io { .. } => None,
        }
    }
}

impl ServiceContract {
    /// What the swarm's SLO figures and reputation are judged by.
    pub fn health_settings(&self) -> HealthSettings {
        HealthSettings {
            slo_targets: self.slo_targets.clone(),
            reputation: self.reputation.clone(),
        }
    }

    /// A contract built in code, starting from the same defaults a TOML
    /// contract with only `swarm_id` gets; [`ContractBuilder::build`]
    /// validates it as a file would be.
    ///
    /// ```
    /// use chassis::ServiceContract;
    /// let contract = ServiceContract::builder("reporter")
    ///     .max_memory_mb(64)
    ///     .task_timeout_seconds(5.0)
    ///     .wasi_capability("wasi:io/streams")
    ///     .proxy_only(["https://api.example.com/v1/"])
    ///     .build()?;
    /// assert_eq!(contract.resource_limits.max_cpu_percent, 25); // the default
    /// # Ok::<(), chassis::ContractError>(())
    /// ```
    pub fn builder(swarm_id: impl Into<String>) -> ContractBuilder {
        ContractBuilder(ServiceContract {
            swarm_id: swarm_id.into(),
            wasm_module: None,
            version: defaults::version(),
            created_at: None,
            capabilities: Vec::new(),
            resource_limits: ResourceLimits::default(),
            swarm_limits: SwarmLimits::default(),
            budget: Budget::default(),
            throttle: Throttle::default(),
            slo_targets: SloTargets::default(),
            security: Security::default(),
            reputation: Reputation::default(),
            storage: Storage::default(),
            placement: Placement::default(),
            instances: Instances::default(),
            metadata: BTreeMap::new(),
        })
    }

    /// Own failures in a row that open the swarm's circuit, 0 for none:
    /// `throttle.circuit_failures`, else 5, or 0 when the failure guard is
    /// off (`reputation.max_failure_rate_percent = 100`).
    pub fn circuit_failures(&self) -> u32 {
        self.throttle.circuit_failures.unwrap_or(
            if self.reputation.max_failure_rate_percent >= 100.0 {
                0
            } else {
                5
            },
        )
    }

    /// Read, parse and validate a contract file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ContractError> {
        let path = path.as_ref();
        let text = crate::files::read_bounded_text(path, crate::files::MAX_CONTRACT_BYTES)
            .map_err(|source| ContractError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parse and validate a contract from TOML text. `origin` names the text
    /// in errors (a file name, or something like `<inline>`).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ContractError> {
        let parsed = toml::Deserializer::parse(text)
            .map_err(|e| (e, None))
            .and_then(|de| {
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().clone();
                    (e.into_inner(), Some(path))
                })
            });
        let contract: ServiceContract = match parsed {
            Ok(c) => c,
            Err((e, path)) => {
                let mut err = locate::parse_error(text, origin, &e, path.as_ref());
                if looks_like_yaml(text)
                    && let ContractError::Invalid { message, .. } = &mut err
                {
                    message.push_str(
                        "; contracts are TOML (`key = value` lines, `[table]` headers), not YAML: see docs/contract.md",
                    );
                }
                return Err(err.bounded());
            }
        };
        if let Err(v) = validate::validate(&contract) {
            return Err(locate::validation_error(text, origin, v).bounded());
        }
        Ok(contract)
    }

    /// Validate a contract built in code (no source positions available).
    pub fn validate(&self) -> Result<(), ContractError> {
        validate::validate(self).map_err(|v| {
            ContractError::Invalid {
                origin: format!("<contract {}>", crate::text::escape(&self.swarm_id, 80)),
                line: 0,
                column: 0,
                field: v.field,
                message: v.message,
            }
            .bounded()
        })
    }

    /// The contract with every default filled in, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The task timeout as a `Duration`.
    pub fn task_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.resource_limits.task_timeout_seconds)
    }

    /// Whether a WASI capability (e.g. `wasi:clocks/wall-clock`) is granted.
    pub fn grants_wasi(&self, capability: &str) -> bool {
        self.security
            .wasi_capabilities
            .iter()
            .any(|c| c == capability)
    }
}

/// Whether text that failed to parse as TOML reads like a YAML document
/// (the seed's contracts are YAML): it starts with `---`, or its first
/// line of content is `key:` without an `=`.
fn looks_like_yaml(text: &str) -> bool {
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    if first.starts_with("---") {
        return true;
    }
    let Some((key, _)) = first.split_once(':') else {
        return false;
    };
    !first.contains('=')
        && !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"' | '\''))
}

#[cfg(test)]
mod tests;
