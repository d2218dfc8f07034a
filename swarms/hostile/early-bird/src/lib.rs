//! Hostile test guest: asks for a credential and fetches a URL while it is
//! being loaded, before any task runs, from its `describe` export. It
//! reports what it got as its two task types, `credential-<outcome>` then
//! `fetch-<outcome>` (`got`/`ok`, `denied`, `not-found`, ... after the
//! error variant), and logs the host's full answers.

use chassis_sdk::bindings::exports::infrafabric::chassis::task::Guest;
use chassis_sdk::bindings::infrafabric::chassis::credentials::{self, CredentialError};
use chassis_sdk::bindings::infrafabric::chassis::http_proxy::{self, ProxyError};
use chassis_sdk::bindings::infrafabric::chassis::log::{Level, log};
use chassis_sdk::bindings::infrafabric::chassis::types::{TaskError, TaskRequest};

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
        let credential = credentials::get("api_key");
        log(
            Level::Info,
            &format!("credential while loading: {credential:?}"),
        );
        let fetched = http_proxy::fetch(&request);
        log(Level::Info, &format!("fetch while loading: {fetched:?}"));
        let credential = match credential {
            Ok(_) => "got",
            Err(CredentialError::Denied(_)) => "denied",
            Err(CredentialError::NotFound(_)) => "not-found",
            Err(CredentialError::Unsupported(_)) => "unsupported",
            Err(CredentialError::RateLimited(_)) => "rate-limited",
        };
        let fetched = match fetched {
            Ok(_) => "ok",
            Err(ProxyError::Denied(_)) => "denied",
            Err(_) => "failed",
        };
        vec![
            format!("credential-{credential}"),
            format!("fetch-{fetched}"),
        ]
    }

    fn execute(request: TaskRequest) -> Result<String, TaskError> {
        Err(TaskError::UnknownTaskType(request.task_type))
    }
}

chassis_sdk::bindings::__export_swarm_world!(EarlyBird with_types_in chassis_sdk::bindings);
