//! The host's fixed caps: the bounds that hold for every swarm whatever its
//! contract says, for callers that want to stay under them or show them.
//! Each is enforced where its capability lives; this module only names
//! them (see `docs/limits.md`).

pub use crate::audit::MAX_RECORD_BYTES as MAX_AUDIT_RECORD_BYTES;
pub use crate::config::MAX_CORE_INSTANCES;
pub use crate::contract::MAX_CONTRACT_ERROR_BYTES;
pub use crate::engine::{EPOCH_TICK, MAX_WASM_STACK};
pub use crate::files::{MAX_CONTRACT_BYTES, MAX_SECRETS_BYTES};
pub use crate::imports::http_proxy::client::{
    CONNECT_TIMEOUT, MAX_REQUEST_BYTES as MAX_PROXY_REQUEST_BYTES,
    MAX_RESPONSE_BYTES as MAX_PROXY_RESPONSE_BYTES, TOTAL_TIMEOUT as PROXY_TOTAL_TIMEOUT,
};
pub use crate::imports::http_proxy::{DNS_TIMEOUT, MAX_HEADER_BYTES, MAX_HEADERS};
pub use crate::imports::log::MAX_LOG_LINE_BYTES;
pub use crate::limits::{
    CPU_WINDOW, MAX_ERROR_MESSAGE_BYTES, MAX_HOSTCALL_BYTES, MAX_OUTPUT_BYTES, MAX_TABLE_ELEMENTS,
    MIN_REFUSED_CALLS_PER_TASK,
};
pub use crate::outcome::MAX_TASK_ID_BYTES;
pub use crate::runner::HOST_SLACK;
pub use crate::task_types::{MAX_TASK_TYPE_BYTES, MAX_TASK_TYPES};
pub use crate::wasi::MAX_STDIO_BYTES_PER_TASK;

/// The largest object a swarm may store (and `storage.max_object_bytes`):
/// an object passes through one import call, which carries at most
/// [`MAX_HOSTCALL_BYTES`] (4 MiB) with its name.
pub const MAX_OBJECT_BYTES: u64 = MAX_HOSTCALL_BYTES as u64 - 4096;

/// The longest object name, in bytes.
pub const MAX_OBJECT_NAME_BYTES: usize = 256;

/// Most names one `list-keys` call returns.
pub const MAX_OBJECTS_LISTED: usize = 1000;
