//! `infrafabric:chassis/credentials`: secrets scoped to the calling swarm.
//!
//! A call succeeds only when the key is in the swarm's
//! `security.scoped_credentials`, a value exists for that swarm, and a task
//! is running (not while the swarm is being loaded). Signing keys
//! (`ed25519:` values) never leave the host: `sign` and `public-key` use
//! them, `get` refuses them. Every decision is recorded with the key name
//! only (redacted of the swarm's secret values, escaped and bounded, as all
//! guest text): each refusal, each `sign` and `inject`, and each task's
//! first `get` or `public-key` of a key as a `CredentialAccess` event,
//! raised before anything is handed over (and nothing is, when a sink
//! reports that it could not record it); the task's further `get`s or
//! `public-key`s of it counted, and raised as one `CredentialRepeated`
//! event when the task's store is dropped. A request
//! for a key outside the contract's scope is a security violation.

use std::collections::HashMap;

use crate::LoadError;
use crate::bindings::credentials::{CredentialError, Host};
use crate::contract::ServiceContract;
use crate::error::Error;
use crate::events::Event;
use crate::imports::scope::{Grant, Scoped};
use crate::secrets::{Redactor, Secret, SecretStore};

/// The operations whose repeated grants in a task are counted rather than
/// recorded one by one: those that hand the task what it already holds.
const COUNTED_REPEATS: [&str; 2] = ["get", "public-key"];

/// Longest credential name kept in an event or a message, in bytes.
const MAX_RECORDED_NAME_BYTES: usize = 256;

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

/// The credentials capability of one swarm: the keys its contract scopes
/// to it and the values of those that exist (only those).
pub(crate) struct CredentialsState {
    /// Each scoped key with its name as recorded (escaped and bounded once,
    /// here, rather than on every call).
    scoped: Vec<(String, String)>,
    secrets: HashMap<String, Secret>,
}

impl CredentialsState {
    /// Pick `contract`'s scoped credentials from the environment
    /// (`CHASSIS_SECRET__<SWARM>__<KEY>`, first) and `store`. A signing key
    /// that cannot be used is refused now, not on first use.
    pub(crate) fn new(contract: &ServiceContract, store: &SecretStore) -> Result<Self, Error> {
        let id = contract.swarm_id.as_str();
        let keys = &contract.security.scoped_credentials;
        let mut env = SecretStore::new();
        env.add_env(keys.iter().map(|k| (id, k.as_str())));
        let mut secrets = HashMap::new();
        for key in keys {
            if let Some(value) = env.get(id, key).or_else(|| store.get(id, key)) {
                if let Some(Err(reason)) = value.signing_key() {
                    return Err(Error::Load(LoadError::BadSecret {
                        swarm_id: id.to_string(),
                        key: key.clone(),
                        reason,
                    }));
                }
                secrets.insert(key.clone(), value.clone());
            }
        }
        let scoped = keys
            .iter()
            .map(|k| (k.clone(), crate::text::escape(k, MAX_RECORDED_NAME_BYTES)))
            .collect();
        Ok(Self { scoped, secrets })
    }

