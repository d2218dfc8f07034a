//! Throttling that recovers: a swarm's concurrency follows its SLOs
//! (additive increase, multiplicative decrease), and a circuit breaker
//! stops sending it tasks after a run of failures (`docs/governor.md`).
//!
//! - **Concurrency.** Tasks that reached a slot are measured in windows of
//!   `window_tasks`: their in-slot latency (from the slot to the answer,
//!   so the waiting a lowered limit causes does not feed back) and their
//!   own failures. A window whose p95 is over `response_time_p95_ms` or
//!   whose own-failure rate is over `error_rate_percent` halves the slots
//!   that may be taken (down to `min_concurrency`); a window that meets
//!   both adds one back (up to `max_concurrent_tasks`). The limit is the
//!   swarm's [`Admission`] limit.
//! - **Circuit.** Closed, tasks run. After `circuit_failures` own failures
//!   in a row ([`ServiceContract::circuit_failures`]) it opens: every task is refused at once (`circuit_open`) for
//!   the cool-down, and the concurrency drops to `min_concurrency`. The
//!   first task after the cool-down is the probe (half-open; others are
//!   refused while it runs): a success closes the circuit, an own failure
//!   opens it again with twice the cool-down. A task that proves nothing
//!   (refused before it reached the swarm, or given up) lets the next one
//!   probe. Openings count until a window that meets the SLOs; the opening
//!   after `quarantine_after` of them quarantines the swarm.
//!
//! Data flow: the runner calls [`Throttle::enter`] before admission and
//! [`Ticket::settle`] when the task has ended; each decision is an event
//! (`concurrency_changed`, `circuit_changed`, or the health's
//! `quarantined`). [`State`] holds the rules, with the time passed in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::contract::{ServiceContract, SloTargets, Throttle as Settings};
use crate::events::{Event, Events};
use crate::health::SwarmHealth;
use crate::limits::Admission;
use crate::reputation::Counted;

/// The longest cool-down doubling goes to: 64 times the contract's.
const MAX_DOUBLINGS: u32 = 6;

/// How long a task refused while a probe runs is told to wait.
const PROBE_RETRY: Duration = Duration::from_secs(1);

/// A circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Tasks run.
    Closed,
    /// Tasks are refused until the cool-down ends.
    Open,
    /// One probe task decides.
    HalfOpen,
}

impl CircuitState {
    /// Its name: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// What the throttle does to a swarm now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ThrottleView {
    /// Slots that may be taken now.
    pub concurrency: u32,
    /// All its slots (`max_concurrent_tasks`).
    pub max_concurrency: u32,
    /// The circuit.
    pub circuit: CircuitState,
    /// While open: milliseconds until the probe may run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_in_ms: Option<u64>,
    /// Own failures in a row.
    pub failures_in_a_row: u32,
    /// Openings since the last window that met the SLOs.
    pub openings: u32,
}

/// Why a task is refused: the circuit is open, or its probe is running.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    /// When to try again.
    pub(crate) retry_after: Duration,
    /// Why, for the error.
    pub(crate) reason: String,
}

/// A decision, raised as an event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// The concurrency limit moved.
    Concurrency { from: u32, to: u32, reason: String },
    /// The circuit changed state.
    Circuit {
        state: CircuitState,
        reason: String,
        cool_down: Option<Duration>,
    },
    /// The swarm keeps failing after probation: quarantine it.
    Quarantine { reason: String },
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The throttle's rules and state, with time passed in.
#[derive(Debug)]
pub(crate) struct State {
    settings: Settings,
    /// Own failures in a row that open the circuit (0: none).
    circuit_failures: u32,
    targets: SloTargets,
    max: u32,
    limit: u32,
    latencies: Vec<Duration>,
    failures: u32,
    circuit: Circuit,
    in_a_row: u32,
    openings: u32,
    /// Bumped when the circuit opens and when a new version takes over:
    /// a task that entered before it is not counted by the throttle (its
    /// ending says nothing of the circuit it finds).
    epoch: u64,
    /// Set when a new version with a throttle of its own took over: this
    /// one decides nothing more.
    retired: bool,
}

