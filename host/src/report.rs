//! SLO and reputation reports rebuilt from an audit log.
//!
//! The audit log holds every task's end, its latency and every security
//! violation, in order and with timestamps, so replaying it through the same
//! [`SloTracker`] and [`Reputation`] the host uses gives the figures the host
//! had — for any past run, from the file alone (`chassis report`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::SloReport;
use crate::audit::parse_rfc3339;
use crate::contract::ServiceContract;
use crate::reputation::Reputation;
use crate::slo::{Ending, SloTracker};

/// Replay the records of `contract`'s swarm. Time runs from the swarm's
/// first record to its last.
pub fn replay(records: &[Value], contract: &ServiceContract) -> SloReport {
    let id = contract.swarm_id.as_str();
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["swarm_id"].as_str() == Some(id))
        .collect();
    let base = Instant::now();
    let t0 = mine
        .first()
        .and_then(|r| r["ts"].as_str())
        .and_then(parse_rfc3339)
        .unwrap_or(0);
    let at = |r: &Value| {
        let t = r["ts"].as_str().and_then(parse_rfc3339).unwrap_or(t0);
        base + Duration::from_micros((t - t0).max(0) as u64)
    };
    let mut slo = SloTracker::new(base);
    let mut reputation = Reputation::new(&contract.reputation);
    let mut last = base;
    // A limit the guest ran into is recorded just before its task's end.
    let mut limit_pending = false;
    for r in mine {
        let now = at(r);
        last = now;
        let p = &r["params"];
        let latency =
            Duration::from_secs_f64(p["wall_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1000.0);
        let ending = match r["operation"].as_str().unwrap_or_default() {
            "task_complete" => Some(Ending::Success),
            "task_failed" => match p["kind"].as_str().unwrap_or_default() {
                "guest_error" => Some(Ending::GuestError),
                "task_not_exported" | "quarantined" | "registry" | "audit" => None,
                _ => Some(Ending::NoAnswer),
            },
            "released" => {
                reputation.release();
                None
            }
            "resource_limit_exceeded" => {
                limit_pending = p["limit"].as_str() != Some("overloaded");
                None
            }
            _ => {
                if p["security_violation"].as_bool() == Some(true) {
                    reputation.violation();
                }
                None
            }
        };
        if let Some(ending) = ending {
            let (compliance, _) = slo.record(latency, ending, &contract.slo_targets, now);
            reputation.after_task(compliance);
            if std::mem::take(&mut limit_pending) {
                reputation.limit_violation();
            }
        }
    }
    SloReport {
        swarm_id: id.to_string(),
        slo: slo.figures(&contract.slo_targets, last),
        reputation,
    }
}
