//! Every resource limit of a contract, as data and the small machines that
//! enforce it. The runner wires them into each task's store; nothing here
//! knows about components.
//!
//! | limit (contract field)        | enforced by                                         | error                 |
//! |-------------------------------|-----------------------------------------------------|-----------------------|
//! | `max_memory_mb`               | [`TaskLimiter`] (a wasmtime `ResourceLimiter`)       | `MemoryLimit`         |
//! | table growth                  | [`TaskLimiter`], [`MAX_TABLE_ELEMENTS`]             | `TableLimit`          |
//! | `task_timeout_seconds`        | epoch callback every tick + outer host timeout      | `Timeout`             |
//! | `max_cpu_percent`             | [`CpuGovernor`] in the epoch callback (sleeps)      | — (throttled)         |
//! | `max_concurrent_tasks`        | [`Admission`]: slots + bounded wait queue           | `Overloaded`          |
//! | `max_api_calls_per_second`    | [`RateLimiter`] per swarm: credentials, HTTP proxy  | `RateLimited`         |
//! | `max_log_lines_per_second`, `max_log_bytes_per_second` | [`LogBudget`] per swarm: log, stdout, stderr | — (lines dropped) |
//! | `max_fuel` (optional)         | wasmtime fuel                                       | `CpuBudget`           |
//! | guest→host bytes per call     | `Store::set_hostcall_fuel` ([`MAX_HOSTCALL_BYTES`]) | `HostcallTooLarge`    |
//! | task output size              | [`MAX_OUTPUT_BYTES`]                                | `OutputTooLarge`      |
//! | wasm stack                    | `Config::max_wasm_stack`                            | `StackOverflow`       |

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// The error a [`TaskLimiter`] raises to trap a guest that grows past its limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} limit exceeded: wanted {desired} {unit}, limit is {limit} {unit}")]
pub(crate) struct GrowthRefused {
    /// `memory` or `table`.
    pub what: &'static str,
    /// What the guest asked for.
    pub desired: usize,
    /// The limit.
    pub limit: usize,
    /// `bytes` or `elements`.
    pub unit: &'static str,
}

/// Memory and table limits of one task, and what it used.
pub(crate) struct TaskLimiter {
    max_memory: usize,
    memory: usize,
    peak_memory: usize,
    swarm: Arc<SwarmCounters>,
}

impl TaskLimiter {
    /// Limits for a task of a swarm with `max_memory_mb`.
    pub(crate) fn new(max_memory_mb: u32, swarm: Arc<SwarmCounters>) -> Self {
        Self {
            max_memory: max_memory_mb as usize * 1024 * 1024,
            memory: 0,
            peak_memory: 0,
            swarm,
        }
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
        self.swarm
            .memory_bytes
            .fetch_add((total - self.memory) as u64, Ordering::Relaxed);
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

/// Keeps a task to its share of one core.
///
/// Called on every epoch tick while the guest runs. Time between ticks, less
/// time the host spent waiting on the guest's behalf, is the run's busy
/// time; the caller turns it into CPU time (what the thread really used, see
/// `CpuMark`), and that is what counts. When a window's CPU time exceeds
/// `share × window`, the task sleeps until its average over the window is
/// back at its share, then a new window starts. Counting CPU rather than
/// wall time keeps a task on a busy machine from being throttled for time
/// the OS gave to others.
#[derive(Debug)]
pub(crate) struct CpuGovernor {
    share: f64,
    window_start: Instant,
    last_tick: Instant,
    busy_in_window: Duration,
    /// Host waits (async imports) since the last tick, excluded from busy time.
    pub(crate) waiting: Duration,
    /// CPU time of the whole task.
    pub busy: Duration,
    /// Time spent asleep for throttling.
    pub throttled: Duration,
}

impl CpuGovernor {
    /// A governor for `max_cpu_percent`, starting now.
    pub(crate) fn new(max_cpu_percent: u32, now: Instant) -> Self {
        Self {
            share: f64::from(max_cpu_percent.clamp(1, 100)) / 100.0,
            window_start: now,
            last_tick: now,
            busy_in_window: Duration::ZERO,
            waiting: Duration::ZERO,
            busy: Duration::ZERO,
            throttled: Duration::ZERO,
        }
    }

    /// Account for the run since the last tick, whose busy time `cpu` turns
    /// into CPU time; returns how long to sleep.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        cpu: impl FnOnce(Duration) -> Duration,
    ) -> Option<Duration> {
        let ran = cpu(now
            .saturating_duration_since(self.last_tick)
            .saturating_sub(std::mem::take(&mut self.waiting)));
        self.busy += ran;
        self.busy_in_window += ran;
        self.last_tick = now;
        if self.share >= 1.0 {
            return None;
        }
        let allowed = CPU_WINDOW.mul_f64(self.share);
        if self.busy_in_window > allowed {
            let window_end = self.window_start + self.busy_in_window.div_f64(self.share);
            let sleep = window_end.saturating_duration_since(now);
            self.throttled += sleep;
            self.window_start = now + sleep;
            self.last_tick = self.window_start;
            self.busy_in_window = Duration::ZERO;
            return (!sleep.is_zero()).then_some(sleep);
        }
        if now.saturating_duration_since(self.window_start) >= CPU_WINDOW {
            self.window_start = now;
            self.busy_in_window = Duration::ZERO;
        }
        None
    }

    /// Account for the run since the last tick at the end of the task.
    pub(crate) fn finish(&mut self, now: Instant, cpu: impl FnOnce(Duration) -> Duration) {
        let ran = cpu(now
            .saturating_duration_since(self.last_tick)
            .saturating_sub(std::mem::take(&mut self.waiting)));
        self.busy += ran;
        self.last_tick = now;
    }
}

/// Where a task's current run on a thread began: that thread, and its CPU
/// clock then. Set each time the task resumes after an epoch yield; read at
/// the next tick. The task's first run (up to one tick, 10 ms) counts its
/// busy time: reading a thread's CPU clock is a system call (about 0.25 µs),
/// which a task that ends within a tick is spared.
///
/// Between a resume and the next tick the task's future stays on one thread
/// in one poll, so the thread's CPU clock advances by exactly the task's CPU
/// time — unless the guest waited inside a host call meanwhile (the thread
/// may then have run other tasks, or the task moved), which is why a run's
/// CPU time is capped at its busy time, and taken as its busy time when the
/// task is on another thread than where the run began.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuMark(Arc<Mutex<Option<(std::thread::ThreadId, Duration)>>>);

impl CpuMark {
    /// A run begins here, now.
    pub(crate) fn set_here(&self) {
        let mark = (std::thread::current().id(), thread_cpu_time());
        *self.0.lock().expect("cpu mark lock") = Some(mark);
    }

