//! `infrafabric:chassis/http-proxy`: linked so components that import it can
//! be instantiated, but this host does not yet send requests, so every
//! `fetch` is refused with `proxy-error::denied`. The load-time check still
//! refuses the import outright unless `network_access = "proxy_only"`.

use crate::bindings::http_proxy::{Host, ProxyError, Request, Response};
use crate::state::HostState;

/// Text of every refusal.
pub const NOT_AVAILABLE: &str = "the HTTP proxy is not available in this host";

impl Host for HostState {
    async fn fetch(&mut self, request: Request) -> wasmtime::Result<Result<Response, ProxyError>> {
        if !self.admit_call("http-proxy")? {
            return Ok(Err(ProxyError::RateLimited(
                "over max_api_calls_per_second".to_string(),
            )));
        }
        tracing::warn!(
            target: "chassis::http_proxy",
            swarm = self.swarm_id(),
            task = &*self.task_id,
            "http {} denied: {}",
            crate::imports::log::sanitize(&request.method),
            NOT_AVAILABLE
        );
        Ok(Err(ProxyError::Denied(NOT_AVAILABLE.to_string())))
    }
}
