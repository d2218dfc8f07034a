//! `infrafabric:chassis/credentials`: secrets scoped to the calling swarm.
//!
//! A call succeeds only when the key is in the swarm's
//! `security.scoped_credentials`, a value exists for that swarm, and a task
//! is running (not while the swarm is being loaded). Signing keys
//! (`ed25519:` values) never leave the host: `sign` and `public-key` use
//! them, `get` refuses them. Every decision raises a `CredentialAccess`
//! event with the key name only; a request for a key outside the contract's
//! scope is a security violation.

use crate::bindings::credentials::{CredentialError, Host};
use crate::events::Event;
use crate::secrets::Secret;
use crate::state::HostState;

/// One credential operation.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Sign,
    PublicKey,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Sign => "sign",
            Op::PublicKey => "public-key",
        }
    }
}

impl HostState {
    /// Check scope, presence and task; record the decision; hand back the secret.
    pub(crate) fn scoped_secret(
        &mut self,
        op: &str,
        name: &str,
    ) -> Result<Secret, CredentialError> {
        let key = crate::text::escape(name, 256);
        let (result, violation) = if !self.in_task {
            (
                Err(CredentialError::Denied(
                    "credentials are only available while a task runs".to_string(),
                )),
                false,
            )
        } else if !self
            .contract()
            .security
            .scoped_credentials
            .iter()
            .any(|k| k == name)
        {
            (
                Err(CredentialError::Denied(format!(
                    "{key:?} is not in this swarm's scoped_credentials"
                ))),
                true,
            )
        } else {
            match self.swarm.secrets.get(name) {
                Some(secret) => (Ok(secret.clone()), false),
                None => (
                    Err(CredentialError::NotFound(format!(
                        "no value for {key:?} is configured for this swarm"
                    ))),
                    false,
                ),
            }
        };
        let reason = result.as_ref().err().map(describe);
        match &reason {
            None => {
                tracing::debug!(target: "chassis::credentials", swarm = self.swarm_id(), task = &*self.task_id, "credential {op} allowed: {key:?}")
            }
            Some(why) => {
                tracing::warn!(target: "chassis::credentials", swarm = self.swarm_id(), task = &*self.task_id, "credential {op} denied: {why}")
            }
        }
        self.swarm.events.emit(|| Event::CredentialAccess {
            swarm_id: self.swarm_id().to_string(),
            task_id: self.task_id.to_string(),
            key: key.clone(),
            operation: op.to_string(),
            allowed: reason.is_none(),
            reason: reason.clone(),
            security_violation: violation,
        });
        if violation {
            self.security_violations += 1;
            self.swarm.security_violation(&self.task_id);
        }
        result
    }

    async fn credential(
        &mut self,
        op: Op,
        name: &str,
        message: &[u8],
    ) -> wasmtime::Result<Result<Vec<u8>, CredentialError>> {
        if !self.admit_call("credentials")? {
            return Ok(Err(CredentialError::RateLimited(
                "over max_api_calls_per_second".to_string(),
            )));
        }
        let secret = match self.scoped_secret(op.name(), name) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match (op, secret.signing_key()) {
            (Op::Get, None) => Ok(secret.expose().as_bytes().to_vec()),
            (Op::Get, Some(_)) => Err(CredentialError::Unsupported(
                "this credential is a signing key: use sign or public-key; it never leaves the host".to_string(),
            )),
            (Op::Sign | Op::PublicKey, None) => Err(CredentialError::Unsupported(
                "this credential is not an Ed25519 signing key".to_string(),
            )),
            (_, Some(Err(why))) => Err(CredentialError::Unsupported(why)),
            (Op::Sign, Some(Ok(key))) => {
                use ed25519_dalek::Signer;
                Ok(key.sign(message).to_bytes().to_vec())
            }
            (Op::PublicKey, Some(Ok(key))) => Ok(key.verifying_key().to_bytes().to_vec()),
        })
    }
}

fn describe(e: &CredentialError) -> String {
    match e {
        CredentialError::Denied(m) => format!("denied: {m}"),
        CredentialError::NotFound(m) => format!("not found: {m}"),
        CredentialError::Unsupported(m) => format!("unsupported: {m}"),
        CredentialError::RateLimited(m) => format!("rate limited: {m}"),
    }
}

impl Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, CredentialError>> {
        Ok(self
            .credential(Op::Get, &name, &[])
            .await?
            .map(|bytes| String::from_utf8(bytes).unwrap_or_default()))
    }

    async fn sign(
        &mut self,
        name: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, CredentialError>> {
        self.credential(Op::Sign, &name, &message).await
    }

    async fn public_key(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Vec<u8>, CredentialError>> {
        self.credential(Op::PublicKey, &name, &[]).await
    }
}
