//! Rates: a token bucket, and the per-swarm limiters built on it (import
//! calls, log lines and bytes).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::SwarmCounters;

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
