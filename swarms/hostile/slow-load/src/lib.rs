//! Hostile test guest: its `describe` export never returns (it spins), so
//! loading it would hold the loader for as long as the host lets it. The
//! host gives loading its own short limit, whatever the contract's
//! `task_timeout_seconds`.

use std::hint::black_box;

use chassis_sdk::bindings::exports::infrafabric::chassis::task::Guest;
use chassis_sdk::bindings::infrafabric::chassis::types::{TaskError, TaskRequest};

/// The swarm, written against the raw bindings.
pub struct SlowLoad;

impl Guest for SlowLoad {
    fn describe() -> Vec<String> {
        let mut x = 0u64;
        loop {
            x = black_box(x.wrapping_add(1));
        }
    }

    fn execute(request: TaskRequest) -> Result<String, TaskError> {
        Err(TaskError::UnknownTaskType(request.task_type))
    }
}

chassis_sdk::bindings::__export_swarm_world!(SlowLoad with_types_in chassis_sdk::bindings);
