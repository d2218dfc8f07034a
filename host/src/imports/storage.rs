//! `infrafabric:chassis/storage`: objects a swarm keeps between tasks, in
//! its own namespace of the host's [`Store`].
//!
//! A call goes through, in order: a running task (not the `describe` call
//! at load); the call rate (`max_api_calls_per_second`, shared with the
//! other imports); the grant (`storage.access`; a write under `read_only`
//! is `denied`); the name ([`names::check`]: a name that tries to leave
//! the namespace is refused and is a security violation); then the store,
//! within the task's deadline, which keeps the contract's quota exact.
//! The namespace is the swarm's id: no call names another.
//!
//! Every operation, done or refused, raises one `StorageAccess` event with
//! the operation, the name (guest text: the swarm's secret values
//! redacted, escaped and bounded), the bytes read or written and why it
//! was refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::LoadError;
use crate::bindings::storage::{Host, KeyResponse, ObjectInfo, StorageError, UsageInfo};
use crate::contract::{ServiceContract, StorageAccess};
use crate::error::Error;
use crate::events::Event;
use crate::imports::scope::Scoped;
use crate::storage::{MAX_LIST, Quota, Store, StoreError, names};

/// Longest name kept in an event or a message, in bytes (room for escapes).
const MAX_RECORDED_NAME_BYTES: usize = 512;

/// The storage capability of one swarm: its grant, its quota and the
/// host's store.
pub(crate) struct StorageState {
    access: StorageAccess,
    quota: Quota,
    store: Option<Arc<dyn Store>>,
}

impl StorageState {
    /// The state for `contract` over the host's store; a contract that
    /// grants storage on a host without one is refused.
    pub(crate) fn new(
        contract: &ServiceContract,
        store: Option<&Arc<dyn Store>>,
    ) -> Result<Self, Error> {
        let access = contract.storage.access;
        if access != StorageAccess::None && store.is_none() {
            return Err(Error::Load(LoadError::NoStore {
                swarm_id: contract.swarm_id.clone(),
            }));
        }
        Ok(Self {
            access,
            quota: contract.storage.quota(),
            store: store.cloned(),
        })
    }
}

/// One task's view of its swarm's store.
pub(crate) struct StorageHost<'a> {
    pub(crate) storage: &'a StorageState,
    pub(crate) scoped: Scoped<'a>,
    /// The task's deadline: no operation outlasts it.
    pub(crate) deadline: Instant,
    /// Time the task spent waiting on the store (not its CPU time).
    pub(crate) waiting: &'a mut Duration,
}

/// What one operation recorded.
struct Record {
    name: String,
    bytes: u64,
    violation: bool,
}

/// One call as the guest made it: what the import checks before the store.
struct Call<'a> {
    /// The WIT operation (`get`, `set`, ...).
    operation: &'static str,
    /// The name, or the listing's prefix (empty for `usage`).
    name: &'a str,
    /// How `name` is checked.
    check: Check<'a>,
    /// Bytes it writes.
    size: u64,
}

impl<'a> Call<'a> {
    /// An operation on the object `name`.
    fn on(operation: &'static str, name: &'a str) -> Self {
        Call {
            operation,
            name,
            check: Check::Name,
            size: 0,
        }
    }
}

/// What a call's argument is checked as.
#[derive(Clone, Copy)]
enum Check<'a> {
    /// An object name.
    Name,
    /// A listing's prefix, and the cursor it was given (a name the host
    /// handed out).
    Prefix(Option<&'a str>),
    /// Nothing (`usage`).
    Nothing,
}

/// Whether an operation writes.
fn writes(operation: &str) -> bool {
    matches!(operation, "set" | "delete")
}

