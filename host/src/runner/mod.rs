//! Running one task, top to bottom:
//!
//! 1. the task type must be one the swarm serves;
//! 2. the governor's throttle: refused at once while the swarm's circuit
//!    is open (`governor/throttle.rs`), then admission: a slot among those
//!    the throttle lets be taken (`max_concurrent_tasks` at most), or a
//!    bounded wait;
//! 3. a fresh store from the swarm's `InstancePre`, with the task's memory
//!    limiter, hostcall byte cap, fuel, and an epoch callback that enforces
//!    the deadline and the CPU share — or, when the contract keeps
//!    instances warm, an idle one made the task's own (`warm.rs`);
//! 4. the guest's `execute`, inside an outer timeout that also bounds time
//!    spent in host calls;
//! 5. the store is dropped (instance, memory, WASI context with it), or
//!    kept warm if the task ended cleanly and the contract asks for it, and
//!    the result becomes a [`TaskOutcome`] or a typed [`Error`]
//!    (`failure.rs` names what stopped a task); events go out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

use crate::bindings::SwarmPre;
use crate::bindings::types::{TaskError as WitTaskError, TaskRequest as WitTaskRequest};
use crate::error::Error;
use crate::error::GuestError;
use crate::events::Event;
use crate::governor::throttle::Ticket;
use crate::imports::scope::{Phase, TaskScope, TaskShared};
use crate::limits::{
    CpuMark, MAX_ERROR_MESSAGE_BYTES, MAX_HOSTCALL_BYTES, MAX_OUTPUT_BYTES, Refused, TaskLimiter,
};
use crate::outcome::{Output, TaskEnd, TaskOutcome, TaskRequest, TaskStatus, TaskUsage};
use crate::state::{HostState, SwarmRuntime};
use crate::task_types::{MAX_TASK_TYPE_BYTES, check_task_types, list_task_types};
use crate::{LoadError, TaskError};

mod failure;
pub(crate) mod warm;

use self::failure::{budget_spent, classify_failure, timeout};

/// Extra time past `task_timeout_seconds` before a task stuck in a host call
/// is abandoned. A guest running wasm is stopped by the epoch callback within
/// one [`crate::caps::EPOCH_TICK`] of its deadline.
pub const HOST_SLACK: Duration = Duration::from_millis(250);

/// The task id of the `describe` call made while loading.
pub(crate) const LOAD_TASK_ID: &str = "load";

/// A fresh store for one task of `swarm` (or its load), ending `timeout` from now.
pub(crate) fn new_store(
    engine: &Engine,
    swarm: &Arc<SwarmRuntime>,
    task_id: &Arc<str>,
    shared: &Arc<TaskShared>,
    phase: Phase,
    timeout: Duration,
) -> Store<HostState> {
    let contract = &swarm.contract;
    let now = Instant::now();
    let state = HostState {
        swarm: swarm.clone(),
        task: TaskScope::new(task_id.clone(), phase, shared.clone()),
        wasi: crate::wasi::context(swarm, task_id, shared),
        table: wasmtime::component::ResourceTable::new(),
        limiter: TaskLimiter::new(
            contract.resource_limits.max_memory_mb,
            contract.swarm_limits.max_memory_mb,
            swarm.counters.clone(),
        ),
        governor: HostState::governor(contract, &swarm.counters, now),
        cpu_mark: CpuMark::default(),
        budget_charged: Duration::ZERO,
        deadline: now + timeout,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    arm(&mut store);
    store.epoch_deadline_callback(move |mut ctx| {
        let now = Instant::now();
        let state = ctx.data_mut();
        if now >= state.deadline || state.swarm.stopping.load(Ordering::Relaxed) {
            return Ok(UpdateDeadline::Interrupt);
        }
        let mark = &state.cpu_mark;
        let throttle = state.governor.tick(now, |busy| mark.take(busy));
        // A task's CPU time goes to the swarm's budget; the task that
        // spends it is stopped. (Loading is not charged.)
        if let (Some(budget), Phase::Task) = (&state.swarm.budget, state.task.phase) {
            let ran = state.governor.busy.saturating_sub(state.budget_charged);
            state.budget_charged = state.governor.busy;
            if let Err(spent) = budget.charge_cpu(ran, std::time::SystemTime::now()) {
                *state.task.shared.budget_spent.lock().expect("budget lock") = Some(spent);
                return Ok(UpdateDeadline::Interrupt);
            }
        }
        // The next run begins where the task resumes, after the yield.
        let mark = state.cpu_mark.clone();
        Ok(match throttle {
            Some(sleep) => {
                let sleep = sleep.min(state.deadline - now);
                UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        tokio::time::sleep(sleep).await;
                        mark.set_here();
                    }),
                )
            }
            // tokio's own yield: it lets the worker's other tasks (and its
            // global queue) run before the guest resumes.
            None => UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    mark.set_here();
                }),
            ),
        })
    });
    store
}

