//! `chassis-sdk`: write an IF.chassis swarm in plain Rust.
//!
//! A swarm is a WebAssembly component that the chassis host runs under a
//! service contract. With this crate a swarm is a type implementing
//! [`Swarm`] plus one [`export_swarm!`] line; the crate generates the
//! component bindings from the `infrafabric:chassis` WIT package, turns the
//! host's JSON payload into your types ([`Request::payload`]) and your result
//! back into JSON.
//!
//! Data flow of one task: the host calls the component's `execute` export
//! with a [`Request`]; the SDK checks the task type against
//! [`Swarm::TASK_TYPES`] and calls [`Swarm::execute`]; the `Ok` value is
//! serialized to JSON and returned, an `Err` becomes the WIT `task-error`.
//! Imports (logging, credentials, HTTP proxy, object storage) are plain
//! functions in [`log`], [`credentials`], [`http`] and [`storage`]; a
//! component only imports what it
//! calls, and the host refuses at load time any import its contract does not
//! grant.
//!
//! ```no_run
//! use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, info, json};
//! use serde::Deserialize;
//!
//! struct Greeter;
//!
//! #[derive(Deserialize)]
//! struct Hello {
//!     name: String,
//! }
//!
//! impl Swarm for Greeter {
//!     const TASK_TYPES: &'static [&'static str] = &["hello"];
//!
//!     fn execute(request: &Request) -> Result<Value, TaskError> {
//!         let hello: Hello = request.payload()?;
//!         info!("greeting {}", hello.name);
//!         Ok(json!({ "greeting": format!("Hello, {}!", hello.name) }))
//!     }
//! }
//!
//! export_swarm!(Greeter);
//! # fn main() {}
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`: the output is
//! a component, ready for `chassis run`.

extern crate self as chassis_sdk;

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_json::{Value, json};

/// Generated bindings for the `infrafabric:chassis` `swarm` world.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "swarm",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_swarm_world",
        default_bindings_module: "::chassis_sdk::bindings",
        runtime_path: "::chassis_sdk::__private::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    pub use crate::Adapter;
}

use bindings::exports::infrafabric::chassis::task::Guest;
use bindings::infrafabric::chassis::types;

/// Why a task failed. Returned from [`Swarm::execute`]; the host reports it
/// as the task's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// The swarm does not serve this task type.
    UnknownTaskType(String),
    /// The payload was not what the task type expects.
    InvalidPayload(String),
    /// The task ran and failed.
    Failed(String),
}

impl TaskError {
    /// A [`TaskError::Failed`] with this message.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        TaskError::Failed(message.to_string())
    }

    /// A [`TaskError::InvalidPayload`] with this message.
    pub fn invalid_payload(message: impl std::fmt::Display) -> Self {
        TaskError::InvalidPayload(message.to_string())
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::UnknownTaskType(m) => write!(f, "unknown task type: {m}"),
            TaskError::InvalidPayload(m) => write!(f, "invalid payload: {m}"),
            TaskError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for TaskError {}

impl From<TaskError> for types::TaskError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::UnknownTaskType(m) => types::TaskError::UnknownTaskType(m),
            TaskError::InvalidPayload(m) => types::TaskError::InvalidPayload(m),
            TaskError::Failed(m) => types::TaskError::Failed(m),
        }
    }
}

/// One task handed to the swarm.
#[derive(Debug, Clone)]
pub struct Request {
    task_id: String,
    task_type: String,
    payload: String,
}

impl Request {
    /// Build a request by hand (for unit tests of a swarm's logic).
    pub fn new(
        task_id: impl Into<String>,
        task_type: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self {
            task_id: task_id.into(),
            task_type: task_type.into(),
            payload: payload.into(),
        }
    }

    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The task's type (one of [`Swarm::TASK_TYPES`]).
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The payload as JSON text.
    pub fn raw_payload(&self) -> &str {
        &self.payload
    }

    /// The payload deserialized into `T`; a mismatch is
    /// [`TaskError::InvalidPayload`] with serde's message (field, line, column).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| TaskError::InvalidPayload(format!("{}: {e}", self.task_type)))
    }
}

/// Serialize any value into the JSON a task returns.
pub fn to_value<T: Serialize>(value: &T) -> Result<Value, TaskError> {
    serde_json::to_value(value).map_err(|e| TaskError::Failed(format!("serializing result: {e}")))
}

/// A swarm: the task types it serves and how it runs one.
pub trait Swarm {
    /// Task types this swarm serves; the host refuses others before calling.
    const TASK_TYPES: &'static [&'static str];

    /// Run one task. `request.task_type()` is one of [`Self::TASK_TYPES`].
    fn execute(request: &Request) -> Result<Value, TaskError>;
}

/// Bridges a [`Swarm`] to the generated `task` export. Used by [`export_swarm!`].
#[doc(hidden)]
pub struct Adapter<S>(PhantomData<S>);

impl<S: Swarm> Guest for Adapter<S> {
    fn describe() -> Vec<String> {
        S::TASK_TYPES.iter().map(|t| t.to_string()).collect()
    }

    fn execute(request: types::TaskRequest) -> Result<String, types::TaskError> {
        let request = Request {
            task_id: request.task_id,
            task_type: request.task_type,
            payload: request.payload,
        };
        if !S::TASK_TYPES.contains(&request.task_type.as_str()) {
            return Err(types::TaskError::UnknownTaskType(request.task_type));
        }
        let value = S::execute(&request)?;
        serde_json::to_string(&value)
            .map_err(|e| types::TaskError::Failed(format!("serializing result: {e}")))
    }
}

/// Export a [`Swarm`] type as this component's `task` interface.
///
/// Use once per crate, at the top level: `chassis_sdk::export_swarm!(MySwarm);`.
#[macro_export]
macro_rules! export_swarm {
    ($swarm:ty) => {
        const _: () = {
            type __ChassisSwarm = $crate::__private::Adapter<$swarm>;
    $crate::bindings::__export_swarm_world!(__ChassisSwarm with_types_in $crate::bindings);
        };
    };
}

/// Scoped logging: each line goes to the host's log, prefixed with the swarm id.
pub mod log {
    pub use crate::bindings::infrafabric::chassis::log::Level;

    /// Write one line at `level`.
    pub fn write(level: Level, message: &str) {
        crate::bindings::infrafabric::chassis::log::log(level, message);
    }
}

/// Log at `trace` level, with `format!` syntax.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Trace, &format!($($arg)*)) };
}

/// Log at `debug` level, with `format!` syntax.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &format!($($arg)*)) };
}

/// Log at `info` level, with `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Log at `warn` level, with `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Log at `error` level, with `format!` syntax.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &format!($($arg)*)) };
}

/// Scoped credentials (the names listed in the contract's
/// `security.scoped_credentials`). Values stay on the host where possible:
/// prefer [`credentials::sign`] and the HTTP proxy's credential header to
/// [`credentials::get`].
///
/// Errors are [`credentials::CredentialError`]: it prints as a sentence
/// (`credential denied: ...`) and converts into [`TaskError`], so `?` works
/// in [`Swarm::execute`].
pub mod credentials {
    use crate::bindings::infrafabric::chassis::credentials as wit;

    /// Why a credential operation was refused.
    #[derive(Clone, PartialEq, Eq)]
    pub enum CredentialError {
        /// The host refused the request (not in scope, or not available).
        Denied(String),
        /// The name is in scope but no value exists for this swarm.
        NotFound(String),
        /// The credential cannot be used this way (e.g. `sign` on a token).
        Unsupported(String),
        /// The swarm is over its `max_api_calls_per_second`.
        RateLimited(String),
    }

    impl CredentialError {
        fn parts(&self) -> (&'static str, &'static str, &str) {
            match self {
                CredentialError::Denied(m) => ("Denied", "denied", m),
                CredentialError::NotFound(m) => ("NotFound", "not found", m),
                CredentialError::Unsupported(m) => ("Unsupported", "unsupported", m),
                CredentialError::RateLimited(m) => ("RateLimited", "rate limited", m),
            }
        }
    }

    impl std::fmt::Display for CredentialError {
        /// `credential denied: <the host's reason>`.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let (_, what, message) = self.parts();
            write!(f, "credential {what}: {message}")
        }
    }

    impl std::fmt::Debug for CredentialError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let (variant, _, message) = self.parts();
            write!(f, "CredentialError::{variant}({message:?})")
        }
    }

    impl std::error::Error for CredentialError {}

    impl From<wit::CredentialError> for CredentialError {
        fn from(e: wit::CredentialError) -> Self {
            match e {
                wit::CredentialError::Denied(m) => CredentialError::Denied(m),
                wit::CredentialError::NotFound(m) => CredentialError::NotFound(m),
                wit::CredentialError::Unsupported(m) => CredentialError::Unsupported(m),
                wit::CredentialError::RateLimited(m) => CredentialError::RateLimited(m),
            }
        }
    }

    impl From<CredentialError> for crate::TaskError {
        /// A failed task whose message is the error's sentence.
        fn from(e: CredentialError) -> Self {
            crate::TaskError::Failed(e.to_string())
        }
    }

    /// The value of a scoped credential.
    pub fn get(name: &str) -> Result<String, CredentialError> {
        wit::get(name).map_err(Into::into)
    }

    /// Sign `message` with the named Ed25519 key, on the host.
    pub fn sign(name: &str, message: &[u8]) -> Result<Vec<u8>, CredentialError> {
        wit::sign(name, message).map_err(Into::into)
    }

    /// The public key of the named signing key.
    pub fn public_key(name: &str) -> Result<Vec<u8>, CredentialError> {
        wit::public_key(name).map_err(Into::into)
    }
}

