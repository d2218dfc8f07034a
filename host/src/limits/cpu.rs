//! A task's share of a core: CPU time counted per epoch tick, and sleeps
//! when a window's share is spent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{CPU_WINDOW, SwarmCounters};

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
///
/// With a swarm-wide share (`swarm_limits.max_cpu_percent`), each tick's
/// share is the smaller of the task's own and the swarm's divided by the
/// swarm's running tasks: together they keep to the swarm's share. A task
/// waiting in a host call still counts as running, so the split errs on
/// the side of the limit.
#[derive(Debug)]
pub(crate) struct CpuGovernor {
    share: f64,
    /// The swarm's share of one core, and its counters (tasks running).
    swarm: Option<(f64, Arc<SwarmCounters>)>,
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
            swarm: None,
            window_start: now,
            last_tick: now,
            busy_in_window: Duration::ZERO,
            waiting: Duration::ZERO,
            busy: Duration::ZERO,
            throttled: Duration::ZERO,
        }
    }

    /// Also keep the swarm's tasks together to `max_cpu_percent` of one
    /// core (`swarm_limits.max_cpu_percent`).
    pub(crate) fn with_swarm_share(
        mut self,
        max_cpu_percent: Option<u32>,
        counters: Arc<SwarmCounters>,
    ) -> Self {
        self.swarm = max_cpu_percent.map(|p| (f64::from(p.max(1)) / 100.0, counters));
        self
    }

    /// The share this tick: the task's own, or less under the swarm's.
    fn share_now(&self) -> f64 {
        match &self.swarm {
            Some((share, counters)) => {
                let running = counters
                    .running
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .max(1);
                self.share.min(share / running as f64)
            }
            None => self.share,
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
        let share = self.share_now();
        if share >= 1.0 {
            return None;
        }
        let allowed = CPU_WINDOW.mul_f64(share);
        if self.busy_in_window > allowed {
            let window_end = self.window_start + self.busy_in_window.div_f64(share);
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
