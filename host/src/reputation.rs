//! Reputation: a score per swarm from its SLO compliance and its security
//! record, that the host acts on.
//!
//! The seed's formula gives the score a swarm is heading for:
//!
//! ```text
//! slo_compliance = 0.4 · (p95 met ? 1 : 0.5) + 0.3 · (error rate met ? 1 : 0.5)
//!                + 0.3 · (availability met ? 1 : 0.3)
//! target         = slo_compliance · slo_weight + security_compliance · security_weight
//! ```
//!
//! The score starts at the contract's `initial_score` and moves a tenth of
//! the way to `target` after every task, so trust is earned (or lost) over
//! tasks rather than at once. A security violation (a credential outside the
//! swarm's scope, a denied endpoint, a refused address) costs 20 %: both the
//! security compliance and the score are multiplied by 0.8. A task ended by
//! a resource limit the guest ran into (timeout, memory, fuel, stack, call
//! rate, output or host-call size) costs 10 % of the score on top of what
//! it does to the SLO figures; a task refused as overloaded costs nothing
//! extra, since a full queue is the callers' doing (it still counts against
//! availability and the error rate). Below the
//! contract's `quarantine_threshold` the swarm is quarantined: the host
//! refuses its tasks until an operator releases it, which restores
//! `initial_score` and full security compliance.
//!
//! The score alone never quarantines a swarm that fails every task: its
//! target floors near 0.6 with the seed's weights. So a failure guard sits
//! beside it: over the swarm's latest `failure_window` tasks, when more than
//! `max_failure_rate_percent` of them failed by the swarm's own doing (a
//! trap, a limit it ran into, an output the host refused, or its own
//! `failed` error; not an invalid payload or unknown task type, which are
//! the caller's mistakes, nor an overload), the swarm is quarantined too.
//!
//! How a task's ending counts is decided once, by [`counted`], for the
//! live host and for the audit log's replay alike.

use std::collections::VecDeque;

use serde::Serialize;

use crate::error::{ErrorKind, GuestErrorKind};
use crate::outcome::TaskEnd;
use crate::slo::{Compliance, Ending};

/// How one task's ending counts for SLOs and reputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    /// How SLOs see it.
    pub ending: Ending,
    /// Whether it failed by the swarm's own doing (the failure guard).
    pub own_failure: bool,
}

/// Whether a task ended by `limit` costs reputation on top of its SLO
/// figures: every limit the guest ran into does; a full queue
/// (`Overloaded`) is the callers' doing and does not.
pub(crate) fn limit_costs_reputation(limit: crate::limits::LimitKind) -> bool {
    limit != crate::limits::LimitKind::Overloaded
}

/// How a task that ended as `end` counts. `None` for a task refused before
/// it reached the swarm, or given up by its caller (not the swarm's doing).
pub(crate) fn counted(end: TaskEnd) -> Option<Counted> {
    let (ending, own_failure) = match end {
        TaskEnd::Success => (Ending::Success, false),
        // An invalid payload or an unknown task type is the caller's mistake.
        TaskEnd::GuestError(kind) => (Ending::GuestError, kind == GuestErrorKind::Failed),
        TaskEnd::Host(kind) => match kind {
            ErrorKind::TaskNotExported
            | ErrorKind::Quarantined
            | ErrorKind::Registry
            | ErrorKind::Audit
            | ErrorKind::BudgetExhausted
            | ErrorKind::CircuitOpen
            | ErrorKind::Cancelled => return None,
            ErrorKind::Overloaded => (Ending::NoAnswer, false),
            _ => (Ending::NoAnswer, true),
        },
    };
    Some(Counted {
        ending,
        own_failure,
    })
}

/// How far the score moves towards its target per task.
pub(crate) const STEP: f64 = 0.1;

/// What a security violation leaves of the score (a 20 % cost).
pub(crate) const VIOLATION_FACTOR: f64 = 0.8;

/// What a resource-limit violation leaves of the score (a 10 % cost).
pub(crate) const LIMIT_FACTOR: f64 = 0.9;

