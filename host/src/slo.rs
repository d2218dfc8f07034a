//! SLO tracking per swarm: latency histogram, error rate, availability,
//! throughput, and compliance against the contract's `slo_targets`.
//!
//! - **Latency**: every task that reached the swarm, from the request to its
//!   end (time waiting for a slot included), in an HDR histogram (1 µs to
//!   1 h, 3 significant digits); p50/p95/p99.
//! - **Error rate**: tasks that did not succeed (guest errors, traps,
//!   limits, overload) over all tasks, in percent. A task type the swarm does
//!   not serve is the caller's mistake and does not count.
//! - **Availability**: the share of time since load that the swarm was up.
//!   It is down from a task that ended without an answer from the guest
//!   (trap, timeout, limit, overload) until the next task it answered
//!   (success or its own error) — the seed's uptime / (uptime + downtime).
//! - **Throughput**: tasks per second since load.
//!
//! Compliance is checked after every task; a target going from met to
//! missed raises one `SloViolation` event (on the edge, not on every task).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::contract::SloTargets;

/// Which SLO targets are met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compliance {
    /// p95 latency at or under `response_time_p95_ms`.
    pub response_time: bool,
    /// Error rate at or under `error_rate_percent`.
    pub error_rate: bool,
    /// Availability at or over `availability_percent`.
    pub availability: bool,
}

impl Compliance {
    /// Everything met.
    pub(crate) const MET: Compliance = Compliance {
        response_time: true,
        error_rate: true,
        availability: true,
    };

    /// The seed's SLO compliance score (0.3 to 1).
    pub(crate) fn score(self) -> f64 {
        let f = |ok: bool, miss: f64| if ok { 1.0 } else { miss };
        0.4 * f(self.response_time, 0.5)
            + 0.3 * f(self.error_rate, 0.5)
            + 0.3 * f(self.availability, 0.3)
    }
}

/// One SLO against its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `response_time`, `error_rate` or `availability`.
    pub metric: &'static str,
    /// The measured value (ms or percent).
    pub actual: f64,
    /// The contract's target.
    pub target: f64,
    /// Whether it is met.
    pub compliant: bool,
}

/// A swarm's SLO figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloFigures {
    /// Tasks counted.
    pub tasks: u64,
    /// Tasks that did not succeed.
    pub failed: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 95th percentile latency, ms.
    pub p95_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed over all, percent.
    pub error_rate_percent: f64,
    /// Time up over time since load, percent.
    pub availability_percent: f64,
    /// Tasks per second since load.
    pub throughput_rps: f64,
    /// Each target, met or not.
    pub compliance: Vec<Check>,
}

/// How a task ended, as SLOs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The guest returned a result.
    Success,
    /// The guest answered with its own error.
    GuestError,
    /// No answer: trap, timeout, limit, overload.
    NoAnswer,
}

/// The SLO state of one swarm.
#[derive(Debug, Clone)]
pub(crate) struct SloTracker {
    latency_us: Histogram<u64>,
    tasks: u64,
    failed: u64,
    /// The tracker's clock: at `origin` it was `age_at_origin` old. (Its
    /// age, not an `Instant`, marks when it went down, so a tracker rebuilt
    /// from an audit log can go on in a new process: [`SloTracker::resume`].)
    origin: Instant,
    age_at_origin: Duration,
    /// Age at which the swarm went down, while it is down.
    down_since: Option<Duration>,
    downtime: Duration,
    met: Compliance,
}

