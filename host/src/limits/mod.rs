//! Every resource limit of a contract, as data and the small machines that
//! enforce it. The runner wires them into each task's store; nothing here
//! knows about components. `memory.rs` holds the store's limiter, `cpu.rs`
//! the CPU share, `admission.rs` the slots and wait queue, `rate.rs` the
//! token buckets of rates.
//!
//! | limit (contract field)        | enforced by                                         | error                 |
//! |-------------------------------|-----------------------------------------------------|-----------------------|
//! | `max_memory_mb`               | [`TaskLimiter`] (a wasmtime `ResourceLimiter`)       | `MemoryLimit`         |
//! | `swarm_limits.max_memory_mb`  | [`TaskLimiter`], reserving in [`SwarmCounters`]      | `SwarmMemoryLimit`    |
//! | `swarm_limits.max_cpu_percent`| [`CpuGovernor`]: the swarm's share over its running tasks | — (throttled)    |
//! | table growth                  | [`TaskLimiter`], [`MAX_TABLE_ELEMENTS`]             | `TableLimit`          |
//! | `task_timeout_seconds`        | epoch callback every tick + outer host timeout      | `Timeout`             |
//! | `max_cpu_percent`             | [`CpuGovernor`] in the epoch callback (sleeps)      | — (throttled)         |
//! | `[budget]` (per period)       | [`PeriodBudget`]: admission, the epoch callback, the HTTP proxy | `BudgetExhausted` |
//! | `max_concurrent_tasks`        | [`Admission`]: slots + bounded wait queue           | `Overloaded`          |
//! | `max_api_calls_per_second`    | [`RateLimiter`] per swarm: credentials, HTTP proxy  | `RateLimited`         |
//! | `max_log_lines_per_second`, `max_log_bytes_per_second` | [`LogBudget`] per swarm: log, stdout, stderr | — (lines dropped) |
//! | `max_fuel` (optional)         | wasmtime fuel                                       | `CpuBudget`           |
//! | guest→host bytes per call     | `Store::set_hostcall_fuel` ([`MAX_HOSTCALL_BYTES`]) | `HostcallTooLarge`    |
//! | task output size              | [`MAX_OUTPUT_BYTES`]                                | `OutputTooLarge`      |
//! | wasm stack                    | `Config::max_wasm_stack`                            | `StackOverflow`       |

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

mod admission;
mod budget;
mod cpu;
mod memory;
mod rate;

pub use self::admission::QueueConfig;
pub(crate) use self::admission::{Admission, Refused};
pub use self::budget::{BudgetKind, BudgetView};
pub(crate) use self::budget::{PeriodBudget, Spent};
pub(crate) use self::cpu::{CpuGovernor, CpuMark};
pub(crate) use self::memory::{GrowthRefused, SWARM_MEMORY, TaskLimiter};
pub(crate) use self::rate::{LogBudget, RateLimiter, TokenBucket};

/// Most bytes a guest may pass to the host in one import call (strings,
/// lists); more traps the task.
pub const MAX_HOSTCALL_BYTES: usize = 4 * 1024 * 1024;

/// Largest task output (the JSON result), in bytes. Under
/// [`MAX_HOSTCALL_BYTES`], which also bounds the result as it is passed to
/// the host: an output past this cap but under that one is read and
/// refused as `OutputTooLarge`; a larger one is stopped mid-copy as
/// `HostcallTooLarge`.
pub const MAX_OUTPUT_BYTES: usize = 2 * 1024 * 1024;

/// Longest error message a guest's `task-error` keeps, in bytes; the rest
/// is cut (and marked). Bounds the error in the outcome, the logs and the
/// task's audit record.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 8 * 1024;

/// Most elements a guest table may grow to.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Length of the CPU-share accounting window.
pub const CPU_WINDOW: Duration = Duration::from_millis(100);

/// Import calls refused for rate within one task before the task is ended
/// (at least this many, or ten seconds' worth of the swarm's rate).
pub const MIN_REFUSED_CALLS_PER_TASK: u64 = 100;

/// Which limit a task ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `task_timeout_seconds`.
    Timeout,
    /// `max_memory_mb` (or table growth).
    Memory,
    /// `max_fuel`.
    CpuBudget,
    /// The wasm stack.
    StackOverflow,
    /// `max_concurrent_tasks` and the wait queue.
    Overloaded,
    /// `max_api_calls_per_second`.
    RateLimited,
    /// The output size cap.
    OutputSize,
    /// The guest-to-host bytes per call cap.
    HostcallSize,
}