/// Most bytes of a name the host looks at to record it (a name is at most
/// 256 bytes; a longer one is refused, and recorded cut).
const MAX_SCANNED_NAME_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl StorageHost<'_> {
    /// Check the call, run `op` on the store, and record it: one event
    /// for every call, done or refused.
    async fn call<T>(
        &mut self,
        call: Call<'_>,
        op: impl for<'s> FnOnce(&'s dyn Store, &'s str) -> crate::storage::StoreFuture<'s, T>,
        bytes_of: impl FnOnce(&T) -> u64,
    ) -> wasmtime::Result<Result<T, StorageError>> {
        let mut rec = Record {
            name: self.scoped.guest_text(
                cut(call.name, MAX_SCANNED_NAME_BYTES),
                "storage_name",
                MAX_RECORDED_NAME_BYTES,
            ),
            bytes: 0,
            violation: false,
        };
        let operation = call.operation;
        let result = match self.run(&call, op, &mut rec).await {
            Ok(result) => result,
            Err(abuse) => {
                // The task ends here (it kept calling over its rate): the
                // call is recorded all the same.
                self.record(
                    operation,
                    &rec,
                    Some("rate-limited: the task was ended".into()),
                );
                return Err(abuse);
            }
        };
        if let Ok(value) = &result {
            rec.bytes = bytes_of(value);
        }
        if rec.violation {
            self.scoped.violation();
        }
        let reason = result.as_ref().err().map(describe);
        if let Some(why) = &reason {
            if rec.violation {
                tracing::warn!(target: "chassis::storage", swarm = self.scoped.swarm_id(), task = self.scoped.task_id(), "{operation} {:?}: {why}", rec.name);
            } else {
                tracing::debug!(target: "chassis::storage", swarm = self.scoped.swarm_id(), task = self.scoped.task_id(), "{operation} {:?}: {why}", rec.name);
            }
        }
        self.record(operation, &rec, reason);
        Ok(result)
    }

    fn record(&self, operation: &str, rec: &Record, reason: Option<String>) {
        self.scoped.swarm.events.emit(|| Event::StorageAccess {
            swarm_id: self.scoped.swarm_id().to_string(),
            task_id: self.scoped.task_id().to_string(),
            operation: operation.to_string(),
            name: rec.name.clone(),
            allowed: reason.is_none(),
            bytes: rec.bytes,
            reason: reason.clone(),
            security_violation: rec.violation,
        });
    }

    async fn run<T>(
        &mut self,
        call: &Call<'_>,
        op: impl for<'s> FnOnce(&'s dyn Store, &'s str) -> crate::storage::StoreFuture<'s, T>,
        rec: &mut Record,
    ) -> wasmtime::Result<Result<T, StorageError>> {
        let Call {
            operation,
            name,
            check,
            size,
        } = *call;
        if !self.scoped.in_task() {
            return Ok(Err(StorageError::Denied(
                "storage serves tasks, not the describe call at load".into(),
            )));
        }
        if !self.scoped.admit_call("storage")? {
            return Ok(Err(StorageError::RateLimited(
                "over max_api_calls_per_second".into(),
            )));
        }
        let store = match (&self.storage.store, self.storage.access) {
            (Some(store), StorageAccess::ReadOnly | StorageAccess::ReadWrite) => store.clone(),
            _ => {
                return Ok(Err(StorageError::Denied(
                    "the contract grants no storage (storage.access = \"none\")".into(),
                )));
            }
        };
        if writes(operation) && self.storage.access == StorageAccess::ReadOnly {
            return Ok(Err(StorageError::Denied(
                "the contract grants reading only (storage.access = \"read_only\")".into(),
            )));
        }
        let checked = match check {
            Check::Name => names::check(name),
            Check::Prefix(cursor) => {
                names::check_prefix(name).and_then(|()| cursor.map_or(Ok(()), names::check))
            }
            Check::Nothing => Ok(()),
        };
        if let Err(problem) = checked {
            rec.violation = problem.is_escape();
            let what = if problem.is_escape() {
                "a name outside the swarm's namespace"
            } else {
                "not an object name"
            };
            let whose = match check {
                Check::Prefix(Some(_)) => "the prefix or the cursor",
                _ => "the name",
            };
            return Ok(Err(StorageError::InvalidName(format!(
                "{whose} {:?}: {what}: {}",
                rec.name,
                problem.reason()
            ))));
        }
        if size > self.storage.quota.max_object_bytes {
            return Ok(Err(StorageError::TooLarge(
                StoreError::TooLarge {
                    size,
                    max: self.storage.quota.max_object_bytes,
                }
                .to_string(),
            )));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(StorageError::Unavailable(
                "the task's deadline has passed; nothing was done".into(),
            )));
        }
        let namespace = self.scoped.swarm_id().to_string();
        let started = Instant::now();
        let done = tokio::time::timeout(left, op(store.as_ref(), &namespace)).await;
        *self.waiting += started.elapsed();
        Ok(match done {
            Err(_) => Err(StorageError::Unavailable(if writes(operation) {
                "the store did not answer within the task's deadline; the write may still be made"
                    .into()
            } else {
                "the store did not answer within the task's deadline".into()
            })),
            Ok(Err(e)) => Err(match e {
                StoreError::Quota { .. } => StorageError::QuotaExceeded(e.to_string()),
                StoreError::TooLarge { .. } => StorageError::TooLarge(e.to_string()),
                StoreError::Unavailable(detail) => {
                    // Paths and system errors stay in the host's log.
                    tracing::error!(target: "chassis::storage", swarm = self.scoped.swarm_id(), task = self.scoped.task_id(), "{operation}: {detail}");
                    StorageError::Unavailable(
                        "the host's object store failed (the host's log says why)".into(),
                    )
                }
            }),
            Ok(Ok(value)) => Ok(value),
        })
    }
}

