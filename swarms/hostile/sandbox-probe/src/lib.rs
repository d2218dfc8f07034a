//! Hostile test guest: probes the sandbox through WASI and reports what it
//! could see. Tasks return JSON the tests check:
//!
//! - `env`: environment variables and arguments it sees;
//! - `clock`: wall-clock seconds since the Unix epoch;
//! - `random`: 16 bytes from the WASI random source, hex;
//! - `stdout` `{"lines"}`: prints lines on stdout and stderr.

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, json};
use serde::Deserialize;

/// The swarm.
pub struct SandboxProbe;

#[derive(Deserialize)]
struct Lines {
    lines: Vec<String>,
}

fn random_bytes() -> [u8; 16] {
    // std's RandomState seeds from `wasi:random/random`; hashing fixed input
    // with two fresh states exposes the source.
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

impl Swarm for SandboxProbe {
    const TASK_TYPES: &'static [&'static str] = &["env", "clock", "random", "stdout", "payload"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            // The payload's text exactly as the guest received it.
            "payload" => Ok(json!({ "raw": request.raw_payload() })),
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                Ok(json!({ "vars": vars, "args": args }))
            }
            "clock" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(json!({ "unix_seconds": now }))
            }
            "random" => {
                let hex: String = random_bytes().iter().map(|b| format!("{b:02x}")).collect();
                Ok(json!({ "bytes": hex }))
            }
            "stdout" => {
                let p: Lines = request.payload()?;
                for line in &p.lines {
                    println!("{line}");
                    eprintln!("err: {line}");
                }
                Ok(json!({ "printed": p.lines.len() }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(SandboxProbe);
