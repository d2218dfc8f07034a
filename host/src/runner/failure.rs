//! What stopped a task: a wasmtime error from instantiation or a call
//! mapped to a typed [`Error`] — a limit (memory, tables, stack, fuel, the
//! deadline, a spent budget), the rate guard, or a trap with the guest's
//! own message.

use wasmtime::Trap;

use crate::TaskError;
use crate::error::{Error, chain};
use crate::imports::scope::{RateLimitAbuse, TaskShared};
use crate::limits::{GrowthRefused, MAX_HOSTCALL_BYTES, MAX_TABLE_ELEMENTS, Spent};
use crate::state::SwarmRuntime;

/// The error of a task refused or stopped because its swarm's budget for
/// the period is spent.
pub(super) fn budget_spent(swarm: &SwarmRuntime, task_id: &str, spent: Spent) -> Error {
    Error::Task(TaskError::BudgetExhausted {
        swarm_id: swarm.swarm_id().to_string(),
        task_id: task_id.to_string(),
        budget: spent.kind,
        limit: spent.limit,
        period_seconds: swarm.contract.budget.period_seconds,
        renews_at: crate::audit::rfc3339(spent.renews_at),
        retry_after: spent.renews_in(std::time::SystemTime::now()),
    })
}

/// Map a wasmtime error from instantiation or a call into a typed error.
pub(super) fn classify_failure(
    e: wasmtime::Error,
    swarm: &SwarmRuntime,
    task_id: &str,
    shared: &TaskShared,
) -> Error {
    let contract = &swarm.contract;
    let swarm_id = contract.swarm_id.clone();
    let task_id = task_id.to_string();
    if let Some(g) = e.downcast_ref::<GrowthRefused>() {
        if g.what == crate::limits::SWARM_MEMORY {
            return Error::Task(TaskError::SwarmMemoryLimit {
                swarm_id,
                task_id,
                limit_mb: contract.swarm_limits.max_memory_mb.unwrap_or(0),
                detail: g.to_string(),
            });
        }
        if g.what == "table" {
            return Error::Task(TaskError::TableLimit {
                swarm_id,
                task_id,
                limit_elements: MAX_TABLE_ELEMENTS,
                detail: g.to_string(),
            });
        }
        return Error::Task(TaskError::MemoryLimit {
            swarm_id,
            task_id,
            limit_mb: contract.resource_limits.max_memory_mb,
            detail: g.to_string(),
        });
    }
    if let Some(r) = e.downcast_ref::<RateLimitAbuse>() {
        return Error::Task(TaskError::RateLimited {
            swarm_id,
            task_id,
            refused: r.refused,
            rate: contract.resource_limits.max_api_calls_per_second,
        });
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            let spent = shared.budget_spent.lock().expect("budget lock").take();
            return match spent {
                Some(spent) => budget_spent(swarm, &task_id, spent),
                None => timeout(swarm, &task_id),
            };
        }
        Some(Trap::StackOverflow) => {
            return Error::Task(TaskError::StackOverflow {
                swarm_id,
                task_id,
                limit_bytes: crate::engine::MAX_WASM_STACK,
            });
        }
        Some(Trap::OutOfFuel) => {
            return Error::Task(TaskError::CpuBudget {
                swarm_id,
                task_id,
                fuel: contract.resource_limits.max_fuel.unwrap_or(u64::MAX),
            });
        }
        _ => {}
    }
    // wasmtime's own type for this is private; its message is stable.
    if chain(&e).contains("fuel allocated for hostcalls has been exhausted") {
        return Error::Task(TaskError::HostcallTooLarge {
            swarm_id,
            task_id,
            limit_bytes: MAX_HOSTCALL_BYTES,
        });
    }
    let mut message = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => chain(&e),
    };
    if let Some(frame) = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| bt.frames().first())
    {
        // Function names come from the guest's name section.
        message.push_str(&format!(
            " in {}",
            crate::text::escape(frame.func_name().unwrap_or("<unnamed function>"), 256)
        ));
    }
    if let Some(guest) = shared.stderr_message(&swarm.scope, &task_id) {
        message.push_str(&format!("; guest said: {guest}"));
    }
    Error::Task(TaskError::Trap {
        swarm_id,
        task_id,
        message,
    })
}

pub(super) fn timeout(swarm: &SwarmRuntime, task_id: &str) -> Error {
    Error::Task(TaskError::Timeout {
        swarm_id: swarm.swarm_id().to_string(),
        task_id: task_id.to_string(),
        seconds: swarm.contract.resource_limits.task_timeout_seconds,
    })
}
