//! Target `component`: loading mutated real components
//! (`Chassis::load_bytes`). A mutated component is refused with a typed
//! error, or it loads and its task runs to some ending; never a panic, and
//! the host goes on serving a bystander.
//!
//! Inputs: the example swarms `cargo xtask build` built, with bits
//! flipped, bytes overwritten, a cut at any byte, a run of bytes moved
//! elsewhere (section swaps and splices), and huge LEB128 lengths written
//! in.

use std::path::Path;
use std::sync::OnceLock;

use chassis::{Chassis, ChassisConfig, ServiceContract, TaskRequest};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};

/// The components the mutations start from (in `target/swarms/`).
const SEEDS: &[&str] = &["hello_world.wasm", "bench_probe.wasm"];

struct Host {
    runtime: &'static tokio::runtime::Runtime,
    chassis: Chassis,
    seeds: Vec<Vec<u8>>,
}

static HOST: OnceLock<Result<Host, String>> = OnceLock::new();

/// Everything a mutated swarm could ask for and a contract may grant.
fn contract(swarm_id: &str) -> ServiceContract {
    ServiceContract::from_toml(
        &format!(
            "swarm_id = \"{swarm_id}\"\n\
             [resource_limits]\nmax_memory_mb = 32\ntask_timeout_seconds = 1.0\n\
             [security]\nscoped_credentials = [\"bench_token\"]\n\
             wasi_capabilities = [\"wasi:io/streams\", \"wasi:clocks/monotonic-clock\", \"wasi:clocks/wall-clock\"]\n"
        ),
        "fuzz",
    )
    .expect("the fuzz contract is valid")
}

fn host(root: &Path) -> Result<&'static Host, String> {
    HOST.get_or_init(|| {
        let seeds = SEEDS
            .iter()
            .map(|name| crate::host::component(root, name))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = crate::host::runtime()?;
        let chassis = Chassis::with_config(
            ChassisConfig::default().with_load_timeout(std::time::Duration::from_secs(2)),
        )
        .map_err(|e| e.to_string())?;
        runtime
            .block_on(chassis.load_bytes(&seeds[0], contract("bystander")))
            .map_err(|e| e.to_string())?;
        Ok(Host {
            runtime,
            chassis,
            seeds,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One change to a component's bytes.
#[derive(Debug, Clone)]
enum Change {
    FlipBit { at: usize, bit: u8 },
    Overwrite { at: usize, bytes: Vec<u8> },
    CutAt(usize),
    Move { from: usize, len: usize, to: usize },
    HugeLength { at: usize },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Change::FlipBit { at, bit }),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Change::Overwrite { at, bytes }),
        1 => any::<usize>().prop_map(Change::CutAt),
        1 => (any::<usize>(), 1usize..4096, any::<usize>())
            .prop_map(|(from, len, to)| Change::Move { from, len, to }),
        1 => any::<usize>().prop_map(|at| Change::HugeLength { at }),
    ]
}

fn apply(seed: &[u8], changes: &[Change]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for change in changes {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match change {
            Change::FlipBit { at, bit } => bytes[at % n] ^= 1 << bit,
            Change::Overwrite { at, bytes: new } => {
                let at = at % n;
                let end = (at + new.len()).min(n);
                bytes[at..end].copy_from_slice(&new[..end - at]);
            }
            Change::CutAt(at) => bytes.truncate(at % (n + 1)),
            Change::Move { from, len, to } => {
                let from = from % n;
                let end = (from + len).min(n);
                let run: Vec<u8> = bytes.drain(from..end).collect();
                let to = to % (bytes.len() + 1);
                bytes.splice(to..to, run);
            }
            Change::HugeLength { at } => {
                // A LEB128 u32 of 0xffff_fff0, where a length might be.
                let at = at % n;
                let huge = [0xf0, 0xff, 0xff, 0xff, 0x0f];
                let end = (at + huge.len()).min(n);
                bytes[at..end].copy_from_slice(&huge[..end - at]);
            }
        }
    }
    bytes
}

/// The property, for one component.
pub fn check(root: &Path, component: &[u8]) -> Result<(), String> {
    let host = host(root)?;
    let chassis = &host.chassis;
    host.runtime.block_on(async {
        if let Ok(info) = chassis.load_bytes(component, contract("mutant")).await {
            for task_type in info.task_types.iter().take(2) {
                let _ = chassis
                    .execute_task(
                        &info.swarm_id,
                        TaskRequest::new(task_type, serde_json::json!({})),
                    )
                    .await;
            }
            chassis
                .unload(&info.swarm_id)
                .map_err(|e| format!("unloading the mutant: {e}"))?;
        }
        // The bystander still answers.
        crate::host::greet(chassis, "bystander").await
    })
}

/// One batch of cases.
pub(crate) fn fuzz(
    root: &Path,
    runner: &mut TestRunner,
    slowest: &mut std::time::Duration,
) -> Result<(), (String, Vec<u8>)> {
    let seeds = match host(root) {
        Ok(host) => host.seeds.clone(),
        Err(e) => return Err((e, Vec::new())),
    };
    let strategy = (0..seeds.len(), proptest::collection::vec(change(), 1..4))
        .prop_map(move |(seed, changes)| apply(&seeds[seed], &changes));
    let slowest_here = std::cell::Cell::new(*slowest);
    let result = runner.run(&strategy, |component| {
        crate::timed(&slowest_here, || check(root, &component)).map_err(TestCaseError::fail)
    });
    *slowest = slowest_here.get();
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, input)) => Err((reason.to_string(), input)),
        Err(TestError::Abort(reason)) => Err((reason.to_string(), Vec::new())),
    }
}