/// A refusal as the record's reason.
fn describe(e: &StorageError) -> String {
    let (kind, message) = match e {
        StorageError::Denied(m) => ("denied", m),
        StorageError::InvalidName(m) => ("invalid-name", m),
        StorageError::QuotaExceeded(m) => ("quota-exceeded", m),
        StorageError::TooLarge(m) => ("too-large", m),
        StorageError::RateLimited(m) => ("rate-limited", m),
        StorageError::Unavailable(m) => ("unavailable", m),
    };
    format!("{kind}: {message}")
}

impl Host for StorageHost<'_> {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, StorageError>> {
        let key = name.clone();
        self.call(
            Call::on("get", &name),
            move |store, ns| Box::pin(async move { store.get(ns, &key).await }),
            |value| value.as_ref().map_or(0, |v| v.len() as u64),
        )
        .await
    }

    async fn set(
        &mut self,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StorageError>> {
        let key = name.clone();
        let quota = self.storage.quota;
        let size = value.len() as u64;
        self.call(
            Call {
                size,
                ..Call::on("set", &name)
            },
            move |store, ns| Box::pin(async move { store.set(ns, &key, value, quota).await }),
            move |_| size,
        )
        .await
    }

    async fn delete(&mut self, name: String) -> wasmtime::Result<Result<(), StorageError>> {
        let key = name.clone();
        self.call(
            Call::on("delete", &name),
            move |store, ns| Box::pin(async move { store.delete(ns, &key).await.map(|_| ()) }),
            |_| 0,
        )
        .await
    }

    async fn exists(&mut self, name: String) -> wasmtime::Result<Result<bool, StorageError>> {
        let key = name.clone();
        self.call(
            Call::on("exists", &name),
            move |store, ns| {
                Box::pin(async move { store.stat(ns, &key).await.map(|i| i.is_some()) })
            },
            |_| 0,
        )
        .await
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<KeyResponse, StorageError>> {
        let limit = match limit as usize {
            0 => MAX_LIST,
            n => n.min(MAX_LIST),
        };
        let key = prefix.clone();
        let after = cursor.clone();
        self.call(
            Call {
                check: Check::Prefix(cursor.as_deref()),
                ..Call::on("list-keys", &prefix)
            },
            move |store, ns| {
                Box::pin(async move {
                    let page = store.list(ns, &key, after.as_deref(), limit).await?;
                    Ok(KeyResponse {
                        keys: page.keys,
                        cursor: page.cursor,
                    })
                })
            },
            |_| 0,
        )
        .await
    }

    async fn stat(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Option<ObjectInfo>, StorageError>> {
        let key = name.clone();
        self.call(
            Call::on("stat", &name),
            move |store, ns| {
                Box::pin(async move {
                    Ok(store.stat(ns, &key).await?.map(|i| ObjectInfo {
                        size: i.size,
                        modified_ms: i.modified_ms,
                    }))
                })
            },
            |_| 0,
        )
        .await
    }

    async fn usage(&mut self) -> wasmtime::Result<Result<UsageInfo, StorageError>> {
        let quota = self.storage.quota;
        let read_only = self.storage.access == StorageAccess::ReadOnly;
        self.call(
            Call {
                check: Check::Nothing,
                ..Call::on("usage", "")
            },
            move |store, ns| {
                Box::pin(async move {
                    let used = store.usage(ns).await?;
                    Ok(UsageInfo {
                        bytes: used.bytes,
                        objects: used.objects,
                        max_bytes: quota.max_bytes,
                        max_objects: quota.max_objects,
                        max_object_bytes: quota.max_object_bytes,
                        read_only,
                    })
                })
            },
            |_| 0,
        )
        .await
    }
}

crate::imports::scope::linker_for!(storage, StorageHost);