impl State {
    pub(crate) fn new(contract: &ServiceContract, max: u32, limit: u32) -> Self {
        Self {
            settings: contract.throttle.clone(),
            circuit_failures: contract.circuit_failures(),
            targets: contract.slo_targets.clone(),
            max,
            limit: limit.clamp(1, max),
            latencies: Vec::new(),
            failures: 0,
            circuit: Circuit::Closed,
            in_a_row: 0,
            openings: 0,
            epoch: 0,
            retired: false,
        }
    }

    /// Whether a task may run now, and whether it is the probe.
    pub(crate) fn enter(&mut self, now: Instant, out: &mut Vec<Decision>) -> Result<bool, Refusal> {
        if self.retired {
            return Ok(false);
        }
        match self.circuit {
            Circuit::Closed => Ok(false),
            Circuit::Open { until } if now < until => Err(Refusal {
                retry_after: until - now,
                reason: format!(
                    "its circuit is open after {} failures; a probe task may run in {:.1} s",
                    self.circuit_failures,
                    (until - now).as_secs_f64()
                ),
            }),
            Circuit::Open { .. } => {
                self.circuit = Circuit::HalfOpen { probing: true };
                out.push(Decision::Circuit {
                    state: CircuitState::HalfOpen,
                    reason: "the cool-down is over: this task is the probe".into(),
                    cool_down: None,
                });
                Ok(true)
            }
            Circuit::HalfOpen { probing: true } => Err(Refusal {
                retry_after: PROBE_RETRY,
                reason: "its circuit is half open and its probe task is running".into(),
            }),
            Circuit::HalfOpen { probing: false } => {
                self.circuit = Circuit::HalfOpen { probing: true };
                Ok(true)
            }
        }
    }

    /// The epoch a task entering now belongs to.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A probe of `epoch` that proved nothing: the next task probes.
    pub(crate) fn probe_unsettled(&mut self, epoch: u64) {
        if epoch == self.epoch
            && let Circuit::HalfOpen { .. } = self.circuit
        {
            self.circuit = Circuit::HalfOpen { probing: false };
        }
    }

    /// A task of `epoch` ended: `counted` as reputation counts it (`None`:
    /// not the swarm's doing), after `in_slot` in its slot (`None`: it
    /// never got one, so the swarm did not run it). Only a task that ran
    /// counts, and only in the epoch it entered.
    pub(crate) fn settle(
        &mut self,
        (probe, epoch): (bool, u64),
        counted: Option<Counted>,
        in_slot: Option<Duration>,
        now: Instant,
        out: &mut Vec<Decision>,
    ) {
        if self.retired || epoch != self.epoch {
            return;
        }
        let (Some(counted), Some(in_slot)) = (counted, in_slot) else {
            if probe {
                self.probe_unsettled(epoch);
            }
            return;
        };
        let failed = counted.own_failure;
        self.in_a_row = if failed {
            self.in_a_row.saturating_add(1)
        } else {
            0
        };
        let circuit = self.circuit_failures > 0;
        if probe {
            if failed {
                self.open(now, "its probe task failed".into(), out);
                return;
            }
            self.circuit = Circuit::Closed;
            out.push(Decision::Circuit {
                state: CircuitState::Closed,
                reason: "its probe task succeeded".into(),
                cool_down: None,
            });
        } else if circuit
            && failed
            && matches!(self.circuit, Circuit::Closed)
            && self.in_a_row >= self.circuit_failures
        {
            self.open(
                now,
                format!("{} of its tasks failed in a row", self.in_a_row),
                out,
            );
            return;
        }
        self.latencies.push(in_slot);
        self.failures += u32::from(failed);
        if self.latencies.len() >= self.settings.window_tasks.max(1) as usize {
            self.end_window(out);
        }
    }

