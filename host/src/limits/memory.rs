//! A task's memory and tables: the store's `ResourceLimiter`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{MAX_TABLE_ELEMENTS, SwarmCounters};

/// The error a [`TaskLimiter`] raises to trap a guest that grows past its limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} limit exceeded: wanted {desired} {unit}, limit is {limit} {unit}")]
pub(crate) struct GrowthRefused {
    /// `memory`, [`SWARM_MEMORY`] or `table`.
    pub what: &'static str,
    /// What the guest asked for.
    pub desired: usize,
    /// The limit.
    pub limit: usize,
    /// `bytes` or `elements`.
    pub unit: &'static str,
}

/// The [`GrowthRefused::what`] of growth past the swarm's summed memory
/// (`swarm_limits.max_memory_mb`).
pub(crate) const SWARM_MEMORY: &str = "swarm memory";

/// Memory and table limits of one task, and what it used. The memory it
/// holds is counted in its swarm's total, and with a swarm-wide limit it is
/// reserved there before it is granted: the swarm's tasks together never
/// hold more.
pub(crate) struct TaskLimiter {
    max_memory: usize,
    /// `swarm_limits.max_memory_mb`, in bytes.
    swarm_max_memory: Option<u64>,
    memory: usize,
    peak_memory: usize,
    swarm: Arc<SwarmCounters>,
}

impl TaskLimiter {
    /// Limits for a task of a swarm with `max_memory_mb` per task and,
    /// perhaps, `swarm_max_memory_mb` for all its tasks together.
    pub(crate) fn new(
        max_memory_mb: u32,
        swarm_max_memory_mb: Option<u32>,
        swarm: Arc<SwarmCounters>,
    ) -> Self {
        Self {
            max_memory: max_memory_mb as usize * 1024 * 1024,
            swarm_max_memory: swarm_max_memory_mb.map(|mb| u64::from(mb) * 1024 * 1024),
            memory: 0,
            peak_memory: 0,
            swarm,
        }
    }

    /// A warm instance's next task: its peak starts at the memory the
    /// instance has now.
    pub(crate) fn next_task(&mut self) {
        self.peak_memory = self.memory;
    }

    /// Highest linear memory the task had, in bytes.
    pub(crate) fn peak_memory(&self) -> usize {
        self.peak_memory
    }
}

impl Drop for TaskLimiter {
    fn drop(&mut self) {
        self.swarm
            .memory_bytes
            .fetch_sub(self.memory as u64, Ordering::Relaxed);
    }
}

impl wasmtime::ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory - current.min(self.memory) + desired;
        if total > self.max_memory {
            return Err(wasmtime::Error::new(GrowthRefused {
                what: "memory",
                desired: total,
                limit: self.max_memory,
                unit: "bytes",
            }));
        }
        let more = total.saturating_sub(self.memory) as u64;
        match self.swarm_max_memory {
            Some(max) => {
                let reserved = self.swarm.memory_bytes.fetch_update(
                    Ordering::AcqRel,
                    Ordering::Acquire,
                    |held| (held + more <= max).then_some(held + more),
                );
                if let Err(held) = reserved {
                    return Err(wasmtime::Error::new(GrowthRefused {
                        what: SWARM_MEMORY,
                        desired: usize::try_from(held + more).unwrap_or(usize::MAX),
                        limit: usize::try_from(max).unwrap_or(usize::MAX),
                        unit: "bytes",
                    }));
                }
            }
            None => {
                self.swarm.memory_bytes.fetch_add(more, Ordering::Relaxed);
            }
        }
        self.memory = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(GrowthRefused {
                what: "table",
                desired,
                limit: MAX_TABLE_ELEMENTS,
                unit: "elements",
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}