/// Outbound HTTP through the host's proxy, to the contract's `allowed_endpoints`.
///
/// Errors are [`http::ProxyError`]: it prints as a sentence (`request
/// denied: ...`) and converts into [`TaskError`], so `?` works in
/// [`Swarm::execute`].
pub mod http {
    use crate::bindings::infrafabric::chassis::http_proxy as wit;
    pub use crate::bindings::infrafabric::chassis::http_proxy::{
        CredentialHeader, Header, Request, Response,
    };

    /// Why a request did not produce a response.
    #[derive(Clone, PartialEq, Eq)]
    pub enum ProxyError {
        /// The contract does not allow this request.
        Denied(String),
        /// The request itself is malformed.
        InvalidRequest(String),
        /// The request or response exceeds a size limit.
        TooLarge(String),
        /// The host's time limit for the request ran out.
        Timeout(String),
        /// The swarm is over its call or bandwidth rate.
        RateLimited(String),
        /// The connection or the exchange failed.
        Network(String),
    }

    impl ProxyError {
        fn parts(&self) -> (&'static str, &'static str, &str) {
            match self {
                ProxyError::Denied(m) => ("Denied", "denied", m),
                ProxyError::InvalidRequest(m) => ("InvalidRequest", "invalid", m),
                ProxyError::TooLarge(m) => ("TooLarge", "too large", m),
                ProxyError::Timeout(m) => ("Timeout", "timed out", m),
                ProxyError::RateLimited(m) => ("RateLimited", "rate limited", m),
                ProxyError::Network(m) => ("Network", "failed on the network", m),
            }
        }
    }

