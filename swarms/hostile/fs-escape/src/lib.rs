//! Hostile test guest: tries to read the host's files through WASI.
//!
//! Its component imports `wasi:filesystem`, which no contract can grant, so
//! the host must refuse to load it.

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, json};

/// The swarm.
pub struct FsEscape;

impl Swarm for FsEscape {
    const TASK_TYPES: &'static [&'static str] = &["read_passwd"];

    fn execute(_request: &Request) -> Result<Value, TaskError> {
        match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Ok(json!({ "stolen_bytes": text.len() })),
            Err(e) => Ok(json!({ "error": e.to_string() })),
        }
    }
}

export_swarm!(FsEscape);
