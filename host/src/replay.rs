//! Replay: each swarm's SLO figures and reputation rebuilt from the events
//! of an audit log, in one pass, in order, in memory bounded by the number
//! of swarms (not by the log's length).
//!
//! [`Replay`] is fed one event at a time ([`Replay::observe`]), with the
//! record's time, and counts each task's end through the same
//! `Health` the live host uses, so the state it reaches is the state the
//! host had. The audit log's writer keeps one, fed with every record it
//! writes, and writes its [`Replay::state`] into the log as a checkpoint;
//! a host that restarts reads the newest checkpoint back
//! ([`Replay::restore_swarm`]) and feeds only the records after it
//! (`audit::checkpoint`). `chassis report` and the offline `release` read
//! a log the same way (`report.rs`).
//!
//! A swarm's events are judged by its contract's SLO targets and
//! reputation settings ([`Params`]): those its last `module_loaded` or
//! `module_replaced` event names (the host records them with each load, so
//! a replay judges every part of a history by the settings then in force),
//! else those given for it up front ([`Replay::contract`]: a log written
//! before loads named them), else the defaults. Time is the records' own:
//! a swarm's SLO clock runs from its first record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::SloReport;
use crate::contract::ServiceContract;
use crate::error::ErrorKind;
use crate::events::Event;
use crate::health::Health;
use crate::limits::LimitKind;
use crate::outcome::TaskEnd;
use crate::reputation::Reputation;
use crate::slo::SloTracker;

/// What judges a swarm's events (its contract's SLO targets and
/// reputation settings).
pub use crate::contract::HealthSettings as Params;

/// A contract's defaults.
fn default_params() -> Params {
    ServiceContract::builder("defaults")
        .build()
        .expect("the default contract is valid")
        .health_settings()
}

/// Most limits remembered per swarm for tasks whose end has not come yet
/// (a task whose end was never recorded, in a crash, is forgotten first).
const MAX_PENDING_LIMITS: usize = 1024;

/// One swarm's SLO tracker and reputation after its records.
#[derive(Debug, Clone)]
pub struct History {
    /// The swarm.
    pub swarm_id: String,
    /// SLO state; its clock runs from the swarm's first record.
    pub(crate) slo: SloTracker,
    /// Reputation, quarantine and the failure guard's window.
    pub reputation: Reputation,
    /// The tracker's clock at the last record.
    pub(crate) last: Instant,
    /// Time of the first record, microseconds since the epoch.
    pub(crate) first_micros: Option<i64>,
}

impl History {
    /// The SLO figures (as of the last record) against `contract`'s
    /// targets, and the reputation.
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
            let age = Duration::from_micros(now.saturating_sub(first).max(0) as u64);
            self.slo.resume(Instant::now(), age);
        }
        (self.slo, self.reputation)
    }
}

/// One swarm's replay.
#[derive(Debug)]
struct Swarm {
    params: Params,
    health: Health,
    /// Limits the guest ran into, by task, until the task's end: a limit is
    /// recorded before its task's end, and other tasks' records may come
    /// in between.
    limits: HashMap<String, LimitKind>,
    /// The tasks of `limits`, oldest first.
    limit_order: VecDeque<String>,
    first_micros: i64,
    last_micros: i64,
}

/// Whether every number of `event` is finite (a record of it reads back).
fn numbers_finite(event: &Event) -> bool {
    let numbers: &[f64] = match event {
        Event::TaskComplete { wall_ms, .. } | Event::TaskFailed { wall_ms, .. } => &[*wall_ms],
        Event::HttpProxy { elapsed_ms, .. } => &[*elapsed_ms],
        Event::SloViolation { actual, target, .. } => &[*actual, *target],
        Event::ReputationChanged { from, to, .. } => &[*from, *to],
        Event::Quarantined {
            score, threshold, ..
        } => &[*score, *threshold],
        Event::Released { score, .. } => &[*score],
        _ => &[],
    };
    numbers.iter().all(|n| n.is_finite())
}

/// Whether `event` gives a swarm with no state one.
fn starts_state(event: &Event) -> bool {
    matches!(
        event,
        Event::ModuleLoaded { .. }
            | Event::ModuleReplaced { .. }
            | Event::TaskComplete { .. }
            | Event::TaskFailed { .. }
            | Event::LimitExceeded { .. }
            | Event::Released { .. }
            | Event::Quarantined { .. }
    ) || security_violation(event)
}

/// Whether `event` is a request outside the swarm's contract (it costs
/// reputation).
fn security_violation(event: &Event) -> bool {
    matches!(
        event,
        Event::CredentialAccess {
            security_violation: true,
            ..
        } | Event::HttpProxy {
            security_violation: true,
            ..
        } | Event::StorageAccess {
            security_violation: true,
            ..
        } | Event::SecretRedacted {
            security_violation: true,
            ..
        }
    )
}