/// A swarm's reputation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reputation {
    /// The score (0–1).
    pub score: f64,
    /// SLO compliance (0.3–1) from the last update.
    pub slo_compliance: f64,
    /// Security compliance (0–1): 0.8 to the power of the violations.
    pub security_compliance: f64,
    /// Whether the host refuses the swarm's tasks.
    pub quarantined: bool,
    /// Score under which it is quarantined.
    pub threshold: f64,
    /// Why it is quarantined, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_reason: Option<String>,
    /// Of the latest tasks (up to the failure window), how many failed by
    /// the swarm's own doing.
    pub recent_failures: u32,
    /// How many latest tasks the failure guard holds (up to the window).
    pub recent_tasks: u32,
    #[serde(skip)]
    window: usize,
    #[serde(skip)]
    max_failure_rate: f64,
    #[serde(skip)]
    failures: VecDeque<bool>,
    #[serde(skip)]
    slo_weight: f64,
    #[serde(skip)]
    security_weight: f64,
    #[serde(skip)]
    initial: f64,
    #[serde(skip)]
    reported: f64,
}

/// What an update did, for events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Nothing to report.
    None,
    /// The score moved by at least 0.01 since it was last reported.
    Moved {
        /// The old reported score.
        from: f64,
        /// The new score.
        to: f64,
    },
    /// The score fell under the threshold, or the failure guard tripped:
    /// the swarm is now quarantined.
    Quarantined {
        /// The new score.
        score: f64,
        /// Why.
        reason: String,
    },
}

impl Reputation {
    /// A swarm's starting reputation under its contract.
    pub(crate) fn new(contract: &crate::contract::Reputation) -> Self {
        Self {
            score: contract.initial_score,
            slo_compliance: 1.0,
            security_compliance: 1.0,
            quarantined: false,
            threshold: contract.quarantine_threshold,
            quarantine_reason: None,
            recent_failures: 0,
            recent_tasks: 0,
            window: contract.failure_window.max(1) as usize,
            max_failure_rate: contract.max_failure_rate_percent,
            failures: VecDeque::new(),
            slo_weight: contract.slo_weight,
            security_weight: contract.security_weight,
            initial: contract.initial_score,
            reported: contract.initial_score,
        }
    }

    /// Take a replacing version's settings (threshold, weights, failure
    /// window), keeping the score, the quarantine and the recent tasks: a
    /// new version of a swarm does not start with a clean record. The
    /// record is then judged by the new settings: a score under the new
    /// threshold, or a full window failing more than the new rate allows,
    /// quarantines the swarm (the returned change says so).
    pub(crate) fn reconfigure(&mut self, contract: &crate::contract::Reputation) -> Change {
        self.threshold = contract.quarantine_threshold;
        self.window = contract.failure_window.max(1) as usize;
        self.max_failure_rate = contract.max_failure_rate_percent;
        self.slo_weight = contract.slo_weight;
        self.security_weight = contract.security_weight;
        self.initial = contract.initial_score;
        while self.failures.len() > self.window {
            self.failures.pop_front();
        }
        self.recent_tasks = self.failures.len() as u32;
        self.recent_failures = self.failures.iter().filter(|f| **f).count() as u32;
        let rate = f64::from(self.recent_failures) * 100.0 / self.window as f64;
        if !self.quarantined && self.failures.len() == self.window && rate > self.max_failure_rate {
            return self.quarantine(format!(
                "{} of its latest {} tasks failed ({rate:.0} %, over the new max_failure_rate_percent = {})",
                self.recent_failures, self.window, self.max_failure_rate
            ));
        }
        self.settle()
    }

    /// The state as JSON, for an audit checkpoint: everything but the
    /// settings, which come from the contract. [`Reputation::from_state`]
    /// gives back the same reputation.
    pub(crate) fn state(&self) -> serde_json::Value {
        let failures: String = self
            .failures
            .iter()
            .map(|f| if *f { '1' } else { '0' })
            .collect();
        serde_json::json!({
            "score": self.score,
            "slo_compliance": self.slo_compliance,
            "security_compliance": self.security_compliance,
            "quarantined": self.quarantined,
            "quarantine_reason": self.quarantine_reason,
            "failures": failures,
            "reported": self.reported,
        })
    }