    impl std::fmt::Display for ProxyError {
        /// `request denied: <the host's reason>`.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let (_, what, message) = self.parts();
            write!(f, "request {what}: {message}")
        }
    }

    impl std::fmt::Debug for ProxyError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let (variant, _, message) = self.parts();
            write!(f, "ProxyError::{variant}({message:?})")
        }
    }

    impl std::error::Error for ProxyError {}

    impl From<wit::ProxyError> for ProxyError {
        fn from(e: wit::ProxyError) -> Self {
            match e {
                wit::ProxyError::Denied(m) => ProxyError::Denied(m),
                wit::ProxyError::InvalidRequest(m) => ProxyError::InvalidRequest(m),
                wit::ProxyError::TooLarge(m) => ProxyError::TooLarge(m),
                wit::ProxyError::Timeout(m) => ProxyError::Timeout(m),
                wit::ProxyError::RateLimited(m) => ProxyError::RateLimited(m),
                wit::ProxyError::Network(m) => ProxyError::Network(m),
            }
        }
    }

    impl From<ProxyError> for crate::TaskError {
        /// A failed task whose message is the error's sentence.
        fn from(e: ProxyError) -> Self {
            crate::TaskError::Failed(e.to_string())
        }
    }

    /// A GET request for `url` with no headers or body.
    pub fn get(url: &str) -> Request {
        Request {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            credential_header: None,
        }
    }

    /// Send `request` through the host and wait for the response.
    pub fn fetch(request: &Request) -> Result<Response, ProxyError> {
        wit::fetch(request).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_errors_print_as_sentences_and_become_failed_tasks() {
        let e = credentials::CredentialError::Denied("\"k\" is not in scope".to_string());
        assert_eq!(e.to_string(), "credential denied: \"k\" is not in scope");
        assert_eq!(
            format!("{e:?}"),
            "CredentialError::Denied(\"\\\"k\\\" is not in scope\")"
        );
        let t: TaskError = e.into();
        assert_eq!(
            t,
            TaskError::Failed("credential denied: \"k\" is not in scope".to_string())
        );
        let p = http::ProxyError::Timeout("after 30 s".to_string());
        assert_eq!(p.to_string(), "request timed out: after 30 s");
        assert_eq!(
            TaskError::from(p).to_string(),
            "failed: request timed out: after 30 s"
        );
        // `?` in a function returning TaskError.
        fn fetch() -> Result<(), TaskError> {
            Err(http::ProxyError::Denied("no".into()))?
        }
        assert_eq!(fetch(), Err(TaskError::Failed("request denied: no".into())));
    }
}

