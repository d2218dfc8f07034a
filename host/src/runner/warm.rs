//! Warm instances: with `[instances] tasks_per_instance` above one, an
//! instance whose task ended cleanly is kept, store and all, for the
//! swarm's next task instead of being dropped (`docs/warm-instances.md`).
//!
//! Taking one: [`WarmPool::take`] hands out an idle instance, and the
//! runner makes its store's data the new task's
//! ([`HostState::next_task`](crate::state::HostState::next_task): scope,
//! WASI context, CPU governor, deadline, peak memory) and gives its
//! allowances back ([`super::arm`]: fuel, host-call bytes, epoch
//! deadline). What is left of the earlier tasks is the guest's own: its
//! linear memory, globals and tables.
//!
//! Keeping one: [`WarmPool::keep`] takes an instance back only when
//! [`reusable`] says so: its task succeeded and its output was accepted,
//! nothing stopped, refused or flagged it, it holds no host resource, it
//! ran fewer than `tasks_per_instance` tasks, and neither the swarm nor
//! this version of it is going away. Everything else is dropped, as a
//! fresh instance's store is after its one task.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Store;

use crate::bindings::Swarm;
use crate::outcome::TaskUsage;
use crate::state::HostState;

/// An instance kept between tasks, with its store.
pub(crate) struct Warm {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: Swarm,
    /// Tasks it has run.
    pub(crate) tasks: u32,
}

/// The idle warm instances of one loaded version of a swarm.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    /// Set when the version is replaced or unloaded: nothing is kept after.
    retired: AtomicBool,
}

impl WarmPool {
    /// An idle instance, if there is one.
    pub(crate) fn take(&self) -> Option<Warm> {
        self.idle.lock().expect("warm pool lock").pop()
    }

    /// Keep `warm` for a next task, unless the version is retired or
    /// `max_idle` (its `max_concurrent_tasks`: the instance slots it
    /// reserved) are idle already; otherwise it is dropped.
    pub(crate) fn keep(&self, warm: Warm, max_idle: usize) {
        let mut idle = self.idle.lock().expect("warm pool lock");
        if !self.retired.load(Ordering::Acquire) && idle.len() < max_idle {
            idle.push(warm);
        }
    }

    /// Drop every idle instance and keep none from now on: the version is
    /// no longer the one tasks start on.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.idle.lock().expect("warm pool lock"));
        drop(idle);
    }
}

/// Whether an instance that ran a task with `usage`, `tasks` tasks in all,
/// may run another: the task succeeded (the caller checks that), no call was
/// refused for rate and no security violation was counted, nothing of the
/// host's is held in its resource table (a WASI stream bound to the task
/// that took it, for one), it is under `tasks_per_instance`, and the swarm
/// is not stopping.
pub(crate) fn reusable(store: &Store<HostState>, usage: &TaskUsage, tasks: u32) -> bool {
    let state = store.data();
    let contract = state.contract();
    tasks < contract.instances.tasks_per_instance
        && usage.security_violations == 0
        && usage.rate_limited_calls == 0
        && state.table.is_empty()
        && !state.swarm.stopping.load(Ordering::Relaxed)
}
