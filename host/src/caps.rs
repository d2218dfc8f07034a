//! The host's fixed caps: the bounds that hold for every swarm whatever its
//! contract says, for callers that want to stay under them or show them.
//! Each is enforced where its capability lives; this module only names
//! them (see `docs/limits.md`).

pub use crate::config::MAX_CORE_INSTANCES;
pub use crate::engine::{EPOCH_TICK, MAX_WASM_STACK};
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
pub use crate::runner::HOST_SLACK;
pub use crate::wasi::MAX_STDIO_BYTES_PER_TASK;