/// Give `store` its task's allowances: the host-call byte cap, the fuel of
/// `max_fuel`, and an epoch callback at the next tick. For a fresh store,
/// and again for each task a warm one runs.
pub(crate) fn arm(store: &mut Store<HostState>) {
    store.set_hostcall_fuel(MAX_HOSTCALL_BYTES);
    if store.engine().get_consume_fuel() {
        let fuel = fuel_budget(store);
        store.set_fuel(fuel).expect("fuel metering is on");
    }
    store.set_epoch_deadline(1);
}

/// Ask a freshly prepared swarm which task types it serves, within
/// `timeout` (the host's load timeout, or the task timeout if shorter), and
/// check the answer ([`check_task_types`]).
pub(crate) async fn describe(
    engine: &Engine,
    pre: &crate::bindings::SwarmPre<HostState>,
    swarm: &Arc<SwarmRuntime>,
    timeout: Duration,
) -> Result<Vec<String>, Error> {
    let task_id: Arc<str> = LOAD_TASK_ID.into();
    let shared = Arc::new(TaskShared::default());
    let timeout = timeout.min(swarm.contract.task_timeout());
    let mut store = new_store(engine, swarm, &task_id, &shared, Phase::Loading, timeout);
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance
            .infrafabric_chassis_task()
            .call_describe(&mut store)
            .await
    };
    let load_timeout = || {
        Error::Load(LoadError::LoadTimeout {
            swarm_id: swarm.swarm_id().to_string(),
            seconds: timeout.as_secs_f64(),
        })
    };
    let tasks = match tokio::time::timeout(timeout + HOST_SLACK, call).await {
        Err(_) => return Err(load_timeout()),
        Ok(Err(e)) => {
            return Err(match classify_failure(e, swarm, &task_id, &shared) {
                Error::Task(TaskError::Timeout { .. }) => load_timeout(),
                other => Error::Instantiate {
                    swarm_id: swarm.swarm_id().to_string(),
                    reason: format!("describe failed: {other}"),
                },
            });
        }
        Ok(Ok(tasks)) => tasks,
    };
    check_task_types(&tasks).map_err(|reason| {
        Error::Load(LoadError::BadTaskTypes {
            swarm_id: swarm.swarm_id().to_string(),
            reason,
        })
    })?;
    Ok(tasks)
}

/// Whether `rt` may run a task now: its events can be recorded and it is
/// not quarantined.
pub(crate) fn may_run(rt: &SwarmRuntime) -> Result<(), Error> {
    if let Some(reason) = rt.events.failure() {
        return Err(Error::AuditUnavailable { reason });
    }
    let health = rt.health.lock();
    if health.reputation.quarantined {
        return Err(Error::Task(TaskError::Quarantined {
            swarm_id: rt.swarm_id().to_string(),
            score: health.reputation.score,
            threshold: health.reputation.threshold,
            reason: health
                .reputation
                .quarantine_reason
                .clone()
                .unwrap_or_else(|| "released only by an operator".to_string()),
        }));
    }
    Ok(())
}

/// Records a task whose caller dropped it before it ended: a `task_failed`
/// event of kind `cancelled`. Disarmed (an empty task id) once the task
/// ends on its own.
struct Unfinished<'a> {
    rt: &'a SwarmRuntime,
    task_id: &'a str,
    started: Instant,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.task_id.is_empty() {
            return;
        }
        let error = Error::Task(TaskError::Cancelled {
            swarm_id: self.rt.swarm_id().to_string(),
            task_id: self.task_id.to_string(),
        });
        tracing::info!(target: "chassis", swarm = self.rt.swarm_id(), task = self.task_id, "{error}");
        self.rt.events.emit(|| Event::TaskFailed {
            swarm_id: self.rt.swarm_id().to_string(),
            task_id: self.task_id.to_string(),
            kind: error.kind().as_str().to_string(),
            error: error.to_string(),
            guest_error: None,
            wall_ms: self.started.elapsed().as_secs_f64() * 1000.0,
        });
    }
}