    fn end_window(&mut self, out: &mut Vec<Decision>) {
        let tasks = self.latencies.len();
        self.latencies.sort_unstable();
        let p95 = self.latencies[(tasks * 95).div_ceil(100).max(1) - 1];
        let p95_ms = p95.as_secs_f64() * 1000.0;
        let error_percent = f64::from(self.failures) * 100.0 / tasks as f64;
        self.latencies.clear();
        self.failures = 0;
        let missed = if p95_ms > self.targets.response_time_p95_ms {
            Some(format!(
                "in-slot p95 {p95_ms:.1} ms over the last {tasks} tasks is over response_time_p95_ms = {}",
                self.targets.response_time_p95_ms
            ))
        } else if error_percent > self.targets.error_rate_percent {
            Some(format!(
                "{error_percent:.1} % of the last {tasks} tasks failed, over error_rate_percent = {}",
                self.targets.error_rate_percent
            ))
        } else {
            None
        };
        match missed {
            Some(reason) => {
                let to = (self.limit / 2).max(self.settings.min_concurrency);
                self.set(to, reason, out);
            }
            None => {
                self.openings = 0;
                let to = (self.limit + 1).min(self.max);
                self.set(
                    to,
                    format!("the last {tasks} tasks met the SLO targets"),
                    out,
                );
            }
        }
    }

    fn set(&mut self, to: u32, reason: String, out: &mut Vec<Decision>) {
        let to = if self.settings.adaptive { to } else { self.max };
        let to = to.clamp(self.settings.min_concurrency.clamp(1, self.max), self.max);
        if to != self.limit {
            let from = std::mem::replace(&mut self.limit, to);
            out.push(Decision::Concurrency { from, to, reason });
        }
    }

    fn open(&mut self, now: Instant, why: String, out: &mut Vec<Decision>) {
        self.openings += 1;
        self.epoch += 1;
        self.in_a_row = 0;
        self.latencies.clear();
        self.failures = 0;
        let quarantine_after = self.settings.quarantine_after;
        if quarantine_after > 0 && self.openings > quarantine_after {
            let reason = format!(
                "its circuit opened {} times without a window that met its SLOs between (quarantine_after = {quarantine_after}): {why}",
                self.openings
            );
            self.circuit = Circuit::Closed;
            self.openings = 0;
            out.push(Decision::Quarantine { reason });
            return;
        }
        let doublings = (self.openings - 1).min(MAX_DOUBLINGS);
        let cool_down = self.settings.cool_down() * (1u32 << doublings);
        self.circuit = Circuit::Open {
            until: now + cool_down,
        };
        out.push(Decision::Circuit {
            state: CircuitState::Open,
            reason: why,
            cool_down: Some(cool_down),
        });
        let min = self.settings.min_concurrency;
        self.set(min, "its circuit opened".into(), out);
    }

    /// Take a new version's settings: the circuit closes (the new version
    /// gets its chance), the openings on probation carry on.
    pub(crate) fn reconfigure(&mut self, contract: &ServiceContract, out: &mut Vec<Decision>) {
        self.epoch += 1;
        self.latencies.clear();
        self.failures = 0;
        self.settings = contract.throttle.clone();
        self.circuit_failures = contract.circuit_failures();
        self.targets = contract.slo_targets.clone();
        self.in_a_row = 0;
        if !matches!(self.circuit, Circuit::Closed) {
            self.circuit = Circuit::Closed;
            out.push(Decision::Circuit {
                state: CircuitState::Closed,
                reason: "a new version was loaded".into(),
                cool_down: None,
            });
        }
        let limit = self.limit;
        self.set(limit, "a new version was loaded".into(), out);
    }