    /// The reputation [`Reputation::state`] wrote, under `contract`'s
    /// settings; `None` for a state that is not one.
    pub(crate) fn from_state(
        contract: &crate::contract::Reputation,
        state: &serde_json::Value,
    ) -> Option<Self> {
        let mut r = Self::new(contract);
        let number = |key: &str| state[key].as_f64().filter(|v| v.is_finite());
        r.score = number("score")?;
        r.slo_compliance = number("slo_compliance")?;
        r.security_compliance = number("security_compliance")?;
        r.reported = number("reported")?;
        r.quarantined = state["quarantined"].as_bool()?;
        r.quarantine_reason = match &state["quarantine_reason"] {
            serde_json::Value::Null => None,
            v => Some(v.as_str()?.to_string()),
        };
        for c in state["failures"].as_str()?.chars() {
            r.failures.push_back(match c {
                '1' => true,
                '0' => false,
                _ => return None,
            });
        }
        while r.failures.len() > r.window {
            r.failures.pop_front();
        }
        r.recent_tasks = r.failures.len() as u32;
        r.recent_failures = r.failures.iter().filter(|f| **f).count() as u32;
        Some(r)
    }

    /// The score the swarm is heading for.
    pub fn target(&self) -> f64 {
        self.slo_compliance * self.slo_weight + self.security_compliance * self.security_weight
    }

    /// After a task: move towards the target for this compliance, and
    /// count whether it failed by the swarm's own doing.
    pub(crate) fn after_task(&mut self, compliance: Compliance, own_failure: bool) -> Change {
        self.slo_compliance = compliance.score();
        self.score += STEP * (self.target() - self.score);
        if self.failures.len() == self.window {
            self.failures.pop_front();
        }
        self.failures.push_back(own_failure);
        self.recent_tasks = self.failures.len() as u32;
        self.recent_failures = self.failures.iter().filter(|f| **f).count() as u32;
        let full = self.failures.len() == self.window;
        let rate = f64::from(self.recent_failures) * 100.0 / self.window as f64;
        if full && rate > self.max_failure_rate && !self.quarantined {
            self.score = self.score.clamp(0.0, 1.0);
            return self.quarantine(format!(
                "{} of its latest {} tasks failed ({rate:.0} %, over max_failure_rate_percent = {})",
                self.recent_failures, self.window, self.max_failure_rate
            ));
        }
        self.settle()
    }

    pub(crate) fn quarantine(&mut self, reason: String) -> Change {
        self.quarantined = true;
        self.quarantine_reason = Some(reason.clone());
        self.reported = self.score;
        Change::Quarantined {
            score: self.score,
            reason,
        }
    }

    /// A security violation: a 20 % cost.
    pub(crate) fn violation(&mut self) -> Change {
        self.security_compliance *= VIOLATION_FACTOR;
        self.score *= VIOLATION_FACTOR;
        self.settle()
    }

    /// A task ended by a resource limit the guest ran into: a 10 % cost.
    pub(crate) fn limit_violation(&mut self) -> Change {
        self.score *= LIMIT_FACTOR;
        self.settle()
    }

    /// An operator's release: back to the initial score, full security compliance.
    pub fn release(&mut self) {
        self.quarantined = false;
        self.quarantine_reason = None;
        self.failures.clear();
        self.recent_failures = 0;
        self.recent_tasks = 0;
        self.score = self.initial;
        self.reported = self.initial;
        self.security_compliance = 1.0;
    }