/// What bounds the swarm's slots now: `max_concurrent_tasks`, or the
/// throttle under it.
fn slots_named(rt: &SwarmRuntime) -> String {
    let (limit, max) = (rt.admission.limit(), rt.admission.max());
    if limit < max {
        format!("throttled to {limit} of max_concurrent_tasks = {max}")
    } else {
        format!("max_concurrent_tasks = {max}")
    }
}

/// A loaded swarm, as a task needs it.
pub(crate) struct Ready<'a> {
    pub(crate) runtime: &'a Arc<SwarmRuntime>,
    pub(crate) pre: &'a SwarmPre<HostState>,
    /// What its `describe` answered at load.
    pub(crate) task_types: &'a [String],
    /// Its idle warm instances (none unless `[instances]` asks for them).
    pub(crate) warm: &'a warm::WarmPool,
}

/// Run `request` on `swarm`, raising the task's events.
pub(crate) async fn execute<O: Output>(
    engine: &Engine,
    swarm: Ready<'_>,
    request: TaskRequest,
) -> Result<TaskOutcome<O>, Error> {
    let rt = swarm.runtime;
    let task_id = request.task_id.clone();
    let started = Instant::now();
    // A caller that stops waiting (a client that went away) drops this
    // future: the task still gets its one terminal record.
    let mut unfinished = Unfinished {
        rt,
        task_id: &task_id,
        started,
    };
    let mut pass = Pass::default();
    let result = run(engine, &swarm, request, &mut pass).await;
    unfinished.task_id = "";
    let ended = Instant::now();
    let elapsed = ended - started;
    let wall_ms = elapsed.as_secs_f64() * 1000.0;
    match &result {
        Ok(outcome) if outcome.is_success() => rt.events.emit(|| Event::TaskComplete {
            swarm_id: rt.swarm_id().to_string(),
            task_id: task_id.clone(),
            wall_ms,
        }),
        Ok(outcome) => rt.events.emit(|| Event::TaskFailed {
            swarm_id: rt.swarm_id().to_string(),
            task_id: task_id.clone(),
            kind: "guest_error".to_string(),
            error: outcome
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            guest_error: outcome.error.as_ref().map(|e| e.kind().to_string()),
            wall_ms,
        }),
        Err(e) => {
            if let Some(limit) = e.limit() {
                rt.events.emit(|| Event::LimitExceeded {
                    swarm_id: rt.swarm_id().to_string(),
                    task_id: task_id.clone(),
                    limit,
                    detail: e.to_string(),
                });
            }
            rt.events.emit(|| Event::TaskFailed {
                swarm_id: rt.swarm_id().to_string(),
                task_id: task_id.clone(),
                kind: e.kind().as_str().to_string(),
                error: e.to_string(),
                guest_error: None,
                wall_ms,
            });
        }
    }
    // After the task's terminal event: its consequences for SLOs and reputation.
    let end = TaskEnd::of(&result);
    rt.health.after_task(
        &rt.contract,
        &task_id,
        elapsed,
        end,
        result.as_ref().err().and_then(Error::limit),
        ended,
    );
    // Then for the governor's throttle (concurrency, circuit).
    if let Some(ticket) = pass.ticket.take() {
        let in_slot = pass.slot_at.map(|at| ended.saturating_duration_since(at));
        ticket.settle(&task_id, crate::reputation::counted(end), in_slot, ended);
    }
    // An answer is a promise that the task's ending is on record: under
    // `fsync = always` the terminal record is on disk when `emit` returns,
    // so a log that has failed by now may have lost it, and the caller is
    // told so rather than handed an ending the log may not hold.
    match rt.events.failure() {
        Some(reason) => Err(Error::AuditUnavailable { reason }),
        None => result,
    }
}

/// A task's way through the governor: its throttle ticket once it passed
/// the circuit, and when it got its slot.
#[derive(Default)]
struct Pass<'a> {
    ticket: Option<Ticket<'a>>,
    slot_at: Option<Instant>,
}

