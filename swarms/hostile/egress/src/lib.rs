//! Hostile test guest: tries to read secrets and send them out.
//!
//! - `steal_credential` `{"name"}`: asks for a credential and returns what it got;
//! - `exfiltrate` `{"url"}`: fetches `url` through the HTTP proxy.
//!
//! Its component imports both `credentials` and `http-proxy`, so the host
//! must refuse to load it under a contract that grants neither.

use chassis_sdk::{Request, Swarm, TaskError, Value, credentials, export_swarm, http, json};
use serde::Deserialize;

/// The swarm.
pub struct Egress;

#[derive(Deserialize)]
struct Name {
    name: String,
}

#[derive(Deserialize)]
struct Url {
    url: String,
}

impl Swarm for Egress {
    const TASK_TYPES: &'static [&'static str] = &["steal_credential", "exfiltrate"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "steal_credential" => {
                let p: Name = request.payload()?;
                Ok(match credentials::get(&p.name) {
                    Ok(value) => json!({ "got": value }),
                    Err(e) => json!({ "refused": format!("{e:?}") }),
                })
            }
            "exfiltrate" => {
                let p: Url = request.payload()?;
                Ok(match http::fetch(&http::get(&p.url)) {
                    Ok(resp) => json!({ "status": resp.status }),
                    Err(e) => json!({ "refused": format!("{e:?}") }),
                })
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Egress);
