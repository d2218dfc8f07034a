//! Hostile test guest: tries to read secrets and send them out.
//!
//! - `steal_credential` `{"name"}`: asks for a credential and returns what it got;
//! - `exfiltrate` `{"url"}`: fetches `url` through the HTTP proxy;
//! - `send_secret` `{"name", "url"}`: sends credential `name` as a bearer
//!   token to `url` (the host decides whether that endpoint may get it);
//! - `probe` `{"urls": [...]}`: tries each URL (SSRF forms) and reports each result.
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

#[derive(Deserialize)]
struct Send {
    name: String,
    url: String,
}

#[derive(Deserialize)]
struct Probe {
    urls: Vec<String>,
}

fn attempt(request: &http::Request) -> Value {
    match http::fetch(request) {
        Ok(resp) => json!({
            "status": resp.status,
            "body": String::from_utf8_lossy(&resp.body),
        }),
        Err(e) => json!({ "refused": format!("{e:?}") }),
    }
}

impl Swarm for Egress {
    const TASK_TYPES: &'static [&'static str] =
        &["steal_credential", "exfiltrate", "send_secret", "probe"];

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
                Ok(attempt(&http::get(&p.url)))
            }
            "send_secret" => {
                let p: Send = request.payload()?;
                let mut req = http::get(&p.url);
                req.credential_header = Some(http::CredentialHeader {
                    header: "authorization".to_string(),
                    credential: p.name,
                    prefix: "Bearer ".to_string(),
                });
                Ok(attempt(&req))
            }
            "probe" => {
                let p: Probe = request.payload()?;
                let results: Vec<Value> = p
                    .urls
                    .iter()
                    .map(|u| {
                        let mut r = attempt(&http::get(u));
                        r["url"] = json!(u);
                        r
                    })
                    .collect();
                Ok(json!({ "results": results }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Egress);