    /// A redactor for these values, for everything the swarm writes.
    pub(crate) fn redactor(&self) -> Redactor {
        Redactor::new(self.secrets.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// Check scope, presence and task; record the decision; hand back the
    /// secret. `op` names the operation in the event (`get`, `sign`,
    /// `public-key`, or `inject` for the HTTP proxy's credential header).
    ///
    /// A key granted again for `get` or `public-key` within a task is only
    /// counted ([`CredentialsState::record_repeats`] records the count when
    /// the task ends): the first grant's record already shows that the task
    /// holds what those hand over. Each `sign` (of a message the guest
    /// chooses) and each `inject` (into a request whose own record does not
    /// name the credential) is recorded every time.
    pub(crate) fn scoped_secret(
        &self,
        scoped: &mut Scoped<'_>,
        op: &'static str,
        name: &str,
    ) -> Result<&Secret, CredentialError> {
        let in_scope = self.scoped.iter().position(|(k, _)| k == name);
        let counted = COUNTED_REPEATS.contains(&op);
        if let Some(index) = in_scope
            && counted
            && scoped.in_task()
            && let Some(grant) = scoped
                .task
                .grants
                .iter_mut()
                .find(|g| g.key == index && g.operation == op)
            && let Some(secret) = self.secrets.get(name)
        {
            grant.repeats += 1;
            return Ok(secret);
        }
        // A name in scope is the contract's own text, only escaped; any
        // other name is guest text, which may hold a secret value of the
        // swarm: redacted, escaped and bounded.
        let key = match in_scope {
            Some(index) => self.scoped[index].1.clone(),
            None => scoped.guest_text(name, "credential_name", MAX_RECORDED_NAME_BYTES),
        };
        let (result, violation) = if !scoped.in_task() {
            (
                Err(CredentialError::Denied(
                    "credentials are only available while a task runs".to_string(),
                )),
                false,
            )
        } else if in_scope.is_none() {
            (
                Err(CredentialError::Denied(format!(
                    "{key:?} is not in this swarm's scoped_credentials"
                ))),
                true,
            )
        } else {
            match self.secrets.get(name) {
                Some(secret) => (Ok(secret), false),
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
                tracing::debug!(target: "chassis::credentials", swarm = scoped.swarm_id(), task = scoped.task_id(), "credential {op} allowed: {key:?}")
            }
            Some(why) => {
                tracing::warn!(target: "chassis::credentials", swarm = scoped.swarm_id(), task = scoped.task_id(), "credential {op} denied: {why}")
            }
        }
        let allowed = reason.is_none();
        scoped.swarm.events.emit(|| Event::CredentialAccess {
            swarm_id: scoped.swarm_id().to_string(),
            task_id: scoped.task_id().to_string(),
            key,
            operation: op.to_string(),
            allowed,
            reason,
            security_violation: violation,
        });
        if violation {
            scoped.violation();
        }
        // A grant whose record could not be written is not handed over
        // (under `fsync = "always"` the write has been waited for).
        if allowed && let Some(why) = scoped.swarm.events.failure() {
            tracing::error!(target: "chassis::credentials", swarm = scoped.swarm_id(), task = scoped.task_id(), "credential {op} withheld: {why}");
            return Err(CredentialError::Denied(
                "the audit log cannot record this grant".to_string(),
            ));
        }
        // Only a grant on record is counted from now on.
        if allowed && let Some(key) = in_scope.filter(|_| counted) {
            scoped.task.grants.push(Grant {
                key,
                operation: op,
                repeats: 0,
            });
        }
        result
    }

    /// Record, for each credential the task was granted more than once for
    /// an operation, how many times after the first. Called as the task's
    /// store is dropped, before its terminal record.
    pub(crate) fn record_repeats(&self, scoped: &Scoped<'_>) {
        for grant in scoped.task.grants.iter().filter(|g| g.repeats > 0) {
            scoped.swarm.events.emit(|| Event::CredentialRepeated {
                swarm_id: scoped.swarm_id().to_string(),
                task_id: scoped.task_id().to_string(),
                key: self.scoped[grant.key].1.clone(),
                operation: grant.operation.to_string(),
                repeats: grant.repeats,
            });
        }
    }
}

/// One task's view of the credentials capability.
pub(crate) struct CredentialsHost<'a> {
    pub(crate) credentials: &'a CredentialsState,
    pub(crate) scoped: Scoped<'a>,
}

impl CredentialsHost<'_> {
    async fn credential(
        &mut self,
        op: Op,
        name: &str,
        message: &[u8],
    ) -> wasmtime::Result<Result<Vec<u8>, CredentialError>> {
        if !self.scoped.admit_call("credentials")? {
            return Ok(Err(CredentialError::RateLimited(
                "over max_api_calls_per_second".to_string(),
            )));
        }
        let secret = match self
            .credentials
            .scoped_secret(&mut self.scoped, op.name(), name)
        {
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

impl Host for CredentialsHost<'_> {
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

crate::imports::scope::linker_for!(credentials, CredentialsHost);
