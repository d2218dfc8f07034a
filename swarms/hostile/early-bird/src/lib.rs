//! Hostile test guest: asks for a credential and fetches a URL while it is
//! being loaded, before any task runs, from its `describe` export. It
//! reports what it got as its two task types: `got:<value>` or
//! `refused:<error>` for the credential, then `fetched:<status>` or
//! `refused:<error>` for the fetch (of `http://127.0.0.1:9/`).

use chassis_sdk::bindings::exports::infrafabric::chassis::task::Guest;
use chassis_sdk::bindings::infrafabric::chassis::types::{TaskError, TaskRequest};
use chassis_sdk::bindings::infrafabric::chassis::{credentials, http_proxy};

/// The swarm, written against the raw bindings.
pub struct EarlyBird;

impl Guest for EarlyBird {
    fn describe() -> Vec<String> {
        let request = http_proxy::Request {
            method: "GET".to_string(),
            url: "http://127.0.0.1:9/".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            credential_header: None,
        };
        vec![
            match credentials::get("api_key") {
                Ok(value) => format!("got:{value}"),
                Err(e) => format!("refused:{e:?}"),
            },
            match http_proxy::fetch(&request) {
                Ok(response) => format!("fetched:{}", response.status),
                Err(e) => format!("refused:{e:?}"),
            },
        ]
    }

    fn execute(request: TaskRequest) -> Result<String, TaskError> {
        Err(TaskError::UnknownTaskType(request.task_type))
    }
}

chassis_sdk::bindings::__export_swarm_world!(EarlyBird with_types_in chassis_sdk::bindings);
