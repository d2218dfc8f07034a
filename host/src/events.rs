//! Events: what the host decided and what swarms did, as they happen.
//!
//! Every load, task end, limit hit and import decision becomes an [`Event`]
//! handed synchronously to each registered [`EventSink`] (the audit log and
//! the reputation tracker are sinks). Sinks must be quick: they run on the
//! task path.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::limits::LimitKind;

/// Something the host decided or observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A swarm was loaded.
    ModuleLoaded {
        /// The swarm.
        swarm_id: String,
        /// Where the component came from.
        origin: String,
        /// The component's SHA-256, in hex (empty in records written
        /// before it was recorded).
        #[serde(default)]
        digest: String,
        /// Task types it serves.
        task_types: Vec<String>,
        /// What its SLO figures and reputation are judged by (absent in
        /// records written before they were recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<crate::contract::HealthSettings>,
    },
    /// A new version of a loaded swarm took its place: tasks from now on
    /// run on it; tasks already running finished on the old one.
    ModuleReplaced {
        /// The swarm.
        swarm_id: String,
        /// Where the new component came from.
        origin: String,
        /// The new component's SHA-256, in hex.
        digest: String,
        /// The replaced component's SHA-256, in hex.
        previous_digest: String,
        /// Task types the new version serves.
        task_types: Vec<String>,
        /// What the swarm is judged by from now on (absent in records
        /// written before they were recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<crate::contract::HealthSettings>,
    },
    /// A queued task delivered more times than the queue allows (its
    /// workers kept stopping before it ended) was given up: it gets an
    /// `abandoned` result and is not run again (`docs/scale-out.md`).
    TaskAbandoned {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// How many times it was delivered.
        deliveries: u64,
    },
    /// A load was refused.
    LoadRejected {
        /// The swarm the contract names (empty when the contract could not
        /// be read: the reason names the file).
        swarm_id: String,
        /// Why.
        reason: String,
    },
    /// A swarm was unloaded.
    ModuleUnloaded {
        /// The swarm.
        swarm_id: String,
    },
    /// A signed deployment from the fleet's deployments bucket was
    /// verified (`chassis deploy`, `--rollback`, `undeploy`;
    /// `docs/scale-out.md`, "Deploying"); what this worker then loaded
    /// follows as `module_loaded`, `module_replaced` or `module_unloaded`.
    Deployment {
        /// The swarm.
        swarm_id: String,
        /// `deploy`, `rollback` or `undeploy`.
        action: String,
        /// The bundle's SHA-256, in hex (none for an undeploy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<String>,
        /// The contract's version in the bundle.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// The component's SHA-256, in hex, as the bundle signed it (none
        /// for an undeploy, or a bundle not fetched: placed elsewhere).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        component: Option<String>,
        /// The deployer's public key (64 hex digits).
        deployer: String,
        /// The deployment's generation for the swarm.
        generation: u64,
        /// Whether this worker serves it (its labels admit it and no local
        /// contract file of the same id takes its place).
        placed: bool,
    },
    /// A deployment or its bundle was refused: this worker keeps serving
    /// what it had.
    DeploymentRefused {
        /// The swarm (the bucket's key, escaped).
        swarm_id: String,
        /// The bundle it named, when it named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<String>,
        /// `signature`, `untrusted_key`, `digest`, `too_large`, `contract`,
        /// `load`, `stale`, `malformed`, `mismatch`, `missing` or
        /// `local_file`.
        kind: String,
        /// Why, bounded and escaped.
        reason: String,
    },
    /// A task addressed to a capability was given to a swarm
    /// (`docs/governor.md`).
    TaskRouted {
        /// The swarm chosen.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The capability it was addressed to.
        capability: String,
        /// How many swarms could be chosen.
        eligible: u32,
        /// The draw that chose, in `[0, 1)`.
        draw: f64,
    },
    /// A task was admitted and is starting.
    TaskStart {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Its type.
        task_type: String,
    },
    /// The swarm answered with a result.
    TaskComplete {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Wall time, in milliseconds.
        wall_ms: f64,
    },
    /// The task ended without a result (guest error, trap, limit, refusal).
    TaskFailed {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Error kind (see [`crate::ErrorKind`]), or `guest_error`.
        kind: String,
        /// The error message.
        error: String,
        /// The guest's error variant when `kind` is `guest_error`:
        /// `failed`, `invalid_payload` or `unknown_task_type`.
        #[serde(skip_serializing_if = "Option::is_none")]
        guest_error: Option<String>,
        /// Wall time from the request to the failure, in milliseconds.
        wall_ms: f64,
    },
    /// A task ran into a resource limit.
    LimitExceeded {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Which limit.
        limit: LimitKind,
        /// Details.
        detail: String,
    },
    /// A credential was asked for (key name only, never the value).
    CredentialAccess {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The key name.
        key: String,
        /// `get`, `sign`, `public-key` or `inject` (HTTP proxy header).
        operation: String,
        /// Whether it was granted.
        allowed: bool,
        /// Why not, when refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Whether the request was outside the contract's scope.
        security_violation: bool,
    },
    /// A task was granted a credential's `get` or `public-key` more than
    /// once: the first grant has its own `CredentialAccess` record, written
    /// before the value left the host; this one, raised when the task's
    /// store is dropped, counts the grants after it. (`sign` and `inject`
    /// are recorded every time.)
    CredentialRepeated {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The key name.
        key: String,
        /// `get` or `public-key`.
        operation: String,
        /// Grants after the first.
        repeats: u64,
    },
    /// An HTTP proxy request, allowed or denied.
    HttpProxy {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// Whether the proxy let it out (every check passed); it may still
        /// have failed on the network, as `reason` then says.
        allowed: bool,
        /// The method.
        method: String,
        /// The URL without user info, query or fragment.
        url: String,
        /// The response status, when there was one.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Request body bytes sent.
        bytes_out: u64,
        /// Response body bytes received.
        bytes_in: u64,
        /// Time in the proxy, in milliseconds.
        elapsed_ms: f64,
        /// Why it failed or was refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Whether the request was outside the contract (endpoint, address).
        security_violation: bool,
    },
    /// A `storage` operation, done or refused.
    StorageAccess {
        /// The swarm (its namespace).
        swarm_id: String,
        /// The task.
        task_id: String,
        /// `get`, `set`, `delete`, `exists`, `list-keys`, `stat` or `usage`.
        operation: String,
        /// The object's name, or the listing's prefix (escaped and bounded;
        /// empty for `usage`).
        name: String,
        /// Whether it was done.
        allowed: bool,
        /// Bytes written (`set`) or read (`get`).
        bytes: u64,
        /// Why it was refused or failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Whether it was an attempt to leave the swarm's namespace.
        security_violation: bool,
    },
    /// An SLO target went from met to missed.
    SloViolation {
        /// The swarm.
        swarm_id: String,
        /// The task after which it was noticed.
        task_id: String,
        /// `response_time`, `error_rate` or `availability`.
        metric: String,
        /// The measured value.
        actual: f64,
        /// The contract's target.
        target: f64,
    },
    /// The reputation score moved by 0.01 or more.
    ReputationChanged {
        /// The swarm.
        swarm_id: String,
        /// The task whose end or request moved it.
        task_id: String,
        /// The previous reported score.
        from: f64,
        /// The new score.
        to: f64,
    },
    /// The score fell under the threshold, or too many of the latest tasks
    /// failed: the swarm's tasks are refused.
    Quarantined {
        /// The swarm.
        swarm_id: String,
        /// The task whose end or request quarantined it.
        task_id: String,
        /// Its score.
        score: f64,
        /// The contract's threshold.
        threshold: f64,
        /// Why (the score, or the failure guard).
        #[serde(default)]
        reason: String,
    },
    /// A secret value of the swarm (or an encoding of it) was found in text
    /// it wrote, and redacted before the text was shown or stored.
    SecretRedacted {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The keys whose values were found (names only).
        keys: Vec<String>,
        /// Where: `log`, `stdout`, `stderr`, `error`, `trap_message`;
        /// in an import call's arguments, `credential_name`, `url`,
        /// `http_method`, `http_header` or `http_error` (a refusal quoting
        /// them).
        channel: String,
        /// Whether it counts as a security violation (the task's first).
        security_violation: bool,
    },
    /// The governor's throttle moved how many of the swarm's slots may be
    /// taken (`docs/governor.md`).
    ConcurrencyChanged {
        /// The swarm.
        swarm_id: String,
        /// The task whose end moved it (empty when none did).
        task_id: String,
        /// The slots before.
        from: u32,
        /// The slots now.
        to: u32,
        /// Why: the window's figures against the SLO targets, or the circuit.
        reason: String,
    },
    /// The swarm's circuit changed state: `open` (tasks refused for the
    /// cool-down), `half_open` (one probe task runs) or `closed`.
    CircuitChanged {
        /// The swarm.
        swarm_id: String,
        /// The task whose end or arrival changed it (empty when none did).
        task_id: String,
        /// `open`, `half_open` or `closed`.
        state: String,
        /// Why.
        reason: String,
        /// How long it stays open, when it opened.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cool_down_seconds: Option<f64>,
    },
    /// An operator released a quarantined swarm.
    Released {
        /// The swarm.
        swarm_id: String,
        /// Its score after release.
        score: f64,
    },
    /// An import call was refused for rate.
    RateLimited {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The interface (`log`, `credentials`, `http-proxy`, `stdout`...).
        import: String,
    },
}

