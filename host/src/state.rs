//! What the host keeps per loaded swarm ([`SwarmRuntime`]) and per task
//! ([`HostState`], the data of the task's `Store`).
//!
//! A `HostState` is built for each task and dropped with the task's store,
//! so nothing a guest does outlives its task; the `SwarmRuntime` it points
//! to holds what the swarm's tasks share: counters, the rate limiter, the
//! admission slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::contract::ServiceContract;
use crate::error::Error;
use crate::events::{Event, Events};
use crate::imports::http_proxy::allowlist::Allowlist;
use crate::imports::http_proxy::client::Bandwidth;
use crate::limits::{
    Admission, CpuGovernor, CpuMark, LogBudget, MIN_REFUSED_CALLS_PER_TASK, QueueConfig,
    RateLimiter, SwarmCounters, TaskLimiter,
};
use crate::reputation::{Change, Reputation};
use crate::secrets::{Redactor, Secret, SecretStore};
use crate::slo::SloTracker;

/// What a loaded swarm's tasks share.
pub(crate) struct SwarmRuntime {
    pub(crate) contract: Arc<ServiceContract>,
    pub(crate) counters: Arc<SwarmCounters>,
    pub(crate) rate: RateLimiter,
    pub(crate) admission: Admission,
    pub(crate) events: Events,
    /// Calls refused for rate within one task before it is ended.
    pub(crate) max_refused_calls: u64,
    /// When usage was last reported, and the CPU counter then.
    pub(crate) usage_mark: Mutex<(Instant, u64)>,
    /// The values of this swarm's scoped credentials that exist (only those).
    pub(crate) secrets: HashMap<String, Secret>,
    /// Finds those values in what the swarm writes.
    pub(crate) redactor: Redactor,
    /// Log lines and bytes per second (log import, stdout, stderr).
    pub(crate) log_budget: LogBudget,
    /// Where its HTTP requests may go.
    pub(crate) allowlist: Allowlist,
    /// Its network bandwidth, both directions.
    pub(crate) bandwidth: Bandwidth,
    /// The proxy's TLS client (the host's roots).
    pub(crate) tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// Its SLO figures and reputation.
    pub(crate) health: Mutex<Health>,
}

/// SLOs and reputation of one swarm, updated together.
pub(crate) struct Health {
    pub(crate) slo: SloTracker,
    pub(crate) reputation: Reputation,
}

