//! `infrafabric:chassis/credentials`: linked so components that import it can
//! be instantiated, but this host has no secret store yet, so every call is
//! refused with `credential-error::denied`. The load-time check still refuses
//! the import outright for a swarm whose contract scopes no credentials.

use crate::bindings::credentials::{CredentialError, Host};
use crate::state::HostState;

/// Text of every refusal, so guests and operators can tell why.
pub const NOT_AVAILABLE: &str =
    "credentials are not available in this host: no secret store is configured";

impl Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, CredentialError>> {
        Ok(Err(deny(self, "get", &name)?))
    }

    async fn sign(
        &mut self,
        name: String,
        _message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, CredentialError>> {
        Ok(Err(deny(self, "sign", &name)?))
    }

    async fn public_key(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Vec<u8>, CredentialError>> {
        Ok(Err(deny(self, "public-key", &name)?))
    }
}

fn deny(state: &mut HostState, op: &str, name: &str) -> wasmtime::Result<CredentialError> {
    if !state.admit_call("credentials")? {
        return Ok(CredentialError::RateLimited(
            "over max_api_calls_per_second".to_string(),
        ));
    }
    let key = crate::imports::log::sanitize(name);
    tracing::warn!(
        target: "chassis::credentials",
        swarm = state.swarm_id(),
        task = &*state.task_id,
        "credential {op} denied: {key:?}: {NOT_AVAILABLE}"
    );
    Ok(CredentialError::Denied(NOT_AVAILABLE.to_string()))
}
