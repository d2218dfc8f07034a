//! One swarm's health: its SLO figures ([`crate::slo`]) and its reputation
//! ([`crate::reputation`]), kept together behind one lock and updated
//! together, with the events their changes raise.
//!
//! Data flow: the runner calls [`SwarmHealth::after_task`] once a task's
//! terminal event is out; the imports call
//! [`SwarmHealth::security_violation`] (through
//! [`crate::imports::scope`]) the moment a guest asks for something outside
//! its contract; the facade reads and restores the state.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::contract::{ServiceContract, SloTargets};
use crate::events::{Event, Events};
use crate::limits::LimitKind;
use crate::outcome::TaskEnd;
use crate::reputation::{Change, Reputation};
use crate::slo::{Check, SloTracker};

/// SLOs and reputation of one swarm, updated together.
#[derive(Debug)]
pub(crate) struct Health {
    pub(crate) slo: SloTracker,
    pub(crate) reputation: Reputation,
}

/// A swarm's [`Health`] and where its changes are reported.
pub(crate) struct SwarmHealth {
    swarm_id: String,
    events: Events,
    state: Mutex<Health>,
}

impl SwarmHealth {
    pub(crate) fn new(contract: &ServiceContract, events: Events) -> Self {
        Self {
            swarm_id: contract.swarm_id.clone(),
            events,
            state: Mutex::new(Health::new(contract, Instant::now())),
        }
    }

    /// The state, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Health> {
        self.state.lock().expect("health lock")
    }

    /// Raise the events of a reputation change.
    pub(crate) fn report(&self, change: Change, task_id: &str) {
        match change {
            Change::None => {}
            Change::Moved { from, to } => self.events.emit(|| Event::ReputationChanged {
                swarm_id: self.swarm_id.clone(),
                task_id: task_id.to_string(),
                from,
                to,
            }),
            Change::Quarantined { score, reason } => {
                tracing::warn!(target: "chassis", swarm = self.swarm_id, "quarantined: {reason}");
                let threshold = self.lock().reputation.threshold;
                self.events.emit(|| Event::Quarantined {
                    swarm_id: self.swarm_id.clone(),
                    task_id: task_id.to_string(),
                    score,
                    threshold,
                    reason: reason.clone(),
                });
            }
        }
    }

    /// An operator's release: a quarantined swarm's tasks run again and
    /// its score goes back to its `initial_score`, with a `released`
    /// event. A swarm that is not quarantined is left as it is.
    pub(crate) fn release(&self) -> Reputation {
        let reputation = {
            let mut state = self.lock();
            if !state.reputation.quarantined {
                return state.reputation.clone();
            }
            state.reputation.release();
            state.reputation.clone()
        };
        tracing::info!(target: "chassis", swarm = self.swarm_id, "released from quarantine");
        self.events.emit(|| Event::Released {
            swarm_id: self.swarm_id.clone(),
            score: reputation.score,
        });
        reputation
    }

    /// Quarantine the swarm now, for `reason` (an operator's, or another
    /// host's, passed on), with a `quarantined` event. A swarm already
    /// quarantined stays as it is.
    pub(crate) fn quarantine(&self, reason: &str) -> Reputation {
        self.quarantine_for(reason, "")
    }

    /// Quarantine the swarm now for `reason`, raised by `task_id`'s end
    /// (the governor's, for a swarm that keeps failing after probation).
    pub(crate) fn quarantine_for(&self, reason: &str, task_id: &str) -> Reputation {
        let change = {
            let mut state = self.lock();
            if state.reputation.quarantined {
                return state.reputation.clone();
            }
            state.reputation.quarantine(reason.to_string())
        };
        self.report(change, task_id);
        self.lock().reputation.clone()
    }

    /// Take this state (restored from an audit log): the SLO figures when
    /// given, and the reputation. No event: the log holds what made it.
    pub(crate) fn restore(&self, slo: Option<SloTracker>, reputation: Reputation) {
        let mut state = self.lock();
        if let Some(slo) = slo {
            state.slo = slo;
        }
        state.reputation = reputation;
    }

    /// Take a replacing version's reputation settings; the state carries
    /// on, judged by them (a quarantine they cause raises its event).
    pub(crate) fn reconfigure(&self, contract: &ServiceContract) {
        let change = self.lock().reputation.reconfigure(&contract.reputation);
        self.report(change, "");
    }

    /// A request outside the contract: it costs reputation at once.
    pub(crate) fn security_violation(&self, task_id: &str) {
        let change = self.lock().reputation.violation();
        self.report(change, task_id);
    }

    /// Count a finished task for SLOs and reputation ([`Health::count`]),
    /// raising their events: SLO misses, score moves, quarantine.
    pub(crate) fn after_task(
        &self,
        contract: &ServiceContract,
        task_id: &str,
        latency: Duration,
        end: TaskEnd,
        limit: Option<LimitKind>,
        now: Instant,
    ) {
        let Some((missed, changes)) =
            self.lock()
                .count(&contract.slo_targets, latency, end, limit, now)
        else {
            return;
        };
        for check in missed {
            self.events.emit(|| Event::SloViolation {
                swarm_id: self.swarm_id.clone(),
                task_id: task_id.to_string(),
                metric: check.metric.to_string(),
                actual: check.actual,
                target: check.target,
            });
        }
        for change in changes {
            self.report(change, task_id);
        }
    }
}

impl Health {
    /// A fresh start for `contract`'s swarm, its SLO clock at `now`.
    pub(crate) fn new(contract: &ServiceContract, now: Instant) -> Self {
        Self::with(&contract.reputation, now)
    }

    /// A fresh start under these reputation settings, the SLO clock at `now`.
    pub(crate) fn with(reputation: &crate::contract::Reputation, now: Instant) -> Self {
        Self {
            slo: SloTracker::new(now),
            reputation: Reputation::new(reputation),
        }
    }

    /// Count one finished task that ended as `end` after `latency` (by
    /// `limit`, when a limit stopped it): the SLO figures, then the score
    /// and the failure guard, then the cost of a limit the guest ran into.
    /// Returns the SLO targets missed and the reputation changes, or `None`
    /// for a task refused before it reached the swarm, which is not counted
    /// ([`crate::reputation::counted`]). The live host and the audit replay
    /// both count through here.
    pub(crate) fn count(
        &mut self,
        targets: &SloTargets,
        latency: Duration,
        end: TaskEnd,
        limit: Option<LimitKind>,
        now: Instant,
    ) -> Option<(Vec<Check>, [Change; 2])> {
        let counted = crate::reputation::counted(end)?;
        let (compliance, missed) = self.slo.record(latency, counted.ending, targets, now);
        let change = self.reputation.after_task(compliance, counted.own_failure);
        // A limit the guest ran into costs reputation on top of the SLO
        // figures; a full queue is the callers' doing and costs only
        // through the SLOs.
        let penalty = if limit.is_some_and(crate::reputation::limit_costs_reputation) {
            self.reputation.limit_violation()
        } else {
            Change::None
        };
        Some((missed, [change, penalty]))
    }
}
