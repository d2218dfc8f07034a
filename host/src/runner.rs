//! Running one task: a fresh store from the swarm's `InstancePre`, the
//! guest's `execute` call under the contract's limits, and the mapping of
//! whatever happened into a [`TaskOutcome`] or a typed [`Error`].
//!
//! The store (and with it the instance, its memory and its WASI context) is
//! dropped when the task ends, whether it succeeded, failed or trapped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};

use crate::bindings::types::{TaskError as WitTaskError, TaskRequest as WitTaskRequest};
use crate::contract::ServiceContract;
use crate::error::Error;
use crate::outcome::{GuestError, TaskOutcome, TaskRequest, TaskStatus};
use crate::registry::{LoadedSwarm, chain};
use crate::state::HostState;

/// Extra time past `task_timeout_seconds` before a task stuck in a host call
/// is abandoned (a guest running wasm is stopped by the epoch deadline).
pub const HOST_SLACK: Duration = Duration::from_millis(250);

/// A fresh store for one task of the swarm under `contract`.
pub(crate) fn new_store(
    engine: &Engine,
    contract: &Arc<ServiceContract>,
    task_id: &Arc<str>,
) -> Store<HostState> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(contract.resource_limits.max_memory_mb as usize * 1024 * 1024)
        .trap_on_grow_failure(true)
        .build();
    let state = HostState {
        contract: contract.clone(),
        task_id: task_id.clone(),
        wasi: crate::wasi::context(contract, task_id),
        table: wasmtime::component::ResourceTable::new(),
        limits,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(crate::engine::ticks(contract.task_timeout()));
    store.epoch_deadline_trap();
    store
}

/// Map a wasmtime error from instantiation or a call into a typed error.
fn classify_failure(e: wasmtime::Error, contract: &ServiceContract, task_id: &str) -> Error {
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return timeout(contract, task_id);
    }
    Error::Trap {
        swarm_id: contract.swarm_id.clone(),
        task_id: task_id.to_string(),
        message: chain(&e),
    }
}

fn timeout(contract: &ServiceContract, task_id: &str) -> Error {
    Error::Timeout {
        swarm_id: contract.swarm_id.clone(),
        task_id: task_id.to_string(),
        seconds: contract.resource_limits.task_timeout_seconds,
    }
}

/// Ask a freshly prepared swarm which task types it serves.
pub(crate) async fn describe(
    engine: &Engine,
    pre: &crate::bindings::SwarmPre<HostState>,
    contract: &Arc<ServiceContract>,
) -> Result<Vec<String>, Error> {
    let task_id: Arc<str> = "load".into();
    let mut store = new_store(engine, contract, &task_id);
    let call = async {
        let swarm = pre.instantiate_async(&mut store).await?;
        swarm
            .infrafabric_chassis_task()
            .call_describe(&mut store)
            .await
    };
    match tokio::time::timeout(contract.task_timeout() + HOST_SLACK, call).await {
        Err(_) => Err(timeout(contract, &task_id)),
        Ok(Err(e)) => Err(Error::Instantiate {
            swarm_id: contract.swarm_id.clone(),
            reason: format!(
                "describe failed: {}",
                classify_failure(e, contract, &task_id)
            ),
        }),
        Ok(Ok(tasks)) => Ok(tasks),
    }
}

/// Run `request` on `swarm`.
pub(crate) async fn execute(
    engine: &Engine,
    swarm: &LoadedSwarm,
    request: TaskRequest,
) -> Result<TaskOutcome, Error> {
    let contract = &swarm.contract;
    if !swarm.info.task_types.contains(&request.task_type) {
        return Err(Error::TaskNotExported {
            swarm_id: contract.swarm_id.clone(),
            task_type: request.task_type,
            available: swarm.info.task_types.join(", "),
        });
    }
    let started = Instant::now();
    let task_id: Arc<str> = request.task_id.as_str().into();
    let wit_request = WitTaskRequest {
        task_id: request.task_id.clone(),
        task_type: request.task_type.clone(),
        payload: request.payload.to_string(),
    };
    let mut store = new_store(engine, contract, &task_id);
    let call = async {
        let instance = swarm.pre.instantiate_async(&mut store).await?;
        instance
            .infrafabric_chassis_task()
            .call_execute(&mut store, &wit_request)
            .await
    };
    let answer = match tokio::time::timeout(contract.task_timeout() + HOST_SLACK, call).await {
        Err(_) => return Err(timeout(contract, &task_id)),
        Ok(Err(e)) => return Err(classify_failure(e, contract, &task_id)),
        Ok(Ok(answer)) => answer,
    };
    drop(store);
    let execution_time = started.elapsed();
    let (status, output, error) = match answer {
        Ok(text) => {
            let output = serde_json::from_str(&text).map_err(|e| Error::InvalidOutput {
                swarm_id: contract.swarm_id.clone(),
                task_id: request.task_id.clone(),
                reason: e.to_string(),
            })?;
            (TaskStatus::Success, output, None)
        }
        Err(e) => (
            TaskStatus::Failed,
            serde_json::Value::Null,
            Some(guest_error(e)),
        ),
    };
    Ok(TaskOutcome {
        swarm_id: contract.swarm_id.clone(),
        task_id: request.task_id,
        task_type: request.task_type,
        status,
        output,
        error,
        execution_time,
    })
}

fn guest_error(e: WitTaskError) -> GuestError {
    match e {
        WitTaskError::UnknownTaskType(m) => GuestError::UnknownTaskType(m),
        WitTaskError::InvalidPayload(m) => GuestError::InvalidPayload(m),
        WitTaskError::Failed(m) => GuestError::Failed(m),
    }
}
