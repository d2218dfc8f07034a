//! Hostile test guest: its `describe` export answers with one task type
//! name of 3 MiB of NUL bytes. The host must refuse it at load, with a
//! bounded error and a bounded audit record, and keep serving others.

use chassis_sdk::bindings::exports::infrafabric::chassis::task::Guest;
use chassis_sdk::bindings::infrafabric::chassis::types::{TaskError, TaskRequest};

/// The swarm, written against the raw bindings.
pub struct Liar;

impl Guest for Liar {
    fn describe() -> Vec<String> {
        vec!["\0".repeat(3 * 1024 * 1024)]
    }

    fn execute(request: TaskRequest) -> Result<String, TaskError> {
        Err(TaskError::UnknownTaskType(request.task_type))
    }
}

chassis_sdk::bindings::__export_swarm_world!(Liar with_types_in chassis_sdk::bindings);