    pub(crate) fn view(&self, now: Instant) -> ThrottleView {
        let (circuit, probe_in_ms) = match self.circuit {
            Circuit::Closed => (CircuitState::Closed, None),
            Circuit::Open { until } => (
                CircuitState::Open,
                Some(until.saturating_duration_since(now).as_millis() as u64),
            ),
            Circuit::HalfOpen { .. } => (CircuitState::HalfOpen, None),
        };
        ThrottleView {
            concurrency: self.limit,
            max_concurrency: self.max,
            circuit,
            probe_in_ms,
            failures_in_a_row: self.in_a_row,
            openings: self.openings,
        }
    }

    /// How many tasks may be taken now: the limit while closed, one when
    /// the probe is due, none while refusing.
    pub(crate) fn takeable(&self, now: Instant) -> u32 {
        match self.circuit {
            Circuit::Closed => self.limit,
            _ if self.refusing(now) => 0,
            _ => 1,
        }
    }

    /// Whether a task would be refused now (open and cooling down, or a
    /// probe running).
    pub(crate) fn refusing(&self, now: Instant) -> bool {
        match self.circuit {
            Circuit::Closed => false,
            Circuit::Open { until } => now < until,
            Circuit::HalfOpen { probing } => probing,
        }
    }
}

/// A swarm's throttle: the [`State`] behind a lock, acting on its
/// admission and raising its decisions as events.
pub(crate) struct Throttle {
    swarm_id: String,
    admission: Arc<Admission>,
    events: Events,
    health: Arc<SwarmHealth>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("swarm_id", &self.swarm_id)
            .finish_non_exhaustive()
    }
}

/// A task's pass through the throttle; settle it when the task has ended.
/// Dropped unsettled (its caller went away), a probe lets the next task
/// probe.
pub(crate) struct Ticket<'a> {
    throttle: &'a Throttle,
    probe: bool,
    epoch: u64,
    settled: bool,
}

impl Throttle {
    /// The throttle of `contract`'s swarm over `admission`, whose limit it
    /// starts from.
    pub(crate) fn new(
        contract: &ServiceContract,
        admission: Arc<Admission>,
        events: Events,
        health: Arc<SwarmHealth>,
    ) -> Self {
        let state = State::new(contract, admission.max(), admission.limit());
        Self {
            swarm_id: contract.swarm_id.clone(),
            admission,
            events,
            health,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("throttle lock")
    }

    /// Let a task in, or refuse it while the circuit is open.
    pub(crate) fn enter(&self, task_id: &str) -> Result<Ticket<'_>, Refusal> {
        let mut out = Vec::new();
        let (probe, epoch) = {
            let mut state = self.lock();
            let probe = state.enter(Instant::now(), &mut out)?;
            (probe, state.epoch())
        };
        self.raise(out, task_id);
        Ok(Ticket {
            throttle: self,
            probe,
            epoch,
            settled: false,
        })
    }

    /// Take a replacing version's settings. When the version it replaces
    /// had a throttle of its own (`before`: its slots differ), that one is
    /// retired and its openings on probation carry on here.
    pub(crate) fn reconfigure(&self, contract: &ServiceContract, before: Option<&Throttle>) {
        let inherited = before.filter(|b| !std::ptr::eq(*b, self)).map(|b| {
            let mut old = b.lock();
            old.retired = true;
            old.openings
        });
        let mut out = Vec::new();
        {
            let mut state = self.lock();
            if let Some(openings) = inherited {
                state.openings = state.openings.max(openings);
            }
            state.reconfigure(contract, &mut out);
        }
        self.raise(out, "");
    }

    /// How many of the swarm's tasks may be taken now ([`State::takeable`]).
    pub(crate) fn takeable(&self) -> u32 {
        self.lock().takeable(Instant::now())
    }

    /// What it does now.
    pub(crate) fn view(&self) -> ThrottleView {
        self.lock().view(Instant::now())
    }

    /// Whether a task would be refused now.
    pub(crate) fn refusing(&self) -> bool {
        self.lock().refusing(Instant::now())
    }