    /// CPU time of the run since the mark, given its busy (wall) time.
    pub(crate) fn take(&self, busy: Duration) -> Duration {
        let mark = self.0.lock().expect("cpu mark lock").take();
        match mark {
            Some((thread, at)) if thread == std::thread::current().id() => {
                thread_cpu_time().saturating_sub(at).min(busy)
            }
            _ => busy,
        }
    }
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A token bucket: `rate` tokens per second, holding at most `capacity`
/// (one second's worth unless given).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket with one second's burst.
    pub(crate) fn new(rate_per_second: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        Self::with_capacity(rate, rate, now)
    }

    /// A full bucket holding at most `capacity` tokens.
    pub(crate) fn with_capacity(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Take `n` tokens if there are that many (a request larger than the
    /// capacity waits for `n` to accumulate).
    pub(crate) fn try_take(&mut self, n: f64, now: Instant) -> bool {
        let ok = self.has(n, now);
        if ok {
            self.tokens -= n;
        }
        ok
    }

    /// Whether `n` tokens could be taken now (takes none).
    pub(crate) fn has(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity.max(n));
        self.last = now;
        self.tokens >= n
    }

    /// How long until `n` tokens are available.
    pub(crate) fn wait_for(&self, n: f64) -> Duration {
        Duration::from_secs_f64(((n - self.tokens) / self.rate).max(0.0))
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

/// Per-swarm rate limiter shared by all its tasks and imports.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    bucket: Mutex<TokenBucket>,
    counters: Arc<SwarmCounters>,
}

impl RateLimiter {
    /// A limiter for `max_api_calls_per_second`.
    pub(crate) fn new(max_api_calls_per_second: u32, counters: Arc<SwarmCounters>) -> Self {
        Self {
            bucket: Mutex::new(TokenBucket::new(max_api_calls_per_second, Instant::now())),
            counters,
        }
    }

    /// Take one call's token; `false` (and counted) when over the rate.
    pub(crate) fn allow(&self) -> bool {
        let ok = self
            .bucket
            .lock()
            .expect("rate limiter lock")
            .try_take(1.0, Instant::now());
        if !ok {
            self.counters
                .rate_limited_calls
                .fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

/// Per-swarm log budget shared by all its tasks: lines per second and
/// bytes per second, each with one second's burst. A line over either is
/// dropped (the caller counts it); logging never ends a task.
#[derive(Debug)]
pub(crate) struct LogBudget {
    buckets: Mutex<(TokenBucket, TokenBucket)>,
}

impl LogBudget {
    /// A budget for `max_log_lines_per_second` and `max_log_bytes_per_second`.
    pub(crate) fn new(lines_per_second: u32, bytes_per_second: u32) -> Self {
        let now = Instant::now();
        Self {
            buckets: Mutex::new((
                TokenBucket::new(lines_per_second, now),
                TokenBucket::new(bytes_per_second, now),
            )),
        }
    }

    /// Take one line of `bytes`; `false` when over either budget (nothing
    /// is taken then).
    pub(crate) fn allow(&self, bytes: usize) -> bool {
        let now = Instant::now();
        let bytes = bytes as f64;
        let mut b = self.buckets.lock().expect("log budget lock");
        let (lines, size) = &mut *b;
        let ok = lines.has(1.0, now) & size.has(bytes, now);
        if ok {
            lines.tokens -= 1.0;
            size.tokens -= bytes;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
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
        let mut l = TaskLimiter::new(1, counters.clone());
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
}
