//! `chassis-fuzz`: the host's parsers and checkers driven with generated
//! input at high case counts, for a time budget, with the failing input
//! shrunk to a small one.
//!
//! Property-based (proptest) rather than coverage-guided: cargo-afl and
//! cargo-fuzz need a nightly compiler or an AFL++ build with its LLVM
//! plugin, neither of which this project's stable toolchain and offline
//! set-up provide. The generators make up for the missing coverage
//! feedback by being structured: they start from real inputs (the example
//! contracts, a real audit log) and mutate them the ways an attacker or a
//! crash would, alongside plain random bytes.
//!
//! Data flow: [`run`] drives one [`Target`] in batches of generated cases
//! until its time is up. Each case is checked by the target's property
//! (never a panic, a typed answer, the target's own invariant); a failure
//! is shrunk by proptest and reported with the smallest input found, which
//! becomes a file under `fuzz/regressions/<target>/`, replayed by the
//! crate's tests forever after.

pub mod audit;
pub mod component;
pub mod contract;
pub mod egress;
pub mod fleet;
mod host;
pub mod imports;
pub mod soak;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The contract parser and validator: any text is a contract or a
    /// typed error, in bounded time.
    Contract,
    /// Audit `verify`: any change to a valid log is caught, or leaves the
    /// log's records unchanged (a prefix of them, caught against the head).
    Audit,
    /// Loading mutated components: refused cleanly, or loaded and run;
    /// never a panic, and a bystander stays correct.
    Component,
    /// The HTTP proxy's egress policy (SSRF guard, allowlist) against an
    /// independent reference: they agree on every address and URL.
    Egress,
    /// A hostile guest's random import calls: every task ends in an
    /// outcome or an expected error, everything shown is bounded, escaped
    /// and clean of secrets, one terminal audit record per task.
    Imports,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Target::Contract,
        Target::Audit,
        Target::Component,
        Target::Egress,
        Target::Imports,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Contract => "contract",
            Target::Audit => "audit",
            Target::Component => "component",
            Target::Egress => "egress",
            Target::Imports => "imports",
        }
    }

    /// The target of a name.
    pub fn from_name(name: &str) -> Option<Target> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Check one input given as bytes (a regression file).
    pub fn replay(self, root: &Path, input: &[u8]) -> Result<(), String> {
        match self {
            Target::Contract => contract::check_bytes(input),
            Target::Audit => audit::replay(root, input),
            Target::Component => component::check(root, input),
            Target::Egress => egress::replay(input),
            Target::Imports => imports::replay(root, input),
        }
    }
}

/// What one run found.
#[derive(Debug)]
pub struct Report {
    /// The target.
    pub target: Target,
    /// Cases checked.
    pub cases: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// The slowest case.
    pub slowest: Duration,
    /// The failure, shrunk, if one was found: why, and the input.
    pub failure: Option<(String, Vec<u8>)>,
}

/// Cases per batch; the budget is checked between batches.
const BATCH: u32 = 64;

/// Run `target` for `time` from `seed`; stops at the first failure.
pub fn run(root: &Path, target: Target, time: Duration, seed: u64) -> Report {
    let started = Instant::now();
    let mut cases = 0u64;
    let mut slowest = Duration::ZERO;
    let mut batch = 0u64;
    let mut seed_bytes = [0u8; 32];
    while started.elapsed() < time {
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8..16].copy_from_slice(&batch.to_le_bytes());
        batch += 1;
        let config = Config {
            cases: BATCH,
            failure_persistence: None,
            max_shrink_iters: 2048,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let outcome = match target {
            Target::Contract => contract::fuzz(&mut runner, &mut slowest),
            Target::Audit => audit::fuzz(root, &mut runner, &mut slowest),
            Target::Component => component::fuzz(root, &mut runner, &mut slowest),
            Target::Egress => egress::fuzz(&mut runner, &mut slowest),
            Target::Imports => imports::fuzz(root, &mut runner, &mut slowest),
        };
        cases += u64::from(BATCH);
        if let Err(failure) = outcome {
            return Report {
                target,
                cases,
                elapsed: started.elapsed(),
                slowest,
                failure: Some(failure),
            };
        }
    }
    Report {
        target,
        cases,
        elapsed: started.elapsed(),
        slowest,
        failure: None,
    }
}

/// Where a target's regression inputs are kept.
pub fn regressions(root: &Path, target: Target) -> PathBuf {
    root.join("fuzz/regressions").join(target.name())
}

/// Time one check, keeping the slowest.
pub(crate) fn timed<T>(slowest: &std::cell::Cell<Duration>, check: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = check();
    slowest.set(slowest.get().max(started.elapsed()));
    out
}
