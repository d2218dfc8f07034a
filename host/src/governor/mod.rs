//! The governor: what acts on a swarm's standing rather than on one task.
//!
//! - Capability routing ([`route`]): a task addressed to a capability
//!   (`code-analysis:python`) goes to one of the loaded swarms that declare
//!   it and serve its task type, chosen among those neither quarantined,
//!   nor under their selection threshold, nor out of budget, nor with an
//!   open circuit, weighted by reputation.
//! - Throttling that recovers ([`throttle`]): a swarm that misses its SLOs
//!   has its concurrency halved, and given back a slot at a time as it
//!   meets them; a run of failures opens its circuit, a probe task closes
//!   it, and a swarm that keeps failing on probation is quarantined.
//!
//! Data flow: `Chassis::route` gathers each candidate's standing from the
//! registry (contract, reputation, slots, budget, circuit) into
//! [`route::Candidate`]s; [`route::choose`] picks one with a draw from
//! [`Draws`]; the facade runs the task on it and records a `task_routed`
//! event naming the swarm. The runner passes every task through its
//! swarm's [`throttle::Throttle`] before admission and settles it after;
//! the throttle sets the admission limit and raises its events
//! (`docs/governor.md`).

pub(crate) mod route;
pub(crate) mod throttle;

use std::sync::atomic::{AtomicU64, Ordering};

/// How capability routing chooses (`ChassisConfig::routing`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// The reputation a swarm needs to be chosen, unless its contract
    /// says (`reputation.selection_threshold`); never below the swarm's
    /// quarantine threshold (0.5).
    pub selection_threshold: f64,
    /// The seed of the draws: the same seed and the same standings make
    /// the same choices, in order (for tests; random by default).
    pub seed: Option<u64>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            selection_threshold: 0.5,
            seed: None,
        }
    }
}

/// Uniform draws in `[0, 1)`: SplitMix64 (Steele, Lea and Flood, 2014)
/// over one atomic counter, so concurrent callers never share a draw and a
/// seeded sequence is the same from run to run.
#[derive(Debug)]
pub(crate) struct Draws(AtomicU64);

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Draws {
    /// Draws from `seed`, or from the process's own randomness.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            h.finish()
        });
        Self(AtomicU64::new(seed))
    }

    /// The next draw.
    pub(crate) fn next(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_repeat_and_stay_in_the_unit_interval() {
        let (a, b) = (Draws::new(Some(7)), Draws::new(Some(7)));
        let first: Vec<f64> = (0..1000).map(|_| a.next()).collect();
        let second: Vec<f64> = (0..1000).map(|_| b.next()).collect();
        assert_eq!(first, second);
        assert!(first.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = first.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "{mean}");
        assert_ne!(Draws::new(Some(8)).next(), first[0]);
    }
}