async fn run<'a, O: Output>(
    engine: &Engine,
    swarm: &Ready<'a>,
    request: TaskRequest,
    pass: &mut Pass<'a>,
) -> Result<TaskOutcome<O>, Error> {
    let rt = swarm.runtime;
    let task_types = swarm.task_types;
    may_run(rt)?;
    if !task_types.contains(&request.task_type) {
        return Err(Error::Task(TaskError::TaskNotExported {
            swarm_id: rt.swarm_id().to_string(),
            task_type: crate::text::escape(&request.task_type, MAX_TASK_TYPE_BYTES),
            available: list_task_types(task_types),
        }));
    }
    if let Some(budget) = &rt.budget {
        budget
            .check(std::time::SystemTime::now())
            .map_err(|spent| budget_spent(rt, &request.task_id, spent))?;
    }
    let ticket = rt.throttle.enter(&request.task_id).map_err(|refused| {
        Error::Task(TaskError::CircuitOpen {
            swarm_id: rt.swarm_id().to_string(),
            task_id: request.task_id.clone(),
            reason: refused.reason,
            retry_after: refused.retry_after,
        })
    })?;
    pass.ticket = Some(ticket);
    let started = Instant::now();
    let _slot = rt.admission.admit().await.map_err(|refused| {
        Error::Task(TaskError::Overloaded {
            swarm_id: rt.swarm_id().to_string(),
            reason: match refused {
                Refused::QueueFull { max_queued } => format!(
                    "all {} slots ({}) are busy and the wait queue of {max_queued} is full",
                    rt.admission.limit(),
                    slots_named(rt),
                ),
                Refused::WaitedTooLong { waited } => format!(
                    "no slot ({}) freed up within {:.1} s",
                    slots_named(rt),
                    waited.as_secs_f64()
                ),
            },
        })
    })?;
    pass.slot_at = Some(Instant::now());
    if let Some(budget) = &rt.budget {
        budget
            .take_task(std::time::SystemTime::now())
            .map_err(|spent| budget_spent(rt, &request.task_id, spent))?;
    }
    rt.events.emit(|| Event::TaskStart {
        swarm_id: rt.swarm_id().to_string(),
        task_id: request.task_id.clone(),
        task_type: request.task_type.clone(),
    });

    let task_id: Arc<str> = request.task_id.as_str().into();
    let shared = Arc::new(TaskShared::default());
    // The payload's text goes to the guest as it is: no parse, no print.
    let TaskRequest {
        task_id: id,
        task_type,
        payload,
    } = request;
    let wit_request = WitTaskRequest {
        task_id: id,
        task_type,
        payload: payload.into_string(),
    };
    let in_store = Instant::now();
    let timeout_at = rt.contract.task_timeout();
    // A swarm of fresh instances never looks at its (empty) pool.
    let warm = (!rt.contract.instances.is_fresh())
        .then(|| swarm.warm.take())
        .flatten();
    let (mut store, warm_instance, tasks_before) = match warm {
        Some(mut warm) => {
            let wasi = crate::wasi::context(rt, &task_id, &shared);
            warm.store
                .data_mut()
                .next_task(&task_id, &shared, wasi, timeout_at);
            arm(&mut warm.store);
            (warm.store, Some(warm.instance), warm.tasks)
        }
        None => {
            let store = new_store(engine, rt, &task_id, &shared, Phase::Task, timeout_at);
            (store, None, 0)
        }
    };
    let call = async {
        let instance = match warm_instance {
            Some(instance) => instance,
            None => swarm.pre.instantiate_async(&mut store).await?,
        };
        let answer = instance
            .infrafabric_chassis_task()
            .call_execute(&mut store, &wit_request)
            .await?;
        Ok::<_, wasmtime::Error>((answer, instance))
    };
    let budget = timeout_at + HOST_SLACK;
    let answer = tokio::time::timeout(budget, call).await;
    let mut usage = finish(&mut store, in_store, &shared);
    usage.instance_prior_tasks = tasks_before;
    if let Some(budget) = &rt.budget {
        // The last run, since the last tick; the task has ended either way.
        let state = store.data();
        let rest = state.governor.busy.saturating_sub(state.budget_charged);
        let _ = budget.charge_cpu(rest, std::time::SystemTime::now());
    }
    rt.counters
        .cpu_nanos
        .fetch_add((usage.cpu_ms * 1e6) as u64, Ordering::Relaxed);
    let (answer, instance) = match answer {
        Err(_) => {
            drop(store);
            return Err(timeout(rt, &task_id));
        }
        Ok(Err(e)) => {
            drop(store);
            return Err(classify_failure(e, rt, &task_id, &shared));
        }
        Ok(Ok(answered)) => answered,
    };
    // An instance that may run another task is kept once its output is
    // accepted; any other is dropped here, as a fresh one always is.
    let tasks = tasks_before + 1;
    let mut keep = match &answer {
        Ok(_) if warm::reusable(&store, &usage, tasks) => {
            store.data_mut().end_task();
            Some(warm::Warm {
                store,
                instance,
                tasks,
            })
        }
        _ => {
            drop(store);
            None
        }
    };
    let (status, output, error) = match answer {
        Ok(text) => {
            if text.len() > MAX_OUTPUT_BYTES {
                return Err(Error::Task(TaskError::OutputTooLarge {
                    swarm_id: rt.swarm_id().to_string(),
                    task_id: wit_request.task_id,
                    bytes: text.len(),
                    limit_bytes: MAX_OUTPUT_BYTES,
                }));
            }
            let output = O::from_text(text).map_err(|e| {
                Error::Task(TaskError::InvalidOutput {
                    swarm_id: rt.swarm_id().to_string(),
                    task_id: wit_request.task_id.clone(),
                    reason: e.to_string(),
                })
            })?;
            if let Some(warm) = keep.take() {
                let max_idle = rt.contract.resource_limits.max_concurrent_tasks as usize;
                swarm.warm.keep(warm, max_idle);
            }
            (TaskStatus::Success, output, None)
        }
        Err(e) => (
            TaskStatus::Failed,
            O::null(),
            Some(guest_error(e, |m| {
                rt.scope
                    .guest_text(&shared, &task_id, m, "error", MAX_ERROR_MESSAGE_BYTES)
            })),
        ),
    };
    Ok(TaskOutcome {
        swarm_id: rt.swarm_id().to_string(),
        version: rt.contract.version.clone(),
        task_id: wit_request.task_id,
        task_type: wit_request.task_type,
        status,
        output,
        error,
        execution_time: started.elapsed(),
        usage,
    })
}

