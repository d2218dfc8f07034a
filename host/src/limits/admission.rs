//! A swarm's slots (`max_concurrent_tasks`) and the bounded queue of
//! tasks waiting for one. The governor's throttle lowers and raises how
//! many of the slots may be taken ([`Admission::set_limit`]): a lowered
//! limit takes free permits away at once and the rest as running tasks
//! give theirs back (a debt), so no running task is cut short.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::SwarmCounters;

/// Host-wide settings for task admission: how tasks wait for a slot when
/// their swarm runs `max_concurrent_tasks` already; past either bound a
/// task is refused (`overloaded`; 429 from `chassis serve`, whose
/// `[queue]` section this is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Tasks of one swarm that may wait for a slot (64); 0 refuses at once.
    pub max_queued: usize,
    /// How long a task may wait for a slot before it is refused (10 s;
    /// `max_wait_seconds` in a file).
    #[serde(
        rename = "max_wait_seconds",
        deserialize_with = "crate::seconds::positive"
    )]
    pub max_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_queued: 64,
            max_wait: Duration::from_secs(10),
        }
    }
}

/// Why admission refused a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The wait queue is full.
    QueueFull {
        /// Its length.
        max_queued: usize,
    },
    /// No slot freed up in time.
    WaitedTooLong {
        /// How long it waited.
        waited: Duration,
    },
}

/// At most `max_concurrent_tasks` tasks of a swarm run at once; up to
/// `max_queued` more wait in FIFO order for at most `max_wait`.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    /// Every slot: `max_concurrent_tasks`.
    max: u32,
    /// The slots that may be taken now (the throttle's limit).
    limit: AtomicU32,
    /// Permits still to take back from running tasks as they end, after
    /// the limit was lowered under what was free.
    debt: Arc<AtomicU32>,
    queue: QueueConfig,
    counters: Arc<SwarmCounters>,
}

/// A running task's slot; frees it when dropped (or pays a debt with it).
#[derive(Debug)]
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<AtomicU32>,
    counters: Arc<SwarmCounters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.running.fetch_sub(1, Ordering::Relaxed);
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
        let owed = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if owed && let Some(permit) = self.permit.take() {
            permit.forget();
        }
    }
}

impl Admission {
    /// Admission for `max_concurrent_tasks` slots.
    pub(crate) fn new(
        max_concurrent_tasks: u32,
        queue: QueueConfig,
        counters: Arc<SwarmCounters>,
    ) -> Self {
        let max = max_concurrent_tasks.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            limit: AtomicU32::new(max),
            debt: Arc::new(AtomicU32::new(0)),
            queue,
            counters,
        }
    }

    /// Every slot (`max_concurrent_tasks`).
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// The slots that may be taken now.
    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Let `limit` slots (1 to `max`) be taken from now on. Lowering takes
    /// free slots away at once and the others as their tasks end; raising
    /// first cancels what is still owed. Callers serialize their calls
    /// (the throttle holds its lock).
    pub(crate) fn set_limit(&self, limit: u32) {
        let limit = limit.clamp(1, self.max);
        let old = self.limit.swap(limit, Ordering::AcqRel);
        if limit < old {
            let cut = old - limit;
            let taken = self.slots.forget_permits(cut as usize) as u32;
            self.debt.fetch_add(cut - taken, Ordering::AcqRel);
        } else if limit > old {
            let mut back = limit - old;
            // What is still owed is simply no longer owed.
            while back > 0 {
                let owed = self.debt.load(Ordering::Acquire);
                if owed == 0 {
                    break;
                }
                let pay = owed.min(back);
                if self
                    .debt
                    .compare_exchange(owed, owed - pay, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    back -= pay;
                }
            }
            self.slots.add_permits(back as usize);
        }
    }

    /// Wait for a slot, or say why not.
    pub(crate) async fn admit(&self) -> Result<Slot, Refused> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = self.counters.queued.fetch_add(1, Ordering::AcqRel);
                let _leave = QueueGuard(&self.counters);
                if queued >= self.queue.max_queued {
                    return Err(Refused::QueueFull {
                        max_queued: self.queue.max_queued,
                    });
                }
                let started = Instant::now();
                match tokio::time::timeout(self.queue.max_wait, self.slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        return Err(Refused::WaitedTooLong {
                            waited: started.elapsed(),
                        });
                    }
                }
            }
        };
        self.counters.running.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            permit: Some(permit),
            debt: self.debt.clone(),
            counters: self.counters.clone(),
        })
    }
}

struct QueueGuard<'a>(&'a SwarmCounters);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}