/// Objects the swarm keeps between tasks, in its own namespace on the host
/// (the contract's `[storage]`: `access`, and the quota). Names are 1 to
/// 256 bytes of ASCII letters, digits and `-` `_` `.`, in `/`-separated
/// segments; a write is whole: after a crash an object is its old version
/// or its new one.
///
/// Errors are [`storage::StorageError`]: it prints as a sentence (`storage
/// quota exceeded: ...`) and converts into [`TaskError`], so `?` works in
/// [`Swarm::execute`].
///
/// ```no_run
/// # fn demo() -> Result<(), chassis_sdk::storage::StorageError> {
/// use chassis_sdk::storage;
/// let n = storage::get("counter")?
///     .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
///     .unwrap_or(0);
/// storage::set("counter", &(n + 1).to_le_bytes())?;
/// # Ok(()) }
/// ```
pub mod storage {
    use crate::bindings::infrafabric::chassis::storage as wit;
    pub use crate::bindings::infrafabric::chassis::storage::{ObjectInfo, UsageInfo};

    /// Why an operation was refused or failed.
    #[derive(Clone, PartialEq, Eq)]
    pub enum StorageError {
        /// No storage granted, or a write under `read_only`.
        Denied(String),
        /// Not an object name (or one outside the namespace).
        InvalidName(String),
        /// The write would go over the namespace's bytes or object count.
        QuotaExceeded(String),
        /// The object is over `max_object_bytes`.
        TooLarge(String),
        /// The swarm is over its `max_api_calls_per_second`.
        RateLimited(String),
        /// The host's store failed, or did not answer in time.
        Unavailable(String),
        /// The object is not the JSON asked for, or a value did not
        /// serialize ([`get_json`], [`set_json`]); the store is fine.
        Json(String),
    }