/// The fuel a task of the store's swarm starts with: `max_fuel`, or no
/// bound.
fn fuel_budget(store: &Store<HostState>) -> u64 {
    let limits = &store.data().contract().resource_limits;
    limits.max_fuel.unwrap_or(u64::MAX)
}

/// Close the task's accounting and read its usage from the store.
fn finish(store: &mut Store<HostState>, in_store: Instant, shared: &TaskShared) -> TaskUsage {
    let now = Instant::now();
    let fuel_consumed = if store.engine().get_consume_fuel() {
        let budget = fuel_budget(store);
        store.get_fuel().ok().map(|left| budget - left)
    } else {
        None
    };
    let state = store.data_mut();
    let mark = &state.cpu_mark;
    state.governor.finish(now, |busy| mark.take(busy));
    TaskUsage {
        wall_ms: ms(now - in_store),
        cpu_ms: ms(state.governor.busy),
        throttled_ms: ms(state.governor.throttled),
        peak_memory_bytes: state.limiter.peak_memory() as u64,
        fuel_consumed,
        host_calls: state.task.host_calls,
        rate_limited_calls: state.task.refused_calls,
        dropped_log_lines: shared.dropped_lines.load(Ordering::Relaxed),
        security_violations: state.task.security_violations
            + u64::from(shared.secret_leaks.load(Ordering::Relaxed) > 0),
        instance_prior_tasks: 0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The guest's error, its message made fit to show by `clean` (secrets
/// redacted, escaped, cut to [`MAX_ERROR_MESSAGE_BYTES`]).
fn guest_error(e: WitTaskError, clean: impl Fn(&str) -> String) -> GuestError {
    match e {
        WitTaskError::UnknownTaskType(m) => GuestError::UnknownTaskType(clean(&m)),
        WitTaskError::InvalidPayload(m) => GuestError::InvalidPayload(clean(&m)),
        WitTaskError::Failed(m) => GuestError::Failed(clean(&m)),
    }
}
