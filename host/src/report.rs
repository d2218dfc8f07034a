//! SLO and reputation state rebuilt from an audit log.
//!
//! The audit log holds every task's end, its latency and every security
//! violation, in order and with timestamps, so replaying it through the same
//! SLO tracker and [`crate::Reputation`] the host uses, with the same rule
//! for how an ending counts (`health.rs`), gives the state the host had —
//! for any past run, from the log alone (`chassis report`). [`from_log`]
//! reads a log from its newest checkpoint (or its start, or a range of
//! records) through a [`Replay`], one record at a time; [`history`] and
//! [`replay`] replay records already in memory. A host that continues a
//! swarm's log ([`crate::Chassis::restore_history`], `chassis run --audit`)
//! starts from that state (the log's writer keeps it), so the figures of
//! one run chain into the next and into the report.

use crate::SloReport;
use crate::audit::Record;
use crate::contract::ServiceContract;
use crate::replay::Replay;

pub use crate::replay::{History, Params};

/// Replay the records of `contract`'s swarm ([`crate::audit::events`]),
/// judged by `contract`.
pub fn history(records: &[Record], contract: &ServiceContract) -> History {
    let id = contract.swarm_id.as_str();
    let mut replay = Replay::with_contracts([contract]);
    for r in records.iter().filter(|r| r.event.swarm_id() == id) {
        replay.observe(r.ts_micros, &r.event);
    }
    replay
        .history(id)
        .unwrap_or_else(|| Replay::empty_history(contract))
}

/// Read the audit log at `path` from `from` on (its newest checkpoint, its
/// start, or a range of records), in bounded memory, and give each
/// contract's report, with what was read.
pub fn from_log(
    path: impl AsRef<std::path::Path>,
    contracts: &[ServiceContract],
    from: crate::audit::From,
) -> Result<(Vec<SloReport>, crate::audit::Restored), crate::audit::AuditError> {
    let mut replay =
        Replay::with_contracts(contracts).only(contracts.iter().map(|c| c.swarm_id.as_str()));
    let restored = crate::audit::replay_into(path, &mut replay, from)?;
    let reports = contracts
        .iter()
        .map(|c| {
            replay
                .history(&c.swarm_id)
                .unwrap_or_else(|| Replay::empty_history(c))
                .report(c)
        })
        .collect();
    Ok((reports, restored))
}

/// Why [`release`] did not release a swarm.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The audit log.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The log holds nothing of the swarm.
    #[error("swarm {swarm_id:?} has no record in the audit log")]
    NoRecord {
        /// The swarm.
        swarm_id: String,
    },
    /// The swarm is not quarantined.
    #[error("swarm {swarm_id:?} is not quarantined")]
    NotQuarantined {
        /// The swarm.
        swarm_id: String,
    },
}

/// Release `contract`'s swarm from quarantine in the audit log at `path`,
/// with no host running (the offline `chassis release`): the log's writer
/// gives the swarm's state, and a `released` record is written, so the
/// next host continuing the log starts it released. Its reputation after
/// the release.
pub fn release(
    path: impl AsRef<std::path::Path>,
    contract: &ServiceContract,
) -> Result<crate::Reputation, ReleaseError> {
    use crate::EventSink;
    let mut options = crate::audit::AuditOptions::new(crate::audit::FsyncPolicy::Always);
    options.contracts = vec![(contract.swarm_id.clone(), contract.health_settings())];
    let log = crate::audit::AuditLog::open_with(path, options)?;
    let swarm_id = contract.swarm_id.clone();
    let mut reputation = log
        .history(&swarm_id)
        .map(|h| h.reputation)
        .ok_or_else(|| ReleaseError::NoRecord {
            swarm_id: swarm_id.clone(),
        })?;
    if !reputation.quarantined {
        return Err(ReleaseError::NotQuarantined { swarm_id });
    }
    reputation.release();
    log.record(&crate::Event::Released {
        swarm_id,
        score: reputation.score,
    });
    log.close()?;
    Ok(reputation)
}

/// Replay the records of `contract`'s swarm into its report. Time runs
/// from the swarm's first record to its last.
pub fn replay(records: &[Record], contract: &ServiceContract) -> SloReport {
    history(records, contract).report(contract)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::limits::LimitKind;

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
