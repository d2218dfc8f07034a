//! `bench-probe`: the guest that `cargo xtask bench` measures the host with.
//!
//! - `noop`: returns `{}` at once (the per-task cost of the host);
//! - `log` `{"n": N}`: N calls of `log` (the cost of one import call);
//! - `credential` `{"n": N, "name": "..."}`: N calls of `credentials.get`;
//! - `hold` `{"ms": M}`: stays busy for M ms of wall time, so that many
//!   instances are alive at once (memory per running instance).

use chassis_sdk::log::{Level, write};
use chassis_sdk::{Request, Swarm, TaskError, Value, credentials, export_swarm, json};
use serde::Deserialize;

/// The swarm.
pub struct BenchProbe;

#[derive(Deserialize)]
struct Repeat {
    n: u32,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Hold {
    ms: u64,
}

impl Swarm for BenchProbe {
    const TASK_TYPES: &'static [&'static str] = &["noop", "log", "credential", "hold"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "noop" => Ok(json!({})),
            "log" => {
                let r: Repeat = request.payload()?;
                for _ in 0..r.n {
                    write(Level::Trace, "bench");
                }
                Ok(json!({ "calls": r.n }))
            }
            "credential" => {
                let r: Repeat = request.payload()?;
                let mut bytes = 0;
                for _ in 0..r.n {
                    bytes += credentials::get(&r.name)
                        .map_err(|e| TaskError::failed(format!("{e:?}")))?
                        .len();
                }
                Ok(json!({ "calls": r.n, "bytes": bytes }))
            }
            "hold" => {
                let h: Hold = request.payload()?;
                let until = std::time::Instant::now() + std::time::Duration::from_millis(h.ms);
                let mut spins = 0u64;
                while std::time::Instant::now() < until {
                    spins += 1;
                }
                Ok(json!({ "spins": spins }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(BenchProbe);