/// Every swarm's state after the events fed so far.
#[derive(Debug)]
pub struct Replay {
    /// The clock's origin: a swarm's first record is at `base`.
    base: Instant,
    swarms: BTreeMap<String, Swarm>,
    /// Settings for swarms the host has not announced.
    given: HashMap<String, Params>,
    defaults: Params,
    /// Only these swarms are replayed (`None`: every one).
    only: Option<std::collections::HashSet<String>>,
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// Nothing replayed; swarms judged by the defaults until announced.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            swarms: BTreeMap::new(),
            given: HashMap::new(),
            defaults: default_params(),
            only: None,
        }
    }

    /// Replay only these swarms (a report of a few swarms of a long log
    /// keeps no state for the others).
    pub fn only<'a>(mut self, swarm_ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.only = Some(swarm_ids.into_iter().map(str::to_string).collect());
        self
    }

    fn wanted(&self, swarm_id: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.contains(swarm_id))
    }

    /// Judge the swarms of these contracts by them.
    pub fn with_contracts<'a>(contracts: impl IntoIterator<Item = &'a ServiceContract>) -> Self {
        let mut replay = Self::new();
        for c in contracts {
            replay.given.insert(c.swarm_id.clone(), c.health_settings());
        }
        replay
    }

    /// A contract for `swarm_id` was loaded: its events from now on are
    /// judged by `params`. A swarm with a record takes the new settings as
    /// the host does for a new version (`Reputation::reconfigure`).
    pub fn contract(&mut self, swarm_id: &str, params: Params) {
        if let Some(swarm) = self.swarms.get_mut(swarm_id) {
            let _ = swarm.health.reputation.reconfigure(&params.reputation);
            swarm.params = params.clone();
        }
        self.given.insert(swarm_id.to_string(), params);
    }

    /// Count one event, recorded at `ts_micros` (microseconds since the
    /// epoch).
    pub fn observe(&mut self, ts_micros: i64, event: &Event) {
        // A number that is not finite is written as null, and a reader of
        // the log cannot read that record back: it is not counted here
        // either, so the writer's state and a replay of the log agree.
        if !numbers_finite(event) || !self.wanted(event.swarm_id()) {
            return;
        }
        let id = event.swarm_id();
        // A load names the settings the swarm is judged by from then on.
        if let Event::ModuleLoaded {
            settings: Some(settings),
            ..
        }
        | Event::ModuleReplaced {
            settings: Some(settings),
            ..
        } = event
        {
            self.contract(id, settings.clone());
        }
        let swarm = match self.swarms.get_mut(id) {
            Some(swarm) => swarm,
            // A swarm's state starts with its load or with an event that
            // counts: a refused load or a task start makes none, so the
            // swarms kept are the ones that were loaded.
            None if !starts_state(event) => return,
            None => {
                let params = self.given.get(id).unwrap_or(&self.defaults).clone();
                let health = Health::with(&params.reputation, self.base);
                self.swarms.entry(id.to_string()).or_insert(Swarm {
                    params,
                    health,
                    limits: HashMap::new(),
                    limit_order: VecDeque::new(),
                    first_micros: ts_micros,
                    last_micros: ts_micros,
                })
            }
        };
        swarm.last_micros = ts_micros;
        let now = self.base
            + Duration::from_micros(ts_micros.saturating_sub(swarm.first_micros).max(0) as u64);
        let (task_id, end, wall_ms) = match event {
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
                swarm.health.reputation.release();
                return;
            }
            // A quarantine the replay did not reach by itself (an
            // operator's, another host's, or a new version's settings).
            Event::Quarantined { reason, .. } => {
                if !swarm.health.reputation.quarantined {
                    let _ = swarm.health.reputation.quarantine(reason.clone());
                }
                return;
            }
            Event::LimitExceeded { task_id, limit, .. } => {
                if swarm.limits.insert(task_id.clone(), *limit).is_none() {
                    swarm.limit_order.push_back(task_id.clone());
                }
                while swarm.limit_order.len() > MAX_PENDING_LIMITS {
                    if let Some(old) = swarm.limit_order.pop_front() {
                        swarm.limits.remove(&old);
                    }
                }
                return;
            }
            e if security_violation(e) => {
                let _ = swarm.health.reputation.violation();
                return;
            }
            _ => return,
        };
        let latency = Duration::from_secs_f64(wall_ms.clamp(0.0, 1e12) / 1000.0);
        let limit = swarm.limits.remove(task_id.as_str());
        if limit.is_some() {
            swarm.limit_order.retain(|t| t != task_id);
        }
        let _ = swarm
            .health
            .count(&swarm.params.slo_targets, latency, end, limit, now);
    }

    /// The swarms with a record, in order of their ids.
    pub fn swarms(&self) -> impl Iterator<Item = &str> {
        self.swarms.keys().map(String::as_str)
    }

    /// `swarm_id`'s state after the events fed so far (`None` for a swarm
    /// with no record).
    pub fn history(&self, swarm_id: &str) -> Option<History> {
        let swarm = self.swarms.get(swarm_id)?;
        Some(History {
            swarm_id: swarm_id.to_string(),
            slo: swarm.health.slo.clone(),
            reputation: swarm.health.reputation.clone(),
            last: self.at(swarm, swarm.last_micros),
            first_micros: Some(swarm.first_micros),
        })
    }

    /// A swarm with no record: as a fresh start under `contract`.
    pub fn empty_history(contract: &ServiceContract) -> History {
        let now = Instant::now();
        let health = Health::new(contract, now);
        History {
            swarm_id: contract.swarm_id.clone(),
            slo: health.slo,
            reputation: health.reputation,
            last: now,
            first_micros: None,
        }
    }

    fn at(&self, swarm: &Swarm, ts_micros: i64) -> Instant {
        self.base
            + Duration::from_micros(ts_micros.saturating_sub(swarm.first_micros).max(0) as u64)
    }

    /// Every swarm's state as JSON, in order of their ids: what a
    /// checkpoint holds, one value per swarm.
    pub fn state(&self) -> Vec<(String, Value)> {
        self.swarms
            .iter()
            .map(|(id, s)| {
                let limits: Vec<Value> = s
                    .limit_order
                    .iter()
                    .filter_map(|t| Some(json!([t, s.limits.get(t)?])))
                    .collect();
                let state = json!({
                    "params": s.params,
                    "first_us": s.first_micros,
                    "last_us": s.last_micros,
                    "slo": s.health.slo.state(),
                    "reputation": s.health.reputation.state(),
                    "pending_limits": limits,
                });
                (id.clone(), state)
            })
            .collect()
    }

    /// Take `swarm_id`'s state from a checkpoint ([`Replay::state`]); an
    /// error says what is wrong with it.
    pub fn restore_swarm(&mut self, swarm_id: &str, state: &Value) -> Result<(), String> {
        if !self.wanted(swarm_id) {
            return Ok(());
        }
        let bad = |what: &str| format!("the checkpoint's state of swarm {swarm_id:?} has {what}");
        let params: Params =
            serde_json::from_value(state["params"].clone()).map_err(|_| bad("bad settings"))?;
        let slo = SloTracker::from_state(&state["slo"], self.base)
            .ok_or_else(|| bad("a bad SLO state"))?;
        let reputation = Reputation::from_state(&params.reputation, &state["reputation"])
            .ok_or_else(|| bad("a bad reputation"))?;
        let first_micros = state["first_us"]
            .as_i64()
            .ok_or_else(|| bad("no first_us"))?;
        let last_micros = state["last_us"].as_i64().ok_or_else(|| bad("no last_us"))?;
        let mut limits = HashMap::new();
        let mut limit_order = VecDeque::new();
        for pair in state["pending_limits"]
            .as_array()
            .ok_or_else(|| bad("no pending_limits"))?
            .iter()
            .take(MAX_PENDING_LIMITS)
        {
            let task = pair[0].as_str().ok_or_else(|| bad("a bad pending limit"))?;
            let kind: LimitKind =
                serde_json::from_value(pair[1].clone()).map_err(|_| bad("a bad pending limit"))?;
            if limits.insert(task.to_string(), kind).is_none() {
                limit_order.push_back(task.to_string());
            }
        }
        self.swarms.insert(
            swarm_id.to_string(),
            Swarm {
                health: Health { slo, reputation },
                params,
                limits,
                limit_order,
                first_micros,
                last_micros,
            },
        );
        Ok(())
    }

    /// Forget every swarm's state (a checkpoint that turned out bad).
    pub fn clear(&mut self) {
        self.swarms.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused loads and task starts under any number of names keep no
    /// state (each swarm's state holds a histogram): only a load or an
    /// event that counts does.
    #[test]
    fn only_loaded_or_counted_swarms_keep_state() {
        let mut replay = Replay::new();
        for i in 0..10_000 {
            replay.observe(
                i,
                &Event::LoadRejected {
                    swarm_id: format!("refused-{i}"),
                    reason: "bad".into(),
                },
            );
            replay.observe(
                i,
                &Event::TaskStart {
                    swarm_id: format!("started-{i}"),
                    task_id: "t".into(),
                    task_type: "echo".into(),
                },
            );
        }
        // A record a reader of the log could not read back is not counted.
        replay.observe(
            1,
            &Event::TaskComplete {
                swarm_id: "nan".into(),
                task_id: "t".into(),
                wall_ms: f64::NAN,
            },
        );
        assert_eq!(replay.swarms().count(), 0);
        replay.observe(
            1,
            &Event::TaskComplete {
                swarm_id: "s".into(),
                task_id: "t".into(),
                wall_ms: 1.0,
            },
        );
        assert_eq!(replay.swarms().collect::<Vec<_>>(), ["s"]);
        assert_eq!(
            replay
                .history("s")
                .unwrap()
                .slo
                .figures(&default_params().slo_targets, Instant::now())
                .tasks,
            1
        );
    }

    /// A swarm's state written to a checkpoint and read back goes on
    /// exactly as the original does.
    #[test]
    fn a_state_read_back_goes_on_as_the_original() {
        let mut contract = ServiceContract::builder("s").build().unwrap();
        contract.reputation.failure_window = 4;
        let events = |from: i64, to: i64| {
            (from..to).map(|i| {
                let event = match i % 5 {
                    0 => Event::LimitExceeded {
                        swarm_id: "s".into(),
                        task_id: format!("t{i}"),
                        limit: LimitKind::Memory,
                        detail: String::new(),
                    },
                    1 | 3 => Event::TaskComplete {
                        swarm_id: "s".into(),
                        task_id: format!("t{}", i - 1),
                        wall_ms: i as f64 * 0.7,
                    },
                    2 => Event::TaskFailed {
                        swarm_id: "s".into(),
                        task_id: format!("t{i}"),
                        kind: "trap".into(),
                        error: String::new(),
                        guest_error: None,
                        wall_ms: 3.0,
                    },
                    _ => Event::Released {
                        swarm_id: "s".into(),
                        score: 0.5,
                    },
                };
                (i * 1000, event)
            })
        };
        let mut whole = Replay::with_contracts([&contract]);
        let mut first = Replay::with_contracts([&contract]);
        for (ts, e) in events(0, 500) {
            whole.observe(ts, &e);
            first.observe(ts, &e);
        }
        let mut second = Replay::new();
        for (id, state) in first.state() {
            // Through text, as a checkpoint stores it.
            let state: Value = serde_json::from_str(&state.to_string()).unwrap();
            second.restore_swarm(&id, &state).unwrap();
        }
        for (ts, e) in events(500, 1000) {
            whole.observe(ts, &e);
            second.observe(ts, &e);
        }
        let (a, b) = (whole.history("s").unwrap(), second.history("s").unwrap());
        assert_eq!(a.report(&contract), b.report(&contract));
        assert_eq!(a.reputation, b.reputation);
        assert_eq!(whole.state(), second.state());
    }

    /// A load's settings judge what follows it: a new version's stricter
    /// failure guard quarantines a record that the first one allowed, in
    /// any replay of the log, with no contract given.
    #[test]
    fn the_settings_a_load_names_judge_what_follows() {
        let mut contract = ServiceContract::builder("s").build().unwrap();
        contract.reputation.failure_window = 2;
        contract.reputation.max_failure_rate_percent = 100.0;
        let load = |c: &ServiceContract| Event::ModuleLoaded {
            swarm_id: "s".into(),
            origin: "o".into(),
            digest: String::new(),
            task_types: vec![],
            settings: Some(c.health_settings()),
        };
        let failed = |i: i64| Event::TaskFailed {
            swarm_id: "s".into(),
            task_id: format!("t{i}"),
            kind: "trap".into(),
            error: String::new(),
            guest_error: None,
            wall_ms: 1.0,
        };
        let mut replay = Replay::new();
        replay.observe(0, &load(&contract));
        replay.observe(1, &failed(1));
        replay.observe(2, &failed(2));
        assert!(!replay.history("s").unwrap().reputation.quarantined);
        let mut strict = contract.clone();
        strict.reputation.max_failure_rate_percent = 50.0;
        replay.observe(
            3,
            &Event::ModuleReplaced {
                swarm_id: "s".into(),
                origin: "o".into(),
                digest: String::new(),
                previous_digest: String::new(),
                task_types: vec![],
                settings: Some(strict.health_settings()),
            },
        );
        let h = replay.history("s").unwrap();
        assert!(h.reputation.quarantined, "{:?}", h.reputation);
        assert_eq!(h.slo.figures(&strict.slo_targets, h.last).tasks, 2);
    }
}
