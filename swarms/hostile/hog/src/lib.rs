//! Hostile test guest: tasks that each keep within their own limits but,
//! run together, take more than their swarm as a whole may
//! (`[swarm_limits]`), and a swarm that turns slow or failing on demand
//! (the governor's throttle and circuit).
//!
//! | task   | what it does                                                      |
//! |--------|-------------------------------------------------------------------|
//! | `hold` | fills `{"mib": n}` MiB, touching every page, then burns `{"rounds": n}` while it keeps them |
//! | `burn` | finite CPU-bound work, `{"rounds": n}`                            |
//! | `fail` | burns `{"rounds": n}`, then answers with its own `failed` error    |

use std::hint::black_box;

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, json};
use serde::Deserialize;

/// The swarm.
pub struct Hog;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Params {
    mib: usize,
    rounds: u64,
}

/// Work the optimizer cannot remove.
fn burn(rounds: u64) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(black_box(i));
    }
    x
}

impl Swarm for Hog {
    const TASK_TYPES: &'static [&'static str] = &["hold", "burn", "fail"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        let p: Params = request.payload()?;
        match request.task_type() {
            "hold" => {
                let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(p.mib);
                for _ in 0..p.mib {
                    let mut block = vec![0u8; 1024 * 1024];
                    for page in block.chunks_mut(4096) {
                        page[0] = 1;
                    }
                    blocks.push(black_box(block));
                }
                let result = burn(p.rounds);
                Ok(json!({ "held_mib": black_box(blocks).len(), "result": result }))
            }
            "burn" => Ok(json!({ "result": burn(p.rounds) })),
            "fail" => Err(TaskError::failed(format!(
                "failing on purpose after {} rounds ({})",
                p.rounds,
                burn(p.rounds)
            ))),
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Hog);