impl SloTracker {
    /// A tracker starting now.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            tasks: 0,
            failed: 0,
            origin: now,
            age_at_origin: Duration::ZERO,
            down_since: None,
            downtime: Duration::ZERO,
            met: Compliance::MET,
        }
    }

    /// Record one task; returns the compliance now and the metrics that just
    /// went from met to missed.
    pub(crate) fn record(
        &mut self,
        latency: Duration,
        ending: Ending,
        targets: &SloTargets,
        now: Instant,
    ) -> (Compliance, Vec<Check>) {
        // Rounded to the microsecond, as the audit log's wall_ms gives it back.
        let us = (latency.as_nanos().saturating_add(500) / 1000) as u64;
        self.latency_us
            .saturating_record(us.clamp(1, 3_600_000_000));
        let age = self.age(now);
        self.tasks += 1;
        if ending != Ending::Success {
            self.failed += 1;
        }
        match (ending, self.down_since) {
            (Ending::NoAnswer, None) => self.down_since = Some(age),
            (Ending::Success | Ending::GuestError, Some(t)) => {
                self.downtime += age.saturating_sub(t);
                self.down_since = None;
            }
            _ => {}
        }
        // Only what compliance needs (p95, not p50 or p99), and a list
        // only when a target is newly missed: this runs for every task.
        let checks = self.checks(targets, now);
        let met = compliance(&checks);
        let newly_missed = if met == self.met {
            Vec::new()
        } else {
            checks
                .into_iter()
                .filter(|c| !c.compliant && was_met(self.met, c.metric))
                .collect()
        };
        self.met = met;
        (met, newly_missed)
    }

    /// How long the tracker has been counting at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.age_at_origin + now.saturating_duration_since(self.origin)
    }

    /// Go on counting from `now`, when the tracker is `age` old (for
    /// example a tracker rebuilt from an audit log whose first record is
    /// `age` ago).
    pub(crate) fn resume(&mut self, now: Instant, age: Duration) {
        self.origin = now;
        self.age_at_origin = age;
    }

    /// The state as JSON, for an audit checkpoint: the histogram's buckets
    /// as `[value, count, ...]`, the counts, and when it went down and for
    /// how long as ages in microseconds. [`SloTracker::from_state`] gives
    /// back the same tracker.
    pub(crate) fn state(&self) -> serde_json::Value {
        let mut buckets = Vec::new();
        for v in self.latency_us.iter_recorded() {
            buckets.push(v.value_iterated_to());
            buckets.push(v.count_at_value());
        }
        let micros = |d: Duration| d.as_micros() as u64;
        serde_json::json!({
            "latency_us": buckets,
            "tasks": self.tasks,
            "failed": self.failed,
            "down_since_us": self.down_since.map(micros),
            "downtime_us": micros(self.downtime),
            "met": [self.met.response_time, self.met.error_rate, self.met.availability],
        })
    }

    /// The tracker [`SloTracker::state`] wrote, its clock starting (age 0)
    /// at `origin`; `None` for a state that is not one.
    pub(crate) fn from_state(state: &serde_json::Value, origin: Instant) -> Option<Self> {
        let micros = |v: &serde_json::Value| v.as_u64().map(Duration::from_micros);
        let mut tracker = Self::new(origin);
        let buckets = state["latency_us"].as_array()?;
        if buckets.len() % 2 != 0 {
            return None;
        }
        for pair in buckets.chunks(2) {
            let (value, count) = (pair[0].as_u64()?, pair[1].as_u64()?);
            tracker
                .latency_us
                .record_n(value.clamp(1, 3_600_000_000), count)
                .ok()?;
        }
        tracker.tasks = state["tasks"].as_u64()?;
        tracker.failed = state["failed"].as_u64()?;
        tracker.down_since = match &state["down_since_us"] {
            serde_json::Value::Null => None,
            v => Some(micros(v)?),
        };
        tracker.downtime = micros(&state["downtime_us"])?;
        let met = state["met"].as_array()?;
        let flag = |i: usize| met.get(i).and_then(serde_json::Value::as_bool);
        tracker.met = Compliance {
            response_time: flag(0)?,
            error_rate: flag(1)?,
            availability: flag(2)?,
        };
        Some(tracker)
    }

    /// The figures now, against `targets`.
    pub(crate) fn figures(&self, targets: &SloTargets, now: Instant) -> SloFigures {
        let [response_time, error_rate, availability] = self.checks(targets, now);
        let elapsed = self.age(now);
        SloFigures {
            tasks: self.tasks,
            failed: self.failed,
            p50_ms: self.quantile_ms(0.50),
            p95_ms: response_time.actual,
            p99_ms: self.quantile_ms(0.99),
            error_rate_percent: error_rate.actual,
            availability_percent: availability.actual,
            throughput_rps: self.tasks as f64 / elapsed.as_secs_f64().max(1e-9),
            compliance: vec![response_time, error_rate, availability],
        }
    }

    /// The latency at quantile `q`, in ms (0 before the first task).
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.tasks == 0 {
            0.0
        } else {
            self.latency_us.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// Each target against its figure at `now`: response time (p95), error
    /// rate, availability.
    fn checks(&self, targets: &SloTargets, now: Instant) -> [Check; 3] {
        let elapsed = self.age(now);
        let down = self.downtime
            + self
                .down_since
                .map_or(Duration::ZERO, |t| elapsed.saturating_sub(t));
        let availability = if elapsed.is_zero() {
            100.0
        } else {
            100.0 * (1.0 - down.as_secs_f64() / elapsed.as_secs_f64()).max(0.0)
        };
        let error_rate = if self.tasks == 0 {
            0.0
        } else {
            100.0 * self.failed as f64 / self.tasks as f64
        };
        let p95 = self.quantile_ms(0.95);
        [
            Check {
                metric: "response_time",
                actual: p95,
                target: targets.response_time_p95_ms,
                compliant: p95 <= targets.response_time_p95_ms,
            },
            Check {
                metric: "error_rate",
                actual: error_rate,
                target: targets.error_rate_percent,
                compliant: error_rate <= targets.error_rate_percent,
            },
            Check {
                metric: "availability",
                actual: availability,
                target: targets.availability_percent,
                compliant: availability >= targets.availability_percent,
            },
        ]
    }
}

