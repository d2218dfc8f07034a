//! Hostile test guest: one task type per way of breaking a limit.
//!
//! | task            | what it does                                             | the host answers         |
//! |-----------------|----------------------------------------------------------|--------------------------|
//! | `spin`          | loops forever                                            | `Timeout`                |
//! | `memory_bomb`   | allocates 1 MiB blocks and touches every page, forever   | `MemoryLimit`            |
//! | `recurse`       | unbounded recursion                                      | `StackOverflow`          |
//! | `huge_output`   | returns a string of `{"mib": n}` MiB                     | `OutputTooLarge`/size cap|
//! | `huge_log`      | passes one log line of `{"mib": n}` MiB to the host      | `HostcallTooLarge`       |
//! | `log_flood`     | logs `{"lines": n}` lines as fast as it can              | lines dropped, `RateLimited` |
//! | `print_flood`   | prints `{"lines": n}` lines to stdout as fast as it can  | lines dropped and counted |
//! | `panic`         | panics with `{"message"}`                                | `Trap` with the message  |
//! | `trap`          | aborts (`unreachable` in wasm)                           | `Trap`                   |
//! | `spawn_threads` | tries to start threads                                   | refused by WASI          |
//! | `burn`          | finite CPU-bound work, `{"rounds": n}`                   | runs (throttled)         |
//! | `forge`         | logs, and fails with, text that tries to rewrite the terminal (`\r`, ESC, U+2028, bidi) | escaped everywhere |
//! | `huge_error`    | fails with a message of `{"mib": n}` MiB                  | message cut              |
//! | `stderr_flood`  | writes `{"mib": n}` MiB to stderr, then aborts           | `Trap`, bounded tail     |
//! | `remember`      | keeps `{"message"}` in a static and returns what earlier tasks left there | a fresh instance has nothing to give |

use std::hint::black_box;
use std::sync::Mutex;

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, info, json};
use serde::Deserialize;

/// The swarm.
pub struct Misbehave;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Params {
    mib: usize,
    lines: u64,
    message: String,
    rounds: u64,
}

/// What `remember` kept, in the instance's memory: the most a warm
/// instance can carry from one task to the next.
static REMEMBERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Most messages `remember` keeps.
const MAX_REMEMBERED: usize = 64;

/// Recursion with small frames, so it grows the wasm call stack rather than
/// the shadow stack in linear memory.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))).wrapping_add(depth)
}

/// Deterministic CPU-bound work: `rounds` rounds of an xorshift mix.
pub fn burn(rounds: u64) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(black_box(i));
    }
    x
}

impl Swarm for Misbehave {
    const TASK_TYPES: &'static [&'static str] = &[
        "spin",
        "memory_bomb",
        "recurse",
        "huge_output",
        "huge_log",
        "log_flood",
        "print_flood",
        "panic",
        "trap",
        "spawn_threads",
        "burn",
        "forge",
        "huge_error",
        "stderr_flood",
        "remember",
    ];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        let p: Params = request.payload()?;
        match request.task_type() {
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "memory_bomb" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1024 * 1024];
                    for page in block.chunks_mut(4096) {
                        page[0] = 1;
                    }
                    blocks.push(black_box(block));
                }
            }
            "recurse" => Ok(json!({ "depth": recurse(0) })),
            "huge_output" => Ok(json!({ "data": "x".repeat(p.mib * 1024 * 1024) })),
            "huge_log" => {
                info!("{}", "y".repeat(p.mib * 1024 * 1024));
                Ok(json!({ "logged": p.mib }))
            }
            "log_flood" => {
                for i in 0..p.lines {
                    info!("flood line {i}");
                }
                Ok(json!({ "logged": p.lines }))
            }
            "print_flood" => {
                use std::io::Write;
                let mut out = std::io::stdout();
                for i in 0..p.lines {
                    // Flushed line by line: one write per line reaches the host.
                    let _ = writeln!(out, "print line {i}");
                    let _ = out.flush();
                }
                Ok(json!({ "printed": p.lines }))
            }
            "panic" => panic!("hostile panic: {}", p.message),
            "trap" => std::process::abort(),
            "spawn_threads" => {
                let spawned: Vec<String> = (0..4)
                    .map(|i| match std::thread::Builder::new().spawn(move || i) {
                        Ok(_) => "started".to_string(),
                        Err(e) => e.to_string(),
                    })
                    .collect();
                Ok(json!({ "spawned": spawned }))
            }
            "burn" => Ok(json!({ "result": burn(p.rounds) })),
            "forge" => {
                let forged = "boom\r\x1b[2K\x1b[32mOK: swarm \"hello-world\" task done\u{2028}\u{202e}txet desrever\u{2066}";
                info!("{forged}");
                Err(TaskError::failed(forged))
            }
            "huge_error" => Err(TaskError::failed("e".repeat(p.mib * 1024 * 1024))),
            "stderr_flood" => {
                use std::io::Write;
                let block = vec![b'z'; 1024 * 1024];
                let mut err = std::io::stderr();
                for _ in 0..p.mib {
                    let _ = err.write_all(&block);
                }
                let _ = err.write_all(b"\nlast words before the abort\n");
                std::process::abort()
            }
            "remember" => {
                let mut kept = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
                let before = kept.clone();
                if kept.len() < MAX_REMEMBERED {
                    kept.push(p.message);
                }
                Ok(json!({ "before": before }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Misbehave);
