//! What every capability shares: who is calling (the swarm and the task),
//! the swarm's call rate, and the counting of calls, refusals and
//! violations; and how guest text is made fit to show.
//!
//! Each capability (`log`, `credentials`, `http_proxy`) keeps its own
//! per-swarm state and gets, per call, a view made of that state and a
//! [`Scoped`]: the swarm's [`SwarmScope`] (built once at load) and the
//! task's [`TaskScope`] (built with the task's store, dropped with it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::events::{Event, Events};
use crate::health::SwarmHealth;
use crate::limits::{MIN_REFUSED_CALLS_PER_TASK, RateLimiter, SwarmCounters};
use crate::secrets::Redactor;

/// What a store is for: the `describe` call made while loading, or a task.
/// Credentials and the HTTP proxy serve tasks only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Loading,
    Task,
}

/// The part of a swarm every capability shares, built once at load.
pub(crate) struct SwarmScope {
    pub(crate) swarm_id: String,
    pub(crate) events: Events,
    pub(crate) counters: Arc<SwarmCounters>,
    /// `max_api_calls_per_second`: credentials and the HTTP proxy.
    rate: RateLimiter,
    /// Calls refused for rate within one task before it is ended.
    max_refused_calls: u64,
    /// Finds the swarm's secret values in what it writes.
    redactor: Redactor,
    /// Where a violation costs reputation.
    health: Arc<SwarmHealth>,
}

impl SwarmScope {
    pub(crate) fn new(
        swarm_id: &str,
        max_api_calls_per_second: u32,
        events: Events,
        counters: Arc<SwarmCounters>,
        redactor: Redactor,
        health: Arc<SwarmHealth>,
    ) -> Self {
        Self {
            swarm_id: swarm_id.to_string(),
            rate: RateLimiter::new(max_api_calls_per_second, counters.clone()),
            max_refused_calls: MIN_REFUSED_CALLS_PER_TASK
                .max(u64::from(max_api_calls_per_second) * 10),
            events,
            counters,
            redactor,
            health,
        }
    }

    /// Guest text made fit to show: secret values redacted (each find
    /// raises a `SecretRedacted` event; the task's first costs reputation),
    /// then escaped and cut to `max_bytes` ([`crate::text::escape`]).
    pub(crate) fn guest_text(
        &self,
        shared: &TaskShared,
        task_id: &str,
        text: &str,
        channel: &'static str,
        max_bytes: usize,
    ) -> String {
        let (clean, keys) = self.redactor.redact(text);
        if !keys.is_empty() {
            let first = shared.secret_leaks.fetch_add(1, Ordering::Relaxed) == 0;
            tracing::warn!(target: "chassis", swarm = self.swarm_id, task = task_id, "a secret value ({}) was found in the swarm's {channel} and redacted", keys.join(", "));
            self.events.emit(|| Event::SecretRedacted {
                swarm_id: self.swarm_id.clone(),
                task_id: task_id.to_string(),
                keys: keys.clone(),
                channel: channel.to_string(),
                security_violation: first,
            });
            if first {
                self.health.security_violation(task_id);
            }
        }
        crate::text::escape(&clean, max_bytes)
    }

    /// Count one dropped log line; raise the task's rate-limit event once.
    pub(crate) fn drop_line(&self, shared: &TaskShared, task_id: &str, channel: &str) {
        shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
        self.counters
            .dropped_log_lines
            .fetch_add(1, Ordering::Relaxed);
        self.rate_event(shared, task_id, channel);
    }

    fn rate_event(&self, shared: &TaskShared, task_id: &str, import: &str) {
        if !shared.rate_event_sent.swap(true, Ordering::Relaxed) {
            self.events.emit(|| Event::RateLimited {
                swarm_id: self.swarm_id.clone(),
                task_id: task_id.to_string(),
                import: import.to_string(),
            });
        }
    }
}

/// The part of a task every capability shares: built with the task's
/// store, dropped with it.
pub(crate) struct TaskScope {
    pub(crate) task_id: Arc<str>,
    pub(crate) phase: Phase,
    /// What the task's stdout/stderr writers share with the runner.
    pub(crate) shared: Arc<TaskShared>,
    /// Import calls the task made (allowed ones).
    pub(crate) host_calls: u64,
    /// Import calls refused for rate.
    pub(crate) refused_calls: u64,
    /// Requests outside the contract (credentials out of scope, denied endpoints).
    pub(crate) security_violations: u64,
    /// Credentials granted to the task so far, each with how many times it
    /// was granted again after the recorded first time.
    pub(crate) grants: Vec<Grant>,
}

/// A credential granted to a task for one operation: the first grant is
/// recorded as it happens, the repeats are counted and recorded once, when
/// the task ends.
pub(crate) struct Grant {
    /// The key's place in the swarm's `scoped_credentials`.
    pub(crate) key: usize,
    /// `get`, `sign`, `public-key` or `inject`.
    pub(crate) operation: &'static str,
    /// Grants after the first.
    pub(crate) repeats: u64,
}