impl Event {
    /// The swarm the event is about.
    pub fn swarm_id(&self) -> &str {
        match self {
            Event::ModuleLoaded { swarm_id, .. }
            | Event::ModuleReplaced { swarm_id, .. }
            | Event::TaskAbandoned { swarm_id, .. }
            | Event::LoadRejected { swarm_id, .. }
            | Event::ModuleUnloaded { swarm_id }
            | Event::Deployment { swarm_id, .. }
            | Event::DeploymentRefused { swarm_id, .. }
            | Event::TaskRouted { swarm_id, .. }
            | Event::TaskStart { swarm_id, .. }
            | Event::TaskComplete { swarm_id, .. }
            | Event::TaskFailed { swarm_id, .. }
            | Event::LimitExceeded { swarm_id, .. }
            | Event::RateLimited { swarm_id, .. }
            | Event::CredentialAccess { swarm_id, .. }
            | Event::CredentialRepeated { swarm_id, .. }
            | Event::HttpProxy { swarm_id, .. }
            | Event::StorageAccess { swarm_id, .. }
            | Event::SloViolation { swarm_id, .. }
            | Event::ReputationChanged { swarm_id, .. }
            | Event::Quarantined { swarm_id, .. }
            | Event::ConcurrencyChanged { swarm_id, .. }
            | Event::CircuitChanged { swarm_id, .. }
            | Event::SecretRedacted { swarm_id, .. }
            | Event::Released { swarm_id, .. } => swarm_id,
        }
    }
}