fn compliance(checks: &[Check]) -> Compliance {
    let ok = |m: &str| checks.iter().any(|c| c.metric == m && c.compliant);
    Compliance {
        response_time: ok("response_time"),
        error_rate: ok("error_rate"),
        availability: ok("availability"),
    }
}

fn was_met(c: Compliance, metric: &str) -> bool {
    match metric {
        "response_time" => c.response_time,
        "error_rate" => c.error_rate,
        _ => c.availability,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> SloTargets {
        SloTargets {
            response_time_p95_ms: 100.0,
            error_rate_percent: 10.0,
            availability_percent: 90.0,
            throughput_rps: 1.0,
        }
    }

    #[test]
    fn percentiles_of_known_samples() {
        let t0 = Instant::now();
        let mut s = SloTracker::new(t0);
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms), Ending::Success, &targets(), t0);
        }
        let f = s.figures(&targets(), t0 + Duration::from_secs(10));
        assert!((f.p50_ms - 50.0).abs() < 0.1, "{f:?}");
        assert!((f.p95_ms - 95.0).abs() < 0.1, "{f:?}");
        assert!((f.p99_ms - 99.0).abs() < 0.1, "{f:?}");
        assert_eq!(f.tasks, 100);
        assert!((f.throughput_rps - 10.0).abs() < 1e-9);
        assert!(f.compliance.iter().all(|c| c.compliant));
    }

    #[test]
    fn error_rate_and_availability_of_known_samples() {
        let t0 = Instant::now();
        let mut s = SloTracker::new(t0);
        let ms = Duration::from_millis(1);
        s.record(ms, Ending::Success, &targets(), t0 + Duration::from_secs(1));
        s.record(
            ms,
            Ending::GuestError,
            &targets(),
            t0 + Duration::from_secs(2),
        );
        // Down from 4 s (no answer) until 7 s (answered): 3 s of 10.
        s.record(
            ms,
            Ending::NoAnswer,
            &targets(),
            t0 + Duration::from_secs(4),
        );
        s.record(ms, Ending::Success, &targets(), t0 + Duration::from_secs(7));
        let f = s.figures(&targets(), t0 + Duration::from_secs(10));
        assert_eq!((f.tasks, f.failed), (4, 2));
        assert!((f.error_rate_percent - 50.0).abs() < 1e-9);
        assert!((f.availability_percent - 70.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn a_resumed_tracker_counts_on_from_its_age() {
        let t0 = Instant::now();
        let mut s = SloTracker::new(t0);
        let ms = Duration::from_millis(1);
        s.record(
            ms,
            Ending::NoAnswer,
            &targets(),
            t0 + Duration::from_secs(2),
        );
        // A new process picks it up 8 s after it started, still down.
        let t1 = Instant::now();
        s.resume(t1, Duration::from_secs(8));
        assert_eq!(s.age(t1 + Duration::from_secs(2)), Duration::from_secs(10));
        s.record(ms, Ending::Success, &targets(), t1 + Duration::from_secs(2));
        // Down from age 2 s to 10 s: 8 s of 10.
        let f = s.figures(&targets(), t1 + Duration::from_secs(2));
        assert!((f.availability_percent - 20.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn a_violation_is_reported_on_the_edge_only() {
        let t0 = Instant::now();
        let mut s = SloTracker::new(t0);
        let ms = Duration::from_millis(1);
        let (_, missed) = s.record(ms, Ending::Success, &targets(), t0);
        assert!(missed.is_empty());
        let (c, missed) = s.record(ms, Ending::GuestError, &targets(), t0);
        assert!(!c.error_rate);
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].metric, "error_rate");
        // Still missed: no second report.
        let (_, missed) = s.record(ms, Ending::GuestError, &targets(), t0);
        assert!(missed.is_empty());
    }
}
