//! A swarm's slots (`max_concurrent_tasks`) and the bounded queue of
//! tasks waiting for one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    queue: QueueConfig,
    counters: Arc<SwarmCounters>,
}

/// A running task's slot; frees it when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    counters: Arc<SwarmCounters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.running.fetch_sub(1, Ordering::Relaxed);
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// Admission for `max_concurrent_tasks` slots.
    pub(crate) fn new(
        max_concurrent_tasks: u32,
        queue: QueueConfig,
        counters: Arc<SwarmCounters>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent_tasks.max(1) as usize)),
            queue,
            counters,
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
            _permit: permit,
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