/// Receives every event.
pub trait EventSink: Send + Sync {
    /// Record one event. Called on the task path: keep it short.
    fn record(&self, event: &Event);

    /// Record an event the host no longer needs after this call: a sink that
    /// keeps events (the audit log's queue) takes it without a copy. The
    /// host hands each event this way to its audit log, after every other
    /// sink ([`EventSinks`]); the default records it by reference.
    fn record_owned(&self, event: Event) {
        self.record(&event);
    }

    /// Why this sink can no longer record, if it cannot (an audit log on a
    /// full disk, or closed). The host then refuses new loads and tasks
    /// rather than run them unrecorded.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// A sink that keeps every event in memory (for tests and small tools).
#[derive(Debug, Default, Clone)]
pub struct MemorySink(Arc<Mutex<Vec<Event>>>);

impl MemorySink {
    /// A new, empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("event sink lock").clone()
    }
}

impl EventSink for MemorySink {
    fn record(&self, event: &Event) {
        self.0.lock().expect("event sink lock").push(event.clone());
    }
}

/// Where a host's events go, in a fixed order: every observer (metrics,
/// the status page, a test's [`MemorySink`]) records each event by
/// reference, then the audit log, if there is one, takes it owned — last,
/// so that what it keeps is what the others saw, and without a copy. The
/// order is this type's, not a convention of whoever builds the host.
#[derive(Clone, Default)]
pub struct EventSinks {
    observers: Vec<Arc<dyn EventSink>>,
    audit: Option<Arc<dyn EventSink>>,
}

impl EventSinks {
    /// Add a sink that observes each event by reference.
    pub fn observe(&mut self, sink: Arc<dyn EventSink>) {
        self.observers.push(sink);
    }

    /// Set the audit log (or another sink that keeps events), which
    /// records each event after every observer, handed it owned
    /// ([`EventSink::record_owned`]); it replaces one set before.
    pub fn keep_in(&mut self, log: Arc<dyn EventSink>) {
        self.audit = Some(log);
    }

    /// How many sinks there are, the audit log counted.
    pub fn len(&self) -> usize {
        self.observers.len() + usize::from(self.audit.is_some())
    }

    /// Whether no sink listens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sinks of one host.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<EventSinks>);

impl Events {
    pub(crate) fn new(sinks: EventSinks) -> Self {
        Self(Arc::new(sinks))
    }

    /// The first sink's failure, if any sink has failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.0
            .observers
            .iter()
            .find_map(|s| s.failure())
            .or_else(|| self.0.audit.as_ref().and_then(|log| log.failure()))
    }

    /// Build the event only when someone listens.
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        if self.0.is_empty() {
            return;
        }
        let event = event();
        for sink in &self.0.observers {
            sink.record(&event);
        }
        if let Some(log) = &self.0.audit {
            log.record_owned(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records which sink saw each event, and how.
    struct Tally(&'static str, Arc<Mutex<Vec<String>>>);

    impl EventSink for Tally {
        fn record(&self, event: &Event) {
            self.1
                .lock()
                .unwrap()
                .push(format!("{} {}", self.0, event.swarm_id()));
        }
        fn record_owned(&self, event: Event) {
            self.1
                .lock()
                .unwrap()
                .push(format!("{} owned {}", self.0, event.swarm_id()));
        }
    }

    /// Whichever is added first, the audit log records each event after
    /// every observer, and takes it owned.
    #[test]
    fn the_audit_log_records_after_every_observer() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut sinks = EventSinks::default();
        sinks.keep_in(Arc::new(Tally("audit", seen.clone())));
        sinks.observe(Arc::new(Tally("metrics", seen.clone())));
        sinks.observe(Arc::new(Tally("status", seen.clone())));
        assert_eq!(sinks.len(), 3);
        let events = Events::new(sinks);
        for swarm in ["a", "b"] {
            events.emit(|| Event::Released {
                swarm_id: swarm.into(),
                score: 1.0,
            });
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "metrics a",
                "status a",
                "audit owned a",
                "metrics b",
                "status b",
                "audit owned b"
            ]
        );
    }
}