    impl StorageError {
        fn parts(&self) -> (&'static str, &'static str, &str) {
            match self {
                StorageError::Denied(m) => ("Denied", "denied", m),
                StorageError::InvalidName(m) => ("InvalidName", "invalid name", m),
                StorageError::QuotaExceeded(m) => ("QuotaExceeded", "quota exceeded", m),
                StorageError::TooLarge(m) => ("TooLarge", "object too large", m),
                StorageError::RateLimited(m) => ("RateLimited", "rate limited", m),
                StorageError::Unavailable(m) => ("Unavailable", "unavailable", m),
                StorageError::Json(m) => ("Json", "JSON", m),
            }
        }
    }

    impl std::fmt::Display for StorageError {
        /// `storage quota exceeded: <the host's reason>`.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let (_, what, message) = self.parts();
            write!(f, "storage {what}: {message}")
        }
    }

    impl std::fmt::Debug for StorageError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let (variant, _, message) = self.parts();
            write!(f, "StorageError::{variant}({message:?})")
        }
    }

    impl std::error::Error for StorageError {}

    impl From<wit::StorageError> for StorageError {
        fn from(e: wit::StorageError) -> Self {
            match e {
                wit::StorageError::Denied(m) => StorageError::Denied(m),
                wit::StorageError::InvalidName(m) => StorageError::InvalidName(m),
                wit::StorageError::QuotaExceeded(m) => StorageError::QuotaExceeded(m),
                wit::StorageError::TooLarge(m) => StorageError::TooLarge(m),
                wit::StorageError::RateLimited(m) => StorageError::RateLimited(m),
                wit::StorageError::Unavailable(m) => StorageError::Unavailable(m),
            }
        }
    }

    impl From<StorageError> for crate::TaskError {
        /// A failed task whose message is the error's sentence.
        fn from(e: StorageError) -> Self {
            crate::TaskError::Failed(e.to_string())
        }
    }

    /// The object's bytes, or `None` when there is none of that name.
    pub fn get(name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        wit::get(name).map_err(Into::into)
    }

    /// Write the object whole, replacing any before it.
    pub fn set(name: &str, value: &[u8]) -> Result<(), StorageError> {
        wit::set(name, value).map_err(Into::into)
    }

    /// The object as JSON, or `None`.
    pub fn get_json<T: serde::de::DeserializeOwned>(name: &str) -> Result<Option<T>, StorageError> {
        get(name)?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| StorageError::Json(format!("{name} does not hold that JSON: {e}")))
            })
            .transpose()
    }

    /// Write `value` as JSON.
    pub fn set_json<T: serde::Serialize + ?Sized>(
        name: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StorageError::Json(format!("serializing {name}: {e}")))?;
        set(name, &bytes)
    }

    /// Remove the object (none of that name is not an error).
    pub fn delete(name: &str) -> Result<(), StorageError> {
        wit::delete(name).map_err(Into::into)
    }

    /// Whether the object exists.
    pub fn exists(name: &str) -> Result<bool, StorageError> {
        wit::exists(name).map_err(Into::into)
    }

    /// Every name starting with `prefix` (empty: all), in byte order,
    /// fetched page by page.
    pub fn list(prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        let mut cursor = None;
        loop {
            let page = wit::list_keys(prefix, cursor.as_deref(), 0)?;
            names.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(names),
            }
        }
    }

    /// One page of names after `cursor`: at most `limit` (0: the host's
    /// most, 1,000), and the cursor for the next page.
    pub fn list_page(
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>), StorageError> {
        let page = wit::list_keys(prefix, cursor, limit)?;
        Ok((page.keys, page.cursor))
    }

    /// The object's size and time, or `None`.
    pub fn stat(name: &str) -> Result<Option<ObjectInfo>, StorageError> {
        wit::stat(name).map_err(Into::into)
    }

    /// The namespace's use of its quota.
    pub fn usage() -> Result<UsageInfo, StorageError> {
        wit::usage().map_err(Into::into)
    }
}
