//! The host's Prometheus metrics, with their proper types
//! (`prometheus-client`): counters and a latency histogram per swarm fed by
//! the host's events ([`Metrics`] is an [`EventSink`], like the audit log),
//! and the host's own counters and gauges, read from it when they are
//! rendered. `chassis serve` answers them at `/metrics`; `chassis run
//! --metrics FILE` writes them after its tasks. The event-fed counters count
//! what this process saw, from zero, as Prometheus counters do; those read
//! from the host (CPU time, refused calls, dropped log lines) count since
//! the swarm was loaded, and start again from zero when it is loaded again
//! (a counter reset, which `rate()` handles). The SLO figures and
//! reputation restored from an audit log show in the gauges.
//!
//! A histogram, not precomputed quantiles: buckets add up across hosts, a
//! p95 does not.
//!
//! ```
//! use std::sync::Arc;
//! let metrics = Arc::new(chassis::metrics::Metrics::new());
//! let config = chassis::ChassisConfig::default().with_event_sink(metrics.clone());
//! let chassis = chassis::Chassis::with_config(config).unwrap();
//! // ... load swarms, run tasks ...
//! assert!(metrics.render(&chassis).ends_with("# EOF\n"));
//! ```

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{Chassis, Event, EventSink};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwarmLabel {
    swarm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    swarm: String,
    /// `success`, `guest_error`, or the host error's kind.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    swarm: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    swarm: String,
    /// `cpu_seconds`, `network_bytes` or `tasks`.
    budget: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutedLabels {
    swarm: String,
    /// The capability the task was addressed to.
    capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    swarm: String,
    /// `out` (request bodies) or `in` (response bodies).
    direction: String,
}

/// Task latency buckets: 0.25 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

/// The metrics and their registry.
pub struct Metrics {
    registry: Registry,
    tasks: Family<OutcomeLabels, Counter>,
    duration: Family<SwarmLabel, Histogram, fn() -> Histogram>,
    limits: Family<LimitLabels, Counter>,
    security: Family<SwarmLabel, Counter>,
    proxy_bytes: Family<DirectionLabels, Counter>,
    refused_calls: Family<SwarmLabel, Counter>,
    dropped_log_lines: Family<SwarmLabel, Counter>,
    cpu_seconds: Family<SwarmLabel, Counter<f64, AtomicU64>>,
    in_flight: Family<SwarmLabel, Gauge>,
    queued: Family<SwarmLabel, Gauge>,
    memory: Family<SwarmLabel, Gauge>,
    reputation: Family<SwarmLabel, Gauge<f64, AtomicU64>>,
    quarantined: Family<SwarmLabel, Gauge>,
    slo_compliant: Family<SwarmLabel, Gauge>,
    slo_p95: Family<SwarmLabel, Gauge<f64, AtomicU64>>,
    slo_error_ratio: Family<SwarmLabel, Gauge<f64, AtomicU64>>,
    slo_availability_ratio: Family<SwarmLabel, Gauge<f64, AtomicU64>>,
    slo_throughput: Family<SwarmLabel, Gauge<f64, AtomicU64>>,
    queue_pending: Family<SwarmLabel, Gauge>,
    queue_in_flight: Family<SwarmLabel, Gauge>,
    queue_redeliveries: Family<SwarmLabel, Counter>,
    queue_dead_letters: Family<SwarmLabel, Counter>,
    budget_spent: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    budget_limit: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    budget_renews: Family<SwarmLabel, Gauge<f64, AtomicU64>>,
    concurrency: Family<SwarmLabel, Gauge>,
    circuit_open: Family<SwarmLabel, Gauge>,
    circuit_openings: Family<SwarmLabel, Counter>,
    routed: Family<RoutedLabels, Counter>,
    audit_up: Gauge,
    fleet_workers: Gauge,
    /// One render at a time: a render sets the families read from the host
    /// afresh, and two at once would add a counter's value twice.
    rendering: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under the `chassis` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chassis");
        let m = Self {
            tasks: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            limits: Family::default(),
            security: Family::default(),
            proxy_bytes: Family::default(),
            refused_calls: Family::default(),
            dropped_log_lines: Family::default(),
            cpu_seconds: Family::default(),
            in_flight: Family::default(),
            queued: Family::default(),
            memory: Family::default(),
            reputation: Family::default(),
            quarantined: Family::default(),
            slo_compliant: Family::default(),
            slo_p95: Family::default(),
            slo_error_ratio: Family::default(),
            slo_availability_ratio: Family::default(),
            slo_throughput: Family::default(),
            queue_pending: Family::default(),
            queue_in_flight: Family::default(),
            queue_redeliveries: Family::default(),
            queue_dead_letters: Family::default(),
            budget_spent: Family::default(),
            budget_limit: Family::default(),
            budget_renews: Family::default(),
            concurrency: Family::default(),
            circuit_open: Family::default(),
            circuit_openings: Family::default(),
            routed: Family::default(),
            audit_up: Gauge::default(),
            fleet_workers: Gauge::default(),
            rendering: Mutex::new(()),
            registry: Registry::default(),
        };
        macro_rules! register {
            ($($field:ident: $name:literal, $help:literal;)*) => {
                $(registry.register($name, $help, m.$field.clone());)*
            };
        }
        register! {
            tasks: "tasks", "Tasks ended, by swarm and outcome";
            duration: "task_duration_seconds", "Task latency (admission to answer), by swarm";
            limits: "limit_violations", "Tasks ended by a resource limit, by swarm and limit";
            security: "security_violations", "Requests outside a swarm's contract";
            proxy_bytes: "proxy_bytes", "HTTP proxy body bytes, by swarm and direction";
            refused_calls: "refused_calls", "Import calls refused for rate since the swarm was loaded";
            dropped_log_lines: "dropped_log_lines", "Log lines dropped for rate since the swarm was loaded";
            cpu_seconds: "cpu_seconds", "CPU time of a swarm's tasks since it was loaded, added as each task ends";
            in_flight: "tasks_in_flight", "Tasks running now";
            queued: "tasks_queued", "Tasks waiting for a slot now";
            memory: "memory_bytes", "Linear memory of a swarm's running instances";
            reputation: "reputation_score", "A swarm's reputation score (0 to 1)";
            quarantined: "quarantined", "1 while a swarm is quarantined";
            slo_compliant: "slo_compliant", "1 while a swarm meets every SLO target of its contract";
            slo_p95: "slo_latency_p95_seconds", "95th percentile task latency since the swarm was loaded (its response_time SLO)";
            slo_error_ratio: "slo_error_ratio", "Tasks that did not succeed over all tasks since the swarm was loaded, 0 to 1 (its error_rate SLO)";
            slo_availability_ratio: "slo_availability_ratio", "Share of the time since the swarm was loaded that it was up, 0 to 1 (its availability SLO)";
            slo_throughput: "slo_throughput_tasks_per_second", "Tasks per second since the swarm was loaded";
            queue_pending: "queue_pending", "Tasks in the NATS queue not yet taken by a worker";
            queue_in_flight: "queue_in_flight", "Tasks taken from the NATS queue and not yet acknowledged, by any worker";
            queue_redeliveries: "queue_redeliveries", "Tasks this worker took that had been delivered before";
            queue_dead_letters: "queue_dead_letters", "Tasks this worker gave up after too many deliveries";
            budget_spent: "budget_spent", "What a swarm spent this period of one of its [budget]s, in its unit (seconds, bytes, tasks)";
            budget_limit: "budget_limit", "One of a swarm's [budget]s per period, in its unit (seconds, bytes, tasks)";
            budget_renews: "budget_renews_in_seconds", "Seconds until a swarm's budgets renew";
            concurrency: "concurrency_limit", "Slots of a swarm that may be taken now (the governor's throttle; max_concurrent_tasks when not throttled)";
            circuit_open: "circuit_open", "1 while a swarm's circuit is not closed: open (refusing, or waiting for its probe task) or half open";
            circuit_openings: "circuit_openings", "Times a swarm's circuit opened";
            routed: "tasks_routed", "Tasks addressed to a capability that the governor gave to a swarm, by swarm and capability";
            audit_up: "audit_log_up", "1 while the audit log records; 0 once it has failed and tasks are refused";
            fleet_workers: "fleet_workers", "Live workers of the fleet as this worker reads their heartbeats (with --nats)";
        }
        Self { registry, ..m }
    }

    /// The text exposition of every metric, the gauges read from `chassis`
    /// now.
    pub fn render(&self, chassis: &Chassis) -> String {
        let _one_at_a_time = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the swarms loaded now have series read from the host: an
        // unloaded one's last values must not linger as if it still ran.
        for family in [
            &self.in_flight,
            &self.queued,
            &self.memory,
            &self.quarantined,
            &self.slo_compliant,
        ] {
            family.clear();
        }
        for family in [&self.refused_calls, &self.dropped_log_lines] {
            family.clear();
        }
        for family in [
            &self.reputation,
            &self.slo_p95,
            &self.slo_error_ratio,
            &self.slo_availability_ratio,
            &self.slo_throughput,
        ] {
            family.clear();
        }
        self.cpu_seconds.clear();
        for family in [&self.budget_spent, &self.budget_limit] {
            family.clear();
        }
        self.budget_renews.clear();
        self.concurrency.clear();
        self.circuit_open.clear();
        self.audit_up
            .set(i64::from(chassis.event_sink_failure().is_none()));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for info in chassis.list() {
            let label = SwarmLabel {
                swarm: info.swarm_id.clone(),
            };
            if let Ok(usage) = chassis.resource_usage(&info.swarm_id) {
                let gauge = |f: &Family<SwarmLabel, Gauge>, v: u64| {
                    f.get_or_create(&label)
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                };
                // The host's counters, each set afresh (cleared above).
                let counter = |f: &Family<SwarmLabel, Counter>, v: u64| {
                    f.get_or_create(&label).inc_by(v);
                };
                counter(&self.refused_calls, usage.rate_limited_calls);
                counter(&self.dropped_log_lines, usage.dropped_log_lines);
                self.cpu_seconds
                    .get_or_create(&label)
                    .inc_by(usage.cpu_seconds);
                gauge(&self.in_flight, usage.tasks_running as u64);
                gauge(&self.queued, usage.tasks_queued as u64);
                gauge(&self.memory, (usage.memory_mb * 1024.0 * 1024.0) as u64);
                gauge(&self.concurrency, u64::from(usage.throttle.concurrency));
                gauge(
                    &self.circuit_open,
                    u64::from(usage.throttle.circuit != crate::CircuitState::Closed),
                );
                for b in &usage.budgets {
                    let labels = BudgetLabels {
                        swarm: info.swarm_id.clone(),
                        budget: b.budget.as_str(),
                    };
                    self.budget_spent.get_or_create(&labels).set(b.spent);
                    self.budget_limit.get_or_create(&labels).set(b.limit);
                    let renews = b.renews_at_ms.saturating_sub(now_ms) as f64 / 1000.0;
                    self.budget_renews.get_or_create(&label).set(renews);
                }
            }
            if let Ok(report) = chassis.slo_report(&info.swarm_id) {
                let set = |f: &Family<SwarmLabel, Gauge<f64, AtomicU64>>, v: f64| {
                    f.get_or_create(&label).set(v);
                };
                set(&self.reputation, report.reputation.score);
                self.quarantined
                    .get_or_create(&label)
                    .set(i64::from(report.reputation.quarantined));
                let slo = &report.slo;
                let compliant = slo.compliance.iter().all(|c| c.compliant);
                self.slo_compliant
                    .get_or_create(&label)
                    .set(i64::from(compliant));
                set(&self.slo_p95, slo.p95_ms / 1000.0);
                set(&self.slo_error_ratio, slo.error_rate_percent / 100.0);
                set(
                    &self.slo_availability_ratio,
                    slo.availability_percent / 100.0,
                );
                set(&self.slo_throughput, slo.throughput_rps);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

impl EventSink for Metrics {
    fn record(&self, event: &Event) {
        let swarm = |id: &str| SwarmLabel {
            swarm: id.to_string(),
        };
        match event {
            Event::TaskComplete {
                swarm_id, wall_ms, ..
            } => {
                self.ended(swarm_id, "success", *wall_ms);
            }
            Event::TaskFailed {
                swarm_id,
                kind,
                wall_ms,
                ..
            } => self.ended(swarm_id, kind, *wall_ms),
            Event::LimitExceeded {
                swarm_id, limit, ..
            } => {
                self.limits
                    .get_or_create(&LimitLabels {
                        swarm: swarm_id.clone(),
                        limit: limit.as_str().to_string(),
                    })
                    .inc();
            }
            Event::HttpProxy {
                swarm_id,
                bytes_out,
                bytes_in,
                security_violation,
                ..
            } => {
                for (direction, bytes) in [("out", bytes_out), ("in", bytes_in)] {
                    self.proxy_bytes
                        .get_or_create(&DirectionLabels {
                            swarm: swarm_id.clone(),
                            direction: direction.to_string(),
                        })
                        .inc_by(*bytes);
                }
                if *security_violation {
                    self.security.get_or_create(&swarm(swarm_id)).inc();
                }
            }
            Event::CircuitChanged {
                swarm_id, state, ..
            } if state == "open" => {
                self.circuit_openings.get_or_create(&swarm(swarm_id)).inc();
            }
            Event::TaskRouted {
                swarm_id,
                capability,
                ..
            } => {
                self.routed
                    .get_or_create(&RoutedLabels {
                        swarm: swarm_id.clone(),
                        capability: capability.clone(),
                    })
                    .inc();
            }
            Event::TaskAbandoned { swarm_id, .. } => {
                self.queue_dead_letters
                    .get_or_create(&swarm(swarm_id))
                    .inc();
            }
            Event::CredentialAccess {
                swarm_id,
                security_violation: true,
                ..
            }
            | Event::SecretRedacted {
                swarm_id,
                security_violation: true,
                ..
            } => {
                self.security.get_or_create(&swarm(swarm_id)).inc();
            }
            _ => {}
        }
    }
}

impl Metrics {
    /// The fleet's live workers now (a worker of a NATS queue sets it
    /// before each render).
    pub fn fleet_workers(&self, live: usize) {
        self.fleet_workers
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// A swarm's queue figures now (a worker of a NATS queue sets them
    /// before each render).
    pub fn queue_figures(&self, swarm_id: &str, pending: u64, in_flight: u64) {
        let label = SwarmLabel {
            swarm: swarm_id.to_string(),
        };
        let set = |f: &Family<SwarmLabel, Gauge>, v: u64| {
            f.get_or_create(&label)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.queue_pending, pending);
        set(&self.queue_in_flight, in_flight);
    }

    /// Forget every swarm's queue figures (before they are set again).
    pub fn clear_queue_figures(&self) {
        self.queue_pending.clear();
        self.queue_in_flight.clear();
    }

    /// A task taken from the queue had been delivered before.
    pub fn redelivered(&self, swarm_id: &str) {
        self.queue_redeliveries
            .get_or_create(&SwarmLabel {
                swarm: swarm_id.to_string(),
            })
            .inc();
    }

    fn ended(&self, swarm_id: &str, outcome: &str, wall_ms: f64) {
        self.tasks
            .get_or_create(&OutcomeLabels {
                swarm: swarm_id.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        // Latency as the SLOs see it: tasks refused before they reached the
        // swarm (or given up by their caller) have none.
        let counted = crate::TaskEnd::from_names(outcome, None)
            .and_then(crate::reputation::counted)
            .is_some();
        if !counted {
            return;
        }
        self.duration
            .get_or_create(&SwarmLabel {
                swarm: swarm_id.to_string(),
            })
            .observe(wall_ms.max(0.0) / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_endings_become_counters_and_a_histogram() {
        let m = Metrics::new();
        for (id, ms) in [("t1", 2.0), ("t2", 40.0)] {
            m.record(&Event::TaskComplete {
                swarm_id: "s".into(),
                task_id: id.into(),
                wall_ms: ms,
            });
        }
        for (id, kind) in [("t3", "timeout"), ("t4", "task_not_exported")] {
            m.record(&Event::TaskFailed {
                swarm_id: "s".into(),
                task_id: id.into(),
                kind: kind.into(),
                error: String::new(),
                guest_error: None,
                wall_ms: 1000.0,
            });
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(text.contains("# TYPE chassis_tasks counter"), "{text}");
        assert!(
            text.contains(r#"chassis_tasks_total{swarm="s",outcome="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chassis_tasks_total{swarm="s",outcome="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE chassis_task_duration_seconds histogram"),
            "{text}"
        );
        // The refused task has a count, not a latency.
        assert!(
            text.contains(r#"chassis_tasks_total{swarm="s",outcome="task_not_exported"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chassis_task_duration_seconds_count{swarm="s"} 3"#),
            "{text}"
        );
    }
}