    /// Apply and report decisions, in order. The admission limit is set to
    /// the state's limit as it is now, so two settles that apply theirs
    /// out of order still leave the latest.
    fn raise(&self, decisions: Vec<Decision>, task_id: &str) {
        for decision in decisions {
            match decision {
                Decision::Concurrency { from, to, reason } => {
                    self.admission.set_limit(self.lock().limit);
                    tracing::info!(target: "chassis", swarm = self.swarm_id, "concurrency {from} -> {to}: {reason}");
                    self.events.emit(|| Event::ConcurrencyChanged {
                        swarm_id: self.swarm_id.clone(),
                        task_id: task_id.to_string(),
                        from,
                        to,
                        reason,
                    });
                }
                Decision::Circuit {
                    state,
                    reason,
                    cool_down,
                } => {
                    if state == CircuitState::Open {
                        tracing::warn!(target: "chassis", swarm = self.swarm_id, "circuit open: {reason}");
                    }
                    self.events.emit(|| Event::CircuitChanged {
                        swarm_id: self.swarm_id.clone(),
                        task_id: task_id.to_string(),
                        state: state.as_str().to_string(),
                        reason,
                        cool_down_seconds: cool_down.map(|d| d.as_secs_f64()),
                    });
                }
                Decision::Quarantine { reason } => {
                    self.health.quarantine_for(&reason, task_id);
                }
            }
        }
    }
}