impl TaskScope {
    pub(crate) fn new(task_id: Arc<str>, phase: Phase, shared: Arc<TaskShared>) -> Self {
        Self {
            task_id,
            phase,
            shared,
            host_calls: 0,
            refused_calls: 0,
            security_violations: 0,
            grants: Vec::new(),
        }
    }
}

/// One call's view of who is calling: the swarm's scope and the task's.
pub(crate) struct Scoped<'a> {
    pub(crate) swarm: &'a SwarmScope,
    pub(crate) task: &'a mut TaskScope,
}

impl Scoped<'_> {
    pub(crate) fn swarm_id(&self) -> &str {
        &self.swarm.swarm_id
    }

    pub(crate) fn task_id(&self) -> &str {
        &self.task.task_id
    }

    /// Whether a task is running (not the `describe` call at load).
    pub(crate) fn in_task(&self) -> bool {
        self.task.phase == Phase::Task
    }

    /// Rate check for one import call: `Ok(true)` to go ahead, `Ok(false)`
    /// when over the rate (the caller answers with its typed refusal), `Err`
    /// to end a task that keeps calling after being refused.
    pub(crate) fn admit_call(&mut self, import: &str) -> wasmtime::Result<bool> {
        if self.swarm.rate.allow() {
            self.task.host_calls += 1;
            return Ok(true);
        }
        self.task.refused_calls += 1;
        self.swarm
            .rate_event(&self.task.shared, &self.task.task_id, import);
        if self.task.refused_calls > self.swarm.max_refused_calls {
            return Err(wasmtime::Error::new(RateLimitAbuse {
                refused: self.task.refused_calls,
            }));
        }
        Ok(false)
    }

    /// Count a call that used no rate (a log line).
    pub(crate) fn count_call(&mut self) {
        self.task.host_calls += 1;
    }

    /// A request outside the contract: counted for the task, and it costs
    /// the swarm reputation at once.
    pub(crate) fn violation(&mut self) {
        self.task.security_violations += 1;
        self.swarm.health.security_violation(&self.task.task_id);
    }

    /// Guest text made fit to show ([`SwarmScope::guest_text`]).
    pub(crate) fn guest_text(&self, text: &str, channel: &'static str, max_bytes: usize) -> String {
        self.swarm.guest_text(
            &self.task.shared,
            &self.task.task_id,
            text,
            channel,
            max_bytes,
        )
    }
}

/// What a task's stdout/stderr writers share with the runner.
#[derive(Default)]
pub(crate) struct TaskShared {
    /// The last bytes the guest wrote to stderr (a panic message, usually).
    stderr_tail: Mutex<Vec<u8>>,
    /// Log lines (import or stdout/stderr) dropped for rate.
    pub(crate) dropped_lines: AtomicU64,
    /// Whether a rate-limit event was already raised for this task.
    rate_event_sent: AtomicBool,
    /// Pieces of text in which a secret value was found and redacted.
    pub(crate) secret_leaks: AtomicU64,
    /// Set when the task spent its swarm's CPU budget: the interrupt that
    /// stopped it is that, not its deadline.
    pub(crate) budget_spent: Mutex<Option<crate::limits::Spent>>,
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
    pub(crate) fn stderr_message(&self, swarm: &SwarmScope, task_id: &str) -> Option<String> {
        let tail = self.stderr_tail.lock().expect("stderr tail lock");
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!lines.is_empty()).then(|| {
            swarm.guest_text(
                self,
                task_id,
                &lines.join(" | "),
                "trap_message",
                // Room for escapes: the tail itself is at most STDERR_TAIL_BYTES.
                4 * STDERR_TAIL_BYTES,
            )
        })
    }
}

/// The error that ends a task whose guest keeps calling after being refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{refused} import calls refused for rate (max_api_calls_per_second); task ended")]
pub(crate) struct RateLimitAbuse {
    /// Calls refused in this task.
    pub(crate) refused: u64,
}

/// A capability's `add_to_linker`: links the generated interface `$iface`
/// (a module of [`crate::bindings`]) so that each call is served by the
/// per-task view `$view` that the store's data hands out.
macro_rules! linker_for {
    ($iface:ident, $view:ident) => {
        struct HasView;

        impl wasmtime::component::HasData for HasView {
            type Data<'a> = $view<'a>;
        }

        /// Link this interface, served by the view `get` returns.
        pub(crate) fn add_to_linker<T: Send + 'static>(
            linker: &mut wasmtime::component::Linker<T>,
            get: fn(&mut T) -> $view<'_>,
        ) -> wasmtime::Result<()> {
            crate::bindings::$iface::add_to_linker::<T, HasView>(linker, get)
        }
    };
}
pub(crate) use linker_for;
