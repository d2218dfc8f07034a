//! `api-client`: calls an HTTP API through the host's proxy with an API
//! token the host injects; the swarm never sees the token.
//!
//! - `fetch_json` `{"url", "method"?, "body"?}` → `{"status", "json"}` (or
//!   `"text"` when the body is not JSON). The request carries
//!   `Authorization: Bearer <api_token>`, added by the host from the
//!   swarm's scoped credential `api_token`.

use chassis_sdk::http::{self, CredentialHeader, Header};
use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, info, json};
use serde::Deserialize;

/// The swarm.
pub struct ApiClient;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fetch {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    body: Option<Value>,
}

fn get() -> String {
    "GET".to_string()
}

impl Swarm for ApiClient {
    const TASK_TYPES: &'static [&'static str] = &["fetch_json"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        let p: Fetch = request.payload()?;
        let mut req = http::get(&p.url);
        req.method = p.method.to_ascii_uppercase();
        if let Some(body) = &p.body {
            req.body = body.to_string().into_bytes();
            req.headers.push(Header {
                name: "content-type".to_string(),
                value: "application/json".to_string(),
            });
        }
        req.credential_header = Some(CredentialHeader {
            header: "authorization".to_string(),
            credential: "api_token".to_string(),
            prefix: "Bearer ".to_string(),
        });
        info!("{} {}", req.method, p.url);
        let resp = http::fetch(&req)?;
        Ok(match serde_json::from_slice::<Value>(&resp.body) {
            Ok(v) => json!({ "status": resp.status, "json": v }),
            Err(_) => json!({ "status": resp.status, "text": String::from_utf8_lossy(&resp.body) }),
        })
    }
}

export_swarm!(ApiClient);