impl SwarmRuntime {
    pub(crate) fn new(
        contract: Arc<ServiceContract>,
        queue: QueueConfig,
        events: Events,
        store: &SecretStore,
        tls: Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Result<Self, Error> {
        let mut secrets = HashMap::new();
        let mut env = SecretStore::new();
        let id = contract.swarm_id.as_str();
        env.add_env(
            contract
                .security
                .scoped_credentials
                .iter()
                .map(|k| (id, k.as_str())),
        );
        for key in &contract.security.scoped_credentials {
            if let Some(value) = env.get(id, key).or_else(|| store.get(id, key)) {
                // A signing key that cannot be used is refused now, not on first use.
                if let Some(Err(reason)) = value.signing_key() {
                    return Err(Error::BadSecret {
                        swarm_id: id.to_string(),
                        key: key.clone(),
                        reason,
                    });
                }
                secrets.insert(key.clone(), value.clone());
            }
        }
        let counters = Arc::new(SwarmCounters::default());
        let limits = &contract.resource_limits;
        Ok(Self {
            rate: RateLimiter::new(limits.max_api_calls_per_second, counters.clone()),
            admission: Admission::new(limits.max_concurrent_tasks, queue, counters.clone()),
            max_refused_calls: MIN_REFUSED_CALLS_PER_TASK
                .max(u64::from(limits.max_api_calls_per_second) * 10),
            usage_mark: Mutex::new((Instant::now(), 0)),
            redactor: Redactor::new(secrets.iter().map(|(k, v)| (k.as_str(), v))),
            log_budget: LogBudget::new(
                limits.max_log_lines_per_second,
                limits.max_log_bytes_per_second,
            ),
            secrets,
            // The contract was validated, so every pattern parses.
            allowlist: Allowlist::new(&contract.security.allowed_endpoints).unwrap_or_default(),
            bandwidth: Bandwidth::new(limits.max_network_bandwidth_mbps),
            tls,
            health: Mutex::new(Health {
                slo: SloTracker::new(Instant::now()),
                reputation: Reputation::new(&contract.reputation),
            }),
            counters,
            events,
            contract,
        })
    }

    pub(crate) fn swarm_id(&self) -> &str {
        &self.contract.swarm_id
    }

    /// Raise the events of a reputation change.
    pub(crate) fn report(&self, change: Change, task_id: &str) {
        match change {
            Change::None => {}
            Change::Moved { from, to } => self.events.emit(|| Event::ReputationChanged {
                swarm_id: self.swarm_id().to_string(),
                task_id: task_id.to_string(),
                from,
                to,
            }),
            Change::Quarantined { score, reason } => {
                tracing::warn!(target: "chassis", swarm = self.swarm_id(), "quarantined: {reason}");
                self.events.emit(|| Event::Quarantined {
                    swarm_id: self.swarm_id().to_string(),
                    task_id: task_id.to_string(),
                    score,
                    threshold: self.contract.reputation.quarantine_threshold,
                    reason: reason.clone(),
                });
            }
        }
    }

    /// A request outside the contract: it costs reputation at once.
    pub(crate) fn security_violation(&self, task_id: &str) {
        let change = self
            .health
            .lock()
            .expect("health lock")
            .reputation
            .violation();
        self.report(change, task_id);
    }
}

/// What a task's stdout/stderr writers share with the runner.
#[derive(Default)]
pub(crate) struct TaskShared {
    /// The last bytes the guest wrote to stderr (a panic message, usually).
    pub(crate) stderr_tail: Mutex<Vec<u8>>,
    /// Log lines (import or stdout/stderr) dropped for rate.
    pub(crate) dropped_lines: AtomicU64,
    /// Whether a rate-limit event was already raised for this task.
    pub(crate) rate_event_sent: AtomicBool,
    /// Pieces of text in which a secret value was found and redacted.
    pub(crate) secret_leaks: AtomicU64,
}

/// Longest stderr tail kept for error messages, in bytes.
pub(crate) const STDERR_TAIL_BYTES: usize = 2048;

impl TaskShared {
    pub(crate) fn push_stderr(&self, bytes: &[u8]) {
        // Only the end of a large write can be part of the tail.
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_TAIL_BYTES)..];
        let mut tail = self.stderr_tail.lock().expect("stderr tail lock");
        tail.extend_from_slice(bytes);
        if tail.len() > STDERR_TAIL_BYTES {
            let cut = tail.len() - STDERR_TAIL_BYTES;
            tail.drain(..cut);
        }
    }

    /// The stderr tail as one line (lines joined with " | "), secrets
    /// redacted, escaped.
    pub(crate) fn stderr_message(&self, swarm: &SwarmRuntime, task_id: &str) -> Option<String> {
        let tail = self.stderr_tail.lock().expect("stderr tail lock");
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!lines.is_empty()).then(|| {
            self.guest_text(
                swarm,
                task_id,
                &lines.join(" | "),
                "trap_message",
                // Room for escapes: the tail itself is at most STDERR_TAIL_BYTES.
                4 * STDERR_TAIL_BYTES,
            )
        })
    }

    /// Guest text made fit to show: secret values redacted (each find
    /// raises a `SecretRedacted` event; the task's first costs reputation),
    /// then escaped and cut to `max_bytes` ([`crate::text::escape`]).
    pub(crate) fn guest_text(
        &self,
        swarm: &SwarmRuntime,
        task_id: &str,
        text: &str,
        channel: &'static str,
        max_bytes: usize,
    ) -> String {
        let (clean, keys) = swarm.redactor.redact(text);
        if !keys.is_empty() {
            let first = self.secret_leaks.fetch_add(1, Ordering::Relaxed) == 0;
            tracing::warn!(target: "chassis", swarm = swarm.swarm_id(), task = task_id, "a secret value ({}) was found in the swarm's {channel} and redacted", keys.join(", "));
            swarm.events.emit(|| Event::SecretRedacted {
                swarm_id: swarm.swarm_id().to_string(),
                task_id: task_id.to_string(),
                keys: keys.clone(),
                channel: channel.to_string(),
                security_violation: first,
            });
            if first {
                swarm.security_violation(task_id);
            }
        }
        crate::text::escape(&clean, max_bytes)
    }

    /// Count one dropped line; raise the task's rate-limit event once.
    pub(crate) fn drop_line(&self, swarm: &SwarmRuntime, task_id: &str, import: &str) {
        self.dropped_lines.fetch_add(1, Ordering::Relaxed);
        swarm
            .counters
            .dropped_log_lines
            .fetch_add(1, Ordering::Relaxed);
        self.rate_event(swarm, task_id, import);
    }

    pub(crate) fn rate_event(&self, swarm: &SwarmRuntime, task_id: &str, import: &str) {
        if !self.rate_event_sent.swap(true, Ordering::Relaxed) {
            swarm.events.emit(|| Event::RateLimited {
                swarm_id: swarm.swarm_id().to_string(),
                task_id: task_id.to_string(),
                import: import.to_string(),
            });
        }
    }
}

/// The error that ends a task whose guest keeps calling after being refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{refused} import calls refused for rate (max_api_calls_per_second); task ended")]
pub struct RateLimitAbuse {
    /// Calls refused in this task.
    pub refused: u64,
}

/// Store data of one task.
pub struct HostState {
    pub(crate) swarm: Arc<SwarmRuntime>,
    pub(crate) task_id: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: TaskLimiter,
    pub(crate) governor: CpuGovernor,
    /// Where the task's current run began (for its CPU time).
    pub(crate) cpu_mark: CpuMark,
    pub(crate) deadline: Instant,
    pub(crate) shared: Arc<TaskShared>,
    /// Import calls the task made (allowed ones).
    pub(crate) host_calls: u64,
    /// Import calls refused for rate.
    pub(crate) refused_calls: u64,
    /// Whether a task is running (false while the swarm is being loaded).
    pub(crate) in_task: bool,
    /// Requests outside the contract (credentials out of scope, denied endpoints).
    pub(crate) security_violations: u64,
}

impl HostState {
    /// The swarm id, for log prefixes and errors.
    pub(crate) fn swarm_id(&self) -> &str {
        self.swarm.swarm_id()
    }

    /// The swarm's contract.
    pub(crate) fn contract(&self) -> &ServiceContract {
        &self.swarm.contract
    }

    /// Rate check for one import call: `Ok(true)` to go ahead, `Ok(false)`
    /// when over the rate (the caller answers with its typed refusal), `Err`
    /// to end a task that keeps calling after being refused.
    pub(crate) fn admit_call(&mut self, import: &str) -> wasmtime::Result<bool> {
        if self.swarm.rate.allow() {
            self.host_calls += 1;
            return Ok(true);
        }
        self.refused_calls += 1;
        self.shared.rate_event(&self.swarm, &self.task_id, import);
        if self.refused_calls > self.swarm.max_refused_calls {
            return Err(wasmtime::Error::new(RateLimitAbuse {
                refused: self.refused_calls,
            }));
        }
        Ok(false)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