impl Ticket<'_> {
    /// The task `task_id` ended at `now`, counted as `counted`, after
    /// `in_slot` in its slot when it reached one.
    pub(crate) fn settle(
        mut self,
        task_id: &str,
        counted: Option<Counted>,
        in_slot: Option<Duration>,
        now: Instant,
    ) {
        self.settled = true;
        let mut out = Vec::new();
        self.throttle
            .lock()
            .settle((self.probe, self.epoch), counted, in_slot, now, &mut out);
        self.throttle.raise(out, task_id);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.throttle.lock().probe_unsettled(self.epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::Ending;

    fn contract(toml: &str) -> ServiceContract {
        ServiceContract::from_toml(
            &format!(
                "swarm_id = \"s\"\n[resource_limits]\nmax_concurrent_tasks = 8\n\
                 [slo_targets]\nresponse_time_p95_ms = 50\nerror_rate_percent = 10\n{toml}"
            ),
            "<test>",
        )
        .unwrap()
    }

    const OK: Option<Counted> = Some(Counted {
        ending: Ending::Success,
        own_failure: false,
    });
    const FAILED: Option<Counted> = Some(Counted {
        ending: Ending::NoAnswer,
        own_failure: true,
    });

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    /// Run `n` tasks through `state` ending as `end` after `slot`.
    fn tasks(
        state: &mut State,
        n: usize,
        end: Option<Counted>,
        slot: Option<Duration>,
        now: Instant,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        for _ in 0..n {
            let probe = state.enter(now, &mut out).unwrap();
            let epoch = state.epoch();
            state.settle((probe, epoch), end, slot, now, &mut out);
        }
        out
    }

    fn limits(out: &[Decision]) -> Vec<u32> {
        out.iter()
            .filter_map(|d| match d {
                Decision::Concurrency { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    /// Slow windows halve the limit down to the minimum, healthy windows
    /// add one slot each back to the maximum; a failing window halves too.
    #[test]
    fn slow_windows_halve_healthy_windows_add_one() {
        let c =
            contract("[throttle]\nwindow_tasks = 4\nmin_concurrency = 2\ncircuit_failures = 0\n");
        let mut s = State::new(&c, 8, 8);
        let now = Instant::now();
        let out = tasks(&mut s, 16, OK, ms(80), now);
        assert_eq!(
            limits(&out),
            [4, 2],
            "halved twice, then held at the minimum"
        );
        let Decision::Concurrency { reason, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert!(
            reason.contains("p95 80.0 ms") && reason.contains("response_time_p95_ms = 50"),
            "{reason}"
        );
        let out = tasks(&mut s, 24, OK, ms(5), now);
        assert_eq!(limits(&out), [3, 4, 5, 6, 7, 8]);
        // One failure in four is 25 %, over the 10 % target.
        let mut out = tasks(&mut s, 3, OK, ms(5), now);
        out.extend(tasks(&mut s, 1, FAILED, ms(5), now));
        assert_eq!(limits(&out), [4]);
        // A task that did not reach a slot is not measured.
        assert!(tasks(&mut s, 10, OK, None, now).is_empty());
        assert_eq!(s.view(now).concurrency, 4);
    }

    /// Without `adaptive`, the limit stays at the maximum.
    #[test]
    fn a_swarm_that_is_not_adaptive_keeps_its_slots() {
        let c = contract("[throttle]\nadaptive = false\nwindow_tasks = 2\n");
        let mut s = State::new(&c, 8, 8);
        assert!(limits(&tasks(&mut s, 10, OK, ms(500), Instant::now())).is_empty());
    }

    /// A run of failures opens the circuit; it refuses until the cool-down
    /// ends, lets one probe through, opens again (twice as long) when the
    /// probe fails, and closes when one succeeds.
    #[test]
    fn the_circuit_opens_refuses_probes_and_closes() {
        let c = contract("[throttle]\ncircuit_failures = 3\ncool_down_seconds = 10\n");
        let mut s = State::new(&c, 8, 8);
        let t0 = Instant::now();
        let out = tasks(&mut s, 3, FAILED, ms(1), t0);
        assert!(
            matches!(
                &out[..],
                [Decision::Circuit { state: CircuitState::Open, cool_down: Some(d), .. }, Decision::Concurrency { to: 1, .. }]
                    if *d == Duration::from_secs(10)
            ),
            "{out:?}"
        );
        let mut out = Vec::new();
        let refused = s.enter(t0 + Duration::from_secs(4), &mut out).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert!(
            refused.reason.contains("after 3 failures"),
            "{}",
            refused.reason
        );
        // The probe, and no second task beside it.
        let t1 = t0 + Duration::from_secs(10);
        assert!(s.enter(t1, &mut out).unwrap());
        assert_eq!(s.enter(t1, &mut out).unwrap_err().retry_after, PROBE_RETRY);
        s.settle((true, s.epoch()), FAILED, ms(1), t1, &mut out);
        assert!(
            matches!(
                out.last(),
                Some(Decision::Circuit { state: CircuitState::Open, cool_down: Some(d), .. }) if *d == Duration::from_secs(20)
            ),
            "{out:?}"
        );
        assert_eq!(s.view(t1).openings, 2);
        // A probe that proves nothing lets the next task probe.
        let t2 = t1 + Duration::from_secs(20);
        assert!(s.enter(t2, &mut out).unwrap());
        s.settle((true, s.epoch()), None, None, t2, &mut out);
        assert!(s.enter(t2, &mut out).unwrap());
        s.settle((true, s.epoch()), OK, ms(1), t2, &mut out);
        assert_eq!(s.view(t2).circuit, CircuitState::Closed);
        assert!(!s.enter(t2, &mut out).unwrap(), "closed: no more probes");
    }

    /// A circuit that keeps opening before a healthy window quarantines
    /// the swarm; a healthy window forgives the openings before it.
    #[test]
    fn openings_on_probation_lead_to_quarantine() {
        let c = contract(
            "[throttle]\ncircuit_failures = 2\ncool_down_seconds = 1\nquarantine_after = 2\nwindow_tasks = 2\n",
        );
        let mut s = State::new(&c, 8, 8);
        let mut now = Instant::now();
        let mut out = tasks(&mut s, 2, FAILED, ms(1), now);
        for _ in 0..2 {
            now += Duration::from_secs(100);
            assert!(s.enter(now, &mut out).unwrap());
            s.settle((true, s.epoch()), FAILED, ms(1), now, &mut out);
        }
        let Some(Decision::Quarantine { reason }) = out.last() else {
            panic!("{out:?}")
        };
        assert!(
            reason.contains("opened 3 times") && reason.contains("quarantine_after = 2"),
            "{reason}"
        );
        // Forgiven: open once, probe, a healthy window, then open twice more.
        let mut s = State::new(&c, 8, 8);
        let mut out = tasks(&mut s, 2, FAILED, ms(1), now);
        now += Duration::from_secs(100);
        out.extend(tasks(&mut s, 3, OK, ms(1), now));
        assert_eq!(s.view(now).openings, 0);
        out.extend(tasks(&mut s, 2, FAILED, ms(1), now));
        now += Duration::from_secs(100);
        assert!(s.enter(now, &mut out).unwrap());
        s.settle((true, s.epoch()), FAILED, ms(1), now, &mut out);
        assert!(
            !out.iter().any(|d| matches!(d, Decision::Quarantine { .. })),
            "{out:?}"
        );
        assert_eq!(s.view(now).openings, 2);
    }

    const OVERLOADED: Option<Counted> = Some(Counted {
        ending: Ending::NoAnswer,
        own_failure: false,
    });

    /// A task that never got a slot proves nothing: it neither breaks a
    /// run of failures nor settles a probe.
    #[test]
    fn a_task_that_never_ran_neither_resets_the_run_nor_settles_the_probe() {
        let c = contract("[throttle]\ncircuit_failures = 3\ncool_down_seconds = 1\n");
        let mut s = State::new(&c, 8, 8);
        let now = Instant::now();
        let mut out = tasks(&mut s, 2, FAILED, ms(1), now);
        out.extend(tasks(&mut s, 5, OVERLOADED, None, now));
        out.extend(tasks(&mut s, 1, FAILED, ms(1), now));
        assert_eq!(s.view(now).circuit, CircuitState::Open, "{out:?}");
        let later = now + Duration::from_secs(2);
        assert!(s.enter(later, &mut out).unwrap());
        s.settle((true, s.epoch()), OVERLOADED, None, later, &mut out);
        assert_eq!(s.view(later).circuit, CircuitState::HalfOpen);
        assert!(s.enter(later, &mut out).unwrap(), "the next task probes");
    }

    /// Tasks that entered before the circuit opened, or before a new
    /// version took over, are not counted: they neither reopen the circuit
    /// nor fill a window that would forgive its openings.
    #[test]
    fn tasks_from_before_an_opening_or_a_new_version_are_not_counted() {
        let c =
            contract("[throttle]\ncircuit_failures = 2\ncool_down_seconds = 1\nwindow_tasks = 2\n");
        let mut s = State::new(&c, 8, 8);
        let now = Instant::now();
        let mut out = Vec::new();
        let old = (s.enter(now, &mut out).unwrap(), s.epoch());
        out.extend(tasks(&mut s, 2, FAILED, ms(1), now));
        assert_eq!(s.view(now).circuit, CircuitState::Open);
        // Healthy endings from before the opening forgive nothing.
        for _ in 0..3 {
            s.settle(old, OK, ms(1), now, &mut out);
        }
        assert_eq!(s.view(now).openings, 1);
        // A probe running when a new version is loaded: its failure does
        // not reopen the new version's circuit.
        let later = now + Duration::from_secs(2);
        let probe = (s.enter(later, &mut out).unwrap(), s.epoch());
        assert!(probe.0);
        s.reconfigure(&c, &mut out);
        s.settle(probe, FAILED, ms(1), later, &mut out);
        assert_eq!(s.view(later).circuit, CircuitState::Closed);
        assert_eq!(s.view(later).openings, 1, "the probation carries on");
    }
}
