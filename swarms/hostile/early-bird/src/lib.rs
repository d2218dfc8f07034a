//! Hostile test guest: asks for a credential while it is being loaded,
//! before any task runs, from its `describe` export. It reports what it got
//! as its one task type: `got:<value>` or `refused:<error>`.

use chassis_sdk::bindings::exports::infrafabric::chassis::task::Guest;
use chassis_sdk::bindings::infrafabric::chassis::credentials;
use chassis_sdk::bindings::infrafabric::chassis::types::{TaskError, TaskRequest};

/// The swarm, written against the raw bindings.
pub struct EarlyBird;

impl Guest for EarlyBird {
    fn describe() -> Vec<String> {
        vec![match credentials::get("api_key") {
            Ok(value) => format!("got:{value}"),
            Err(e) => format!("refused:{e:?}"),
        }]
    }

    fn execute(request: TaskRequest) -> Result<String, TaskError> {
        Err(TaskError::UnknownTaskType(request.task_type))
    }
}

chassis_sdk::bindings::__export_swarm_world!(EarlyBird with_types_in chassis_sdk::bindings);
