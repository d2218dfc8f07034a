//! SLO and reputation state rebuilt from an audit log.
//!
//! The audit log holds every task's end, its latency and every security
//! violation, in order and with timestamps, so replaying it through the same
//! SLO tracker and [`Reputation`] the host uses, with the same rule for
//! how an ending counts (`health.rs`), gives the state
//! the host had — for any past run, from the file alone (`chassis report`).
//! A host that continues a swarm's log ([`crate::Chassis::restore_history`],
//! `chassis run --audit`) starts from that state, so the figures of one run
//! chain into the next and into the report.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::SloReport;
use crate::audit::Record;
use crate::contract::ServiceContract;
use crate::error::ErrorKind;
use crate::events::Event;
use crate::health::Health;
use crate::limits::LimitKind;
use crate::outcome::TaskEnd;
use crate::reputation::Reputation;
use crate::slo::SloTracker;

/// One swarm's SLO tracker and reputation after its records.
#[derive(Debug)]
pub struct History {
    /// The swarm.
    pub swarm_id: String,
    /// SLO state; its clock runs from the swarm's first record.
    pub(crate) slo: SloTracker,
    /// Reputation, quarantine and the failure guard's window.
    pub reputation: Reputation,
    /// The tracker's clock at the last record.
    last: Instant,
    /// Time of the first record, microseconds since the epoch.
    first_micros: Option<i64>,
}

impl History {
    /// The SLO figures (as of the last record) and the reputation.
    pub fn report(&self, contract: &ServiceContract) -> SloReport {
        SloReport {
            swarm_id: self.swarm_id.clone(),
            slo: self.slo.figures(&contract.slo_targets, self.last),
            reputation: self.reputation.clone(),
        }
    }

    /// The state, its clock moved to now: the time since the first record
    /// (by the wall clock) counts as time the swarm was tracked.
    pub(crate) fn resume(mut self) -> (SloTracker, Reputation) {
        if let Some(first) = self.first_micros {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            let age = Duration::from_micros((now - first).max(0) as u64);
            self.slo.resume(Instant::now(), age);
        }
        (self.slo, self.reputation)
    }
}

/// Replay the records of `contract`'s swarm ([`crate::audit::events`]).
pub fn history(records: &[Record], contract: &ServiceContract) -> History {
    let id = contract.swarm_id.as_str();
    let mine: Vec<&Record> = records
        .iter()
        .filter(|r| r.event.swarm_id() == id)
        .collect();
    let base = Instant::now();
    let first_micros = mine.first().map(|r| r.ts_micros);
    let t0 = first_micros.unwrap_or(0);
    let at = |r: &Record| base + Duration::from_micros((r.ts_micros - t0).max(0) as u64);
    let mut health = Health::new(contract, base);
    let mut last = base;
    // A limit the guest ran into is recorded before its task's end; other
    // tasks' records may come in between.
    let mut limits: HashMap<&str, LimitKind> = HashMap::new();
    for r in mine {
        let now = at(r);
        last = now;
        let (task_id, end, wall_ms) = match &r.event {
            Event::TaskComplete {
                task_id, wall_ms, ..
            } => (task_id, TaskEnd::Success, *wall_ms),
            Event::TaskFailed {
                task_id,
                kind,
                guest_error,
                wall_ms,
                ..
            } => (
                task_id,
                // An ending this version does not name counts as any
                // unlisted host error does: the swarm gave no answer.
                TaskEnd::from_names(kind, guest_error.as_deref())
                    .unwrap_or(TaskEnd::Host(ErrorKind::Trap)),
                *wall_ms,
            ),
            Event::Released { .. } => {
                health.reputation.release();
                continue;
            }
            Event::LimitExceeded { task_id, limit, .. } => {
                limits.insert(task_id, *limit);
                continue;
            }
            Event::CredentialAccess {
                security_violation: true,
                ..
            }
            | Event::HttpProxy {
                security_violation: true,
                ..
            }
            | Event::StorageAccess {
                security_violation: true,
                ..
            }
            | Event::SecretRedacted {
                security_violation: true,
                ..
            } => {
                health.reputation.violation();
                continue;
            }
            _ => continue,
        };
        let latency = Duration::from_secs_f64(wall_ms.max(0.0) / 1000.0);
        let limit = limits.remove(task_id.as_str());
        health.count(&contract.slo_targets, latency, end, limit, now);
    }
    let Health { slo, reputation } = health;
    History {
        swarm_id: id.to_string(),
        slo,
        reputation,
        last,
        first_micros,
    }
}

/// Replay the records of `contract`'s swarm into its report. Time runs
/// from the swarm's first record to its last.
pub fn replay(records: &[Record], contract: &ServiceContract) -> SloReport {
    history(records, contract).report(contract)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts_micros: 1_000 * seq as i64,
            event,
        }
    }

    fn failed(task: &str, kind: &str) -> Event {
        Event::TaskFailed {
            swarm_id: "s".into(),
            task_id: task.into(),
            kind: kind.into(),
            error: String::new(),
            guest_error: None,
            wall_ms: 1.0,
        }
    }

    fn complete(task: &str) -> Event {
        Event::TaskComplete {
            swarm_id: "s".into(),
            task_id: task.into(),
            wall_ms: 1.0,
        }
    }

    fn limit(task: &str) -> Event {
        Event::LimitExceeded {
            swarm_id: "s".into(),
            task_id: task.into(),
            limit: LimitKind::Timeout,
            detail: String::new(),
        }
    }

    fn contract() -> ServiceContract {
        ServiceContract::builder("s").build().unwrap()
    }

    #[test]
    fn a_limit_costs_only_its_own_task_when_records_interleave() {
        let c = contract();
        // t1 ran into its timeout; t2 completed before t1's end was written.
        let interleaved = [
            record(1, limit("t1")),
            record(2, complete("t2")),
            record(3, failed("t1", "timeout")),
        ];
        let in_order = [
            record(1, complete("t2")),
            record(2, limit("t1")),
            record(3, failed("t1", "timeout")),
        ];
        let a = history(&interleaved, &c).reputation;
        let b = history(&in_order, &c).reputation;
        assert_eq!(a.score, b.score);
        // And the limit did cost: without it the score is higher.
        let no_limit = [
            record(1, complete("t2")),
            record(2, failed("t1", "timeout")),
        ];
        assert!(history(&no_limit, &c).reputation.score > a.score);
    }

    #[test]
    fn an_ending_this_version_does_not_name_counts_as_no_answer() {
        let c = contract();
        let unknown = [record(1, failed("t1", "some_future_kind"))];
        let trap = [record(1, failed("t1", "trap"))];
        let report = history(&unknown, &c).report(&c);
        assert_eq!(report.slo.tasks, 1);
        assert_eq!(
            history(&unknown, &c).reputation.score,
            history(&trap, &c).reputation.score
        );
    }
}