impl LimitKind {
    /// Stable name, as used in events and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Timeout => "timeout",
            LimitKind::Memory => "memory",
            LimitKind::CpuBudget => "cpu_budget",
            LimitKind::StackOverflow => "stack_overflow",
            LimitKind::Overloaded => "overloaded",
            LimitKind::RateLimited => "rate_limited",
            LimitKind::OutputSize => "output_size",
            LimitKind::HostcallSize => "hostcall_size",
        }
    }
}

/// Live counters of one swarm, shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct SwarmCounters {
    /// Linear memory of its running instances, in bytes.
    pub memory_bytes: AtomicU64,
    /// Tasks running now.
    pub running: AtomicUsize,
    /// Tasks waiting for a slot now.
    pub queued: AtomicUsize,
    /// Busy time of its tasks, in nanoseconds, cumulative.
    pub cpu_nanos: AtomicU64,
    /// Tasks finished (any outcome).
    pub completed: AtomicU64,
    /// Import calls refused for rate, cumulative.
    pub rate_limited_calls: AtomicU64,
    /// Log lines dropped for rate, cumulative.
    pub dropped_log_lines: AtomicU64,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_log_budget_counts_lines_and_bytes() {
        let b = LogBudget::new(3, 1000);
        assert!(b.allow(10) && b.allow(10) && b.allow(10));
        assert!(!b.allow(10), "a fourth line within the second");
        let b = LogBudget::new(100, 1000);
        assert!(b.allow(900));
        assert!(!b.allow(200), "over the bytes");
        assert!(b.allow(50), "a refused line takes nothing");
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        for _ in 0..10 {
            assert!(b.try_take(1.0, t0));
        }
        assert!(!b.try_take(1.0, t0));
        // 100 ms later one token is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(1.0, t1));
        assert!(!b.try_take(1.0, t1));
        // Never more than one second's burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..10 {
            assert!(b.try_take(1.0, t2));
        }
        assert!(!b.try_take(1.0, t2));
    }

    #[test]
    fn governor_sleeps_three_times_the_busy_time_at_25_percent() {
        let t0 = Instant::now();
        let mut g = CpuGovernor::new(25, t0);
        let tick = Duration::from_millis(10);
        let mut now = t0;
        let mut slept = Duration::ZERO;
        // Simulate 2 s of a CPU-bound guest, ticking every 10 ms.
        while now < t0 + Duration::from_secs(2) {
            now += tick;
            if let Some(s) = g.tick(now, |busy| busy) {
                slept += s;
                now += s;
            }
        }
        let busy = g.busy.as_secs_f64();
        let ratio = busy / (now - t0).as_secs_f64();
        assert!((ratio - 0.25).abs() < 0.03, "duty cycle {ratio}");
        assert_eq!(slept, g.throttled);
        assert!((g.throttled.as_secs_f64() / busy - 3.0).abs() < 0.3);
    }

    #[test]
    fn governor_at_100_percent_never_sleeps_and_excludes_host_waits() {
        let t0 = Instant::now();
        let mut g = CpuGovernor::new(100, t0);
        assert_eq!(g.tick(t0 + Duration::from_secs(1), |busy| busy), None);
        let mut g = CpuGovernor::new(10, t0);
        g.waiting = Duration::from_millis(50);
        // 50 ms elapsed, all of it waiting on the host: nothing to throttle.
        assert_eq!(g.tick(t0 + Duration::from_millis(50), |busy| busy), None);
        assert_eq!(g.busy, Duration::ZERO);
    }

    #[test]
    fn limiter_refuses_growth_past_the_limit_and_tracks_the_peak() {
        use wasmtime::ResourceLimiter;
        let counters = Arc::new(SwarmCounters::default());
        let mut l = TaskLimiter::new(1, None, counters.clone());
        assert!(l.memory_growing(0, 65536, None).unwrap());
        assert!(l.memory_growing(65536, 1024 * 1024, None).unwrap());
        assert_eq!(counters.memory_bytes.load(Ordering::Relaxed), 1024 * 1024);
        let err = l
            .memory_growing(1024 * 1024, 1024 * 1024 + 65536, None)
            .unwrap_err();
        assert!(err.downcast_ref::<GrowthRefused>().is_some());
        assert_eq!(l.peak_memory(), 1024 * 1024);
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).is_err());
        drop(l);
        assert_eq!(counters.memory_bytes.load(Ordering::Relaxed), 0);
    }

    /// Two tasks of a swarm limited to 3 MiB together: each may grow to its
    /// own 2 MiB, but the second is refused once their sum would pass the
    /// swarm's; what one gives back, the other may take.
    #[test]
    fn a_swarm_memory_limit_holds_across_its_tasks() {
        use wasmtime::ResourceLimiter;
        const MIB: usize = 1024 * 1024;
        let counters = Arc::new(SwarmCounters::default());
        let mut a = TaskLimiter::new(2, Some(3), counters.clone());
        let mut b = TaskLimiter::new(2, Some(3), counters.clone());
        assert!(a.memory_growing(0, 2 * MIB, None).unwrap());
        assert!(b.memory_growing(0, MIB, None).unwrap());
        let err = b.memory_growing(MIB, 2 * MIB, None).unwrap_err();
        let refused = err.downcast_ref::<GrowthRefused>().unwrap();
        assert_eq!((refused.what, refused.limit), (SWARM_MEMORY, 3 * MIB));
        assert_eq!(
            counters.memory_bytes.load(Ordering::Relaxed),
            3 * MIB as u64
        );
        drop(a);
        assert!(b.memory_growing(MIB, 2 * MIB, None).unwrap());
        assert_eq!(
            counters.memory_bytes.load(Ordering::Relaxed),
            2 * MIB as u64
        );
    }

    /// Under a swarm share of 50 %, four running tasks at 100 % each are
    /// each held to 12.5 %: a task busy for a whole window sleeps seven
    /// times as long.
    #[test]
    fn a_swarm_cpu_share_is_split_over_its_running_tasks() {
        let counters = Arc::new(SwarmCounters::default());
        counters.running.store(4, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut g = CpuGovernor::new(100, t0).with_swarm_share(Some(50), counters.clone());
        let sleep = g.tick(t0 + CPU_WINDOW, |busy| busy).unwrap();
        assert_eq!(sleep, CPU_WINDOW * 7);
        // Alone, it is held to its own share (100 %: no sleep).
        counters.running.store(1, Ordering::Relaxed);
        let mut g = CpuGovernor::new(100, t0).with_swarm_share(Some(200), counters);
        assert_eq!(g.tick(t0 + CPU_WINDOW, |busy| busy), None);
    }

    #[tokio::test]
    async fn admission_queues_then_refuses() {
        let counters = Arc::new(SwarmCounters::default());
        let queue = QueueConfig {
            max_queued: 1,
            max_wait: Duration::from_millis(50),
        };
        let a = Arc::new(Admission::new(1, queue, counters.clone()));
        let first = a.admit().await.unwrap();
        assert_eq!(counters.running.load(Ordering::Relaxed), 1);
        // One may wait; it times out.
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.admit().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(counters.queued.load(Ordering::Relaxed), 1);
        // A second waiter finds the queue full at once.
        assert_eq!(
            a.admit().await.unwrap_err(),
            Refused::QueueFull { max_queued: 1 }
        );
        assert!(matches!(
            waiter.await.unwrap(),
            Err(Refused::WaitedTooLong { .. })
        ));
        assert_eq!(counters.queued.load(Ordering::Relaxed), 0);
        drop(first);
        assert_eq!(counters.running.load(Ordering::Relaxed), 0);
        let _again = a.admit().await.unwrap();
    }

    /// A lowered limit takes a free slot away at once and a busy one when
    /// its task ends; a raised one gives them back.
    #[tokio::test]
    async fn a_lowered_limit_takes_slots_back_as_tasks_end() {
        let counters = Arc::new(SwarmCounters::default());
        let queue = QueueConfig {
            max_queued: 0,
            max_wait: Duration::from_millis(50),
        };
        let a = Admission::new(4, queue, counters);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(a.admit().await.unwrap());
        }
        a.set_limit(2);
        assert_eq!((a.limit(), a.max()), (2, 4));
        assert!(a.admit().await.is_err(), "the free slot was taken away");
        drop(held.pop());
        assert!(
            a.admit().await.is_err(),
            "the first task to end paid the debt"
        );
        drop(held.pop());
        let one = a.admit().await.unwrap();
        assert!(a.admit().await.is_err(), "two of two are running");
        a.set_limit(4);
        let two = a.admit().await.unwrap();
        let three = a.admit().await.unwrap();
        assert!(a.admit().await.is_err(), "four of four are running");
        drop((one, two, three, held));
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(a.admit().await.unwrap());
        }
        assert!(a.admit().await.is_err(), "nothing was lost or added");
    }
}