    fn settle(&mut self) -> Change {
        self.score = self.score.clamp(0.0, 1.0);
        if !self.quarantined && self.score < self.threshold {
            return self.quarantine(format!(
                "reputation {:.2} is under its quarantine_threshold {}",
                self.score, self.threshold
            ));
        }
        if (self.score - self.reported).abs() >= 0.01 {
            let from = std::mem::replace(&mut self.reported, self.score);
            Change::Moved {
                from,
                to: self.score,
            }
        } else {
            Change::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(initial: f64, slo: f64, threshold: f64) -> crate::contract::Reputation {
        crate::contract::Reputation {
            initial_score: initial,
            slo_weight: slo,
            security_weight: 1.0 - slo,
            quarantine_threshold: threshold,
            failure_window: 20,
            max_failure_rate_percent: 100.0,
            selection_threshold: None,
        }
    }

    /// A new version's settings judge the record it inherits: a raised
    /// threshold or a lowered failure rate quarantines at once.
    #[test]
    fn a_new_version_s_settings_can_quarantine_at_once() {
        let mut r = Reputation::new(&contract(0.8, 0.5, 0.5));
        assert!(matches!(
            r.reconfigure(&contract(0.8, 0.5, 0.9)),
            Change::Quarantined { .. }
        ));
        assert!(r.quarantined);
        assert!(
            r.quarantine_reason
                .as_deref()
                .unwrap()
                .contains("quarantine_threshold")
        );

        let mut r = Reputation::new(&contract(1.0, 0.5, 0.1));
        for _ in 0..20 {
            r.after_task(Compliance::MET, true);
        }
        assert!(
            !r.quarantined,
            "rate allowed by max_failure_rate_percent = 100"
        );
        let mut strict = contract(1.0, 0.5, 0.1);
        strict.max_failure_rate_percent = 50.0;
        assert!(matches!(r.reconfigure(&strict), Change::Quarantined { .. }));
        // Already quarantined: nothing more to say.
        assert!(matches!(
            r.reconfigure(&strict),
            Change::None | Change::Moved { .. }
        ));
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_seed_compliance_scores() {
        assert!(close(Compliance::MET.score(), 1.0));
        let all_missed = Compliance {
            response_time: false,
            error_rate: false,
            availability: false,
        };
        assert!(close(all_missed.score(), 0.4 * 0.5 + 0.3 * 0.5 + 0.3 * 0.3));
        let slow = Compliance {
            response_time: false,
            ..Compliance::MET
        };
        assert!(close(slow.score(), 0.8));
    }

    #[test]
    fn the_score_moves_a_tenth_of_the_way_to_the_target() {
        let mut r = Reputation::new(&contract(0.98, 0.7, 0.2));
        // Perfect task: target 1.0; 0.98 + 0.1 · 0.02.
        assert_eq!(r.after_task(Compliance::MET, false), Change::None);
        assert!(close(r.score, 0.982));
        // Slow task: SLO compliance 0.8, target 0.8·0.7 + 1·0.3 = 0.86.
        let slow = Compliance {
            response_time: false,
            ..Compliance::MET
        };
        r.after_task(slow, false);
        assert!(close(r.slo_compliance, 0.8));
        assert!(close(r.target(), 0.86));
        assert!(close(r.score, 0.982 + 0.1 * (0.86 - 0.982)));
    }

    #[test]
    fn a_security_violation_costs_twenty_percent() {
        let mut r = Reputation::new(&contract(0.5, 0.6, 0.1));
        assert_eq!(r.violation(), Change::Moved { from: 0.5, to: 0.4 });
        assert!(close(r.security_compliance, 0.8));
        r.violation();
        assert!(close(r.score, 0.32));
        assert!(close(r.security_compliance, 0.64));
        // Target now 1·0.6 + 0.64·0.4 = 0.856.
        assert!(close(r.target(), 0.856));
    }

    #[test]
    fn a_limit_violation_costs_ten_percent_of_the_score() {
        let mut r = Reputation::new(&contract(0.8, 0.7, 0.2));
        assert!(
            matches!(r.limit_violation(), Change::Moved { from, to } if close(from, 0.8) && close(to, 0.72)),
            "{r:?}"
        );
        // Security compliance, and so the target, are untouched.
        assert!(close(r.security_compliance, 1.0));
        assert!(close(r.target(), 1.0));
        // A guest that hits its limits on every task sinks well below a
        // clean one: each task moves a tenth towards the target, then pays.
        let mut clean = Reputation::new(&contract(0.8, 0.7, 0.0));
        let mut abusive = Reputation::new(&contract(0.8, 0.7, 0.0));
        let missed = Compliance {
            response_time: true,
            error_rate: false,
            availability: false,
        };
        for _ in 0..50 {
            clean.after_task(Compliance::MET, false);
            abusive.after_task(missed, true);
            abusive.limit_violation();
        }
        assert!(clean.score > 0.99, "{}", clean.score);
        // Fixed point of s = 0.9·(0.9·s + 0.1·T), T = 0.79·0.7 + 0.3 = 0.853.
        let t = missed.score() * 0.7 + 0.3;
        assert!(close(abusive.target(), t));
        assert!(
            (abusive.score - 0.09 * t / 0.19).abs() < 1e-3,
            "{}",
            abusive.score
        );
    }

    #[test]
    fn falling_under_the_threshold_quarantines_once_and_release_restores() {
        let mut r = Reputation::new(&contract(0.3, 0.5, 0.25));
        assert!(
            matches!(r.violation(), Change::Quarantined { score, ref reason } if close(score, 0.3 * 0.8) && reason.contains("under its quarantine_threshold 0.25"))
        );
        assert!(r.quarantined);
        // Already quarantined: no second quarantine.
        assert!(!matches!(r.violation(), Change::Quarantined { .. }));
        r.release();
        assert!(!r.quarantined);
        assert!(close(r.score, 0.3));
        assert!(close(r.security_compliance, 1.0));
    }

    #[test]
    fn a_swarm_that_fails_every_task_is_quarantined_by_the_failure_guard() {
        let all_missed = Compliance {
            response_time: true,
            error_rate: false,
            availability: false,
        };
        let mut guarded = crate::contract::Reputation {
            failure_window: 10,
            max_failure_rate_percent: 50.0,
            ..contract(0.5, 0.7, 0.2)
        };
        // The score alone: a swarm failing every task floors above the threshold.
        let mut unguarded = Reputation::new(&contract(0.5, 0.7, 0.2));
        for _ in 0..200 {
            assert!(!matches!(
                unguarded.after_task(all_missed, true),
                Change::Quarantined { .. }
            ));
        }
        assert!(
            unguarded.score > 0.5 && !unguarded.quarantined,
            "{unguarded:?}"
        );
        // With the guard: quarantined once the window is full, on the 10th task.
        let mut r = Reputation::new(&guarded);
        for i in 1..=10 {
            let change = r.after_task(all_missed, true);
            assert_eq!(
                matches!(change, Change::Quarantined { .. }),
                i == 10,
                "task {i}"
            );
        }
        assert!(r.quarantined);
        let reason = r.quarantine_reason.clone().unwrap();
        assert!(
            reason.contains("10 of its latest 10 tasks failed"),
            "{reason}"
        );
        r.release();
        assert!(!r.quarantined && r.recent_tasks == 0);
        // Half failing is not over 50 %; caller mistakes do not count.
        guarded.max_failure_rate_percent = 50.0;
        let mut healthy = Reputation::new(&guarded);
        for i in 0..100 {
            healthy.after_task(Compliance::MET, i % 2 == 0);
        }
        assert!(!healthy.quarantined, "{healthy:?}");
        let own = |kind: &str, guest: Option<&str>| {
            counted(TaskEnd::from_names(kind, guest).expect("a known ending"))
                .map(|c| c.own_failure)
        };
        assert_eq!(own("guest_error", Some("invalid_payload")), Some(false));
        assert_eq!(own("guest_error", Some("failed")), Some(true));
        assert_eq!(own("trap", None), Some(true));
        assert_eq!(own("overloaded", None), Some(false));
        assert_eq!(own("task_not_exported", None), None);
    }
}
